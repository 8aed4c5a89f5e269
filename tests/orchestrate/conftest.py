"""Shared fixtures: one small simulated downlink and sites set up to run the chain on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner, Result
from sqlalchemy import select

from obsflow.config import SiteConfig, load_config
from obsflow.db import make_engine
from obsflow.demo import _deliver_refs
from obsflow.orchestrate.handlers import ARCHIVED_KINDS
from obsflow.orchestrate.jobs import transaction
from obsflow.orchestrate.tables import Job, JobAttempt
from obsflow.simulate.run import SimOptions, SimResult, simulate
from obsflow.site import init_site, open_site

SIM_OPTIONS = SimOptions(seed=5, profile="webb_like", exposures=6, subarray="SUB64", dumps=2)


@pytest.fixture(scope="session")
def downlink(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """A webb_like SUB64 downlink without faults: 6 planned exposures in 2 dumps."""
    return simulate(tmp_path_factory.mktemp("sim"), SIM_OPTIONS)


def executed(result: SimResult) -> int:
    """Number of exposures of the plan that produce data."""
    return sum(e.status == "executed" for e in result.plan.exposures)


def mosaics(result: SimResult) -> int:
    """Number of image3 associations (one mosaic each): executed (program, observation, filter)."""
    return len({(e.program, e.observation, e.filter) for e in result.plan.exposures
                if e.status == "executed"})


def products_expected(result: SimResult) -> int:
    """Archive rows a clean run makes: each exposure's own products and ``_crf``, each mosaic
    with its source catalog and segmentation map."""
    n = executed(result)
    return n * (len(ARCHIVED_KINDS) + 1) + 3 * mosaics(result)


def make_site(root: Path, sim: SimResult, database_url: str | None = None,
              profile: str = "webb_like", formats: tuple[str, ...] = ("fits",),
              **executor: Any) -> SiteConfig:
    """A site at ``root`` with the simulator's refs delivered and its dumps in incoming.

    Ingest does not wait for files to settle; retries wait 0.2 s; ``executor``
    overrides ``[executor]`` keys; ``database_url`` puts the catalog there
    (default: the site's SQLite file); ``profile`` is the simulation's;
    ``formats`` is ``[products] formats``.
    """
    init_site(root, profile=profile, env={})
    path = root / "obsflow.toml"
    data = tomllib.loads(path.read_text())
    data["ingest"]["settle_seconds"] = 0.0
    data["executor"].update({"workers": 2, "retry_backoff_seconds": 0.2, **executor})
    if database_url is not None:
        data.setdefault("database", {})["url"] = database_url
    data["products"] = {"formats": list(formats)}
    path.write_text(tomli_w.dumps(data))
    open_site(root, env={})  # the schema on that database
    cfg = load_config(root, env={})
    _deliver_refs(cfg, sim.out / "refs")
    for name in sim.downlink_files:
        shutil.copyfile(sim.out / "downlink" / name, cfg.incoming_dir / name)
    return cfg


@pytest.fixture
def site(tmp_path: Path, downlink: SimResult) -> SiteConfig:
    """A fresh site (local executor, 2 workers) with the downlink waiting in incoming."""
    return make_site(tmp_path / "site", downlink)


def jobs_of(cfg: SiteConfig) -> list[Job]:
    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            return list(session.scalars(select(Job).order_by(Job.id)))
    finally:
        engine.dispose()


def attempts_of(cfg: SiteConfig, job_id: int) -> list[JobAttempt]:
    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            return list(session.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id)
                                        .order_by(JobAttempt.number)))
    finally:
        engine.dispose()


def archive_products(cfg: SiteConfig) -> list[tuple[str, str, int]]:
    """(obs_id, kind, version) of every product row in the archive."""
    from obsflow.archive.schema import Exposure, Product

    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            rows = session.execute(select(Exposure.obs_id, Product.kind, Product.version)
                                   .join(Exposure, Exposure.id == Product.exposure_id))
            return sorted((str(a), str(b), int(c)) for a, b, c in rows)
    finally:
        engine.dispose()


def obsflow(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the obsflow command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "obsflow", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def cli(*args: str) -> Result:
    """Run an obsflow command in this process (click's runner)."""
    from obsflow.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def json_jobs(cfg: SiteConfig, *extra: str) -> list[dict[str, Any]]:
    out = cli("jobs", "--site", str(cfg.root), "--json", *extra)
    assert out.exit_code == 0, out.output
    jobs: list[dict[str, Any]] = json.loads(out.stdout)
    return jobs
