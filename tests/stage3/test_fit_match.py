"""Fitting and matching on synthetic catalogs with known corrections; tweakwcs as the oracle."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tweakwcs.linearfit import iter_linear_fit

from obsflow.exceptions import AlignmentError, UnknownOptionError
from obsflow.stage3.fit import MODES, compose, fit_linear
from obsflow.stage3.match import find_offset, match_nearest

TRUE = {  # mode -> (rotation arcsec, scale, (shift xi, eta) arcsec)
    "shift": (0.0, 1.0, (0.031, -0.047)),
    "rshift": (40.0, 1.0, (0.031, -0.047)),
    "rscale": (40.0, 1.0 + 3e-5, (0.031, -0.047)),
    "general": (40.0, 1.0 + 3e-5, (0.031, -0.047)),
}


def _transform(mode: str) -> tuple[np.ndarray, np.ndarray]:
    rot, scale, shift = TRUE[mode]
    t = np.deg2rad(rot / 3600.0)
    m = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    if mode == "general":
        m = m @ np.array([[1.0, 2e-5], [0.0, 1.0 - 1e-5]])  # a little skew
    return m, np.array(shift)


def _pairs(mode: str, n: int = 200, noise: float = 0.002, outliers: int = 10,
           seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Source positions over a 120 arcsec field and their reference positions (arcsec)."""
    rng = np.random.default_rng(seed)
    src = rng.uniform(-60, 60, (n, 2))
    m, t = _transform(mode)
    ref = src @ m.T + t + rng.normal(0, noise, (n, 2))
    ref[:outliers] += rng.uniform(0.05, 0.3, (outliers, 2)) * rng.choice([-1, 1], (outliers, 2))
    return src, ref


@pytest.mark.parametrize("mode", MODES)
def test_fit_recovers_the_correction_and_clips_outliers(mode: str) -> None:
    src, ref = _pairs(mode)
    fit = fit_linear(src, ref, mode)
    m, t = _transform(mode)
    assert np.allclose(fit.matrix, m, atol=1.2e-5 if mode == "general" else 3e-6), fit.matrix - m
    assert np.allclose(fit.shift, t, atol=3e-4)
    assert not fit.used[:10].any() and fit.used[10:].mean() > 0.98
    assert fit.rms_mas == pytest.approx(2.0 * np.sqrt(2), rel=0.15)  # 2 mas per axis
    true_fit = dataclasses.replace(fit, matrix=m)
    assert fit.rotation_arcsec == pytest.approx(true_fit.rotation_arcsec, abs=0.5)
    assert true_fit.rotation_arcsec == pytest.approx(TRUE[mode][0], abs=3.0)  # skew: general
    if mode != "general":
        assert fit.scale == pytest.approx(TRUE[mode][1], abs=3e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nclip", [0, 10])
def test_fit_agrees_with_tweakwcs(mode: str, nclip: int) -> None:
    """tweakwcs.linearfit.iter_linear_fit on the same pairs: same matrix, shift and clipping.

    Without clipping the two least-squares solutions agree to rounding; with
    clipping (clipped pairs stay out: tweakwcs clip_accum=True) both reject
    the same outliers.
    """
    src, ref = _pairs(mode, seed=8)
    ours = fit_linear(src, ref, mode, clip_sigma=3.0, max_iterations=nclip)
    theirs = iter_linear_fit(ref, src, fitgeom=mode, center=(0.0, 0.0), nclip=nclip,
                             sigma=(3.0, "rmse"), clip_accum=True)
    assert np.array_equal(ours.used, theirs["fitmask"])
    assert np.allclose(ours.matrix, theirs["matrix"], rtol=0, atol=1e-10)
    assert np.allclose(ours.shift, theirs["shift"], rtol=0, atol=1e-9)  # 1 micro-arcsec
    assert ours.rms_mas == pytest.approx(theirs["rmse"] * 1000.0, rel=1e-6)


def test_fit_refuses_too_few_points_and_unknown_modes() -> None:
    with pytest.raises(AlignmentError, match="general fit needs at least 3 matched stars, got 2"):
        fit_linear(np.zeros((2, 2)), np.ones((2, 2)), "general")
    with pytest.raises(AlignmentError, match="coincide"):
        fit_linear(np.zeros((4, 2)), np.ones((4, 2)), "rscale")
    with pytest.raises(UnknownOptionError, match="fit mode"):
        fit_linear(np.zeros((4, 2)), np.ones((4, 2)), "affine")


def test_compose_applies_inner_then_outer() -> None:
    src, ref = _pairs("rscale", outliers=0)
    a = fit_linear(src, ref, "rscale")
    b = fit_linear(ref, src * 1.001 + 0.2, "rscale")
    xy = np.array([[10.0, -5.0], [-30.0, 40.0]])
    assert np.allclose(compose(b, a).apply(xy), b.apply(a.apply(xy)), atol=1e-12)


@pytest.mark.parametrize("offset_pix", [0.3, 1.0, 4.0])
def test_offset_search_and_matching_among_spurious_sources(offset_pix: float) -> None:
    """Offsets of tens of mas to a few pixels, 40% spurious sources on each side."""
    rng = np.random.default_rng(5)
    scale = 0.031  # arcsec per pixel
    stars = rng.uniform(0, 10, (60, 2))
    offset = np.array([offset_pix, -0.6 * offset_pix]) * scale
    src = np.concatenate([stars + rng.normal(0, 0.001, stars.shape), rng.uniform(0, 10, (40, 2))])
    ref = np.concatenate([stars + offset, rng.uniform(0, 10, (40, 2))])
    found, support = find_offset(src, ref, search_radius=10 * scale, tolerance=scale)
    assert np.allclose(found, offset, atol=0.003) and support >= 55
    i, j = match_nearest(src + found, ref, scale)
    true_pairs = (i < 60) & (j == i)
    assert true_pairs.sum() >= 58 and (i[j != i] >= 60).all()
    assert len(set(j.tolist())) == j.size  # one-to-one
