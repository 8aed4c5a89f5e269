"""Colour images are archive products now: the ``composites`` table goes.

A target's colour image is a level-3 product (kind ``clr``) made from its
mosaics in three filters by the ``colour`` job
(:mod:`obsflow.stage3.colour_job`), with lineage and versions like every
product; the composites of single exposures this table held are dropped
(their images under ``composites/`` in the store are no longer referenced;
``obsflow run`` makes the colour images of targets whose mosaics exist when
their mosaics are next made).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("composites")


def downgrade() -> None:
    op.create_table(
        "composites",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("program", sa.String(16), sa.ForeignKey("programs.program"), nullable=False),
        sa.Column("target_name", sa.String(128), nullable=False),
        sa.Column("filters", sa.String(128), nullable=False),
        sa.Column("product_ids", sa.Text, nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("release_date", sa.DateTime, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("program", "target_name", name="uq_composites_target"),
    )
