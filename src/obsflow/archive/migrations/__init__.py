"""Alembic migrations of the archive tables, run by :func:`upgrade_database`.

``obsflow.db.init_schema`` (so ``obsflow init`` and site start-up) calls
:func:`upgrade_database`; nothing else creates archive tables.  A new
migration goes in ``versions/`` (``alembic revision`` with
``script_location`` pointing here, or by hand, following ``0001``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["VERSION_TABLE", "alembic_config", "current_revision", "head_revision",
           "upgrade_database"]

VERSION_TABLE = "alembic_version_archive"
"""Table where Alembic records the archive schema's revision."""

_HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """Alembic configuration for the archive migrations (no ``alembic.ini`` needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


def head_revision() -> str:
    """The newest revision in ``versions/``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first upgrade)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Bring the archive tables of ``engine``'s database up to ``revision`` (idempotent)."""
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
