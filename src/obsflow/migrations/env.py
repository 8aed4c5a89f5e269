"""Alembic environment: runs on the connection handed over by ``upgrade_database``."""

from __future__ import annotations

from alembic import context

from obsflow.db import Base
from obsflow.exceptions import SiteError
from obsflow.migrations import VERSION_TABLE, load_models

load_models()
_config = context.config
_connection = _config.attributes.get("connection")
if _connection is None:  # pragma: no cover - only reachable from the alembic CLI
    raise SiteError("run the site migrations through obsflow.migrations.upgrade_database")

context.configure(
    connection=_connection,
    target_metadata=Base.metadata,
    version_table=_config.get_main_option("version_table") or VERSION_TABLE,
    render_as_batch=_connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
