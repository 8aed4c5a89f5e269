"""Tests of obsflow.site and obsflow.db: creating, re-creating and opening sites."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import text

from obsflow import __version__
from obsflow.config import CONFIG_FILENAME, ServerSection, load_config, write_config
from obsflow.db import Base, make_engine, read_site_info, sqlite_path
from obsflow.exceptions import ConfigError, SiteError, UnknownOptionError
from obsflow.migrations import VERSION_TABLE, head_revision, init_schema
from obsflow.site import init_site, open_site

FOLDERS = ["incoming", "logs", "products", "quarantine", "raw", "refs"]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep OBSFLOW_* variables of the developer's shell out of the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("OBSFLOW_"):
            monkeypatch.delenv(name)
    yield


def _site_info(db: Path) -> dict[str, str]:
    with closing(sqlite3.connect(db)) as con:
        return dict(con.execute("SELECT key, value FROM site_info").fetchall())


def _snapshot(root: Path) -> dict[str, object]:
    """Everything observable about a site except the database file's bytes."""
    config = root / CONFIG_FILENAME
    return {
        "tree": sorted(str(p.relative_to(root)) for p in root.rglob("*")),
        "config": config.read_bytes(),
        "config_mtime": config.stat().st_mtime_ns,
        "site_info": _site_info(root / "obsflow.db"),
    }


# -- init -------------------------------------------------------------------------


def test_init_creates_folders_config_and_database(tmp_path: Path) -> None:
    root = tmp_path / "site"
    cfg = init_site(root, env={})
    assert cfg.root == root.resolve()
    for name in FOLDERS:
        assert (root / name).is_dir()
    assert (root / CONFIG_FILENAME).is_file()
    assert load_config(root, env={}) == cfg
    db = root / "obsflow.db"
    assert db.is_file()
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    info = _site_info(db)
    assert set(info) == {"created", "obsflow_version", "profile"}
    with closing(sqlite3.connect(db)) as con:
        assert con.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()[0] == \
            head_revision()
    assert info["obsflow_version"] == __version__
    assert info["profile"] == "webb_like"


def test_init_twice_changes_nothing(tmp_path: Path) -> None:
    first = init_site(tmp_path, env={})
    before = _snapshot(tmp_path)
    second = init_site(tmp_path, env={})
    assert second == first
    assert _snapshot(tmp_path) == before


def test_init_completes_an_incomplete_site(tmp_path: Path) -> None:
    cfg = init_site(tmp_path, env={})
    shutil.rmtree(cfg.raw_dir)
    init_site(tmp_path, env={})
    assert cfg.raw_dir.is_dir()


def test_init_keeps_existing_config(tmp_path: Path) -> None:
    cfg = init_site(tmp_path, env={})
    write_config(cfg.model_copy(update={"server": ServerSection(port=9100)}), cfg.config_path)
    assert init_site(tmp_path, env={}).server.port == 9100


def test_init_force_rewrites_config(tmp_path: Path) -> None:
    cfg = init_site(tmp_path, env={})
    write_config(cfg.model_copy(update={"server": ServerSection(port=9100)}), cfg.config_path)
    again = init_site(tmp_path, profile="smallsat", force=True, env={})
    assert again.server.port == 8000
    assert again.profile.name == "smallsat"
    assert _site_info(tmp_path / "obsflow.db")["profile"] == "smallsat"


def test_init_force_repairs_a_broken_config(tmp_path: Path) -> None:
    init_site(tmp_path, env={})
    (tmp_path / CONFIG_FILENAME).write_text("[server]\nport = 'x'\n")
    with pytest.raises(ConfigError):
        init_site(tmp_path, env={})
    assert init_site(tmp_path, force=True, env={}).server.port == 8000


def test_init_refuses_other_profile_without_force(tmp_path: Path) -> None:
    init_site(tmp_path, env={})
    init_site(tmp_path, profile="webb_like", env={})  # the same profile is fine
    with pytest.raises(SiteError, match="--force"):
        init_site(tmp_path, profile="smallsat", env={})


def test_init_unknown_profile_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "site"
    with pytest.raises(UnknownOptionError, match="smallsat, webb_like"):
        init_site(root, profile="hubble", env={})
    assert not root.exists()


def test_init_profile_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    source = resources.files("obsflow.profiles") / "smallsat.toml"
    (tmp_path / "mine.toml").write_text(source.read_text())
    monkeypatch.chdir(tmp_path)
    cfg = init_site(tmp_path / "site", profile="mine.toml")
    assert cfg.profile.name == str(tmp_path.resolve() / "mine.toml")
    assert cfg.load_profile().mission.name == "smallsat"


def test_init_on_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SiteError, match="is a file"):
        init_site(tmp_path / "file", env={})


def test_init_applies_env_overrides(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "cat.db"
    cfg = init_site(tmp_path / "site", env={"OBSFLOW_DATABASE__URL": f"sqlite:///{db}"})
    assert db.is_file()
    assert not (tmp_path / "site" / "obsflow.db").exists()
    assert "cat.db" not in cfg.config_path.read_text()


# -- open ---------------------------------------------------------------------------


def test_open_site(tmp_path: Path) -> None:
    cfg = init_site(tmp_path, env={})
    assert open_site(tmp_path, env={}) == cfg


def test_open_site_on_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SiteError) as info:
        open_site(tmp_path, env={})
    assert str(info.value) == (
        f"no obsflow site at {tmp_path.resolve()}; run `obsflow init {tmp_path.resolve()}`"
    )


def test_open_site_on_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="no obsflow site at"):
        open_site(tmp_path / "nope", env={})


def test_open_site_incomplete(tmp_path: Path) -> None:
    cfg = init_site(tmp_path, env={})
    cfg.logs_dir.rmdir()
    with pytest.raises(SiteError, match=r"incomplete \(missing: .*logs\).*obsflow init"):
        open_site(tmp_path, env={})


# -- db -----------------------------------------------------------------------------


def test_make_engine_sqlite_settings(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "x.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as con:
            assert con.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert con.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert con.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        engine.dispose()
    assert db.is_file()


def test_make_engine_refuses_unknown_backend() -> None:
    with pytest.raises(UnknownOptionError, match="postgresql, sqlite"):
        make_engine("mysql://u@h/db")


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u@h/db") is None


def test_init_schema_idempotent_and_checks_version(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        init_schema(engine)
        first = read_site_info(engine)
        assert "profile" not in first
        init_schema(engine, profile="smallsat")
        assert read_site_info(engine) == {**first, "profile": "smallsat"}
        with engine.begin() as con:
            con.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        with pytest.raises(SiteError, match="revision 9999, which this obsflow"):
            init_schema(engine)
    finally:
        engine.dispose()
    assert "site_info" in Base.metadata.tables
