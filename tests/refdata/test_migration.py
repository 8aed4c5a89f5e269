"""Migration 0004 on the site's schema history: context 1 for a site's existing files (both backends)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from obsflow.db import make_engine
from obsflow.migrations import alembic_config, current_revision, init_schema, upgrade_database
from obsflow.refdata.contexts import BACKFILL_DESCRIPTION, list_contexts, load_context
from obsflow.refdata.select import RULES_VERSION
from obsflow.refdata.tables import RefContextFile, RefContextRow, ReferenceFile

TABLES = ("ref_contexts", "ref_context_files")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A database at revision 0003: reference files, no contexts (a site before them)."""
    eng = make_engine(db_url)
    upgrade_database(eng, "0003")
    try:
        yield eng
    finally:
        eng.dispose()


def _old_files(engine: Engine, n: int) -> None:
    with Session(engine) as session, session.begin():
        for k in range(n):
            session.add(ReferenceFile(
                reftype="DARK", telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1",
                filter="ANY", readpatt="ANY", subarray="FULL",
                useafter=f"2026-0{k + 1}-01T00:00:00", delivered=datetime(2026, 1, 1),
                original_name=f"d{k}.fits", stored_name=f"d{k}_x.fits", sha256=f"{k:064d}",
                pedigree="", description=""))


def test_upgrade_backfills_context_1(engine: Engine) -> None:
    assert not any(inspect(engine).has_table(t) for t in TABLES)
    _old_files(engine, 3)
    upgrade_database(engine, "0004")
    assert current_revision(engine) == "0004"
    with Session(engine) as session:  # read the rows first: the API would backfill by itself
        rows = session.scalars(select(RefContextRow)).all()
        assert [(r.number, r.parent, r.n_files) for r in rows] == [(1, None, 3)]
        assert len(session.scalars(select(RefContextFile)).all()) == 3
        assert [(c.number, c.n_files, c.added) for c in list_contexts(session)] == [(1, 3, 3)]
        first = load_context(session, 1)
        assert first.description == BACKFILL_DESCRIPTION and first.rules_version == RULES_VERSION
        assert [r.name for r in first.records] == ["d0_x.fits", "d1_x.fits", "d2_x.fits"]
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0003")
    assert not any(inspect(engine).has_table(t) for t in TABLES)
    assert inspect(engine).has_table("reference_files")


def test_upgrade_of_an_empty_registry(engine: Engine) -> None:
    upgrade_database(engine, "0004")
    assert all(inspect(engine).has_table(t) for t in TABLES)
    with Session(engine) as session:
        assert session.scalars(select(RefContextRow)).all() == []


def test_a_previous_release_site_gets_context_1(tmp_path: Path) -> None:
    """The 0.1.0 site of tests/data (files delivered, no contexts) upgrades to context 1."""
    db = tmp_path / "obsflow.db"
    shutil.copyfile(Path(__file__).parents[1] / "data" / "site_0_1_0.db", db)
    engine = make_engine(f"sqlite:///{db}")
    try:
        init_schema(engine)
        with Session(engine) as session:
            ids = list(session.scalars(select(ReferenceFile.id).order_by(ReferenceFile.id)))
            rows = session.scalars(select(RefContextRow)).all()
            assert len(ids) > 5 and [(r.number, r.n_files) for r in rows] == [(1, len(ids))]
            assert load_context(session, None).file_ids == tuple(ids)
    finally:
        engine.dispose()
