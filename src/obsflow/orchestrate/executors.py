"""Executors: where claimed jobs run.  One interface, two engines that keep a pool.

An :class:`Executor` takes ``(job_id, token)`` pairs, runs
:func:`obsflow.orchestrate.worker.execute_job` on a worker, and hands back
:class:`Completion` objects.  A completion with ``lost`` set means the
executor lost the task (a pool process or Dask worker died, the scheduler
went away); the orchestrator then records the attempt as failed.

* :class:`LocalExecutor` — a process pool on this machine (``spawn``
  start method; on Linux every pool process dies with the orchestrator, so
  a killed orchestrator leaves no orphan finishing its jobs).
* :class:`DaskExecutor` — a ``dask.distributed`` client on
  ``executor.dask_scheduler``; a worker dying mid-task is handled by Dask,
  which re-runs the task elsewhere (the job layer counts the lost attempt).

HTCondor has no pool to submit to from here: it gets a DAG instead
(:mod:`obsflow.orchestrate.htcondor`).
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

from obsflow.config import SiteConfig
from obsflow.exceptions import UnknownOptionError
from obsflow.orchestrate.errors import ExecutorError
from obsflow.orchestrate.worker import Outcome, execute_job

__all__ = ["Completion", "DaskExecutor", "Executor", "InlineExecutor", "LocalExecutor",
           "make_executor"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_DASK_POLL_SECONDS = 0.01


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
        """How many jobs it runs at once."""
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


def _die_with_parent() -> None:
    """Pool initializer: on Linux, ask for SIGKILL when the orchestrator process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # pragma: no cover - exotic libc
        return
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # died before prctl took effect
        os._exit(1)


class LocalExecutor:
    """A process pool of ``workers`` processes on this machine."""

    name = "local"

    def __init__(self, cfg: SiteConfig, workers: int) -> None:
        self.cfg, self.workers = cfg, max(1, workers)
        self._pool = self._new_pool()
        self._futures: dict[cf.Future[Outcome], tuple[int, str]] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_die_with_parent)

    @property
    def capacity(self) -> int:
        return self.workers

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


class DaskExecutor:
    """Submits jobs to a Dask distributed scheduler (``tcp://host:port``)."""

    name = "dask"

    def __init__(self, cfg: SiteConfig, address: str, connect_timeout: float = 20.0) -> None:
        from distributed import Client

        self.cfg = cfg
        try:
            self._client = Client(address, timeout=connect_timeout, set_as_default=False)
        except OSError as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        self._futures: dict[Any, tuple[int, str]] = {}

    @property
    def capacity(self) -> int:
        threads = self._client.nthreads()
        return max(1, sum(threads.values()))

    def submit(self, job_id: int, token: str) -> None:
        future = self._client.submit(execute_job, self.cfg, job_id, token, pure=False,
                                     key=f"obsflow-job-{job_id}-{token[:8]}")
        self._futures[future] = (job_id, token)

    def running(self) -> int:
        return len(self._futures)

    def wait(self, timeout: float) -> list[Completion]:
        if not self._futures:
            return []
        deadline = time.monotonic() + timeout
        while not any(f.done() for f in self._futures) and time.monotonic() < deadline:
            time.sleep(_DASK_POLL_SECONDS)
        out = []
        for future in [f for f in self._futures if f.done()]:
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
