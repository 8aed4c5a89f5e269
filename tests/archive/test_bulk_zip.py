"""The streamed zip download (``/api/download/zip``) over a live server, and its zip writer.

Every check reads what a client receives from uvicorn on 127.0.0.1: the
members are compared byte for byte (sha256) with the archive's stored
files, ``sha256sum -c`` checks the zip's own manifest, and the server's
peak memory while it streams a zip many chunks long is measured with
``tracemalloc`` (the server runs in this process, in a thread).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from tests.archive.conftest import LiveSite, add_people, live_server, live_site
from tests.archive.factories import meta, register_versions, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import register_product
from obsflow.archive.schema import Product
from obsflow.archive.users import SESSION_COOKIE
from obsflow.archive.web import routers
from obsflow.archive.web.bulk import ZIP_CHUNK
from obsflow.archive.zipstream import ZipMember, stream_zip, text_member
from obsflow.exceptions import ChecksumMismatchError

NOW = datetime(2026, 6, 1)  # program 01234 (alice's) is still proprietary
ZIP = "/api/download/zip"
BIG = {"subsize1": 2048, "subsize2": 1024}  # an 8 MiB float32 image: 8 chunks
CAL = {"program": "03456", "ra_v1": 80.49, "dec_v1": -69.5, "target": "CAL-FIELD"}


class ZipSite(LiveSite):
    """The live site of the zip tests."""

    def stored(self, key: str) -> bytes:
        """The bytes of product ``key``'s file in the archive's store."""
        with self.archive.session() as session:
            product = session.query(Product).filter_by(product_id=self.ids[key]).one()
            return self.archive.settings.store.read_bytes(product.path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZipSite]:
    folder = tmp_path_factory.mktemp("zip")
    files = {"secret": write_product(folder / "in", meta(), seed=1),
             "J": write_product(folder / "in", meta(**CAL, exposure=1), seed=2),
             "H": write_product(folder / "in", meta(**CAL, filter="H", exposure=2), seed=3)}
    for n in range(3):
        files[f"big{n}"] = write_product(folder / "in",
                                         meta(**CAL, **BIG, filter="K", exposure=10 + n), seed=n)
    with live_site(f"sqlite:///{folder / 'zip.db'}", folder,
                   ApiSettings(clock=lambda: NOW, bad_token_limit=1000), files=files,
                   routers=routers()) as live:
        yield ZipSite(**vars(live))


def _zip(answer: httpx.Response) -> zipfile.ZipFile:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == 'attachment; filename="obsflow-download.zip"'
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert archive.testzip() is None
    return archive


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_zip_holds_the_visible_files_byte_for_byte(site: ZipSite, tmp_path: Path) -> None:
    ids = site.ids
    asked = [ids["J"], ids["H"], ids["secret"], "no-such-product", ids["J"]]
    got = _zip(httpx.get(site.url + ZIP, params={"id": asked}))
    files = [n for n in got.namelist() if n.endswith(".fits")]
    assert got.namelist()[:2] == ["README.txt", "MANIFEST.sha256"] and len(files) == 2
    for key in ("J", "H"):
        name = next(n for n in files if n.startswith(ids[key].rsplit("_", 1)[0]))
        assert _sha(got.read(name)) == _sha(site.stored(key))
    readme = got.read("README.txt").decode()
    assert "2 selected product(s) are not available to you" in readme
    everything = b"".join(got.read(n) for n in got.namelist())
    assert ids["secret"].encode() not in everything and b"no-such-product" not in everything
    assert site.stored("secret") not in everything
    got.extractall(tmp_path)  # the manifest checks with the standard tool
    check = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=tmp_path,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.count(": OK") == 2, check.stdout


def test_proprietary_files_only_for_their_program(site: ZipSite) -> None:
    ids = site.ids
    secret = site.stored("secret")
    for headers in ({}, {"Authorization": f"Bearer {site.tokens['bob']}"}):
        got = _zip(httpx.get(site.url + ZIP, params={"id": [ids["secret"]]}, headers=headers))
        assert got.namelist() == ["README.txt", "MANIFEST.sha256"]
        assert "1 selected product(s) are not available" in got.read("README.txt").decode()
    mine = _zip(httpx.get(site.url + ZIP, params={"id": [ids["secret"]]},
                          headers={"Authorization": f"Bearer {site.tokens['alice']}"}))
    assert mine.read(mine.namelist()[2]) == secret
    assert "not available" not in mine.read("README.txt").decode()
    login = httpx.post(site.url + "/login", data={"name": "alice", "password": "alice-pw"})
    cookie = {SESSION_COOKIE: login.cookies[SESSION_COOKIE]}  # the web page's button
    browser = _zip(httpx.get(site.url + ZIP, params={"id": [ids["secret"]]}, cookies=cookie))
    assert browser.read(browser.namelist()[2]) == secret
    bad = httpx.get(site.url + ZIP, params={"id": [ids["J"]]},
                    headers={"Authorization": "Bearer obf_" + "x" * 43})
    assert bad.status_code == 401


def test_bad_selections_get_a_400_naming_the_problem(site: ZipSite) -> None:
    ids = site.ids
    for wrong in ("../etc/passwd", "a\nb", "x" * 97):
        refused = httpx.get(site.url + ZIP, params={"id": [ids["J"], wrong]})
        assert refused.status_code == 400
        assert refused.json()["error"] == (f"id {wrong!r} is not a product id (letters, "
                                           "digits, _ . -, at most 96)")
    big = len(site.stored("big0"))
    strict = create_app(site.archive, ApiSettings(clock=lambda: NOW, zip_max_products=3,
                                                  zip_max_bytes=2 * big), routers=routers())
    with live_server(strict) as url:
        many = httpx.get(url + ZIP, params={"id": [ids["J"], ids["H"], ids["big0"], "x1"]})
        assert many.status_code == 400
        assert many.json()["error"] == "at most 3 products per download (4 selected)"
        heavy = httpx.get(url + ZIP, params={"id": [ids[f"big{n}"] for n in range(3)]})
        assert heavy.status_code == 400
        assert "the 3 selected products hold 25.2 MB, more than the 16.8 MB one zip may " \
            "hold" in heavy.json()["error"]
        assert _zip(httpx.get(url + ZIP, params={"id": [ids["big0"], ids["big1"]]}))


def _streamed_peak(url: str, ids: list[str]) -> tuple[int, str, int]:
    """(zip size, its sha256, peak memory traced in this process while it was streamed)."""
    digest, size = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        with httpx.stream("GET", url + ZIP, params={"id": ids}) as answer:
            assert answer.status_code == 200
            for block in answer.iter_raw():
                digest.update(block)
                size += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, digest.hexdigest(), peak


def test_server_memory_stays_bounded_while_streaming(site: ZipSite) -> None:
    ids = site.ids
    three = [ids[f"big{n}"] for n in range(3)]
    _streamed_peak(site.url, [ids["J"]])  # (first calls: lazy imports, query caches)
    small_size, _, small_peak = _streamed_peak(site.url, three[:1])
    size, sha, peak = _streamed_peak(site.url, three)
    print(f"zip of {small_size} bytes: peak traced memory {small_peak} bytes; "
          f"zip of {size} bytes: {peak} bytes")
    assert size > 24 * ZIP_CHUNK and size > 2.9 * small_size  # the zip is 24+ chunks long...
    assert peak < 6 * ZIP_CHUNK, peak  # ...and the server (and this client) held a few
    assert peak < small_peak + 2 * ZIP_CHUNK  # three times the data, no more memory
    again = httpx.get(site.url + ZIP, params={"id": three})
    assert _sha(again.content) == sha  # the same stream, whole
    got = _zip(again)
    assert {_sha(got.read(n)) for n in got.namelist()[2:]} == \
        {_sha(site.stored(f"big{n}")) for n in range(3)}


def test_a_corrupt_file_stops_the_zip_before_it_looks_whole(archive: Archive,
                                                            tmp_path: Path) -> None:
    """Each backend: a stored file changed on disk ends the stream without the central
    directory, so the client's zip does not open; a HEAD reads no file."""
    add_people(archive)
    path = write_product(tmp_path / "in", meta(**CAL), seed=4)
    product = register_product(archive, path)
    store = archive.settings.store
    with archive.session() as session:
        key = session.query(Product).filter_by(product_id=product.product_id).one().path
    data = bytearray(store.read_bytes(key))
    data[-10] ^= 0xFF  # same size, other bytes
    store.local_path(key).write_bytes(bytes(data))
    app = create_app(archive, ApiSettings(clock=lambda: NOW), routers=routers())
    with live_server(app) as url:
        head = httpx.head(url + ZIP, params={"id": [product.product_id]})
        assert head.status_code == 200 and head.content == b""  # (no file read: no cut)
        assert head.headers["content-type"] == "application/zip"
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):  # the server cut the chunked body
            with httpx.stream("GET", url + ZIP, params={"id": [product.product_id]}) as answer:
                assert answer.status_code == 200
                for block in answer.iter_raw():
                    received += block
    assert len(received) >= len(data) - ZIP_CHUNK
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(received))


def test_versions_sharing_a_file_name_get_a_folder_each(archive: Archive,
                                                        tmp_path: Path) -> None:
    """Each backend: three versions of one product (one file name) side by side in a zip."""
    add_people(archive)
    versions = register_versions(archive, tmp_path / "in")
    ids = [versions.ids[f"cal_v{n}"] for n in (1, 2, 3)]
    app = create_app(archive, ApiSettings(clock=lambda: NOW), routers=routers())
    with live_server(app) as url:
        got = _zip(httpx.get(url + ZIP, params={"id": [*ids, versions.ids["rate"]]}))
    cal_name = versions.files["cal_v1"].name
    assert got.namelist()[2:] == sorted([*(f"{pid}/{cal_name}" for pid in ids),
                                         versions.files["rate"].name])
    for n, pid in enumerate(ids, start=1):
        assert got.read(f"{pid}/{cal_name}") == versions.files[f"cal_v{n}"].read_bytes()


# -- the zip writer on its own ----------------------------------------------------------------

def test_stream_zip_members_zip64_and_size_check() -> None:
    blob = bytes(range(256)) * 5000
    members = [text_member("README.txt", "héllo\n", datetime(2026, 1, 2, 3, 4, 5)),
               ZipMember("data/a.fits", len(blob),
                         lambda: (blob[i:i + 1000] for i in range(0, len(blob), 1000)),
                         datetime(1970, 1, 1))]
    chunks = list(stream_zip(members))
    assert all(chunks) and max(map(len, chunks)) < 2000  # passed on as they come
    got = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert got.read("README.txt") == "héllo\n".encode() and got.read("data/a.fits") == blob
    info = got.getinfo("data/a.fits")
    assert info.compress_type == zipfile.ZIP_STORED and info.date_time == (1980, 1, 1, 0, 0, 0)
    assert info.flag_bits & 0x08  # sizes after the data: nothing was seeked back
    local_header = b"".join(chunks)[info.header_offset:info.header_offset + 30 + 100]
    assert b"\x01\x00\x10\x00" in local_header  # the zip64 extra field (id 1, 16 bytes)
    short = ZipMember("b.fits", 10, lambda: (b"123",), datetime(2026, 1, 1))
    with pytest.raises(ChecksumMismatchError, match="b.fits: 3 bytes read, 10 expected"):
        list(stream_zip([short]))
