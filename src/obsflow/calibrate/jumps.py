"""Jump (cosmic-ray) detection by two-point differences with iterative clipping.

The method is Anderson & Gordon (2011) as the JWST pipeline runs it
(stcal ``twopoint_difference``, iterative branch), per pixel, with the
differences of all integrations pooled:

1. first differences ``d`` of consecutive groups; a difference touching a
   DO_NOT_USE or SATURATED group is not usable;
2. with ``n`` usable differences, take the median ``m`` of ``|d|`` (after
   dropping the largest when ``n >= 4``; the smaller one when ``n == 2``)
   and the noise of one difference ``sigma = sqrt(|m| / gain + 2 rn**2 / nframes)``
   (DN; Poisson of the median difference plus two group averages' read noise);
3. the difference with the largest ``| |d| - m | / sigma`` is a jump if that
   ratio exceeds ``threshold`` (``n >= 4``), ``threshold_3`` (``n == 3``) or
   ``threshold_2`` (``n == 2``); it is flagged on the later group, removed,
   and the pixel is searched again until nothing exceeds the threshold;
4. the four neighbours of a jump whose size, against the median of the
   *signed* differences, lies between ``neighbor_min`` and ``neighbor_max``
   sigma are flagged too (charge spills to adjacent pixels);
5. optionally, large events ("snowballs"): connected groups of at least
   ``large_event_min_area`` flagged pixels in one group get a disk around
   them, ``large_event_expand`` times their radius, flagged as well.

Exposures with fewer than three groups are returned unchanged (as stcal).
Pixels are processed one detector row at a time in compiled code; the only
memory beyond the inputs is the returned group DQ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import ndimage

from obsflow.calibrate._numeric import as_pixel_map, nan_median_sorted, sort_inplace
from obsflow.models.dq import DQ

__all__ = ["JumpOptions", "detect_jumps", "flag_large_events_inplace"]

_DNU = np.uint8(DQ.DO_NOT_USE)
_SAT = np.uint8(DQ.SATURATED)
_JUMP = np.uint8(DQ.JUMP_DET)


@dataclass(frozen=True)
class JumpOptions:
    """Secondary settings of :func:`detect_jumps` (JWST defaults).

    Attributes
    ----------
    threshold_3, threshold_2 : float
        Rejection thresholds (sigma) when only 3 or 2 differences are usable.
    flag_neighbors : bool
        Flag the four neighbours of a jump.
    neighbor_min, neighbor_max : float
        Only jumps between these sizes (sigma) get their neighbours flagged.
    large_events : bool
        Flag large events (snowballs) with a disk around each.
    large_event_min_area : int
        Minimum connected flagged pixels in one group to count as a large event.
    large_event_expand : float
        Radius of the flagged disk over the event's equivalent radius.
    """

    threshold_3: float = 5.0
    threshold_2: float = 6.0
    flag_neighbors: bool = True
    neighbor_min: float = 10.0
    neighbor_max: float = 1000.0
    large_events: bool = False
    large_event_min_area: int = 20
    large_event_expand: float = 2.0


@njit(cache=True, nogil=True)
def _pixel_jumps(v: np.ndarray, dq: np.ndarray, noise2: float, inv_gain: float,
                 thresholds: tuple, absd: np.ndarray, scratch: np.ndarray) -> int:  # pragma: no cover
    """Iterative two-point search on one pixel; marks jumps as NaN-free index list in ``absd``.

    ``absd`` (nints * (ngroups - 1)) receives |d| with NaN where unusable; on
    return, flagged differences hold ``-1``.  Returns the number of jumps.
    """
    nints, ng = v.shape
    nd = ng - 1
    thr, thr3, thr2 = thresholds
    for i in range(nints):
        for k in range(nd):
            bad = (dq[i, k] | dq[i, k + 1]) & (_DNU | _SAT)
            absd[i * nd + k] = np.nan if bad else abs(v[i, k + 1] - v[i, k])
    njump = 0
    while True:
        n = 0
        for j in range(nints * nd):
            if absd[j] >= 0.0:
                scratch[n] = absd[j]
                n += 1
        if n < 2:
            return njump
        sort_inplace(scratch, n)
        if n >= 4:
            med = nan_median_sorted(scratch, n - 1)
        elif n == 3:
            med = scratch[1]
        else:
            med = scratch[0]
        sigma = np.sqrt(abs(med) * inv_gain + noise2)
        if not sigma > 0.0:
            return njump
        best, jbest = -1.0, -1
        for j in range(nints * nd):
            if absd[j] >= 0.0:
                r = abs(absd[j] - med) / sigma
                if r > best:
                    best, jbest = r, j
        limit = thr if n >= 4 else (thr3 if n == 3 else thr2)
        if best <= limit:
            return njump
        absd[jbest] = -1.0
        njump += 1


@njit(cache=True, nogil=True)
def _signed_median(v: np.ndarray, dq: np.ndarray, scratch: np.ndarray) -> float:  # pragma: no cover
    nints, ng = v.shape
    n = 0
    for i in range(nints):
        for k in range(ng - 1):
            if not ((dq[i, k] | dq[i, k + 1]) & (_DNU | _SAT)):
                scratch[n] = v[i, k + 1] - v[i, k]
                n += 1
    sort_inplace(scratch, n)
    return nan_median_sorted(scratch, n)


@njit(cache=True, nogil=True)
def _flag_neighbors(out: np.ndarray, gdq: np.ndarray, i: int, g: int, y: int,
                    x: int) -> None:  # pragma: no cover - compiled
    ny, nx = out.shape[2], out.shape[3]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        yy, xx = y + dy, x + dx
        if 0 <= yy < ny and 0 <= xx < nx and not (gdq[i, g, yy, xx] & (_DNU | _SAT)):
            out[i, g, yy, xx] |= _JUMP


@njit(cache=True, nogil=True)
def _jump_rows(data: np.ndarray, gdq: np.ndarray, out: np.ndarray, rn: np.ndarray,
               gain: np.ndarray, pars: tuple) -> int:  # pragma: no cover - compiled
    """Detect jumps row by row, OR-ing JUMP_DET into ``out``; returns the number of jumps."""
    nframes, thr, thr3, thr2, neighbors, nmin, nmax = pars
    nints, ng, ny, nx = data.shape
    nd = ng - 1
    vbuf = np.empty((nints, ng, nx), np.float64)
    dbuf = np.empty((nints, ng, nx), np.uint8)
    pv = np.empty((nints, ng), np.float64)
    pd = np.empty((nints, ng), np.uint8)
    absd = np.empty(nints * nd, np.float64)
    scratch = np.empty(nints * nd, np.float64)
    total = 0
    for y in range(ny):
        for i in range(nints):
            for g in range(ng):
                vbuf[i, g, :] = data[i, g, y, :]
                dbuf[i, g, :] = gdq[i, g, y, :]
        for x in range(nx):
            gx = float(gain[y, x])
            if not (gx > 0.0):
                continue
            pv[:, :] = vbuf[:, :, x]
            pd[:, :] = dbuf[:, :, x]
            noise2 = 2.0 * float(rn[y, x]) ** 2 / nframes
            nj = _pixel_jumps(pv, pd, noise2, 1.0 / gx, (thr, thr3, thr2), absd, scratch)
            if nj == 0:
                continue
            total += nj
            med = _signed_median(pv, pd, scratch)
            sig = np.sqrt(abs(med) / gx + noise2)
            for j in range(nints * nd):
                if absd[j] == -1.0:
                    i, k = j // nd, j % nd
                    out[i, k + 1, y, x] |= _JUMP
                    r = abs(pv[i, k + 1] - pv[i, k] - med) / sig
                    if neighbors and nmin < r < nmax:
                        _flag_neighbors(out, gdq, i, k + 1, y, x)
    return total


def flag_large_events_inplace(groupdq: np.ndarray, min_area: int, expand: float) -> int:
    """Flag a disk around every large connected jump region, group by group (in place).

    Parameters
    ----------
    groupdq : ndarray, uint8, (nints, ngroups, ny, nx)
        Group DQ with JUMP_DET set by the two-point search; modified in place.
    min_area : int
        Minimum number of connected flagged pixels (8-connectivity) in one group.
    expand : float
        Disk radius over the region's equivalent radius ``sqrt(area / pi)``.

    Returns
    -------
    int
        Number of large events found.
    """
    nints, ngroups, ny, nx = groupdq.shape
    structure = np.ones((3, 3), bool)
    count = 0
    for i in range(nints):
        for g in range(1, ngroups):
            plane = groupdq[i, g]
            labels, n = ndimage.label((plane & _JUMP) != 0, structure=structure)
            if n == 0:
                continue
            areas = np.bincount(labels.ravel())[1:]
            big = np.flatnonzero(areas >= min_area) + 1
            if not big.size:
                continue
            centres = ndimage.center_of_mass(np.ones_like(labels), labels, big)
            for lab, (cy, cx) in zip(big, centres, strict=True):
                r = expand * np.sqrt(areas[lab - 1] / np.pi)
                y0, y1 = max(0, int(cy - r)), min(ny, int(cy + r) + 2)
                x0, x1 = max(0, int(cx - r)), min(nx, int(cx + r) + 2)
                yy, xx = np.mgrid[y0:y1, x0:x1]
                disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                sub = plane[y0:y1, x0:x1]
                sub[disk & ((sub & (_DNU | _SAT)) == 0)] |= _JUMP
            count += int(big.size)
    return count


def detect_jumps(
    data: np.ndarray,
    groupdq: np.ndarray,
    *,
    read_noise: float | np.ndarray,
    gain: float | np.ndarray,
    nframes: int,
    threshold: float = 4.0,
    options: JumpOptions | None = None,
) -> np.ndarray:
    """Flag cosmic-ray jumps in up-the-ramp data (method in the module docstring).

    Parameters
    ----------
    data : ndarray, float32, (nints, ngroups, ny, nx)
        Group averages, DN (bias-subtracted, linearised).  Not modified.
    groupdq : ndarray, uint8, same shape
        Input group DQ (JWST bits); DO_NOT_USE and SATURATED groups are
        skipped.  Not modified.
    read_noise : float or ndarray (ny, nx)
        Single-read noise, DN.
    gain : float or ndarray (ny, nx)
        e-/DN (pixels with gain <= 0 or NaN are skipped).
    nframes : int
        Frames averaged per group.
    threshold : float
        Rejection threshold, sigma, with four or more usable differences.
    options : JumpOptions, optional
        Secondary settings (defaults: JWST's).

    Returns
    -------
    ndarray, uint8, same shape
        A new group DQ: the input bits plus JUMP_DET on the first group after each jump.
    """
    opts = options or JumpOptions()
    if data.ndim != 4 or groupdq.shape != data.shape:
        raise ValueError(f"data and groupdq must be the same 4-D shape "
                         f"(nints, ngroups, ny, nx), got {data.shape} and {groupdq.shape}")
    if nframes < 1 or threshold <= 0:
        raise ValueError(f"need nframes >= 1 and threshold > 0, got {nframes}, {threshold}")
    out = np.array(groupdq, dtype=np.uint8, copy=True)
    if data.shape[1] < 3:
        return out
    ny, nx = data.shape[2:]
    pars = (float(nframes), float(threshold), float(opts.threshold_3), float(opts.threshold_2),
            bool(opts.flag_neighbors), float(opts.neighbor_min), float(opts.neighbor_max))
    _jump_rows(data, out if groupdq.dtype != np.uint8 else groupdq, out,
               as_pixel_map(read_noise, (ny, nx), "read_noise"),
               as_pixel_map(gain, (ny, nx), "gain"), pars)
    if opts.large_events:
        flag_large_events_inplace(out, opts.large_event_min_area, opts.large_event_expand)
    return out
