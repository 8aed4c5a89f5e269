"""Linearity correction equals numpy's polynomial evaluation, for scalar and per-pixel coefficients."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import polynomial

from obsflow.calibrate.corrections import correct_linearity_inplace, linearize
from obsflow.exceptions import CalibrationError


def test_linearity_scalar_and_per_pixel_coefficients() -> None:
    rng = np.random.default_rng(2)
    data = rng.uniform(0, 60000, (2, 4, 6, 5)).astype(np.float32)
    scalar = np.array([0.0, 1.0, 2e-6, -1e-11, 3e-17], ">f8")  # as read from a FITS file
    expect = polynomial.polyval(data.astype(np.float64), scalar.astype(np.float64))
    np.testing.assert_allclose(linearize(data, scalar), expect, rtol=2e-6)
    maps = scalar[:, None, None] * rng.uniform(0.9, 1.1, (5, 6, 5))
    expect = np.empty(data.shape)
    for y in range(6):
        for x in range(5):
            expect[:, :, y, x] = polynomial.polyval(data[:, :, y, x].astype(np.float64), maps[:, y, x])
    strided = np.asfortranarray(data)  # any memory layout is corrected in place
    correct_linearity_inplace(strided, maps)
    np.testing.assert_allclose(strided, expect, rtol=2e-6)
    with pytest.raises(CalibrationError, match=r"linearity coefficients of shape \(5, 3, 3\)"):
        correct_linearity_inplace(data, maps[:, :3, :3])


def test_saturation_flags_the_first_saturated_group_and_every_later_one() -> None:
    """Against the rule written plainly with numpy: a group at or above the level, and every
    later group of that integration, gets SATURATED | DO_NOT_USE (a ramp that dips back
    below stays flagged); an unknown (NaN) level flags nothing and marks NO_SAT_CHECK."""
    from obsflow.calibrate.corrections import flag_saturation
    from obsflow.models.dq import DQ

    rng = np.random.default_rng(5)
    data = rng.uniform(0, 1000, (2, 6, 9, 13)).astype(np.float32)
    level = rng.uniform(300, 1200, (9, 13)).astype(np.float32)
    level[0, :4] = np.nan
    gdq = rng.integers(0, 4, data.shape).astype(np.uint8) * np.uint8(DQ.JUMP_DET)
    pixeldq = np.zeros((9, 13), np.uint32)
    out, pdq = flag_saturation(data, gdq, level, pixeldq)
    hit = np.maximum.accumulate(data >= np.where(np.isnan(level), np.inf, level), axis=1)
    flag = np.uint8(DQ.SATURATED | DQ.DO_NOT_USE)
    np.testing.assert_array_equal(out, np.where(hit, gdq | flag, gdq))
    assert hit.any() and not hit.all() and not (out[:, :, 0, :4] & flag).any()
    assert (pdq[0, :4] == DQ.NO_SAT_CHECK).all() and not pdq[1:].any()
    assert not (gdq & flag).any()  # the input is not changed


def test_dark_subtraction_equals_float32_numpy() -> None:
    from obsflow.calibrate.corrections import group_mean_times, subtract_dark

    rng = np.random.default_rng(6)
    data = rng.uniform(0, 5000, (2, 5, 7, 11)).astype(np.float32)
    rate = rng.uniform(0, 0.05, (7, 11)).astype(np.float32)
    rate[3, 3] = np.nan  # unknown dark: nothing subtracted
    times = group_mean_times(5, 10.7, 4, 1)
    expect = data.copy()
    for g, t in enumerate(times):
        expect[:, g] -= np.float32(t) * np.nan_to_num(rate)
    np.testing.assert_array_equal(subtract_dark(data, rate, times), expect)


@pytest.mark.parametrize("odd_even,side_smoothing", [(True, 11), (False, 0), (True, 3)])
def test_reference_pixels_one_pass_equals_the_two_steps(odd_even: bool,
                                                        side_smoothing: int) -> None:
    """The correction in one pass over the cube equals its definition in two: take each
    amplifier's (and column parity's) mean of the reference rows off every pixel, then a
    running mean of the side reference pixels' row means of the result off every row."""
    from scipy.ndimage import uniform_filter1d

    from obsflow.calibrate.refpix import correct_reference_pixels_inplace, reference_layout
    from obsflow.models.dq import DQ

    rng = np.random.default_rng(7)
    shape = (2, 3, 40, 32)
    data = (rng.normal(0, 5, shape) + rng.normal(0, 50, shape[:2] + (1, 32))
            + rng.normal(0, 20, shape[:3] + (1,))).astype(np.float32)
    pixeldq = np.zeros(shape[2:], np.uint32)
    pixeldq[:4] = pixeldq[-4:] = pixeldq[:, :4] = pixeldq[:, -4:] = DQ.REFERENCE_PIXEL
    layout = reference_layout(pixeldq, 0, 8)
    label = layout.amp_of_column * 2 + (layout.parity if odd_even else 0)
    expect = data.astype(np.float64)
    for lab in np.unique(label):
        cols = label == lab
        expect[..., cols] -= expect[:, :, layout.rows][..., cols].mean(axis=(2, 3))[..., None, None]
    if side_smoothing:
        rows = expect[..., layout.columns].mean(axis=3)
        expect -= uniform_filter1d(rows, side_smoothing, axis=2, mode="nearest")[..., None]
    ours = data.copy()
    correct_reference_pixels_inplace(ours, layout, odd_even, side_smoothing)
    np.testing.assert_allclose(ours, expect, rtol=0, atol=2e-4)
    assert np.abs(expect - data).max() > 10  # the correction did something


@pytest.mark.parametrize("drift_dn", [0.0, 2.0])
def test_the_saturation_margin_keeps_full_well_groups_out_of_the_fit(drift_dn: float) -> None:
    """Pixels saturating a fifth of the way into the ramp up to beyond its end (the
    simulator's ramps: charge clipped at full well, then read with noise, amplifier drift
    per group).  With the threshold at SATURATION itself, a clipped group reading below it
    stays in the fit: the slopes come out several percent low.  With the step's margin (5
    sigma of a group's read noise) every fit is unbiased to 0.05% (against the true rate)."""
    from obsflow.calibrate.corrections import flag_saturation, saturation_threshold
    from obsflow.calibrate.ramps import fit_ramps
    from obsflow.calibrate.steps import SATURATION_MARGIN
    from obsflow.simulate.cosmic_rays import Deposits, ReadoutTiming
    from obsflow.simulate.ramps import PixelInputs, simulate_ramps

    ny, nx = 120, 100
    gain, full_well, rn, bias = 2.0, 90000.0, 8.0, 1000.0
    timing = ReadoutTiming(ngroups=8, nframes=2, groupgap=0, frame_time=1.0)
    t_end = timing.last_read(timing.ngroups - 1) * timing.frame_time
    when = np.linspace(0.2, 1.5, ny)[:, None] * np.ones((1, nx))  # saturating at this x t_end
    illum = (full_well / (when * t_end)).astype(np.float32)

    def plane(v: float) -> np.ndarray:
        return np.full((ny, nx), v, np.float32)

    inp = PixelInputs(illum, plane(0.0), plane(gain), plane(rn), plane(bias), full_well,
                      (0.0, 1.0), 65535, np.zeros(nx, np.int64), np.zeros(nx, np.int64),
                      drift_dn, 0.0)
    none = Deposits(*(np.zeros(0, t) for t in (bool, int, int, int, int, int, np.float32)))
    cube = simulate_ramps(inp, timing, 1, none, np.random.default_rng(4))
    true = illum / gain
    within = when[:, 0] < 1.0  # (the others never saturate)
    for margin, ok in ((0.0, False), (SATURATION_MARGIN, True)):
        level = saturation_threshold(plane(bias + full_well / gain), plane(rn), timing.nframes,
                                     margin)
        gdq, _ = flag_saturation(cube, np.zeros(cube.shape, np.uint8), level,
                                 np.zeros((ny, nx), np.uint32))
        fit = fit_ramps(cube.astype(np.float32) - bias, gdq, read_noise=rn, gain=gain,
                        frame_time=timing.frame_time, group_time=2.0, nframes=2, groupgap=0)
        bias_rel = float(np.mean(fit.slope[within] / true[within]) - 1.0)
        assert np.isfinite(fit.slope).all()
        if ok:
            assert abs(bias_rel) < 5e-4, bias_rel
            assert abs(float(np.mean(fit.slope[~within] / true[~within])) - 1.0) < 5e-4
        else:
            assert bias_rel < -0.02, bias_rel
    with pytest.raises(CalibrationError, match="margin"):
        saturation_threshold(plane(1.0), plane(1.0), 1, -1.0)
