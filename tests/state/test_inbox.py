"""The inbox: one transaction per delivery, duplicates skipped, even under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from connector.state import inbox
from connector.state.database import InboxEvent, StateDB
from tests.webhooks.fakes import make_settings, sf_id


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(make_settings(tmp_path).database_url)
    yield state
    state.dispose()


def notice(n: int, stamp: str | None = "2026-03-02T14:05:11.000Z", key: str = "") -> inbox.Notice:
    return inbox.Notice(
        key or f"k{n}", "salesforce-outbound", "members", "Contact", sf_id("003", n), stamp
    )


def count(db: StateDB) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)


def test_large_deliveries_are_checked_in_chunks(db: StateDB) -> None:
    notices = [notice(n) for n in range(1200)]
    first = inbox.store(db, notices)
    assert (first.stored, first.duplicates, first.kinds) == (1200, 0, {"members"})
    again = inbox.store(db, notices)
    assert (again.stored, again.duplicates, again.kinds) == (0, 1200, set())
    assert count(db) == 1200


def test_duplicates_inside_one_delivery(db: StateDB) -> None:
    result = inbox.store(
        db,
        [
            notice(1),
            notice(1),
            notice(1, key="other-key"),
            notice(2, None),
            notice(2, None, key="k2b"),
        ],
    )
    # Same key twice; same record and SystemModstamp under another key; without a modstamp only
    # the key counts.
    assert (result.stored, result.duplicates) == (3, 2)


def test_the_change_index_exists(db: StateDB) -> None:
    with db.engine.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN QUERY PLAN SELECT id FROM inbox WHERE record_id IN ('a', 'b')")
        ).all()
    assert any("ix_inbox_record_modstamp" in str(row) for row in plan)


def test_concurrent_deliveries_of_the_same_message_store_it_once(db: StateDB) -> None:
    notices = [notice(n) for n in range(50)]
    barrier = threading.Barrier(8)
    results: list[inbox.StoreResult] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            results.append(inbox.store(db, notices))
        except Exception as exc:  # noqa: BLE001  (collected for the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sum(r.stored for r in results) == 50
    assert count(db) == 50
