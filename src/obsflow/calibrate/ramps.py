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
``Var(A_j) = lambda (t_j - tframe (m**2 - 1) / (6 m))``), with the rate
``lambda`` estimated, as in stcal, by the median of the pixel's clean first
differences.  The combined variances carry the actual combination weights.

Pixels are processed row by row in compiled code (numba), so memory beyond
the input cube is only the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from obsflow.calibrate._numeric import as_pixel_map, nan_median_sorted, sort_inplace
from obsflow.models.dq import DQ

__all__ = ["RampFit", "fit_ramps"]

_DNU = np.uint8(DQ.DO_NOT_USE)
_SAT = np.uint8(DQ.SATURATED)
_JUMP = np.uint8(DQ.JUMP_DET)
_NOT_PERS = np.uint8(0xFF & ~int(DQ.PERSISTENCE))
_PDQ_DNU = np.uint32(DQ.DO_NOT_USE)
_PDQ_SAT = np.uint32(DQ.SATURATED)
_PDQ_JUMP = np.uint32(DQ.JUMP_DET)
_PDQ_NGV = np.uint32(DQ.NO_GAIN_VALUE)
_PDQ_UNREL = np.uint32(DQ.UNRELIABLE_SLOPE)


@dataclass(frozen=True)
class RampFit:
    """Result of :func:`fit_ramps`.

    Attributes
    ----------
    slope, err, var_poisson, var_rnoise : ndarray, float32, (ny, nx)
        Exposure count rate (DN/s), its 1-sigma error (DN/s) and the Poisson
        and read-noise variances (DN/s)**2; NaN slope where no fit exists
        (DQ has DO_NOT_USE), variances 0 there.
    dq : ndarray, uint32, (ny, nx)
        DO_NOT_USE (no usable group), SATURATED (some group saturated),
        JUMP_DET (a jump was flagged), NO_GAIN_VALUE, UNRELIABLE_SLOPE (only
        single-group segments were available).
    slope_ints, err_ints, var_poisson_ints, var_rnoise_ints : ndarray, float32, (nints, ny, nx)
        The same per integration (the ``_rateints`` product).
    dq_ints : ndarray, uint32, (nints, ny, nx)
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
def _snr_power(snr: float) -> float:  # pragma: no cover - compiled
    if snr < 5.0:
        return 0.0
    if snr < 10.0:
        return 0.4
    if snr < 20.0:
        return 1.0
    if snr < 50.0:
        return 3.0
    if snr < 100.0:
        return 6.0
    return 10.0


@njit(cache=True, nogil=True)
def _median_rate(v: np.ndarray, dq: np.ndarray, tg: float, t0: float,
                 scratch: np.ndarray) -> float:  # pragma: no cover - compiled
    """stcal's median rate: mean over integrations of the median clean first difference / tgroup."""
    nints, ng = v.shape
    acc = 0.0
    for i in range(nints):
        if ng == 1:
            acc += v[i, 0] / t0
            continue
        n = 0
        for k in range(ng - 1):
            if (dq[i, k + 1] & _JUMP) or (dq[i, k] & _DNU) or (dq[i, k + 1] & _DNU):
                continue
            scratch[n] = (v[i, k + 1] - v[i, k]) / tg
            n += 1
        if n == 0:
            m = v[i, 0] / tg if not (dq[i, 0] & _DNU) else 0.0
        else:
            sort_inplace(scratch, n)
            m = nan_median_sorted(scratch, n)
        if np.isfinite(m):
            acc += m
    return acc / nints


@njit(cache=True, nogil=True)
def _segment(y: np.ndarray, s: int, n: int, pars: tuple, rate: float,
             c: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """Fit one segment ``y[s:s+n]``: (slope, stcal weight variance, var_p, var_r), DN/s units."""
    rn, gain, ft, tg, nfr, gap = pars
    rn2 = rn * rn / nfr
    delta = ft * (nfr * nfr - 1.0) / (6.0 * nfr)
    lam = rate / gain if rate > 0.0 else 0.0
    if n == 1:
        t = ft * (s * (nfr + gap) + (nfr + 1.0) / 2.0)
        c[0] = 1.0 / t
        return y[s] / t, 2.0 * rn2 / (t * t), lam * (t - delta) / (t * t), rn2 / (t * t)
    if n == 2:
        vr = 2.0 * rn2 / (tg * tg)
        return (y[s + 1] - y[s]) / tg, vr, lam * (tg - 2.0 * delta) / (tg * tg), vr
    sig = (y[s + n - 1] - y[s]) * gain
    den = rn2 * gain * gain + sig
    snr = sig / np.sqrt(den) if den > 0.0 else 0.0
    power = _snr_power(max(snr, 0.0))
    mid = (n - 1) / 2.0
    sw = sx = sxx = sy = sxy = 0.0
    for k in range(n):
        w = abs((k - mid) / mid) ** power
        c[k] = w
        x = float(k + s)
        sw += w
        sx += w * x
        sxx += w * x * x
        sy += w * y[s + k]
        sxy += w * x * y[s + k]
    d = sw * sxx - sx * sx
    slope = (sw * sxy - sx * sy) / d / tg
    sc2 = 0.0
    for k in range(n):
        c[k] = c[k] * (sw * (k + s) - sx) / d / tg
        sc2 += c[k] * c[k]
    tail = 0.0
    st2 = 0.0
    for k in range(n - 1, 0, -1):
        tail += c[k]
        st2 += tail * tail
    vw = 12.0 * rn2 / ((n * n * n - n) * tg * tg)
    return slope, vw, lam * (tg * st2 - delta * sc2), rn2 * sc2


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
                start = k - 1 if (k > 0 and (dq[k - 1] & _NOT_PERS) == _JUMP) else k
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
def _fit_pixel(v: np.ndarray, dq: np.ndarray, pars: tuple, work: tuple,
               ints_out: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """Fit one pixel; writes (slope, var_p, var_r, dq) per integration into ``ints_out``.

    Returns the exposure (slope, var_p, var_r, dq).
    """
    rn, gain, ft, tg, nfr, gap = pars
    scratch, c, starts, lens = work
    nints, ng = v.shape
    t0 = ft * (nfr + 1.0) / 2.0
    rate = _median_rate(v, dq, tg, t0, scratch)
    e_num = e_w = e_p = e_r = 0.0
    e_dq = np.uint32(0)
    n_dnu = 0
    only_single = True
    for i in range(nints):
        idq = np.uint32(0)
        nsat = ndnusat = 0
        for k in range(ng):
            if dq[i, k] & _SAT:
                nsat += 1
            if dq[i, k] & (_SAT | _DNU):
                ndnusat += 1
            if dq[i, k] & _JUMP:
                idq |= _PDQ_JUMP
        if nsat:
            idq |= _PDQ_SAT
        nseg = 0 if (dq[i, 0] & _SAT) or ndnusat == ng else _segments(dq[i], starts, lens)
        num = wsum = vp = vr = 0.0
        for j in range(nseg):
            slope, vw, sp, sr = _segment(v[i], starts[j], lens[j], pars, rate, c)
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


@njit(cache=True, nogil=True)
def _fit_rows(data: np.ndarray, gdq: np.ndarray, rn: np.ndarray, gain: np.ndarray,
              timing: tuple, out: tuple) -> None:  # pragma: no cover - compiled
    """Fit every pixel, one detector row at a time (the row's groups copied contiguously)."""
    ft, tg, nfr, gap = timing
    slope, vpo, vro, dqo, si, vpi, vri, dqi = out
    nints, ng, ny, nx = data.shape
    vbuf = np.empty((nints, ng, nx), np.float64)
    dbuf = np.empty((nints, ng, nx), np.uint8)
    pv = np.empty((nints, ng), np.float64)
    pd = np.empty((nints, ng), np.uint8)
    work = (np.empty(nints * ng, np.float64), np.empty(ng, np.float64),
            np.empty(ng, np.int64), np.empty(ng, np.int64))
    ints_out = np.empty((nints, 4), np.float64)
    for y in range(ny):
        for i in range(nints):
            for g in range(ng):
                vbuf[i, g, :] = data[i, g, y, :]
                dbuf[i, g, :] = gdq[i, g, y, :]
        for x in range(nx):
            pv[:, :] = vbuf[:, :, x]
            pd[:, :] = dbuf[:, :, x]
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
            pars = (float(rn[y, x]), gx, ft, tg, nfr, gap)
            s, p, r, d = _fit_pixel(pv, pd, pars, work, ints_out)
            slope[y, x], vpo[y, x], vro[y, x], dqo[y, x] = s, p, r, d
            for i in range(nints):
                si[i, y, x] = ints_out[i, 0]
                vpi[i, y, x] = ints_out[i, 1]
                vri[i, y, x] = ints_out[i, 2]
                dqi[i, y, x] = np.uint32(ints_out[i, 3])


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
        Single-read noise, DN.
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
        raise ValueError(f"data and groupdq must be the same 4-D shape "
                         f"(nints, ngroups, ny, nx), got {data.shape} and {groupdq.shape}")
    if nframes < 1 or groupgap < 0 or frame_time <= 0 or group_time <= 0:
        raise ValueError(f"bad readout timing: nframes={nframes}, groupgap={groupgap}, "
                         f"frame_time={frame_time}, group_time={group_time}")
    nints, _, ny, nx = data.shape
    rn = as_pixel_map(read_noise, (ny, nx), "read_noise")
    gn = as_pixel_map(gain, (ny, nx), "gain")
    img = [np.empty((ny, nx), np.float32) for _ in range(3)]
    ints = [np.empty((nints, ny, nx), np.float32) for _ in range(3)]
    dq = np.empty((ny, nx), np.uint32)
    dq_ints = np.empty((nints, ny, nx), np.uint32)
    timing = (float(frame_time), float(group_time), float(nframes), float(groupgap))
    _fit_rows(data, groupdq.astype(np.uint8, copy=False), rn, gn, timing,
              (img[0], img[1], img[2], dq, ints[0], ints[1], ints[2], dq_ints))
    err = np.sqrt(img[1] + img[2])
    err_ints = np.sqrt(ints[1] + ints[2])
    return RampFit(slope=img[0], err=err, var_poisson=img[1], var_rnoise=img[2], dq=dq,
                   slope_ints=ints[0], err_ints=err_ints, var_poisson_ints=ints[1],
                   var_rnoise_ints=ints[2], dq_ints=dq_ints)
