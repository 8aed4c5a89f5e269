"""Regions of flagged pixels: the same as scipy.ndimage.label's, and the large-event
flags the same as an implementation on top of ndimage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from obsflow.calibrate.jumps import flag_large_events_inplace
from obsflow.calibrate.regions import flagged_regions
from obsflow.models.dq import DQ

JUMP = int(DQ.JUMP_DET)


def _plane(rng: np.random.Generator, shape: tuple[int, int], density: float) -> np.ndarray:
    plane = rng.integers(0, 256, shape).astype(np.uint8) & ~np.uint8(JUMP)  # other bits set too
    plane[rng.random(shape) < density] |= np.uint8(JUMP)
    return plane


@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (37, 53)])
def test_regions_equal_ndimage(density: float, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(int(density * 1000) + shape[0])
    plane = _plane(rng, shape, density)
    idx, labels, n = flagged_regions(plane, JUMP)
    ref, ref_n = ndimage.label(plane & JUMP != 0, structure=np.ones((3, 3), bool))
    assert n == ref_n
    np.testing.assert_array_equal(idx, np.flatnonzero(ref))
    # the same partition: a one-to-one map between our labels and ndimage's
    pairs = set(zip(labels.tolist(), ref.ravel()[idx].tolist(), strict=True))
    assert len(pairs) == n == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert labels.size == 0 or (labels.min() == 1 and labels.max() == n)


def _large_events_ndimage(groupdq: np.ndarray, min_area: int, expand: float) -> np.ndarray:
    """The large-event rule written directly on ndimage.label, pixel by pixel (slow, plain)."""
    out = groupdq.copy()
    _, ngroups, ny, nx = groupdq.shape
    for i in range(groupdq.shape[0]):
        for g in range(1, ngroups):
            labels, n = ndimage.label(groupdq[i, g] & JUMP != 0, structure=np.ones((3, 3), bool))
            for label in range(1, n + 1):
                ys, xs = np.nonzero(labels == label)
                if ys.size < min_area:
                    continue
                cy, cx, r = ys.mean(), xs.mean(), expand * np.sqrt(ys.size / np.pi)
                yy, xx = np.mgrid[0:ny, 0:nx]
                disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                free = (out[i, g] & (DQ.DO_NOT_USE | DQ.SATURATED)) == 0
                out[i, g][disk & free] |= np.uint8(JUMP)
    return out


def test_large_events_equal_ndimage_version() -> None:
    rng = np.random.default_rng(4)
    gdq = np.zeros((2, 4, 48, 64), np.uint8)
    gdq[rng.random(gdq.shape) < 0.01] |= np.uint8(JUMP)
    for i, g, y, x, rad in ((0, 1, 10, 10, 4), (0, 2, 30, 50, 3), (1, 3, 0, 0, 7), (1, 1, 47, 63, 7)):
        yy, xx = np.mgrid[0:48, 0:64]
        gdq[i, g][(yy - y) ** 2 + (xx - x) ** 2 <= rad * rad] |= np.uint8(JUMP)
    gdq[0, 1, 12, 12] |= np.uint8(DQ.SATURATED)
    expect = _large_events_ndimage(gdq, 20, 2.0)
    ours = gdq.copy()
    found = flag_large_events_inplace(ours, 20, 2.0)
    assert found == 4
    np.testing.assert_array_equal(ours, expect)
