"""ADQL geometry on ivoa.ObsCore through the HEALPix prefilter, against astropy.

``1=INTERSECTS(s_region, CIRCLE/POLYGON/BOX)``, ``1=CONTAINS(POINT('ICRS', s_ra, s_dec),
shape)`` and ``1=CONTAINS(POINT(literals), s_region)``, with either argument first, on
SQLite and PostgreSQL: the answers equal the independent astropy brute force of
tests/archive/test_footprints.py (the same random footprints around RA 0, both poles and
an ordinary field), and equal the answers of the same query without the prefilter (a
shape computed from an expression, ``ra + 0``, gets none); the prefilter is in the SQL
(the footprint cells, or the centre's HEALPix index) and on SQLite the plan reads the
cell index.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from sqlalchemy import text
from tests.archive.conftest import make_archive
from tests.archive.test_footprints import _corners, _insert, _inside, _rad, _world

from obsflow.archive.context import Archive
from obsflow.archive.policy import ANONYMOUS
from obsflow.archive.schema import Exposure, Product, Run
from obsflow.archive.sky import Footprint
from obsflow.archive.vo import adql
from obsflow.archive.vo.tap_sql import TapRequest, _plan, run_adql

LATER = datetime(2031, 1, 1)
REQUEST = TapRequest(ANONYMOUS, LATER, "http://x", "obsflow.test", 10_000)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_db_url: str) -> Any:
    footprints, cases, truth, _ = _world()
    folder = tmp_path_factory.mktemp("tapfoot")
    archive = make_archive(module_db_url, folder / "store")
    with archive.session() as session, session.begin():
        _insert(session, footprints)
        session.add(Run(name="r", kind="manual", created=LATER, description=""))
        for i, row in enumerate(session.query(Exposure).order_by(Exposure.id)):
            session.add(Product(
                product_id=f"f{i:03d}_cal_v1", uuid=f"{i:032x}", run="r", exposure_id=row.id,
                kind="cal", level="2b", calib_level=2, version=1, is_latest=True,
                dataproduct_type="image", content_type="application/fits",
                filename="f.fits", path=f"f{i}.fits", size=1, sha256="0" * 64, created=LATER,
                software_version="t", recipe="", reference_files="[]", provenance="{}"))
    yield archive, footprints, cases, truth
    archive.close()


def _ids(archive: Archive, query: str) -> set[int]:
    with archive.session() as session:
        return {int(str(r[0])[1:4]) for r in run_adql(session, query, REQUEST).rows}


def _shape(kind: str, values: tuple[float, ...], plus_zero: bool = False) -> str:
    nums = [repr(v) for v in values]
    if plus_zero:  # an expression: no prefilter, the exact test alone
        nums[0] = f"{nums[0]} + 0"
    name = {"circle": "CIRCLE", "polygon": "POLYGON"}[kind]
    return f"{name}('ICRS', {', '.join(nums)})"


SELECT = "SELECT obs_id FROM ivoa.ObsCore AS o WHERE "


def test_intersects_s_region_matches_astropy_both_orders(world: Any) -> None:
    archive, _, cases, truth = world
    checked = 0
    for case in cases:
        if case.kind == "range":  # SIA2's RANGE has no ADQL form
            continue
        skip = truth[case.label + ":undecided"]
        want = truth[case.label] - skip
        shape = _shape(case.kind, case.values)
        plain = _shape(case.kind, case.values, plus_zero=True)
        answers = [_ids(archive, SELECT + f"1 = INTERSECTS(o.s_region, {shape})"),
                   _ids(archive, SELECT + f"INTERSECTS({shape}, s_region) = 1"),
                   _ids(archive, SELECT + f"1 = INTERSECTS(s_region, {plain})")]
        for got in answers:
            assert got - skip == want, case
        assert answers[0] == answers[2], case  # with and without the prefilter
        checked += bool(want)
    assert checked >= 8  # most regions overlap some footprint


def _centres_in(footprints: list[Footprint], vertices: tuple[float, ...]) -> set[int]:
    ra = np.radians([f.ra for f in footprints])
    dec = np.radians([f.dec for f in footprints])
    inside = _inside((ra, dec), _rad(vertices))
    return {i for i in range(len(footprints)) if inside[i]}


def test_contains_centre_in_polygon_and_box_match_astropy(world: Any) -> None:
    """CONTAINS(POINT(s_ra, s_dec), POLYGON / BOX): the centres inside, by astropy's
    winding number; the HEALPix index of the centre is the prefilter."""
    archive, footprints, cases, _ = world
    polygons = [c for c in cases if c.kind == "polygon"]
    hits = 0
    for case in polygons:
        want = _centres_in(footprints, case.values)
        shape = _shape("polygon", case.values)
        got = _ids(archive, SELECT + f"1 = CONTAINS(POINT('ICRS', s_ra, s_dec), {shape})")
        assert got == want, case
        assert got == _ids(archive, SELECT + "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
                                             f"{_shape('polygon', case.values, True)})")
        hits += len(want)
    assert hits > 0
    for foot in footprints[:6]:  # a BOX of 0.5 x 0.4 deg around each of a few centres
        ra, dec = foot.ra, foot.dec
        if abs(dec) > 80:
            continue
        box = (ra - 0.25, dec - 0.2, ra + 0.25, dec - 0.2, ra + 0.25, dec + 0.2, ra - 0.25,
               dec + 0.2)
        want = _centres_in(footprints, box)
        got = _ids(archive, SELECT + "CONTAINS(POINT('ICRS', s_ra, s_dec), "
                                     f"BOX('ICRS', {ra!r}, {dec!r}, 0.5, 0.4)) = 1")
        assert got == want and footprints.index(foot) in got


def test_footprints_containing_a_point_match_astropy(world: Any) -> None:
    """CONTAINS(POINT(literals), s_region): the footprints around a point (the polygons by
    astropy's winding number; a footprint that is a position contains only itself)."""
    archive, footprints, _, _ = world
    rng = np.random.default_rng(7)
    found = 0
    for foot in [f for f in footprints if f.is_polygon][:10]:
        # near the centre (within the narrowest footprint's half width: sides up to 1:8)
        c = SkyCoord(foot.ra, foot.dec, unit="deg").directional_offset_by(
            rng.uniform(0, 360) * u.deg, foot.fov / 40 * u.deg)
        ra, dec = float(c.ra.deg), float(c.dec.deg)
        want = {i for i, f in enumerate(footprints) if f.is_polygon and _inside(
            (np.radians([ra]), np.radians([dec])), _rad([v for p in _corners_deg(f)
                                                          for v in p]))[0]}
        got = _ids(archive, SELECT + f"1 = CONTAINS(POINT('ICRS', {ra!r}, {dec!r}), s_region)")
        assert got == want and footprints.index(foot) in got
        found += len(got)
    assert found >= 10


def _corners_deg(foot: Footprint) -> list[tuple[float, float]]:
    ra, dec = _corners(foot)
    return list(zip(np.degrees(ra).tolist(), np.degrees(dec).tolist(), strict=True))


def _sql(archive: Archive, query: str) -> str:
    with archive.session() as session:
        bind = session.get_bind()
        plan = _plan(adql.parse_adql(query), REQUEST, bind.dialect.name)
        return str(plan.stmt.compile(bind, compile_kwargs={"literal_binds": True}))


def test_the_prefilter_is_in_the_sql(world: Any) -> None:
    archive = world[0]
    region = _sql(archive, SELECT + "1 = INTERSECTS(s_region, CIRCLE('ICRS', 10, -20, 0.3))")
    assert "footprint_cells" in region
    reversed_ = _sql(archive, SELECT + "INTERSECTS(POLYGON('ICRS', 10, 0, 11, 0, 11, 1), "
                                       "s_region) = 1")
    assert "footprint_cells" in reversed_
    centre = _sql(archive, SELECT + "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
                                    "BOX('ICRS', 10, 0, 1, 1))")
    assert "obsflow_hpx BETWEEN" in centre
    plain = _sql(archive, SELECT + "1 = INTERSECTS(s_region, CIRCLE('ICRS', 10 + 0, -20, 0.3))")
    assert "footprint_cells" not in plain
    if archive.engine.dialect.name == "sqlite":
        with archive.session() as session:
            plan = " ".join(str(r[-1]) for r in session.execute(
                text("EXPLAIN QUERY PLAN " + region)))
        assert "ix_footprint_cells_cell" in plan, plan


def test_a_prefilter_shape_out_of_range_is_the_usual_error(world: Any, tmp_path: Path) -> None:
    from obsflow.exceptions import VOQueryError

    archive = world[0]
    with pytest.raises(VOQueryError, match="CIRCLE needs -90 <= dec <= 90"):
        _ids(archive, SELECT + "1 = INTERSECTS(s_region, CIRCLE('ICRS', 10, 95, 0.3))")
