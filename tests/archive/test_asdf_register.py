"""``obsflow archive add x.asdf``: a pure-ASDF product registered on its own or attached to
its registered FITS twin, served by the download endpoint; a foreign ASDF file refused."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from tests.archive.conftest import live_server
from tests.archive.factories import meta, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import (
    register_outputs,
    register_product,
    registration_from_file,
    with_site_formats,
)
from obsflow.archive.schema import Exposure, Product, ProductFile
from obsflow.exceptions import ArchiveError, ProductFileError
from obsflow.models.asdffile import write_asdf_copy
from obsflow.models.identity import ProductRef
from obsflow.models.provenance import Provenance

LATER = datetime(2031, 1, 1)


def _made(kind: str) -> tuple[ProductRef, Provenance]:
    m = meta()
    return ProductRef.derived(kind, m.data_id, "r1", "origin"), Provenance("r1", "obsflow-test")


@pytest.mark.parametrize("with_ref", [True, False])
def test_asdf_attaches_to_its_fits_twin(archive: Archive, tmp_path: Path, with_ref: bool) -> None:
    """The FITS product registered first, then its ASDF form: one product, two files, both
    downloadable byte for byte (a file made outside a site, with no reference, too: the
    ASDF form carries its twin's sha256)."""
    fits_path = write_product(tmp_path / "in", meta(), "cal",
                              made=_made("cal") if with_ref else None)
    asdf_file = write_asdf_copy(fits_path)
    fits_record = register_product(archive, fits_path)
    record = register_product(archive, asdf_file.path)
    assert (record.product_id, record.created, record.attached) == (
        fits_record.product_id, True, True)
    again = register_product(archive, asdf_file.path)
    assert (again.product_id, again.created, again.attached) == (fits_record.product_id,
                                                                   False, False)
    with archive.session() as session:
        assert session.scalar(select(Product.content_type)) == "application/fits"
        files = session.scalars(select(ProductFile)).all()
        assert [(f.format, f.filename, f.sha256) for f in files] == [
            ("asdf", asdf_file.path.name, asdf_file.sha256)]
    app = create_app(archive, ApiSettings(clock=lambda: LATER))
    with live_server(app) as url:
        base = f"{url}/api/products/{fits_record.product_id}/download"
        served = httpx.get(base, params={"format": "asdf"})
        assert served.status_code == 200
        assert hashlib.sha256(served.content).hexdigest() == asdf_file.sha256
        assert httpx.get(base).content == fits_path.read_bytes()


def test_asdf_on_its_own_is_a_product(archive: Archive, tmp_path: Path) -> None:
    """An ASDF product whose FITS twin is not registered is a product of its own, with its
    exposure's metadata and footprint from the headers it carries, served as ASDF."""
    fits_path = write_product(tmp_path / "in", meta(), "cal", made=_made("cal"))
    asdf_file = write_asdf_copy(fits_path)
    fits_path.unlink()
    record = register_product(archive, asdf_file.path)
    assert record.created and not record.attached and record.kind == "cal"
    assert record.uuid == _made("cal")[0].uuid
    with archive.session() as session:
        row = session.scalar(select(Product))
        assert row is not None
        assert (row.content_type, row.filename, row.s_xel1, row.s_xel2) == (
            "application/asdf", asdf_file.path.name, meta().subsize1, meta().subsize2)
        exposure = session.get(Exposure, row.exposure_id)
        assert exposure is not None and exposure.s_region.startswith("POLYGON")
    app = create_app(archive, ApiSettings(clock=lambda: LATER))
    with live_server(app) as url:
        served = httpx.get(f"{url}/api/products/{record.product_id}/download")
        assert served.headers["content-type"] == "application/asdf"
        assert served.content == asdf_file.path.read_bytes()
        assert np.isclose(httpx.get(f"{url}/api/products/{record.product_id}").json()
                          ["s_ra"], meta().ra_v1, atol=0.1)


def test_fits_after_its_asdf_twin_becomes_the_products_file(archive: Archive,
                                                            tmp_path: Path) -> None:
    """The ASDF form registered first (a product of its own), then its FITS twin: one product,
    served as FITS, its ASDF file second; both downloads byte for byte."""
    fits_path = write_product(tmp_path / "in", meta(), "cal", made=_made("cal"))
    asdf_file = write_asdf_copy(fits_path)
    first = register_product(archive, asdf_file.path)
    second = register_product(archive, fits_path)
    assert (second.product_id, second.created, second.attached) == (first.product_id, True, True)
    assert register_product(archive, fits_path).created is False
    with archive.session() as session:
        row = session.scalar(select(Product))
        assert row is not None
        assert (row.content_type, row.filename, row.sha256) == (
            "application/fits", fits_path.name, second.sha256)
        files = session.scalars(select(ProductFile)).all()
        assert [(f.format, f.filename, f.sha256) for f in files] == [
            ("asdf", asdf_file.path.name, asdf_file.sha256)]
    app = create_app(archive, ApiSettings(clock=lambda: LATER))
    with live_server(app) as url:
        base = f"{url}/api/products/{first.product_id}/download"
        assert httpx.get(base).content == fits_path.read_bytes()
        assert httpx.get(base, params={"format": "asdf"}).content == asdf_file.path.read_bytes()


def test_other_bytes_for_the_same_product_are_refused(archive: Archive, tmp_path: Path) -> None:
    fits_path = write_product(tmp_path / "in", meta(), "cal", made=_made("cal"))
    first = write_asdf_copy(fits_path)
    register_product(archive, fits_path)
    register_product(archive, first.path)
    other = tmp_path / "other" / first.path.name
    other.parent.mkdir()
    other.write_bytes(first.path.read_bytes().replace(b"obsflow-test", b"obsflow-TEST"))
    with pytest.raises(ArchiveError, match=rf"^{other.name}: product .* has an ASDF file "
                                           "already"):
        register_product(archive, other)


def test_a_foreign_asdf_is_refused_before_anything_is_stored(archive: Archive,
                                                             tmp_path: Path) -> None:
    import asdf

    foreign = tmp_path / "foreign_cal.asdf"
    asdf.AsdfFile({"data": np.zeros((4, 4), np.float32)}).write_to(foreign)
    with pytest.raises(ProductFileError, match="^foreign_cal.asdf: an ASDF file that is not "
                                               "an obsflow product"):
        register_product(archive, foreign)
    with archive.session() as session:
        assert session.scalar(select(Product)) is None
    assert not list((tmp_path / "store").rglob("*.asdf"))


def test_site_formats_follow_asdf_kinds(archive: Archive, tmp_path: Path) -> None:
    """``[products] asdf_kinds`` chooses the kinds a site writes in ASDF too: a ramp (uncal)
    when listed, registered as its second file; not with the default kinds."""
    reg = registration_from_file(write_product(tmp_path / "in", meta(), "uncal"))
    assert with_site_formats(reg, ("fits", "asdf")) is reg  # default: cal, i2d
    assert with_site_formats(reg, ("fits",), ("uncal",)) is reg
    both = with_site_formats(reg, ("fits", "asdf"), ("uncal",))
    (other,) = both.files
    assert other.path == reg.path.with_suffix(".asdf") and other.path.is_file()
    record = register_outputs(archive, [both])[0]
    with archive.session() as session:
        row = session.get(ProductFile, (session.scalar(select(Product.id)), "asdf"))
        assert row is not None and row.sha256 == other.sha256
    assert record.kind == "uncal"


def test_archive_add_cli_attaches_an_asdf_file(tmp_path: Path) -> None:
    """``obsflow archive add`` of a FITS product, then of its ASDF form: "ASDF file attached",
    then "already there"; the other way round (ASDF first), the same."""
    from click.testing import CliRunner

    from obsflow.cli import main
    from obsflow.site import init_site

    root = tmp_path / "site"
    init_site(root, profile="smallsat")
    fits_path = write_product(tmp_path / "in", meta(), "cal", made=_made("cal"))
    asdf_path = write_asdf_copy(fits_path).path
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["archive", "add", "--site", str(root), *args],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "added" in run(str(fits_path))
    assert "attached to its twin" in run(str(asdf_path))
    assert "already there" in run(str(asdf_path))
    other = write_product(tmp_path / "in2", meta(exposure=9), "cal", made=(
        ProductRef.derived("cal", meta(exposure=9).data_id, "r1", "o"), _made("cal")[1]))
    other_asdf = write_asdf_copy(other).path
    assert "added" in run(str(other_asdf))
    assert "attached to its twin" in run(str(other))
    assert "already there" in run(str(other))
