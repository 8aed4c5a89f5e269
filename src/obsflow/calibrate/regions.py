"""Large connected regions of flagged pixels in a sparse DQ plane (8-connectivity).

Large cosmic-ray events ("snowballs") are found as connected regions of
JUMP_DET pixels in each group, and a disk around each is flagged too.  A
few percent of a plane's pixels are flagged, mostly in small groups (a
cosmic-ray hit and its neighbours), so the regions are built from the
*runs* of flagged pixels along detector rows: a union-find over the runs
(a run joins every run of the row above that touches it, diagonals
included), each region's area and pixel-coordinate sums accumulated per
run.  No label image and no per-pixel index array is made: one read of
the plane and work in proportion to the number of runs (tests compare the
regions with ``scipy.ndimage.label``'s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["flag_disks_inplace", "large_regions"]


@njit(cache=True, nogil=True)
def _root(parent: np.ndarray, j: int) -> int:  # pragma: no cover - compiled
    while parent[j] != j:
        parent[j] = parent[parent[j]]  # path halving
        j = parent[j]
    return j


@njit(cache=True, nogil=True)
def _runs(plane: np.ndarray, bit: np.uint8, start: np.ndarray, stop: np.ndarray,
          row: np.ndarray, first: np.ndarray) -> int:  # pragma: no cover - compiled
    """The runs of flagged pixels, row by row; with empty ``start`` only counts them."""
    ny, nx = plane.shape
    count = start.size > 0
    n = 0
    for y in range(ny):
        if count:
            first[y] = n
        x = 0
        while x < nx:
            if plane[y, x] & bit:
                s = x
                while x < nx and plane[y, x] & bit:
                    x += 1
                if count:
                    start[n], stop[n], row[n] = s, x, y
                n += 1
            else:
                x += 1
    if count:
        first[ny] = n
    return n


@njit(cache=True, nogil=True)
def _large_regions(plane: np.ndarray, bit: np.uint8, min_area: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    ny = plane.shape[0]
    empty = np.empty(0, np.int64)
    n = _runs(plane, bit, empty, empty, empty, empty)
    start, stop, row = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    first = np.empty(ny + 1, np.int64)  # runs of row y: first[y] to first[y + 1] - 1
    if n == 0:
        return np.empty(0, np.float64), np.empty(0, np.float64), np.empty(0, np.int64)
    _runs(plane, bit, start, stop, row, first)
    parent = np.arange(n)
    for y in range(1, ny):
        a, a_end = first[y - 1], first[y]
        for r in range(first[y], first[y + 1]):
            while a < a_end and stop[a] < start[r]:  # ends left of this run's left diagonal
                a += 1
            b = a
            while b < a_end and start[b] <= stop[r]:  # starts at most at its right diagonal
                ra, rb = _root(parent, r), _root(parent, b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                b += 1
    area = np.zeros(n, np.int64)
    sum_y = np.zeros(n, np.int64)
    sum_x = np.zeros(n, np.int64)
    for r in range(n):
        root = _root(parent, r)
        length = stop[r] - start[r]
        area[root] += length
        sum_y[root] += row[r] * length
        sum_x[root] += (start[r] + stop[r] - 1) * length // 2
    big = 0
    for r in range(n):
        if parent[r] == r and area[r] >= min_area:
            big += 1
    cy = np.empty(big, np.float64)
    cx = np.empty(big, np.float64)
    out_area = np.empty(big, np.int64)
    k = 0
    for r in range(n):  # roots in raster order of their region's first pixel
        if parent[r] == r and area[r] >= min_area:
            cy[k], cx[k], out_area[k] = sum_y[r] / area[r], sum_x[r] / area[r], area[r]
            k += 1
    return cy, cx, out_area


def large_regions(plane: np.ndarray, bit: int, min_area: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-connected regions of at least ``min_area`` pixels of ``plane`` that have
    ``bit`` set.

    Parameters
    ----------
    plane : ndarray, uint8, (ny, nx)
        A group's DQ plane.
    bit : int
        The flag (e.g. JUMP_DET).
    min_area : int
        Fewest pixels a region needs, >= 1.

    Returns
    -------
    cy, cx : ndarray, float64
        Centroid of each region, pixels (mean row and column of its pixels),
        in raster order of the regions' first pixels.
    area : ndarray, int64
        Number of pixels of each region.
    """
    return _large_regions(np.ascontiguousarray(plane), np.uint8(bit), max(int(min_area), 1))


@njit(cache=True, nogil=True)
def flag_disks_inplace(plane: np.ndarray, cy: np.ndarray, cx: np.ndarray, radius: np.ndarray,
                       bit: np.uint8, protect: np.uint8) -> None:  # pragma: no cover - compiled
    """OR ``bit`` into every pixel of ``plane`` within ``radius[k]`` of (``cy[k]``,
    ``cx[k]``) (pixel centres at integer coordinates; distance <= radius), except
    pixels with any bit of ``protect`` set."""
    ny, nx = plane.shape
    for k in range(cy.size):
        c_y, c_x, r = cy[k], cx[k], radius[k]
        y0, y1 = max(0, int(c_y - r)), min(ny, int(c_y + r) + 2)
        x0, x1 = max(0, int(c_x - r)), min(nx, int(c_x + r) + 2)
        for y in range(y0, y1):
            dy2 = (y - c_y) ** 2
            for x in range(x0, x1):
                if dy2 + (x - c_x) ** 2 <= r * r and not plane[y, x] & protect:
                    plane[y, x] |= bit
