"""End-to-end runs: what `simulate` writes, its determinism, truth and reference files."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from obsflow.models.dq import DQ
from obsflow.models.level1 import read_uncal
from obsflow.models.reffiles import LAYOUTS
from obsflow.profiles import load_profile
from obsflow.simulate.cosmic_rays import ReadoutTiming
from obsflow.simulate.detector import DetectorModel, realize_detector
from obsflow.telemetry import rows_per_packet

from .conftest import SMALLSAT_OPTIONS, SimRun, run_simulation


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for sub in ("downlink", "truth", "refs"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@functools.lru_cache(maxsize=8)
def _realize(profile: str, detector: str, seed: int) -> DetectorModel:
    return realize_detector(load_profile(profile).instruments[0].detector(detector), seed)


def _model(run: SimRun, detector: str) -> DetectorModel:
    """The detector realisation the run used (drawn again from the profile and seed)."""
    return _realize(run.options.profile, detector, run.options.seed)


# -- end to end ---------------------------------------------------------------------------


def test_run_writes_every_part(sim_run: SimRun) -> None:
    out, plan = sim_run.out, sim_run.result.plan
    executed = [m for m in plan.exposures if m.status == "executed"]
    assert executed and len(plan.exposures) >= 6
    assert {m.subarray for m in plan.exposures} == {sim_run.options.subarray}
    truth_names = {p.name for p in (out / "truth").glob("*_truth.fits")}
    assert truth_names == {f"{m.basename}_truth.fits" for m in executed}
    level1 = {p.name for p in (out / "level1").glob("*_uncal.fits")}
    assert level1 == {f"{m.basename}_uncal.fits" for m in executed}
    assert set(sim_run.result.products) == level1
    for name in ("plan.json", "downlink.json", "packets.ecsv", "engineering.ecsv"):
        assert (out / "truth" / name).is_file(), name
    for target in {m.target for m in plan.exposures}:
        assert (out / "truth" / f"sources_{target}.ecsv").is_file()
    downlink = sorted(p.name for p in (out / "downlink").iterdir())
    assert sorted(sim_run.result.downlink_files) == downlink
    assert sum(n.endswith("_retx.ccsds") for n in downlink) == 1
    assert sum(n.endswith("_ephem.ecsv") for n in downlink) == 1
    assert sim_run.result.packets > 0
    assert sim_run.result.bytes == sum((out / "downlink" / n).stat().st_size
                                       for n in downlink if n.endswith(".ccsds"))
    # with every fault switched on, every kind of fault happened
    assert set(sim_run.result.faults) == {"dropped", "corrupted", "duplicated", "truncated"}
    assert all(v > 0 for v in sim_run.result.faults.values())


def test_level1_products_equal_truth(sim_run: SimRun) -> None:
    plan = {m.exposure_id: m for m in sim_run.result.plan.exposures}
    for exp_id, truth in sim_run.truths.items():
        meta = plan[exp_id]
        product = read_uncal(sim_run.out / "level1" / f"{meta.basename}_uncal.fits")
        assert product.data.shape == (meta.nints, meta.ngroups, meta.subsize2, meta.subsize1)
        assert np.array_equal(product.data, truth.cube)
        assert product.meta == meta == truth.meta
        assert product.wcs is not None and product.wcs.has_celestial


def test_plan_json_matches_the_plan(sim_run: SimRun) -> None:
    assert sim_run.plan_exposures == sim_run.result.plan.exposures


def test_ephemeris_covers_the_observations(sim_run: SimRun) -> None:
    path = next((sim_run.out / "downlink").glob("*_ephem.ecsv"))
    ephem = Table.read(path)
    starts = [m.expstart for m in sim_run.result.plan.exposures]
    ends = [m.expend for m in sim_run.result.plan.exposures]
    assert ephem["mjd_utc"].min() <= min(starts)
    assert ephem["mjd_utc"].max() >= max(ends)
    radius = np.sqrt(ephem["x_km"] ** 2 + ephem["y_km"] ** 2 + ephem["z_km"] ** 2)
    assert np.all(radius > 6378.0)


# -- determinism --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smallsat_again(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    return run_simulation(tmp_path_factory.mktemp("sim_smallsat_again"), SMALLSAT_OPTIONS)


def test_same_options_give_byte_identical_files(smallsat_run: SimRun,
                                                smallsat_again: SimRun) -> None:
    first, second = _hashes(smallsat_run.out), _hashes(smallsat_again.out)
    assert len(first) > 20
    assert set(first) == set(second)
    differing = sorted(k for k in first if first[k] != second[k])
    assert not differing, f"{len(differing)} files differ between identical runs: {differing}"


def test_another_seed_gives_other_files(smallsat_run: SimRun,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    other = run_simulation(tmp_path_factory.mktemp("sim_seed4"),
                           replace(SMALLSAT_OPTIONS, seed=4, exposures=2, level1=False))
    mine, theirs = _hashes(smallsat_run.out), _hashes(other.out)
    # no file of the other seed is identical to any file of this one
    assert not set(mine.values()) & set(theirs.values())
    for sub in ("refs", "truth"):
        common = {k for k in theirs if k.startswith(sub)} & set(mine)
        assert common, sub
    same_names = sorted({k for k in theirs if k.startswith("truth/0")} & set(mine))
    assert same_names
    a = fits.getdata(smallsat_run.out / same_names[0], "CUBE")
    b = fits.getdata(other.out / same_names[0], "CUBE")
    assert a.shape == b.shape and not np.array_equal(a, b)
    name = "refs/obsflow-s_ssd1_superbias_0001.fits"
    assert not np.array_equal(fits.getdata(smallsat_run.out / name), fits.getdata(other.out / name))


# -- reference files ----------------------------------------------------------------------


def _ref(run: SimRun, detector: str, reftype: str, suffix: str = "") -> Path:
    stem = f"{run.profile.mission.telescope.lower()}_{detector.lower()}"
    return run.out / "refs" / f"{stem}_{reftype}{suffix}_0001.fits"


def test_every_reftype_for_every_used_detector(sim_run: SimRun) -> None:
    inst = sim_run.instrument
    used = sorted({m.detector for m in sim_run.result.plan.exposures})
    assert used
    expected = set()
    for det in used:
        for reftype in (r.lower() for r, lay in LAYOUTS.items() if lay.per_detector):
            if reftype == "flat":
                paths = [_ref(sim_run, det, "flat", f"_{f.name.lower()}") for f in inst.filters]
            else:
                paths = [_ref(sim_run, det, reftype)]
            for path in paths:
                expected.add(path.name)
                header = fits.getheader(path)
                assert header["REFTYPE"] == reftype.upper()
                assert header["TELESCOP"] == sim_run.profile.mission.telescope
                assert header["INSTRUME"] == inst.name
                assert header["DETECTOR"] == det
                assert header["SUBARRAY"] == "FULL"
                useafter = header["USEAFTER"]
                assert useafter < sim_run.result.plan.start_utc, useafter
                assert len(useafter) == 19 and useafter[10] == "T"
                if reftype == "flat":
                    assert header["FILTER"] in {f.name for f in inst.filters}
                with fits.open(path, checksum=True) as hdul:
                    assert len(hdul) == 2
    astrocat = sim_run.out / "refs" / f"{sim_run.profile.mission.telescope.lower()}_astrocat_0001.fits"
    header = fits.getheader(astrocat)
    assert (header["REFTYPE"], header["DETECTOR"], header["EPOCH"]) == ("ASTROCAT", "ANY", 2016.0)
    expected.add(astrocat.name)
    assert {p.name for p in (sim_run.out / "refs").iterdir()} == expected


def test_reference_arrays_are_the_realised_detector(sim_run: SimRun) -> None:
    for det in sorted({m.detector for m in sim_run.result.plan.exposures}):
        model = _model(sim_run, det)
        assert model.superbias.shape == (model.spec.ny, model.spec.nx)
        assert np.array_equal(fits.getdata(_ref(sim_run, det, "superbias"), "SCI"), model.superbias)
        assert np.array_equal(fits.getdata(_ref(sim_run, det, "gain"), "SCI"), model.gain)
        assert np.array_equal(fits.getdata(_ref(sim_run, det, "readnoise"), "SCI"),
                              model.read_noise_dn)
        assert np.array_equal(fits.getdata(_ref(sim_run, det, "saturation"), "SCI"),
                              model.saturation_dn)
        assert np.allclose(fits.getdata(_ref(sim_run, det, "dark"), "SCI"),
                           model.dark_e_s / model.gain, rtol=1e-6)
        # the realisation is plausible for the profile
        spec = model.spec
        live = ~model.reference & ~model.dead
        assert np.median(model.gain) == pytest.approx(spec.gain_e_per_dn, rel=0.01)
        assert np.median(model.read_noise_dn) == pytest.approx(
            spec.read_noise_single_e / spec.gain_e_per_dn, rel=0.02)
        assert np.median(model.superbias) == pytest.approx(spec.bias_dn, abs=spec.bias_rms_dn)
        assert np.all(model.saturation_dn <= spec.adc_max_dn)
        assert np.all(model.response[live] > 0) and np.all(model.response[~live] == 0)


def test_linearity_inverts_the_profile_nonlinearity(sim_run: SimRun) -> None:
    for det in sorted({m.detector for m in sim_run.result.plan.exposures}):
        model = _model(sim_run, det)
        coeffs = fits.getdata(_ref(sim_run, det, "linearity"), "COEFFS")
        top = float((model.spec.full_well_e / model.gain).max())
        linear = np.linspace(0.0, top, 4001)
        measured = np.polynomial.polynomial.polyval(linear, model.spec.nonlinearity)
        assert np.max(np.abs(measured - linear)) > 100   # the correction matters
        back = np.polynomial.polynomial.polyval(measured, np.asarray(coeffs, np.float64))
        assert np.max(np.abs(back - linear)) < 0.5


def test_mask_flags_reference_border_dead_and_hot(sim_run: SimRun) -> None:
    for det in sorted({m.detector for m in sim_run.result.plan.exposures}):
        model = _model(sim_run, det)
        mask = fits.getdata(_ref(sim_run, det, "mask"), "DQ").astype(np.int64)
        b = model.spec.ref_border
        border = np.zeros_like(model.reference)
        border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
        is_ref = (mask & int(DQ.REFERENCE_PIXEL)) != 0
        assert np.array_equal(is_ref, border)
        is_dead = (mask & int(DQ.DEAD)) != 0
        assert np.array_equal(is_dead, model.dead) and is_dead.any()
        assert np.all(mask[is_dead] & int(DQ.DO_NOT_USE))
        assert np.array_equal((mask & int(DQ.HOT)) != 0, model.hot) and model.hot.any()
        assert not np.any(is_dead & border)


def test_flats_are_qe_times_gain_variation(sim_run: SimRun) -> None:
    inst = sim_run.instrument
    for det in sorted({m.detector for m in sim_run.result.plan.exposures}):
        model = _model(sim_run, det)
        for k, filt in enumerate(inst.filters):
            flat = fits.getdata(_ref(sim_run, det, "flat", f"_{filt.name.lower()}"), "SCI")
            expected = model.flat(filt, k) * (model.spec.gain_e_per_dn / model.gain)
            expected[model.reference] = 1.0
            assert np.allclose(flat, expected, rtol=1e-6)
            live = ~model.reference & ~model.dead
            assert np.median(flat[live]) == pytest.approx(1.0, abs=0.03)


# -- truth --------------------------------------------------------------------------------


def test_truth_rate_is_sky_times_flat_over_gain(sim_run: SimRun) -> None:
    inst = sim_run.instrument
    for truth in sim_run.truths.values():
        meta = truth.meta
        model = _model(sim_run, meta.detector)

        def win(a: np.ndarray, meta=meta, model=model) -> np.ndarray:
            return model.window(a, meta.substrt1, meta.substrt2, meta.subsize1, meta.subsize2)

        k = [f.name for f in inst.filters].index(meta.filter)
        flat = win(model.flat(inst.filter(meta.filter), k))
        live = win(~model.reference & ~model.dead)
        expected = np.where(live, truth.sky * flat / win(model.gain), 0.0)
        assert truth.rate.shape == truth.sky.shape == (meta.subsize2, meta.subsize1)
        assert np.allclose(truth.rate, expected, rtol=1e-5, atol=0)
        assert np.all(truth.rate[win(model.reference)] == 0)
        assert np.all(truth.rate[live] > 0)
        assert np.all(truth.sky > 0)


def test_truth_cube_ramps_follow_the_true_rate(sim_run: SimRun) -> None:
    """Mean ramp step of the live pixels = mean (RATE + dark) x group time.

    The common bias drifts are taken out with the reference pixels of each row;
    the tolerance is five times the standard error of both means.
    """
    for truth in sim_run.truths.values():
        meta = truth.meta
        model = _model(sim_run, meta.detector)

        def win(a: np.ndarray, meta=meta, model=model) -> np.ndarray:
            return model.window(a, meta.substrt1, meta.substrt2, meta.subsize1, meta.subsize2)

        reference, live = win(model.reference), truth.rate > 0
        step = (truth.rate + win(model.dark_e_s / model.gain)) * meta.group_time
        hit = np.zeros(live.shape, bool)
        hit[np.asarray(truth.hits["Y"]), np.asarray(truth.hits["X"])] = True
        diffs = np.diff(truth.cube.astype(np.float64), axis=1).mean(axis=(0, 1))
        ref_rows = np.flatnonzero(reference.any(axis=1) & ~reference.all(axis=1))
        ref_row_mean = np.array([diffs[r, reference[r]].mean() for r in ref_rows])
        use = live & ~hit & ~win(model.hot)
        use[~np.isin(np.arange(live.shape[0]), ref_rows)] = False
        corrected = diffs - np.interp(np.arange(live.shape[0]), ref_rows, ref_row_mean)[:, None]
        measured, expected = corrected[use].mean(), step[use].mean()
        n_ref = reference[ref_rows].sum()
        sigma = np.sqrt(corrected[use].var() / use.sum() + diffs[reference].var() / n_ref * 2)
        assert abs(measured - expected) < 5 * sigma + 0.01 * expected, (meta.basename, measured,
                                                                        expected, sigma)


def test_truth_crhits_groups_follow_frames(sim_run: SimRun) -> None:
    for truth in sim_run.truths.values():
        meta = truth.meta
        hits = truth.hits
        assert set(hits.colnames) == {"HIT", "INTEGRATION", "FRAME", "GROUP", "Y", "X", "CHARGE"}
        timing = ReadoutTiming(meta.ngroups, meta.nframes, meta.groupgap, meta.frame_time)
        frame = np.asarray(hits["FRAME"], np.int64)
        assert np.all((frame >= 1) & (frame <= timing.frames))
        assert np.array_equal(np.asarray(hits["GROUP"]), timing.group_of_frame(frame))
        # independently: the first group whose last read is at or after the frame
        last_reads = np.array([timing.last_read(g) for g in range(meta.ngroups)])
        assert np.array_equal(np.asarray(hits["GROUP"]), np.searchsorted(last_reads, frame))
        assert np.all((hits["INTEGRATION"] >= 0) & (hits["INTEGRATION"] < meta.nints))
        ys, xs = np.asarray(hits["Y"]), np.asarray(hits["X"])
        assert np.all(truth.rate[ys, xs] > 0)   # only live pixels collect charge
        assert np.all(hits["CHARGE"] > 0)


def _noise_of_diff(truth, model: DetectorModel) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Rough sigma (DN) of one group difference per pixel: read noise, drifts, photons."""
    meta, spec = truth.meta, model.spec
    rn = model.window(model.read_noise_dn, meta.substrt1, meta.substrt2, meta.subsize1,
                      meta.subsize2).astype(np.float64)
    dark = model.window(model.dark_e_s / model.gain, meta.substrt1, meta.substrt2,
                        meta.subsize1, meta.subsize2)
    drift = 2 * (spec.refpix_drift_dn**2 * (1 + 1 / 16) + spec.row_noise_dn**2)
    photons = (truth.rate + dark) * meta.group_time / spec.gain_e_per_dn
    return np.sqrt(2 * rn**2 / meta.nframes + drift + photons + 1)


def test_every_truth_cosmic_ray_is_in_the_cube(sim_run: SimRun) -> None:
    checked = 0
    for truth in sim_run.truths.values():
        meta = truth.meta
        model = _model(sim_run, meta.detector)
        gain = model.window(model.gain, meta.substrt1, meta.substrt2, meta.subsize1, meta.subsize2)
        timing = ReadoutTiming(meta.ngroups, meta.nframes, meta.groupgap, meta.frame_time)
        sigma = _noise_of_diff(truth, model)
        cube = truth.cube.astype(np.float64)
        ceiling = model.window(model.saturation_dn, meta.substrt1, meta.substrt2, meta.subsize1,
                               meta.subsize2)
        expected = np.zeros(cube.shape)
        for row in truth.hits:
            i, g, y, x = int(row["INTEGRATION"]), int(row["GROUP"]), int(row["Y"]), int(row["X"])
            frac = np.clip((timing.last_read(g) - int(row["FRAME"]) + 1) / meta.nframes, 0, 1)
            expected[i, g, y, x] += row["CHARGE"] * frac / gain[y, x]
            if g + 1 < meta.ngroups:
                expected[i, g + 1, y, x] += row["CHARGE"] * (1 - frac) / gain[y, x]
        diffs = np.diff(cube, axis=1)                 # (nints, ngroups-1, ny, nx)
        baseline = np.median(diffs, axis=1, keepdims=True)
        excess = diffs - baseline
        jump = expected[:, 1:]
        unsaturated = cube.max(axis=1, keepdims=True) < ceiling - 20 * sigma
        ok_pixels = unsaturated & (truth.rate < 50)
        # the pixel's other groups must be clean for the median baseline to hold
        n_hit_groups = (expected > 0).sum(axis=1, keepdims=True)
        clean = ok_pixels & (n_hit_groups <= 2)
        big = (jump > 10 * sigma) & clean
        checked += int(big.sum())
        # nonlinearity makes a jump at most ~10% smaller
        assert np.all(excess[big] > 0.85 * jump[big] - 6 * np.broadcast_to(sigma, big.shape)[big])
        assert np.all(excess[big] < 1.02 * jump[big] + 6 * np.broadcast_to(sigma, big.shape)[big])
        # no jump where there was no deposit in the whole integration
        quiet = ok_pixels & (n_hit_groups == 0)
        quiet = np.broadcast_to(quiet, excess.shape)
        sig = np.broadcast_to(sigma, excess.shape)
        assert np.all(excess[quiet] < 8 * sig[quiet])
    assert checked >= 20


def test_cosmic_ray_hit_rate_matches_the_profile(smallsat_run: SimRun, webb_run: SimRun) -> None:
    """Primary hits vs rate_per_cm2_s x pixel area x time (Poisson, 5 sigma), both runs.

    And the fraction of pixels hit in a 1000 s equivalent: each primary leaves
    charge in its pixel and its four neighbours, so about 5 x rate x area x 1000 s.
    """
    n_hits, expected_hits, pixel_seconds, hit_pixels, expected_pixels = 0, 0.0, 0.0, 0, 0.0
    for run in (smallsat_run, webb_run):
        cr = run.profile.cosmic_rays
        per_pixel_s = cr.rate_per_cm2_s * (cr.pixel_pitch_um * 1e-4) ** 2
        for truth in run.truths.values():
            meta = truth.meta
            timing = ReadoutTiming(meta.ngroups, meta.nframes, meta.groupgap, meta.frame_time)
            t_exp = timing.frames * meta.frame_time * meta.nints
            sensitive = truth.rate > 0
            # positions whose hit leaves charge on a sensitive pixel (itself or a neighbour)
            padded = np.pad(sensitive, 1)
            reach = (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
                     | padded[1:-1, :-2] | padded[1:-1, 2:])
            n_hits += len(set(zip(truth.hits["INTEGRATION"], truth.hits["HIT"], strict=True)))
            expected_hits += per_pixel_s * reach.sum() * t_exp
            pixel_seconds += sensitive.sum() * t_exp
            expected_pixels += 5 * per_pixel_s * sensitive.sum() * t_exp
            hit_pixels += len(set(zip(truth.hits["INTEGRATION"], truth.hits["Y"], truth.hits["X"],
                                      strict=True)))
    assert expected_hits > 40
    assert abs(n_hits - expected_hits) < 5 * np.sqrt(expected_hits), (n_hits, expected_hits)
    fraction_1000s = hit_pixels / pixel_seconds * 1000.0
    expected_1000s = expected_pixels / pixel_seconds * 1000.0
    assert 0.01 < expected_1000s < 0.2
    tolerance = 5 / np.sqrt(expected_hits) + 0.05   # Poisson on primaries, edges and overlaps
    assert abs(fraction_1000s / expected_1000s - 1) < tolerance, (fraction_1000s, expected_1000s)


def test_cosmic_ray_charges_follow_the_profile(smallsat_run: SimRun) -> None:
    """smallsat has no snowballs: 5 deposits per hit, 0.84 / 0.04 shares, lognormal total."""
    cr = smallsat_run.profile.cosmic_rays
    totals = []
    for truth in smallsat_run.truths.values():
        hits = truth.hits
        for key in set(zip(hits["INTEGRATION"], hits["HIT"], strict=True)):
            sel = (hits["INTEGRATION"] == key[0]) & (hits["HIT"] == key[1])
            q = np.sort(np.asarray(hits["CHARGE"][sel]))
            if sel.sum() == 5:
                assert q[-1] == pytest.approx(21 * q[0], rel=1e-9)
                assert np.allclose(q[:4], q[0])
                totals.append(q.sum())
    assert len(totals) > 20
    median_dex = np.log10(np.median(totals))
    sigma = 1.2533 * cr.charge_sigma_dex / np.sqrt(len(totals))
    assert abs(median_dex - np.log10(cr.charge_median_e)) < 5 * sigma


def test_packets_expected_by_rows_per_packet(sim_run: SimRun) -> None:
    """The science packet count of each exposure follows from rows per packet."""
    target = sim_run.profile.packets.target_payload_bytes
    for truth in sim_run.truths.values():
        nints, ngroups, ny, nx = truth.cube.shape
        rpp = rows_per_packet(nx, ny, target)
        assert ny % rpp == 0 and rpp * nx * 2 <= target
        assert (rpp + 1) * nx * 2 > target or ny % (rpp + 1) != 0 or rpp == ny
