"""Request-scoped dependencies: settings, database session, the caller (viewer), the clock.

Authentication: ``Authorization: Bearer <token>`` or the web-session cookie
(:data:`~obsflow.archive.users.SESSION_COOKIE`); the web pages read the
cookie only.  No credentials is the anonymous viewer.  Every route (API, VO,
web pages, the login form) checks credentials through :func:`identify`, so
bad tokens, bad cookies and bad passwords count alike against the client's
address (:func:`client_address`): after :attr:`ApiSettings.bad_token_limit`
of them within :attr:`ApiSettings.bad_token_window_s` the address gets 429
for any credentials until the window has passed.  The address is the TCP
peer's; forwarded headers are believed only from the proxies the server was
started to trust (``server.trusted_proxies``, see
:mod:`obsflow.archive.server`).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from obsflow.archive.context import Archive
from obsflow.archive.policy import ANONYMOUS, Viewer, utcnow
from obsflow.archive.users import SESSION_COOKIE, viewer_for_secret
from obsflow.exceptions import AuthenticationError, TooManyAttemptsError

__all__ = ["ApiSettings", "BadTokenLimiter", "DbSession", "Now", "ViewerDep", "check_attempts",
           "client_address", "get_archive", "get_now", "get_session", "get_viewer", "identify",
           "record_failure", "secret_from_request"]


@dataclass(frozen=True)
class ApiSettings:
    """Settings of the HTTP API (passed to :func:`~obsflow.archive.api.create_app`).

    Attributes
    ----------
    clock : callable
        Returns now as naive UTC (tests move it across release dates).
    bad_token_limit : int
        Bad credentials a client may send within the window before 429.
    bad_token_window_s : float
        Length of that window, seconds.
    max_page_size : int
        Largest ``page_size`` of a search.
    hips_dir : Path or None
        The archive's HiPS (:mod:`obsflow.archive.hips`), served at ``/hips/`` under the
        search page's sky map; None or a missing folder: no sky image yet.
    zip_max_products : int
        Most products in one zip download (``/api/download/zip``).
    zip_max_bytes : int
        Most bytes (the products' sizes added up) in one zip download.
    """

    clock: Callable[[], datetime] = utcnow
    bad_token_limit: int = 10
    bad_token_window_s: float = 60.0
    max_page_size: int = 1000
    hips_dir: Path | None = None
    zip_max_products: int = 500
    zip_max_bytes: int = 20 * 1024**3


@dataclass
class BadTokenLimiter:
    """Counts bad credentials (tokens, cookies, passwords) per client address.

    Thread-safe, in memory (one per app); ``window_s`` in seconds.
    """

    limit: int
    window_s: float
    _events: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _trim(self, client: str, now: float) -> deque[float]:
        events = self._events[client]
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def blocked(self, client: str) -> bool:
        """True while ``client`` has used up its bad attempts."""
        with self._lock:
            return len(self._trim(client, time.monotonic())) >= self.limit

    def record_failure(self, client: str) -> None:
        """Count one bad attempt of ``client``."""
        with self._lock:
            now = time.monotonic()
            self._trim(client, now).append(now)


def get_archive(request: Request) -> Archive:
    """The :class:`Archive` the app was built for."""
    archive: Archive = request.app.state.archive
    return archive


def get_session(archive: Annotated[Archive, Depends(get_archive)]) -> Iterator[Session]:
    """A read session for the request."""
    with archive.session() as session:
        yield session


def get_now(request: Request) -> datetime:
    """Now, from the app's clock (naive UTC)."""
    settings: ApiSettings = request.app.state.api_settings
    return settings.clock()


IPV6_PREFIX = 64
"""Bad credentials from IPv6 clients count per /64 network (one subscriber's share)."""


def client_address(request: HTTPConnection) -> str:
    """The address bad credentials are counted against: the TCP peer's IP address.

    The server replaces it with the ``X-Forwarded-For`` client only when the
    peer is a trusted proxy (:func:`obsflow.archive.server.server_config`);
    the app itself never reads forwarded headers.  An IPv6 client counts as
    its /:data:`IPV6_PREFIX` network (a client holds a whole /64 and could
    otherwise take a fresh address for every attempt); an IPv4-mapped IPv6
    address as the IPv4 address.
    """
    host = request.client.host if request.client else "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket's peer): counted as is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


def secret_from_request(request: HTTPConnection) -> str | None:
    """The bearer token or session cookie of a request (None if neither)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("malformed Authorization header; expected 'Bearer <token>'")
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


def check_attempts(request: HTTPConnection) -> None:
    """Raise :class:`TooManyAttemptsError` while the client's address is blocked."""
    limiter: BadTokenLimiter = request.app.state.limiter
    if limiter.blocked(client_address(request)):
        raise TooManyAttemptsError("too many bad credentials from this address; "
                                   "try again later", limiter.window_s)


def record_failure(request: HTTPConnection) -> None:
    """Count one bad token, cookie or password against the client's address."""
    limiter: BadTokenLimiter = request.app.state.limiter
    limiter.record_failure(client_address(request))


def identify(request: HTTPConnection, session: Session, now: datetime, *,
             cookie_only: bool = False) -> Viewer:
    """Who sends ``request``: the viewer of its token or session cookie, else anonymous.

    ``cookie_only`` (web pages) ignores the ``Authorization`` header.

    Raises
    ------
    TooManyAttemptsError
        Credentials were sent from an address that sent too many bad ones.
    AuthenticationError
        The credentials are malformed, unknown or expired (counted).
    """
    try:
        secret = (request.cookies.get(SESSION_COOKIE) if cookie_only
                  else secret_from_request(request))
        if secret is None:
            return ANONYMOUS
        check_attempts(request)
        return viewer_for_secret(session, secret, now)
    except TooManyAttemptsError:
        raise
    except AuthenticationError:
        check_attempts(request)
        record_failure(request)
        raise


def get_viewer(request: Request, session: Annotated[Session, Depends(get_session)],
               now: Annotated[datetime, Depends(get_now)]) -> Viewer:
    """Who is calling (:func:`identify`): 401 for bad credentials, 429 after too many."""
    return identify(request, session, now)


DbSession = Annotated[Session, Depends(get_session)]
ViewerDep = Annotated[Viewer, Depends(get_viewer)]
Now = Annotated[datetime, Depends(get_now)]
