"""Fit a transit to a light curve: depth, mid-time, duration, impact parameter and errors.

The model is a linear baseline times the limb-darkened transit
(:func:`obsflow.tso.transit.transit_flux`) with the limb-darkening
coefficients held fixed (as usual: they come from stellar models, the
data constrain them poorly).  Free: mid-time, depth, duration, impact
parameter, baseline level and slope.  :func:`scipy.optimize.least_squares`
minimises the error-weighted residuals; the parameter errors are the square
roots of the diagonal of ``(J^T J)^-1`` scaled by the reduced chi-square
(so they reflect the scatter actually seen, not only the quoted errors).
Times are days (e.g. BJD TDB); internally seconds from the median time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import least_squares

from obsflow.exceptions import TransitFitError
from obsflow.tso.transit import Transit, transit_flux

__all__ = ["TransitFit", "fit_transit"]

_DAY_S = 86400.0


@dataclass(frozen=True)
class TransitFit:
    """Best-fit transit and 1-sigma errors.

    ``t0`` and ``t0_err`` days (the unit of the times given) and seconds
    (``t0_err_s``); ``depth`` ``(Rp/Rs)**2``; ``duration`` days; ``impact``
    stellar radii; ``baseline`` flux out of transit (the flux's unit) and
    ``slope`` its relative change per day; ``chi2_reduced``; ``n`` points used.
    """

    t0: float
    t0_err: float
    depth: float
    depth_err: float
    duration: float
    duration_err: float
    impact: float
    impact_err: float
    baseline: float
    slope: float
    chi2_reduced: float
    n: int

    @property
    def t0_err_s(self) -> float:
        return self.t0_err * _DAY_S

    def transit(self, u1: float, u2: float) -> Transit:
        return Transit(self.t0, self.depth, self.duration, self.impact, u1, u2)


def _guess(ts: np.ndarray, flux: np.ndarray) -> tuple[float, float, float, float]:
    """(t0 s, depth, duration s, baseline) from a running median of the light curve."""
    width = max(3, ts.size // 40) | 1
    smooth = median_filter(flux, size=width, mode="nearest")
    baseline = float(np.median(np.concatenate([flux[: ts.size // 10], flux[-(ts.size // 10):]])))
    low = int(np.argmin(smooth))
    depth = max(1e-5, 1 - float(smooth[low]) / baseline)
    below = np.flatnonzero(smooth < baseline * (1 - depth / 2))
    duration = float(ts[below[-1]] - ts[below[0]]) * 1.15 if below.size > 1 else (ts[-1] - ts[0]) / 4
    return float(ts[low]), depth, max(duration, 3 * float(np.median(np.diff(ts)))), baseline


def fit_transit(times: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, u1: float,
                u2: float) -> TransitFit:
    """Fit the transit in (``times`` days, ``flux``, ``flux_err``); see the module docstring."""
    t = np.asarray(times, np.float64)
    f = np.asarray(flux, np.float64)
    e = np.asarray(flux_err, np.float64)
    ok = np.isfinite(t) & np.isfinite(f) & np.isfinite(e) & (e > 0)
    if ok.sum() < 20:
        raise TransitFitError(f"light curve: {int(ok.sum())} usable points, expected at least 20")
    t, f, e = t[ok], f[ok], e[ok]
    tref = float(np.median(t))
    ts = (t - tref) * _DAY_S
    span = float(ts[-1] - ts[0])
    t0, depth, duration, baseline = _guess(ts, f)

    def model(p: np.ndarray) -> np.ndarray:
        shape = transit_flux(ts, Transit(p[0], p[1], p[2], p[3], u1, u2))
        return p[4] * (1 + p[5] * ts / _DAY_S) * shape

    def residuals(p: np.ndarray) -> np.ndarray:
        return (f - model(p)) / e

    start = np.array([t0, depth, min(duration, span), 0.3, baseline, 0.0])
    lower = [ts[0], 1e-6, 2 * float(np.median(np.diff(ts))), 0.0, 0.0, -np.inf]
    upper = [ts[-1], 0.5, 2 * span, 1.0, np.inf, np.inf]
    start = np.clip(start, np.add(lower, 1e-9), np.subtract(upper, 1e-9))
    scale = np.array([duration / 10, depth / 10, duration / 10, 0.1, baseline * 1e-3, 1e-2])
    result = least_squares(residuals, start, bounds=(lower, upper), x_scale=scale,
                           method="trf", xtol=1e-12, ftol=1e-12, max_nfev=2000)
    dof = max(1, f.size - result.x.size)
    chi2 = float(np.sum(result.fun ** 2) / dof)
    jac = result.jac
    cov = np.linalg.pinv(jac.T @ jac) * chi2
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    p = result.x
    return TransitFit(t0=tref + float(p[0]) / _DAY_S, t0_err=float(err[0]) / _DAY_S, depth=float(p[1]),
                      depth_err=float(err[1]), duration=float(p[2]) / _DAY_S,
                      duration_err=float(err[2]) / _DAY_S,
                      impact=float(p[3]), impact_err=float(err[3]), baseline=float(p[4]),
                      slope=float(p[5]), chi2_reduced=chi2, n=int(f.size))
