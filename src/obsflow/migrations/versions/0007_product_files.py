"""A product's other files: ``product_files`` (its pure ASDF form).

A site with ``[products] formats = ["fits", "asdf"]`` writes the ASDF form
of its ``_cal`` and ``_i2d`` products beside the FITS; each is a second file
of the same product (docs/archive.md), one row here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_files",
        sa.Column("product_pk", sa.Integer,
                  sa.ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("format", sa.String(8), primary_key=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("product_files")
