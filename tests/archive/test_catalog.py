"""Catalog, registration, versions, programs and the access policy, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from astropy.io import fits
from sqlalchemy import insert, inspect, select
from tests.archive.factories import meta, write_product

from obsflow.archive.context import Archive
from obsflow.archive.footprints import coverage_cells
from obsflow.archive.policy import ANONYMOUS, Viewer, add_months, release_date
from obsflow.archive.register import register_product, register_program
from obsflow.archive.schema import (
    HPX_ORDER,
    Exposure,
    FootprintCell,
    Product,
    Program,
    Run,
)
from obsflow.archive.search import Cone, SearchQuery, get_product, search_products
from obsflow.archive.sky import footprint_from_region, healpix_index, unit_vector
from obsflow.db import Base
from obsflow.exceptions import ProductFileError, ProductNotFoundError, UnknownOptionError
from obsflow.migrations import VERSION_TABLE, current_revision, head_revision, init_schema
from obsflow.simulate.run import SimOptions, simulate

LATER = add_months(release_date(61000.01, 6), 1)


def test_migrations_match_models_and_are_idempotent(archive: Archive) -> None:
    init_schema(archive.engine)  # again: nothing to do
    assert current_revision(archive.engine) == head_revision()
    tables = set(inspect(archive.engine).get_table_names())
    assert {"programs", "exposures", "products", "users", "api_tokens", VERSION_TABLE} <= tables
    with archive.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_index" and d[1].name == "ix_exposures_spoint")
                and not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert diff == []


def test_register_is_idempotent_and_versions(archive: Archive, tmp_path: Path) -> None:
    path = write_product(tmp_path / "in", meta())
    first = register_product(archive, path)
    assert first.created and first.version == 1 and first.level == "2b"
    assert first.product_id == "01234001001_00001_ssd1_cal_v1"
    assert register_product(archive, path) == dataclass_replace(first, created=False)
    stored = archive.settings.store.local_path(first.store_key)
    assert stored.read_bytes() == path.read_bytes()
    assert first.run == "manual"  # a file made outside a site, copied into the store once
    assert first.store_key == (f"manual/01234/01234001001_00001_ssd1/{first.uuid[:12]}/"
                               "01234001001_00001_ssd1_cal.fits")
    second = register_product(archive, write_product(tmp_path / "in", meta(), seed=1))
    assert (second.version, second.created) == (2, True)
    assert stored.read_bytes() != archive.settings.store.local_path(second.store_key).read_bytes()
    with archive.session() as session:
        rows = session.scalars(select(Product).order_by(Product.version)).all()
        assert [(r.version, r.is_latest) for r in rows] == [(1, False), (2, True)]
        assert len(session.scalars(select(Exposure)).all()) == 1


def dataclass_replace(record, **changes):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(record, **changes)


def test_register_rejects_bad_files(archive: Archive, tmp_path: Path) -> None:
    good = write_product(tmp_path, meta())
    odd = good.with_name(good.name.replace("_cal", "_weird"))
    odd.write_bytes(good.read_bytes())
    with pytest.raises(UnknownOptionError, match="allowed: cal, cat, clr, crf, i2d"):
        register_product(archive, odd)
    nometa = tmp_path / "x_cal.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4)), name="SCI")]).writeto(nometa)
    with pytest.raises(ProductFileError, match="lacks keyword"):
        register_product(archive, nometa)
    corrupt = bytearray(good.read_bytes())
    corrupt[-100] ^= 0xFF  # flips data bytes: DATASUM no longer matches
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(ProductFileError, match="checksum"):
        register_product(archive, bad)
    with pytest.raises(ProductFileError, match="no such file"):
        register_product(archive, tmp_path / "missing_cal.fits")


def test_register_within_callers_session(archive: Archive, tmp_path: Path) -> None:
    path = write_product(tmp_path, meta())
    with archive.session() as session:
        record = register_product(session, path, settings=archive.settings)
        session.rollback()
    with archive.session() as session:
        assert session.scalar(select(Product)) is None  # the caller did not commit
        register_product(session, path, settings=archive.settings)
        session.commit()
        assert session.scalar(select(Product.product_id)) == record.product_id


def test_release_dates_follow_the_program(archive: Archive, tmp_path: Path) -> None:
    record = register_product(archive, write_product(tmp_path, meta()))
    with archive.session() as session:
        program = session.get(Program, "01234")
        assert program is not None and program.exclusive_months == 6  # profile default
        assert program.pi_name == "A. Rivera"
    register_program(archive, "01234", pi_name="A. Rivera", title="Deep", exclusive_months=0)
    released = release_date(61000.01, 0)
    with archive.session() as session:
        get_product(session, record.product_id, ANONYMOUS, released)
        with pytest.raises(ProductNotFoundError):
            get_product(session, record.product_id, ANONYMOUS, released - timedelta(seconds=1))


def test_release_boundary_and_members(archive: Archive, tmp_path: Path) -> None:
    record = register_product(archive, write_product(tmp_path, meta()))
    released = release_date(61000.01, 6)
    assert released.isoformat() == "2026-05-21T00:14:24"  # MJD 61000.01 + 6 months
    member = Viewer(name="m", user_id=1, programs=frozenset({"01234"}))
    stranger = Viewer(name="s", user_id=2, programs=frozenset({"09999"}))
    admin = Viewer(name="a", user_id=3, is_admin=True)
    query = SearchQuery()
    with archive.session() as session:
        before, after = released - timedelta(microseconds=1), released
        assert search_products(session, query, ANONYMOUS, before).total == 0
        assert search_products(session, query, stranger, before).total == 0
        assert search_products(session, query, member, before).total == 1
        assert search_products(session, query, admin, before).total == 1
        assert search_products(session, query, ANONYMOUS, after).total == 1
        with pytest.raises(ProductNotFoundError, match="no product"):
            get_product(session, record.product_id, stranger, before)


def test_search_fields_and_paging(archive: Archive, tmp_path: Path) -> None:
    for i, (flt, target, expstart) in enumerate([("J", "A", 61000.0), ("H", "A", 61001.0),
                                                 ("K", "B", 61002.0)]):
        m = meta(exposure=i + 1, filter=flt, target=target, expstart=expstart,
                 expend=expstart + 0.01)
        register_product(archive, write_product(tmp_path, m, seed=i))
    register_product(archive, write_product(tmp_path, meta(exposure=1, target="A"), kind="uncal"))
    with archive.session() as session:
        def total(**kw: object) -> int:
            return search_products(session, SearchQuery(**kw), ANONYMOUS, LATER.replace(year=2030)).total  # type: ignore[arg-type]

        assert total() == 4
        assert total(filter="H") == 1
        assert total(target="A") == 3
        assert total(level="1") == 1 and total(kind="cal") == 3
        assert total(t_min=61000.5, t_max=61001.5) == 1
        assert total(instrument="SSCAM", program="01234") == 4
        assert total(target="A' OR '1'='1") == 0
        page = search_products(session, SearchQuery(page=2, page_size=3), ANONYMOUS,
                               LATER.replace(year=2030))
        assert (page.total, len(page.results)) == (4, 1)


def _bulk_exposures(archive: Archive, ra: np.ndarray, dec: np.ndarray) -> None:
    hpx = healpix_index(ra, dec)
    rows = []
    for i, (a, d) in enumerate(zip(ra.tolist(), dec.tolist(), strict=True)):
        cx, cy, cz = unit_vector(a, d)
        rows.append(dict(obs_id=f"x{i}", program="P1", observation=1, visit=1, exposure=i,
                         detector="D", facility_name="F", instrument_name="I", filter="J",
                         readpatt="", subarray="", target_name="T", s_ra=a, s_dec=d, cx=cx,
                         cy=cy, cz=cz, hpx=int(hpx[i]), s_fov=0.0,
                         s_region=f"POSITION ICRS {a:.9f} {d:.9f}", t_min=1.0,
                         t_max=2.0, t_exptime=1.0, release_date=LATER))
    with archive.session() as session, session.begin():
        session.add(Program(program="P1", pi_name="", title="", exclusive_months=0,
                            created=LATER))
        session.add(Run(name="manual", kind="manual", created=LATER, description=""))
        session.flush()
        session.execute(insert(Exposure), rows)
        ids = session.scalars(select(Exposure.id).order_by(Exposure.id)).all()
        # the footprint search's prefilter: each point's cells, as registration writes them
        session.execute(insert(FootprintCell), [
            dict(exposure_id=e, cell=c) for e, row in zip(ids, rows, strict=True)
            for c in coverage_cells(footprint_from_region(row["s_region"], row["s_ra"],
                                                          row["s_dec"], 0.0))])
        session.execute(insert(Product), [
            dict(product_id=f"p{i}", uuid=f"{i:032x}", run="manual", exposure_id=e, kind="cal",
                 level="2b", calib_level=2,
                 dataproduct_type="image", version=1, is_latest=True, filename="f", path="f",
                 size=1, sha256="0" * 64, content_type="application/fits", created=LATER,
                 software_version="", recipe="", reference_files="[]")
            for i, e in enumerate(ids)])


def test_cone_search_matches_brute_force(archive: Archive) -> None:
    rng = np.random.default_rng(5)
    n = 3000
    centres = [(0.1, 0.0), (359.9, 10.0), (120.0, 89.9), (200.0, -45.0), (45.0, 30.0)]
    ra = np.concatenate([(c[0] + rng.normal(0, 1.5, n // 5)) % 360 for c in centres])
    dec = np.concatenate([np.clip(c[1] + rng.normal(0, 1.5, n // 5), -90, 90) for c in centres])
    _bulk_exposures(archive, ra, dec)
    xyz = np.array([unit_vector(a, d) for a, d in zip(ra, dec, strict=True)])
    assert HPX_ORDER == 18
    with archive.session() as session:
        for (cra, cdec), radius in zip(centres, [0.5, 2.0, 1.0, 0.01, 3.0], strict=True):
            dist = np.degrees(np.arccos(np.clip(xyz @ np.array(unit_vector(cra, cdec)), -1, 1)))
            expected = {f"p{i}" for i in np.flatnonzero(dist <= radius)}
            page = search_products(session, SearchQuery(cone=Cone(cra, cdec, radius),
                                                         page_size=10000), ANONYMOUS, LATER)
            assert {r["product_id"] for r in page.results} == expected
            assert page.total == len(expected)


def test_simulated_level1_products(archive: Archive, tmp_path: Path) -> None:
    result = simulate(tmp_path / "sim", SimOptions(seed=3, profile="smallsat", exposures=8,
                                                   subarray="SUB64", level1=True))
    plan = json.loads((result.out / "truth" / "plan.json").read_text())
    for p in plan["programs"]:
        register_program(archive, p["program"], pi_name=p["pi_name"], title=p["title"],
                         exclusive_months=p["exclusive_months"])
    files = sorted((result.out / "level1").glob("*_uncal.fits"))
    records = [register_product(archive, f) for f in files]
    assert len(records) == len(files) > 0
    public = {p["program"] for p in plan["programs"] if p["exclusive_months"] == 0}
    with archive.session() as session:
        now = max(e.release_date for e in session.scalars(select(Exposure))) - timedelta(days=1)
        seen = search_products(session, SearchQuery(), ANONYMOUS, now).results
        assert {r["program"] for r in seen} <= public and seen
        assert all(r["dataproduct_type"] == "cube" for r in seen)
