"""Database discipline of the ingest ledger: one writer at a time, short transactions.

Every ingest write transaction goes through :func:`writer`, which first
updates the one-row ``ledger_lock`` table: on SQLite that takes the write
lock at the start of the transaction (no read-then-upgrade deadlock, no
stale WAL snapshot), on PostgreSQL it is a row lock held until commit.
Read-only work uses :func:`transaction`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Integer, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from obsflow.db import Base
from obsflow.dbread import utcnow
from obsflow.exceptions import IngestError

__all__ = ["LedgerLock", "ensure_lock_row", "insert_ignore", "transaction", "utcnow", "writer"]


class LedgerLock(Base):
    """One row; every ledger writer updates it first to serialise writers."""

    __tablename__ = "ledger_lock"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)


def insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows, silently skipping those whose primary key exists (re-sent samples)."""
    if not rows:
        return
    # the dialect's own insert (its ON CONFLICT); imported here, not at start-up:
    # the PostgreSQL dialect costs every command a tenth of a second
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql as module
    else:
        from sqlalchemy.dialects import sqlite as module  # type: ignore[no-redef]
    for start in range(0, len(rows), 500):
        stmt = module.insert(table).values(rows[start:start + 500]).on_conflict_do_nothing()
        session.execute(stmt)


def ensure_lock_row(engine: Engine) -> None:
    """Create the one ``ledger_lock`` row if absent (safe when processes race)."""
    with Session(engine) as session, session.begin():
        insert_ignore(session, LedgerLock.__table__, [{"id": 1, "generation": 0}])


@contextmanager
def writer(engine: Engine) -> Iterator[Session]:
    """A transaction holding the ledger write lock until commit."""
    for attempt in range(2):
        with Session(engine, expire_on_commit=False) as session, session.begin():
            done = session.execute(update(LedgerLock).where(LedgerLock.id == 1)
                                   .values(generation=LedgerLock.generation + 1))
            if done.rowcount:  # type: ignore[attr-defined]
                yield session
                return
        if attempt == 0:
            ensure_lock_row(engine)
    raise IngestError("the ledger_lock row could not be created")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A short session in one transaction: committed on success, rolled back on error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


