"""The job state machine on the site database (see :mod:`obsflow.orchestrate.tables`).

Every transition is one short transaction guarded by a condition on the
current state (and lease token), so two orchestrators, a stale worker or a
restarted orchestrator can never move a job twice:

* :func:`enqueue` inserts a job unless its key exists;
* :func:`claim` moves ``pending`` -> ``running`` and hands out a lease token;
* :func:`begin_attempt`, :func:`finish_attempt`, :func:`fail_attempt` are
  called by the worker that runs the job, with that token;
* :func:`requeue_orphans` gives ``running`` jobs of a dead orchestrator back
  to ``pending``; :func:`retry` does the same for a ``failed`` job.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from obsflow.exceptions import JobNotFoundError, JobStateError
from obsflow.orchestrate.tables import Job, JobAttempt
from obsflow.orchestrate.views import JobView
from obsflow.owners import owner_alive

if TYPE_CHECKING:
    from obsflow.config import SiteConfig

__all__ = [
    "JobSpec",
    "JobView",
    "RetryPolicy",
    "policy_of",
    "begin_attempt",
    "claim",
    "enqueue",
    "enqueue_all",
    "fail_attempt",
    "finish_attempt",
    "get_job",
    "heartbeat",
    "requeue_orphans",
    "retry",
    "state_counts",
    "transaction",
    "utcnow",
]

MAX_BACKOFF_SECONDS = 300.0
"""Upper bound of the wait between two attempts, seconds."""


def utcnow() -> datetime:
    """Naive UTC now (the site database stores naive UTC datetimes)."""
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A short session in one transaction: committed on success, rolled back on error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue: kind, unique key, inputs (JSON-able) and priority.

    Pending jobs of higher ``priority`` are claimed first (fresh data 0,
    reprocessing campaigns negative), then in the order they were enqueued.
    """

    kind: str
    key: str
    inputs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How often a job is tried and how long to wait between tries.

    The wait before attempt ``n + 1`` is ``backoff_seconds * 2 ** (n - 1)``,
    at most :data:`MAX_BACKOFF_SECONDS`.
    """

    max_attempts: int = 3
    backoff_seconds: float = 2.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** max(attempts - 1, 0))


def policy_of(cfg: SiteConfig) -> RetryPolicy:
    """The retry policy configured in ``[executor]``."""
    return RetryPolicy(cfg.executor.max_attempts, cfg.executor.retry_backoff_seconds)


def enqueue(session: Session, spec: JobSpec, policy: RetryPolicy,
            parent_id: int | None = None) -> Job | None:
    """Add a pending job unless one with ``spec.key`` exists; return the new row or None."""
    if session.scalar(select(Job.id).where(Job.key == spec.key)) is not None:
        return None
    job = Job(kind=spec.kind, key=spec.key, state="pending", inputs=spec.inputs,
              parent_id=parent_id, attempts=0, max_attempts=policy.max_attempts,
              created=utcnow(), priority=spec.priority)
    session.add(job)
    session.flush()
    return job


def enqueue_all(engine: Engine, specs: Sequence[JobSpec], policy: RetryPolicy) -> int:
    """Enqueue ``specs`` in one transaction (existing keys skipped); return how many are new."""
    with transaction(engine) as session:
        return sum(enqueue(session, spec, policy) is not None for spec in specs)


def claim(engine: Engine, job_id: int, owner: str, token: str | None = None) -> str | None:
    """Move a pending job to running for ``owner``; return its lease token, or None if taken.

    ``token`` reuses a known lease token (an HTCondor node retried by DAGMan).
    """
    token = token or secrets.token_hex(16)
    now = utcnow()
    with transaction(engine) as session:
        done = session.execute(update(Job).where(Job.id == job_id, Job.state == "pending")
                               .values(state="running", owner=owner, token=token, heartbeat=now))
        if not done.rowcount:  # type: ignore[attr-defined]
            return None
        session.execute(update(Job).where(Job.id == job_id, Job.started.is_(None))
                        .values(started=now))
    return token


def _owned(session: Session, job_id: int, token: str) -> Job | None:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.state != "running" or job.token != token:
        return None
    return job


def begin_attempt(engine: Engine, job_id: int, token: str, worker: str) -> tuple[JobView, int] | None:
    """Record the start of an attempt; return (job, attempt number), or None if the lease is stale.

    Attempts still marked ``running`` (their worker died: Dask re-ran the
    task elsewhere) are closed as ``lost`` and counted.  A job already past
    its last attempt is failed here, and None is returned.
    """
    now = utcnow()
    with transaction(engine) as session:
        job = _owned(session, job_id, token)
        if job is None:
            return None
        for lost in session.scalars(select(JobAttempt).where(
                JobAttempt.job_id == job_id, JobAttempt.outcome == "running")):
            lost.outcome, lost.finished = "lost", now
            lost.log += "\nworker lost while running this attempt (process died)\n"
        if job.attempts >= job.max_attempts:
            _fail(job, f"{job.kind} {job.key}: worker lost on the last of "
                       f"{job.attempts} attempts", now)
            return None
        job.attempts += 1
        session.add(JobAttempt(job_id=job_id, number=job.attempts, worker=worker, started=now,
                               outcome="running", log=""))
        return JobView.of(job), job.attempts


def _attempt(session: Session, job_id: int, number: int) -> JobAttempt | None:
    return session.scalar(select(JobAttempt).where(JobAttempt.job_id == job_id,
                                                   JobAttempt.number == number))


def _close_attempt(session: Session, job_id: int, number: int, outcome: str, log: str,
                   now: datetime) -> None:
    row = _attempt(session, job_id, number)
    if row is not None:
        row.outcome, row.finished, row.log = outcome, now, log
        row.seconds = (now - row.started).total_seconds()


def finish_attempt(engine: Engine, job_id: int, token: str, number: int,
                   outputs: dict[str, Any], children: Sequence[JobSpec], log: str,
                   policy: RetryPolicy) -> bool:
    """Mark the job done with its outputs and enqueue its children, atomically.

    Returns False (and changes nothing but the attempt's log) if the lease
    is stale: another run of the job owns it now.
    """
    now = utcnow()
    with transaction(engine) as session:
        job = _owned(session, job_id, token)
        if job is None:
            _close_attempt(session, job_id, number, "stale", log, now)
            return False
        job.state, job.outputs, job.finished, job.error = "done", outputs, now, None
        job.token = None
        _close_attempt(session, job_id, number, "ok", log, now)
        for spec in children:
            enqueue(session, spec, policy, parent_id=job_id)
    return True


def _fail(job: Job, reason: str, now: datetime) -> None:
    job.state, job.error, job.finished, job.token = "failed", reason, now, None


def _lost_by_executor(session: Session, job: Job, error: str, now: datetime) -> None:
    """Close the attempt the executor lost (or count one that never started)."""
    open_rows = list(session.scalars(select(JobAttempt).where(
        JobAttempt.job_id == job.id, JobAttempt.outcome == "running")))
    for row in open_rows:
        row.outcome, row.finished = "lost", now
        row.seconds = (now - row.started).total_seconds()
        row.log += f"\nlost by the executor: {error}\n"
    if not open_rows:
        job.attempts += 1
        session.add(JobAttempt(job_id=job.id, number=job.attempts, worker="(executor)",
                               started=now, finished=now, seconds=0.0, outcome="lost",
                               log=f"lost by the executor before it started: {error}\n"))


def fail_attempt(engine: Engine, job_id: int, token: str, number: int | None, error: str,
                 log: str, policy: RetryPolicy) -> str | None:
    """Record a failed attempt: back to ``pending`` after a backoff, or ``failed`` if it was the last.

    ``number`` None means the attempt never started in a worker (the executor
    lost it); the try is counted all the same.  Returns the new state, or
    None if the lease is stale.
    """
    now = utcnow()
    with transaction(engine) as session:
        job = _owned(session, job_id, token)
        if job is None:
            if number is not None:
                _close_attempt(session, job_id, number, "stale", log, now)
            return None
        if number is None:
            _lost_by_executor(session, job, error, now)
        else:
            _close_attempt(session, job_id, number, "error", log, now)
        if job.attempts >= job.max_attempts:
            _fail(job, f"{job.kind} {job.key} failed after {job.attempts} attempt"
                       f"{'s' if job.attempts != 1 else ''}: {error}", now)
        else:
            job.state, job.token, job.owner, job.error = "pending", None, None, error
            job.not_before = now + timedelta(seconds=policy.delay(job.attempts))
        return job.state


def requeue_orphans(engine: Engine, me: str, expire_seconds: float) -> list[int]:
    """Give back to ``pending`` the running jobs whose orchestrator is gone.

    A job is orphaned when its owner is another process on this host that no
    longer exists, or when its lease was last renewed (its heartbeat) more than
    ``expire_seconds`` ago (an orchestrator on another host, or one that hangs).
    Jobs owned by HTCondor DAGs (owner ``htcondor:...``) are left to DAGMan.
    Returns the job ids.
    """
    stale_before = utcnow() - timedelta(seconds=expire_seconds)
    out = []
    with transaction(engine) as session:
        for job in session.scalars(select(Job).where(Job.state == "running")):
            owner = job.owner or ""
            if owner == me or owner.startswith("htcondor:"):
                continue
            beat = job.heartbeat or job.created
            if owner_alive(owner) and beat >= stale_before:
                continue
            gone = "is gone" if not owner_alive(owner) else "stopped renewing its lease"
            # compare and set: the owner may have finished the job since it was read (an
            # unconditional write would put a done job back to pending and run it twice)
            moved = session.execute(
                update(Job).where(Job.id == job.id, Job.state == "running",
                                  Job.token == job.token)
                .values(state="pending", token=None, owner=None,
                        error=f"re-queued: its orchestrator {owner or '?'} {gone}")
                .execution_options(synchronize_session=False))
            if moved.rowcount:  # type: ignore[attr-defined]
                out.append(job.id)
    return out


def heartbeat(engine: Engine, me: str) -> None:
    """Refresh the heartbeat of every running job owned by ``me``."""
    with transaction(engine) as session:
        session.execute(update(Job).where(Job.state == "running", Job.owner == me)
                        .values(heartbeat=utcnow()))


def retry(engine: Engine, job_id: int, policy: RetryPolicy) -> JobView:
    """Put a failed job back to pending with ``policy.max_attempts`` more attempts."""
    with transaction(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        if job.state != "failed":
            raise JobStateError(f"job {job_id} is {job.state}; only failed jobs can be retried")
        job.state, job.not_before, job.finished = "pending", None, None
        job.max_attempts = job.attempts + policy.max_attempts
        return JobView.of(job)


def get_job(engine: Engine, job_id: int) -> JobView:
    """The job with ``job_id``."""
    with transaction(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        return JobView.of(job)


def state_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """``{kind: {state: count}}`` of every job."""
    out: dict[str, dict[str, int]] = {}
    with transaction(engine) as session:
        rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind,
                                                                                  Job.state))
        for kind, state, count in rows:
            out.setdefault(kind, {})[state] = int(count)
    return out
