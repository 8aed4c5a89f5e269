"""Run one job in this process: the code every executor calls on its workers.

:func:`execute_job` is what the local process pool, a Dask worker and an
HTCondor node run.  It records the attempt, runs the handler with its log
captured, and commits the result under the job's lease token (see
:mod:`obsflow.orchestrate.jobs`).  It never raises for a failing job: the
failure is recorded (retry later, or ``failed`` after the last attempt).

By hand, or from an HTCondor DAG node::

    python -m obsflow.orchestrate.worker --site SITE --job ID [--token TOKEN] [--with-children]
    python -m obsflow.orchestrate.worker --site SITE --children-of ID

Without ``--token`` the job must be ``pending``; it is claimed first.
``--children-of`` runs every pending job whose parent is ``ID`` (the
register jobs of a calibrate job), then their pending children, and so on
(the ``lightcurve`` job of a time series's ``_rateints``); ``--job ID
--with-children`` runs the job, then its pending children the same way
(a campaign's ``reprocess`` job and the light curve it enqueues).  Exit
status 0 when every job run is done, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.orchestrate.handlers import JobContext, run_handler
from obsflow.orchestrate.jobs import (
    begin_attempt,
    claim,
    fail_attempt,
    finish_attempt,
    policy_of,
    transaction,
)
from obsflow.orchestrate.tables import Job
from obsflow.owners import process_id

__all__ = ["Outcome", "execute_job", "main", "prepare_worker"]

_LOG_LIMIT = 200_000
"""Characters of log kept per attempt."""

_ENGINES: dict[str, Engine] = {}
"""Engines of this process by database URL: a worker keeps its connections and the
compiled-statement cache from one job to the next (the latter alone saves ~15 ms a job)."""

_ENGINES_KEPT = 4
"""Most engines a process keeps (an inline executor may see several sites)."""


def _engine(url: str) -> Engine:
    """This process's engine on ``url`` (made on first use, kept for later jobs)."""
    engine = _ENGINES.pop(url, None) or make_engine(url)
    _ENGINES[url] = engine  # most recently used last
    while len(_ENGINES) > _ENGINES_KEPT:
        _ENGINES.pop(next(iter(_ENGINES))).dispose()
    return engine


def prepare_worker() -> None:
    """Get a fresh worker process ready: imports, compiled kernels, ASDF, then freeze the GC.

    Run once per worker process (the local pool's initializer, the Dask worker
    plugin).  Imports and the calibration kernels (see
    :func:`obsflow.calibrate.pipeline.warm_up`) and the first ASDF write
    (:func:`obsflow.models.asdfmeta.warm_up`) then do not count against the
    first job, and ``gc.freeze`` moves the tens of thousands of module-level
    objects out of the collector's sight, which otherwise walks them again
    and again while a job allocates.  glibc's malloc is told to keep freed
    memory (:func:`obsflow.procmem.keep_freed_memory`): each exposure reuses
    the last one's pages instead of faulting them in again.
    """
    import obsflow.archive.register  # noqa: F401  (imported for its side effect: warm-up)
    from obsflow.calibrate.pipeline import warm_up
    from obsflow.models import asdfmeta
    from obsflow.procmem import keep_freed_memory

    keep_freed_memory()
    warm_up()
    asdfmeta.warm_up()
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class Outcome:
    """What happened to one execution: the job's new state (or ``stale``) and its duration."""

    job_id: int
    kind: str
    state: str  # done | pending (will retry) | failed | stale
    seconds: float
    error: str | None = None


@contextmanager
def _captured_log() -> Iterator[io.StringIO]:
    """Collect obsflow's log records and warnings of the current job into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("obsflow")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield buffer
        for w in caught:
            buffer.write(f"warning: {w.category.__name__}: {w.message}\n")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def execute_job(cfg: SiteConfig, job_id: int, token: str) -> Outcome:
    """Run job ``job_id`` under lease ``token`` and record the result (never raises for the job)."""
    started = time.perf_counter()
    engine = _engine(cfg.database_url)
    policy = policy_of(cfg)
    begun = begin_attempt(engine, job_id, token, process_id())
    if begun is None:
        return Outcome(job_id, "?", "stale", 0.0)
    job, number = begun
    log = ""
    try:
        with _captured_log() as buffer:
            try:
                result = run_handler(job.kind, JobContext(cfg, engine), job.inputs)
            finally:
                log = buffer.getvalue()
    except Exception as exc:  # every job failure is recorded, never raised
        log = (log + traceback.format_exc())[-_LOG_LIMIT:]
        state = fail_attempt(engine, job_id, token, number, _describe(exc), log, policy)
        return Outcome(job_id, job.kind, state or "stale", time.perf_counter() - started,
                       _describe(exc))
    ok = finish_attempt(engine, job_id, token, number, result.outputs, result.children,
                        log[-_LOG_LIMIT:], policy)
    return Outcome(job_id, job.kind, "done" if ok else "stale", time.perf_counter() - started)


def _run_by_hand(cfg: SiteConfig, job_id: int, token: str | None, owner: str) -> Outcome:
    """Run a job: claim it if pending (with ``token`` when given), else it must hold ``token``."""
    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            job = session.get(Job, job_id)
            state = job.state if job is not None else "missing"
        if state == "pending":
            token = claim(engine, job_id, owner, token)
    finally:
        engine.dispose()
    if token is None:
        return Outcome(job_id, "?", "stale", 0.0, f"job {job_id} is {state}, not pending")
    return execute_job(cfg, job_id, token)


def _children(cfg: SiteConfig, parent: int) -> list[int]:
    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            return list(session.scalars(select(Job.id).where(
                Job.parent_id == parent, Job.state == "pending").order_by(Job.id)))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run one job (or the pending children of one); 0 if all are done."""
    from obsflow.site import open_site

    parser = argparse.ArgumentParser(prog="python -m obsflow.orchestrate.worker",
                                     description="Run obsflow jobs in this process.")
    parser.add_argument("--site", required=True, type=Path, help="site folder")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--job", type=int, help="id of the job to run")
    group.add_argument("--children-of", type=int, help="run the pending children of this job")
    parser.add_argument("--token", default=None, help="lease token of a claimed job")
    parser.add_argument("--with-children", action="store_true",
                        help="with --job: then run the pending jobs it enqueued, and theirs")
    args = parser.parse_args(argv)
    if args.with_children and args.job is None:
        parser.error("--with-children goes with --job")
    cfg = open_site(args.site)
    owner = f"htcondor:{process_id()}" if args.token or args.children_of else process_id()
    outcomes = [] if args.job is None else [_run_by_hand(cfg, args.job, args.token, owner)]
    if args.children_of is not None or args.with_children:
        parents = [args.children_of] if args.job is None else [args.job]
        while parents:  # the register jobs, then what they enqueued (a time series's light curve)
            ran = [_run_by_hand(cfg, child, None, owner)
                   for parent in parents for child in _children(cfg, parent)]
            outcomes += ran
            parents = [o.job_id for o in ran]
    for outcome in outcomes:
        print(f"job {outcome.job_id} ({outcome.kind}): {outcome.state} in "
              f"{outcome.seconds:.2f} s" + (f": {outcome.error}" if outcome.error else ""))
    return 0 if all(o.state == "done" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
