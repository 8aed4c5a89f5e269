"""Sky geometry of the catalog: footprints, unit vectors and HEALPix cone search.

A cone search is two conditions on ``exposures``: an indexed prefilter
``hpx BETWEEN lo AND hi`` over the few nested HEALPix ranges that cover the
cone (computed here with astropy-healpix at an order matched to the radius),
and an exact test ``cx*x + cy*y + cz*z >= cos(radius)`` that needs only
arithmetic, so it runs the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy_healpix import HEALPix
from sqlalchemy import ColumnElement, and_, or_

from obsflow.archive.schema import HPX_ORDER, Exposure

__all__ = ["Footprint", "angle_deg", "cone_clause", "cone_ranges", "footprint_from_header",
           "footprint_from_region", "healpix_at", "healpix_index", "unit_vector"]

MAX_RANGES = 64
"""A cone is covered by at most about this many HEALPix ranges (coarser order otherwise)."""


@dataclass(frozen=True)
class Footprint:
    """Where an exposure looks: centre, corners (ICRS degrees) and size.

    ``corners`` are the outer corners of the image's corner pixels, counter-clockwise
    on the sky (north up, east left), so consecutive corners are joined by great-circle
    arcs exactly for a gnomonic (TAN) WCS; ``fov`` is twice the largest
    centre-to-corner angle, degrees.
    """

    ra: float
    dec: float
    fov: float
    corners: tuple[tuple[float, float], ...]

    @property
    def is_polygon(self) -> bool:
        """True if the footprint has an extent (three or more distinct corners)."""
        return len(set(self.corners)) >= 3

    @property
    def s_region(self) -> str:
        """The footprint as an STC-S polygon, e.g. ``POLYGON ICRS 10.0 -5.0 ...``, or
        ``POSITION ICRS ra dec`` for a product with no extent (no celestial WCS)."""
        if not self.is_polygon:
            return f"POSITION ICRS {self.ra:.9f} {self.dec:.9f}"
        return "POLYGON ICRS " + " ".join(f"{ra:.9f} {dec:.9f}" for ra, dec in self.corners)


def unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    """Cartesian unit vector of (ra, dec) in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def angle_deg(v1: Any, v2: Any) -> float:
    """Angle between two unit vectors (3-sequences), degrees (atan2 form: exact when small)."""
    a, b = np.asarray(v1, dtype=float), np.asarray(v2, dtype=float)
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b)))


def _counter_clockwise(corners: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``corners`` in counter-clockwise order on the sky (the order DALI polygons use):
    seen from outside the sphere that is clockwise, ``(v0 x v1) . centre < 0``."""
    v = np.array([unit_vector(a, d) for a, d in corners])
    turn = float(np.sum(np.cross(v, np.roll(v, -1, axis=0)) @ v.sum(axis=0)))
    return corners[::-1] if turn > 0 else corners


def healpix_index(ra: float | np.ndarray, dec: float | np.ndarray) -> np.ndarray:
    """Nested HEALPix index at :data:`HPX_ORDER` of positions in degrees."""
    hp = healpix_at(HPX_ORDER)
    return np.asarray(hp.lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg),
                      dtype=np.int64)


def footprint_from_header(sci: fits.Header, primary: fits.Header) -> Footprint:
    """Footprint from the SCI extension's celestial WCS (the outer edges of its pixels),
    else a point at TARG_RA/TARG_DEC (a product with no celestial WCS)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(sci, naxis=2).celestial if "CTYPE1" in sci and "CTYPE2" in sci else None
    if wcs is not None and wcs.naxis == 2:
        nx, ny = int(sci["NAXIS1"]), int(sci["NAXIS2"])
        ra, dec = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
        raw = wcs.calc_footprint(axes=(nx, ny), center=False)
        corners = _counter_clockwise([(float(a) % 360.0, float(b)) for a, b in raw])
        centre = unit_vector(ra, dec)
        fov = 2 * max(angle_deg(centre, unit_vector(a, b)) for a, b in corners)
        if np.all(np.isfinite(raw)) and math.isfinite(ra) and math.isfinite(dec):
            return Footprint(ra % 360.0, dec, fov, tuple(corners))
    ra, dec = float(primary["TARG_RA"]), float(primary["TARG_DEC"])
    return Footprint(ra % 360.0, dec, 0.0, ((ra % 360.0, dec),) * 3)


def footprint_from_region(s_region: str, ra: float, dec: float, fov: float) -> Footprint:
    """The :class:`Footprint` an ``s_region`` text describes (``POLYGON ICRS ...``), else the
    position (ra, dec) with no extent."""
    words = s_region.split()
    if len(words) > 2 and words[0].upper() == "POLYGON":
        values = [float(w) for w in words[2:]]
        corners = tuple(zip(values[0::2], values[1::2], strict=True))
        return Footprint(ra, dec, fov, corners)
    return Footprint(ra, dec, 0.0, ((ra, dec),) * 3)


@cache
def healpix_at(order: int) -> HEALPix:
    """The nested HEALPix grid of ``order`` (one object per order)."""
    return HEALPix(nside=2**order, order="nested")


def _resolution_deg(order: int) -> float:
    """Square root of a pixel's area at ``order``, degrees."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4**order)))


def _query_order(radius_deg: float, finest: int) -> int:
    """Finest order (at most ``finest``) whose pixels are not much smaller than the cone."""
    order = 0
    while order < finest and _resolution_deg(order + 1) > radius_deg:
        order += 1
    return order


def cone_ranges(ra: float, dec: float, radius_deg: float, target: int = HPX_ORDER,
                finest_first: bool = False) -> list[tuple[int, int]]:
    """Inclusive ranges of nested indices at order ``target`` (default :data:`HPX_ORDER`)
    covering the cone (padded by one pixel of the order the cone is searched at).

    The cone is searched at the finest order whose pixels are not much smaller than
    it, or with ``finest_first`` at pixels about an eighth of its radius (a tighter
    cover), coarser while that needs more than :data:`MAX_RANGES` ranges."""
    order = _query_order(radius_deg / 8 if finest_first else radius_deg, target)
    while True:
        hp = healpix_at(order)
        pad = radius_deg + _resolution_deg(order)
        pix = np.unique(hp.cone_search_lonlat(ra * u.deg, dec * u.deg, min(pad, 180.0) * u.deg))
        shift = 2 * (target - order)
        ranges: list[tuple[int, int]] = []
        for p in pix.tolist():
            lo, hi = p << shift, ((p + 1) << shift) - 1
            if ranges and ranges[-1][1] + 1 == lo:
                ranges[-1] = (ranges[-1][0], hi)
            else:
                ranges.append((lo, hi))
        if len(ranges) <= MAX_RANGES or order == 0:
            return ranges
        order -= 1


def cone_clause(ra: float, dec: float, radius_deg: float,
                columns: tuple[Any, Any, Any, Any] | None = None) -> ColumnElement[bool]:
    """SQL condition: the exposure's centre lies within ``radius_deg`` of (ra, dec).

    ``columns`` are the (cx, cy, cz, hpx) columns to test, by default the
    ``exposures`` table's (a subquery's copies of them also use its indexes).
    """
    cx, cy, cz, hpx = columns or (Exposure.cx, Exposure.cy, Exposure.cz, Exposure.hpx)
    x, y, z = unit_vector(ra, dec)
    exact = cx * x + cy * y + cz * z >= math.cos(math.radians(radius_deg))
    prefilter = or_(*(hpx.between(lo, hi) for lo, hi in cone_ranges(ra, dec, radius_deg)))
    return and_(prefilter, exact)
