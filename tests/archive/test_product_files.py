"""A product's other files (its pure ASDF form) in a store that is not local.

The site-level path (a real site with ``[products] formats = ["fits",
"asdf"]``, downloads over the live server, access) is tested in
tests/stage3/test_image3_site.py; here: a file outside the store is copied
beside the product's key in an fsspec (memory) store, verified and served
with ranges; an unknown format is one clear error before anything is
stored; without ``asdf`` in the formats nothing is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from tests.archive.conftest import live_server, make_archive
from tests.archive.factories import meta, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import (
    OtherFile,
    register_outputs,
    registration_from_file,
    with_site_formats,
)
from obsflow.exceptions import UnknownOptionError

LATER = datetime(2031, 1, 1)


def test_an_asdf_file_is_copied_into_a_remote_store_and_served(db_url: str,
                                                               tmp_path: Path) -> None:
    archive = make_archive(db_url, f"memory://obsflow-{uuid.uuid4().hex}")
    try:
        reg = with_site_formats(registration_from_file(write_product(tmp_path, meta())),
                                ("fits", "asdf"))
        (other,) = reg.files
        assert (other.format, other.path) == ("asdf", reg.path.with_suffix(".asdf"))
        record = register_outputs(archive, [reg])[0]
        app = create_app(archive, ApiSettings(clock=lambda: LATER))
        with live_server(app) as url:
            base = f"{url}/api/products/{record.product_id}"
            files = httpx.get(base).json()["files"]
            assert [(f["format"], f["filename"], f["sha256"]) for f in files] == [
                ("asdf", other.path.name, other.sha256)]
            answer = httpx.get(f"{base}/download", params={"format": "asdf"})
            assert answer.content == other.path.read_bytes()
            assert hashlib.sha256(answer.content).hexdigest() == other.sha256
            part = httpx.get(f"{base}/download", params={"format": "asdf"},
                             headers={"Range": "bytes=0-4"})
            assert (part.status_code, part.content) == (206, b"#ASDF")
            assert httpx.get(f"{base}/download").content == reg.path.read_bytes()
    finally:
        archive.close()


def test_an_unknown_format_is_one_clear_error(archive: Archive, tmp_path: Path) -> None:
    reg = registration_from_file(write_product(tmp_path, meta()))
    stray = tmp_path / "x.h5"
    stray.write_bytes(b"not asdf")
    bad = dataclasses.replace(reg, files=(OtherFile("hdf5", stray, "0" * 64, 8),))
    with pytest.raises(UnknownOptionError,
                       match=r"^unknown product file format of x.h5 'hdf5'; allowed: asdf$"):
        register_outputs(archive, [bad])
    assert not list((tmp_path / "store").rglob("*.fits"))  # nothing stored


def test_fits_only_writes_no_asdf(tmp_path: Path) -> None:
    reg = registration_from_file(write_product(tmp_path, meta()))
    assert with_site_formats(reg, ("fits",)) is reg
    assert not reg.path.with_suffix(".asdf").exists()
