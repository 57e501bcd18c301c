"""Alembic environment: mentorsync runs migrations itself (``connector.state.migrate``) on the
connection it already has, so this only hands that connection to Alembic."""

from __future__ import annotations

from alembic import context

from connector.state.database import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
