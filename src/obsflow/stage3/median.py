"""Lower medians of image stacks, and what may be dropped from them (outlier detection's median).

The lower median of n values, the ((n - 1) // 2)-th smallest, stands
n - 1 - (n - 1) // 2 high values: one of three, none of a pair (whose lower
median is its minimum).  Cosmic rays, hot pixels and snowballs are high, so
where some values are *known* to be high -- inputs with a pixel flagged
nearby by an earlier pass of outlier detection, counted by
:func:`flagged_inputs` -- the median can drop them (``high`` of
:func:`lower_median`).

Units: those of the stack (SCI units for outlier detection); positions in
grid pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from obsflow.exceptions import OutlierError

__all__ = ["flagged_inputs", "lower_median", "lower_median_inplace", "ranked_lower_median_inplace"]


def lower_median(stack: np.ndarray, min_count: int, high: np.ndarray | None = None,
                 contrast: float = 3.0) -> np.ndarray:
    """Lower median over axis 0 of ``stack`` ignoring NaN; NaN where fewer than ``min_count`` finite.

    For n finite values the ((n - 1) // 2)-th smallest: the median for odd n,
    the lower middle value for even n (the minimum of a pair).  It stands
    s = n - 1 - (n - 1) // 2 high values (outliers are high: one of three).

    ``high`` (integer, the shape of one plane of ``stack``, which is then a
    stack of images (n, ny, nx)): how many of the values at each pixel are
    known to be high (the inputs flagged nearby).  Where that is more than s,
    the result is the lower median of the values left once that many highest
    are dropped (the lowest when none is left).  Where it is exactly s, one
    more high value not yet known (a weaker ray of another input, hidden
    because the median there was itself a ray) would break the median: there
    one more is dropped, but only where the lowest value shows no source --
    (median - lowest) > ``contrast`` x (lowest - the least lowest value in
    its 5 x 5 neighbourhood): a real source is in every input, so its lowest
    value stands above the local floor by a fair share of the median's; a
    ray in the median leaves the lowest value at the floor.
    """
    return lower_median_inplace(np.array(stack, copy=True), min_count, high, contrast)


def lower_median_inplace(stack: np.ndarray, min_count: int, high: np.ndarray | None = None,
                         contrast: float = 3.0) -> np.ndarray:
    """:func:`lower_median`, sorting ``stack`` itself along axis 0 (no copy of it)."""
    return ranked_lower_median_inplace(stack, min_count, high, contrast)[0]


def ranked_lower_median_inplace(stack: np.ndarray, min_count: int, high: np.ndarray | None,
                                contrast: float = 3.0) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`lower_median_inplace`, and where ``high`` lowered the rank (bool, the shape of one
    plane; None without ``high``)."""
    count = np.count_nonzero(np.isfinite(stack), axis=0)
    stack.sort(axis=0)  # NaN sort last
    index = np.maximum((count - 1) // 2, 0)
    out = np.take_along_axis(stack, index[None], axis=0)[0]
    lowered = None
    if high is not None:
        if high.shape != out.shape:
            raise OutlierError(f"lower median: high must have the shape of one plane "
                               f"{out.shape}, got {high.shape}")
        known = high.astype(np.intp)
        stands = count - 1 - index
        lowest = stack[0]
        with np.errstate(invalid="ignore"):
            floor = ndimage.minimum_filter(np.where(np.isfinite(lowest), lowest, np.inf), size=5)
            edge = (known == stands) & ((out - lowest) > np.float32(contrast) * (lowest - floor))
        del floor
        lowered = ((known > stands) | edge) & (index > 0)  # where the rank can go down
        index = np.maximum((count - known - edge - 1) // 2, 0)
        out[lowered] = np.take_along_axis(stack, index[None], axis=0)[0][lowered]
    out[count < min_count] = np.nan
    return out, lowered


def flagged_inputs(flags: Sequence[np.ndarray | None], grid_shape: tuple[int, int],
                   radius: int) -> np.ndarray:
    """How many inputs have a flagged pixel within ``radius`` grid pixels (square) of each grid
    pixel, (grid_shape) uint8 (uint16 for more than 255 inputs).

    ``flags``: per input, (2, m) integer grid (x, y) of its flagged pixels (the grid pixel
    nearest each one's centre; off the grid ignored), or None.
    """
    ny, nx = grid_shape
    out = np.zeros(grid_shape, np.uint8 if len(flags) < 256 else np.uint16)
    for xy in flags:
        if xy is None:
            continue
        on = (xy[0] >= 0) & (xy[0] < nx) & (xy[1] >= 0) & (xy[1] < ny)
        if not on.any():
            continue
        x, y = xy[0][on], xy[1][on]
        x0, x1 = max(0, int(x.min()) - radius), min(nx, int(x.max()) + radius + 1)
        y0, y1 = max(0, int(y.min()) - radius), min(ny, int(y.max()) + radius + 1)
        box = np.zeros((y1 - y0, x1 - x0), bool)
        box[y - y0, x - x0] = True
        if radius:  # a maximum filter of the bytes: a square dilation
            box = ndimage.maximum_filter(box.view(np.uint8), size=2 * radius + 1).view(bool)
        out[y0:y1, x0:x1] += box
    return out
