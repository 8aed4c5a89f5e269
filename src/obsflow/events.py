"""The event queue of the job layer: facts one stage publishes for the orchestrator to act on.

A producer publishes an event in the same transaction as the work it
reports (ingest: an assembled Level-1 version, ``exposure_ready``, with the
product's reference, sha256 and provenance), so a crash never loses one or
announces work that was not committed.  The orchestrator takes unconsumed
events with a conditional update (each is acted on once, by one
orchestrator) in the transaction that enqueues their jobs.

The table sits at the foundation (it imports only :mod:`obsflow.db`) so
that producers publish without importing the job layer above them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, UniqueConstraint, exists, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from obsflow.db import Base

__all__ = ["Event", "has_unconsumed", "publish", "take"]


class Event(Base):
    """Something later stages react to (``exposure_ready``: payload describes the product)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict] = mapped_column(JSON)  # type: ignore[type-arg]
    created: Mapped[datetime] = mapped_column(DateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    __table_args__ = (UniqueConstraint("kind", "key"),)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def publish(session: Session, kind: str, key: str, payload: dict[str, Any]) -> bool:
    """Add event (``kind``, ``key``) in the caller's transaction unless it exists; True if new."""
    if session.scalar(select(exists().where(Event.kind == kind, Event.key == key))):
        return False
    session.add(Event(kind=kind, key=key, payload=payload, created=_now()))
    return True


def take(session: Session, kind: str, limit: int = 500) -> list[Event]:
    """Mark up to ``limit`` unconsumed events of ``kind`` consumed and return them (oldest first).

    Each is taken by a conditional update, so two orchestrators never both
    act on one; the caller enqueues their jobs in the same transaction.
    """
    taken = []
    for event in session.scalars(select(Event).where(Event.kind == kind,
                                                     Event.consumed_at.is_(None))
                                 .order_by(Event.id).limit(limit)).all():
        done = session.execute(update(Event).where(Event.id == event.id,
                                                   Event.consumed_at.is_(None))
                               .values(consumed_at=_now()))
        if done.rowcount:  # type: ignore[attr-defined]
            taken.append(event)
    return taken


def has_unconsumed(session: Session, kind: str) -> bool:
    """True while an event of ``kind`` waits to be taken."""
    return bool(session.scalar(select(exists().where(Event.kind == kind,
                                                     Event.consumed_at.is_(None)))))
