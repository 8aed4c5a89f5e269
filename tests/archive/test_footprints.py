"""Footprints and the footprint search, on SQLite and PostgreSQL.

The search (:func:`obsflow.archive.footprints.overlap_clause`: HEALPix cell
prefilter + exact test, ``obsflow_intersects`` on SQLite, pg_sphere on
PostgreSQL) is checked against an independent brute force written with
astropy alone: each polygon's edges sampled densely along great circles
(``SkyCoord.directional_offset_by``), a point inside a polygon by its
winding number of position angles, distances by ``SkyCoord.separation``.
Random footprints and regions cluster around RA 0 (wrap), both poles and an
ordinary field, so overlaps, near misses and containment all occur.  A pair
the sampling cannot decide (boundaries closer than the sample spacing
without a sample inside the other shape) is left out of the comparison, and
such pairs must be rare.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, angular_separation, offset_by, position_angle
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import select, text
from tests.archive.conftest import make_archive
from tests.archive.factories import meta, write_product

from obsflow.archive.footprints import (
    COVER_ORDERS,
    EXPOSURE_COLUMNS,
    Region,
    coverage_cells,
    overlap_clause,
)
from obsflow.archive.register import register_product
from obsflow.archive.schema import Exposure, FootprintCell, Product, Program
from obsflow.archive.sky import Footprint, footprint_from_header, healpix_index, unit_vector
from obsflow.archive.vo.obscore import latest_clause
from obsflow.archive.vo.sphere import decode
from obsflow.db import make_engine
from obsflow.migrations import init_schema

CLUSTERS = ((0.0, 20.0), (123.0, 89.6), (300.0, -89.7), (210.0, -35.0))
"""(ra, dec) around which footprints and regions are drawn: RA wrap, both poles, elsewhere."""

SAMPLES = 100
"""Samples per edge in the brute force."""


# -- footprints from a WCS ---------------------------------------------------------------------

def _header(ra: float, dec: float, pa: float, scale_deg: float, nx: int, ny: int) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    c, s = np.cos(np.radians(pa)), np.sin(np.radians(pa))
    w.wcs.cd = scale_deg * np.array([[-c, s], [s, c]])
    header = w.to_header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, nx, ny
    return header


def test_footprint_is_the_outline_of_the_pixels_counter_clockwise() -> None:
    header = _header(53.16, -27.78, 30.0, 0.5 / 3600, 40, 20)
    foot = footprint_from_header(header, fits.Header())
    w = WCS(header)
    # the outer pixel edges, by astropy alone
    edges = SkyCoord(*w.all_pix2world([-0.5, 39.5, 39.5, -0.5], [-0.5, -0.5, 19.5, 19.5], 0),
                     unit="deg")
    got = SkyCoord([c[0] for c in foot.corners], [c[1] for c in foot.corners], unit="deg")
    assert all(got.separation(e).min() < 1e-9 * u.deg for e in edges)
    # counter-clockwise on the sky (east left): position angles from the centre decrease
    centre = SkyCoord(foot.ra, foot.dec, unit="deg")
    pa = np.unwrap(centre.position_angle(got).rad)
    assert np.all(np.diff(pa) > 0) or np.all(np.diff(pa) < 0)
    assert pa[-1] - pa[0] > 0  # PA grows north through east: counter-clockwise as seen on the sky
    diagonal = np.hypot(40, 20) * 0.5 / 3600
    assert foot.fov == pytest.approx(diagonal, rel=1e-4)
    assert foot.s_region.startswith("POLYGON ICRS ")


def test_footprint_across_ra_zero_and_around_a_pole() -> None:
    wrap = footprint_from_header(_header(0.001, 5.0, 0.0, 1 / 3600, 100, 100), fits.Header())
    ras = [c[0] for c in wrap.corners]
    assert all(0 <= r < 360 for r in ras) and min(ras) < 1 and max(ras) > 359
    pole = footprint_from_header(_header(10.0, 89.999, 0.0, 1 / 3600, 100, 100), fits.Header())
    assert {int(c[0] // 90) for c in pole.corners} == {0, 1, 2, 3}  # surrounds the pole
    assert Region.circle(0.0, 90.0, 1e-4) is not None
    assert _brute_circle(pole, (0.0, 90.0, 1e-5)) is True


def test_product_without_celestial_wcs_is_a_point() -> None:
    primary = fits.Header({"TARG_RA": -10.0, "TARG_DEC": 4.0})
    foot = footprint_from_header(fits.Header({"NAXIS": 2, "NAXIS1": 8, "NAXIS2": 8}), primary)
    assert not foot.is_polygon and foot.s_region == "POSITION ICRS 350.000000000 4.000000000"
    assert len(coverage_cells(foot)) >= 1


def test_coverage_cells_contain_every_point_of_the_footprint() -> None:
    rng = np.random.default_rng(5)
    for foot in _random_footprints(rng, 30):
        cells = set(coverage_cells(foot))
        order = next(o for o in COVER_ORDERS if 4 * 4**o <= min(cells) < 16 * 4**o)
        ra, dec = _boundary(foot)  # the boundary; the inside lies between
        nested = healpix_index(np.degrees(ra), np.degrees(dec)) >> 2 * (18 - order)
        assert set((4 * 4**order + nested).tolist()) <= cells


# -- random footprints and regions ---------------------------------------------------------------

def _near_cluster(rng: np.random.Generator, i: int) -> SkyCoord:
    """A random position within 0.8 deg of cluster ``i`` (cyclically)."""
    ra0, dec0 = CLUSTERS[i % len(CLUSTERS)]
    return SkyCoord(ra0, dec0, unit="deg").directional_offset_by(
        rng.uniform(0, 360) * u.deg, rng.uniform(0, 0.8) * u.deg)


def _random_footprints(rng: np.random.Generator, n: int) -> list[Footprint]:
    out = []
    for i in range(n):
        centre = _near_cluster(rng, i)
        size = rng.uniform(0.02, 1.2)
        nx, ny = int(rng.integers(50, 400)), int(rng.integers(50, 400))
        header = _header(centre.ra.deg, centre.dec.deg, rng.uniform(0, 360),
                         size / max(nx, ny), nx, ny)
        if i % 11 == 5:  # a product with no celestial WCS: its target position
            out.append(footprint_from_header(fits.Header({"NAXIS": 0}), fits.Header(
                {"TARG_RA": centre.ra.deg, "TARG_DEC": centre.dec.deg})))
        else:
            out.append(footprint_from_header(header, fits.Header()))
    return out


@dataclass(frozen=True)
class _Case:
    label: str
    region: Region
    kind: str
    values: tuple[float, ...]


def _random_regions(rng: np.random.Generator, n: int) -> list[_Case]:
    cases = []
    for i in range(n):
        c = _near_cluster(rng, i)
        ra, dec, size = float(c.ra.deg), float(c.dec.deg), float(rng.uniform(0.05, 1.0))
        kind = ("circle", "polygon", "range")[i % 3]
        if kind == "circle":
            cases.append(_Case(f"circle{i}", Region.circle(ra, dec, size), kind, (ra, dec, size)))
        elif kind == "polygon":  # a convex polygon: points on a circle at increasing angles
            angles = np.sort(rng.uniform(0, 360, int(rng.integers(3, 7))))
            if np.max(np.diff(np.r_[angles, angles[0] + 360])) >= 180:
                angles = np.linspace(0, 360, 5)[:-1] + rng.uniform(0, 90)
            pts = c.directional_offset_by(-angles * u.deg, size * u.deg)  # counter-clockwise
            values = tuple(float(v) for p in pts for v in (p.ra.deg, p.dec.deg))
            cases.append(_Case(f"polygon{i}", Region.polygon(values), kind, values))
        else:
            dec1, dec2 = max(dec - size, -90.0), min(dec + size, 90.0)
            half = min(size / max(np.cos(np.radians(dec)), 0.02), 170.0)
            ra1, ra2 = (ra - half) % 360, (ra + half) % 360
            values = (ra1, ra2, dec1, dec2)
            cases.append(_Case(f"range{i}", Region.box(*values), kind, values))
    return cases


# -- the independent brute force (astropy's spherical trigonometry only) ------------------------
# Points are (ra, dec) arrays in radians; astropy's angular_separation (Vincenty),
# position_angle and offset_by do all the geometry.

Points = tuple[np.ndarray, np.ndarray]


def _rad(pairs: list[tuple[float, float]] | tuple[float, ...]) -> Points:
    flat = np.asarray(pairs, dtype=float).ravel()
    return np.radians(flat[0::2]), np.radians(flat[1::2])


def _sample_edges(vertices: Points) -> Points:
    t = np.linspace(0, 1, SAMPLES, endpoint=False)
    ras, decs = [], []
    for i in range(len(vertices[0])):
        j = (i + 1) % len(vertices[0])
        a, b = (vertices[0][i], vertices[1][i]), (vertices[0][j], vertices[1][j])
        pa = position_angle(*a, *b)
        ra, dec = offset_by(a[0], a[1], pa, t * angular_separation(*a, *b))
        ras.append(np.atleast_1d(ra.to_value(u.rad)))
        decs.append(np.atleast_1d(dec.to_value(u.rad)))
    return np.concatenate(ras), np.concatenate(decs)


def _corners(foot: Footprint) -> Points:
    shape = decode(foot.s_region)
    assert shape is not None
    return _rad(shape.values)


@cache
def _boundary_cached(s_region: str) -> Points:
    shape = decode(s_region)
    assert shape is not None
    return _sample_edges(_rad(shape.values))


def _boundary(foot: Footprint) -> Points:
    if not foot.is_polygon:
        return _rad((foot.ra, foot.dec))
    return _boundary_cached(foot.s_region)


def _inside(points: Points, vertices: Points) -> np.ndarray:
    """Winding number of position angles: +-360 deg inside a (small) polygon, 0 outside;
    the antipode of an inside point winds too, so the point must also be near it."""
    pa = np.stack([position_angle(points[0], points[1], vra, vdec).to_value(u.deg)
                   for vra, vdec in zip(*vertices, strict=True)])
    turn = np.diff(np.vstack([pa, pa[:1]]), axis=0)
    turn = (turn + 180.0) % 360.0 - 180.0
    near = np.asarray(angular_separation(points[0], points[1], vertices[0][0],
                                         vertices[1][0])) < np.pi / 2
    return (np.abs(turn.sum(axis=0)) > 180.0) & near


def _in_box(points: Points, box: tuple[float, ...]) -> np.ndarray:
    ra1, ra2, dec1, dec2 = box
    ra, dec = np.degrees(points[0]) % 360.0, np.degrees(points[1])
    in_ra = (ra >= ra1) & (ra <= ra2) if ra1 <= ra2 else (ra >= ra1) | (ra <= ra2)
    return np.asarray(in_ra & (dec >= dec1) & (dec <= dec2))


def _box_boundary(box: tuple[float, ...]) -> Points:
    """The box's outline as one closed walk: along dec1 (a small circle), up the meridian
    ra2, back along dec2, down the meridian ra1."""
    ra1, ra2, dec1, dec2 = box
    ras = ra1 + np.linspace(0, (ra2 - ra1) % 360.0, 4 * SAMPLES)
    decs = np.linspace(dec1, dec2, SAMPLES)
    return (np.radians(np.r_[ras, np.full(SAMPLES, ras[-1]), ras[::-1], np.full(SAMPLES, ra1)]),
            np.radians(np.r_[np.full(ras.size, dec1), decs, np.full(ras.size, dec2),
                             decs[::-1]]))


def _separations(a: Points, b: Points) -> np.ndarray:
    return np.degrees(np.asarray(angular_separation(a[0][:, None], a[1][:, None],
                                                    b[0][None, :], b[1][None, :])))


def _spacing(points: Points) -> float:
    if len(points[0]) < 2:
        return 0.0
    gaps = angular_separation(points[0][:-1], points[1][:-1], points[0][1:], points[1][1:])
    return float(np.degrees(np.max(np.asarray(gaps))))


def _brute_circle(foot: Footprint, circle: tuple[float, ...]) -> bool | None:
    centre = _rad(circle[:2])
    boundary = _boundary(foot)
    margin = float(_separations(centre, boundary).min()) - circle[2]
    if margin <= 0 or (foot.is_polygon and _inside(centre, _corners(foot))[0]):
        return True
    return None if margin < _spacing(boundary) / 2 + 1e-9 else False


def _brute_shapes(foot: Footprint, other: Points, inside_other: np.ndarray,
                  other_inside: np.ndarray | None) -> bool | None:
    """Overlap from samples: a sample of one shape inside the other decides it; else the
    boundaries are disjoint if their samples are further apart than half the two spacings
    (crossing boundaries have samples that close)."""
    if inside_other.any() or (other_inside is not None and other_inside.any()):
        return True
    boundary = _boundary(foot)
    if _separations(boundary, other).min() <= (_spacing(boundary) + _spacing(other)) / 2 + 1e-9:
        return None
    return False


def _far_apart(foot: Footprint, other: Points) -> bool:
    """Whether the footprint and a shape (its outline ``other``) lie in disjoint caps: each
    shape lies within its outline's farthest distance from a point inside it."""
    a = _rad((foot.ra, foot.dec))
    b = (other[0][:1], other[1][:1])  # a point on the other shape's outline
    reach_a = float(_separations(a, _boundary(foot)).max())
    reach_b = float(_separations(b, other).max())
    return float(_separations(a, b)[0, 0]) > reach_a + reach_b + 1e-6


def brute_force(foot: Footprint, case: _Case) -> bool | None:
    """True/False: overlap or not; None: closer than the sampling can decide."""
    if case.kind == "circle":
        return _brute_circle(foot, case.values)
    boundary = _boundary(foot)
    if case.kind == "range":
        other = _box_boundary(case.values)
        if _far_apart(foot, other):
            return False
        inside_other = _in_box(boundary, case.values)
    else:
        vertices = _rad(case.values)
        other = _sample_edges(vertices)
        if _far_apart(foot, other):
            return False
        inside_other = _inside(boundary, vertices)
    other_inside = _inside(other, _corners(foot)) if foot.is_polygon else None
    return _brute_shapes(foot, other, inside_other, other_inside)


# -- the same answers from the database ---------------------------------------------------------

def _insert(archive_session: object, footprints: list[Footprint]) -> None:
    session = archive_session
    session.add(Program(program="09999", exclusive_months=0,  # type: ignore[attr-defined]
                        created=datetime(2026, 1, 1)))
    session.flush()  # type: ignore[attr-defined]
    for i, foot in enumerate(footprints):
        x, y, z = unit_vector(foot.ra, foot.dec)
        row = Exposure(obs_id=f"f{i:03d}", program="09999", observation=1, visit=1, exposure=i,
                       detector="D", facility_name="T", instrument_name="I", filter="J",
                       target_name="X", s_ra=foot.ra, s_dec=foot.dec, cx=x, cy=y, cz=z,
                       hpx=int(healpix_index(foot.ra, foot.dec)), s_fov=foot.fov,
                       s_region=foot.s_region, t_min=61000.0, t_max=61000.01, t_exptime=864.0,
                       release_date=datetime(2026, 1, 1))
        session.add(row)  # type: ignore[attr-defined]
        session.flush()  # type: ignore[attr-defined]
        session.add_all([FootprintCell(exposure_id=row.id, cell=c)  # type: ignore[attr-defined]
                         for c in coverage_cells(foot)])


@cache
def _world() -> tuple[list[Footprint], list[_Case], dict[str, set[int]], int]:
    """Footprints, regions, the brute force's answers and how many pairs it left undecided."""
    rng = np.random.default_rng(2026)
    footprints, cases = _random_footprints(rng, 40), _random_regions(rng, 24)
    truth: dict[str, set[int]] = {}
    undecided = 0
    for case in cases:
        answers = [brute_force(f, case) for f in footprints]
        undecided += sum(a is None for a in answers)
        truth[case.label] = {i for i, a in enumerate(answers) if a}
        truth[case.label + ":undecided"] = {i for i, a in enumerate(answers) if a is None}
    return footprints, cases, truth, undecided


def test_footprint_search_matches_the_brute_force(db_url: str, tmp_path: Path) -> None:
    footprints, cases, truth, undecided = _world()
    pairs = len(footprints) * len(cases)
    overlapping = sum(len(truth[c.label]) for c in cases)
    assert undecided <= pairs * 0.05, undecided
    assert pairs * 0.1 < overlapping < pairs * 0.9  # the cases are neither all hits nor all misses
    archive = make_archive(db_url, tmp_path / "store")
    try:
        with archive.session() as session, session.begin():
            _insert(session, footprints)
        with archive.session() as session:
            for case in cases:
                got = {int(s[1:]) for s in session.scalars(
                    select(Exposure.obs_id).where(overlap_clause(case.region, EXPOSURE_COLUMNS)))}
                skip = truth[case.label + ":undecided"]
                assert got - skip == truth[case.label] - skip, case
    finally:
        archive.close()


def test_prefilter_uses_the_cell_index_on_sqlite(tmp_path: Path) -> None:
    archive = make_archive(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "store")
    try:
        stmt = (select(Product.id).join(Exposure, Product.exposure_id == Exposure.id)
                .where(latest_clause(), overlap_clause(Region.circle(10.0, 20.0, 0.3))))
        with archive.session() as session:
            sql = str(stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r[-1]) for r in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert "ix_footprint_cells_cell" in plan and "ix_products_exposure" in plan, plan
        assert "SCAN" not in plan, plan
    finally:
        archive.close()


# -- registration --------------------------------------------------------------------------------

def test_registration_keeps_the_polygon_and_its_cells(db_url: str, tmp_path: Path) -> None:
    archive = make_archive(db_url, tmp_path / "store")
    try:
        m = meta(program="03456")
        register_product(archive, write_product(tmp_path / "in", m, kind="cal"))
        with archive.session() as session:
            exposure = session.scalars(select(Exposure)).one()
            region, cells = exposure.s_region, set(session.scalars(select(FootprintCell.cell)))
        assert region.startswith("POLYGON ICRS") and cells
        # a product of the same exposure without a celestial WCS does not shrink it to a point
        register_product(archive, write_product(tmp_path / "in", m, kind="uncal"))
        with archive.session() as session:
            assert session.scalars(select(Exposure.s_region)).one() == region
            assert set(session.scalars(select(FootprintCell.cell))) == cells
            # its corner is found by a small cone that misses the centre
            corner = decode(region).values[:2]  # type: ignore[union-attr]
            cone = Region.circle(corner[0], corner[1], 1e-4)
            assert session.scalars(select(Exposure.obs_id).where(overlap_clause(cone, EXPOSURE_COLUMNS))).all()
            far = Region.circle(corner[0] + 0.01, corner[1], 1e-4)
            assert not session.scalars(select(Exposure.obs_id).where(overlap_clause(far, EXPOSURE_COLUMNS))).all()
    finally:
        archive.close()


def test_upgraded_site_gets_the_cells_of_its_exposures(tmp_path: Path) -> None:
    db = tmp_path / "obsflow.db"
    shutil.copyfile(Path(__file__).parents[1] / "data" / "site_0_1_0.db", db)
    engine = make_engine(f"sqlite:///{db}")
    try:
        init_schema(engine)
        with engine.connect() as con:
            exposures = con.execute(select(Exposure.id, Exposure.s_ra, Exposure.s_dec)).all()
            covered = set(con.scalars(select(FootprintCell.exposure_id)))
        assert exposures and covered == {e.id for e in exposures}
    finally:
        engine.dispose()
