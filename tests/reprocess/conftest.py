"""A site that ran the whole chain on a small downlink, on SQLite or PostgreSQL, to reprocess."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.orchestrate.conftest import downlink  # noqa: F401  (the shared downlink fixture)

from obsflow.archive.schema import Exposure, Product
from obsflow.config import SiteConfig, load_config
from obsflow.db import make_engine
from obsflow.demo import _deliver_refs
from obsflow.orchestrate import run_site
from obsflow.simulate.run import SimResult
from obsflow.site import init_site, open_site


def make_site(root: Path, sim: SimResult, db_url: str | None = None) -> SiteConfig:
    """A site on ``db_url`` (default its SQLite file) with refs delivered, downlink in incoming."""
    init_site(root, profile="webb_like", env={})
    path = root / "obsflow.toml"
    data = tomllib.loads(path.read_text())
    data["ingest"]["settle_seconds"] = 0.0
    data["executor"].update({"workers": 2, "retry_backoff_seconds": 0.2})
    if db_url is not None:
        data.setdefault("database", {})["url"] = db_url
    path.write_text(tomli_w.dumps(data))
    open_site(root, env={})  # creates the schema on that database
    cfg = load_config(root, env={})
    _deliver_refs(cfg, sim.out / "refs")
    for name in sim.downlink_files:
        shutil.copyfile(sim.out / "downlink" / name, cfg.incoming_dir / name)
    return cfg


@pytest.fixture
def processed(db_url: str, tmp_path: Path, downlink: SimResult) -> Iterator[SiteConfig]:  # noqa: F811
    """A site, on each backend, whose whole downlink is calibrated and archived."""
    on_postgres = db_url.startswith("postgresql")  # SQLite: the site's own file
    cfg = make_site(tmp_path / "site", downlink, db_url if on_postgres else None)
    summary = run_site(cfg)
    assert summary.total("failed") == 0
    yield cfg


@pytest.fixture
def processed_sqlite(tmp_path: Path, downlink: SimResult) -> SiteConfig:  # noqa: F811
    """The same, on the site's own SQLite file (for tests that copy or kill the site)."""
    cfg = make_site(tmp_path / "site", downlink)
    assert run_site(cfg).total("failed") == 0
    return cfg


def current(cfg: SiteConfig) -> dict[tuple[str, str], Product]:
    """(obs_id, kind) -> the current product row."""
    engine = make_engine(cfg.database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            rows = session.execute(select(Product, Exposure.obs_id).join(
                Exposure, Exposure.id == Product.exposure_id).where(Product.is_latest.is_(True)))
            return {(obs_id, p.kind): p for p, obs_id in rows}
    finally:
        engine.dispose()


def all_versions(cfg: SiteConfig) -> list[tuple[str, str, int, str]]:
    """(obs_id, kind, version, run) of every product row."""
    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Exposure.obs_id, Product.kind, Product.version,
                                          Product.run).join(Exposure,
                                                            Exposure.id == Product.exposure_id))
            return sorted((str(a), str(b), int(c), str(d)) for a, b, c, d in rows)
    finally:
        engine.dispose()
