"""The one schema history: a site of the previous release upgrades in place and keeps its data.

``tests/data/site_0_1_0.db`` is the database of a real site made by obsflow
0.1.0 (commit 198ba57: ``obsflow init --profile smallsat`` then ``obsflow
demo --no-serve --exposures 3``): archive tables at Alembic revision 0001 in
``alembic_version_archive``, every other table made by ``create_all``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

from sqlalchemy import inspect, select, text

from obsflow.archive.schema import Product, ProductInput, Run
from obsflow.db import make_engine
from obsflow.migrations import (
    LEGACY_VERSION_TABLE,
    VERSION_TABLE,
    current_revision,
    head_revision,
    init_schema,
    upgrade_database,
)
from obsflow.models import Provenance

OLD_SITE = Path(__file__).parent / "data" / "site_0_1_0.db"

COUNTED = ("products", "exposures", "programs", "jobs", "job_attempts", "ledger_exposures",
           "ledger_packet_ranges", "raw_files", "reference_files", "events", "observation_log",
           "previews", "engineering")


def _counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}


def test_previous_release_site_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "obsflow.db"
    shutil.copyfile(OLD_SITE, db)
    before = _counts(db)
    with closing(sqlite3.connect(db)) as con:
        old_products = con.execute("SELECT id, product_id, sha256, path, software_version, recipe "
                                   "FROM products ORDER BY id").fetchall()
    assert before["products"] == 12 and before["jobs"] == 20
    engine = make_engine(f"sqlite:///{db}")
    try:
        init_schema(engine)
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert LEGACY_VERSION_TABLE not in tables and VERSION_TABLE in tables
        assert {"runs", "product_inputs", "campaigns", "campaign_items"} <= tables
        with engine.connect() as con:
            rows = con.execute(select(Product).order_by(Product.id)).all()
            assert con.execute(select(Run.name, Run.kind)).all() == [("legacy", "legacy")]
            assert con.execute(select(ProductInput)).all() == []
            assert set(con.execute(text("SELECT priority FROM jobs")).scalars()) == {0}
        init_schema(engine)  # a second upgrade has nothing to do
    finally:
        engine.dispose()
    assert _counts(db) == before  # every row kept
    assert [(r.id, r.product_id, r.sha256, r.path, r.software_version, r.recipe)
            for r in rows] == old_products
    assert len({r.uuid for r in rows}) == 12 and all(len(r.uuid) == 32 for r in rows)
    rate = next(r for r in rows if r.kind == "rate")
    prov = Provenance.from_json(rate.provenance)
    assert prov.run == "legacy" and prov.software == "0.1.0" and prov.recipe == "image"
    types = {ref.reftype for ref in prov.references}
    assert {"READNOISE", "SATURATION", "SUPERBIAS", "LINEARITY", "DARK"} <= types
    assert json.loads(rate.reference_files)[0].split("=")[0] in types


def test_revision_0003_backfills_on_both_backends(db_url: str) -> None:
    """A catalog at revision 0002 with a product row gets a UUID, a run and provenance."""
    engine = make_engine(db_url)
    try:
        upgrade_database(engine, "0002")
        now = datetime(2026, 1, 1)
        with engine.begin() as con:
            con.execute(text("INSERT INTO programs (program, pi_name, title, exclusive_months, "
                             "created) VALUES ('01234', 'P', 'T', 0, :t)"), {"t": now})
            con.execute(text(
                "INSERT INTO exposures (obs_id, program, observation, visit, exposure, detector,"
                " facility_name, instrument_name, filter, readpatt, subarray, target_name, s_ra,"
                " s_dec, cx, cy, cz, hpx, s_fov, s_region, t_min, t_max, t_exptime,"
                " release_date) VALUES ('x', '01234', 1, 1, 1, 'D', 'T', 'I', 'F', 'R', 'S',"
                " 'N', 0, 0, 1, 0, 0, 0, 0.1, 'POLYGON', 1, 2, 3, :t)"), {"t": now})
            con.execute(text(
                "INSERT INTO products (product_id, exposure_id, kind, level, calib_level,"
                " dataproduct_type, version, is_latest, filename, path, size, sha256,"
                " content_type, created, software_version, recipe, reference_files) VALUES"
                " ('x_cal_v1', 1, 'cal', '2b', 2, 'image', 1, :y, 'x_cal.fits', 'a/x_cal.fits',"
                " 10, 'ab', 'application/fits', :t, '0.0.9', 'image', :refs)"),
                {"t": now, "y": True, "refs": json.dumps(["R_SUPERB=b.fits", "R_FLAT=f.fits"])})
        upgrade_database(engine)
        with engine.connect() as con:
            row = con.execute(select(Product)).one()
        prov = Provenance.from_json(row.provenance)
        assert row.run == "legacy" and len(row.uuid) == 32
        assert {(r.reftype, r.name) for r in prov.references} == {("SUPERBIAS", "b.fits"),
                                                                    ("FLAT", "f.fits")}
        assert sorted(json.loads(row.reference_files)) == ["FLAT=f.fits", "SUPERBIAS=b.fits"]
    finally:
        engine.dispose()
