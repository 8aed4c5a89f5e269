"""The HTTP API on a live uvicorn server (127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image
from tests.archive.conftest import LiveSite, fitsverify, live_server, live_site
from tests.archive.factories import meta, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import register_program
from obsflow.archive.users import SESSION_COOKIE, add_user, create_token, login

NOW = datetime(2026, 6, 1)  # proprietary data (EXPEND 2025-11-21 + 12 months) not yet public


def _populate(archive: Archive, folder: Path) -> dict[str, Path]:
    with archive.session() as session, session.begin():
        for name in ("alice", "bob"):
            add_user(session, name, password=f"{name}-pw")
        add_user(session, "root", admin=True)
    register_program(archive, "01234", pi_name="A. Rivera", title="Deep", exclusive_months=12,
                     members=["alice"])
    register_program(archive, "03456", pi_name="M. Chen", title="Cal", exclusive_months=0)
    files = {
        "secret": write_product(folder, meta()),
        "ramp": write_product(folder, meta(), kind="uncal"),
        "public": write_product(folder, meta(program="03456", ra_v1=80.49, dec_v1=-69.5, target="CAL-FIELD")),
        "big": write_product(folder, meta(program="03456", ra_v1=80.49, dec_v1=-69.5, exposure=2, subsize1=1024,
                                          subsize2=1024, target="CAL-FIELD")),
        "corrupt": write_product(folder, meta(program="03456", ra_v1=80.49, dec_v1=-69.5, exposure=3, target="CAL-FIELD")),
    }
    return files


@pytest.fixture(scope="module")
def site(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    folder = tmp_path_factory.mktemp("api")
    with live_site(module_db_url, folder, ApiSettings(clock=lambda: NOW, bad_token_limit=1000),
                   files=lambda archive: _populate(archive, folder / "in"), people=False) as live:
        with live.archive.session() as session, session.begin():
            tokens = {name: create_token(session, name) for name in ("alice", "bob", "root")}
            tokens["expired"] = create_token(session, "alice", days=1, now=NOW - timedelta(days=2))
            tokens["session"] = login(session, "alice", "alice-pw", now=NOW)
        live.tokens.update(tokens)
        yield live


def _get(site: LiveSite, path: str, token: str | None = None, **kw: object) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))  # type: ignore[call-overload]
    if token is not None:
        headers["Authorization"] = f"Bearer {site.tokens.get(token, token)}"
    return httpx.get(site.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {r["product_id"] for r in response.json()["results"]}


def test_search_hides_proprietary_data(site: LiveSite) -> None:
    p = site.ids
    public = {p["public"], p["big"], p["corrupt"]}
    assert _ids(_get(site, "/api/search")) == public
    assert _ids(_get(site, "/api/search", "bob")) == public
    assert _ids(_get(site, "/api/search", "alice")) == public | {p["secret"], p["ramp"]}
    assert _ids(_get(site, "/api/search", "root")) == public | {p["secret"], p["ramp"]}
    cookie = {SESSION_COOKIE: site.tokens["session"]}
    assert p["secret"] in _ids(httpx.get(site.url + "/api/search", cookies=cookie))
    cone = {"ra": 53.16, "dec": -27.78, "radius": 0.1}
    assert _ids(_get(site, "/api/search", "alice", params=cone)) == {p["secret"], p["ramp"]}
    assert _ids(_get(site, "/api/search", params=cone)) == set()


def test_hidden_product_answers_like_a_missing_one(site: LiveSite) -> None:
    secret = site.ids["secret"]
    missing = secret.replace("01234", "07777")
    for suffix in ("", "/download", "/preview", "/preview?kind=thumb"):
        hidden = _get(site, f"/api/products/{secret}{suffix}", "bob")
        absent = _get(site, f"/api/products/{missing}{suffix}", "bob")
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"] == absent.json()["error"].replace(missing, secret)
        assert _get(site, f"/api/products/{secret}{suffix}", "alice").status_code == 200


def test_metadata_previews_and_openapi(site: LiveSite) -> None:
    body = _get(site, f"/api/products/{site.ids['ramp']}", "alice").json()
    assert body["level"] == "1" and body["dataproduct_type"] == "cube"
    assert body["links"]["download"].startswith(site.url)
    assert set(body["links"]["previews"]) == {"png", "jpeg", "thumb"}
    for kind, fmt in (("png", "PNG"), ("jpeg", "JPEG"), ("thumb", "JPEG")):
        r = _get(site, f"/api/products/{site.ids['big']}/preview?kind={kind}")
        image = Image.open(io.BytesIO(r.content))
        assert image.format == fmt
        assert max(image.size) == (256 if kind == "thumb" else 1024)
    assert "/api/search" in _get(site, "/openapi.json").json()["paths"]
    assert _get(site, "/api/whoami", "alice").json()["programs"] == ["01234"]


def test_download_full_and_ranges(site: LiveSite, tmp_path: Path) -> None:
    source = site.files["big"].read_bytes()
    path = f"/api/products/{site.ids['big']}/download"
    with httpx.stream("GET", site.url + path, timeout=30) as r:
        assert r.status_code == 200
        data = b"".join(r.iter_bytes())
    assert data == source
    digest = hashlib.sha256(source).hexdigest()
    assert r.headers["x-checksum-sha256"] == digest
    assert r.headers["accept-ranges"] == "bytes"
    (tmp_path / "big.fits").write_bytes(data)
    fitsverify(tmp_path / "big.fits")
    for header, expect in (("bytes=0-99", source[:100]), ("bytes=-100", source[-100:]),
                           ("bytes=2879-2889", source[2879:2890]),
                           (f"bytes={len(source) - 5}-", source[-5:])):
        r = _get(site, path, headers={"Range": header})
        assert (r.status_code, r.content) == (206, expect)
        assert r.headers["content-range"].endswith(f"/{len(source)}")
    assert _get(site, path, headers={"Range": f"bytes={len(source)}-"}).status_code == 416
    assert _get(site, path, headers={"Range": "bytes=0-1,10-11"}).status_code == 206


def test_every_served_product_passes_fitsverify(site: LiveSite, tmp_path: Path) -> None:
    for key in ("secret", "ramp", "public"):
        r = _get(site, f"/api/products/{site.ids[key]}/download", "root")
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == r.headers["x-checksum-sha256"]
        (tmp_path / f"{key}.fits").write_bytes(r.content)
        fitsverify(tmp_path / f"{key}.fits")


def test_corrupted_store_file_is_not_served(site: LiveSite) -> None:
    product = site.ids["corrupt"]
    path = f"/api/products/{product}/download"
    assert _get(site, path).status_code == 200
    store = site.archive.settings.store
    with site.archive.session() as session:
        from obsflow.archive.schema import Product

        key = session.query(Product.path).filter(Product.product_id == product).scalar()
    stored = store.local_path(key)
    data = bytearray(stored.read_bytes())
    data[5000] ^= 0x01
    stored.write_bytes(bytes(data))
    r = _get(site, path)
    assert r.status_code == 503 and "checksum" in r.json()["error"]


@pytest.mark.parametrize("token, message", [
    ("obf_" + "x" * 43, "unknown token"), ("expired", "token expired"),
    ("not-a-token", "malformed token"), ("obf_short", "malformed token"),
])
def test_bad_tokens_answer_401(site: LiveSite, token: str, message: str) -> None:
    r = _get(site, "/api/search", token)
    assert r.status_code == 401 and r.json()["error"] == message
    r = _get(site, "/api/search", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and "Bearer" in r.json()["error"]


@pytest.mark.parametrize("path", [
    "/api/products/..%2F..%2F..%2Fetc%2Fpasswd/download",
    "/api/products/../../etc/passwd",
    "/api/products/%2e%2e/download",
    "/api/products/..%5C..%5Cetc%5Cpasswd/download",
    "/api/products/01234%00.fits/preview",
    "/api/products/....//....//etc/passwd/download",
])
def test_path_traversal_is_not_found(site: LiveSite, path: str) -> None:
    r = httpx.get(site.url + path, timeout=10)
    assert r.status_code in (404, 422), r.text
    assert "error" in r.json() and "root:" not in r.text


@pytest.mark.parametrize("params", [
    {"target": "x' OR '1'='1"}, {"filter": "J'; DROP TABLE products; --"},
    {"program": "1 OR 1=1"}, {"instrument": "\" OR \"\"=\""}, {"target": "%"},
    {"level": "1' OR '1'='1"},
])
def test_sql_injection_through_search_fields(site: LiveSite, params: dict[str, str]) -> None:
    r = _get(site, "/api/search", params=params)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["results"] == []
    assert len(_ids(_get(site, "/api/search"))) == 3  # the catalog is intact


@pytest.mark.parametrize("params, status, words", [
    ({"target": "A" * 5000}, 422, "target"), ({"page_size": 10**9}, 422, "page_size"),
    ({"ra": "1e400", "dec": 0, "radius": 1}, 422, "ra"), ({"ra": 10}, 400, "cone"),
    ({"ra": 10, "dec": 95, "radius": 1}, 422, "dec"), ({"radius": -1, "ra": 1, "dec": 1}, 422,
                                                       "radius"),
    ({"t_min": 61001, "t_max": 61000}, 400, "t_min"), ({"page": 0}, 422, "page"),
    ({"ra": "abc", "dec": 0, "radius": 1}, 422, "ra"), ({"level": "9"}, 422, "level"),
])
def test_bad_parameters_answer_4xx_with_a_message(site: LiveSite, params: dict[str, object],
                                                  status: int, words: str) -> None:
    r = _get(site, "/api/search", params=params)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert _get(site, f"/api/products/{site.ids['public']}/preview?kind=gif").status_code \
        == 422


def test_repeated_bad_tokens_are_rate_limited(site: LiveSite) -> None:
    app = create_app(site.archive, ApiSettings(clock=lambda: NOW, bad_token_limit=3))
    with live_server(app) as url:
        bad = {"Authorization": "Bearer obf_" + "y" * 43}
        codes = [httpx.get(url + "/api/search", headers=bad).status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        good = {"Authorization": f"Bearer {site.tokens['alice']}"}
        r = httpx.get(url + "/api/search", headers=good)
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert httpx.get(url + "/api/search").status_code == 200  # anonymous still works
