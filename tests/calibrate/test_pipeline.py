"""The pipeline on simulated Level-1 products: outputs, provenance, options, truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from obsflow.calibrate.pipeline import calibrate_product, load_recipe, resolve_parameters
from obsflow.cli import main
from obsflow.exceptions import UnknownOptionError
from obsflow.models import read_cal, read_rate, read_rateints
from obsflow.profiles import load_profile
from obsflow.refdata import FolderRefs
from obsflow.simulate.run import SimOptions, simulate
from obsflow.simulate.truth import read_truth


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(out, SimOptions(seed=3, profile="smallsat", exposures=1, level1=True))
    return out


@pytest.fixture(scope="session")
def calibrated(sim: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    prof = load_profile("smallsat")
    uncal = sorted((sim / "level1").glob("*_uncal.fits"))[0]
    return calibrate_product(uncal, FolderRefs(sim / "refs", prof), prof,
                             out_dir=tmp_path_factory.mktemp("cal"))


def test_products_and_provenance(calibrated: list[Path], sim: Path) -> None:
    assert [p.name.rsplit("_", 1)[1] for p in calibrated] == ["rate.fits", "rateints.fits",
                                                                "cal.fits"]
    rate, ints, cal = read_rate(calibrated[0]), read_rateints(calibrated[1]), read_cal(calibrated[2])
    assert ints.sci.shape == (rate.meta.nints, *rate.sci.shape)
    prov = cal.provenance
    assert prov.recipe == "image" and prov.input_name.endswith("_uncal.fits")
    assert [s for s, _, _ in prov.steps][-1] == "background"
    assert dict((s, p) for s, _, p in prov.steps)["jump"]["threshold"] == 4.0
    assert {r for r, _, _ in prov.references} >= {"DARK", "FLAT", "GAIN", "PHOTOM"}
    assert all(len(sha) == 64 for _, _, sha in prov.references)
    assert cal.header_extra["PHOTMJSR"] > 0 and cal.wcs is not None
    assert np.isfinite(cal.header_extra["BKGLEVEL"])


def test_rates_against_truth(calibrated: list[Path], sim: Path) -> None:
    rate = read_rate(calibrated[0])
    truth = read_truth(sim / "truth" / f"{rate.meta.basename}_truth.fits")
    hit = np.zeros(rate.sci.shape, bool)
    hit[truth.hits["Y"], truth.hits["X"]] = True
    ok = (rate.dq == 0) & ~hit
    pull = ((rate.sci - truth.rate) / rate.err)[ok]
    assert abs(np.median(pull)) < 0.02
    flagged = [rate.dq[y, x] for y, x, q in zip(truth.hits["Y"], truth.hits["X"],
                                                 truth.hits["CHARGE"], strict=True) if q > 500]
    assert np.mean([bool(f & 4) for f in flagged]) > 0.95


@pytest.mark.xfail(strict=True, reason=(
    "simulator data: std of (fit - true)/err is 1.021-1.024 on smallsat (within 1.000 +/- 0.005 "
    "on exact synthetic ramps, test_ramps.py); the simulated group differences carry ~1.2% "
    "more variance than read noise + Poisson + quantization (row noise 0.3 DN per row and "
    "group, not removable with one amplifier), the rest is not yet explained"))
def test_error_spread_against_truth(calibrated: list[Path], sim: Path) -> None:
    rate = read_rate(calibrated[0])
    truth = read_truth(sim / "truth" / f"{rate.meta.basename}_truth.fits")
    hit = np.zeros(rate.sci.shape, bool)
    hit[truth.hits["Y"], truth.hits["X"]] = True
    ok = (rate.dq == 0) & ~hit
    assert abs(np.std(((rate.sci - truth.rate) / rate.err)[ok]) - 1) < 0.02


def test_unknown_step_and_parameter_list_allowed() -> None:
    recipe = load_recipe("image")
    with pytest.raises(UnknownOptionError, match="jump.threshold"):
        resolve_parameters(recipe, {"jump.thresh": "5"})
    with pytest.raises(UnknownOptionError, match="ramp_fit"):
        resolve_parameters(recipe, {"jmp.threshold": "5"})
    assert resolve_parameters(recipe, {"jump.threshold": "5"})["jump"]["threshold"] == 5.0
    with pytest.raises(UnknownOptionError, match="recipe"):
        load_recipe("nope")


def test_cli_calibrate_with_set_and_skip(sim: Path, tmp_path: Path) -> None:
    uncal = sorted((sim / "level1").glob("*_uncal.fits"))[0]
    args = ["calibrate", "--refs", str(sim / "refs"), "--profile", "smallsat", "--set",
            "jump.threshold=5", "--skip", "background", "--out", str(tmp_path), str(uncal)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    cal = read_cal(next(tmp_path.glob("*_cal.fits")))
    steps = {s: (st, p) for s, st, p in cal.provenance.steps}
    assert steps["jump"][1]["threshold"] == 5.0 and steps["background"][0].startswith("SKIPPED")
    bad = CliRunner().invoke(main, ["calibrate", "--refs", str(sim / "refs"), "--profile",
                                     "smallsat", "--skip", "nosuch", str(uncal)])
    assert bad.exit_code == 2 and "allowed" in bad.output
