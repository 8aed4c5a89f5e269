"""Site tables under the one schema history: ledger, jobs, reference files, site info.

Before this revision these tables were created on first use (``create_all``)
and only the archive catalog had migrations.  Sites made then already have
them: each table is created only when absent, so such a site adopts them
unchanged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _absent(name: str) -> bool:
    return name not in sa.inspect(op.get_bind()).get_table_names()



def _engineering() -> None:
    op.create_table('engineering',
    sa.Column('mjd_utc', sa.Float(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('mjd_utc', 'channel')
    )


def _ephemeris() -> None:
    op.create_table('ephemeris',
    sa.Column('mjd_utc', sa.Float(), nullable=False),
    sa.Column('x_km', sa.Float(), nullable=False),
    sa.Column('y_km', sa.Float(), nullable=False),
    sa.Column('z_km', sa.Float(), nullable=False),
    sa.Column('vx_km_s', sa.Float(), nullable=False),
    sa.Column('vy_km_s', sa.Float(), nullable=False),
    sa.Column('vz_km_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('mjd_utc')
    )


def _events() -> None:
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('consumed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'key')
    )


def _ingest_claims() -> None:
    op.create_table('ingest_claims',
    sa.Column('key', sa.String(length=600), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def _jobs() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=600), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=True),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('token', sa.String(length=64), nullable=True),
    sa.Column('heartbeat', sa.DateTime(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('started', sa.DateTime(), nullable=True),
    sa.Column('finished', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_index(op.f('ix_jobs_kind'), 'jobs', ['kind'], unique=False)
    op.create_index(op.f('ix_jobs_parent_id'), 'jobs', ['parent_id'], unique=False)
    op.create_index(op.f('ix_jobs_state'), 'jobs', ['state'], unique=False)
    op.create_index('ix_jobs_state_kind', 'jobs', ['state', 'kind'], unique=False)


def _ledger_exposures() -> None:
    op.create_table('ledger_exposures',
    sa.Column('exposure_id', sa.BigInteger(), nullable=False),
    sa.Column('apid', sa.Integer(), nullable=False),
    sa.Column('expected', sa.Integer(), nullable=True),
    sa.Column('received', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('crc_failures', sa.Integer(), nullable=False),
    sa.Column('packet_size', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.Column('product', sa.String(length=512), nullable=True),
    sa.Column('product_version', sa.Integer(), nullable=False),
    sa.Column('product_received', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('exposure_id')
    )


def _ledger_lock() -> None:
    op.create_table('ledger_lock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def _raw_files() -> None:
    op.create_table('raw_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('raw_path', sa.String(length=512), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('deliveries', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('parsed_at', sa.DateTime(), nullable=True),
    sa.Column('packets', sa.Integer(), nullable=False),
    sa.Column('crc_failures', sa.Integer(), nullable=False),
    sa.Column('skipped_bytes', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )


def _reference_files() -> None:
    op.create_table('reference_files',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('reftype', sa.String(length=32), nullable=False),
    sa.Column('telescope', sa.String(length=64), nullable=False),
    sa.Column('instrument', sa.String(length=64), nullable=False),
    sa.Column('detector', sa.String(length=64), nullable=False),
    sa.Column('filter', sa.String(length=64), nullable=False),
    sa.Column('readpatt', sa.String(length=64), nullable=False),
    sa.Column('subarray', sa.String(length=64), nullable=False),
    sa.Column('useafter', sa.String(length=32), nullable=False),
    sa.Column('delivered', sa.DateTime(), nullable=False),
    sa.Column('original_name', sa.String(length=255), nullable=False),
    sa.Column('stored_name', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('pedigree', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=1024), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256'),
    sa.UniqueConstraint('stored_name')
    )
    op.create_index(op.f('ix_reference_files_reftype'), 'reference_files', ['reftype'], unique=False)


def _site_info() -> None:
    op.create_table('site_info',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def _apid_continuity() -> None:
    op.create_table('apid_continuity',
    sa.Column('raw_file_id', sa.Integer(), nullable=False),
    sa.Column('apid', sa.Integer(), nullable=False),
    sa.Column('packets', sa.Integer(), nullable=False),
    sa.Column('first_count', sa.Integer(), nullable=False),
    sa.Column('last_count', sa.Integer(), nullable=False),
    sa.Column('missing', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('out_of_order', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['raw_file_id'], ['raw_files.id'], ),
    sa.PrimaryKeyConstraint('raw_file_id', 'apid')
    )


def _job_attempts() -> None:
    op.create_table('job_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=160), nullable=False),
    sa.Column('started', sa.DateTime(), nullable=False),
    sa.Column('finished', sa.DateTime(), nullable=True),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('log', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_job_attempts_job_id'), 'job_attempts', ['job_id'], unique=False)


def _ledger_packet_ranges() -> None:
    op.create_table('ledger_packet_ranges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('exposure_id', sa.BigInteger(), nullable=False),
    sa.Column('first', sa.Integer(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.Column('raw_file_id', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('packet_size', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['exposure_id'], ['ledger_exposures.exposure_id'], ),
    sa.ForeignKeyConstraint(['raw_file_id'], ['raw_files.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_ledger_packet_ranges_exposure', 'ledger_packet_ranges', ['exposure_id', 'first'], unique=False)


def _observation_log() -> None:
    op.create_table('observation_log',
    sa.Column('exposure_id', sa.BigInteger(), nullable=False),
    sa.Column('apid', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('packets_expected', sa.Integer(), nullable=False),
    sa.Column('rows_per_packet', sa.Integer(), nullable=False),
    sa.Column('basename', sa.String(length=128), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('raw_file_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['raw_file_id'], ['raw_files.id'], ),
    sa.PrimaryKeyConstraint('exposure_id')
    )


def upgrade() -> None:
    for name, create in (
        ("engineering", _engineering),
        ("ephemeris", _ephemeris),
        ("events", _events),
        ("ingest_claims", _ingest_claims),
        ("jobs", _jobs),
        ("ledger_exposures", _ledger_exposures),
        ("ledger_lock", _ledger_lock),
        ("raw_files", _raw_files),
        ("reference_files", _reference_files),
        ("site_info", _site_info),
        ("apid_continuity", _apid_continuity),
        ("job_attempts", _job_attempts),
        ("ledger_packet_ranges", _ledger_packet_ranges),
        ("observation_log", _observation_log),
    ):
        if _absent(name):
            create()
    lock = sa.table("ledger_lock", sa.column("id", sa.Integer), sa.column("generation", sa.Integer))
    if op.get_bind().execute(sa.select(sa.func.count()).select_from(lock)).scalar() == 0:
        op.bulk_insert(lock, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    for name in (
        "observation_log",
        "ledger_packet_ranges",
        "job_attempts",
        "apid_continuity",
        "site_info",
        "reference_files",
        "raw_files",
        "ledger_lock",
        "ledger_exposures",
        "jobs",
        "ingest_claims",
        "events",
        "ephemeris",
        "engineering",
    ):
        op.drop_table(name)
