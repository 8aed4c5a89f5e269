"""Migration 0004: the context tables and context 1 for a site's existing files (both backends)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select
from sqlalchemy.orm import Session

from obsflow.db import make_engine
from obsflow.refdata.contexts import BACKFILL_DESCRIPTION, list_contexts, load_context
from obsflow.refdata.select import RULES_VERSION
from obsflow.refdata.tables import RefContextFile, RefContextRow, ReferenceFile

MIGRATION = (Path(__file__).parents[2] / "src" / "obsflow" / "migrations" / "versions"
             / "0004_reference_contexts.py")
TABLES = ("ref_contexts", "ref_context_files")


@pytest.fixture(scope="module")
def migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0004", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A database with only ``reference_files``, as a site before contexts."""
    eng = make_engine(db_url)
    ReferenceFile.__table__.create(eng)  # type: ignore[attr-defined]
    try:
        yield eng
    finally:
        eng.dispose()


def _run(engine: Engine, step: object) -> None:
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        step()  # type: ignore[operator]


def _old_files(engine: Engine, n: int) -> None:
    with Session(engine) as session, session.begin():
        for k in range(n):
            session.add(ReferenceFile(
                reftype="DARK", telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1",
                filter="ANY", readpatt="ANY", subarray="FULL", useafter=f"2026-0{k + 1}-01T00:00:00",
                delivered=datetime(2026, 1, 1), original_name=f"d{k}.fits",
                stored_name=f"d{k}_x.fits", sha256=f"{k:064d}", pedigree="", description=""))


def test_upgrade_backfills_context_1(engine: Engine, migration: ModuleType) -> None:
    assert (migration.revision, migration.down_revision) == ("0004", "0003")
    _old_files(engine, 3)
    _run(engine, migration.upgrade)
    _run(engine, migration.upgrade)  # a second run changes nothing
    with Session(engine) as session:  # read the rows first: the API would backfill by itself
        rows = session.scalars(select(RefContextRow)).all()
        assert [(r.number, r.parent, r.n_files) for r in rows] == [(1, None, 3)]
        assert len(session.scalars(select(RefContextFile)).all()) == 3
        contexts = list_contexts(session)
        assert [(c.number, c.n_files, c.added) for c in contexts] == [(1, 3, 3)]
        first = load_context(session, 1)
        assert first.description == BACKFILL_DESCRIPTION == migration.BACKFILL_DESCRIPTION
        assert first.rules_version == RULES_VERSION
        assert [r.name for r in first.records] == ["d0_x.fits", "d1_x.fits", "d2_x.fits"]
    with engine.connect() as conn:
        ours = MetaData()
        for table in (RefContextRow.__table__, RefContextFile.__table__):
            table.to_metadata(ours)  # type: ignore[attr-defined]
        ReferenceFile.__table__.to_metadata(ours)  # type: ignore[attr-defined]
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, ours) == []  # the migration makes what the ORM declares
    _run(engine, migration.downgrade)
    assert not any(inspect(engine).has_table(t) for t in TABLES)


def test_upgrade_of_an_empty_registry(engine: Engine, migration: ModuleType) -> None:
    _run(engine, migration.upgrade)
    assert all(inspect(engine).has_table(t) for t in TABLES)
    with Session(engine) as session:
        assert list_contexts(session) == []
