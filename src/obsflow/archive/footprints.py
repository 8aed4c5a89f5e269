"""Searching by footprint: which exposures' ``s_region`` overlaps a region of the sky.

A search is two conditions on ``exposures`` (:func:`overlap_clause`):

1. an indexed prefilter: the exposure has a row in ``footprint_cells`` among
   the HEALPix cells covering the search region.  Each exposure's footprint
   is covered by cells of one of the orders :data:`COVER_ORDERS` (the finest
   that needs at most :data:`MAX_CELLS` cells: :func:`coverage_cells`), each
   stored as its NUNIQ number ``4 * 4**order + nested index`` so one indexed
   column holds every order; the region becomes ranges of NUNIQ numbers at
   every order (:func:`region_ranges`).  Both sides are supersets of the true
   coverage (astropy-healpix's cone search is inclusive, and both cones are
   padded), so an exposure that overlaps is never dropped here;
2. the exact test of the footprint polygon (or, for a product without a
   celestial WCS, its position) against the region: on SQLite the function
   ``obsflow_intersects`` of :mod:`obsflow.archive.vo.sphere` (registered on
   every connection by :class:`~obsflow.archive.context.Archive`), on
   PostgreSQL pg_sphere's ``&&`` / ``@`` operators.

A region (:class:`Region`) is a circle (cone search, SIA2 ``CIRCLE``), a
convex polygon (SIA2 ``POLYGON``) or an RA/Dec box (SIA2 ``RANGE``), all
ICRS degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from sqlalchemy import Boolean, ColumnElement, and_, case, cast, func, literal, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import UserDefinedType

from obsflow.archive.schema import Exposure, FootprintCell, Product
from obsflow.archive.sky import Footprint, angle_deg, cone_ranges, healpix_at, unit_vector
from obsflow.archive.vo import sphere

__all__ = ["COVER_ORDERS", "EXPOSURE_COLUMNS", "MAX_CELLS", "VECTOR_COLUMNS", "Region", "Spoly",
           "cells_clause", "coverage_cells", "near_clause", "overlap_clause", "per_dialect",
           "region_ranges", "spoint", "stcs_spoly"]

COVER_ORDERS = (10, 6, 2)
"""HEALPix orders a footprint's cells may have (pixels of about 3.4 arcmin, 55 arcmin
and 15 deg): an exposure of a few arcmin takes a handful of order-10 cells, a mosaic
of a few degrees order-6 ones."""

EXPOSURE_COLUMNS = (Exposure.id, Exposure.s_region, Exposure.s_ra, Exposure.s_dec)
"""``overlap_clause``'s columns for a query of exposures alone."""

MAX_CELLS = 64
"""A footprint is covered by at most this many cells of the finest order that suffices
(every footprint fits at order 2: 192 cells cover the sky)."""

@dataclass(frozen=True)
class Region:
    """A search region: ``shapes`` (``circle``, ``polygon`` or ``range`` shapes of
    :mod:`~obsflow.archive.vo.sphere`, OR-ed) and the cones bounding them
    ``(ra, dec, radius)``, degrees."""

    shapes: tuple[sphere.Shape, ...]
    cones: tuple[tuple[float, float, float], ...]

    @classmethod
    def circle(cls, ra: float, dec: float, radius: float) -> Region:
        """A cone of ``radius`` degrees around (ra, dec)."""
        return cls((sphere.Shape("circle", (ra % 360.0, dec, radius)),),
                   ((ra % 360.0, dec, radius),))

    @classmethod
    def polygon(cls, values: tuple[float, ...]) -> Region:
        """A convex polygon ``ra1 dec1 ra2 dec2 ...`` (smaller than a hemisphere)."""
        shape = sphere.Shape("polygon", values)
        vertices = shape.vertices
        centre = vertices.sum(axis=0)
        centre /= np.linalg.norm(centre)
        ra, dec = _radec(centre)
        radius = max(angle_deg(centre, v) for v in vertices)
        return cls((shape,), ((ra, dec, radius),))

    @classmethod
    def box(cls, ra1: float, ra2: float, dec1: float, dec2: float) -> Region:
        """The RA/Dec box ``ra1..ra2`` (through 0 if ``ra1 > ra2``), ``dec1..dec2``."""
        pieces = sphere.range_pieces(ra1, ra2, dec1, dec2)
        shapes = tuple(sphere.Shape("range", p) for p in pieces)
        return cls(shapes, tuple(_box_cone(*p) for p in pieces))


def _radec(v: np.ndarray) -> tuple[float, float]:
    return (math.degrees(math.atan2(v[1], v[0])) % 360.0,
            math.degrees(math.asin(max(-1.0, min(1.0, float(v[2]))))))


def _box_cone(ra1: float, ra2: float, dec1: float, dec2: float) -> tuple[float, float, float]:
    """A cone around an RA/Dec box spanning at most 180 deg in RA: the distance from its
    centre grows along each side towards the corners."""
    ra, dec = (ra1 + ra2) / 2, (dec1 + dec2) / 2
    centre = np.array(unit_vector(ra, dec))
    corners = [np.array(unit_vector(a, d)) for a in (ra1, ra2) for d in (dec1, dec2)]
    return ra, dec, max(angle_deg(centre, c) for c in corners)


def _cone_pixels(order: int, ra: float, dec: float, radius: float) -> np.ndarray:
    """Nested pixels at ``order`` meeting the cone (inclusive), padded a little."""
    pad = min(radius * 1.001 + 1e-6, 180.0)
    return np.unique(healpix_at(order).cone_search_lonlat(ra * u.deg, dec * u.deg, pad * u.deg))


def coverage_cells(footprint: Footprint) -> list[int]:
    """NUNIQ numbers of the cells covering ``footprint`` (its bounding cone), at the finest
    of :data:`COVER_ORDERS` that needs at most :data:`MAX_CELLS` cells."""
    radius = footprint.fov / 2 if footprint.is_polygon else 0.0
    for order in COVER_ORDERS:
        pixels = _cone_pixels(order, footprint.ra, footprint.dec, radius)
        if len(pixels) <= MAX_CELLS:
            break
    return [4 * 4**order + int(p) for p in pixels]


def _ranges_at(order: int, ra: float, dec: float, radius: float) -> list[tuple[int, int]]:
    """Inclusive ranges of NUNIQ numbers at ``order`` covering the cone."""
    base = 4 * 4**order
    return [(base + lo, base + hi)
            for lo, hi in cone_ranges(ra, dec, radius, order, finest_first=True)]


def region_ranges(region: Region) -> list[tuple[int, int]]:
    """Inclusive NUNIQ ranges, at every order of :data:`COVER_ORDERS`, covering ``region``."""
    out: list[tuple[int, int]] = []
    for order in COVER_ORDERS:
        for ra, dec, radius in region.cones:
            out.extend(_ranges_at(order, ra, dec, radius))
    return sorted(set(out))


# -- SQL ---------------------------------------------------------------------------------------

class Spoly(UserDefinedType):  # type: ignore[type-arg]
    """pg_sphere's spoly (cast from text)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "spoly"


def stcs_spoly(text: Any) -> Any:
    """pg_sphere spoly of an STC-S ``POLYGON ICRS ra dec ...`` text (SQL)."""
    body = func.regexp_replace(func.regexp_replace(
        text, r"^\s*POLYGON\s+[A-Za-z0-9]*\s*", ""),
        r"(\S+)\s+(\S+)\s*", r"(\1d,\2d),", "g")
    return cast(literal("{") + func.rtrim(body, ",") + literal("}"), Spoly())


def spoint(ra: Any, dec: Any) -> Any:
    """pg_sphere spoint of (ra, dec) in degrees (SQL)."""
    return func.spoint(func.radians(ra), func.radians(dec))


class _PerDialect(ColumnElement[bool]):
    """A condition written one way for SQLite and another for PostgreSQL."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, sqlite: ColumnElement[bool], postgresql: ColumnElement[bool]) -> None:
        self.sqlite, self.postgresql = sqlite, postgresql


@compiles(_PerDialect)
def _compile_sqlite(element: _PerDialect, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.sqlite, **kw)


@compiles(_PerDialect, "postgresql")
def _compile_pg(element: _PerDialect, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.postgresql, **kw)


def per_dialect(sqlite: ColumnElement[bool], postgresql: ColumnElement[bool]
                ) -> ColumnElement[bool]:
    """A condition written one way for SQLite and another for PostgreSQL."""
    return _PerDialect(sqlite, postgresql)


_TINY = 1e-300
"""Degrees below this are sent to PostgreSQL as 0: it refuses subnormal floats ('underflow')."""


def _pg_shape(shape: sphere.Shape) -> Any:
    v = tuple(0.0 if abs(x) < _TINY else float(x) for x in shape.values)
    if shape.kind == "circle":
        return func.scircle(spoint(literal(v[0]), literal(v[1])), func.radians(literal(v[2])))
    if shape.kind == "range":
        return func.sbox(spoint(literal(v[0]), literal(v[2])), spoint(literal(v[1]), literal(v[3])))
    text = "{" + ",".join(f"({a!r}d,{d!r}d)" for a, d in zip(v[0::2], v[1::2], strict=True)) + "}"
    return cast(literal(text), Spoly())


def _exact(shape: sphere.Shape, columns: tuple[Any, Any, Any]) -> _PerDialect:
    region, ra, dec = columns
    lite = func.obsflow_intersects(region, literal(sphere.encode(shape.kind, shape.values))) == 1
    pg_shape = _pg_shape(shape)
    polygon = stcs_spoly(region).op("&&")(pg_shape)
    point = spoint(ra, dec).op("@")(pg_shape)
    pg = case((region.like("POLYGON%"), polygon), else_=point)
    return _PerDialect(lite, pg)


def near_clause(cone: tuple[float, float, float], vectors: tuple[Any, Any, Any, Any]
                ) -> ColumnElement[bool]:
    """SQL condition, arithmetic only: the footprint's bounding cone (centre unit vector
    ``cx, cy, cz``, radius ``s_fov / 2`` degrees) may meet ``cone`` (ra, dec, radius deg).

    The chord between the centres is at most their angle, so a chord longer than the two
    radii (in radians) proves them apart: ``|c - c0|^2 > (r + s_fov / 2)^2`` rejects a row
    without the exact polygon test (a tiny slack keeps touching shapes)."""
    cx, cy, cz, fov = vectors
    x, y, z = unit_vector(cone[0], cone[1])
    reach = math.radians(cone[2]) * (1 + 1e-9) + 1e-12
    bound = literal(reach) + fov * literal(math.pi / 360 * (1 + 1e-9))
    return ((cx - literal(x)) * (cx - literal(x)) + (cy - literal(y)) * (cy - literal(y))
            + (cz - literal(z)) * (cz - literal(z))) <= bound * bound


def _centre_in(cone: tuple[float, float, float], vectors: tuple[Any, Any, Any, Any]
               ) -> ColumnElement[bool]:
    """The footprint's centre lies in the circle ``cone``: it overlaps, as a footprint holds
    its centre (its image's middle pixel, or the position it is)."""
    cx, cy, cz, _ = vectors
    x, y, z = unit_vector(cone[0], cone[1])
    return cx * literal(x) + cy * literal(y) + cz * literal(z) >= literal(
        math.cos(math.radians(cone[2])) * (1 + 1e-12))


VECTOR_COLUMNS = (Exposure.cx, Exposure.cy, Exposure.cz, Exposure.s_fov)
"""``overlap_clause``'s default centre unit vector and field-of-view columns."""


def overlap_clause(region: Region, columns: tuple[Any, Any, Any, Any] | None = None,
                   vectors: tuple[Any, Any, Any, Any] = VECTOR_COLUMNS) -> ColumnElement[bool]:
    """SQL condition: the exposure's footprint overlaps ``region`` (HEALPix cell prefilter,
    then the cheap bounding-cone test in SQL, then the exact test).

    ``columns`` are the (exposure id, s_region, s_ra, s_dec) columns to test, by default
    ``products.exposure_id`` and the ``exposures`` table's (a query of products joined to
    their exposures then starts from the cells: ``ix_products_exposure`` takes the list);
    ``vectors`` the (cx, cy, cz, s_fov) ones.  Per shape of the region: rows whose
    bounding cone misses the shape's bounding cone are dropped by arithmetic
    (:func:`near_clause`); for a circle, a row whose centre lies inside is taken without
    the exact test; the rest get the exact test.
    """
    eid, region_col, ra, dec = columns or (Product.exposure_id, Exposure.s_region,
                                           Exposure.s_ra, Exposure.s_dec)
    tests = []
    for shape, cone in zip(region.shapes, region.cones, strict=True):
        exact: ColumnElement[bool] = _exact(shape, (region_col, ra, dec))
        if shape.kind == "circle":
            exact = case((_centre_in(cone, vectors), true()), else_=exact)
        tests.append(and_(near_clause(cone, vectors), exact))
    return and_(cells_clause(region, eid), or_(*tests) if len(tests) > 1 else tests[0])


def cells_clause(region: Region, exposure_id: Any) -> ColumnElement[bool]:
    """SQL condition, the prefilter alone: the exposure ``exposure_id`` has a footprint cell
    among those covering ``region`` (true of every exposure whose footprint, or position,
    meets the region's bounding cones; the exact test follows it)."""
    cell = FootprintCell.cell
    cells = select(FootprintCell.exposure_id).where(
        or_(*(cell.between(lo, hi) for lo, hi in region_ranges(region))))
    return exposure_id.in_(cells)
