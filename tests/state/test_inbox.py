"""The inbox: one statement per batch of deliveries, duplicates skipped, even under concurrency."""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
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
        "k1",
        "salesforce-outbound",
        "members",
        "Contact",
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
    wait_for(lambda: len(writer._queue) == 9, "the 8 others to queue up behind it")
    release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(r.stored for r in results) == [1] * 9
    assert (writer.stats.batches, writer.stats.largest_batch) == (2, 8)
    assert count(db) == 9


def test_the_first_delivery_in_line_writes_its_batch_in_its_own_thread(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No writer thread: handing each batch to one and back cost more CPU than the statement.
    writers: list[threading.Thread] = []
    real = inbox_writer.store_batch

    def recorded(conn, batch):  # type: ignore[no-untyped-def]
        writers.append(threading.current_thread())
        return real(conn, batch)

    monkeypatch.setattr(inbox_writer, "store_batch", recorded)
    threads_before = threading.active_count()
    assert inbox.store(db, [notice(1)]).stored == 1
    assert inbox.store(db, [notice(2)]).stored == 1
    assert writers == [threading.current_thread()] * 2
    assert threading.active_count() == threads_before


def _deliver_in_thread(db: StateDB, notices: list[inbox.Notice]) -> tuple[threading.Thread, list]:
    """Store ``notices`` from a thread of its own; its result or error lands in the list."""
    outcome: list[object] = []

    def deliver() -> None:
        try:
            outcome.append(inbox.store(db, notices))
        except Exception as exc:  # noqa: BLE001  (collected for the assertions)
            outcome.append(exc)

    thread = threading.Thread(target=deliver)
    thread.start()
    return thread, outcome


def test_a_delivery_that_waits_too_long_behind_a_hung_batch_times_out_and_is_not_stored(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = inbox_writer.writer_for(db)
    held, release = hold_first_batch(monkeypatch)
    monkeypatch.setattr(inbox_writer, "WAIT_SECONDS", 0.3)
    first, first_outcome = _deliver_in_thread(db, [notice(1)])
    assert held.wait(10)  # the database hangs on delivery 1's batch
    with pytest.raises(inbox.StoreTimeout):
        inbox.store(db, [notice(2)])
    assert len(writer._queue) == 1  # delivery 2 left the line: no later batch stores it
    release.set()
    first.join(10)
    assert [(r.stored, r.duplicates) for r in first_outcome] == [(1, 0)]  # type: ignore[attr-defined]
    assert count(db) == 1
    # The sender's redelivery is new.
    assert inbox.store(db, [notice(2)]).stored == 1
    assert (writer.stats.batches, count(db)) == (2, 2)


def test_a_delivery_whose_own_batch_hangs_times_out_and_may_be_stored_late(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Delivery 3 is in the batch delivery 2 writes, which hangs: 3 cannot be withdrawn, and it
    # answers as a database error does (the sender delivers again, then a duplicate).
    writer = inbox_writer.writer_for(db)
    gates = [threading.Event(), threading.Event()]
    reached: list[int] = []
    real = inbox_writer.store_batch

    def gated(conn, batch):  # type: ignore[no-untyped-def]
        reached.append(len(batch))
        if len(reached) <= len(gates):  # the first two batches hang until let through
            assert gates[len(reached) - 1].wait(30)
        return real(conn, batch)

    monkeypatch.setattr(inbox_writer, "store_batch", gated)
    monkeypatch.setattr(inbox_writer, "WAIT_SECONDS", 0.5)
    first, first_outcome = _deliver_in_thread(db, [notice(1)])
    wait_for(lambda: reached == [1], "delivery 1's batch to hang")
    second, second_outcome = _deliver_in_thread(db, [notice(2)])
    wait_for(lambda: len(writer._queue) == 2, "delivery 2 to queue up")
    third, third_outcome = _deliver_in_thread(db, [notice(3)])
    wait_for(lambda: len(writer._queue) == 3, "delivery 3 to queue up")
    gates[0].set()
    wait_for(lambda: reached == [1, 2], "delivery 2's batch (with 3 in it) to hang")
    third.join(10)
    assert [type(e) for e in third_outcome] == [inbox.StoreTimeout]
    gates[1].set()
    for thread in (first, second):
        thread.join(10)
    assert [r.stored for r in first_outcome + second_outcome] == [1, 1]  # type: ignore[attr-defined]
    assert count(db) == 3  # delivery 3 was stored after all...
    assert inbox.store(db, [notice(3)]).duplicates == 1  # ...so its redelivery is a duplicate
    assert writer._queue == deque()


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
        conn.execute(
            text(
                "DROP TRIGGER fail_k2"
                + (" ON inbox" if "postgresql" in db.engine.dialect.name else "")
            )
        )
    # The writer reconnects: the redelivery is stored in full.
    assert inbox.store(db, [notice(1), notice(2)]).stored == 2


def _store_one_then_cut_the_writers_connection(db: StateDB) -> None:
    """Store notice 1, then cut the connection the writer keeps: on PostgreSQL its server
    session ends, as a server restart or an idle-session timeout would end it."""
    assert inbox.store(db, [notice(1)]).stored == 1
    writer = inbox_writer.writer_for(db)
    assert writer._conn is not None
    driver = writer._conn.connection.driver_connection
    if db.engine.dialect.name == "sqlite":
        driver.close()  # type: ignore[union-attr]
        return
    with db.engine.connect() as admin:
        pid = driver.info.backend_pid  # type: ignore[union-attr]
        cut = admin.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
        assert cut.scalar() is True


def test_a_writer_whose_connection_was_cut_fails_that_batch_then_connects_anew(
    db: StateDB,
) -> None:
    _store_one_then_cut_the_writers_connection(db)
    with pytest.raises(SQLAlchemyError):
        inbox.store(db, [notice(2)])
    # A new connection, on which PostgreSQL's statement is prepared again.
    assert inbox.store(db, [notice(2)]).stored == 1
    assert count(db) == 2


def test_after_a_quiet_spell_a_cut_connection_costs_a_reconnect_not_a_failed_batch(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store_one_then_cut_the_writers_connection(db)
    # Unused longer than IDLE_SECONDS, the connection goes back to the pool, whose checkout
    # tests it (pre-ping) and connects anew.
    monkeypatch.setattr(inbox_writer, "IDLE_SECONDS", 0.0)
    assert inbox.store(db, [notice(2)]).stored == 1
    assert count(db) == 2


def test_disposing_of_the_database_closes_the_writers_connection(db: StateDB) -> None:
    assert inbox.store(db, [notice(1)]).stored == 1
    writer = inbox_writer.writer_for(db)
    assert writer._conn is not None
    driver = writer._conn.connection.driver_connection
    db.dispose()
    assert writer._conn is None
    if db.engine.dialect.name == "sqlite":
        with pytest.raises(sqlite3.ProgrammingError):
            driver.execute("SELECT 1")  # type: ignore[union-attr]
    else:
        assert driver.closed  # type: ignore[union-attr]
    # The database can be used again: the next batch checks out a new connection.
    assert inbox.store(db, [notice(2)]).stored == 1
    assert count(db) == 2
