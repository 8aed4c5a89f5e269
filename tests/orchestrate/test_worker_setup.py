"""Worker processes: one engine per database, warmed-up kernels and a frozen GC (pool and Dask).

This module imports nothing of the calibration package (nor the shared
fixtures, which do): the local pool's processes import it to run
:func:`worker_state`, which must see only what the pool's initializer loaded.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.orchestrate import worker
from obsflow.orchestrate.executors import DaskExecutor, LocalExecutor
from obsflow.orchestrate.jobs import (
    JobSpec,
    RetryPolicy,
    claim,
    enqueue_all,
    transaction,
)
from obsflow.orchestrate.tables import Job
from obsflow.owners import process_id
from obsflow.procmem import keep_freed_memory
from obsflow.site import init_site

from .dask_cluster import DaskCluster

POLICY = RetryPolicy(max_attempts=1, backoff_seconds=0.0)
KERNELS = "obsflow.calibrate.jumps"


def worker_state() -> dict[str, Any]:
    """What a worker process looks like (run in pool processes: module level, picklable)."""
    import os

    jumps = sys.modules.get(KERNELS)
    return {"pid": os.getpid(), "frozen": gc.get_freeze_count(),
            "pipeline": "obsflow.calibrate.pipeline" in sys.modules,
            "kernels": len(jumps._jump_pools.signatures) if jumps is not None else 0}


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _site(root: Path) -> SiteConfig:
    return init_site(root, profile="webb_like", env={})


def _claimed_noops(cfg: SiteConfig, n: int) -> list[tuple[int, str]]:
    """``n`` noop jobs enqueued and claimed by this process: (job id, lease token)."""
    engine = make_engine(cfg.database_url)
    try:
        keys = [f"noop-{i}" for i in range(n)]
        assert enqueue_all(engine, [JobSpec("noop", k, {"seconds": 0}) for k in keys], POLICY) == n
        with transaction(engine) as session:
            ids = list(session.scalars(select(Job.id).where(Job.key.in_(keys)).order_by(Job.id)))
        out = []
        for job_id in ids:
            token = claim(engine, job_id, process_id())
            assert token is not None
            out.append((job_id, token))
        return out
    finally:
        engine.dispose()


@pytest.fixture
def engines() -> Iterator[dict[str, Any]]:
    """The worker's engine cache, emptied for the test and restored after it."""
    saved = dict(worker._ENGINES)
    worker._ENGINES.clear()
    try:
        yield worker._ENGINES
    finally:
        for engine in worker._ENGINES.values():
            engine.dispose()
        worker._ENGINES.clear()
        worker._ENGINES.update(saved)


def test_execute_job_reuses_the_engine_of_its_database(tmp_path: Path,
                                                       engines: dict[str, Any]) -> None:
    cfg = _site(tmp_path / "site")
    seen = []
    for job_id, token in _claimed_noops(cfg, 2):
        outcome = worker.execute_job(cfg, job_id, token)
        assert (outcome.job_id, outcome.kind, outcome.state) == (job_id, "noop", "done")
        assert list(engines) == [cfg.database_url]
        seen.append(engines[cfg.database_url])
    assert seen[0] is seen[1]


def test_engine_cache_keeps_the_four_most_recently_used(tmp_path: Path,
                                                        engines: dict[str, Any]) -> None:
    urls = [f"sqlite:///{tmp_path / f'db{i}.sqlite'}" for i in range(5)]
    made = [worker._engine(url) for url in urls]
    assert worker._ENGINES_KEPT == 4 and len(set(map(id, made))) == 5
    assert list(engines) == urls[1:]  # the first one was dropped
    assert worker._engine(urls[1]) is made[1]  # kept, and now the most recent
    pool = made[2].pool
    again = worker._engine(urls[0])  # made anew; drops urls[2], the least recently used
    assert again is not made[0]
    assert list(engines) == [urls[3], urls[4], urls[1], urls[0]]
    assert made[2].pool is not pool  # the dropped engine was disposed (its pool replaced)


def test_local_pool_processes_are_prepared(tmp_path: Path) -> None:
    cfg = _site(tmp_path / "site")
    executor = LocalExecutor(cfg, 2)
    try:
        assert executor.capacity == 4
        [(job_id, token)] = _claimed_noops(cfg, 1)
        executor.submit(job_id, token)
        done = executor.wait(60)
        assert [(c.job_id, c.lost) for c in done] == [(job_id, None)]
        outcome = done[0].outcome
        assert outcome is not None and outcome.state == "done"
        states = [executor._pool.submit(worker_state).result(timeout=60) for _ in range(4)]
    finally:
        executor.close()
    for state in states:
        assert state["frozen"] > 0, state
        assert state["pipeline"], state  # imported by warm_up, not by a job (all were noops)
        assert state["kernels"] >= 1, state  # the kernels were loaded before any calibration
    here = worker_state()
    assert all(s["pid"] != here["pid"] for s in states)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, Callable[[], None], dict[str, int]]]:
    """A ``dask scheduler`` and one ``dask worker`` on 127.0.0.1.

    Yields the scheduler address, a function starting one more worker, and
    each first worker's ``gc.get_freeze_count()`` before anyone registered a plugin.
    """
    running = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        running.start(1)
        from distributed import Client

        with Client(running.address, timeout=30, set_as_default=False) as client:
            before = client.run(gc.get_freeze_count)
        yield running.address, running.add_worker, before
    finally:
        running.stop()


def test_dask_plugin_prepares_present_and_future_workers(
        tmp_path: Path, cluster: tuple[str, Callable[[], None], dict[str, int]]) -> None:
    from distributed import Client

    address, start_worker, before = cluster
    assert len(before) == 1 and set(before.values()) == {0}  # Dask itself freezes nothing
    cfg = _site(tmp_path / "site")
    executor = DaskExecutor(cfg, address)
    try:
        with Client(address, timeout=30, set_as_default=False) as client:
            frozen = client.run(gc.get_freeze_count)
            assert set(frozen) == set(before) and all(n > 0 for n in frozen.values()), frozen
            assert client.run(keep_freed_memory) == dict.fromkeys(before, True)
            assert executor.capacity == 2  # one thread, plus one job queued behind it

            [(job_id, token)] = _claimed_noops(cfg, 1)
            executor.submit(job_id, token)
            assert executor.running() == 1
            done = executor.wait(10)
            assert [(c.job_id, c.token, c.lost) for c in done] == [(job_id, token, None)]
            outcome = done[0].outcome
            assert outcome is not None and (outcome.job_id, outcome.state) == (job_id, "done")
            assert executor.running() == 0 and executor.wait(0) == []

            start_worker()  # joins after the plugin was registered
            client.wait_for_workers(2, timeout=60)
            [late] = set(client.scheduler_info()["workers"]) - set(before)

            def late_frozen() -> bool:
                return bool(client.run(gc.get_freeze_count, workers=[late])[late] > 0)

            _wait_for(late_frozen, 60, "the plugin to prepare the late worker")
            assert client.run(keep_freed_memory, workers=[late]) == {late: True}
    finally:
        executor.close()
