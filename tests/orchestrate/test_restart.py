"""SIGKILLs and SIGSTOPs of `obsflow run` and of its pool workers, on a site with faults.

Real processes and real signals, on SQLite and PostgreSQL.  After a storm of
kills at random moments and one more `obsflow run`: the products are those of
an uninterrupted run, byte for byte; nothing was done twice; no temporary
file is left anywhere in the site; no worker outlived its orchestrator by
more than a second; and a live orchestrator re-queued the jobs of a killed
(or frozen) one within their lease.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from sqlalchemy import Engine, select

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.fileio import TEMP_NAME
from obsflow.ingest.cli import set_aside_lines
from obsflow.orchestrate.handlers import ARCHIVED_KINDS
from obsflow.orchestrate.jobs import JobSpec, enqueue_all, policy_of, transaction
from obsflow.orchestrate.tables import Job, JobAttempt
from obsflow.simulate.downlink import parse_faults
from obsflow.simulate.run import SimOptions, SimResult, simulate

from .conftest import archive_products, attempts_of, jobs_of, make_site, wait_for

FAULTY = SimOptions(seed=8, profile="webb_like", exposures=4, subarray="SUB64", dumps=2,
                    faults=parse_faults("all"))
LEASE = 4.0
"""executor.lease_seconds of the killed sites, s."""
SLACK = 4.0
"""Allowance for polling and for a loaded machine's scheduler on top of a lease, s."""
WORKER_GRACE = 1.0
"""Longest a pool worker may outlive its orchestrator, s."""
HOST = socket.gethostname()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """A small downlink with every fault (reorder, split, duplicate, drop, bitflip, truncate)."""
    return simulate(tmp_path_factory.mktemp("faulty"), FAULTY)


def _run(cfg: SiteConfig, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "obsflow", "run", "--site", str(cfg.root),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OBSFLOW_HOME": ""})


def _products(cfg: SiteConfig) -> dict[str, str]:
    """sha256 of every file of the product store (products and previews), by relative path
    (names and bytes as :func:`_same_name` and :func:`_same_bytes` give them)."""
    return {_same_name(p.relative_to(cfg.products_dir).as_posix()):
            hashlib.sha256(_same_bytes(p.read_bytes())).hexdigest()
            for p in sorted(cfg.products_dir.rglob("*")) if p.is_file()}


def _temporary_files(cfg: SiteConfig) -> list[Path]:
    return [p for p in cfg.root.rglob("*")
            if TEMP_NAME.match(p.name) or p.name.endswith((".part", ".tmp"))]


def _set_aside(cfg: SiteConfig) -> list[str]:
    """What ingest set aside (quarantined, unassemblable, ...), by kind."""
    return sorted(key.partition(":")[0] for key in set_aside_lines(cfg))


Reference = tuple[int, dict[str, str], list[tuple[str, str, int]], list[str]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, faulty: SimResult) -> Reference:
    """Exit status, product files, archive rows and data set aside of one run left alone."""
    cfg = make_site(tmp_path_factory.mktemp("uninterrupted") / "site", faulty)
    status = _run(cfg, "--workers", "2").wait(timeout=300)
    assert {j.state for j in jobs_of(cfg)} == {"done"}
    return status, _products(cfg), archive_products(cfg), _set_aside(cfg)


def _owner(proc: subprocess.Popen[bytes]) -> str:
    return f"{HOST}:{proc.pid}"


def _running_of(engine: Engine, owner: str) -> list[int]:
    with transaction(engine) as session:
        return list(session.scalars(select(Job.id).where(Job.state == "running",
                                                         Job.owner == owner)))


def _pool_workers(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    out = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "--multiprocessing-fork" in child.cmdline():
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def _kill_orchestrator(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``; every process it started must be gone within WORKER_GRACE."""
    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    while _alive(descendants) and time.monotonic() - killed < 10:
        time.sleep(0.01)
    outlived = time.monotonic() - killed
    assert outlived <= WORKER_GRACE, (
        f"{len(descendants)} workers; the last outlived its orchestrator by {outlived:.2f} s")


def _wait_running(engine: Engine, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until ``proc`` runs a job; False if it ended first (nothing left to do)."""
    deadline = time.monotonic() + timeout
    while not _running_of(engine, _owner(proc)):
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the orchestrator never ran a job"
        time.sleep(0.02)
    return True


def _running_attempts(engine: Engine, workers: list[psutil.Process]) -> dict[int, int]:
    """``{attempt id: worker pid}`` of the attempts running on ``workers``."""
    names = {f"{HOST}:{w.pid}": w.pid for w in workers}
    with transaction(engine) as session:
        rows = session.execute(select(JobAttempt.id, JobAttempt.worker).where(
            JobAttempt.outcome == "running", JobAttempt.worker.in_(sorted(names))))
        return {int(attempt): names[worker] for attempt, worker in rows}


def _kill_a_worker(engine: Engine, proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL a pool worker in the middle of a job; its orchestrator closes the attempt as
    lost (and re-queues the job) within the lease.  False if no worker got a job in time."""
    deadline = time.monotonic() + 120  # a fresh worker warms up first: seconds on a busy machine
    while not (busy := _running_attempts(engine, _pool_workers(proc))):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    attempt, pid = next(iter(busy.items()))
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    def closed() -> bool:
        with transaction(engine) as session:
            return session.get(JobAttempt, attempt).outcome != "running"  # type: ignore[union-attr]

    wait_for(closed, LEASE + SLACK, "the killed worker's attempt to be closed")
    assert time.monotonic() - killed <= LEASE + SLACK
    with transaction(engine) as session:
        row = session.get(JobAttempt, attempt)
        assert row is not None and row.outcome == "lost", row.outcome if row else None
    return True


def _requeued_within_lease(engine: Engine, owner: str, since: float) -> None:
    """The jobs ``owner`` ran are re-queued (by the live orchestrator: no other runs) in time."""
    wait_for(lambda: not _running_of(engine, owner), LEASE + SLACK,
             f"a live orchestrator to re-queue the jobs of {owner}")
    assert time.monotonic() - since <= LEASE + SLACK


def _abandoned_part(cfg: SiteConfig) -> Path:
    """A temporary product file of a writer killed mid-write (a real process)."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom obsflow.fileio import atomic_path\n"
            "with atomic_path(Path(sys.argv[1])) as tmp:\n    tmp.write_bytes(b'half')\n"
            "    print(tmp, flush=True)\n    time.sleep(600)\n")
    final = cfg.products_dir / "prompt" / "killed" / "x_cal.fits"
    writer = subprocess.Popen([sys.executable, "-c", code, str(final)], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout is not None
    with writer.stdout:
        part = Path(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert part.is_file()
    return part


def _round(cfg: SiteConfig, engine: Engine, action: str, rng: np.random.Generator) -> None:
    """Start `obsflow run`; at a random moment while it runs jobs, SIGKILL it (``killed``),
    one of its workers then it (``worker``), or SIGSTOP it (``frozen``: its lease lapses)
    then SIGKILL it.  The live orchestrator must re-queue its jobs within their lease."""
    proc = _run(cfg, "--workers", "2")
    try:
        assert _wait_running(engine, proc, 120)
        time.sleep(float(rng.uniform(0.0, 1.0)))
        if action == "worker":
            assert _kill_a_worker(engine, proc)
            time.sleep(float(rng.uniform(0.0, 1.0)))
        if action == "frozen":
            proc.send_signal(signal.SIGSTOP)
            _requeued_within_lease(engine, _owner(proc), time.monotonic())
            _kill_orchestrator(proc)
        else:
            _kill_orchestrator(proc)
            _requeued_within_lease(engine, _owner(proc), time.monotonic())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _storm(cfg: SiteConfig, engine: Engine) -> None:
    """Kill rounds (see :func:`_round`) next to a live `obsflow run --watch`, then kill that."""
    # work that outlasts the chain, so that every round finds jobs to be killed in
    enqueue_all(engine, [JobSpec("noop", f"nap-{i}", {"seconds": 1.5}, priority=-5)
                         for i in range(16)], policy_of(cfg))
    live = _run(cfg, "--watch", "--workers", "1")
    rng = np.random.default_rng(11)
    try:
        for action in ("worker", "frozen"):  # SIGKILLs: a worker, its orchestrator, then frozen
            _round(cfg, engine, action, rng)
            assert live.poll() is None
        _kill_orchestrator(live)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()


_DELIVERED = re.compile(rb"_\d{8}T\d{6}_")
_CARD_SUM = re.compile(rb"((?:CHECKSUM|DATASUM) *= +)'[^']*' *")
_PREVIEW_OF = re.compile(r"_[0-9a-f]{16}(?=\.)")
_MEMBER_SUM = re.compile(rb'("sha256": ")[0-9a-f]{64}"')


def _same_bytes(data: bytes) -> bytes:
    """File bytes without what differs between two sites by construction: the delivery time
    in reference-file names (their refs were delivered at different times), the FITS
    checksum cards that cover it and, in an association file, its members' sha256 (of
    those files).  Lengths are kept, so nothing else can hide."""
    data = _DELIVERED.sub(b"_YYYYMMDDTHHMMSS_", data)
    data = _MEMBER_SUM.sub(lambda m: m.group(1) + b"?" * 64 + b'"', data)
    return _CARD_SUM.sub(lambda m: m.group(1) + b"?" * (len(m.group(0)) - len(m.group(1))), data)


def _same_name(relpath: str) -> str:
    """A preview's store key without the product's sha256 prefix (see :func:`_same_bytes`)."""
    return _PREVIEW_OF.sub("_<sha256>", relpath) if relpath.startswith("previews/") else relpath


def test_kills_at_random_moments_end_like_an_uninterrupted_run(
        tmp_path: Path, faulty: SimResult, db_url: str, uninterrupted: Reference) -> None:
    url = None if db_url.startswith("sqlite") else db_url  # SQLite: the site's own file
    cfg = make_site(tmp_path / "site", faulty, url, max_attempts=50, lease_seconds=LEASE,
                    stale_temp_seconds=0.0)
    abandoned = _abandoned_part(cfg)
    engine = make_engine(cfg.database_url)
    try:
        _storm(cfg, engine)
    finally:
        engine.dispose()
    before = {j.id: j.finished for j in jobs_of(cfg) if j.state == "done"}
    final = _run(cfg, "--workers", "2")
    status, products, rows, set_aside = uninterrupted
    # data set aside makes a run exit 3 (SET_ASIDE_EXIT_CODE); here a killed run may have done it
    assert final.wait(timeout=300) in {0, status}
    assert _set_aside(cfg) == set_aside
    after = jobs_of(cfg)
    assert {j.state for j in after} == {"done"}
    assert len({j.key for j in after}) == len(after)
    for job in after:
        outcomes = [a.outcome for a in attempts_of(cfg, job.id)]
        assert outcomes.count("ok") == 1 and set(outcomes) <= {"ok", "lost", "stale"}, outcomes
        if job.id in before:  # finished before the last run: not run again
            assert job.finished == before[job.id]
    assert _products(cfg) == products  # every product and preview, byte for byte
    assert archive_products(cfg) == rows
    assert {kind for _, kind, _ in rows} == {*ARCHIVED_KINDS, "crf", "i2d", "cat", "segm"}
    assert not abandoned.exists()
    assert _temporary_files(cfg) == []
