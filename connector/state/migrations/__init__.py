"""Alembic migrations of the state database (the first one is the schema before migrations)."""
