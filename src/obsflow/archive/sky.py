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
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy_healpix import HEALPix
from sqlalchemy import ColumnElement, and_, or_

from obsflow.archive.schema import HPX_ORDER, Exposure

__all__ = ["Footprint", "cone_clause", "cone_ranges", "footprint_from_header", "healpix_index",
           "unit_vector"]

MAX_RANGES = 64
"""A cone is covered by at most about this many HEALPix ranges (coarser order otherwise)."""


@dataclass(frozen=True)
class Footprint:
    """Where an exposure looks: centre, corners (ICRS degrees) and size."""

    ra: float
    dec: float
    fov: float
    corners: tuple[tuple[float, float], ...]

    @property
    def s_region(self) -> str:
        """The footprint as an STC-S polygon, e.g. ``POLYGON ICRS 10.0 -5.0 ...``, or
        ``POSITION ICRS ra dec`` for a product with no extent (no celestial WCS)."""
        if len(set(self.corners)) < 3:
            return f"POSITION ICRS {self.ra:.7f} {self.dec:.7f}"
        return "POLYGON ICRS " + " ".join(f"{ra:.7f} {dec:.7f}" for ra, dec in self.corners)


def unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    """Cartesian unit vector of (ra, dec) in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def _angle(v1: tuple[float, float, float], v2: tuple[float, float, float]) -> float:
    dot = max(-1.0, min(1.0, sum(a * b for a, b in zip(v1, v2, strict=True))))
    return math.degrees(math.acos(dot))


def healpix_index(ra: float | np.ndarray, dec: float | np.ndarray) -> np.ndarray:
    """Nested HEALPix index at :data:`HPX_ORDER` of positions in degrees."""
    hp = HEALPix(nside=2**HPX_ORDER, order="nested")
    return np.asarray(hp.lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg),
                      dtype=np.int64)


def footprint_from_header(sci: fits.Header, primary: fits.Header) -> Footprint:
    """Footprint from the SCI extension's celestial WCS, else a point at TARG_RA/TARG_DEC."""
    if "CTYPE1" in sci and "CTYPE2" in sci:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(sci).celestial
        nx, ny = int(sci["NAXIS1"]), int(sci["NAXIS2"])
        ra, dec = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
        corners = [(float(a), float(b)) for a, b in wcs.calc_footprint(axes=(nx, ny))]
        centre = unit_vector(ra, dec)
        fov = 2 * max(_angle(centre, unit_vector(a, b)) for a, b in corners)
        return Footprint(ra % 360.0, dec, fov, tuple((a % 360.0, b) for a, b in corners))
    ra, dec = float(primary["TARG_RA"]), float(primary["TARG_DEC"])
    return Footprint(ra % 360.0, dec, 0.0, ((ra % 360.0, dec),) * 3)


def _query_order(radius_deg: float) -> int:
    """Finest order whose pixels are not much smaller than the cone."""
    order = 0
    while order < HPX_ORDER and math.degrees(
        HEALPix(nside=2 ** (order + 1)).pixel_resolution.to_value(u.rad)
    ) > radius_deg:
        order += 1
    return order


def cone_ranges(ra: float, dec: float, radius_deg: float) -> list[tuple[int, int]]:
    """Inclusive ranges of :data:`HPX_ORDER` nested indices covering the cone."""
    order = _query_order(radius_deg)
    while True:
        hp = HEALPix(nside=2**order, order="nested")
        pad = radius_deg + math.degrees(hp.pixel_resolution.to_value(u.rad))
        pix = np.unique(hp.cone_search_lonlat(ra * u.deg, dec * u.deg, min(pad, 180.0) * u.deg))
        shift = 2 * (HPX_ORDER - order)
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
