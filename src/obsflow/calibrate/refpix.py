"""Reference-pixel correction: per-amplifier bias drifts, odd/even columns, side pixels.

H2RG detectors carry a border of reference pixels that see no light but
share the bias drifts of their amplifier.  For every group of every
integration, in place:

1. for each amplifier and each column parity (odd/even), the mean of the
   reference rows (the top and bottom border rows that fall inside the
   array) is subtracted from all pixels of those columns;
2. optionally (``side_smoothing > 0``), the mean of the left and right
   reference columns of each row, smoothed by a running mean over
   ``side_smoothing`` rows, is subtracted from the row (1/f noise).

Which rows and columns are reference pixels is read from the pixel DQ
(REFERENCE_PIXEL bits from the MASK reference file), so subarrays work
unchanged; :func:`reference_layout` reports what is available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.ndimage import uniform_filter1d

from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["RefpixLayout", "correct_reference_pixels_inplace", "correction_variance",
           "reference_layout"]


@dataclass(frozen=True)
class RefpixLayout:
    """Reference rows (ny,) and columns (nx,) of an array, and the amplifier of each column."""

    rows: np.ndarray
    columns: np.ndarray
    amp_of_column: np.ndarray
    parity: np.ndarray

    @property
    def has_rows(self) -> bool:
        return bool(self.rows.size)

    @property
    def has_columns(self) -> bool:
        return bool(self.columns.size)


def reference_layout(pixeldq: np.ndarray, first_column: int, amp_width: int) -> RefpixLayout:
    """Find reference rows/columns from the pixel DQ.

    Parameters
    ----------
    pixeldq : ndarray, uint32, (ny, nx)
    first_column : int
        0-based full-frame column of the array's first column (SUBSTRT1 - 1).
    amp_width : int
        Columns per amplifier, full frame.
    """
    ref = (pixeldq & np.uint32(DQ.REFERENCE_PIXEL)) != 0
    columns = np.arange(first_column, first_column + pixeldq.shape[1])
    return RefpixLayout(rows=np.flatnonzero(ref.all(axis=1)),
                        columns=np.flatnonzero(ref.all(axis=0)),
                        amp_of_column=(columns // amp_width).astype(np.intp),
                        parity=(columns % 2).astype(np.intp))


def correct_reference_pixels_inplace(data: np.ndarray, layout: RefpixLayout,
                                     odd_even: bool = True, side_smoothing: int = 11) -> None:
    """Apply the correction described in the module docstring to ``data`` in place.

    Every group of every integration on its own, computed for many groups
    at once (the running mean replicates the edge rows).

    Parameters
    ----------
    data : ndarray, float32, (nints, ngroups, ny, nx)
        Bias-subtracted DN; modified.
    layout : RefpixLayout
        From :func:`reference_layout`; without reference rows step 1 is not
        possible and the caller must not call this (see ``layout.has_rows``).
    odd_even : bool
        Separate offsets for odd and even columns.
    side_smoothing : int
        Running-mean length (rows) of the side-pixel correction; 0 disables it.
    """
    if not layout.has_rows:
        raise CalibrationError("no reference rows in this array: reference-pixel correction impossible")
    label = layout.amp_of_column * 2 + (layout.parity if odd_even else 0)
    nlab = int(label.max()) + 1
    counts = np.bincount(label, minlength=nlab).astype(np.float64)
    mean_of_label = np.zeros((data.shape[3], nlab))  # column means -> each label's mean
    mean_of_label[np.arange(label.size), label] = 1.0 / np.maximum(counts, 1)[label]
    sides = layout.columns
    chunk = max(1, (4 << 20) // (data[0].size * 4))  # integrations per step: ~4 MB
    for i0 in range(0, data.shape[0], chunk):
        ints = data[i0:i0 + chunk]
        colmean = ints[:, :, layout.rows].mean(axis=2, dtype=np.float64)
        # not ``@``: a BLAS call wakes OpenBLAS's thread pool, which then spins beside the job
        offsets = np.einsum("igx,xl->igl", colmean, mean_of_label)
        column_offset = offsets[:, :, label].astype(np.float32)  # (nint, ngroup, nx)
        if side_smoothing > 0 and sides.size:
            # the side pixels' row means after step 1, from the data before it: step 1
            # takes each side column's offset off every row alike
            rowmean = ints[:, :, :, sides].mean(axis=3, dtype=np.float64)
            rowmean -= column_offset[:, :, sides].mean(axis=2, dtype=np.float64)[:, :, None]
            smooth = uniform_filter1d(rowmean, side_smoothing, axis=2, mode="nearest")
            _subtract_outer_inplace(ints, np.ascontiguousarray(column_offset),
                                    np.ascontiguousarray(smooth, np.float32))
        else:
            ints -= column_offset[:, :, None, :]


@njit(cache=True, nogil=True)
def _subtract_outer_inplace(ints: np.ndarray, column: np.ndarray,
                            row: np.ndarray) -> None:  # pragma: no cover - compiled
    """``ints[i, g, y, x] -= column[i, g, x] + row[i, g, y]``: both corrections in one pass."""
    nints, ngroups, ny, nx = ints.shape
    for i in range(nints):
        for g in range(ngroups):
            col = column[i, g]
            for y in range(ny):
                data, r = ints[i, g, y], row[i, g, y]
                for x in range(nx):
                    data[x] -= col[x] + r


def correction_variance(read_noise: np.ndarray, layout: RefpixLayout, nframes: int,
                        odd_even: bool = True, side_smoothing: int = 11) -> float:
    """Variance the correction adds to every science pixel of every group, DN**2.

    The offsets are estimated from reference pixels that have read noise of
    their own (``rn**2 / nframes`` per group average): the per-amplifier
    (and parity) mean of the reference rows adds ``rn**2 / (nframes N_rows)``
    with ``N_rows`` reference-row pixels per label, and the side-pixel row
    correction adds ``rn**2 / (nframes N_side L)`` for ``N_side`` side
    columns averaged over ``L = side_smoothing`` rows.  Both are white from
    group to group, exactly like read noise, so they belong in the read-noise
    variance of the ramp fit.  (Row noise that the correction cannot remove
    is not included.)

    Parameters
    ----------
    read_noise : ndarray, (ny, nx)
        Single-read noise, DN (READNOISE).
    layout : RefpixLayout
        From :func:`reference_layout` (needs reference rows).
    nframes : int
        Frames averaged per group.
    odd_even, side_smoothing
        As :func:`correct_reference_pixels_inplace`.
    """
    rn2 = np.asarray(read_noise, np.float64) ** 2 / nframes
    label = layout.amp_of_column * 2 + (layout.parity if odd_even else 0)
    per_label = np.bincount(label, minlength=int(label.max()) + 1)
    n_rows = layout.rows.size * int(per_label[per_label > 0].min())
    var = float(np.nanmean(rn2[layout.rows])) / max(n_rows, 1)
    if side_smoothing > 0 and layout.columns.size:
        var += float(np.nanmean(rn2[:, layout.columns])) / (layout.columns.size * side_smoothing)
    return var
