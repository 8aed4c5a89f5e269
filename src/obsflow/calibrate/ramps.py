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

Pixels are processed a detector row of one integration at a time in
compiled code (numba).  An integration of a pixel with no flagged group
(the vast majority) takes a fast path: one segment, with the coefficients
of each optimal-weight power precomputed once per call, computed across
the row; the others go through the general segment code.  Memory beyond
the input cube is only the outputs.

A long time series is fitted a block of integrations at a time
(:func:`fit_block`): each pixel's integrations are summed into its
exposure (:class:`RampSums`) as they come, the exposure is finished
(:func:`finish_exposure`) after the last block, and the integrations'
Poisson variances, per unit photon rate until then, are scaled by the
exposure's photon rate (:func:`scale_integrations`).  :func:`fit_ramps` is
these three on the whole cube.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numba import njit

from obsflow.calibrate._numeric import DNU_U8, JUMP_U8, SAT_U8, as_pixel_map
from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["IntsFit", "RampFit", "RampSums", "RampTiming", "finish_exposure", "fit_block",
           "fit_ramps", "scale_integrations"]

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
def _fit_integration(v: np.ndarray, dq: np.ndarray, pars: tuple, tables: tuple,
                     work: tuple) -> tuple:  # pragma: no cover - compiled
    """Fit one integration of one pixel (the general case: segments).

    Returns ``(num, wsum, vp, vr, idq, multi)``: the sums of its segments'
    slopes times their weights, of the weights, of the squared weights times
    the unit Poisson and the read-noise variances (``wsum == 0``: no usable
    segment), its DQ, and whether a segment had more than one group.
    """
    starts, lens = work
    ng = v.shape[0]
    idq = np.uint32(0)
    nsat = ndnusat = 0
    for k in range(ng):
        if dq[k] & SAT_U8:
            nsat += 1
        if dq[k] & (SAT_U8 | DNU_U8):
            ndnusat += 1
        if dq[k] & JUMP_U8:
            idq |= _PDQ_JUMP
    if nsat:
        idq |= _PDQ_SAT
    nseg = 0 if (dq[0] & SAT_U8) or ndnusat == ng else _segments(dq, starts, lens)
    num = wsum = vp = vr = 0.0
    multi = False
    for j in range(nseg):
        slope, vw, sp, sr = _segment(v, starts[j], lens[j], pars, tables)
        w = 1.0 / vw
        num += slope * w
        wsum += w
        vp += w * w * sp
        vr += w * w * sr
        if lens[j] > 1:
            multi = True
    if nseg == 0:
        idq |= _PDQ_DNU
    elif lens[0] == 1 and nseg == 1:
        idq |= _PDQ_UNREL
    return num, wsum, vp, vr, idq, multi


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
              timing: tuple, tables: tuple, ints: tuple, sums: tuple,
              keep: bool) -> None:  # pragma: no cover - compiled
    """Fit every integration of every pixel, one detector row of one integration at a time.

    Writes each integration's slope, unit Poisson variance, read-noise
    variance and DQ into ``ints`` (four (nints, ny, nx) arrays) and adds the
    integration to the pixel's exposure sums ``sums`` (:class:`RampSums`
    arrays, in integration order: a cube fitted in blocks of integrations
    gives the same sums bit for bit; with ``keep`` False they are not
    touched and may be any arrays).  An integration whose groups carry no
    flag (but PERSISTENCE) takes the fast path: one segment, slope and
    variances from the precomputed coefficient tables, computed across the
    row (contiguous reads and writes); any other goes through
    :func:`_fit_integration` (segments, the general case).
    """
    ft, tg, nfr, gap = timing
    ctab, sc2tab, st2tab = tables
    si, vpi, vri, dqi = ints
    e_num, e_w, e_p, e_r, e_dq, e_dnu, e_multi = sums
    nints, ng, ny, nx = data.shape
    clean = np.empty(nx, np.bool_)
    power = np.empty(nx, np.int64)
    acc = np.empty(nx, np.float64)
    gx = np.empty(nx, np.float64)
    rnv = np.empty(nx, np.float64)
    rn2 = np.empty(nx, np.float64)
    wfast = np.empty(nx, np.float64)
    num = np.empty(nx, np.float64)
    wsum = np.empty(nx, np.float64)
    vp = np.empty(nx, np.float64)
    vr = np.empty(nx, np.float64)
    edq = np.empty(nx, np.uint32)
    ndnu = np.empty(nx, np.int64)
    multi = np.empty(nx, np.bool_)
    pv = np.empty(ng, np.float64)
    pd = np.empty(ng, np.uint8)
    work = (np.empty(ng, np.int64), np.empty(ng, np.int64))
    delta = ft * (nfr * nfr - 1.0) / (6.0 * nfr)
    for y in range(ny):
        for x in range(nx):
            gx[x] = float(gain[y, x])
            rnv[x] = float(rn[y, x])
            rn2[x] = rnv[x] * rnv[x] / nfr
            # one clean ng-group segment: weight 1 / (12 rn2 / ((ng**3 - ng) tg**2))
            wfast[x] = (ng * ng * ng - ng) * tg * tg / (12.0 * rn2[x]) if rn2[x] > 0.0 else 0.0
            if keep:
                num[x], wsum[x], vp[x], vr[x] = e_num[y, x], e_w[y, x], e_p[y, x], e_r[y, x]
                edq[x], ndnu[x], multi[x] = e_dq[y, x], e_dnu[y, x], e_multi[y, x]
            else:
                num[x] = wsum[x] = vp[x] = vr[x] = 0.0
                edq[x] = 0
                ndnu[x] = 0
                multi[x] = False
        for i in range(nints):
            for x in range(nx):
                clean[x] = ng >= 3 and rn2[x] > 0.0
            for g in range(ng):
                drow = gdq[i, g, y]
                for x in range(nx):
                    if drow[x] & _NOT_PERS:
                        clean[x] = False
            first = data[i, 0, y]
            last = data[i, ng - 1, y]
            for x in range(nx):
                sig = (float(last[x]) - float(first[x])) * gx[x]
                den = rn2[x] * gx[x] * gx[x] + sig
                snr = sig / np.sqrt(den) if den > 0.0 else 0.0
                power[x] = _power_index(max(snr, 0.0))
                acc[x] = 0.0
            for k in range(ng):
                row = data[i, k, y]
                for x in range(nx):
                    acc[x] += ctab[ng, power[x], k] * row[x]
            so, vpo, vro, dqo = si[i, y], vpi[i, y], vri[i, y], dqi[i, y]
            for x in range(nx):
                if not (gx[x] > 0.0):
                    so[x] = np.nan
                    vpo[x] = vro[x] = 0.0
                    dqo[x] = _PDQ_DNU | _PDQ_NGV
                    edq[x] |= _PDQ_NGV
                    ndnu[x] += 1
                    continue
                if clean[x]:
                    p = power[x]
                    sp = tg * st2tab[ng, p] - delta * sc2tab[ng, p]  # per e-/s, scaled later
                    sr = rn2[x] * sc2tab[ng, p]
                    w = wfast[x]
                    so[x] = acc[x]
                    vpo[x] = sp
                    vro[x] = sr
                    dqo[x] = 0
                    num[x] += acc[x] * w
                    wsum[x] += w
                    vp[x] += w * w * sp
                    vr[x] += w * w * sr
                    multi[x] = True
                    continue
                for g in range(ng):
                    pv[g] = data[i, g, y, x]
                    pd[g] = gdq[i, g, y, x]
                pars = (rnv[x], gx[x], ft, tg, nfr, gap)
                n_, w_, p_, r_, idq, m_ = _fit_integration(pv, pd, pars, tables, work)
                if w_ > 0.0:
                    so[x] = n_ / w_
                    vpo[x] = p_ / (w_ * w_)
                    vro[x] = r_ / (w_ * w_)
                    num[x] += n_
                    wsum[x] += w_
                    vp[x] += p_
                    vr[x] += r_
                else:
                    so[x] = np.nan
                    vpo[x] = vro[x] = 0.0
                    ndnu[x] += 1
                dqo[x] = idq
                edq[x] |= idq & ~_PDQ_DNU & ~_PDQ_UNREL
                multi[x] = multi[x] or m_
        if keep:
            for x in range(nx):
                e_num[y, x], e_w[y, x], e_p[y, x], e_r[y, x] = num[x], wsum[x], vp[x], vr[x]
                e_dq[y, x], e_dnu[y, x], e_multi[y, x] = edq[x], ndnu[x], multi[x]


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


@dataclass(frozen=True)
class RampTiming:
    """The readout and noise a ramp fit needs (see :func:`fit_ramps` for units)."""

    read_noise: np.ndarray
    gain: np.ndarray
    frame_time: float
    group_time: float
    nframes: int
    groupgap: int

    @classmethod
    def make(cls, shape: tuple[int, int], *, read_noise: float | np.ndarray,
             gain: float | np.ndarray, frame_time: float, group_time: float, nframes: int,
             groupgap: int) -> RampTiming:
        """Check the timing and turn scalar or (ny, nx) noise and gain into (ny, nx) maps."""
        if nframes < 1 or groupgap < 0 or frame_time <= 0 or group_time <= 0:
            raise CalibrationError(f"bad readout timing: nframes={nframes}, groupgap={groupgap}, "
                                   f"frame_time={frame_time}, group_time={group_time}")
        return cls(as_pixel_map(read_noise, shape, "read_noise"),
                   as_pixel_map(gain, shape, "gain"), float(frame_time), float(group_time),
                   int(nframes), int(groupgap))


@dataclass
class RampSums:
    """A pixel's exposure, summed over the integrations fitted so far (:func:`fit_block`).

    Float64 (ny, nx) sums of the segments' weighted slopes ``num``, weights
    ``wsum``, squared weights times unit Poisson variances ``vp`` and times
    read-noise variances ``vr``; uint32 ``dq`` (the integrations' flags but
    DO_NOT_USE and UNRELIABLE_SLOPE), the number of integrations with no
    usable segment ``ndnu`` and whether any segment had two groups or more
    ``multi``; ``nints`` integrations so far.  About 40 bytes per pixel,
    whatever the number of integrations.
    """

    num: np.ndarray
    wsum: np.ndarray
    vp: np.ndarray
    vr: np.ndarray
    dq: np.ndarray
    ndnu: np.ndarray
    multi: np.ndarray
    nints: int = 0

    @classmethod
    def zeros(cls, shape: tuple[int, int]) -> RampSums:
        """Empty sums for a (ny, nx) array."""
        f64 = [np.zeros(shape, np.float64) for _ in range(4)]
        return cls(f64[0], f64[1], f64[2], f64[3], np.zeros(shape, np.uint32),
                   np.zeros(shape, np.int64), np.zeros(shape, np.bool_))


@dataclass(frozen=True)
class IntsFit:
    """One block of integrations fitted by :func:`fit_block`, float32/uint32 (n, ny, nx).

    ``var_poisson_unit`` is per unit photon rate: the exposure's photon rate
    (:func:`finish_exposure`) scales it (:func:`scale_integrations`).
    """

    slope: np.ndarray
    var_poisson_unit: np.ndarray
    var_rnoise: np.ndarray
    dq: np.ndarray


def fit_block(data: np.ndarray, groupdq: np.ndarray, timing: RampTiming,
              sums: RampSums | None) -> IntsFit:
    """Fit a block of integrations and add them to the exposure's ``sums`` (in place).

    ``data`` float32 and ``groupdq`` uint8 (n, ngroups, ny, nx) as
    :func:`fit_ramps` takes them; blocks must come in integration order
    for the sums to be those of the whole cube bit for bit.  ``sums=None``:
    the integrations only (an exposure of one integration is its integration).
    """
    if data.ndim != 4 or groupdq.shape != data.shape:
        raise CalibrationError(f"data and groupdq must be the same 4-D shape "
                               f"(nints, ngroups, ny, nx), got {data.shape} and {groupdq.shape}")
    nints, ngroups, ny, nx = data.shape
    keep = sums is not None
    if sums is None:
        sums = RampSums.zeros((1, 1))
    elif sums.num.shape != (ny, nx):
        raise CalibrationError(f"ramp sums {sums.num.shape} must have the detector shape "
                               f"{(ny, nx)}")
    if timing.gain.shape != (ny, nx):
        raise CalibrationError(f"gain {timing.gain.shape} must have the detector shape {(ny, nx)}")
    out = IntsFit(np.empty((nints, ny, nx), np.float32), np.empty((nints, ny, nx), np.float32),
                  np.empty((nints, ny, nx), np.float32), np.empty((nints, ny, nx), np.uint32))
    times = (timing.frame_time, timing.group_time, float(timing.nframes), float(timing.groupgap))
    _fit_rows(data, groupdq.astype(np.uint8, copy=False), timing.read_noise, timing.gain, times,
              _weight_tables(max(ngroups, 3), timing.group_time),
              (out.slope, out.var_poisson_unit, out.var_rnoise, out.dq),
              (sums.num, sums.wsum, sums.vp, sums.vr, sums.dq, sums.ndnu, sums.multi), keep)
    sums.nints += nints
    return out


def finish_exposure(sums: RampSums, gain: float | np.ndarray) -> tuple[RampFit, np.ndarray]:
    """The exposure's rate and variances from its ``sums``, and its photon-rate factor.

    Returns a :class:`RampFit` whose ``..._ints`` arrays are empty
    (0, ny, nx) (they are the blocks' :class:`IntsFit`, scaled by
    :func:`scale_integrations`), and ``lam`` (ny, nx), the factor of every
    unit Poisson variance of the pixel (:func:`_photon_rate`).
    """
    ny, nx = sums.num.shape
    gain = as_pixel_map(gain, (ny, nx), "gain")
    none = sums.ndnu >= sums.nints
    with np.errstate(invalid="ignore", divide="ignore"):
        w2 = sums.wsum * sums.wsum
        slope = np.where(none, np.nan, sums.num / sums.wsum).astype(np.float32)
        vp = np.where(none, 0.0, sums.vp / w2).astype(np.float32)
        vr = np.where(none, 0.0, sums.vr / w2).astype(np.float32)
    dq = sums.dq | np.where(none, _PDQ_DNU, np.where(sums.multi, 0, _PDQ_UNREL)).astype(np.uint32)
    lam = np.empty((ny, nx), np.float32)
    _photon_rate(slope, vp, gain, lam)
    err = np.empty((ny, nx), np.float32)
    scale_integrations(vp[None], vr[None], lam, err[None])
    empty = np.empty((0, ny, nx), np.float32)
    return RampFit(slope, err, vp, vr, dq, empty, empty, empty, empty,
                   np.empty((0, ny, nx), np.uint32)), lam


def scale_integrations(var_poisson: np.ndarray, var_rnoise: np.ndarray, lam: np.ndarray,
                       err: np.ndarray) -> None:
    """Turn unit Poisson variances (n, ny, nx) into variances, in place, and fill ``err``.

    Multiplies by the pixel's photon-rate factor ``lam`` (ny, nx), floors at
    ``-POISSON_FLOOR * var_rnoise`` (NaN becomes that floor, 0 where there
    is no fit) and writes ``err = sqrt(var_poisson + var_rnoise)``.  ``lam``
    is read before ``err`` is written: it may share ``err``'s memory.
    """
    var_poisson *= lam[None]
    np.multiply(var_rnoise, -POISSON_FLOOR, out=err)
    np.fmax(var_poisson, err, out=var_poisson)
    np.add(var_poisson, var_rnoise, out=err)
    np.sqrt(err, out=err)


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

    The whole cube at once; a long time series goes through :func:`fit_block`
    (blocks of integrations into :class:`RampSums`), :func:`finish_exposure`
    and :func:`scale_integrations`, which this composes.

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
    ny, nx = data.shape[2:]
    timing = RampTiming.make((ny, nx), read_noise=read_noise, gain=gain, frame_time=frame_time,
                             group_time=group_time, nframes=nframes, groupgap=groupgap)
    if data.shape[0] == 1:  # the integration is the exposure: share the arrays
        ints = fit_block(data, groupdq, timing, None)
        err = np.empty_like(ints.slope)
        lam = err[0]  # borrowed as scratch: scale_integrations reads it before writing err
        _photon_rate(ints.slope[0], ints.var_poisson_unit[0], timing.gain, lam)
        scale_integrations(ints.var_poisson_unit, ints.var_rnoise, lam, err)
        return RampFit(ints.slope[0], err[0], ints.var_poisson_unit[0], ints.var_rnoise[0],
                       ints.dq[0], ints.slope, err, ints.var_poisson_unit, ints.var_rnoise,
                       ints.dq)
    sums = RampSums.zeros((ny, nx))
    ints = fit_block(data, groupdq, timing, sums)
    exposure, lam = finish_exposure(sums, timing.gain)
    err = np.empty_like(ints.slope)
    scale_integrations(ints.var_poisson_unit, ints.var_rnoise, lam, err)
    return dataclasses.replace(exposure, slope_ints=ints.slope, err_ints=err,
                               var_poisson_ints=ints.var_poisson_unit,
                               var_rnoise_ints=ints.var_rnoise, dq_ints=ints.dq)
