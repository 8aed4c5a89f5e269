"""Archive catalog: programs, users, tokens, exposures, products, previews, composites.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _people() -> None:
    op.create_table(
        "programs",
        sa.Column("program", sa.String(16), primary_key=True),
        sa.Column("pi_name", sa.String(128), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("exclusive_months", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "program_members",
        sa.Column("program", sa.String(16),
                  sa.ForeignKey("programs.program", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=True),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])


def _exposures() -> None:
    text_cols = [("obs_id", 64), ("detector", 32), ("facility_name", 64),
                 ("instrument_name", 64), ("filter", 32), ("readpatt", 32), ("subarray", 32),
                 ("target_name", 128)]
    float_cols = ["s_ra", "s_dec", "cx", "cy", "cz", "s_fov"]
    op.create_table(
        "exposures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("program", sa.String(16), sa.ForeignKey("programs.program"), nullable=False),
        sa.Column("observation", sa.Integer, nullable=False),
        sa.Column("visit", sa.Integer, nullable=False),
        sa.Column("exposure", sa.Integer, nullable=False),
        *[sa.Column(name, sa.String(n), nullable=False) for name, n in text_cols],
        *[sa.Column(name, sa.Float, nullable=False) for name in float_cols],
        sa.Column("hpx", sa.BigInteger, nullable=False),
        sa.Column("s_region", sa.Text, nullable=False),
        sa.Column("s_resolution", sa.Float, nullable=True),
        sa.Column("t_min", sa.Float, nullable=False),
        sa.Column("t_max", sa.Float, nullable=False),
        sa.Column("t_exptime", sa.Float, nullable=False),
        sa.Column("em_min", sa.Float, nullable=True),
        sa.Column("em_max", sa.Float, nullable=True),
        sa.Column("release_date", sa.DateTime, nullable=False),
        sa.UniqueConstraint("obs_id"),
    )
    for name, column in [("hpx", "hpx"), ("program", "program"), ("target", "target_name"),
                         ("t_min", "t_min"), ("release", "release_date"), ("filter", "filter")]:
        op.create_index(f"ix_exposures_{name}", "exposures", [column])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_sphere'")
    ).first():
        # pg_sphere: lets ADQL CONTAINS(POINT, CIRCLE) become an indexed spoint @ scircle
        op.execute("CREATE INDEX ix_exposures_spoint ON exposures "
                   "USING gist (spoint(radians(s_ra), radians(s_dec)))")


def _products() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.String(96), nullable=False, unique=True),
        sa.Column("exposure_id", sa.Integer,
                  sa.ForeignKey("exposures.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("level", sa.String(4), nullable=False),
        sa.Column("calib_level", sa.Integer, nullable=False),
        sa.Column("dataproduct_type", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("is_latest", sa.Boolean, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("recipe", sa.String(128), nullable=False),
        sa.Column("reference_files", sa.Text, nullable=False),
        sa.UniqueConstraint("exposure_id", "kind", "version", name="uq_products_version"),
    )
    op.create_index("ix_products_exposure", "products", ["exposure_id"])
    op.create_index("ix_products_latest_kind", "products", ["is_latest", "kind"])
    op.create_index("ix_products_sha256", "products", ["sha256"])


def _images() -> None:
    op.create_table(
        "previews",
        sa.Column("product_pk", sa.Integer, sa.ForeignKey("products.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
    )
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


def upgrade() -> None:
    _people()
    _exposures()
    _products()
    _images()


def downgrade() -> None:
    for table in ("composites", "previews", "products", "exposures", "api_tokens",
                  "program_members", "users", "programs"):
        op.drop_table(table)
