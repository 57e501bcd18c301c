"""The inbox: one statement per batch of deliveries, duplicates skipped, even under concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from connector.state import inbox, inbox_writer
from connector.state.database import InboxEvent, StateDB, utcnow
from tests.backends import Backend
from tests.serving import wait_for
from tests.webhooks.fakes import hold_first_batch, make_settings, sf_id

# The inbox lives in the state database: run over SQLite and PostgreSQL (the queue is not used).
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def db(tmp_path: Path, backend: Backend) -> Iterator[StateDB]:
    state = StateDB(make_settings(tmp_path, **backend.overrides()).database_url)
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


def test_a_change_already_stored_under_another_key_is_a_duplicate(db: StateDB) -> None:
    assert inbox.store(db, [notice(1), notice(2, None)]).stored == 2

    again = inbox.store(db, [notice(1, key="resent"), notice(2, None, key="k2-resent")])

    # Same record and SystemModstamp: the same change. Without a modstamp only the key counts.
    assert (again.stored, again.duplicates) == (1, 1)
    assert count(db) == 3


def test_stored_rows_are_pending_with_the_time_received(db: StateDB) -> None:
    before = utcnow()
    inbox.store(db, [notice(1)])
    with db.session() as session:
        row = session.scalars(select(InboxEvent)).one()
    assert (row.dedup_key, row.source, row.kind, row.object) == (
        "k1", "salesforce-outbound", "members", "Contact"
    )
    assert (row.record_id, row.modstamp) == (sf_id("003", 1), "2026-03-02T14:05:11.000Z")
    assert (row.status, row.attempts, row.lease_until) == ("pending", 0, None)
    assert before <= row.received_at <= utcnow()
    leased = inbox.lease(db, "members", 10, 60)
    assert leased.record_ids == (sf_id("003", 1),)


def test_one_change_is_unique_and_the_insert_reads_nothing_from_the_table(db: StateDB) -> None:
    indexes = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("inbox")}
    change = indexes["ux_inbox_change"]
    assert (change["column_names"], bool(change["unique"])) == (["record_id", "modstamp"], True)
    assert "ix_inbox_record_modstamp" not in indexes
    # The statement's plan must not depend on the table's size: it scans no part of it (a plan
    # that looked changes up went on hashing the whole inbox once PostgreSQL had cached it).
    name = db.engine.dialect.name
    params = inbox.insert_params([notice(1)])
    with db.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        if name == "sqlite":
            cursor = driver.cursor()
            cursor.execute("EXPLAIN QUERY PLAN " + inbox.insert_statement(name), params)
            plan = [str(row[-1]) for row in cursor.fetchall()]
            cursor.close()
        else:  # with libpq's call and placeholders, as the inbox runs it
            result = driver.pgconn.exec_params(
                ("EXPLAIN " + inbox.insert_statement(name)).encode(), [p.encode() for p in params]
            )
            plan = [str(result.get_value(row, 0), "utf-8") for row in range(result.ntuples)]
    if name == "sqlite":
        assert plan == ["SCAN n VIRTUAL TABLE INDEX 1:"]  # json_each(): the batch itself
    else:
        scans = [line.split("(cost")[0].strip(" ->") for line in plan if "Scan" in line]
        # the batch itself
        assert scans == ['Subquery Scan on "*SELECT*"', "Function Scan on jsonb_array_elements n"]


def test_a_change_without_a_modstamp_is_told_apart_by_its_key_only(db: StateDB) -> None:
    result = inbox.store(db, [notice(1, None), notice(1, None, key="k1b")])
    assert (result.stored, result.duplicates) == (2, 0)
    with db.session() as session:
        assert session.scalars(select(InboxEvent.modstamp)).all() == [None, None]


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


def test_deliveries_waiting_for_a_commit_share_the_next_transaction(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = inbox_writer.writer_for(db)
    first_batch, release = hold_first_batch(monkeypatch)
    results: list[inbox.StoreResult] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(inbox.store(db, [notice(n)])))
        for n in range(9)
    ]
    threads[0].start()
    assert first_batch.wait(10)  # delivery 0 is being committed...
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(writer._waiting) < 8:  # ...while the 8 others queue up
        assert time.monotonic() < deadline, "the deliveries never reached the writer"
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(r.stored for r in results) == [1] * 9
    assert (writer.stats.batches, writer.stats.largest_batch) == (2, 8)
    assert count(db) == 9


def test_one_change_stored_under_another_key_while_the_first_is_uncommitted_is_one_row(
    db: StateDB,
) -> None:
    # Another process has inserted the change under its own key and not committed yet. A lookup
    # could not see that row, and both were stored; the unique index makes this store wait for
    # the other transaction, then skip the change.
    other = db.engine.connect()
    first = other.begin()
    if db.engine.dialect.name == "sqlite":
        other.exec_driver_sql("BEGIN IMMEDIATE")  # SQLAlchemy's begin() issues nothing
    other.execute(
        text(
            "INSERT INTO inbox (dedup_key, source, kind, object, record_id, modstamp, "
            "received_at, status, attempts) VALUES ('k1-other-message', 'salesforce-outbound', "
            "'members', 'Contact', :record, '2026-03-02T14:05:11.000Z', :now, 'pending', 0)"
        ),
        {"record": sf_id("003", 1), "now": utcnow().replace(tzinfo=None)},
    )
    results: list[inbox.StoreResult] = []
    delivery = threading.Thread(target=lambda: results.append(inbox.store(db, [notice(1)])))
    delivery.start()
    if db.engine.dialect.name == "postgresql":
        wait_for(lambda: _waiting_on_a_lock(db), "the delivery to wait for the other insert")
    first.commit()
    other.close()
    delivery.join(30)
    assert [(r.stored, r.duplicates) for r in results] == [(0, 1)]
    assert count(db) == 1


def _waiting_on_a_lock(db: StateDB) -> bool:
    # A connection of its own: a transaction sees one snapshot of pg_stat_activity.
    with db.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%INSERT INTO inbox%'"
            )
        )
        return bool(waiting.scalar())


def test_two_writers_storing_the_same_notifications_store_each_once(
    tmp_path: Path, backend: Backend, db: StateDB
) -> None:
    # A second StateDB has a writer of its own, as a second web process has. Each round, the
    # two store overlapping parts at once; on PostgreSQL their writers then insert keys the
    # other holds uncommitted, which deadlocked (about one round in four) until the rows went in
    # in key order. Ten rounds made that fail in most runs.
    other = StateDB(make_settings(tmp_path, **backend.overrides()).database_url)
    rounds = 10
    results: list[inbox.StoreResult] = []
    errors: list[BaseException] = []

    def deliver(barrier: threading.Barrier, state: StateDB, part: list[inbox.Notice]) -> None:
        barrier.wait()
        try:
            results.append(inbox.store(state, part))
        except Exception as exc:  # noqa: BLE001  (collected for the assertion below)
            errors.append(exc)

    try:
        for round_ in range(rounds):
            notices = [notice(n) for n in range(round_ * 200, round_ * 200 + 200)]
            barrier = threading.Barrier(8)
            threads = [
                threading.Thread(target=deliver, args=(barrier, state, notices[start::3]))
                for state in (db, other)
                for start in range(4)  # overlapping parts: start 3 repeats start 0's every third
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
    finally:
        other.dispose()
    assert errors == []
    assert sum(r.stored for r in results) == rounds * 200
    assert sum(r.stored + r.duplicates for r in results) == rounds * 2 * (67 + 67 + 66 + 66)
    assert count(db) == rounds * 200


_FAIL_ON_K2 = {
    "sqlite": [
        "CREATE TRIGGER fail_k2 BEFORE INSERT ON inbox WHEN NEW.dedup_key = 'k2' "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION fail_k2() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.dedup_key = 'k2' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER fail_k2 BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION fail_k2()",
    ],
}


def test_a_failed_batch_fails_every_delivery_in_it_and_stores_none(db: StateDB) -> None:
    with db.engine.begin() as conn:
        for statement in _FAIL_ON_K2[db.engine.dialect.name]:
            conn.execute(text(statement))
    # k1 is inserted before k2 fails: the statement is undone as a whole.
    with pytest.raises(SQLAlchemyError) as raised:
        inbox.store(db, [notice(1), notice(2)])
    assert "disk full" in str(raised.value.orig)  # type: ignore[attr-defined]
    assert count(db) == 0
    with db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER fail_k2" + (" ON inbox" if "postgresql" in
                                                    db.engine.dialect.name else "")))
    # The writer reconnects: the redelivery is stored in full.
    assert inbox.store(db, [notice(1), notice(2)]).stored == 2


def test_a_writer_whose_connection_was_cut_fails_that_batch_then_connects_anew(
    db: StateDB,
) -> None:
    assert inbox.store(db, [notice(1)]).stored == 1
    writer = inbox_writer.writer_for(db)
    assert writer._conn is not None
    driver = writer._conn.connection.driver_connection
    if db.engine.dialect.name == "sqlite":
        driver.close()  # type: ignore[union-attr]
    else:  # as a server restart or an idle-session timeout would
        with db.engine.connect() as admin:
            pid = driver.info.backend_pid  # type: ignore[union-attr]
            cut = admin.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
            assert cut.scalar() is True
    with pytest.raises(SQLAlchemyError):
        inbox.store(db, [notice(2)])
    # A new connection, on which PostgreSQL's statement is prepared again.
    assert inbox.store(db, [notice(2)]).stored == 1
    assert count(db) == 2
