"""Connected regions of flagged pixels in a sparse DQ plane (8-connectivity).

Large cosmic-ray events ("snowballs") are found as connected regions of
JUMP_DET pixels in each group.  A few percent of a plane's pixels are
flagged, so the regions are built from the flagged pixels alone (a
union-find over them, in compiled code) instead of labelling every pixel of
the plane as ``scipy.ndimage.label`` does: 4-8x less work on a full frame,
the same regions (tests/calibrate/test_regions.py compares both).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["flagged_regions"]


@njit(cache=True, nogil=True)
def _root(parent: np.ndarray, j: int) -> int:  # pragma: no cover - compiled
    while parent[j] != j:
        parent[j] = parent[parent[j]]  # path halving
        j = parent[j]
    return j


@njit(cache=True, nogil=True)
def _regions(plane: np.ndarray, bit: np.uint8, slot: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, int]:  # pragma: no cover - compiled
    ny, nx = plane.shape
    count = 0
    for y in range(ny):
        for x in range(nx):
            if plane[y, x] & bit:
                count += 1
    idx = np.empty(count, np.int64)
    parent = np.empty(count, np.int64)
    j = 0
    for y in range(ny):
        for x in range(nx):
            if plane[y, x] & bit:
                idx[j] = y * nx + x
                parent[j] = j
                slot[y * nx + x] = j  # read back only at flagged pixels: no reset needed
                j += 1
    for j in range(count):
        y, x = idx[j] // nx, idx[j] % nx
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):  # neighbours already seen
            yy, xx = y + dy, x + dx
            if yy >= 0 and 0 <= xx < nx and plane[yy, xx] & bit:
                a, b = _root(parent, j), _root(parent, slot[yy * nx + xx])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels = np.empty(count, np.int64)
    n = 0
    for j in range(count):  # roots come first in raster order: number them as met
        r = _root(parent, j)
        if r == j:
            n += 1
            labels[j] = n
        else:
            labels[j] = labels[r]
    return idx, labels, n


def flagged_regions(plane: np.ndarray, bit: int, slot: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """The 8-connected regions of the pixels of ``plane`` that have ``bit`` set.

    Parameters
    ----------
    plane : ndarray, uint8, (ny, nx)
        A group's DQ plane.
    bit : int
        The flag (e.g. JUMP_DET).
    slot : ndarray, int64, (ny * nx,), optional
        Scratch space, reused between calls on planes of the same shape.

    Returns
    -------
    idx : ndarray, int64
        Flat indices of the flagged pixels, in raster order.
    labels : ndarray, int64
        Region of each of them, 1 to ``n`` (numbered in raster order of
        their first pixel).
    n : int
        Number of regions.
    """
    if slot is None or slot.size < plane.size:
        slot = np.empty(plane.size, np.int64)
    return _regions(plane, np.uint8(bit), slot)
