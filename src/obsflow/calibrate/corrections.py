"""Stage-1 group corrections: DQ initialisation, saturation, superbias, linearity, dark.

Pure array functions.  Each returns a new array; the ``..._inplace``
variants (used by the pipeline, which owns its working copy of the cube)
change the array they are given and say so in their name.  Shapes:
``data`` float32 (nints, ngroups, ny, nx) in DN, ``groupdq`` uint8 same
shape, ``pixeldq`` uint32 (ny, nx), reference images (ny, nx).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = [
    "correct_linearity_inplace",
    "dq_init",
    "flag_saturation",
    "group_mean_times",
    "linearize",
    "saturation_threshold",
    "subtract_dark",
    "subtract_dark_inplace",
    "subtract_superbias",
    "subtract_superbias_inplace",
]


def dq_init(mask: np.ndarray, groupdq: np.ndarray | None,
            shape: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Start the DQ arrays of an exposure.

    Parameters
    ----------
    mask : ndarray, uint32, (ny, nx)
        Bad-pixel mask (MASK reference file, JWST bits).
    groupdq : ndarray, uint8, (nints, ngroups, ny, nx), or None
        Group DQ that came with the Level-1 product (missing data), if any.
    shape : tuple
        (nints, ngroups, ny, nx) of the cube.

    Returns
    -------
    pixeldq : ndarray, uint32, (ny, nx)
        A copy of the mask.
    groupdq : ndarray, uint8, shape
        A copy of the input group DQ (zeros if none).
    """
    if mask.shape != shape[2:]:
        raise CalibrationError(f"mask shape {mask.shape} != detector shape {shape[2:]}")
    gdq = np.zeros(shape, np.uint8) if groupdq is None else np.array(groupdq, np.uint8, copy=True)
    return np.array(mask, np.uint32, copy=True), gdq


def saturation_threshold(saturation: np.ndarray, read_noise: np.ndarray, nframes: int,
                         margin: float) -> np.ndarray:
    """The raw level (DN) from which a group counts as saturated: SATURATION less ``margin``
    times a group's read noise (``read_noise``: single read, DN; over sqrt(``nframes``)).

    A group at full well reads the level plus that noise, so at the level itself about
    half of the first saturated groups read below it, stay in the fit and pull the slope
    down: pixels saturating within the ramp came out 5-25% low (pulls -20 to -200) on the
    simulator's ramps, within 0.01% with a margin of 5 (tests/calibrate/test_corrections.py).
    NaN levels (unknown) stay NaN."""
    if not margin >= 0:
        raise CalibrationError(f"saturation noise margin must be >= 0 sigma, got {margin}")
    sigma = np.asarray(read_noise, np.float32) / np.float32(np.sqrt(nframes))
    return (np.asarray(saturation, np.float32) - np.float32(margin) * sigma).astype(np.float32)


def flag_saturation(data: np.ndarray, groupdq: np.ndarray, saturation: np.ndarray,
                    pixeldq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flag groups at or above the saturation level, and every later group of the integration.

    Parameters
    ----------
    data : ndarray, (nints, ngroups, ny, nx)
        Raw group values, DN (bias included, as SATURATION is).
    groupdq : ndarray, uint8, same shape
    saturation : ndarray, float32, (ny, nx)
        Raw saturation level, DN; NaN means unknown.
    pixeldq : ndarray, uint32, (ny, nx)

    Returns
    -------
    groupdq : ndarray, uint8
        New group DQ with SATURATED | DO_NOT_USE.
    pixeldq : ndarray, uint32
        New pixel DQ with NO_SAT_CHECK where the level is unknown.
    """
    unknown = ~np.isfinite(saturation)
    level = np.where(unknown, np.inf, saturation).astype(np.float32)
    out = np.array(groupdq, np.uint8, copy=True)
    _flag_saturation_rows(data, level, out, np.uint8(DQ.SATURATED | DQ.DO_NOT_USE))
    pdq = np.array(pixeldq, np.uint32, copy=True)
    pdq[unknown] |= np.uint32(DQ.NO_SAT_CHECK)
    return out, pdq


@njit(cache=True, nogil=True)
def _flag_saturation_rows(data: np.ndarray, level: np.ndarray, out: np.ndarray,
                          flag: np.uint8) -> None:  # pragma: no cover - compiled
    """OR ``flag`` into ``out`` from the first group at or above ``level`` on, per
    integration and pixel; one pass along detector rows."""
    nints, ngroups, ny, nx = data.shape
    seen = np.empty(nx, np.bool_)
    for i in range(nints):
        for y in range(ny):
            lev = level[y]
            seen[:] = False
            for g in range(ngroups):
                row, flags = data[i, g, y], out[i, g, y]
                for x in range(nx):
                    seen[x] = seen[x] or row[x] >= lev[x]
                    if seen[x]:
                        flags[x] |= flag


def subtract_superbias_inplace(data: np.ndarray, superbias: np.ndarray) -> None:
    """Subtract the superbias (DN, (ny, nx)) from every group of ``data``, in place."""
    for i in range(data.shape[0]):
        data[i] -= superbias[None, :, :]


def subtract_superbias(data: np.ndarray, superbias: np.ndarray) -> np.ndarray:
    """Return ``data - superbias`` (float32 copy); see :func:`subtract_superbias_inplace`."""
    out = np.array(data, np.float32, copy=True)
    subtract_superbias_inplace(out, superbias)
    return out


def correct_linearity_inplace(data: np.ndarray, coeffs: np.ndarray) -> None:
    """Replace measured DN by linear DN, ``sum_k coeffs[k] * data**k``, in place.

    Parameters
    ----------
    data : ndarray, float32, (nints, ngroups, ny, nx)
        Bias-subtracted DN; modified.
    coeffs : ndarray, (ncoeffs,) or (ncoeffs, ny, nx)
        Polynomial coefficients, lowest order first (LINEARITY COEFFS).

    The polynomial is evaluated by Horner's rule in float32, one pass over
    the cube in compiled code.
    """
    c = np.asarray(coeffs, np.float32)
    if c.ndim == 1:
        c = c[:, None, None]
    if c.ndim != 3 or c.shape[1:] not in ((1, 1), data.shape[2:]):
        raise CalibrationError(f"linearity coefficients of shape {np.shape(coeffs)} do not fit "
                               f"data of shape {data.shape}: expected (ncoeffs,) or "
                               f"(ncoeffs, {data.shape[2]}, {data.shape[3]})")
    _horner_inplace(data, np.ascontiguousarray(c))


@njit(cache=True, nogil=True)
def _horner_inplace(data: np.ndarray, c: np.ndarray) -> None:  # pragma: no cover - compiled
    """``data <- sum_k c[k] data**k`` per pixel; ``c`` (ncoeffs, ny, nx) or (ncoeffs, 1, 1).

    Horner's rule one coefficient at a time along a whole detector row (a
    loop the compiler vectorises; per pixel it would wait on each multiply-add).
    """
    nints, ngroups, ny, nx = data.shape
    nc = c.shape[0]
    per_pixel = c.shape[1] > 1
    acc = np.empty(nx, np.float32)
    for i in range(nints):
        for g in range(ngroups):
            for y in range(ny):
                row = data[i, g, y]
                cy = y if per_pixel else 0
                for k in range(nc - 1, -1, -1):
                    if per_pixel:
                        ck = c[k, cy]
                        for x in range(nx):
                            acc[x] = ck[x] if k == nc - 1 else acc[x] * row[x] + ck[x]
                    else:
                        ck0 = c[k, 0, 0]
                        for x in range(nx):
                            acc[x] = ck0 if k == nc - 1 else acc[x] * row[x] + ck0
                row[:] = acc


def linearize(data: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Return linearised data (float32 copy); see :func:`correct_linearity_inplace`."""
    out = np.array(data, np.float32, copy=True)
    correct_linearity_inplace(out, coeffs)
    return out


def group_mean_times(ngroups: int, frame_time: float, nframes: int, groupgap: int) -> np.ndarray:
    """Mean read time of each group since reset, seconds, shape (ngroups,)."""
    g = np.arange(ngroups, dtype=np.float64)
    return frame_time * (g * (nframes + groupgap) + (nframes + 1) / 2.0)


def subtract_dark_inplace(data: np.ndarray, dark_rate: np.ndarray, times: np.ndarray) -> None:
    """Subtract accumulated dark ``dark_rate * times[g]`` from each group, in place.

    Parameters
    ----------
    data : ndarray, float32, (nints, ngroups, ny, nx), DN; modified.
    dark_rate : ndarray, (ny, nx)
        Dark current, DN/s (DARK reference).
    times : ndarray, (ngroups,)
        Mean read time of each group since reset, s (:func:`group_mean_times`).
    """
    rate = np.nan_to_num(np.asarray(dark_rate, np.float32))
    _subtract_dark_rows(data, np.ascontiguousarray(rate), np.asarray(times, np.float32))


@njit(cache=True, nogil=True)
def _subtract_dark_rows(data: np.ndarray, rate: np.ndarray,
                        times: np.ndarray) -> None:  # pragma: no cover - compiled
    """``data[i, g] -= times[g] * rate`` in float32, along detector rows."""
    nints, ngroups, ny, nx = data.shape
    for i in range(nints):
        for g in range(ngroups):
            t = times[g]
            for y in range(ny):
                row, r = data[i, g, y], rate[y]
                for x in range(nx):
                    row[x] -= t * r[x]


def subtract_dark(data: np.ndarray, dark_rate: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Return dark-subtracted data (float32 copy); see :func:`subtract_dark_inplace`."""
    out = np.array(data, np.float32, copy=True)
    subtract_dark_inplace(out, dark_rate, times)
    return out
