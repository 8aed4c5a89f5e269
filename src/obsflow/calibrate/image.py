"""Stage-2 image calibration: flat field, photometric calibration, background estimate.

Pure array functions on rate images (ny, nx): ``sci`` in DN/s with its
``err`` (DN/s), variances (DN/s)**2 and ``dq`` (uint32).  The WCS comes from
:func:`obsflow.models.pointing.detector_wcs` (the one place that computes it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["Background", "ImageArrays", "apply_flat", "apply_photom", "clipped_stats",
           "estimate_background"]


@dataclass(frozen=True)
class ImageArrays:
    """A calibrated image's arrays, all (ny, nx): SCI, ERR, VAR_POISSON, VAR_RNOISE float32, DQ uint32."""

    sci: np.ndarray
    err: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    dq: np.ndarray


def apply_flat(img: ImageArrays, flat: np.ndarray) -> ImageArrays:
    """Divide by the flat field (DN response, nominal 1); new arrays.

    Pixels where the flat is not finite or <= 0 get NO_FLAT_FIELD | DO_NOT_USE
    and NaN science; errors scale by 1/flat, variances by 1/flat**2 (the flat
    rounded to float32 first).  One compiled pass over the five arrays
    (:func:`_flat_rows`); flats stored big-endian (FITS) are swapped first.
    """
    sci, err, vp, vr, dq = _flat_rows(_f32(img.sci), _f32(img.err), _f32(img.var_poisson),
                                      _f32(img.var_rnoise), _native(img.dq), _native(flat),
                                      np.uint32(DQ.NO_FLAT_FIELD | DQ.DO_NOT_USE))
    return ImageArrays(sci, err, vp, vr, dq)


def apply_photom(img: ImageArrays, photmjsr: float, area: np.ndarray | None = None
                 ) -> ImageArrays:
    """Convert DN/s to MJy/sr by ``photmjsr`` (MJy/sr per DN/s of a nominal pixel) and the
    relative pixel area ``area``; new arrays.

    SCI and ERR scale by ``photmjsr / area`` and the variances by its square,
    in float32, in one compiled pass (:func:`_scale_rows`, or
    :func:`_scale_area_rows` with an area map): a pixel of larger solid angle
    collected more of a uniform sky, and holds the same surface brightness.
    ``area`` (ny, nx) is each pixel's solid angle over the nominal one
    (:func:`obsflow.models.pointing.relative_pixel_area`); None means 1
    everywhere (no distortion).
    """
    if not (np.isfinite(photmjsr) and photmjsr > 0):
        raise CalibrationError(f"PHOTMJSR must be a positive number, got {photmjsr}")
    p = np.float32(photmjsr)
    arrays = (_f32(img.sci), _f32(img.err), _f32(img.var_poisson), _f32(img.var_rnoise))
    if area is None:
        sci, err, vp, vr = _scale_rows(*arrays, p)
    else:
        if area.shape != img.sci.shape:
            raise CalibrationError(f"pixel-area map of shape {area.shape} for an image of "
                                   f"shape {img.sci.shape}")
        sci, err, vp, vr = _scale_area_rows(*arrays, p, _f32(_native(area)))
    return replace(img, sci=sci, err=err, var_poisson=vp, var_rnoise=vr)


def _f32(a: np.ndarray) -> np.ndarray:
    """``a`` as native float32 (no copy when it already is)."""
    return np.asarray(a, dtype=np.float32)


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order (numba reads no other; no copy when it already is)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


@njit(cache=True, nogil=True, error_model="numpy")  # x / 0 -> inf, as numpy
def _flat_rows(sci: np.ndarray, err: np.ndarray, vp: np.ndarray, vr: np.ndarray, dq: np.ndarray,
               flat: np.ndarray, flag: np.uint32
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The flat-field division, pixel by pixel (see :func:`apply_flat`); new arrays."""
    ny, nx = sci.shape
    o_sci, o_err = np.empty_like(sci), np.empty_like(err)
    o_vp, o_vr, o_dq = np.empty_like(vp), np.empty_like(vr), np.empty_like(dq)
    for y in range(ny):
        for x in range(nx):
            f = flat[y, x]
            if np.isfinite(f) and f > 0:
                f32 = np.float32(f)
                f2 = f32 * f32
                o_sci[y, x] = sci[y, x] / f32
                o_err[y, x] = err[y, x] / f32
                o_vp[y, x] = vp[y, x] / f2
                o_vr[y, x] = vr[y, x] / f2
                o_dq[y, x] = dq[y, x]
            else:
                o_sci[y, x] = np.nan
                o_err[y, x] = err[y, x]
                o_vp[y, x] = vp[y, x]
                o_vr[y, x] = vr[y, x]
                o_dq[y, x] = dq[y, x] | flag
    return o_sci, o_err, o_vp, o_vr, o_dq


@njit(cache=True, nogil=True)
def _scale_rows(sci: np.ndarray, err: np.ndarray, vp: np.ndarray, vr: np.ndarray, p: np.float32
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SCI, ERR times ``p`` and the variances times ``p`` twice (see :func:`apply_photom`)."""
    ny, nx = sci.shape
    o_sci, o_err = np.empty_like(sci), np.empty_like(err)
    o_vp, o_vr = np.empty_like(vp), np.empty_like(vr)
    for y in range(ny):
        for x in range(nx):
            o_sci[y, x] = sci[y, x] * p
            o_err[y, x] = err[y, x] * p
            o_vp[y, x] = vp[y, x] * p * p
            o_vr[y, x] = vr[y, x] * p * p
    return o_sci, o_err, o_vp, o_vr


@njit(cache=True, nogil=True, error_model="numpy")
def _scale_area_rows(sci: np.ndarray, err: np.ndarray, vp: np.ndarray, vr: np.ndarray,
                     p: np.float32, area: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_scale_rows` with ``p / area`` per pixel (see :func:`apply_photom`)."""
    ny, nx = sci.shape
    o_sci, o_err = np.empty_like(sci), np.empty_like(err)
    o_vp, o_vr = np.empty_like(vp), np.empty_like(vr)
    for y in range(ny):
        for x in range(nx):
            q = p / area[y, x]
            o_sci[y, x] = sci[y, x] * q
            o_err[y, x] = err[y, x] * q
            o_vp[y, x] = vp[y, x] * q * q
            o_vr[y, x] = vr[y, x] * q * q
    return o_sci, o_err, o_vp, o_vr


@dataclass(frozen=True)
class Background:
    """Sigma-clipped sky level and scatter (image units) and the pixels used."""

    level: float
    rms: float
    npixels: int


def clipped_stats(values: np.ndarray, sigma: float = 3.0, maxiters: int = 5
                  ) -> tuple[float, float, int]:
    """Sigma-clipped median and standard deviation of ``values`` (1-D, finite), and how
    many values were kept.

    The same iteration as astropy's ``sigma_clipped_stats`` (median centre,
    population standard deviation, keep ``median - sigma std <= x <= median +
    sigma std`` of the values still kept, until nothing changes or
    ``maxiters``), computed on the sorted values: what remains after each
    pass is a contiguous run of them, so each pass is a median lookup, one
    compiled pass for the moments and two binary searches instead of a full
    copy and median (4 M pixels: about 0.07 s instead of 0.4 s; tests compare
    both).  Values are sorted in their own precision (float32 images stay
    float32, by a compiled radix sort: :func:`_sorted_float32`); every sum
    and comparison is in float64 about the first median.
    """
    values = _native(np.asarray(values)).ravel()
    if values.dtype == np.float32:
        ordered = _sorted_float32(values)
    else:
        ordered = np.sort(values if values.dtype.kind == "f" else values.astype(np.float64))
    centre = _median_of_sorted(ordered, 0, ordered.size, 0.0)
    lo, hi = 0, ordered.size
    moments = _centred_moments(ordered, lo, hi, centre)
    for _ in range(maxiters):
        median = _median_of_sorted(ordered, lo, hi, centre)
        std = _std(moments, hi - lo)
        new_lo = max(lo, _first_at_least(ordered, centre, median - sigma * std))
        new_hi = min(hi, _first_above(ordered, centre, median + sigma * std))
        if (new_lo, new_hi) == (lo, hi) or new_hi <= new_lo:
            break
        moments = _narrowed_moments(ordered, centre, moments, (lo, hi), (new_lo, new_hi))
        lo, hi = new_lo, new_hi
    return (_median_of_sorted(ordered, lo, hi, centre) + centre, _std(moments, hi - lo),
            hi - lo)


def _narrowed_moments(ordered: np.ndarray, centre: float, moments: tuple[float, float],
                      old: tuple[int, int], new: tuple[int, int]) -> tuple[float, float]:
    """The centred moments of ``ordered[new[0]:new[1]]`` from those of the wider run ``old``:
    the clipped tails' moments taken away, unless the tails are a large part of the run or
    held most of its sum of squares (the difference loses about 1e-16 of the wider run's
    sums: kept only while that is under 1e-12 of what remains), else summed afresh."""
    (lo, hi), (new_lo, new_hi) = old, new
    if (new_lo - lo) + (hi - new_hi) <= (new_hi - new_lo) // 4:
        below = _centred_moments(ordered, lo, new_lo, centre)
        above = _centred_moments(ordered, new_hi, hi, centre)
        squares = moments[1] - below[1] - above[1]
        if squares * 1e4 >= moments[1]:
            return (moments[0] - below[0] - above[0], squares)
    return _centred_moments(ordered, new_lo, new_hi, centre)


def _std(moments: tuple[float, float], n: int) -> float:
    """Population standard deviation of ``n`` values from their sums of ``x - centre`` and
    its square (relative error about 1e-16 ((mean - centre) / std)**2)."""
    total, squares = moments
    mean = total / n
    return float(np.sqrt(max(squares / n - mean * mean, 0.0)))


def _median_of_sorted(ordered: np.ndarray, lo: int, hi: int, centre: float) -> float:
    """Median of the sorted run ``ordered[lo:hi]`` minus ``centre`` (float64)."""
    mid = lo + (hi - lo) // 2
    if (hi - lo) % 2:
        return float(ordered[mid]) - centre
    return ((float(ordered[mid - 1]) - centre) + (float(ordered[mid]) - centre)) / 2.0


@njit(cache=True, nogil=True)
def _sorted_float32(values: np.ndarray) -> np.ndarray:
    """``values`` (1-D float32, no NaN) sorted ascending: a least-significant-digit radix sort
    in three passes of 11 bits over order-preserving unsigned keys (negative floats have
    every bit flipped, others only the sign bit); about 4x numpy's sort on 4 M values.
    -0.0 sorts before +0.0 (numpy leaves equal values in any order)."""
    n = values.size
    bits = values.view(np.uint32)
    keys = np.empty(n, np.uint32)
    counts = np.zeros((3, 2049), np.int64)
    for i in range(n):
        k = bits[i]
        k = ~k if k & np.uint32(0x80000000) else k | np.uint32(0x80000000)
        keys[i] = k
        counts[0, (k & np.uint32(0x7FF)) + 1] += 1
        counts[1, ((k >> np.uint32(11)) & np.uint32(0x7FF)) + 1] += 1
        counts[2, (k >> np.uint32(22)) + 1] += 1
    for d in range(3):
        for b in range(1, 2049):
            counts[d, b] += counts[d, b - 1]
    other = np.empty(n, np.uint32)
    for d in range(3):
        shift = np.uint32(11 * d)
        for i in range(n):
            k = keys[i]
            b = (k >> shift) & np.uint32(0x7FF)
            other[counts[d, b]] = k
            counts[d, b] += 1
        keys, other = other, keys
    out = np.empty(n, np.uint32)
    for i in range(n):
        k = keys[i]
        out[i] = k & np.uint32(0x7FFFFFFF) if k & np.uint32(0x80000000) else ~k
    return out.view(np.float32)


@njit(cache=True, nogil=True)
def _centred_moments(ordered: np.ndarray, lo: int, hi: int, centre: float) -> tuple[float, float]:
    """Sums of ``x - centre`` and ``(x - centre)**2`` over ``ordered[lo:hi]`` in float64,
    in blocks of 4096 (the rounding of pairwise sums, at one pass)."""
    total, squares = 0.0, 0.0
    for start in range(lo, hi, 4096):
        part, part2 = 0.0, 0.0
        for i in range(start, min(start + 4096, hi)):
            d = np.float64(ordered[i]) - centre
            part += d
            part2 += d * d
        total += part
        squares += part2
    return total, squares


@njit(cache=True, nogil=True)
def _first_at_least(ordered: np.ndarray, centre: float, bound: float) -> int:
    """First index whose ``x - centre`` (float64) is >= ``bound`` (size if none)."""
    lo, hi = 0, ordered.size
    while lo < hi:
        mid = (lo + hi) // 2
        if np.float64(ordered[mid]) - centre >= bound:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True)
def _first_above(ordered: np.ndarray, centre: float, bound: float) -> int:
    """First index whose ``x - centre`` (float64) is > ``bound`` (size if none)."""
    lo, hi = 0, ordered.size
    while lo < hi:
        mid = (lo + hi) // 2
        if np.float64(ordered[mid]) - centre > bound:
            hi = mid
        else:
            lo = mid + 1
    return lo


def estimate_background(sci: np.ndarray, dq: np.ndarray, sigma: float = 3.0) -> Background:
    """Sigma-clipped median and standard deviation of the good pixels (DQ == 0, finite)
    (:func:`clipped_stats`, 5 iterations at most).

    Raises
    ------
    CalibrationError
        No good pixel at all.
    """
    good = (dq == 0) & np.isfinite(sci)
    if not good.any():
        raise CalibrationError("no good pixel to estimate the background from")
    median, std, _ = clipped_stats(sci[good], sigma)
    return Background(median, std, int(good.sum()))
