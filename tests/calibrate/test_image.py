"""Stage-2 image statistics: the sorted-run sigma clipping equals astropy's."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.stats import sigma_clip, sigma_clipped_stats

from obsflow.calibrate.image import clipped_stats, estimate_background
from obsflow.exceptions import CalibrationError


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
            "large offset": rng.normal(1e4, 1.0, 100_000)}


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
