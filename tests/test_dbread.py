"""obsflow.dbread: the same rows through sqlite3 and through SQLAlchemy, one snapshot each."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from obsflow.db import make_engine
from obsflow.dbread import EngineReader, SqliteReader, as_datetime, open_reader, reading
from obsflow.exceptions import SiteError
from obsflow.migrations import init_schema, schema_is_complete, schema_is_current

ROW = ("INSERT INTO jobs (id, kind, key, state, inputs, attempts, max_attempts, created, "
       "priority) VALUES (:id, 'noop', :key, 'pending', :inputs, 0, 3, :created, 0)")


@pytest.fixture
def site_db(db_url: str) -> str:
    engine = make_engine(db_url)
    init_schema(engine, profile="smallsat")
    with engine.begin() as conn:
        for i in (1, 2):
            conn.execute(text(ROW), {"id": i, "key": f"k{i}", "inputs": f'{{"n": {i}}}',
                                     "created": datetime(2026, 1, i, 12, 30)})
    engine.dispose()
    return db_url


def test_readers_agree_and_read_json_and_times(site_db: str) -> None:
    with open_reader(site_db) as db:
        rows = db.rows("SELECT id, inputs, created FROM jobs WHERE id >= :first ORDER BY id",
                       {"first": 1})
        assert [(int(i), db.json(j), as_datetime(c)) for i, j, c in rows] == [
            (1, {"n": 1}, datetime(2026, 1, 1, 12, 30)), (2, {"n": 2}, datetime(2026, 1, 2, 12, 30))]
        assert db.has_table("jobs") and not db.has_table("no_such_table")
        assert db.scalar("SELECT id FROM jobs WHERE id = 99") is None
        expected = db.rows("SELECT id, kind, key FROM jobs ORDER BY id")
    engine = make_engine(site_db)
    with reading(engine) as db:  # SQLAlchemy Core on either backend: the same rows
        assert isinstance(db, EngineReader)
        assert db.rows("SELECT id, kind, key FROM jobs ORDER BY id") == expected
    engine.dispose()


def test_a_reader_sees_one_snapshot(site_db: str) -> None:
    engine = make_engine(site_db)
    with open_reader(site_db) as db:
        assert db.scalar("SELECT COUNT(*) FROM jobs") == 2
        with engine.begin() as conn:  # another writer commits meanwhile
            conn.execute(text(ROW), {"id": 3, "key": "k3", "inputs": "{}",
                                     "created": datetime(2026, 1, 3)})
        if db.backend == "sqlite":  # PostgreSQL's default READ COMMITTED sees the commit
            assert db.scalar("SELECT COUNT(*) FROM jobs") == 2
    with open_reader(site_db) as db:
        assert db.scalar("SELECT COUNT(*) FROM jobs") == 3
    engine.dispose()


def test_sqlite_reader_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(SiteError, match="no database file"):
        SqliteReader(missing)
    with pytest.raises(SiteError, match="no database file"):
        open_reader(f"sqlite:///{missing}")
    assert not missing.exists()


def test_schema_checks_read_without_the_orm(site_db: str) -> None:
    with open_reader(site_db) as db:
        assert schema_is_current(db)
        assert schema_is_complete(db, "smallsat") and not schema_is_complete(db, "webb_like")


def test_an_empty_database_is_not_current(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()
    with SqliteReader(path) as db:
        assert not schema_is_current(db) and not schema_is_complete(db)
