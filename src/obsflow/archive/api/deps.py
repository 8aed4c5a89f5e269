"""Request-scoped dependencies: settings, database session, the caller (viewer), the clock.

Authentication: ``Authorization: Bearer <token>`` or the web-session cookie
(:data:`~obsflow.archive.users.SESSION_COOKIE`).  No credentials is the
anonymous viewer; bad credentials answer 401, and a client that sent
:attr:`ApiSettings.bad_token_limit` bad ones within
:attr:`ApiSettings.bad_token_window_s` gets 429 for any credentials until the
window has passed.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from obsflow.archive.context import Archive
from obsflow.archive.policy import Viewer, utcnow
from obsflow.archive.users import SESSION_COOKIE, viewer_for_secret
from obsflow.exceptions import AuthenticationError

__all__ = ["ApiSettings", "BadTokenLimiter", "DbSession", "Now", "ViewerDep", "get_archive",
           "get_now", "get_session", "get_viewer", "secret_from_request"]


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
    """

    clock: Callable[[], datetime] = utcnow
    bad_token_limit: int = 10
    bad_token_window_s: float = 60.0
    max_page_size: int = 1000


@dataclass
class BadTokenLimiter:
    """Counts bad credentials per client address (thread-safe, in memory)."""

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


def secret_from_request(request: Request) -> str | None:
    """The bearer token or session cookie of a request (None if neither)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("malformed Authorization header; expected 'Bearer <token>'")
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


def get_viewer(request: Request, session: Annotated[Session, Depends(get_session)],
               now: Annotated[datetime, Depends(get_now)]) -> Viewer:
    """Who is calling; 401 for bad credentials, 429 after too many of them."""
    limiter: BadTokenLimiter = request.app.state.limiter
    client = request.client.host if request.client else "unknown"
    try:
        secret = secret_from_request(request)
        if secret is not None and limiter.blocked(client):
            raise HTTPException(429, "too many bad tokens from this address; try again later",
                                headers={"Retry-After": str(int(limiter.window_s))})
        return viewer_for_secret(session, secret, now)
    except AuthenticationError as exc:
        limiter.record_failure(client)
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


DbSession = Annotated[Session, Depends(get_session)]
ViewerDep = Annotated[Viewer, Depends(get_viewer)]
Now = Annotated[datetime, Depends(get_now)]
