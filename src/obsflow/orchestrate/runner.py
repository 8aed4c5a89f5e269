"""The orchestrator: turns arrivals and events into jobs and feeds them to an executor.

On start it removes the temporary files killed writers left in the site
(:func:`obsflow.site.sweep_site`; again every ``executor.stale_temp_seconds``
while it runs), then one loop (:meth:`Orchestrator.run`), each turn:

1. every quarter of ``executor.lease_seconds``, re-queue the running jobs of
   dead orchestrators and those whose lease expired (see :class:`LeaseTiming`);
2. (every :data:`SCAN_SECONDS`, and at once after an ingest job) enqueue an
   ``ingest`` job when the incoming folder has settled files, or raw files
   wait to be parsed, or exposures wait to be assembled (one ingest job at
   a time: ingest is sequential by nature);
3. (likewise) consume ``exposure_ready`` events: one ``calibrate`` job per Level-1
   product version and one ``program`` job per program first seen (both in
   the transaction that marks the event consumed, so nothing is lost or
   done twice);
4. claim pending jobs whose backoff has passed and submit them, up to the
   executor's capacity, highest priority first (fresh data before the jobs
   of a reprocessing campaign), then oldest first;
5. record what the executor lost (a dead worker) as a failed attempt.

``register`` jobs are enqueued by the calibrate job itself when it commits.
Without ``watch`` the loop ends when the chain is idle: no pending or
running job, no unconsumed event and nothing in the incoming folder.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, exists, or_, select

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.events import has_unconsumed, take
from obsflow.migrations import init_schema
from obsflow.models.identity import ProductRef
from obsflow.orchestrate.executors import Completion, Executor
from obsflow.orchestrate.handlers import calibrate_key_prefix, calibrate_spec, program_spec
from obsflow.orchestrate.htcondor import Workflow
from obsflow.orchestrate.jobs import (
    JobSpec,
    claim,
    enqueue,
    fail_attempt,
    heartbeat,
    policy_of,
    requeue_orphans,
    state_counts,
    transaction,
    utcnow,
)
from obsflow.orchestrate.tables import Job
from obsflow.owners import process_id
from obsflow.site import sweep_site

__all__ = ["LeaseTiming", "Orchestrator", "RunSummary", "run_site"]

logger = logging.getLogger(__name__)

MIN_SWEEP_INTERVAL_SECONDS = 60.0
"""Shortest time between two sweeps of the site's temporary files while running, seconds."""


@dataclass(frozen=True)
class LeaseTiming:
    """When leases are renewed, when they expire and how often expiry is checked, seconds.

    An orchestrator renews the lease (the heartbeat) of every job it runs each
    ``lease / 4`` s, from a thread of its own (a long turn of the loop does not
    starve it).  A lease not renewed for ``3 lease / 4`` s has expired, and
    every live orchestrator looks for expired leases each ``lease / 4`` s: a
    job whose orchestrator died (or hangs) is back to ``pending`` at most
    ``lease`` s after its last renewal.  On one host a dead orchestrator's
    jobs are re-queued at the first check (its pid is gone).  Hosts sharing a
    database must keep their clocks in step (NTP) to well within ``lease / 4``.
    """

    lease: float

    @property
    def renew(self) -> float:
        return self.lease / 4

    @property
    def expire(self) -> float:
        return 3 * self.lease / 4

    @property
    def check(self) -> float:
        return self.lease / 4


class _LeaseRenewer(threading.Thread):
    """Renews the leases of ``me``'s running jobs every ``interval`` s until stopped."""

    def __init__(self, engine: Engine, me: str, interval: float) -> None:
        super().__init__(name="obsflow-lease-renewer", daemon=True)
        self.engine, self.me, self.interval = engine, me, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                heartbeat(self.engine, self.me)
            except Exception as exc:  # a database hiccup: try again next time
                logger.warning("could not renew the job leases: %s", exc)

    def stop(self) -> None:
        self.stopped.set()
        self.join()

TICK_SECONDS = 0.2
"""Longest wait for a completion in one turn of the loop, seconds."""

SCAN_SECONDS = 0.5
"""How often a busy loop looks for arrivals and unconsumed events, seconds (at once after an
ingest job ends): the turns between only claim and submit, which keeps the orchestrator's
share of the CPU small while jobs complete every few milliseconds."""

_GROUP_LOOKAHEAD = 64
"""Extra pending jobs looked at when some are held back by their group."""

Progress = Callable[[dict[str, dict[str, int]]], None]


@dataclass
class RunSummary:
    """What one run did: job counts by kind and state at the end, and the time taken."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    requeued: list[int] = field(default_factory=list)
    """Jobs of dead orchestrators (or expired leases) this run put back to pending."""
    swept: list[Path] = field(default_factory=list)
    """Temporary files of killed writers this run removed."""
    workflow: Workflow | None = None
    """The HTCondor DAG written (``executor.kind = "htcondor"``), else None."""

    def total(self, state: str) -> int:
        """Number of jobs in ``state`` over every kind."""
        return sum(by_state.get(state, 0) for by_state in self.counts.values())


def _incoming_files(cfg: SiteConfig) -> bool:
    """True if the incoming folder holds a file ingest will take (settled or not yet);
    entries ingest refuses (links, folders, FIFOs) do not count."""
    from obsflow.ingest.rawstore import scan_incoming

    scan = scan_incoming(cfg.incoming_dir, cfg.ingest.settle_seconds, time.time())
    return bool(scan.ready or scan.settling)


class Orchestrator:
    """Runs the chain of one site on one executor (see the module docstring)."""

    def __init__(self, cfg: SiteConfig, executor: Executor, *,
                 progress: Progress | None = None, engine: Engine | None = None,
                 kinds: frozenset[str] | None = None) -> None:
        self.cfg, self.executor, self.progress = cfg, executor, progress
        self.kinds = kinds  # None: every kind; else only these are run here
        self.engine = engine or make_engine(cfg.database_url)
        self.me = process_id()
        self.policy = policy_of(cfg)
        self.summary = RunSummary()
        self._ingest_failed = False
        self._my_ingests: set[int] = set()
        self._groups: dict[int, str] = {}  # running job id -> its group
        self.lease = LeaseTiming(cfg.executor.lease_seconds)
        self._last_orphan_check = self._last_scan = 0.0
        self._last_sweep = -math.inf
        self._scan_due = True  # look at arrivals and events on the next turn

    def close(self) -> None:
        """Dispose of the database engine (the executor is the caller's)."""
        self.engine.dispose()

    # -- the loop ---------------------------------------------------------------------

    def run(self, *, watch: bool = False, stop: Callable[[], bool] | None = None) -> RunSummary:
        """Run until idle (or, with ``watch``, until ``stop()`` is true)."""
        started = time.perf_counter()
        init_schema(self.engine, profile=self.cfg.profile.name)  # migrations, once
        renewer = _LeaseRenewer(self.engine, self.me, self.lease.renew)
        renewer.start()
        try:
            while True:
                self.step(watch=watch)
                if stop is not None and stop():
                    break
                if not watch and self.idle():
                    break
        finally:
            renewer.stop()
        self.summary.counts = state_counts(self.engine)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def step(self, *, watch: bool = False) -> None:
        """One turn of the loop (see the module docstring)."""
        now = time.monotonic()
        if now - self._last_sweep >= max(self.cfg.executor.stale_temp_seconds,
                                         MIN_SWEEP_INTERVAL_SECONDS):
            self._last_sweep = now
            self.summary.swept += sweep_site(self.cfg)
        if now - self._last_orphan_check >= self.lease.check:
            self._last_orphan_check = now
            self.summary.requeued += requeue_orphans(self.engine, self.me, self.lease.expire)
        if self._scan_due or now - self._last_scan >= SCAN_SECONDS:
            self._scan_due, self._last_scan = False, now
            self._maybe_ingest(watch)
            self.consume_events()
        submitted = self._submit_ready()
        completions = self.executor.wait(TICK_SECONDS if self.executor.running() else 0)
        for completion in completions:
            self._record(completion)
        if not submitted and not completions and not self.executor.running():
            time.sleep(TICK_SECONDS)  # nothing to do: wait for arrivals or a backoff
        if self.progress is not None:
            self.progress(state_counts(self.engine))

    # -- ingest -----------------------------------------------------------------------

    def _ingest_work(self) -> bool:
        from obsflow.ingest import pending_work

        return pending_work(self.cfg, self.engine)

    def _maybe_ingest(self, watch: bool) -> None:
        with transaction(self.engine) as session:
            last = session.scalars(select(Job).where(Job.kind == "ingest")
                                   .order_by(Job.id.desc()).limit(1)).first()
            if last is not None and last.state in ("pending", "running"):
                return
            if last is not None and last.state == "failed" and last.id in self._my_ingests:
                self._ingest_failed = True
                if not watch:
                    return
        if not self._ingest_work():
            return
        with transaction(self.engine) as session:
            key = f"ingest:{utcnow():%Y%m%dT%H%M%S.%f}:{uuid.uuid4().hex[:8]}"
            job = enqueue(session, JobSpec("ingest", key, {}), self.policy)
            if job is not None:
                self._my_ingests.add(job.id)

    # -- events -----------------------------------------------------------------------

    def consume_events(self, limit: int = 500) -> int:
        """Turn unconsumed ``exposure_ready`` events into jobs; return how many were consumed."""
        with transaction(self.engine) as session:
            events = take(session, "exposure_ready", limit)
            for event in events:
                for spec in self._jobs_for(session, dict(event.payload)):
                    enqueue(session, spec, self.policy)
        return len(events)

    def _jobs_for(self, session: Any, payload: dict[str, Any]) -> list[JobSpec]:
        version = int(payload["version"])
        specs = [calibrate_spec(payload)]
        program = payload.get("program") or {}
        if program.get("program"):
            specs.insert(0, program_spec(str(program["program"]), str(program.get("pi_name", "")),
                                         str(program.get("title", "")), None))
        prefix = calibrate_key_prefix(ProductRef.from_dict(payload["ref"]).data_id.basename)
        older = session.scalars(select(Job).where(Job.kind == "calibrate", Job.state == "pending",
                                                  Job.key.startswith(prefix))).all()
        for job in older:
            if int(job.inputs.get("version", 0)) < version:
                job.state, job.finished = "done", utcnow()
                job.outputs = {"superseded": True, "products": []}
        return specs

    # -- submission and results ---------------------------------------------------------

    def _submit_ready(self) -> int:
        """Claim and submit what the executor has room for; return how many were submitted."""
        free = self.executor.capacity - self.executor.running()
        if free <= 0:
            return 0
        submitted = 0
        now = utcnow()
        query = select(Job.id).where(Job.state == "pending",
                                     or_(Job.not_before.is_(None), Job.not_before <= now))
        if self.kinds is not None:
            query = query.where(Job.kind.in_(sorted(self.kinds)))
        with transaction(self.engine) as session:
            order = (Job.priority.desc(), Job.id)
            rows = session.execute(select(Job.id, Job.inputs).where(Job.id.in_(
                query.order_by(*order).limit(free + _GROUP_LOOKAHEAD))).order_by(*order)).all()
        busy = set(self._groups.values())
        for job_id, inputs in rows:
            group = inputs.get("group") if isinstance(inputs, dict) else None
            if free <= 0:
                break
            if group is not None and group in busy:
                continue
            token = claim(self.engine, job_id, self.me)
            if token is None:
                continue
            self.executor.submit(job_id, token)
            free, submitted = free - 1, submitted + 1
            if group is not None:
                self._groups[job_id] = group
                busy.add(group)
        return submitted

    def _record(self, completion: Completion) -> None:
        self._groups.pop(completion.job_id, None)
        if completion.outcome is None or completion.outcome.kind == "ingest":
            self._scan_due = True  # new exposures (or a lost job): look at once
        if completion.lost is not None:
            logger.warning("job %d lost by the %s executor: %s", completion.job_id,
                           self.executor.name, completion.lost)
            fail_attempt(self.engine, completion.job_id, completion.token, None,
                         f"lost by the {self.executor.name} executor: {completion.lost}", "",
                         self.policy)
        elif completion.outcome is not None and completion.outcome.state == "failed":
            logger.warning("job %d failed: %s", completion.job_id, completion.outcome.error)

    def idle(self) -> bool:
        """No job pending or running, no event unconsumed, nothing waiting in incoming."""
        if self.executor.running():
            return False
        active: ColumnElement[bool] = Job.state.in_(("pending", "running"))
        if self.kinds is not None:
            active = and_(active, Job.kind.in_(sorted(self.kinds)))
        with transaction(self.engine) as session:
            busy = session.scalar(select(exists().where(active)))
            unread = has_unconsumed(session, "exposure_ready")
        if busy or unread:
            return False
        if self._ingest_failed:
            return True
        return not _incoming_files(self.cfg) and not self._ingest_work()


def run_site(cfg: SiteConfig, *, watch: bool = False, workers: int | None = None,
             progress: Progress | None = None,
             stop: Callable[[], bool] | None = None) -> RunSummary:
    """Run the chain of a site on its configured executor (``executor.kind``).

    ``local`` and ``dask`` run every job through their pool until idle (or
    ``stop()`` with ``watch``).  ``htcondor`` runs ingest and program jobs
    here, then writes the calibrate/register jobs as a DAG under
    ``<logs>/htcondor/`` and submits it when a schedd is reachable
    (:mod:`obsflow.orchestrate.htcondor`).
    """
    from obsflow.orchestrate.executors import InlineExecutor, make_executor

    if cfg.executor.kind == "htcondor":
        return _run_htcondor(cfg, progress, InlineExecutor(cfg))
    executor = make_executor(cfg, workers)
    orchestrator = Orchestrator(cfg, executor, progress=progress)
    try:
        return orchestrator.run(watch=watch, stop=stop)
    finally:
        executor.close()
        orchestrator.close()


def _run_htcondor(cfg: SiteConfig, progress: Progress | None, executor: Executor) -> RunSummary:
    from obsflow.orchestrate.htcondor import submit_workflow, write_workflow

    orchestrator = Orchestrator(cfg, executor, progress=progress,
                                kinds=frozenset({"ingest", "program"}))
    try:
        summary = orchestrator.run()
        dag_dir = cfg.logs_dir / "htcondor" / f"dag-{utcnow():%Y%m%dT%H%M%S%f}"
        workflow = write_workflow(cfg, orchestrator.engine, dag_dir)
        if workflow is not None:
            summary.workflow = submit_workflow(workflow)
        summary.counts = state_counts(orchestrator.engine)
        return summary
    finally:
        executor.close()
        orchestrator.close()
