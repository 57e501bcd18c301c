"""The schema as it was before migrations: cursors, runs, failed records, inbox, locks, kv.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables of the first release (a database made before migrations has them)."""
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(50), index=True, nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "failed_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(50), index=True, nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("error_code", sa.String(200), nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(), nullable=False),
        sa.Column("next_retry_at", sa.DateTime(), index=True),
        sa.Column("parked", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("kind", "record_id"),
    )
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dedup_key", sa.String(200), unique=True, nullable=False),
        sa.Column("source", sa.String(30), nullable=False),
        sa.Column("kind", sa.String(50), index=True, nullable=False),
        sa.Column("object", sa.String(100), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("modstamp", sa.String(40)),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(10), index=True, nullable=False),
        sa.Column("lease_until", sa.DateTime()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime()),
        sa.Column("error_code", sa.String(200)),
    )
    op.create_index("ix_inbox_record_modstamp", "inbox", ["record_id", "modstamp"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "kv",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    """Drop everything (a downgrade below the baseline is an empty database)."""
    for table in ("kv", "locks", "inbox", "failed_records", "runs", "cursors"):
        op.drop_table(table)
