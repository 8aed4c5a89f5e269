"""The demo's reprocessing story, by the commands: an early flawed dark, a better one, a campaign.

The truth is the simulator's (true rates per pixel), independent of the
pipeline; the flaw is an additive error of the first dark (a light leak), so
rates calibrated with it are too low by that error, and the campaign with
the better dark must bring the residual back to zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tests.orchestrate.conftest import make_site

from obsflow.archive.schema import Product
from obsflow.cli import main
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.models import RateImage, read_rate
from obsflow.orchestrate import run_site
from obsflow.simulate.refs import dark_measurement_error
from obsflow.simulate.residuals import site_residuals
from obsflow.simulate.run import SimOptions, SimResult, simulate

DARK_ERROR = 0.5  # DN/s: well above the ~0.05 DN/s offset one short SUB64 exposure's median has


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate(tmp_path_factory.mktemp("early"), SimOptions(
        seed=8, profile="webb_like", exposures=4, subarray="SUB64", dumps=1,
        dark_error=DARK_ERROR))


def _path(cfg: SiteConfig, product_id: str) -> Path:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session:
            return cfg.products_dir / session.scalars(select(Product.path).where(
                Product.product_id == product_id)).one()
    finally:
        engine.dispose()


def _window(full: np.ndarray, rate: RateImage) -> np.ndarray:
    m = rate.meta
    return full[m.substrt2 - 1:m.substrt2 - 1 + m.subsize2,
                m.substrt1 - 1:m.substrt1 - 1 + m.subsize1]


def _invoke(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return out.stdout


def test_a_better_dark_remakes_the_products_and_the_residual_vanishes(
        early: SimResult, tmp_path: Path) -> None:
    cfg: SiteConfig = make_site(tmp_path / "site", early)
    assert run_site(cfg).total("failed") == 0
    truth = early.out / "truth"
    before = site_residuals(cfg, truth)
    assert len(before) == 4 and {r.run for r in before} == {"prompt"}
    # the simulator's own error map: rates too low by it
    error = dark_measurement_error((2048, 2048), DARK_ERROR)
    old_rates = {r.product_id.rsplit("_v", 1)[0]: r for r in before}
    for key, r in old_rates.items():
        expected = -float(np.median(_window(error, read_rate(_path(cfg, f"{key}_v1")))))
        assert expected < -0.2 and abs(r.median - expected) < 0.1, (r, expected)

    site = ["--site", str(cfg.root)]
    _invoke("refs", "deliver", *site, *map(str, sorted((early.out / "refs_update").glob("*"))))
    plan = json.loads(_invoke("reprocess", "plan", *site, "--json"))
    own = [p for p in plan["products"] if p["kind"] in ("rate", "rateints", "cal")]
    assert len(own) == 4 * 3  # rate, rateints and cal of every exposure
    assert {r["reftype"] for p in own for r in p["reasons"]} == {"DARK"}
    # downstream of them (reason "input"): the mosaic's crf products and the mosaic
    assert {p["kind"] for p in plan["products"] if p not in own} <= {"crf", "i2d", "cat", "segm"}
    assert plan["affected"] == len(plan["products"])
    out = _invoke("reprocess", "run", *site, "--name", "better-dark")
    assert "campaign better-dark: done" in out
    after = site_residuals(cfg, truth)
    assert {r.run for r in after} == {"better-dark"}
    for r_before, r_after in zip(before, after, strict=True):
        assert abs(r_after.median) < 0.2 * DARK_ERROR, r_after
        assert r_after.median_abs < r_before.median_abs
        assert abs(r_after.median_pull) < abs(r_before.median_pull)
    # pixel by pixel, the new rates differ from the old exactly by the dark's error there
    for key in old_rates:
        old, new = (read_rate(_path(cfg, f"{key}_v{v}")) for v in (1, 2))
        window = _window(error, new)
        ok = np.isfinite(new.sci) & np.isfinite(old.sci)
        assert np.allclose((new.sci - old.sci)[ok], window[ok], atol=2e-3)
    table = _invoke("truth-residuals", *site, "--truth", str(truth))
    assert "better-dark" in table and "prompt" not in table
    assert json.loads(_invoke("reprocess", "plan", *site, "--json"))["affected"] == 0
