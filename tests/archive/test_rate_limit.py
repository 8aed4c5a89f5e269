"""The limit of bad credentials per client address, on a live server over 127.0.0.1.

Bad tokens, bad session cookies and bad passwords count alike, on the API,
the VO endpoints and the web pages; a client cannot dodge the limit with a
made-up ``X-Forwarded-For`` (nor ``X-Real-IP`` / ``Forwarded``), unless the
site names the proxy that sends it: then the forwarded address is the one
counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.archive.conftest import add_people, free_port, live_server, make_archive

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.users import SESSION_COOKIE
from obsflow.site import init_site

NOW = datetime(2026, 6, 1)
LIMIT = 3
UNKNOWN = "obf_" + "A" * 43
"""A secret of the right shape that no user holds."""

TAP = "/vo/tap/sync"
QUERY = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": "SELECT TOP 1 obs_id FROM ivoa.ObsCore"}


@dataclass
class Limited:
    archive: Archive
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def limited(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    """Users and tokens on each backend; every test serves its own app (its own limiter)."""
    archive = make_archive(module_db_url, tmp_path_factory.mktemp("limit") / "store")
    tokens = add_people(archive)
    yield Limited(archive, tokens)
    archive.close()


class _Client:
    """Requests to a base URL that keep no cookies between them (each sends what it says)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, **kwargs)


@contextmanager
def _serve(site: Limited, trusted_proxies: tuple[str, ...] = ()) -> Iterator[_Client]:
    """A live server of the whole app (API, VO, web) with a limit of :data:`LIMIT`."""
    app = create_app(site.archive, ApiSettings(clock=lambda: NOW, bad_token_limit=LIMIT),
                     routers=[*vo.routers(), *web.routers()])
    with live_server(app, trusted_proxies) as url:
        yield _Client(url)


def _bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def _forged(n: int) -> dict[str, str]:
    """Every header a client might use to claim another address."""
    address = f"198.51.100.{n}"
    return {"X-Forwarded-For": address, "X-Real-IP": address, "Forwarded": f"for={address}",
            "X-Forwarded-Proto": "https"}


def test_forged_forwarded_headers_cannot_dodge_the_limit(limited: Limited) -> None:
    with _serve(limited) as client:
        codes = [client.get("/api/whoami", headers=_bearer(UNKNOWN, **_forged(n))).status_code
                 for n in range(LIMIT + 2)]
        assert codes == [401] * LIMIT + [429] * 2
        good = _bearer(limited.tokens["alice"], **_forged(99))
        refused = client.get("/api/whoami", headers=good)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
        assert refused.json()["error"].startswith("too many bad credentials")
        vo_answer = client.get(TAP, params=QUERY, headers=good)
        assert vo_answer.status_code == 429 and b'value="ERROR"' in vo_answer.content
        assert vo_answer.headers["Retry-After"] == "60"
        # anonymous requests are not refused: the limit is on credentials
        assert client.get("/api/whoami", headers=_forged(7)).json()["name"] is None
        # nor is X-Forwarded-Proto believed
        links = client.get("/vo/tap/capabilities", headers=_forged(8))
        assert f"{client.url}/vo/tap/tables" in links.text and "https:" not in links.text


def test_bad_cookies_are_counted_on_pages_api_and_vo(limited: Limited) -> None:
    with _serve(limited) as client:
        # a stale cookie on a page: shown anonymously, cookie cleared, and counted
        first = client.get("/", headers={"Cookie": f"{SESSION_COOKIE}={UNKNOWN}"})
        assert first.status_code == 200 and "Log in" in first.text
        assert f'{SESSION_COOKIE}=""' in first.headers["set-cookie"]
        assert client.get("/search", headers={"Cookie": f"{SESSION_COOKIE}=garbage",
                                              **_forged(1)}).status_code == 200
        assert client.get("/login", headers={"Cookie": f"{SESSION_COOKIE}={UNKNOWN}x"}
                          ).status_code == 200
        for path in ("/", "/search", "/products/x", "/login"):
            page = client.get(path, headers={"Cookie": f"{SESSION_COOKIE}={UNKNOWN}"})
            assert page.status_code == 429, path
            assert "Too many attempts" in page.text and page.headers["Retry-After"] == "60"
        login = client.post("/login", data={"name": "alice", "password": "alice-pw"})
        assert login.status_code == 429 and "Too many failed logins" in login.text
        assert client.get("/api/whoami", headers=_bearer(limited.tokens["alice"])
                          ).status_code == 429
        assert client.get(TAP, params=QUERY, headers={"Cookie": f"{SESSION_COOKIE}={UNKNOWN}"}
                          ).status_code == 429
        # without credentials the pages still work
        assert client.get("/").status_code == 200


def test_bad_cookies_on_the_api_and_vo_count_like_bad_tokens(limited: Limited) -> None:
    with _serve(limited) as client:
        cookie = {"Cookie": f"{SESSION_COOKIE}={UNKNOWN}"}
        codes = [client.get("/api/search", headers=cookie).status_code,
                 client.get(TAP, params=QUERY, headers=cookie).status_code,
                 client.post("/vo/sia2/query", data={"MAXREC": "1"}, headers=cookie).status_code,
                 client.get("/api/search", headers=cookie).status_code]
        assert codes == [401, 401, 401, 429]


def test_bad_passwords_and_cookies_share_the_count(limited: Limited) -> None:
    with _serve(limited) as client:
        for _ in range(LIMIT - 1):
            wrong = client.post("/login", data={"name": "alice", "password": "nope"})
            assert wrong.status_code == 401
        assert client.get("/", headers={"Cookie": f"{SESSION_COOKIE}={UNKNOWN}"}
                          ).status_code == 200
        assert client.post("/login", data={"name": "alice", "password": "alice-pw"}
                           ).status_code == 429


def test_good_credentials_are_not_counted(limited: Limited) -> None:
    with _serve(limited) as client:
        login = client.post("/login", data={"name": "bob", "password": "bob-pw"})
        assert login.status_code == 303
        cookie = {"Cookie": f"{SESSION_COOKIE}={login.cookies[SESSION_COOKIE]}"}
        for _ in range(LIMIT + 2):
            assert "bob" in client.get("/", headers=cookie).text
            assert client.get("/api/whoami", headers=_bearer(limited.tokens["alice"])
                              ).json()["name"] == "alice"


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(limited: Limited) -> None:
    with _serve(limited, ("127.0.0.1", "::1")) as client:
        abuser, other = "203.0.113.7", "203.0.113.8"
        codes = [client.get("/api/whoami",
                            headers=_bearer(UNKNOWN, **{"X-Forwarded-For": abuser})).status_code
                 for _ in range(LIMIT + 1)]
        assert codes == [401] * LIMIT + [429]
        good = limited.tokens["alice"]
        # the abuser is blocked, even when it writes another address in front of its own
        # (the proxy appends the real one; the last untrusted address is the client)
        for chain in (abuser, f"192.0.2.1, {abuser}", f"{abuser}, 127.0.0.1"):
            blocked = client.get("/api/whoami", headers=_bearer(good, **{"X-Forwarded-For": chain}))
            assert blocked.status_code == 429, chain
        page = client.get("/", headers={"X-Forwarded-For": abuser,
                                        "Cookie": f"{SESSION_COOKIE}={UNKNOWN}"})
        assert page.status_code == 429
        # other clients of the same proxy, and the proxy itself, are not
        for headers in ({"X-Forwarded-For": other}, {}):
            answer = client.get("/api/whoami", headers=_bearer(good, **headers))
            assert answer.status_code == 200 and answer.json()["name"] == "alice"
        # X-Forwarded-Proto from the trusted proxy makes links https
        links = client.get("/vo/tap/capabilities", headers={"X-Forwarded-Proto": "https"})
        assert f"https://{client.url.removeprefix('http://')}/vo/tap/tables" in links.text



@contextmanager
def _obsflow_serve(root: Path, env: dict[str, str]) -> Iterator[_Client]:
    """``obsflow serve`` of the site ``root`` in a subprocess (``env`` added to ours)."""
    port = free_port()
    with (root / "serve.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "obsflow", "serve", "--site", str(root),
                                   "--port", str(port)], env={**os.environ, **env},
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        client = _Client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, (root / "serve.log").read_text()
                assert time.monotonic() < deadline, "obsflow serve did not start"
                time.sleep(0.05)
        yield client
    finally:
        server.terminate()
        server.wait(10)


def test_obsflow_serve_believes_forwarded_headers_from_its_trusted_proxies(
        tmp_path: Path) -> None:
    """The site setting reaches the server (its default, none, is checked in test_store_cli)."""
    root = tmp_path / "site"
    init_site(root, profile="smallsat")
    limit = ApiSettings().bad_token_limit
    with _obsflow_serve(root, {"OBSFLOW_SERVER__TRUSTED_PROXIES": "127.0.0.1"}) as client:
        # each forwarded address has its own count
        codes = {client.get("/api/whoami", headers=_bearer(UNKNOWN, **_forged(n))).status_code
                 for n in range(limit + 1)}
        assert codes == {401}
        codes = {client.get("/api/whoami", headers=_bearer(UNKNOWN, **_forged(1))).status_code
                 for _ in range(limit)}
        assert codes == {401, 429}


def test_ipv6_clients_count_per_64_network(limited: Limited) -> None:
    with _serve(limited, ("127.0.0.1", "::1")) as client:
        network = "2001:db8:1:2:"
        codes = [client.get("/api/whoami", headers=_bearer(
            UNKNOWN, **{"X-Forwarded-For": f"{network}:{n + 1:x}"})).status_code
            for n in range(LIMIT + 1)]
        assert codes == [401] * LIMIT + [429]
        good = limited.tokens["alice"]
        for address in (f"{network}abcd:1:2:3", "2001:db8:1:2::ffff"):
            assert client.get("/api/whoami", headers=_bearer(
                good, **{"X-Forwarded-For": address})).status_code == 429
        for address in ("2001:db8:1:3::1", "::ffff:192.0.2.9", "192.0.2.9"):
            assert client.get("/api/whoami", headers=_bearer(
                good, **{"X-Forwarded-For": address})).status_code == 200, address
