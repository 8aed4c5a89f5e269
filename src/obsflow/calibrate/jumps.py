"""Jump (cosmic-ray) detection by two-point differences with iterative clipping.

The method is Anderson & Gordon (2011) as the JWST pipeline runs it
(stcal ``twopoint_difference``, iterative branch), per pixel, with the
differences of all integrations pooled (or, ``per_integration``, each
integration's on their own):

1. first differences ``d`` of consecutive groups; a difference touching a
   DO_NOT_USE or SATURATED group is not usable;
2. with ``n`` usable differences, take the median ``m`` of ``|d|`` (after
   dropping the largest when ``n >= 4``; the smaller one when ``n == 2``)
   and the noise of one difference,
   ``s**2 = f L / gain + 2 rn**2 / nframes`` (DN**2; Poisson of the
   difference level ``L``, the median of all ``n`` values (the mean of two),
   ``f = 1 - (nframes**2 - 1) / (3 nframes (nframes + groupgap))`` for
   averages of ``nframes`` frames, plus two group averages' read noise);
3. the deviation ``| |d| - m |`` is compared with a sigma that allows for
   what stcal ignores (details and formulas in ``_sigma``): the noise of
   the median of ``n - 1`` others (``s**2 pi / (2 (n - 1))``: stcal's
   ``sigma = s`` gives 1.5e-4 false flags per difference on 10-group ramps
   instead of 4e-5); consecutive differences sharing a group (correlation
   ``(lambda delta - rn**2 / nframes) / s**2``, down to -0.5 with read noise:
   stcal's 6-sigma test of 3-group ramps is then a 3.5-sigma one); and the
   skewness of Poisson counts (Cornish-Fisher).  ``JumpOptions.stcal_sigma``
   (``f = 1``, ``L = m``, none of these) reproduces stcal.
   The difference with the largest ratio is a jump if it exceeds
   ``threshold`` (``n >= 4``), ``threshold_3`` (``n == 3``) or
   ``threshold_2`` (``n == 2``); it is flagged on the later group, removed,
   and the pixel is searched again until nothing exceeds the threshold;
4. the four neighbours of a jump whose size, against the median of the
   *signed* differences, lies between ``neighbor_min`` and ``neighbor_max``
   sigma are flagged too (charge spills to adjacent pixels);
5. optionally, large events ("snowballs"): connected groups of at least
   ``large_event_min_area`` flagged pixels in one group get a disk around
   them, ``large_event_expand`` times their radius, flagged as well.

Exposures with fewer than three groups are returned unchanged (as stcal).
Pixels are processed one detector row at a time in compiled code: a first
pass sorts the |d| of all pixels of the row at once (a sorting network,
vectorized across the row) and tests each pixel's extremes against its
median; only pixels that fail (or have unusable groups) get the iterative
per-pixel search.  The only memory beyond the inputs is the returned group DQ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from obsflow.calibrate._numeric import (
    DNU_U8,
    JUMP_U8,
    MAX_NETWORK,
    SAT_U8,
    as_pixel_map,
    median_of,
    select_inplace,
    sort_columns,
    sort_inplace,
    sorting_network,
)
from obsflow.calibrate.regions import flag_disks_inplace, large_regions
from obsflow.exceptions import CalibrationError

__all__ = ["JumpOptions", "detect_jumps", "flag_large_events_inplace"]



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
    stcal_sigma : bool
        Use stcal's sigma exactly (``sqrt(|m| / gain + 2 rn**2 / nframes)``,
        none of the allowances of ``_sigma``: the median's noise, shared
        groups, Poisson skewness): reproduces stcal's
        flags, at about 1.5e-4 false flags per difference on 10-group ramps.
    """

    threshold_3: float = 5.0
    threshold_2: float = 6.0
    flag_neighbors: bool = True
    neighbor_min: float = 10.0
    neighbor_max: float = 1000.0
    large_events: bool = False
    large_event_min_area: int = 20
    large_event_expand: float = 2.0
    stcal_sigma: bool = False


@njit(cache=True, nogil=True)
def _sigma(level: float, n: int, noise2: float, pois: float, ginv: float, cmed: float,
           pair: float, limit: float) -> float:  # pragma: no cover
    """Noise of ``|d| - m`` for a median ``m`` of ``n`` usable differences (DN).

    ``s**2 = pois level + noise2`` is one difference's variance (Poisson of
    the difference level, read noise).  ``level`` is the median of all ``n``
    values (the mean of two): the median of the ``n - 1`` smallest, or the
    smaller of two, falls short of the mean difference (by about ``1.2 s / n``
    on average, and by much more exactly when one difference is an outlier,
    i.e. when a false flag is at stake), understating bright pixels' noise;
    stcal (``pair = 0``) passes ``|m|``.  ``rho`` is the correlation of two
    consecutive differences (they share a group):
    ``pair (level (ginv - pois) - noise2) / s**2``, i.e.
    ``(lambda delta - rn**2 / nframes) / s**2``, taken only when negative
    (0 with ``pair = 0``: stcal).  With ``k = n - 1 >= 3`` others the variance
    is ``s**2 (1 + cmed / k (1 + 4 asin(rho) / pi) - 4 rho / k)``: the median's
    own variance (``cmed = pi / 2``, large-sample; the signs of correlated
    neighbours are correlated by ``2 asin(rho) / pi``) and its covariance
    with the tested difference through its two neighbours (``2 rho / k``
    each).  Three differences: ``s**2 (1 - rho / 2)`` (measured on Gaussian
    differences, rho = -0.5: 5-sigma false flags 2.3e-4 per difference
    otherwise); two: ``s**2 (1 - rho)`` (``|d1 - d2|`` against its own noise
    over sqrt(2)), only where the two are consecutive (the caller checks).

    With ``limit > 0`` (the threshold the ratio is compared with; 0: stcal)
    sigma is also widened for the skewness of Poisson counts, whose upper
    tail is longer than a Gaussian's: by the Cornish-Fisher term
    ``1 + gamma (limit**2 - 1) / (6 limit)``, ``gamma = pois level ginv / s**3``
    (the third cumulant of the photons in a difference, at most their
    variance over the gain, over ``s**3``).  On a 0.3 e-/s sky with 30-60 e-
    per difference this is +0.25 sigma at 4 sigma; on bright or read-noise
    dominated pixels it vanishes.
    """
    s2 = abs(level) * pois + noise2
    rho = 0.0
    if pair > 0.0 and s2 > 0.0:
        rho = min(pair * (abs(level) * (ginv - pois) - noise2) / s2, 0.0)
    if n >= 4:
        k = n - 1
        inflate = 1.0 + cmed / k * (1.0 + 4.0 * np.arcsin(rho) / np.pi) - 4.0 * rho / k
    elif n == 3:
        inflate = 1.0 - 0.5 * rho
    else:
        inflate = 1.0 - rho
    sigma = np.sqrt(s2 * inflate)
    if limit > 0.0 and s2 > 0.0:
        gamma = abs(level) * pois * ginv / (s2 * np.sqrt(s2))
        sigma *= 1.0 + gamma * (limit * limit - 1.0) / (6.0 * limit)
    return sigma


@njit(cache=True, nogil=True)
def _center(vals: np.ndarray, lo: int, hi: int) -> float:  # pragma: no cover
    """Median ``m`` of the sorted ``vals[lo:hi]``: of the ``n - 1`` smallest when ``n >= 4``,
    the middle of 3, the smaller of 2."""
    n = hi - lo
    if n >= 4:
        k = n - 1
        h = lo + (k >> 1)
        return vals[h] if k & 1 else 0.5 * (vals[h] + vals[h - 1])
    if n == 3:
        return vals[lo + 1]
    return vals[lo]


@njit(cache=True, nogil=True)
def _adjacent(absd: np.ndarray, a: float, b: float, nd: int) -> bool:  # pragma: no cover
    """Whether the differences ``a`` and ``b`` of ``absd`` are consecutive ones of one integration."""
    ja = jb = -1
    for j in range(absd.shape[0]):
        if ja < 0 and absd[j] == a:
            ja = j
        elif jb < 0 and absd[j] == b:
            jb = j
    return ja >= 0 and jb >= 0 and abs(ja - jb) == 1 and ja // nd == jb // nd


@njit(cache=True, nogil=True)
def _pixel_jumps(v: np.ndarray, dq: np.ndarray, noise2: float, pois: float, ginv: float,
                 cmed: float, pair: float, thresholds: tuple, absd: np.ndarray,
                 vals: np.ndarray, scratch: np.ndarray) -> int:  # pragma: no cover
    """Iterative two-point search on one pixel (all integrations pooled).

    ``absd`` (nints * (ngroups - 1)) receives |d| with NaN where unusable; on
    return, flagged differences hold ``-1``.  Each iteration tests the two
    extremes (the largest deviation from the median is always one of them)
    and removes the worse: with up to 32 values they are sorted once and
    peeled from the ends; above that the median comes from a selection,
    O(n) per iteration.  Returns the number of jumps.
    """
    nints, ng = v.shape
    nd = ng - 1
    thr, thr3, thr2 = thresholds
    n = 0
    for i in range(nints):
        for k in range(nd):
            bad = (dq[i, k] | dq[i, k + 1]) & (DNU_U8 | SAT_U8)
            d = abs(v[i, k + 1] - v[i, k])
            if bad or not np.isfinite(d):
                absd[i * nd + k] = np.nan
            else:
                absd[i * nd + k] = d
                vals[n] = d
                n += 1
    if n < 2:
        return 0
    njump = 0
    while n > 32:  # long ramps: selection, O(n) per iteration, instead of a full sort
        lo_v, hi_v = np.inf, -np.inf
        for j in range(n):
            scratch[j] = vals[j]
            lo_v = min(lo_v, vals[j])
            hi_v = max(hi_v, vals[j])
        k = n - 1  # the median of the n - 1 smallest: order statistics of all n
        h = k >> 1
        med = select_inplace(scratch, n, h)
        if not k & 1:
            lower = scratch[0]
            for j in range(1, h):
                lower = max(lower, scratch[j])
            med = 0.5 * (lower + med)
        level = med
        if pair > 0.0:  # the median of all n: order statistic h (and h + 1 when n is even)
            level = scratch[h]
            if not n & 1:
                above = scratch[h + 1]
                for j in range(h + 2, n):
                    above = min(above, scratch[j])
                level = 0.5 * (level + above)
        sigma = _sigma(level, n, noise2, pois, ginv, cmed, pair, thr if pair > 0.0 else 0.0)
        if not sigma > 0.0:
            return njump
        rhi = abs(hi_v - med) / sigma
        rlo = abs(lo_v - med) / sigma
        if max(rhi, rlo) <= thr:
            return njump
        target = hi_v if rhi >= rlo else lo_v
        for j in range(n):
            if vals[j] == target:
                vals[j] = vals[n - 1]
                break
        n -= 1
        for j in range(nints * nd):
            if absd[j] == target:
                absd[j] = -1.0
                break
        njump += 1
    sort_inplace(vals, n)
    lo, hi = 0, n
    while hi - lo >= 2:
        m = hi - lo
        med = _center(vals, lo, hi)
        level = med
        if pair > 0.0:  # the median of all m (mean of two)
            h = lo + (m >> 1)
            level = vals[h] if m & 1 else 0.5 * (vals[h] + vals[h - 1])
        limit = thr if m >= 4 else (thr3 if m == 3 else thr2)
        skew = limit if pair > 0.0 else 0.0
        if m == 2 and not _adjacent(absd, vals[lo], vals[lo + 1], nd):
            sigma = _sigma(level, m, noise2, pois, ginv, cmed, 0.0, skew)  # independent
        else:
            sigma = _sigma(level, m, noise2, pois, ginv, cmed, pair, skew)
        if not sigma > 0.0:
            break
        rhi = abs(vals[hi - 1] - med) / sigma
        rlo = abs(vals[lo] - med) / sigma
        if max(rhi, rlo) <= limit:
            break
        if rhi >= rlo:
            hi -= 1
            target = vals[hi]
        else:
            target = vals[lo]
            lo += 1
        for j in range(nints * nd):
            if absd[j] == target:
                absd[j] = -1.0
                break
        njump += 1
    return njump


@njit(cache=True, nogil=True)
def _signed_median(v: np.ndarray, dq: np.ndarray, scratch: np.ndarray) -> float:  # pragma: no cover
    nints, ng = v.shape
    n = 0
    for i in range(nints):
        for k in range(ng - 1):
            if not ((dq[i, k] | dq[i, k + 1]) & (DNU_U8 | SAT_U8)):
                scratch[n] = v[i, k + 1] - v[i, k]
                n += 1
    return median_of(scratch, n)


@njit(cache=True, nogil=True)
def _flag_neighbors(out: np.ndarray, gdq: np.ndarray, i: int, g: int, y: int,
                    x: int) -> None:  # pragma: no cover - compiled
    ny, nx = out.shape[2], out.shape[3]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        yy, xx = y + dy, x + dx
        if 0 <= yy < ny and 0 <= xx < nx and not (gdq[i, g, yy, xx] & (DNU_U8 | SAT_U8)):
            out[i, g, yy, xx] |= JUMP_U8


@njit(cache=True, nogil=True)
def _screen_row(vbuf: np.ndarray, sbuf: np.ndarray, pairs: np.ndarray, clean: np.ndarray,
                noise2: np.ndarray, pois: np.ndarray, thr: float, cmed: float) -> None:  # pragma: no cover
    """First pass over one row: clear ``clean[x]`` where the pixel needs the full search.

    For pixels with every difference usable, sort all |d| of the row at once
    (sorting network across the row, or a per-pixel selection for long
    ramps) and test the two extremes against the median; only pixels whose
    worst difference exceeds the threshold (or that have unusable groups)
    go on to the iterative per-pixel search.

    The sigma here is a lower bound of :func:`_sigma`'s (the median of the
    ``n - 1`` smallest instead of all, ``1 + cmed / k`` being the least
    inflation over ``rho`` in [-0.5, 0], no skewness widening; exact in
    ``stcal_sigma`` mode), cheap and vectorised: a pixel it passes is clean
    under the full rule; the few it fails get the full rule.
    """
    nints, ng, nx = vbuf.shape
    nd = ng - 1
    n = nints * nd
    for i in range(nints):
        for k in range(nd):
            row = sbuf[i * nd + k]
            a = vbuf[i, k + 1]
            b = vbuf[i, k]
            for x in range(nx):
                row[x] = abs(a[x] - b[x])
    k = n - 1
    h = k >> 1
    inflate = 1.0 + cmed / k
    if n <= MAX_NETWORK:
        sort_columns(sbuf, pairs)
        for x in range(nx):
            if not clean[x]:
                continue
            med = sbuf[h, x] if k & 1 else 0.5 * (sbuf[h, x] + sbuf[h - 1, x])
            sigma = np.sqrt((abs(med) * pois[x] + noise2[x]) * inflate)
            r = max(sbuf[n - 1, x] - med, med - sbuf[0, x])
            if not r <= thr * sigma:
                clean[x] = False
        return
    col = np.empty(n, sbuf.dtype)
    for x in range(nx):
        if not clean[x]:
            continue
        lo = np.inf
        hi = -np.inf
        for j in range(n):
            col[j] = sbuf[j, x]
            lo = min(lo, col[j])
            hi = max(hi, col[j])
        # the median of the n - 1 smallest values: order statistics h (and h - 1) of all n
        upper = select_inplace(col, n, h)
        if k & 1:
            med = upper
        else:
            lower = col[0]
            for j in range(1, h):
                lower = max(lower, col[j])
            med = 0.5 * (lower + upper)
        sigma = np.sqrt((abs(med) * pois[x] + noise2[x]) * inflate)
        if not max(hi - med, med - lo) <= thr * sigma:
            clean[x] = False


@njit(cache=True, nogil=True)
def _jump_pools(data: np.ndarray, gdq: np.ndarray, out: np.ndarray, rn: np.ndarray,
                gain: np.ndarray, pars: tuple, pairs: np.ndarray,
                pool: int) -> int:  # pragma: no cover - compiled
    """:func:`_jump_rows` on each run of ``pool`` integrations (their differences pooled)."""
    total = 0
    for i0 in range(0, data.shape[0], pool):
        i1 = min(i0 + pool, data.shape[0])
        total += _jump_rows(data[i0:i1], gdq[i0:i1], out[i0:i1], rn, gain, pars, pairs)
    return total


@njit(cache=True, nogil=True)
def _jump_rows(data: np.ndarray, gdq: np.ndarray, out: np.ndarray, rn: np.ndarray,
               gain: np.ndarray, pars: tuple, pairs: np.ndarray) -> int:  # pragma: no cover
    """Detect jumps row by row, OR-ing JUMP_DET into ``out``; returns the number of jumps."""
    nframes, pfac, cmed, pair, thr, thr3, thr2, neighbors, nmin, nmax = pars
    nints, ng, ny, nx = data.shape
    nd = ng - 1
    n = nints * nd
    vbuf = np.empty((nints, ng, nx), np.float32)
    dbuf = np.empty((nints, ng, nx), np.uint8)
    sbuf = np.empty((n, nx), np.float32)
    clean = np.empty(nx, np.bool_)
    noise2 = np.empty(nx, np.float64)
    pois = np.empty(nx, np.float64)
    ginv = np.empty(nx, np.float64)
    pv = np.empty((nints, ng), np.float64)
    pd = np.empty((nints, ng), np.uint8)
    absd = np.empty(n, np.float64)
    vals = np.empty(n, np.float64)
    scratch = np.empty(n, np.float64)
    total = 0
    for y in range(ny):
        for x in range(nx):
            gx = float(gain[y, x])
            clean[x] = gx > 0.0
            noise2[x] = 2.0 * float(rn[y, x]) ** 2 / nframes
            pois[x] = pfac / gx if gx > 0.0 else 0.0
            ginv[x] = 1.0 / gx if gx > 0.0 else 0.0
        for i in range(nints):
            for g in range(ng):
                vbuf[i, g, :] = data[i, g, y, :]
                drow = dbuf[i, g]
                drow[:] = gdq[i, g, y, :]
                for x in range(nx):
                    if drow[x] & (DNU_U8 | SAT_U8):
                        clean[x] = False
        if n >= 4:
            _screen_row(vbuf, sbuf, pairs, clean, noise2, pois, thr, cmed)
        else:
            clean[:] = False
        for x in range(nx):
            gx = float(gain[y, x])
            if clean[x] or not (gx > 0.0):
                continue
            for i in range(nints):
                for g in range(ng):
                    pv[i, g] = vbuf[i, g, x]
                    pd[i, g] = dbuf[i, g, x]
            nj = _pixel_jumps(pv, pd, noise2[x], pois[x], ginv[x], cmed, pair, (thr, thr3, thr2),
                              absd, vals, scratch)
            if nj == 0:
                continue
            total += nj
            med = _signed_median(pv, pd, vals)
            sig = np.sqrt(abs(med) * pois[x] + noise2[x])
            for j in range(n):
                if absd[j] == -1.0:
                    i, k = j // nd, j % nd
                    out[i, k + 1, y, x] |= JUMP_U8
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
    count = 0
    for i in range(groupdq.shape[0]):
        for g in range(1, groupdq.shape[1]):
            plane = groupdq[i, g]
            cy, cx, area = large_regions(plane, int(JUMP_U8), min_area)
            if area.size:
                flag_disks_inplace(plane, cy, cx, expand * np.sqrt(area / np.pi), JUMP_U8,
                                   np.uint8(DNU_U8 | SAT_U8))
            count += int(area.size)
    return count


def detect_jumps(
    data: np.ndarray,
    groupdq: np.ndarray,
    *,
    read_noise: float | np.ndarray,
    gain: float | np.ndarray,
    nframes: int,
    groupgap: int = 0,
    threshold: float = 4.0,
    options: JumpOptions | None = None,
    out: np.ndarray | None = None,
    per_integration: bool = False,
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
    groupgap : int
        Frames dropped between groups (sets the Poisson variance of a
        difference of two group averages, ``(1 - (m**2 - 1) / (3 m (m + groupgap)))``
        times the mean difference over the gain, ``m = nframes``).
    threshold : float
        Rejection threshold, sigma, with four or more usable differences.
    options : JumpOptions, optional
        Secondary settings (defaults: JWST's).
    out : ndarray, uint8, same shape, optional
        Where to write the result (may be ``groupdq`` itself, to flag in place
        and save a cube-sized copy of the DQ); default a new array.
    per_integration : bool
        Search each integration's differences on their own instead of
        pooling them over the integrations (a time series, whose rates
        change between integrations).

    Returns
    -------
    ndarray, uint8, same shape
        The group DQ (``out`` if given): the input bits plus JUMP_DET on the
        first group after each jump.
    """
    opts = options or JumpOptions()
    if data.ndim != 4 or groupdq.shape != data.shape:
        raise CalibrationError(f"data and groupdq must be the same 4-D shape "
                         f"(nints, ngroups, ny, nx), got {data.shape} and {groupdq.shape}")
    if nframes < 1 or groupgap < 0 or threshold <= 0:
        raise CalibrationError(f"need nframes >= 1, groupgap >= 0 and threshold > 0, got {nframes}, "
                         f"{groupgap}, {threshold}")
    if out is None:
        out = np.array(groupdq, dtype=np.uint8, copy=True)
    else:
        if out.shape != data.shape or out.dtype != np.uint8:
            raise CalibrationError(f"out must be uint8 of shape {data.shape}, got {out.dtype} {out.shape}")
        if out is not groupdq:
            out[...] = groupdq
    if data.shape[1] < 3:
        return out
    ny, nx = data.shape[2:]
    m = float(nframes)
    if opts.stcal_sigma:
        pfac, cmed, pair = 1.0, 0.0, 0.0
    else:
        pfac, cmed, pair = 1.0 - (m * m - 1.0) / (3.0 * m * (m + groupgap)), np.pi / 2.0, 0.5
    pars = (m, pfac, cmed, pair, float(threshold), float(opts.threshold_3), float(opts.threshold_2),
            bool(opts.flag_neighbors), float(opts.neighbor_min), float(opts.neighbor_max))
    pool = 1 if per_integration else data.shape[0]
    _jump_pools(data, out if groupdq.dtype != np.uint8 else groupdq, out,
                as_pixel_map(read_noise, (ny, nx), "read_noise"),
                as_pixel_map(gain, (ny, nx), "gain"), pars,
                sorting_network(min(pool * (data.shape[1] - 1), MAX_NETWORK)), pool)
    if opts.large_events:
        flag_large_events_inplace(out, opts.large_event_min_area, opts.large_event_expand)
    return out
