"""The chain on a real Dask cluster: a scheduler and two workers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.orchestrate import run_site
from obsflow.orchestrate.handlers import ARCHIVED_KINDS
from obsflow.orchestrate.jobs import transaction
from obsflow.orchestrate.tables import Job, JobAttempt
from obsflow.simulate.run import SimResult

from .conftest import (
    archive_products,
    attempts_of,
    executed,
    jobs_of,
    make_site,
    mosaics,
    products_expected,
    wait_for,
)
from .dask_cluster import DaskCluster


def _listening(pid: int) -> list[tuple[str, int]]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    out = []
    for proc in procs:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                out.append((conn.laddr.ip, conn.laddr.port))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[int]]]:
    """(scheduler address, pids) of ``dask scheduler`` + two ``dask worker`` processes."""
    running = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        running.start(2)
        yield running.address, running.pids
    finally:
        running.stop()


def test_every_port_of_the_cluster_is_on_loopback(cluster: tuple[str, list[int]]) -> None:
    address, pids = cluster
    assert address.startswith("tcp://127.0.0.1:")
    ports = [port for pid in pids for port in _listening(pid)]
    assert len(ports) >= 5  # scheduler + dashboard, each worker (and nanny) and its dashboard
    assert {ip for ip, _ in ports} == {"127.0.0.1"}, ports


def _dask_site(tmp_path: Path, sim: SimResult, address: str) -> SiteConfig:
    return make_site(tmp_path / "site", sim, kind="dask", dask_scheduler=address)


def _first_running_calibrate(cfg: SiteConfig) -> JobAttempt | None:
    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            return session.scalars(select(JobAttempt).join(Job, Job.id == JobAttempt.job_id)
                                   .where(Job.kind == "calibrate",
                                          JobAttempt.outcome == "running")).first()
    finally:
        engine.dispose()


def test_worker_killed_mid_job_is_retried_and_finished_once(
        tmp_path: Path, downlink: SimResult, cluster: tuple[str, list[int]]) -> None:
    from distributed import Client

    address, _ = cluster
    with Client(address, timeout=30) as client:
        client.restart()  # fresh worker processes: the first job pays imports and compiling
    cfg = _dask_site(tmp_path, downlink, address)
    runner = threading.Thread(target=run_site, args=(cfg,))
    runner.start()
    try:
        wait_for(lambda: _first_running_calibrate(cfg) is not None, 150,
                 "a calibrate job to start")
        victim = _first_running_calibrate(cfg)
        assert victim is not None
        os.kill(int(victim.worker.rpartition(":")[2]), signal.SIGKILL)
    finally:
        runner.join(timeout=180)
    assert not runner.is_alive()
    job = next(j for j in jobs_of(cfg) if j.id == victim.job_id)
    assert job.state == "done" and job.attempts == 2
    assert [a.outcome for a in attempts_of(cfg, job.id)] == ["lost", "ok"]
    n = executed(downlink)
    jobs = jobs_of(cfg)
    assert {j.state for j in jobs} == {"done"}
    assert sum(j.kind == "calibrate" for j in jobs) == n
    assert sum(j.kind == "register" for j in jobs) == n * (len(ARCHIVED_KINDS) - 1)
    products = archive_products(cfg)
    assert len(products) == len(set(products)) == products_expected(downlink)
    assert sum(j.kind == "image3" for j in jobs) == mosaics(downlink)
    assert {version for _, _, version in products} == {1}


def test_a_campaign_runs_on_the_dask_cluster(
        tmp_path: Path, downlink: SimResult, cluster: tuple[str, list[int]]) -> None:
    """Reprocessing goes through the same job layer: its items run on the Dask workers."""
    from obsflow.orchestrate.jobs import policy_of
    from obsflow.reprocess.campaign import campaign_status, start_campaign
    from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing

    address, pids = cluster
    cfg = _dask_site(tmp_path, downlink, address)
    assert run_site(cfg).total("failed") == 0
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(recipe="image", kind="cal"))
        name = start_campaign(engine, plan, policy_of(cfg), name="on-dask")
        assert run_site(cfg).total("failed") == 0
        status = campaign_status(engine, name)
    finally:
        engine.dispose()
    n = executed(downlink)
    assert status.state == "done" and status.counts == {"done": n}
    cluster_pids = {p for pid in pids for p in [pid, *(
        c.pid for c in psutil.Process(pid).children(recursive=True))]}
    workers = {int(a.worker.rpartition(":")[2]) for j in jobs_of(cfg) if j.kind == "reprocess"
               for a in attempts_of(cfg, j.id)}
    assert workers and workers <= cluster_pids  # ran in the cluster's worker processes
    assert sorted(v for _, k, v in archive_products(cfg) if k == "cal") == [1] * n + [2] * n
