"""Footprint search and ObsCore columns: ``footprint_cells``; products' ``s_xel1``,
``s_xel2``, ``t_xel``, ``t_resolution``; exposures' ``em_res_power``.

The exposures of a site made before this revision get their footprint cells
from their ``s_region`` (:func:`obsflow.archive.footprints.coverage_cells`);
the new columns of their products stay NULL (they are read from the files
when a product is registered).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _backfill(bind: sa.Connection) -> None:
    from obsflow.archive.footprints import coverage_cells
    from obsflow.archive.sky import footprint_from_region

    exposures = sa.table("exposures", *(sa.column(c) for c in (
        "id", "s_ra", "s_dec", "s_fov", "s_region")))
    cells = sa.table("footprint_cells", sa.column("exposure_id"), sa.column("cell"))
    rows = bind.execute(sa.select(exposures.c.id, exposures.c.s_ra, exposures.c.s_dec,
                                  exposures.c.s_fov, exposures.c.s_region)).all()
    batch: list[dict[str, int]] = []
    for eid, ra, dec, fov, region in rows:
        foot = footprint_from_region(region or "", ra, dec, fov)
        batch.extend({"exposure_id": eid, "cell": c} for c in coverage_cells(foot))
        if len(batch) > 10_000:
            bind.execute(cells.insert(), batch)
            batch = []
    if batch:
        bind.execute(cells.insert(), batch)


def upgrade() -> None:
    op.create_table(
        "footprint_cells",
        sa.Column("exposure_id", sa.Integer, sa.ForeignKey("exposures.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("cell", sa.BigInteger, primary_key=True),
    )
    op.create_index("ix_footprint_cells_cell", "footprint_cells", ["cell", "exposure_id"])
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("s_xel1", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("s_xel2", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("t_xel", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("t_resolution", sa.Float, nullable=True))
    with op.batch_alter_table("exposures") as batch:
        batch.add_column(sa.Column("em_res_power", sa.Float, nullable=True))
    _backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("exposures") as batch:
        batch.drop_column("em_res_power")
    with op.batch_alter_table("products") as batch:
        for name in ("t_resolution", "t_xel", "s_xel2", "s_xel1"):
            batch.drop_column(name)
    op.drop_index("ix_footprint_cells_cell", table_name="footprint_cells")
    op.drop_table("footprint_cells")
