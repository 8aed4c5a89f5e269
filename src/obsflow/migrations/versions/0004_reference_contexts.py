"""Reference contexts: ``ref_contexts``, ``ref_context_files``, and context 1 for existing files.

A site that has reference files but no context gets context 1 holding every
one of them (:func:`obsflow.refdata.contexts.ensure_backfill` does the same
on first use, for a database restored from before this revision).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from obsflow.refdata.select import RULES_VERSION

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BACKFILL_DESCRIPTION = "every reference file delivered before reference contexts existed"


def _create_tables() -> None:
    op.create_table(
        "ref_contexts",
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("parent", sa.Integer, sa.ForeignKey("ref_contexts.number"), nullable=True),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("rules_version", sa.String(80), nullable=False),
        sa.Column("n_files", sa.Integer, nullable=False),
    )
    op.create_table(
        "ref_context_files",
        sa.Column("context", sa.Integer, sa.ForeignKey("ref_contexts.number"),
                  primary_key=True),
        sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_files.id"), primary_key=True),
    )
    op.create_index("ix_ref_context_files_file_id", "ref_context_files", ["file_id"])


def _backfill(bind: sa.Connection) -> None:
    """Context 1 of every registered reference file, if there are any."""
    files = sa.table("reference_files", sa.column("id", sa.Integer))
    contexts = sa.table("ref_contexts", *(sa.column(c) for c in (
        "number", "created", "parent", "description", "rules_version", "n_files")))
    links = sa.table("ref_context_files", sa.column("context"), sa.column("file_id"))
    ids = list(bind.scalars(sa.select(files.c.id).order_by(files.c.id)))
    if not ids:
        return
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    bind.execute(contexts.insert().values(number=1, created=now, parent=None,
                                          description=BACKFILL_DESCRIPTION,
                                          rules_version=RULES_VERSION, n_files=len(ids)))
    bind.execute(links.insert(), [{"context": 1, "file_id": i} for i in ids])


def upgrade() -> None:
    _create_tables()
    _backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_ref_context_files_file_id", table_name="ref_context_files")
    op.drop_table("ref_context_files")
    op.drop_table("ref_contexts")
