"""The simulator's pointing errors and its absolute astrometric catalog (ASTROCAT)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from tests.simulate.conftest import SimRun

from obsflow.exceptions import ReferenceFileError
from obsflow.models.reffiles import read_astrocat
from obsflow.profiles import load_profile
from obsflow.refdata import FolderRefs, best_reference, read_record
from obsflow.simulate.astrocat import LIMIT_MAG, astrometric_catalog, position_error_mas
from obsflow.simulate.plan import PlanOptions, make_plan


@pytest.mark.parametrize("name", ["webb_like", "smallsat"])
def test_pointing_errors_per_visit_with_small_dither_errors(name: str) -> None:
    profile = load_profile(name)
    plan = make_plan(profile, PlanOptions(seed=4, exposures=400))
    m = profile.mission
    by_visit: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for meta in plan.exposures:
        p = plan.pointing[meta.exposure_id]
        assert plan.true_pointing(meta) == (p.ra_v1, p.dec_v1, p.pa_v3)
        east = (p.ra_v1 - meta.ra_v1) * np.cos(np.deg2rad(meta.dec_v1)) * 3.6e6
        assert east == pytest.approx(p.east_mas, abs=1e-3)
        assert (p.dec_v1 - meta.dec_v1) * 3.6e6 == pytest.approx(p.north_mas, abs=1e-3)
        assert (p.pa_v3 - meta.pa_v3) * 3600 == pytest.approx(p.roll_arcsec, abs=1e-6)
        by_visit.setdefault((meta.program, meta.observation), []).append((p.east_mas,
                                                                           p.north_mas))
    visits = np.array([np.mean(v, axis=0) for v in by_visit.values()])
    spread = np.concatenate([np.asarray(v) - np.mean(v, axis=0) for v in by_visit.values()])
    assert len(visits) > 50
    assert np.std(visits) == pytest.approx(m.pointing_error_mas, rel=0.25)
    assert np.std(spread) < 2 * m.dither_error_mas
    assert np.std(spread) > 0.3 * m.dither_error_mas
    # deterministic, and the same for every detector of one exposure
    again = make_plan(profile, PlanOptions(seed=4, exposures=400))
    assert again.pointing == plan.pointing
    shared: dict[tuple[str, int, int], set[tuple[float, float, float]]] = {}
    for meta in plan.exposures:
        p = plan.pointing[meta.exposure_id]
        shared.setdefault((meta.program, meta.observation, meta.exposure), set()).add(
            (p.east_mas, p.north_mas, p.roll_arcsec))
    assert all(len(s) == 1 for s in shared.values())


def test_truth_files_carry_the_true_pointing_and_headers_the_commanded(sim_run: SimRun) -> None:
    plan = sim_run.result.plan
    for eid, truth in sim_run.truths.items():
        p = plan.pointing[eid]
        assert truth.pointing == pytest.approx((p.ra_v1, p.dec_v1, p.pa_v3), abs=1e-12)
        meta = next(m for m in plan.exposures if m.exposure_id == eid)
        assert (truth.meta.ra_v1, truth.meta.dec_v1) == (meta.ra_v1, meta.dec_v1)
        assert truth.pointing[:2] != (meta.ra_v1, meta.dec_v1)


def _astrocat(sim_run: SimRun) -> Path:
    return sim_run.out / "refs" / f"{sim_run.profile.mission.telescope.lower()}_astrocat_0001.fits"


def test_astrocat_is_a_selectable_reference_file_for_every_detector(sim_run: SimRun) -> None:
    path = _astrocat(sim_run)
    record = read_record(path, sim_run.profile)
    assert (record.reftype, record.detector, record.subarray) == ("ASTROCAT", "ANY", "FULL")
    refs = FolderRefs(sim_run.out / "refs", sim_run.profile)
    for meta in sim_run.result.plan.exposures:
        chosen = best_reference(refs.records(), meta, "ASTROCAT").chosen
        assert chosen is not None and chosen.name == path.name
        other = dataclasses.replace(meta, detector=sim_run.instrument.detectors[-1].name)
        assert best_reference([record], other, "ASTROCAT").chosen == record


def test_astrocat_positions_scatter_as_their_stated_errors(sim_run: SimRun) -> None:
    catalog = read_astrocat(_astrocat(sim_run))
    assert catalog.epoch == 2016.0 and len(catalog) > 20
    first = sim_run.instrument.filters[0].name
    stars = []
    for k, target in enumerate(sim_run.result.plan.targets):
        table = Table.read(sim_run.out / "truth" / f"sources_{target.name}.ecsv")
        table["source_id"] = 1_000_000 * (k + 1) + np.asarray(table["id"])
        stars.append(table)
    truth = {int(s): row for t in stars for s, row in zip(t["source_id"], t, strict=True)}
    rows = [truth[int(s)] for s in catalog.source_id]
    assert all(r["kind"] == "star" and r[f"mag_{first}"] < LIMIT_MAG for r in rows)
    ra_t = np.array([r["ra"] for r in rows])
    dec_t = np.array([r["dec"] for r in rows])
    east = (catalog.ra - ra_t) * np.cos(np.deg2rad(dec_t)) * 3.6e6
    north = (catalog.dec - dec_t) * 3.6e6
    assert np.allclose(catalog.ra_error, position_error_mas(catalog.mag))
    chi2 = np.mean((east / catalog.ra_error) ** 2 + (north / catalog.dec_error) ** 2)
    assert chi2 == pytest.approx(2.0, rel=0.2)
    assert 0.1 < np.median(catalog.ra_error) < 3.0  # mas, Gaia-like


def test_astrocat_reader_names_what_is_wrong(tmp_path: Path, sim_run: SimRun) -> None:
    src = _astrocat(sim_run)
    with fits.open(src) as hdul:
        hdul["ASTROCAT"].columns.del_col("DEC_ERROR")
        del hdul["ASTROCAT"].header["EPOCH"]
        hdul.writeto(tmp_path / "a.fits")
    with pytest.raises(ReferenceFileError, match="ASTROCAT table needs .*DEC_ERROR and MAG"):
        read_astrocat(tmp_path / "a.fits")
    with pytest.raises(ReferenceFileError, match="ASTROCAT table needs"):
        read_record(tmp_path / "a.fits", sim_run.profile)


def test_astrometric_catalog_keeps_only_bright_stars() -> None:
    table = Table({"id": [1, 2, 3], "kind": ["star", "star", "galaxy"], "ra": [1.0, 1.0, 1.0],
                   "dec": [2.0, 2.0, 2.0], "mag_X": [LIMIT_MAG - 1, LIMIT_MAG + 1, 15.0]})
    cat = astrometric_catalog([table], "mag_X", np.random.default_rng(0))
    assert cat.source_id.tolist() == [1_000_001]
