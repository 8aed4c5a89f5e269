"""The job tables: ``jobs`` (one row per unit of work) and ``job_attempts`` (one per try).

A job is identified by a unique ``key`` built from its inputs (e.g.
``calibrate:level1/x_uncal.fits:v1``), so enqueueing the same work twice
gives one row.  States::

    pending ──claim──► running ──ok──► done
       ▲                  │
       └──error, attempts left (after not_before)
                          └──error, last attempt──► failed ──`obsflow jobs retry`──► pending

``owner`` is the orchestrator that claimed the job (``host:pid``) and
``token`` the lease of that claim: a worker only records a result while the
job is still ``running`` under the same token, so a stale worker (its
orchestrator died and the job was re-queued) can never finish it twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from obsflow.db import Base
from obsflow.orchestrate.views import STATES  # defined with the job list (no SQLAlchemy there)

__all__ = ["STATES", "Job", "JobAttempt"]



class Job(Base):
    """One unit of work of the chain."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    key: Mapped[str] = mapped_column(String(600), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True,
                                                  index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime)
    started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    """Higher runs first among pending jobs (fresh data 0, reprocessing campaigns below)."""
    __table_args__ = (Index("ix_jobs_state_kind", "state", "kind"),)


class JobAttempt(Base):
    """One try of a job: where it ran, how long, how it ended and its log."""

    __tablename__ = "job_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(160))  # host:pid of the process running it
    started: Mapped[datetime] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # running | ok | error | lost | stale
    log: Mapped[str] = mapped_column(Text, default="")
