"""A tangent (gnomonic) plane on the sky: where alignment measures and corrects positions.

``xi`` points east and ``eta`` north, both in arcseconds, at the tangent
point (``ra0``, ``dec0``) degrees; :meth:`TangentPlane.project` and
:meth:`TangentPlane.deproject` are exact inverses (the FITS TAN projection).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TangentPlane"]

_ARCSEC_PER_RAD = 206264.80624709636


@dataclass(frozen=True)
class TangentPlane:
    """The gnomonic plane tangent at (``ra0``, ``dec0``), degrees."""

    ra0: float
    dec0: float

    def project(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """(N, 2) (xi, eta) arcsec of sky positions ``ra``, ``dec`` (degrees)."""
        a, d = np.deg2rad(np.asarray(ra, np.float64)), np.deg2rad(np.asarray(dec, np.float64))
        a0, d0 = np.deg2rad(self.ra0), np.deg2rad(self.dec0)
        cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
        xi = np.cos(d) * np.sin(a - a0) / cosc
        eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
        return np.column_stack([xi, eta]) * _ARCSEC_PER_RAD

    def deproject(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sky (ra, dec) degrees of plane positions ``xy`` (N, 2) arcsec."""
        xy = np.asarray(xy, np.float64) / _ARCSEC_PER_RAD
        xi, eta = xy[:, 0], xy[:, 1]
        a0, d0 = np.deg2rad(self.ra0), np.deg2rad(self.dec0)
        denom = np.cos(d0) - eta * np.sin(d0)
        a = a0 + np.arctan2(xi, denom)
        d = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
        return np.rad2deg(a) % 360.0, np.rad2deg(d)
