"""Read-only queries of the site database: one snapshot, one SQL text for every backend.

The commands people run to look at a site (``obsflow status``, ``jobs``,
``refs contexts``, ``refs best``) only read a few rows.  Through SQLAlchemy's
ORM they paid about 0.4 s of imports before the first row; a
:class:`SiteReader` runs plain SQL instead:

* on a SQLite site, with the standard library's :mod:`sqlite3` (nothing of
  SQLAlchemy is imported);
* on PostgreSQL, or on any :class:`sqlalchemy.Engine` a caller already has,
  with SQLAlchemy Core's ``text()`` (:class:`EngineReader`).

The SQL is the same string on both (portable SQL, named parameters
``:name``), written once by the module that owns the query
(:mod:`obsflow.ingest.status`, :mod:`obsflow.orchestrate.views`,
:mod:`obsflow.refdata.contexts`), so a SQLite and a PostgreSQL site give the
same answers (a test runs both).  A reader sees one snapshot: its queries
run in one read transaction, rolled back on :meth:`SiteReader.close`.

Values come back as the driver gives them: SQLite returns a ``DateTime``
column as text and a ``JSON`` column as text, PostgreSQL as objects;
:func:`as_datetime` and :meth:`SiteReader.json` read both forms.

    with open_reader(cfg.database_url) as db:
        failed = db.rows("SELECT id, kind FROM jobs WHERE state = :state", {"state": "failed"})
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from obsflow.dburl import sqlite_path
from obsflow.exceptions import SiteError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "EngineReader", "SiteReader", "SqliteReader", "as_datetime",
           "open_reader", "reading", "utcnow"]

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for a lock held by another writer, seconds."""

Row = tuple[Any, ...]


class SiteReader(ABC):
    """Read-only access to a site database in one read transaction (use as a context manager)."""

    backend: str
    """``"sqlite"`` or the engine's dialect name (``"postgresql"``)."""

    @abstractmethod
    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Every row of the query ``sql`` (named parameters ``:name`` from ``params``)."""

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row of ``sql``, or None when it returns no row."""
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    @abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the database has a table ``name``."""

    @abstractmethod
    def close(self) -> None:
        """End the read transaction and close the connection."""

    def json(self, value: Any) -> Any:
        """A ``JSON`` column's value as Python objects (SQLite stores the JSON text)."""
        if self.backend == "sqlite" and isinstance(value, str | bytes):
            return json.loads(value)
        return value

    def __enter__(self) -> SiteReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class SqliteReader(SiteReader):
    """A reader of a SQLite database file through :mod:`sqlite3` (no SQLAlchemy).

    The file must exist (a missing one is not created: ``sqlite3`` would make
    an empty database; :class:`~obsflow.exceptions.SiteError` instead).  Waits up to :data:`SQLITE_BUSY_TIMEOUT_S` for a lock.
    """

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        if not Path(path).is_file():
            raise SiteError(f"no database file {path}: run `obsflow init` on the site")
        self._conn = sqlite3.connect(str(path), timeout=SQLITE_BUSY_TIMEOUT_S,
                                     isolation_level=None)
        self._conn.execute("BEGIN")  # one snapshot for every query (deferred: read only)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self._conn.execute(sql, dict(params or {})).fetchall()

    def has_table(self, name: str) -> bool:
        return self.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
                           {"name": name}) is not None

    def close(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        finally:
            self._conn.close()


class EngineReader(SiteReader):
    """A reader through SQLAlchemy (Core's ``text()``, no ORM): an engine or a connection.

    Given an engine, the reader opens (and on :meth:`close` closes) its own
    connection, and ``dispose`` also disposes of the engine (made for this
    reader alone).  Given a connection (``session.connection()``), it reads in
    that connection's transaction, seeing what the session flushed, and
    leaves the connection open.
    """

    def __init__(self, source: Engine | Connection, *, dispose: bool = False) -> None:
        from sqlalchemy import Connection

        self._owned = not isinstance(source, Connection)
        self._conn = source.connect() if not isinstance(source, Connection) else source
        self._engine = self._conn.engine
        self._dispose = dispose
        self.backend = self._conn.dialect.name

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import text

        return [tuple(row) for row in self._conn.execute(text(sql), dict(params or {}))]

    def has_table(self, name: str) -> bool:
        from sqlalchemy import inspect

        return inspect(self._conn).has_table(name)

    def close(self) -> None:
        try:
            if self._owned:
                self._conn.close()
        finally:
            if self._dispose:
                self._engine.dispose()


def open_reader(url: str) -> SiteReader:
    """A reader of the database at ``url``: :mod:`sqlite3` for a SQLite file, else SQLAlchemy.

    Raises
    ------
    SiteError
        A SQLite URL whose file does not exist.
    """
    path = sqlite_path(url)
    if path is not None:
        return SqliteReader(path)
    from obsflow.db import make_engine

    return EngineReader(make_engine(url), dispose=True)


@contextmanager
def reading(source: SiteReader | Engine) -> Iterator[SiteReader]:
    """``source`` itself when it is a reader, else a reader of the engine (closed after)."""
    if isinstance(source, SiteReader):
        yield source
        return
    reader = EngineReader(source)
    try:
        yield reader
    finally:
        reader.close()


def as_datetime(value: Any) -> datetime | None:
    """A ``DateTime`` column's value as a naive datetime (SQLite gives ISO text), or None."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))




def utcnow() -> datetime:
    """Naive UTC now (the site database stores naive UTC datetimes)."""
    return datetime.now(UTC).replace(tzinfo=None)
