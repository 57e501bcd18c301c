"""The inbox's same-change check becomes a unique index: one change of a record is stored once.

Before, the insert looked each change up (NOT EXISTS over ``ix_inbox_record_modstamp``). On
PostgreSQL that lookup made the statement's plan depend on the table's statistics: a plan made
while the inbox was small read the whole table as a hash (``hashed SubPlan``), and a cached plan
kept doing so as the inbox grew. Now ``ux_inbox_change`` (unique over record and SystemModstamp,
where there is one) decides, as the unique ``dedup_key`` does, and the insert has no plan to get
wrong. It also closes the race the lookup had: two processes storing one change under two keys
at once could both store it.

Rows stored twice by that race keep their work: the later ones lose only their SystemModstamp
(which only the duplicate check reads), so that the index can be built.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_HAS_MODSTAMP = sa.text("modstamp IS NOT NULL")


def upgrade() -> None:
    """Clear the SystemModstamp of repeated changes, then swap the index for a unique one."""
    op.execute(
        "UPDATE inbox SET modstamp = NULL WHERE modstamp IS NOT NULL AND id NOT IN ("
        "SELECT MIN(id) FROM inbox WHERE modstamp IS NOT NULL GROUP BY record_id, modstamp)"
    )
    op.drop_index("ix_inbox_record_modstamp", table_name="inbox")
    op.create_index(
        "ux_inbox_change",
        "inbox",
        ["record_id", "modstamp"],
        unique=True,
        postgresql_where=_HAS_MODSTAMP,
        sqlite_where=_HAS_MODSTAMP,
    )


def downgrade() -> None:
    """Back to the plain index (the cleared SystemModstamps stay cleared)."""
    op.drop_index("ux_inbox_change", table_name="inbox")
    op.create_index("ix_inbox_record_modstamp", "inbox", ["record_id", "modstamp"])
