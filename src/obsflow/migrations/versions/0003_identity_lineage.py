"""Identity, lineage, campaigns: runs, product UUIDs, provenance, product_inputs, campaigns.

Products of a site made before this revision get a UUID, the run
``legacy`` and a provenance document built from what the catalog knew
(software version, recipe, reference file names, their types spelt out);
they have no recorded inputs.  Jobs get a priority (0: fresh data).  Reprocessing campaigns and
their items get their tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEGACY_RUN = "legacy"

REFTYPES = ("SUPERBIAS", "DARK", "GAIN", "READNOISE", "SATURATION", "FLAT", "MASK",
            "LINEARITY", "PHOTOM")
"""The reference types of 0.1.0, whose header keys (R_<type[:6]>) the catalog kept."""


def _legacy_references(reference_files: str) -> list[list[str]]:
    """[[reftype, name, ""]] from 0.1.0's ``["R_READNO=file.fits", ...]``."""
    full = {t[:6]: t for t in REFTYPES}
    refs = []
    for item in json.loads(reference_files or "[]"):
        key, _, name = str(item).partition("=")
        key = key.removeprefix("R_")
        refs.append([full.get(key, key), name, ""])
    return sorted(refs)


def _legacy_provenance(software: str, recipe: str, refs: list[list[str]]) -> str:
    doc = {"context": None, "input_files": [], "inputs": [], "recipe": recipe,
           "references": refs, "run": LEGACY_RUN, "software": software, "steps": []}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _backfill(bind: sa.engine.Connection) -> None:
    products = sa.table("products", sa.column("id", sa.Integer), sa.column("uuid", sa.String),
                        sa.column("run", sa.String), sa.column("provenance", sa.Text),
                        sa.column("software_version", sa.String),
                        sa.column("recipe", sa.String), sa.column("reference_files", sa.Text))
    rows = bind.execute(sa.select(products.c.id, products.c.software_version, products.c.recipe,
                                  products.c.reference_files)).all()
    if not rows:
        return
    runs = sa.table("runs", sa.column("name", sa.String), sa.column("kind", sa.String),
                    sa.column("created", sa.DateTime), sa.column("description", sa.Text))
    op.bulk_insert(runs, [{"name": LEGACY_RUN, "kind": "legacy",
                           "created": datetime.now(UTC).replace(tzinfo=None),
                           "description": "products registered before runs existed"}])
    for pk, software, recipe, reference_files in rows:
        refs = _legacy_references(reference_files)
        bind.execute(products.update().where(products.c.id == pk).values(
            uuid=uuid.uuid4().hex, run=LEGACY_RUN,
            provenance=_legacy_provenance(software or "", recipe or "", refs),
            reference_files=json.dumps([f"{t}={name}" for t, name, _ in refs])))


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("name", sa.String(48), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    )
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("uuid", sa.String(32), nullable=True))
        batch.add_column(sa.Column("run", sa.String(48), nullable=True))
        batch.add_column(sa.Column("ref_context", sa.Integer, nullable=True))
        batch.add_column(sa.Column("provenance", sa.Text, nullable=True))
    _backfill(op.get_bind())
    with op.batch_alter_table("products") as batch:
        batch.alter_column("uuid", existing_type=sa.String(32), nullable=False)
        batch.alter_column("run", existing_type=sa.String(48), nullable=False)
        batch.alter_column("provenance", existing_type=sa.Text, nullable=False)
        batch.create_unique_constraint("uq_products_uuid", ["uuid"])
        batch.create_foreign_key("fk_products_run", "runs", ["run"], ["name"])
        batch.create_index("ix_products_run", ["run"])
    op.create_table(
        "product_inputs",
        sa.Column("product_pk", sa.Integer,
                  sa.ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("input_pk", sa.Integer, sa.ForeignKey("products.id"), primary_key=True),
    )
    op.create_index("ix_product_inputs_input", "product_inputs", ["input_pk"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False,
                                   server_default="0"))
    _campaigns()


def _campaigns() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run", sa.String(48), sa.ForeignKey("runs.name"), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("ref_context", sa.Integer, nullable=True),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("criteria", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime, nullable=True),
    )
    op.create_table(
        "campaign_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer,
                  sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source_pk", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("kinds", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=True),
        sa.Column("outputs", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_campaign_items_campaign", "campaign_items", ["campaign_id", "state"])


def downgrade() -> None:
    op.drop_table("campaign_items")
    op.drop_table("campaigns")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("priority")
    op.drop_index("ix_product_inputs_input", "product_inputs")
    op.drop_table("product_inputs")
    with op.batch_alter_table("products") as batch:
        batch.drop_index("ix_products_run")
        batch.drop_constraint("fk_products_run", type_="foreignkey")
        batch.drop_constraint("uq_products_uuid", type_="unique")
        for column in ("provenance", "ref_context", "run", "uuid"):
            batch.drop_column(column)
    op.drop_table("runs")
