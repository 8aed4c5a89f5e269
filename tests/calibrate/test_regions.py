"""Regions of flagged pixels: the same as scipy.ndimage.label's, and the large-event
flags the same as an implementation on top of ndimage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from obsflow.calibrate.jumps import flag_large_events_inplace
from obsflow.calibrate.regions import large_regions
from obsflow.models.dq import DQ

JUMP = int(DQ.JUMP_DET)


def _plane(rng: np.random.Generator, shape: tuple[int, int], density: float) -> np.ndarray:
    plane = rng.integers(0, 256, shape).astype(np.uint8) & ~np.uint8(JUMP)  # other bits set too
    plane[rng.random(shape) < density] |= np.uint8(JUMP)
    return plane


@pytest.mark.parametrize("min_area", [1, 5, 20])
@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.3, 0.6, 1.0, "checker", "stripes"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (37, 53)])
def test_large_regions_equal_ndimage(density: float | str, shape: tuple[int, int],
                                     min_area: int) -> None:
    """Areas and centroids of the regions of at least ``min_area`` pixels, in raster order of
    their first pixel, the same as from ``ndimage.label`` (8-connectivity); the checkerboard
    joins only through diagonals, the stripes make long runs touching at their ends."""
    rng = np.random.default_rng(shape[0] * 7 + min_area)
    if density == "checker":
        plane = ((np.indices(shape).sum(axis=0) % 2) * JUMP).astype(np.uint8)
    elif density == "stripes":
        yy, xx = np.indices(shape)
        plane = (((yy % 3 == 0) | ((xx % 11 == 10) & (yy % 3 == 1))) * JUMP).astype(np.uint8)
        plane |= rng.integers(0, 256, shape).astype(np.uint8) & ~np.uint8(JUMP)
    else:
        plane = _plane(rng, shape, float(density))
    cy, cx, area = large_regions(plane, JUMP, min_area)
    ref, ref_n = ndimage.label(plane & JUMP != 0, structure=np.ones((3, 3), bool))
    labels = np.arange(1, ref_n + 1)
    ref_area = ndimage.sum_labels(np.ones(shape), ref, labels)
    ref_cy, ref_cx = np.asarray(ndimage.center_of_mass(np.ones(shape), ref, labels)).reshape(-1, 2).T
    keep = ref_area >= min_area  # ndimage numbers its labels in raster order of first pixels
    np.testing.assert_array_equal(area, ref_area[keep].astype(np.int64))
    np.testing.assert_allclose(cy, ref_cy[keep], rtol=0, atol=1e-9)
    np.testing.assert_allclose(cx, ref_cx[keep], rtol=0, atol=1e-9)


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
