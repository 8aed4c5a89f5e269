"""A transiting planet in front of a quadratically limb-darkened star.

The star's surface brightness is ``I(mu) = 1 - u1 (1 - mu) - u2 (1 - mu)**2``
with ``mu = sqrt(1 - r**2)`` (``r`` in stellar radii).  The flux blocked by
an opaque disc of radius ``p`` whose centre is ``z`` stellar radii from the
star's centre is integrated numerically over annuli of the stellar disc: an
annulus of radius ``r`` loses the arc ``2 r theta(r)`` inside the planet,
``cos theta = (r**2 + z**2 - p**2) / (2 r z)``.  Gauss-Legendre nodes on a
cosine-stretched variable absorb the square-root behaviour at the chord ends
and at the limb; the relative error on the depth is below 1e-6, ample for
simulation and fitting (it is the Mandel & Agol 2002 quadratic case computed
by quadrature rather than with elliptic integrals).

The planet crosses on a straight chord at constant speed (an orbit much
longer than the transit): ``z(t) = sqrt(b**2 + (v (t - t0))**2)`` with the
speed fixed by the total duration (first to fourth contact)
``v = 2 sqrt((1 + p)**2 - b**2) / T14``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from obsflow.exceptions import SimulationError

__all__ = ["Transit", "transit_flux"]

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)


@dataclass(frozen=True)
class Transit:
    """A transit's truth.

    Attributes
    ----------
    t0 : float
        Mid-transit time, in whatever time unit ``t`` is given in (the
        simulator uses MJD UTC days; the fit seconds from a reference).
    depth : float
        ``(Rp / Rs)**2``, the planet's area over the star's (dimensionless).
    duration : float
        First to fourth contact, same unit as ``t0``.
    impact : float
        Impact parameter ``b`` in stellar radii (0 central, < 1 + p).
    u1, u2 : float
        Quadratic limb-darkening coefficients.
    """

    t0: float
    depth: float
    duration: float
    impact: float
    u1: float = 0.3
    u2: float = 0.2

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _blocked(z: np.ndarray, p: float, u1: float, u2: float) -> np.ndarray:
    """Fraction of the star's flux hidden by a disc of radius ``p`` at distances ``z``."""
    z = np.atleast_1d(np.asarray(z, np.float64))[:, None]
    s = (_NODES[None, :] + 1) / 2  # 0..1
    w = _WEIGHTS[None, :] / 2

    def intensity(r: np.ndarray) -> np.ndarray:
        mu = np.sqrt(np.clip(1 - r * r, 0.0, 1.0))
        return 1 - u1 * (1 - mu) - u2 * (1 - mu) ** 2

    inner = np.clip(p - z, 0.0, 1.0)  # annuli entirely covered
    lo = np.abs(z - p)
    hi = np.minimum(1.0, z + p)
    total = np.zeros(z.shape[0])
    # covered core: integral of I(r) 2 pi r over [0, inner]
    rc = inner * (1 - np.cos(np.pi * s)) / 2
    jc = inner * np.pi * np.sin(np.pi * s) / 2
    total += np.sum(w * jc * intensity(rc) * 2 * np.pi * rc, axis=1)
    # partly covered annuli over [lo, hi]
    span = np.clip(hi - lo, 0.0, None)
    r = lo + span * (1 - np.cos(np.pi * s)) / 2
    jac = span * np.pi * np.sin(np.pi * s) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_t = (r * r + z * z - p * p) / (2 * r * z)
    theta = np.arccos(np.clip(np.nan_to_num(cos_t, nan=1.0), -1.0, 1.0))
    total += np.sum(w * jac * intensity(r) * 2 * r * theta, axis=1)
    norm = np.pi * (1 - u1 / 3 - u2 / 6)
    return total / norm


def transit_flux(t: np.ndarray, transit: Transit) -> np.ndarray:
    """Relative stellar flux (1 out of transit) at times ``t`` (the unit of ``transit.t0``)."""
    p = float(np.sqrt(transit.depth))
    b = transit.impact
    if not (0 < transit.depth < 1 and transit.duration > 0 and 0 <= b < 1 + p):
        raise SimulationError(
            f"transit: need 0 < depth < 1, duration > 0 and 0 <= impact < 1 + sqrt(depth); "
            f"got depth {transit.depth}, duration {transit.duration}, impact {b}")
    v = 2 * np.sqrt((1 + p) ** 2 - b * b) / transit.duration
    t = np.asarray(t, np.float64)
    z = np.sqrt(b * b + (v * (t - transit.t0)) ** 2)
    out = np.ones(t.shape)
    inside = z < 1 + p
    if inside.any():
        out[inside] = 1 - _blocked(z[inside], p, transit.u1, transit.u2)
    return out
