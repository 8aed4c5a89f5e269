"""The site database: engine factory, declarative ``Base`` and the ``site_info`` table.

A site keeps its catalog in one relational database: a SQLite file in WAL
mode by default, or PostgreSQL for sites that scale out.  Every table of
obsflow is declared on :class:`Base` (later modules add theirs), so
``Base.metadata.create_all`` creates the whole schema.

This module owns only what every site needs from day one: the engine
settings and a small key/value ``site_info`` table that records when the
site was created, by which obsflow version and with which observatory
profile.  URLs are read by :mod:`obsflow.dburl` (re-exported here) and read-only
queries go through :mod:`obsflow.dbread`.  It imports no higher obsflow package: the schema is created and
upgraded by :mod:`obsflow.migrations` (one Alembic history for every table).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, String, Text, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from obsflow.dbread import SQLITE_BUSY_TIMEOUT_S
from obsflow.dburl import SUPPORTED_BACKENDS, backend_name, sqlite_path

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "SUPPORTED_BACKENDS",
    "Base",
    "SiteInfo",
    "backend_name",
    "make_engine",
    "read_site_info",
    "sqlite_path",
]


class Base(DeclarativeBase):
    """Declarative base of every obsflow table (SQLAlchemy 2 style)."""


class SiteInfo(Base):
    """One key/value fact about the site (``schema_version``, ``created``, ...)."""

    __tablename__ = "site_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    """Set WAL journal mode, foreign keys and busy timeout on each new connection."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """Create the SQLAlchemy engine for a site database.

    For SQLite the parent folder of the file is created, and every connection
    gets WAL journal mode (concurrent readers, one writer), foreign keys on,
    and a busy timeout of :data:`SQLITE_BUSY_TIMEOUT_S`.  PostgreSQL URLs are
    passed through unchanged (with ``pool_pre_ping``).

    Parameters
    ----------
    url : str
        SQLAlchemy database URL, e.g. ``sqlite:////data/site/obsflow.db`` or
        ``postgresql+psycopg://user@host/obsflow``.

    Returns
    -------
    sqlalchemy.Engine
        The engine; call ``dispose()`` when done with it.
    """
    if backend_name(url) != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def read_site_info(engine: Engine) -> dict[str, str]:
    """Return every row of ``site_info`` as a dict (empty if the table is empty)."""
    with Session(engine) as session:
        rows = session.execute(select(SiteInfo.key, SiteInfo.value)).all()
    return {key: value for key, value in rows}
