"""Executors: where claimed jobs run.  One interface, two engines that keep a pool.

An :class:`Executor` takes ``(job_id, token)`` pairs, runs
:func:`obsflow.orchestrate.worker.execute_job` on a worker, and hands back
:class:`Completion` objects.  A completion with ``lost`` set means the
executor lost the task (a pool process or Dask worker died, the scheduler
went away); the orchestrator then records the attempt as failed.

* :class:`LocalExecutor` — a process pool on this machine (``spawn``
  start method; on Linux every pool process dies with the orchestrator, within
  moments of it, even while it is still importing: see :mod:`obsflow._lifeline`;
  a killed orchestrator leaves no orphan finishing its jobs).
* :class:`DaskExecutor` — a ``dask.distributed`` client on
  ``executor.dask_scheduler``; a worker dying mid-task is handled by Dask,
  which re-runs the task elsewhere (the job layer counts the lost attempt).

HTCondor has no pool to submit to from here: it gets a DAG instead
(:mod:`obsflow.orchestrate.htcondor`).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass
from typing import Any, Protocol

from obsflow._lifeline import ORCHESTRATOR_VARIABLE
from obsflow.config import SiteConfig
from obsflow.exceptions import ExecutorError, UnknownOptionError
from obsflow.orchestrate.worker import Outcome, execute_job, prepare_worker

__all__ = ["Completion", "DaskExecutor", "Executor", "InlineExecutor", "LocalExecutor",
           "make_executor"]

logger = logging.getLogger(__name__)

QUEUED_PER_WORKER = 1
"""Jobs handed to an executor per worker beyond the one it runs: when a job ends the
next starts at once, instead of after the orchestrator's next turn (claim, submit)."""

_DASK_THREADS_CHECK_SECONDS = 2.0
"""How often the Dask executor asks the scheduler how many worker threads there are."""

@dataclass(frozen=True)
class Completion:
    """A finished task: the worker's :class:`Outcome`, or why the executor lost it."""

    job_id: int
    token: str
    outcome: Outcome | None
    lost: str | None = None


class Executor(Protocol):
    """Runs jobs somewhere; see the module docstring."""

    name: str

    @property
    def capacity(self) -> int:
        """How many jobs it takes at once: those running and those queued to start next."""
        ...

    def submit(self, job_id: int, token: str) -> None:
        """Start running a claimed job."""

    def wait(self, timeout: float) -> list[Completion]:
        """Completions that arrived within ``timeout`` seconds (maybe none)."""
        ...

    def running(self) -> int:
        """Tasks submitted and not yet completed."""
        ...

    def close(self) -> None:
        """Stop the workers this executor started (cancelling what runs)."""


class LocalExecutor:
    """A process pool of ``workers`` processes on this machine."""

    name = "local"

    def __init__(self, cfg: SiteConfig, workers: int) -> None:
        self.cfg, self.workers = cfg, max(1, workers)
        # the pool's processes read it on their first import of obsflow (obsflow._lifeline)
        self._lifeline = os.environ.get(ORCHESTRATOR_VARIABLE)
        os.environ[ORCHESTRATOR_VARIABLE] = str(os.getpid())
        self._pool = self._new_pool()
        self._futures: dict[cf.Future[Outcome], tuple[int, str]] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=prepare_worker)

    @property
    def capacity(self) -> int:
        return self.workers * (1 + QUEUED_PER_WORKER)

    def submit(self, job_id: int, token: str) -> None:
        future = self._pool.submit(execute_job, self.cfg, job_id, token)
        self._futures[future] = (job_id, token)

    def running(self) -> int:
        return len(self._futures)

    def wait(self, timeout: float) -> list[Completion]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            job_id, token = self._futures.pop(future)
            try:
                out.append(Completion(job_id, token, future.result()))
            except Exception as exc:  # the pool lost the task (process killed, ...)
                broken = broken or isinstance(exc, cf.process.BrokenProcessPool)
                out.append(Completion(job_id, token, None, f"{type(exc).__name__}: {exc}"))
        if broken:
            logger.warning("a pool process died; starting a new pool")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._lifeline is None:
            os.environ.pop(ORCHESTRATOR_VARIABLE, None)
        else:
            os.environ[ORCHESTRATOR_VARIABLE] = self._lifeline


class InlineExecutor:
    """Runs each job at once in this process (the local half of an HTCondor run; debugging)."""

    name = "inline"

    def __init__(self, cfg: SiteConfig) -> None:
        self.cfg = cfg
        self._done: list[Completion] = []

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, job_id: int, token: str) -> None:
        self._done.append(Completion(job_id, token, execute_job(self.cfg, job_id, token)))

    def running(self) -> int:
        return len(self._done)

    def wait(self, timeout: float) -> list[Completion]:
        out, self._done = self._done, []
        return out

    def close(self) -> None:
        self._done = []


def _dask_worker_plugin() -> Any:
    """A Dask ``WorkerPlugin`` readying each worker (present and future) for obsflow jobs."""
    from distributed import WorkerPlugin

    class ObsflowWorker(WorkerPlugin):  # type: ignore[misc]
        """:func:`prepare_worker` (which also overrides the nanny's malloc trimming)."""

        def setup(self, worker: Any) -> None:
            prepare_worker()

    return ObsflowWorker()


class DaskExecutor:
    """Submits jobs to a Dask distributed scheduler (``tcp://host:port``).

    On connecting it registers a worker plugin (name ``obsflow``) that every
    worker, including those joining later, runs once: :func:`prepare_worker`
    (imports, compiled kernels, and glibc's malloc told to keep freed memory,
    which also undoes the nanny's ``MALLOC_TRIM_THRESHOLD_``: with it every
    array above 128 KiB was a fresh ``mmap`` faulted in page by page, and
    calibration jobs ran about 35% slower on a Dask worker than in the local pool).
    """

    name = "dask"

    def __init__(self, cfg: SiteConfig, address: str, connect_timeout: float = 20.0) -> None:
        from distributed import Client

        self.cfg = cfg
        try:
            self._client = Client(address, timeout=connect_timeout, set_as_default=False)
        except OSError as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        self._client.register_plugin(_dask_worker_plugin(), name="obsflow")
        self._futures: dict[Any, tuple[int, str]] = {}
        self._finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads, self._threads_checked = 1, -math.inf

    @property
    def capacity(self) -> int:
        now = time.monotonic()
        if now - self._threads_checked > _DASK_THREADS_CHECK_SECONDS:  # an RPC: not every turn
            self._threads = max(1, sum(self._client.nthreads().values()))
            self._threads_checked = now
        return self._threads * (1 + QUEUED_PER_WORKER)

    def submit(self, job_id: int, token: str) -> None:
        future = self._client.submit(execute_job, self.cfg, job_id, token, pure=False,
                                     key=f"obsflow-job-{job_id}-{token[:8]}")
        self._futures[future] = (job_id, token)
        future.add_done_callback(self._finished.put)  # called from the client's thread

    def running(self) -> int:
        return len(self._futures)

    def wait(self, timeout: float) -> list[Completion]:
        if not self._futures:
            return []
        try:
            done = [self._finished.get(timeout=timeout) if timeout > 0
                    else self._finished.get_nowait()]
        except queue.Empty:
            return []
        while not self._finished.empty():
            done.append(self._finished.get_nowait())
        out = []
        for future in done:
            if future not in self._futures:  # already handed back
                continue
            job_id, token = self._futures.pop(future)
            if future.status == "finished":
                out.append(Completion(job_id, token, future.result()))
            else:
                exc = future.exception()
                out.append(Completion(job_id, token, None, f"{type(exc).__name__}: {exc}"))
            future.release()
        return out

    def close(self) -> None:
        for future in self._futures:
            future.cancel()
        self._client.close()


def make_executor(cfg: SiteConfig, workers: int | None = None) -> Executor:
    """The executor ``executor.kind`` names (``local`` or ``dask``).

    Raises
    ------
    ExecutorError
        ``dask`` without ``executor.dask_scheduler``, or the scheduler is unreachable.
    UnknownOptionError
        ``htcondor`` (it writes DAGs, see :func:`obsflow.orchestrate.htcondor.write_workflow`).
    """
    kind = cfg.executor.kind
    if kind == "local":
        return LocalExecutor(cfg, workers or cfg.executor.worker_count)
    if kind == "dask":
        if not cfg.executor.dask_scheduler:
            raise ExecutorError("executor.kind = 'dask' needs executor.dask_scheduler "
                                "(e.g. tcp://head:8786)")
        return DaskExecutor(cfg, cfg.executor.dask_scheduler)
    raise UnknownOptionError("executor with a worker pool", kind, ["dask", "local"])
