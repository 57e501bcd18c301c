"""The state database's schema is kept by Alembic migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, make_url, text

from connector.state import migrate
from connector.state.database import Base, StateDB, _with_driver
from tests.backends import Backend


def test_a_fresh_database_is_made_from_the_models_and_stamped_with_the_newest_revision(
    tmp_path: Path,
) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert migrate.current_revision(db.engine) == migrate.head() == "0003"
        assert "ownership" in inspect(db.engine).get_table_names()
    finally:
        db.dispose()


def _upgrade(conn: Connection, revision: str) -> None:
    """Run the migrations up to ``revision`` on ``conn`` (in its transaction)."""
    cfg = migrate.config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_database_made_before_migrations_is_stamped_as_baseline_and_upgraded(
    backend: Backend,
) -> None:
    url = backend.database_url
    old = create_engine(_with_driver(make_url(url)))
    # What the first release made with create_all: the baseline's schema (not today's models),
    # without Alembic's version table.
    with old.begin() as conn:
        _upgrade(conn, migrate.BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
    assert "ownership" not in inspect(old).get_table_names()
    with old.begin() as conn:
        conn.execute(
            text("INSERT INTO cursors (name, updated_at) VALUES ('members:Contact', '2026-11-30')")
        )
    old.dispose()

    db = StateDB(url)
    try:
        assert migrate.current_revision(db.engine) == "0003"
        assert "ownership" in inspect(db.engine).get_table_names()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM cursors")).scalars().all() == [
                "members:Contact"
            ]
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_changes_stored_twice_before_0003_keep_their_rows_and_one_keeps_its_modstamp(
    backend: Backend,
) -> None:
    # Before 0003, two processes could store one change under two keys at once; the unique
    # index cannot be built over both, and neither row's work may be lost.
    url = backend.database_url
    old = create_engine(_with_driver(make_url(url)))
    with old.begin() as conn:
        _upgrade(conn, "0002")
        for key, modstamp in (("a", "m1"), ("b", "m1"), ("c", "m2"), ("d", None), ("e", None)):
            conn.execute(
                text(
                    "INSERT INTO inbox (dedup_key, source, kind, object, record_id, modstamp, "
                    "received_at, status, attempts) VALUES (:key, 'salesforce-outbound', "
                    "'members', 'Contact', '003A', :modstamp, '2026-11-30', 'pending', 0)"
                ),
                {"key": key, "modstamp": modstamp},
            )
    old.dispose()

    db = StateDB(url)
    try:
        assert migrate.current_revision(db.engine) == "0003"
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT dedup_key, modstamp FROM inbox ORDER BY dedup_key"))
            assert rows.all() == [("a", "m1"), ("b", None), ("c", "m2"), ("d", None), ("e", None)]
        indexes = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("inbox")}
        assert bool(indexes["ux_inbox_change"]["unique"]) is True
        assert "ix_inbox_record_modstamp" not in indexes
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_the_migrations_from_nothing_build_exactly_the_models_schema(backend: Backend) -> None:
    engine = create_engine(_with_driver(make_url(backend.database_url)))
    with engine.begin() as conn:
        _upgrade(conn, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
