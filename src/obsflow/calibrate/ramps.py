"""Ramp fitting: up-the-ramp samples to count rates, with honest variances.

The slopes follow the JWST ordinary-least-squares scheme (stcal ``OLS_C``)
so that they are comparable sample for sample:

* each integration of a pixel is cut into *segments* of consecutive good
  groups; a group flagged ``JUMP_DET`` (only) starts a new segment, any
  other flag ends one (``PERSISTENCE`` is ignored); when a longer segment
  exists, one-group segments are dropped, otherwise only the first is kept;
* a segment of three or more groups is fitted by weighted least squares
  with the "optimal" weights of Fixsen et al. (2000):
  ``w_k = |(k - mid) / mid| ** P`` with ``P`` from the segment's
  signal-to-noise (0, 0.4, 1, 3, 6, 10 at SNR 5, 10, 20, 50, 100);
  two-group segments give the difference over the group time, a one-group
  segment the bias-subtracted level over the group's mean read time;
* segments, and then integrations, are averaged with inverse read-noise
  variance weights (stcal's JP-4318 rule).

The variances are where obsflow differs on purpose.  stcal reports the
read-noise variance of an *unweighted* fit and a Poisson variance
``rate / (tgroup gain (n - 1))`` for every segment, and combines them as if
the segment weights were inverse total variances; on simulated ramps its
errors come out a few percent too small.  Here every slope is a linear
combination ``sum_k c_k y_k`` of the group values, so its variance is
computed exactly from the read-noise covariance (``rn**2 / nframes`` per
group average) and the Poisson covariance of group averages of
``nframes`` frames (``Cov(A_j, A_k) = lambda t_j`` for ``j < k`` and
``Var(A_j) = lambda (t_j - tframe (m**2 - 1) / (6 m))``).  The combined
variances carry the actual combination weights.

The photon rate ``lambda`` in the Poisson variance comes from the pixel's
own data only (its neighbours may be a star's core, a hot pixel or an
unrelated galaxy): the pixel's fitted exposure slope ``s`` (all its
integrations, so each integration's Poisson variance uses the exposure's
rate), read noise and gain from the reference files.  A variance computed
from ``s`` itself is correlated with the slope's error: a ramp that
fluctuates high gets a larger error, one that fluctuates low a smaller one.
The median of the pulls stays 0 (the error is a monotonic function of the
slope), but to second order their variance grows by ``9/4 b**2``, with
``b = P / sigma`` (``P`` the Poisson variance per unit rate, ``sigma`` the
slope's error): +2 to 3% at low signal with read noise, where stcal's
median-difference rate gives the same.  Evaluating the variance at
``s + SHIFT P`` with ``SHIFT = 3`` cancels that term (``E[pull**2] = 1``
to second order, like the ``N + 1`` of Poisson chi-square statistics); it
adds about 3.6 electrons to the ramp's charge, negligible once the pixel
is Poisson dominated.  The variance is an estimate from the pixel's data,
and it is not clipped at 0: clipping ``s + SHIFT P`` at 0 biases it high
where the read noise dominates and the rate is small (the pull spread of
3-group ramps of a 0.3 e-/s sky drops to 0.97-0.98).  So VAR_POISSON is
negative on pixels whose slope lies a few ``P`` below 0 (an unbiased
estimate of a Poisson variance near 0), floored at ``-VAR_RNOISE / 2`` so
that ERR stays above ``sqrt(VAR_RNOISE / 2)``.

Pixels are processed row by row in compiled code (numba).  Pixels with no
flagged group (the vast majority) take a fast path: one segment per
integration, with the coefficients of each optimal-weight power
precomputed once per call; the others go through the general segment
code.  Memory beyond the input cube is only the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from obsflow.calibrate._numeric import DNU_U8, JUMP_U8, SAT_U8, as_pixel_map
from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["RampFit", "fit_ramps"]

_NOT_PERS = np.uint8(0xFF & ~int(DQ.PERSISTENCE))
_PDQ_DNU = np.uint32(DQ.DO_NOT_USE)
_PDQ_SAT = np.uint32(DQ.SATURATED)
_PDQ_JUMP = np.uint32(DQ.JUMP_DET)
_PDQ_NGV = np.uint32(DQ.NO_GAIN_VALUE)
_PDQ_UNREL = np.uint32(DQ.UNRELIABLE_SLOPE)

SHIFT = 3.0
POISSON_FLOOR = 0.5
"""Poisson variances are evaluated at the pixel's slope plus SHIFT times its Poisson
variance per unit rate (DN/s): cancels the second-order widening of the pulls by the
correlation of a slope with its own error (module docstring).  VAR_POISSON is not clipped
at 0 but at -POISSON_FLOOR times VAR_RNOISE (so ERR >= sqrt(VAR_RNOISE / 2))."""


@dataclass(frozen=True)
class RampFit:
    """Result of :func:`fit_ramps`.

    Attributes
    ----------
    slope, err, var_poisson, var_rnoise : ndarray, float32, (ny, nx)
        Exposure count rate (DN/s), its 1-sigma error (DN/s) and the Poisson
        and read-noise variances (DN/s)**2; NaN slope where no fit exists
        (DQ has DO_NOT_USE), variances 0 there.  The Poisson variance is an
        estimate from the pixel's own slope: slightly negative (down to
        -var_rnoise / 2) on pixels whose slope is below 0 (module docstring).
    dq : ndarray, uint32, (ny, nx)
        DO_NOT_USE (no usable group), SATURATED (some group saturated),
        JUMP_DET (a jump was flagged), NO_GAIN_VALUE, UNRELIABLE_SLOPE (only
        single-group segments were available).
    slope_ints, err_ints, var_poisson_ints, var_rnoise_ints : ndarray, float32, (nints, ny, nx)
        The same per integration (the ``_rateints`` product).
    dq_ints : ndarray, uint32, (nints, ny, nx)
        With one integration, the ``..._ints`` arrays are views of the
        exposure arrays (same memory, shape (1, ny, nx)).
    """

    slope: np.ndarray
    err: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    dq: np.ndarray
    slope_ints: np.ndarray
    err_ints: np.ndarray
    var_poisson_ints: np.ndarray
    var_rnoise_ints: np.ndarray
    dq_ints: np.ndarray


@njit(cache=True, nogil=True)
def _power_index(snr: float) -> int:  # pragma: no cover - compiled
    """Index of the optimal-weight power (0, 0.4, 1, 3, 6, 10 at SNR < 5, 10, 20, 50, 100, more)."""
    if snr < 5.0:
        return 0
    if snr < 10.0:
        return 1
    if snr < 20.0:
        return 2
    if snr < 50.0:
        return 3
    if snr < 100.0:
        return 4
    return 5


@njit(cache=True, nogil=True)
def _segment(y: np.ndarray, s: int, n: int, pars: tuple,
             tables: tuple) -> tuple:  # pragma: no cover - compiled
    """Fit one segment ``y[s:s+n]``: (slope, stcal weight variance, var_p, var_r), DN/s units.

    ``var_p`` is per unit photon rate (1 e-/s): the caller scales it by the rate.
    The coefficients of a segment depend only on its length and weight power
    (a shift of the group index does not change a slope), so they come from
    ``tables`` (:func:`_weight_tables`).
    """
    rn, gain, ft, tg, nfr, gap = pars
    ctab, sc2tab, st2tab = tables
    rn2 = rn * rn / nfr
    delta = ft * (nfr * nfr - 1.0) / (6.0 * nfr)
    if n == 1:
        t = ft * (s * (nfr + gap) + (nfr + 1.0) / 2.0)
        return y[s] / t, 2.0 * rn2 / (t * t), (t - delta) / (t * t), rn2 / (t * t)
    if n == 2:
        vr = 2.0 * rn2 / (tg * tg)
        return (y[s + 1] - y[s]) / tg, vr, (tg - 2.0 * delta) / (tg * tg), vr
    sig = (y[s + n - 1] - y[s]) * gain
    den = rn2 * gain * gain + sig
    snr = sig / np.sqrt(den) if den > 0.0 else 0.0
    p = _power_index(max(snr, 0.0))
    slope = 0.0
    for k in range(n):
        slope += ctab[n, p, k] * y[s + k]
    vw = 12.0 * rn2 / ((n * n * n - n) * tg * tg)
    return slope, vw, tg * st2tab[n, p] - delta * sc2tab[n, p], rn2 * sc2tab[n, p]


@njit(cache=True, nogil=True)
def _segments(dq: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> int:  # pragma: no cover
    """Cut one integration's groups into segments (stcal rules); returns how many."""
    ng = dq.shape[0]
    nseg = 0
    inseg = False
    start = 0
    for k in range(ng):
        g = dq[k] & _NOT_PERS
        if g == 0:
            if not inseg:
                start = k - 1 if (k > 0 and (dq[k - 1] & _NOT_PERS) == JUMP_U8) else k
                inseg = True
        elif inseg:
            starts[nseg] = start
            lens[nseg] = k - start
            nseg += 1
            inseg = False
    if inseg:
        starts[nseg] = start
        lens[nseg] = ng - start
        nseg += 1
    longest = 0
    for j in range(nseg):
        longest = max(longest, lens[j])
    if nseg > 1 and longest < 2:
        return 1
    kept = 0
    for j in range(nseg):
        if lens[j] > 1 or nseg == 1:
            starts[kept] = starts[j]
            lens[kept] = lens[j]
            kept += 1
    return kept


@njit(cache=True, nogil=True)
def _fit_pixel(v: np.ndarray, dq: np.ndarray, pars: tuple, tables: tuple, work: tuple,
               ints_out: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """Fit one pixel; writes (slope, var_p, var_r, dq) per integration into ``ints_out``.

    Returns the exposure (slope, var_p, var_r, dq); the Poisson variances are
    per unit photon rate (1 e-/s), scaled by :func:`_photon_rate` afterwards.
    """
    rn, gain, ft, tg, nfr, gap = pars
    starts, lens = work
    nints, ng = v.shape
    e_num = e_w = e_p = e_r = 0.0
    e_dq = np.uint32(0)
    n_dnu = 0
    only_single = True
    for i in range(nints):
        idq = np.uint32(0)
        nsat = ndnusat = 0
        for k in range(ng):
            if dq[i, k] & SAT_U8:
                nsat += 1
            if dq[i, k] & (SAT_U8 | DNU_U8):
                ndnusat += 1
            if dq[i, k] & JUMP_U8:
                idq |= _PDQ_JUMP
        if nsat:
            idq |= _PDQ_SAT
        nseg = 0 if (dq[i, 0] & SAT_U8) or ndnusat == ng else _segments(dq[i], starts, lens)
        num = wsum = vp = vr = 0.0
        for j in range(nseg):
            slope, vw, sp, sr = _segment(v[i], starts[j], lens[j], pars, tables)
            w = 1.0 / vw
            num += slope * w
            wsum += w
            vp += w * w * sp
            vr += w * w * sr
            if lens[j] > 1:
                only_single = False
        if nseg == 0:
            idq |= _PDQ_DNU
            n_dnu += 1
            ints_out[i, 0], ints_out[i, 1], ints_out[i, 2] = np.nan, 0.0, 0.0
        else:
            ints_out[i, 0] = num / wsum
            ints_out[i, 1] = vp / (wsum * wsum)
            ints_out[i, 2] = vr / (wsum * wsum)
            e_num += num
            e_w += wsum
            e_p += vp
            e_r += vr
        if nseg and lens[0] == 1 and nseg == 1:
            idq |= _PDQ_UNREL
        ints_out[i, 3] = idq
        e_dq |= idq & ~_PDQ_DNU & ~_PDQ_UNREL
    if n_dnu == nints:
        return np.nan, 0.0, 0.0, e_dq | _PDQ_DNU
    if only_single:
        e_dq |= _PDQ_UNREL
    return e_num / e_w, e_p / (e_w * e_w), e_r / (e_w * e_w), e_dq


def _weight_tables(ng: int, group_time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment coefficients for every length ``n <= ng`` and optimal-weight power.

    Returns ``c`` (ng + 1, 6, ng) with ``slope = sum_k c[n, p, k] y_{s+k}``
    (DN/s per DN) for a segment of ``n >= 3`` groups, ``sum_k c**2`` and
    ``sum_{k >= 1} (sum_{j >= k} c_j)**2`` (ng + 1, 6), for the powers
    ``P`` = 0, 0.4, 1, 3, 6, 10 of the weights ``|(k - mid) / mid| ** P``
    (:func:`_power_index`); rows ``n < 3`` are zero.
    """
    c = np.zeros((ng + 1, 6, ng))
    for n in range(3, ng + 1):
        k = np.arange(n, dtype=np.float64)
        mid = (n - 1) / 2.0
        for p, power in enumerate((0.0, 0.4, 1.0, 3.0, 6.0, 10.0)):
            w = np.abs((k - mid) / mid) ** power
            sw, sx, sxx = w.sum(), (w * k).sum(), (w * k * k).sum()
            c[n, p, :n] = w * (sw * k - sx) / (sw * sxx - sx * sx) / group_time
    tails = np.cumsum(c[:, :, ::-1], axis=2)[:, :, ::-1][:, :, 1:]
    return c, (c * c).sum(axis=2), (tails * tails).sum(axis=2)


@njit(cache=True, nogil=True)
def _fit_rows(data: np.ndarray, gdq: np.ndarray, rn: np.ndarray, gain: np.ndarray,
              timing: tuple, tables: tuple, out: tuple) -> None:  # pragma: no cover - compiled
    """Fit every pixel, one detector row at a time (the row's groups copied contiguously).

    Pixels whose groups all carry no flag (but PERSISTENCE) take the fast
    path: one segment per integration, slope and variances from the
    precomputed coefficient tables; every other pixel goes through
    :func:`_fit_pixel` (segments, the general case).
    """
    ft, tg, nfr, gap = timing
    ctab, sc2tab, st2tab = tables
    slope, vpo, vro, dqo, si, vpi, vri, dqi = out
    nints, ng, ny, nx = data.shape
    vbuf = np.empty((nints, ng, nx), np.float32)
    dbuf = np.empty((nints, ng, nx), np.uint8)
    clean = np.empty(nx, np.bool_)
    pv = np.empty((nints, ng), np.float64)
    pd = np.empty((nints, ng), np.uint8)
    work = (np.empty(ng, np.int64), np.empty(ng, np.int64))
    ints_out = np.empty((nints, 4), np.float64)
    delta = ft * (nfr * nfr - 1.0) / (6.0 * nfr)
    for y in range(ny):
        for x in range(nx):
            clean[x] = ng >= 3
        for i in range(nints):
            for g in range(ng):
                vbuf[i, g, :] = data[i, g, y, :]
                drow = dbuf[i, g]
                drow[:] = gdq[i, g, y, :]
                for x in range(nx):
                    if drow[x] & _NOT_PERS:
                        clean[x] = False
        for x in range(nx):
            gx = float(gain[y, x])
            if not (gx > 0.0):
                slope[y, x] = np.nan
                vpo[y, x] = vro[y, x] = 0.0
                dqo[y, x] = _PDQ_DNU | _PDQ_NGV
                for i in range(nints):
                    si[i, y, x] = np.nan
                    vpi[i, y, x] = vri[i, y, x] = 0.0
                    dqi[i, y, x] = _PDQ_DNU | _PDQ_NGV
                continue
            rnx = float(rn[y, x])
            if clean[x] and rnx > 0.0:
                rn2 = rnx * rnx / nfr
                e_s = e_p = e_r = 0.0
                for i in range(nints):
                    sig = (float(vbuf[i, ng - 1, x]) - float(vbuf[i, 0, x])) * gx
                    den = rn2 * gx * gx + sig
                    snr = sig / np.sqrt(den) if den > 0.0 else 0.0
                    p = _power_index(max(snr, 0.0))
                    acc = 0.0
                    for k in range(ng):
                        acc += ctab[ng, p, k] * vbuf[i, k, x]
                    si[i, y, x] = acc
                    vpi[i, y, x] = tg * st2tab[ng, p] - delta * sc2tab[ng, p]  # per e-/s, scaled below
                    vri[i, y, x] = rn2 * sc2tab[ng, p]
                    dqi[i, y, x] = 0
                    e_s += acc
                    e_p += vpi[i, y, x]
                    e_r += vri[i, y, x]
                slope[y, x] = e_s / nints
                vpo[y, x] = e_p / (nints * nints)
                vro[y, x] = e_r / (nints * nints)
                dqo[y, x] = 0
                continue
            for i in range(nints):
                for g in range(ng):
                    pv[i, g] = vbuf[i, g, x]
                    pd[i, g] = dbuf[i, g, x]
            pars = (rnx, gx, ft, tg, nfr, gap)
            s, p_, r, d = _fit_pixel(pv, pd, pars, tables, work, ints_out)
            slope[y, x], vpo[y, x], vro[y, x], dqo[y, x] = s, p_, r, d
            for i in range(nints):
                si[i, y, x] = ints_out[i, 0]
                vpi[i, y, x] = ints_out[i, 1]
                vri[i, y, x] = ints_out[i, 2]
                dqi[i, y, x] = np.uint32(ints_out[i, 3])


def _photon_rate(slope: np.ndarray, vp: np.ndarray, gain: np.ndarray, lam: np.ndarray) -> None:
    """The factor ``lam`` by which each pixel's unit Poisson variance ``vp`` is multiplied.

    ``lam = (slope + SHIFT vp / gain) / gain`` (slope DN/s, gain e-/DN;
    ``vp / gain`` is the slope's Poisson variance per DN/s of rate): only the
    pixel's own data (module docstring).  Not clipped at 0 (the caller floors
    the variance); NaN where there is no slope.  Written into ``lam`` (ny, nx).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        np.multiply(vp, SHIFT, out=lam)
        lam /= gain
        lam += slope
        lam /= gain


def fit_ramps(
    data: np.ndarray,
    groupdq: np.ndarray,
    *,
    read_noise: float | np.ndarray,
    gain: float | np.ndarray,
    frame_time: float,
    group_time: float,
    nframes: int,
    groupgap: int,
) -> RampFit:
    """Fit count rates to up-the-ramp data (see the module docstring for the method).

    Parameters
    ----------
    data : ndarray, float32, (nints, ngroups, ny, nx)
        Group averages after bias, reference-pixel, linearity and dark
        corrections, DN.  Not modified.
    groupdq : ndarray, uint8, same shape
        Group DQ (JWST bits: DO_NOT_USE, SATURATED, JUMP_DET, ...).  Not modified.
    read_noise : float or ndarray (ny, nx)
        Single-read noise, DN (any other noise that is white from group to
        group, such as quantization, folded in as
        ``sqrt(rn**2 + nframes * extra_variance_per_group)``).
    gain : float or ndarray (ny, nx)
        e-/DN; pixels with gain <= 0 or NaN get DO_NOT_USE | NO_GAIN_VALUE.
    frame_time, group_time : float
        Seconds between frames and between groups (TFRAME, TGROUP).
    nframes, groupgap : int
        Frames averaged per group, frames dropped between groups.

    Returns
    -------
    RampFit
        Rates in DN/s, variances in (DN/s)**2, exposure and per integration.
    """
    if data.ndim != 4 or groupdq.shape != data.shape:
        raise CalibrationError(f"data and groupdq must be the same 4-D shape "
                         f"(nints, ngroups, ny, nx), got {data.shape} and {groupdq.shape}")
    if nframes < 1 or groupgap < 0 or frame_time <= 0 or group_time <= 0:
        raise CalibrationError(f"bad readout timing: nframes={nframes}, groupgap={groupgap}, "
                         f"frame_time={frame_time}, group_time={group_time}")
    nints, ngroups, ny, nx = data.shape
    rn = as_pixel_map(read_noise, (ny, nx), "read_noise")
    gn = as_pixel_map(gain, (ny, nx), "gain")
    img = [np.empty((ny, nx), np.float32) for _ in range(4)]
    dq = np.empty((ny, nx), np.uint32)
    if nints == 1:  # the integration is the exposure: share the arrays
        ints, dq_ints = [a[None] for a in img], dq[None]
    else:
        ints = [np.empty((nints, ny, nx), np.float32) for _ in range(4)]
        dq_ints = np.empty((nints, ny, nx), np.uint32)
    timing = (float(frame_time), float(group_time), float(nframes), float(groupgap))
    tables = _weight_tables(max(ngroups, 3), float(group_time))
    _fit_rows(data, groupdq.astype(np.uint8, copy=False), rn, gn, timing, tables,
              (img[0], img[1], img[2], dq, ints[0], ints[1], ints[2], dq_ints))
    lam = img[3]  # borrowed as scratch: the error is computed last
    _photon_rate(img[0], img[1], gn, lam)
    if nints > 1:
        ints[1] *= lam[None]
    img[1] *= lam
    for v in (img, ints) if nints > 1 else (img,):
        # floor at -VAR_RNOISE / 2 (fmax: NaN where there is no slope becomes 0 there too)
        np.multiply(v[2], -POISSON_FLOOR, out=v[3])
        np.fmax(v[1], v[3], out=v[1])
    for v in (img, ints) if nints > 1 else (img,):
        np.add(v[1], v[2], out=v[3])
        np.sqrt(v[3], out=v[3])
    return RampFit(slope=img[0], err=img[3], var_poisson=img[1], var_rnoise=img[2], dq=dq,
                   slope_ints=ints[0], err_ints=ints[3], var_poisson_ints=ints[1],
                   var_rnoise_ints=ints[2], dq_ints=dq_ints)
