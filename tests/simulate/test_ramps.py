"""Detector physics of :func:`obsflow.simulate.ramps.simulate_ramps` against analytic truth.

Every test feeds hand-built :class:`PixelInputs`, :class:`ReadoutTiming` and
:class:`Deposits` into the pure function and compares the cube with what the
frame-by-frame process must give.
"""

from __future__ import annotations

import numpy as np
import pytest

from obsflow.simulate.cosmic_rays import Deposits, ReadoutTiming
from obsflow.simulate.detector import nonlinear
from obsflow.simulate.ramps import PixelInputs, simulate_ramps

# (nframes, groupgap, ngroups) like the profiles' RAPID, MEDIUM8 and DEEP2
TIMINGS = {"RAPID": (1, 0, 8), "MEDIUM8": (8, 2, 5), "DEEP2": (2, 18, 4), "SHALLOW4": (4, 1, 6)}


def make_inputs(shape: tuple[int, int], *, illum: float, dark: float = 0.0, gain: float = 2.0,
                read_noise: float = 0.0, bias: float = 1000.0, full_well: float = 1e9,
                coeffs: tuple[float, ...] = (0.0, 1.0), adc_max: int = 65535,
                drift: float = 0.0, row_noise: float = 0.0) -> PixelInputs:
    ny, nx = shape

    def full(v: float) -> np.ndarray:
        return np.full(shape, v, np.float32)

    return PixelInputs(illum_e_s=full(illum), dark_e_s=full(dark), gain=full(gain),
                       read_noise_dn=full(read_noise), superbias=full(bias), full_well_e=full_well,
                       nonlinearity=coeffs, adc_max=adc_max,
                       amp_of_column=np.zeros(nx, np.intp),
                       column_parity=(np.arange(nx) % 2).astype(np.intp),
                       drift_dn=drift, row_noise_dn=row_noise)


def no_deposits() -> Deposits:
    z = np.zeros(0, np.int64)
    return Deposits(z, z, z, z, z, z, np.zeros(0))


def make_deposits(rows: list[tuple[int, int, int, int, float]], timing: ReadoutTiming) -> Deposits:
    """Deposits from (integration, frame, y, x, charge) rows, sorted as sample_deposits does."""
    arr = np.array(sorted(rows), dtype=np.float64).reshape(-1, 5)
    integ, frame, y, x = (arr[:, k].astype(np.int64) for k in range(4))
    return Deposits(np.arange(len(arr)), integ, frame, timing.group_of_frame(frame), y, x, arr[:, 4])


def group_times(timing: ReadoutTiming) -> np.ndarray:
    """Mean time of each group's reads after reset, s: t_g = tf * (g*(nf+gap) + (nf+1)/2)."""
    g = np.arange(timing.ngroups)
    return timing.frame_time * (g * (timing.nframes + timing.groupgap) + (timing.nframes + 1) / 2)


def photon_var_of_diff(nf: int, gap: int) -> float:
    """var(A_{g+1} - A_g) / lambda for group averages of a Poisson ramp (lambda per frame).

    A photon arriving in the frame interval before read j weighs
    (#reads of group g+1 at or after j - #reads of group g at or after j) / nf:
    k/nf for k = 1..nf-1 during group g's reads, 1 over the gap+1 intervals
    between, (nf-k)/nf during group g+1's reads, so the variance is
    gap + 1 + 2 sum (k/nf)^2 = gap + 2 nf / 3 + 1 / (3 nf).
    """
    return gap + 2 * nf / 3 + 1 / (3 * nf)


def photon_lag1_cov_of_diff(nf: int) -> float:
    """cov(D_g, D_{g+1}) / lambda: the reads of the shared group, sum k (nf-k) / nf^2."""
    return (nf**2 - 1) / (6 * nf)


def _weights(reads: np.ndarray, frames: np.ndarray, nf: int) -> np.ndarray:
    """Weight in a group average of a photon arriving just before each read ``frames``."""
    return (reads[None, :] >= frames[:, None]).sum(axis=1) / nf


def test_photon_variance_formula_matches_frame_by_frame_count() -> None:
    # The analytic weights above, summed directly frame by frame.
    for nf, gap in [(1, 0), (8, 2), (2, 18), (4, 1), (3, 5)]:
        period = nf + gap
        reads_a = np.arange(1, nf + 1)           # group g = 0
        reads_b = reads_a + period               # group 1
        reads_c = reads_b + period               # group 2
        frames = np.arange(1, 3 * period + 1)
        w_a, w_b, w_c = (_weights(r, frames, nf) for r in (reads_a, reads_b, reads_c))
        d1, d2 = w_b - w_a, w_c - w_b
        assert np.sum(d1**2) == pytest.approx(photon_var_of_diff(nf, gap), rel=1e-12)
        assert np.sum(d1 * d2) == pytest.approx(photon_lag1_cov_of_diff(nf), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("pattern", ["RAPID", "MEDIUM8", "DEEP2"])
def test_mean_fitted_slope_equals_rate(pattern: str) -> None:
    nf, gap, ngroups = TIMINGS[pattern]
    timing = ReadoutTiming(ngroups, nf, gap, frame_time=1.3)
    illum, dark, gain = 60.0, 0.7, 2.0
    inp = make_inputs((120, 120), illum=illum, dark=dark, gain=gain)
    cube = simulate_ramps(inp, timing, 1, no_deposits(), np.random.default_rng(11))
    assert cube.dtype == np.uint16 and cube.shape == (1, ngroups, 120, 120)
    t = group_times(timing)
    y = cube[0].reshape(ngroups, -1).astype(np.float64)
    tc = t - t.mean()
    slopes = (tc @ (y - y.mean(axis=0))) / np.sum(tc**2)
    expected = (illum + dark) / gain
    # Poisson error of one pixel's slope, from the data; the mean over N pixels to 5 sigma
    err = slopes.std(ddof=1) / np.sqrt(slopes.size)
    assert abs(slopes.mean() - expected) < 5 * err
    assert abs(slopes.mean() / expected - 1) < 2e-3
    # intercept: the superbias at t = 0 (reset), since E[A_g] = rate * t_g
    intercept = y.mean() - slopes.mean() * t.mean()
    assert intercept == pytest.approx(1000.0, abs=0.5)


@pytest.mark.parametrize("pattern", ["RAPID", "MEDIUM8", "DEEP2", "SHALLOW4"])
def test_group_difference_noise_is_the_frame_by_frame_noise(pattern: str) -> None:
    nf, gap, ngroups = TIMINGS[pattern]
    frame_time, rate, gain, rn = 1.0, 25.0, 1.5, 6.0
    timing = ReadoutTiming(ngroups, nf, gap, frame_time)
    shape = (200, 200)
    inp = make_inputs(shape, illum=rate, gain=gain, read_noise=rn)
    cube = simulate_ramps(inp, timing, 1, no_deposits(), np.random.default_rng(5))
    diffs = np.diff(cube[0].astype(np.float64), axis=0).reshape(ngroups - 1, -1)
    lam_dn2 = rate * frame_time / gain**2   # photon variance per frame, DN^2
    quant = 1 / 12                          # rounding to whole DN, per group value
    var_expected = lam_dn2 * photon_var_of_diff(nf, gap) + 2 * rn**2 / nf + 2 * quant
    cov_expected = lam_dn2 * photon_lag1_cov_of_diff(nf) - rn**2 / nf - quant
    d = diffs - diffs.mean(axis=1, keepdims=True)
    npix = d.shape[1]
    var_measured = np.mean(d**2)
    cov_measured = np.mean(d[1:] * d[:-1])
    n_var = npix * (ngroups - 1)
    n_cov = npix * (ngroups - 2)
    # sampling errors (Gaussian approximation); a factor 1.5 for the correlation between lags
    sig_var = 1.5 * var_expected * np.sqrt(2 / n_var)
    sig_cov = 1.5 * np.sqrt((var_expected**2 + cov_expected**2) / n_cov)
    assert abs(var_measured - var_expected) < 5 * sig_var, (var_measured, var_expected)
    assert abs(cov_measured - cov_expected) < 5 * sig_cov, (cov_measured, cov_expected)
    # and the mean increment per group is the rate over one group period
    mean_step = diffs.mean()
    assert mean_step == pytest.approx(rate * frame_time * (nf + gap) / gain, rel=3e-3)


def test_read_noise_alone_is_single_read_noise_over_sqrt_nframes() -> None:
    nf, gap, ngroups = 8, 2, 4
    rn = 7.0
    timing = ReadoutTiming(ngroups, nf, gap, 1.0)
    inp = make_inputs((200, 200), illum=0.0, read_noise=rn)
    cube = simulate_ramps(inp, timing, 2, no_deposits(), np.random.default_rng(3))
    per_group = cube.astype(np.float64).reshape(2 * ngroups, -1).std(axis=1, ddof=1)
    expected = np.sqrt(rn**2 / nf + 1 / 12)
    assert np.allclose(per_group, expected, rtol=0.03)


def _excess(cube: np.ndarray, integ: int, group: int) -> np.ndarray:
    """Group difference at ``group`` minus its median over the array (the sky increment)."""
    diff = cube[integ, group].astype(np.float64) - cube[integ, group - 1]
    return diff - np.median(diff)


def test_every_deposit_shows_as_its_jump_and_nothing_else_jumps() -> None:
    nf, gap, ngroups, nints = 8, 2, 6, 2
    timing = ReadoutTiming(ngroups, nf, gap, 1.0)
    gain, rn = 2.0, 4.0
    q = 6000.0   # e-, 3000 DN: far above the noise of a group difference (~2.5 DN)
    # period 10: group g reads frames 10g+1 .. 10g+8, frames 10g+9, 10g+10 are dropped
    rows = [
        (0, 13, 5, 5, q),          # group 1, read 3 of 8: 6/8 in group 1, 2/8 in group 2
        (0, 19, 10, 10, q),        # in the gap before group 2: all of it in group 2
        (0, 31, 20, 20, q),        # first read of group 3: all in group 3
        (0, 38, 30, 30, q),        # last read of group 3: 1/8 in group 3, 7/8 in group 4
        (0, 25, 7, 33, q / 2),     # group 2, read 5
        (0, 45, 7, 33, q),         # same pixel again, group 4 read 5
        (1, 12, 5, 5, 2 * q),      # second integration, same pixel as the first hit
        (1, 50, 36, 3, q),         # gap before group 5 (the last one)
    ]
    dep = make_deposits(rows, timing)
    inp = make_inputs((40, 40), illum=3.0, gain=gain, read_noise=rn)
    cube = simulate_ramps(inp, timing, nints, dep, np.random.default_rng(8))

    expected = np.zeros((nints, ngroups, 40, 40))
    for integ, frame, y, x, charge in rows:
        g = int(timing.group_of_frame(np.array([frame]))[0])
        frac = min(1.0, max(0.0, (timing.last_read(g) - frame + 1) / nf))
        expected[integ, g, y, x] += charge * frac / gain
        if g + 1 < ngroups:
            expected[integ, g + 1, y, x] += charge * (1 - frac) / gain
    sigma = np.sqrt(2 * rn**2 / nf + 3.0 * 10 / gain**2 + 2 / 12)
    for integ in range(nints):
        for g in range(1, ngroups):
            excess = _excess(cube, integ, g)
            jump = expected[integ, g]
            hit = jump > 0
            assert np.all(np.abs(excess[hit] - jump[hit]) < 6 * sigma), (integ, g)
            assert np.all(np.abs(excess[~hit]) < 6 * sigma), (integ, g)
    # the hit of integration 0 at (5, 5) does not leak into integration 1 beyond its own charge
    first = cube[1, 0, 5, 5].astype(np.float64) - np.median(cube[1, 0])
    assert abs(first) < 6 * sigma


def test_deposit_in_first_group_raises_the_first_read() -> None:
    nf, gap, ngroups = 4, 1, 3
    timing = ReadoutTiming(ngroups, nf, gap, 1.0)
    gain = 2.0
    dep = make_deposits([(0, 2, 3, 3, 4000.0)], timing)   # read 2 of 4: 3/4 of the charge
    inp = make_inputs((20, 20), illum=0.0, gain=gain, read_noise=1.0)
    cube = simulate_ramps(inp, timing, 1, dep, np.random.default_rng(1)).astype(np.float64)
    assert cube[0, 0, 3, 3] - 1000.0 == pytest.approx(4000 * 0.75 / gain, abs=4)
    assert cube[0, 1, 3, 3] - 1000.0 == pytest.approx(4000 / gain, abs=4)


def test_saturated_pixels_stay_at_the_full_well_ceiling() -> None:
    nf, gap, ngroups = 1, 0, 14
    timing = ReadoutTiming(ngroups, nf, gap, 1.0)
    rate, fw, gain = 1.0e4, 8.0e4, 1.6
    coeffs = (0.0, 1.0, -9.0e-7, 1.2e-12)
    inp = make_inputs((50, 50), illum=rate, gain=gain, full_well=fw, coeffs=coeffs, bias=9000.0)
    cube = simulate_ramps(inp, timing, 1, no_deposits(), np.random.default_rng(2))
    ceiling = np.rint(9000.0 + nonlinear(np.array([fw / gain], np.float32), coeffs)[0])
    assert cube.max() <= ceiling
    reads = np.arange(ngroups) + 1.0
    # groups whose charge is 8 sigma above full well are exactly at the ceiling
    saturated = rate * reads > fw + 8 * np.sqrt(fw)
    assert saturated.sum() >= 4
    assert np.all(cube[0, saturated] == ceiling)
    # below full well the ramp still climbs
    below = rate * reads < fw - 8 * np.sqrt(fw)
    assert np.all(cube[0, below] < ceiling)
    assert np.all(np.diff(cube[0, below].astype(np.int64), axis=0) > 0)


def test_saturation_with_read_noise_scatters_around_the_ceiling() -> None:
    timing = ReadoutTiming(6, 2, 0, 1.0)
    fw, gain, rn = 5.0e4, 2.0, 5.0
    inp = make_inputs((80, 80), illum=1.0e6, gain=gain, full_well=fw, read_noise=rn)
    cube = simulate_ramps(inp, timing, 1, no_deposits(), np.random.default_rng(4))
    ceiling = 1000.0 + fw / gain
    values = cube.astype(np.float64)
    sigma = rn / np.sqrt(2)
    assert abs(values.mean() - ceiling) < 0.05
    assert np.all(np.abs(values - ceiling) < 6 * sigma)
    assert values.std() == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.03)


def test_adc_limit_below_full_well_clips_to_exactly_adc_max() -> None:
    timing = ReadoutTiming(5, 1, 0, 1.0)
    fw, gain, adc = 9.0e4, 1.0, 40000
    inp = make_inputs((30, 30), illum=2.0e4, gain=gain, full_well=fw, read_noise=3.0,
                      bias=12000.0, adc_max=adc)
    cube = simulate_ramps(inp, timing, 1, no_deposits(), np.random.default_rng(6))
    assert cube.max() == adc
    # group 0 (2e4 e- -> 32000 DN) is below the limit; from group 2 on (>= 6e4 e-) all clip
    assert np.all(cube[0, 0] < adc)
    assert np.all(cube[0, 2:] == adc)


def test_simulate_ramps_does_not_modify_its_inputs() -> None:
    timing = ReadoutTiming(4, 2, 1, 1.0)
    inp = make_inputs((16, 16), illum=50.0, read_noise=2.0, drift=1.0, row_noise=0.5)
    before = {k: getattr(inp, k).copy() for k in ("illum_e_s", "dark_e_s", "gain", "superbias")}
    dep = make_deposits([(0, 3, 2, 2, 500.0)], timing)
    charge = dep.charge.copy()
    simulate_ramps(inp, timing, 1, dep, np.random.default_rng(0))
    for k, v in before.items():
        assert np.array_equal(getattr(inp, k), v), k
    assert np.array_equal(dep.charge, charge)


def test_same_generator_state_gives_the_same_cube() -> None:
    timing = ReadoutTiming(4, 2, 1, 1.0)
    inp = make_inputs((16, 16), illum=50.0, read_noise=2.0, drift=1.0, row_noise=0.5)
    a = simulate_ramps(inp, timing, 2, no_deposits(), np.random.default_rng(9))
    b = simulate_ramps(inp, timing, 2, no_deposits(), np.random.default_rng(9))
    c = simulate_ramps(inp, timing, 2, no_deposits(), np.random.default_rng(10))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
