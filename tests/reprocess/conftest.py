"""A site that ran the whole chain on a small downlink, on SQLite or PostgreSQL, to reprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.orchestrate.conftest import (
    downlink,  # noqa: F401  (the shared downlink fixture)
    make_site,
)

from obsflow.archive.schema import Exposure, Product
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.orchestrate import run_site
from obsflow.simulate.run import SimResult


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


EXPOSURE_KINDS = ("uncal", "rate", "rateints", "cal")
"""The exposures' own products: what these tests follow (stage 3's ``crf`` and ``i2d``,
remade by the image3 job a campaign's new ``_cal`` products fire, are tested in
tests/stage3/test_image3_site.py)."""


def current(cfg: SiteConfig) -> dict[tuple[str, str], Product]:
    """(obs_id, kind) -> the current product row (of the :data:`EXPOSURE_KINDS`)."""
    engine = make_engine(cfg.database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            rows = session.execute(select(Product, Exposure.obs_id).join(
                Exposure, Exposure.id == Product.exposure_id).where(
                Product.is_latest.is_(True), Product.kind.in_(EXPOSURE_KINDS)))
            return {(obs_id, p.kind): p for p, obs_id in rows}
    finally:
        engine.dispose()


def all_versions(cfg: SiteConfig) -> list[tuple[str, str, int, str]]:
    """(obs_id, kind, version, run) of every product row (of the :data:`EXPOSURE_KINDS`)."""
    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Exposure.obs_id, Product.kind, Product.version,
                                          Product.run).join(
                Exposure, Exposure.id == Product.exposure_id).where(
                Product.kind.in_(EXPOSURE_KINDS)))
            return sorted((str(a), str(b), int(c), str(d)) for a, b, c, d in rows)
    finally:
        engine.dispose()
