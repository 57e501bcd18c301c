"""The ownership ledger: what mentorsync itself made in Moodle, keyed by source record.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the ``ownership`` table."""
    op.create_table(
        "ownership",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("thing", sa.String(30), nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint(
            "kind", "owner", "thing", "scope", "user_id", "role_id", name="uq_ownership"
        ),
    )
    op.create_index("ix_ownership_user", "ownership", ["kind", "thing", "user_id"])
    op.create_index("ix_ownership_owner", "ownership", ["kind", "owner"])


def downgrade() -> None:
    """Drop the ``ownership`` table."""
    op.drop_table("ownership")
