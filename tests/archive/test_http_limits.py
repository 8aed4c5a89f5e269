"""The HTTP surface at its edges, on a live server (127.0.0.1), on SQLite and PostgreSQL.

Values the catalog cannot hold (integers beyond 64 bits, or beyond 32 for
row ids; NUL in text) answer 4xx naming the parameter, never 5xx; Range
follows RFC 9110; HEAD answers wherever GET does; 405 lists the allowed
methods; the OpenAPI schema documents the statuses and the error body.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
from tests.archive.conftest import live_site
from tests.archive.factories import meta, write_product

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings

NOW = datetime(2026, 6, 1)
HUGE = "99999999999999999999999"


@dataclass
class Live:
    url: str
    product: str
    size: int
    token: str


@pytest.fixture(scope="module")
def live(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("limits")
    path = write_product(folder / "in", meta(program="03456", target="CAL-FIELD"))
    with live_site(module_db_url, folder, ApiSettings(clock=lambda: NOW, bad_token_limit=10**6),
                   files={"cal": path}, routers=[*vo.routers(), *web.routers()]) as site:
        yield Live(site.url, site.ids["cal"], path.stat().st_size, site.tokens["alice"])


def _get(live: Live, path: str, **kw: object) -> httpx.Response:
    return httpx.get(live.url + path, timeout=30, **kw)  # type: ignore[arg-type]


def _vo_error(response: httpx.Response, words: str) -> None:
    assert response.status_code == 400, response.text
    assert "QUERY_STATUS" in response.text and words in response.text, response.text


# -- values the database cannot hold ---------------------------------------------------------
def test_tap_literals_beyond_64_bits_are_400(live: Live) -> None:
    base = "SELECT obs_id FROM ivoa.ObsCore"
    for query, words in ((f"{base} WHERE calib_level = {HUGE}", "is out of range"),
                         (f"{base} WHERE t_exptime < 1e999", "is out of range"),
                         (f"{base} ORDER BY {HUGE}", "is out of range"),
                         (f"SELECT TOP {HUGE} obs_id FROM ivoa.ObsCore", "is out of range"),
                         (f"{base} WHERE calib_level = {'9' * 5000}", "is out of range"),
                         (f"{base} WHERE target_name = 'a\x00b'", "NUL")):
        _vo_error(_get(live, "/vo/tap/sync", params={"QUERY": query}), words)
    ok = _get(live, "/vo/tap/sync", params={"QUERY": f"{base} WHERE calib_level = {2**63 - 1}"})
    assert ok.status_code == 200 and 'value="OK"' in ok.text


def test_sia2_values_outside_the_catalog_are_400(live: Live) -> None:
    for params, words in (({"CALIB": HUGE}, "CALIB"), ({"CALIB": "7"}, "CALIB"),
                          ({"TARGET": "a\x00b"}, "TARGET: text must not contain NUL")):
        _vo_error(_get(live, "/vo/sia2/query", params=params), words)
    assert _get(live, "/vo/sia2/query", params={"CALIB": "2"}).status_code == 200
    assert _get(live, "/vo/sia2/query", params={"MAXREC": "9" * 5000}).status_code == 200


def test_web_and_api_text_with_nul_is_refused(live: Live) -> None:
    page = _get(live, "/search", params={"target": "a\x00b"})
    assert page.status_code == 400 and "target: text must not contain NUL" in page.text
    assert _get(live, "/search", params={"target": "x", "page": "1.5"}).status_code == 400
    assert _get(live, "/search", params={"page": "1000001"}).status_code == 400
    assert _get(live, "/search", params={"target": "", "ra": "", "page": ""}).status_code == 200
    assert _get(live, "/api/search", params={"target": "a\x00b"}).status_code in (400, 422)
    login = httpx.post(live.url + "/login", data={"name": "al\x00ice", "password": "x"})
    assert login.status_code == 401


# -- Range (RFC 9110) ------------------------------------------------------------------------
def _download(live: Live, range_header: str | None, **headers: str) -> httpx.Response:
    if range_header is not None:
        headers["Range"] = range_header
    return _get(live, f"/api/products/{live.product}/download", headers=headers)


def test_range_unknown_unit_or_bad_syntax_sends_the_whole_file(live: Live) -> None:
    for header in ("items=0-5", "bytes=5-3", "bytes=abc", "bytes=", "a&poV", "bytes=1-2,x"):
        r = _download(live, header)
        assert r.status_code == 200 and len(r.content) == live.size, header
    whole = _download(live, "bytes=0-5", **{"If-Range": '"not-the-etag"'})
    assert whole.status_code == 200 and len(whole.content) == live.size


def test_range_unsatisfiable_is_416_json_with_content_range(live: Live) -> None:
    for header in (f"bytes={live.size}-", f"bytes={HUGE}-", "bytes=-0", f"bytes={'9' * 5000}-",
                   f"bytes={live.size}-{live.size + 9}, {live.size + 20}-"):
        r = _download(live, header)
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{live.size}"
        assert r.json()["status"] == 416 and "outside" in r.json()["error"]


def test_range_satisfiable_forms(live: Live) -> None:
    whole = _download(live, None).content
    assert _download(live, "bytes=10-19").content == whole[10:20]
    assert _download(live, "bytes=-7").content == whole[-7:]
    tail = _download(live, f"bytes={live.size - 3}-{live.size + 100}")
    assert tail.status_code == 206 and tail.content == whole[-3:]
    assert tail.headers["content-range"] == f"bytes {live.size - 3}-{live.size - 1}/{live.size}"
    assert _download(live, f"bytes=-{'9' * 5000}").content == whole
    assert _download(live, f"bytes=0-{'9' * 5000}").content == whole
    merged = _download(live, f"bytes=0-4, 3-9, {live.size + 5}-")  # overlap merged, excess dropped
    assert merged.status_code == 206 and merged.content == whole[:10]
    multi = _download(live, "bytes=0-1, 20-21")
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")
    assert whole[:2] in multi.content and whole[20:22] in multi.content


# -- HEAD, 405, the schema -------------------------------------------------------------------
def test_head_answers_wherever_get_does(live: Live) -> None:
    schema = _get(live, "/openapi.json").json()
    paths = {path.replace("{product_id}", live.product).replace("{other_product_id}", live.product)
             : ops for path, ops in schema["paths"].items()}
    for path in [*(p for p, ops in paths.items() if "get" in ops), "/", "/search", "/login",
                 f"/products/{live.product}"]:
        get = _get(live, path, params={"QUERY": "SELECT obs_id FROM ivoa.ObsCore"})
        head = httpx.head(live.url + path, params={"QUERY": "SELECT obs_id FROM ivoa.ObsCore"},
                          timeout=30)
        assert head.status_code == get.status_code != 405, path
        assert head.content == b"", path
        for name in ("content-type", "content-length", "etag", "x-checksum-sha256"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)
    ranged = httpx.head(f"{live.url}/api/products/{live.product}/download",
                        headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 200 and ranged.headers["content-length"] == str(live.size)


def test_405_lists_every_allowed_method(live: Live) -> None:
    r = httpx.request("DELETE", live.url + "/vo/tap/sync")
    assert r.status_code == 405 and r.json()["status"] == 405
    assert r.headers["allow"] == "GET, HEAD, POST"


def test_the_schema_documents_statuses_and_the_error_body(live: Live) -> None:
    schema = _get(live, "/openapi.json").json()
    paths = schema["paths"]
    statuses = {(m, p): set(op["responses"]) for p, ops in paths.items() for m, op in ops.items()}
    for path in ("/api/products/{product_id}", "/api/products/{product_id}/download",
                 "/api/products/{product_id}/preview"):
        assert {"404", "401", "422", "429"} <= statuses["get", path], path
    assert {"206", "416", "503"} <= statuses["get", "/api/products/{product_id}/download"]
    assert "400" in statuses["get", "/api/search"]
    for method in ("get", "post"):
        assert "400" in statuses[method, "/vo/tap/sync"]
    tap = {p["name"]: p for p in paths["/vo/tap/sync"]["get"]["parameters"]}
    assert tap["QUERY"]["required"] is True
    body = paths["/api/products/{product_id}"]["get"]["responses"]["404"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "error", "status", "details"}
