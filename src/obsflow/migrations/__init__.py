"""The one schema history of a site database: every table, one Alembic environment.

:func:`init_schema` (run by ``obsflow init``, ``obsflow upgrade`` and whenever
a site is opened) brings the database to the newest revision in
``versions/`` and fills ``site_info``; nothing else creates tables.  Every
table of obsflow (ledger, jobs, reference files and contexts, archive
catalog, runs and lineage) is declared on :class:`obsflow.db.Base` by the
module that owns it; :func:`load_models` imports those modules so the
metadata is complete, and a test checks the migrations and the models agree.

This package sits above every other (it imports each owner's table module);
the foundation (:mod:`obsflow.db`) imports none of them.

Sites made before the single history kept the archive's revision in
``alembic_version_archive`` and created the other tables on first use; the
upgrade moves that revision into :data:`VERSION_TABLE` and revision 0002
adopts the tables that exist (creating only those that do not).

A new migration goes in ``versions/`` as ``NNNN_<what>.py`` following the
latest one (``down_revision`` = its revision).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import obsflow
from obsflow.dbread import EngineReader, SiteReader
from obsflow.exceptions import SiteError

if TYPE_CHECKING:
    # SQLAlchemy and Alembic are imported by the functions that change a database: a site
    # whose schema is current opens without them (:func:`schema_is_current` reads plain SQL)
    from alembic.config import Config
    from sqlalchemy import Connection, Engine

__all__ = ["LEGACY_VERSION_TABLE", "MODEL_MODULES", "VERSION_TABLE", "alembic_config",
           "current_revision", "head_revision", "init_schema", "load_models",
           "newest_file_revision", "schema_is_complete", "schema_is_current", "upgrade_database"]

VERSION_TABLE = "obsflow_schema_version"
"""Table where Alembic records the revision of the whole site schema."""

LEGACY_VERSION_TABLE = "alembic_version_archive"
"""Where sites made before the single history recorded the archive tables' revision."""

MODEL_MODULES = (
    "obsflow.db",
    "obsflow.events",
    "obsflow.ingest.tables",
    "obsflow.ingest.locking",
    "obsflow.orchestrate.tables",
    "obsflow.refdata.registry",
    "obsflow.archive.schema",
    "obsflow.reprocess.tables",
)
"""Every module that declares tables on :class:`obsflow.db.Base`."""

_HERE = Path(__file__).resolve().parent


def load_models() -> None:
    """Import every table-declaring module, so ``Base.metadata`` holds the whole schema."""
    for name in MODEL_MODULES:
        importlib.import_module(name)


def alembic_config() -> Config:
    """Alembic configuration of the site schema (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


def head_revision() -> str:
    """The newest revision in ``versions/``."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def _adopt_legacy_version(engine: Engine) -> None:
    """Move the revision of a pre-0002 site from the archive's version table into ours."""
    from sqlalchemy import inspect, text

    tables = set(inspect(engine).get_table_names())
    if LEGACY_VERSION_TABLE not in tables or VERSION_TABLE in tables:
        return
    with engine.begin() as connection:
        revision = connection.execute(
            text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalar()
        connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) "
                                f"NOT NULL, CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY "
                                "(version_num))"))
        if revision is not None:
            connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:r)"),
                               {"r": revision})
        connection.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))


def _check_known(engine: Engine) -> None:
    found = current_revision(engine)
    if found is None:
        return
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    if found not in {rev.revision for rev in script.walk_revisions()}:
        raise SiteError(
            f"database {engine.url.render_as_string(hide_password=True)} is at schema "
            f"revision {found}, which this obsflow ({obsflow.__version__}, newest revision "
            f"{head_revision()}) does not know: it was made by a newer obsflow")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise SiteError(f"the schema upgrade would leave {len(broken)} rows referring to rows "
                        f"that do not exist (first: {tuple(broken[0])}); nothing was changed")


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Bring every table of ``engine``'s database up to ``revision`` (idempotent)."""
    from alembic import command

    load_models()
    _adopt_legacy_version(engine)
    _check_known(engine)
    if revision == "head" and current_revision(engine) == head_revision():
        return
    cfg = alembic_config()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # a batch migration copies a table and drops the old one: with foreign keys
            # on, the drop would cascade to every row that refers to it (PRAGMA takes
            # effect only outside a transaction, so before the migration's one)
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def newest_file_revision() -> str:
    """The newest revision, read from the ``NNNN_<what>.py`` names in ``versions/`` (no Alembic).

    A test checks it is Alembic's head (:func:`head_revision`).
    """
    return max(path.name.split("_", 1)[0] for path in (_HERE / "versions").glob("[0-9]*_*.py"))


def schema_is_current(db: SiteReader) -> bool:
    """Whether the database already records the newest revision: opening a site then needs
    neither Alembic nor the table modules (the light commands start faster).

    ``db`` is a reader (:mod:`obsflow.dbread`): on a SQLite site no SQLAlchemy is imported.
    """
    if not db.has_table(VERSION_TABLE):  # a new or a pre-0002 database
        return False
    return bool(db.scalar(f"SELECT version_num FROM {VERSION_TABLE}") == newest_file_revision())


SITE_INFO_KEYS = ("created", "obsflow_version")
"""``site_info`` rows :func:`init_schema` writes when absent (and ``profile``)."""


def schema_is_complete(db: SiteReader, profile: str | None = None) -> bool:
    """Whether :func:`init_schema` would change nothing: the schema is current and
    ``site_info`` holds :data:`SITE_INFO_KEYS` and ``profile`` (when given).

    Opening a site checks this first, with a :mod:`sqlite3` reader on a SQLite
    site, and needs SQLAlchemy only when something is to be written.
    """
    if not schema_is_current(db):
        return False
    info: dict[str, str] = {key: value for key, value in db.rows("SELECT key, value FROM site_info")}
    return (all(key in info for key in SITE_INFO_KEYS)
            and (profile is None or info.get("profile") == profile))


def init_schema(engine: Engine, *, profile: str | None = None) -> None:
    """Create or upgrade the whole site schema and fill ``site_info``.

    Idempotent: ``created`` and ``obsflow_version`` are written only when
    absent; the ``profile`` row is written when ``profile`` is given and
    differs.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine from :func:`obsflow.db.make_engine`.
    profile : str, optional
        Name (or path) of the site's observatory profile.

    Raises
    ------
    SiteError
        The database is at a revision this obsflow does not know (made by a
        newer release).
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from obsflow.db import SiteInfo

    reader = EngineReader(engine)
    try:
        current = schema_is_current(reader)
    finally:
        reader.close()
    if not current:
        upgrade_database(engine)
    with Session(engine) as session, session.begin():
        existing = {row.key: row for row in session.scalars(select(SiteInfo))}
        if "created" not in existing:  # the keys of SITE_INFO_KEYS
            session.add(SiteInfo(key="created",
                                 value=datetime.now(UTC).isoformat(timespec="seconds")))
        if "obsflow_version" not in existing:  # read from the installed metadata only then
            session.add(SiteInfo(key="obsflow_version", value=obsflow.__version__))
        if profile is not None:
            row = existing.get("profile")
            if row is None:
                session.add(SiteInfo(key="profile", value=profile))
            elif row.value != profile:
                row.value = profile
