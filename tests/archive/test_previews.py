"""Preview downsampling: block means against a brute-force loop, sizes, NaN handling."""

from __future__ import annotations

import numpy as np

from obsflow.archive.previews import PREVIEW_SIZE, block_mean, render_previews


def _brute(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = image.shape[0] // factor, image.shape[1] // factor
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            block = image[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
            good = block[np.isfinite(block)]
            if good.size:
                out[i, j] = good.mean()
    return out


def test_block_mean_equals_a_loop_with_nans_and_ragged_edges() -> None:
    rng = np.random.default_rng(4)
    image = rng.normal(5.0, 2.0, (71, 53))
    image[rng.random(image.shape) < 0.05] = np.nan
    image[0:4, 0:4] = np.inf  # a block with nothing finite
    got = block_mean(image, max_side=20)  # factor 4
    assert got.shape == (17, 13)
    assert np.allclose(got, _brute(image, 4), equal_nan=True)
    assert np.isnan(got[0, 0])
    clean = rng.normal(size=(64, 48))
    assert np.allclose(block_mean(clean, max_side=16), _brute(clean, 4))
    assert block_mean(clean, max_side=64) is clean  # fits already: untouched


def test_full_frame_previews_are_capped_and_small_ones_kept() -> None:
    big = render_previews(np.random.default_rng(1).normal(10, 1, (2048, 2040)))
    assert [(r.kind, r.width, r.height) for r in big][:2] == [
        ("png", 1020, PREVIEW_SIZE), ("jpeg", 1020, PREVIEW_SIZE)]
    small = render_previews(np.ones((40, 30)))
    assert (small[0].width, small[0].height) == (30, 40)
