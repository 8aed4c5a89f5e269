"""Database URLs read without SQLAlchemy: a site URL's backend and its SQLite file.

Opening a site reads its database URL before anything else; importing
SQLAlchemy only to parse it cost the light commands (``status``, ``jobs``,
``refs``) about 0.3 s of start-up.  :func:`parse_url` splits a URL exactly as
SQLAlchemy's ``make_url`` does (the same pattern; a test compares the two on
many URLs), and :mod:`obsflow.db` re-exports :func:`backend_name` and
:func:`sqlite_path` from here, so there is one reading of a URL.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from obsflow.exceptions import ConfigError, UnknownOptionError

__all__ = ["SUPPORTED_BACKENDS", "ParsedURL", "backend_name", "parse_url", "sqlite_path"]

SUPPORTED_BACKENDS = ("postgresql", "sqlite")
"""Database backends obsflow runs on (the part of the URL before ``://`` or ``+``)."""

_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)
"""SQLAlchemy's URL pattern (``sqlalchemy.engine.url._parse_url``, version 2)."""


class ParsedURL(NamedTuple):
    """The parts of a database URL that obsflow reads.

    ``drivername`` is ``backend[+driver]``; ``database`` is unquoted (a SQLite
    file name, a PostgreSQL database name) or None; ``query`` the raw text
    after ``?`` or None.
    """

    drivername: str
    host: str | None
    database: str | None
    query: str | None

    @property
    def backend(self) -> str:
        """The backend: ``drivername`` left of ``+``."""
        return self.drivername.split("+")[0]


def parse_url(url: str) -> ParsedURL:
    """Split a database URL as SQLAlchemy's ``make_url`` does.

    Raises
    ------
    ConfigError
        ``url`` is not a database URL at all, or its port is not a number.
    """
    match = _URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise ConfigError(f"not a database URL: {url!r} (expected e.g. sqlite:///path)")
    parts = match.groupdict()
    if parts["port"] and not parts["port"].isdecimal():
        raise ConfigError(f"database URL {url!r}: port {parts['port']!r} is not a number")
    database = unquote(parts["database"]) if parts["database"] is not None else None
    return ParsedURL(parts["name"], parts["ipv4host"] or parts["ipv6host"], database,
                     parts["query"])


def backend_name(url: str) -> str:
    """Return the backend of a database URL (``"sqlite"`` or ``"postgresql"``).

    Raises
    ------
    ConfigError
        ``url`` is not a database URL at all.
    UnknownOptionError
        The backend is not one of :data:`SUPPORTED_BACKENDS`.
    """
    backend = parse_url(url).backend
    if backend not in SUPPORTED_BACKENDS:
        raise UnknownOptionError("database backend", backend, SUPPORTED_BACKENDS)
    return backend


def sqlite_path(url: str) -> Path | None:
    """Return the database file of a SQLite URL, or None (other backends, in-memory)."""
    parsed = parse_url(url)
    if parsed.backend != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)
