"""Shared fixtures: one simulated downlink with every fault, and fresh sites to ingest it into."""

from __future__ import annotations

import os
import shutil
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from obsflow.config import SiteConfig
from obsflow.simulate.downlink import parse_faults
from obsflow.simulate.run import SimOptions, SimResult, simulate
from obsflow.site import init_site

SIM_OPTIONS = SimOptions(seed=11, profile="webb_like", exposures=8, subarray="SUB64",
                         faults=parse_faults("all"), dumps=3)


@pytest.fixture(scope="session")
def downlink(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """A webb_like SUB64 downlink: 8 exposures, 3 dumps + retransmission, all faults."""
    return simulate(tmp_path_factory.mktemp("sim"), SIM_OPTIONS)


def make_site(root: Path, database_url: str | None = None, profile: str = "webb_like",
              **ingest: float) -> SiteConfig:
    """A new site at ``root`` with ``[ingest]`` settings overridden (settle 0 by default).

    ``database_url`` points the ledger at another database (e.g. PostgreSQL).
    """
    init_site(root, profile=profile, env={})
    path = root / "obsflow.toml"
    data = tomllib.loads(path.read_text())
    data["ingest"].update({"settle_seconds": 0.0, **ingest})
    if database_url is not None:
        data["database"] = {"url": database_url}
    path.write_text(tomli_w.dumps(data))
    return init_site(root, env={})  # creates the schema in the configured database


def deliver(files: list[Path], incoming: Path) -> list[Path]:
    """Copy files into ``incoming`` with increasing, settled mtimes (arrival order)."""
    out = []
    base = time.time() - 1000
    for k, src in enumerate(files):
        dst = incoming / src.name
        shutil.copyfile(src, dst)
        os.utime(dst, (base + k, base + k))
        out.append(dst)
    return out


@pytest.fixture
def site_factory(tmp_path: Path, db_url: str) -> Callable[..., SiteConfig]:
    """New sites whose ledger lives in ``db_url`` (every test runs on SQLite and PostgreSQL)."""
    counter = iter(range(100))

    def factory(**ingest: float) -> SiteConfig:
        return make_site(tmp_path / f"site{next(counter)}", db_url, **ingest)

    return factory


def dump_files(result: SimResult, retransmission: bool | None = None) -> list[Path]:
    """Downlink files in delivery order; ``retransmission`` True/False selects the retx dump."""
    files = [result.out / "downlink" / n for n in result.downlink_files]
    if retransmission is None:
        return files
    return [f for f in files if ("_retx" in f.name) == retransmission]
