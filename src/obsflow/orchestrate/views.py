"""Jobs as people look at them: :class:`JobView` and the job list of ``obsflow jobs``.

Read with plain SQL through a :class:`~obsflow.dbread.SiteReader` (the
standard library's :mod:`sqlite3` on a SQLite site), so listing jobs imports
neither SQLAlchemy's ORM nor the orchestrator; :mod:`obsflow.orchestrate.jobs`
re-exports :class:`JobView` and builds it from ORM rows with :meth:`JobView.of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from obsflow.dbread import SiteReader, as_datetime

if TYPE_CHECKING:
    from obsflow.orchestrate.tables import Job

__all__ = ["JOB_COLUMNS", "STATES", "JobView", "list_jobs"]

STATES = ("pending", "running", "done", "failed")
"""Every state a job can be in."""

JOB_COLUMNS = ("id", "kind", "key", "state", "inputs", "outputs", "parent_id", "attempts",
               "max_attempts", "created", "started", "finished", "error")
"""The columns of ``jobs`` a :class:`JobView` holds, in its field order."""


@dataclass(frozen=True)
class JobView:
    """A plain snapshot of a job row (safe to use after its session closed)."""

    id: int
    kind: str
    key: str
    state: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    parent_id: int | None
    attempts: int
    max_attempts: int
    created: datetime
    started: datetime | None
    finished: datetime | None
    error: str | None

    @classmethod
    def of(cls, job: Job) -> JobView:
        """The view of an ORM row."""
        return cls(job.id, job.kind, job.key, job.state, dict(job.inputs),
                   dict(job.outputs) if job.outputs is not None else None, job.parent_id,
                   job.attempts, job.max_attempts, job.created, job.started, job.finished,
                   job.error)

    @classmethod
    def from_row(cls, db: SiteReader, row: tuple[Any, ...]) -> JobView:
        """The view of a row of :data:`JOB_COLUMNS` read through ``db``."""
        (id_, kind, key, state, inputs, outputs, parent, attempts, max_attempts, created,
         started, finished, error) = row
        made = as_datetime(created)
        assert made is not None  # NOT NULL
        outputs = db.json(outputs)
        return cls(int(id_), kind, key, state, dict(db.json(inputs)),
                   dict(outputs) if outputs is not None else None, parent, int(attempts),
                   int(max_attempts), made, as_datetime(started), as_datetime(finished), error)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (times as ISO strings)."""
        out = dict(self.__dict__)
        for name in ("created", "started", "finished"):
            value = out[name]
            out[name] = value.isoformat(timespec="seconds") if value is not None else None
        return out


def list_jobs(db: SiteReader, kind: str | None = None, state: str | None = None,
              limit: int = 200) -> list[JobView]:
    """The ``limit`` newest jobs (of ``kind``, in ``state`` when given), oldest first."""
    where = [f"{name} = :{name}" for name, value in (("kind", kind), ("state", state)) if value]
    sql = (f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + " ORDER BY id DESC LIMIT :limit")
    rows = db.rows(sql, {"kind": kind, "state": state, "limit": int(limit)})
    return [JobView.from_row(db, row) for row in reversed(rows)]
