"""Stage-2 image steps: the compiled flat field and photometric scaling equal the plain numpy
formulas, and the sorted-run sigma clipping equals astropy's."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.stats import sigma_clip, sigma_clipped_stats

from obsflow.calibrate.image import (
    ImageArrays,
    _sorted_float32,
    apply_flat,
    apply_photom,
    clipped_stats,
    estimate_background,
)
from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ


def _samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    sky = rng.normal(0.3, 0.05, 200_000)
    stars = sky.copy()
    hit = rng.random(sky.size) < 0.05
    stars[hit] += rng.exponential(5.0, int(hit.sum()))
    crowded = sky + np.where(rng.random(sky.size) < 0.3, rng.pareto(1.5, sky.size), 0.0)
    return {"gaussian sky": sky, "sky with sources": stars, "crowded, heavy tail": crowded,
            "two levels": np.concatenate([rng.normal(0, 1, 60_000), rng.normal(8, 1, 40_000)]),
            "few values": rng.normal(5, 2, 7), "constant": np.full(1000, 2.5),
            "large offset": rng.normal(1e4, 1.0, 100_000),
            # a few saturated cores 1e5-1e6 sigma out: their moments are taken away again
            "saturated cores": np.concatenate([sky, rng.uniform(5e3, 5e4, 300)])}


@pytest.mark.parametrize("name", list(_samples()))
@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_clipped_stats_equal_astropy(name: str, sigma: float) -> None:
    values = _samples()[name].astype(np.float32)
    median, std, kept = clipped_stats(values, sigma)
    _, ref_median, ref_std = sigma_clipped_stats(values.astype(np.float64), sigma=sigma,
                                                 maxiters=5)
    ref_kept = int((~sigma_clip(values.astype(np.float64), sigma=sigma, maxiters=5).mask).sum())
    assert median == pytest.approx(ref_median, rel=1e-12, abs=1e-12)
    assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)
    assert kept == ref_kept


@pytest.mark.parametrize("name", ["gaussian sky", "crowded, heavy tail", "large offset"])
def test_clipped_stats_of_float64_values_equal_astropy(name: str) -> None:
    values = _samples()[name]  # float64, as sky matching passes them: sorted as float64
    median, std, kept = clipped_stats(values, 3.0)
    _, ref_median, ref_std = sigma_clipped_stats(values, sigma=3.0, maxiters=5)
    assert median == pytest.approx(ref_median, rel=1e-12, abs=1e-12)
    assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)
    assert kept == int((~sigma_clip(values, sigma=3.0, maxiters=5).mask).sum())


@pytest.mark.parametrize("case", ["normal", "specials", "empty", "one", "ties", "offset"])
def test_radix_sort_equals_numpy(case: str) -> None:
    rng = np.random.default_rng(8)
    values = {"normal": rng.normal(0.0, 3.0, 300_001),
              "specials": [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38,
                           -3.4e38, 2.0**-126, -(2.0**-126)],
              "empty": [], "one": [7.5], "ties": rng.integers(-3, 4, 5000),
              "offset": rng.normal(1e4, 0.01, 20_000)}[case]
    x = np.asarray(values, dtype=np.float32)
    got = _sorted_float32(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, np.sort(x))
    assert np.array_equal(np.signbit(got[got == 0]), np.sort(np.signbit(x[x == 0]))[::-1])


def _image(rng: np.random.Generator, shape: tuple[int, int]) -> ImageArrays:
    sci, err, vp, vr = (rng.normal(5.0, 2.0, shape).astype(np.float32) for _ in range(4))
    return ImageArrays(sci, err, vp, vr, rng.integers(0, 4, shape).astype(np.uint32))


def test_flat_field_equals_the_numpy_formula_on_a_big_endian_read_only_flat() -> None:
    rng = np.random.default_rng(5)
    img = _image(rng, (40, 70))
    flat = rng.normal(1.0, 0.05, img.sci.shape).astype(">f4")  # as FITS gives it
    flat[3, :6] = [np.nan, np.inf, -np.inf, 0.0, -0.5, 1e-30]
    flat.flags.writeable = False
    got = apply_flat(img, flat)
    bad = ~np.isfinite(flat) | (flat <= 0)
    f = np.where(bad, 1.0, flat).astype(np.float32)
    want_sci = img.sci / f
    want_sci[bad] = np.nan
    assert np.array_equal(got.sci, want_sci, equal_nan=True)
    assert np.array_equal(got.err, img.err / f)
    with np.errstate(divide="ignore"):  # 1e-30 squared is 0 in float32: inf, as numpy gives
        assert np.array_equal(got.var_poisson, img.var_poisson / f**2)
        assert np.array_equal(got.var_rnoise, img.var_rnoise / f**2)
    flag = np.uint32(DQ.NO_FLAT_FIELD | DQ.DO_NOT_USE)
    assert np.array_equal(got.dq, np.where(bad, img.dq | flag, img.dq))
    assert bad.sum() == 5 and np.isfinite(got.sci[3, 5])  # 1e-30 is a (tiny) positive flat
    assert all(a.dtype == np.float32 for a in (got.sci, got.err, got.var_poisson, got.var_rnoise))
    assert got.sci is not img.sci and np.array_equal(img.dq, _image(np.random.default_rng(5),
                                                                    (40, 70)).dq)  # input kept


@pytest.mark.parametrize("byteorder", ["=", ">"])
def test_photom_scales_science_and_variances(byteorder: str) -> None:
    img = _image(np.random.default_rng(6), (30, 20))
    img = ImageArrays(*(a.astype(a.dtype.newbyteorder(byteorder)) for a in
                        (img.sci, img.err, img.var_poisson, img.var_rnoise)), img.dq)
    got = apply_photom(img, 0.37)
    p = np.float32(0.37)
    for name in ("sci", "err"):
        assert np.array_equal(getattr(got, name), getattr(img, name) * p)
    for name in ("var_poisson", "var_rnoise"):
        assert np.array_equal(getattr(got, name), getattr(img, name) * p * p)
    assert got.sci.dtype == np.float32 and got.sci.dtype.isnative
    with pytest.raises(CalibrationError, match="PHOTMJSR"):
        apply_photom(img, -1.0)


@pytest.mark.parametrize("byteorder", ["=", ">"])
def test_photom_divides_by_the_relative_pixel_area(byteorder: str) -> None:
    """With an area map (a distorted detector's pixels, read-only, possibly big-endian) SCI
    and ERR scale by photmjsr / area and the variances by its square: the numpy formula in
    float32, bit for bit."""
    rng = np.random.default_rng(7)
    img = _image(rng, (30, 20))
    area = rng.uniform(0.97, 1.04, (30, 20)).astype(np.float32).astype(
        np.dtype(np.float32).newbyteorder(byteorder))
    area.flags.writeable = False
    got = apply_photom(img, 0.37, area)
    q = np.float32(0.37) / area.astype(np.float32)
    for name in ("sci", "err"):
        assert np.array_equal(getattr(got, name), getattr(img, name) * q)
    for name in ("var_poisson", "var_rnoise"):
        assert np.array_equal(getattr(got, name), getattr(img, name) * q * q)
    assert np.array_equal(got.dq, img.dq)
    with pytest.raises(CalibrationError, match=r"pixel-area map of shape \(20, 30\)"):
        apply_photom(img, 0.37, np.ones((20, 30), np.float32))


def test_background_uses_good_pixels_only() -> None:
    rng = np.random.default_rng(3)
    sci = rng.normal(1.0, 0.1, (64, 64)).astype(np.float32)
    dq = np.zeros(sci.shape, np.uint32)
    sci[:8] = 50.0  # flagged: must not count
    dq[:8] = 1
    sci[10, 10] = np.nan
    bkg = estimate_background(sci, dq)
    assert bkg.npixels == 64 * 56 - 1
    assert bkg.level == pytest.approx(1.0, abs=0.01) and bkg.rms == pytest.approx(0.1, rel=0.05)
    with pytest.raises(CalibrationError, match="no good pixel"):
        estimate_background(sci, np.ones(sci.shape, np.uint32))
