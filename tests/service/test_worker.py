"""The worker: coalesced drains, the kind lock, the sweeper, backoff, schedules, retries."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update

from connector.engine.kind import RunResult
from connector.errors import MoodleTransientError
from connector.service import usage
from connector.service import worker as worker_module
from connector.service.worker import Worker, lock_name
from connector.state import bookkeeping, inbox, locks
from connector.state.database import FailedRecord, InboxEvent, KeyValue, Lock, utcnow
from tests.backends import Backend
from tests.service.conftest import run_queued
from tests.webhooks.fakes import FakeKinds, outbound_message, queued, sf_id
from webhooks import create_app


def notice(n: int, kind: str = "fake_contacts", obj: str = "Contact") -> inbox.Notice:
    return inbox.Notice(
        f"sf-outbound:{sf_id('04l', n)}",
        "salesforce-outbound",
        kind,
        obj,
        sf_id("003", n),
        f"2026-03-02T14:05:{n % 60:02d}.000Z",
    )


def store(worker: Worker, *notices: inbox.Notice) -> None:
    result = inbox.store(worker.db, list(notices))
    worker.wake(result.kinds)


def statuses(worker: Worker) -> dict[str, int]:
    with worker.db.session() as session:
        out: dict[str, int] = {}
        for status in session.scalars(select(InboxEvent.status)):
            out[status] = out.get(status, 0) + 1
        return out


# --- coalescing -------------------------------------------------------------------------------


def test_a_burst_of_100_notifications_is_one_run(worker: Worker, fake_kinds: FakeKinds) -> None:
    for n in range(100):
        store(worker, notice(n))  # 100 separate deliveries
    assert queued(worker) == [("fake_contacts",)]
    assert run_queued(worker.huey) == [("drain", ("fake_contacts",))]
    assert len(fake_kinds.contacts.calls) == 1
    request = fake_kinds.contacts.calls[0]
    assert request.mode == "ids"
    assert request.ids == tuple(sf_id("003", n) for n in range(100))
    assert statuses(worker) == {"done": 100}


def test_100_outbound_messages_through_the_endpoint_make_one_run(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    app = create_app(worker.settings, worker=worker)
    client = app.test_client()
    for n in range(100):
        body = outbound_message([(sf_id("04l", n), "Contact", sf_id("003", n), None)])
        assert (
            b"<Ack>true</Ack>"
            in client.post("/hooks/salesforce/outbound", data=body, content_type="text/xml").data
        )
    run_queued(worker.huey)
    assert [len(c.ids) for c in fake_kinds.contacts.calls] == [100]


def test_kinds_drain_separately(worker: Worker, fake_kinds: FakeKinds) -> None:
    store(worker, notice(1), notice(2, "fake_matches", "Mentorship_Match__c"), notice(3))
    assert sorted(queued(worker)) == [("fake_contacts",), ("fake_matches",)]
    run_queued(worker.huey)
    assert [c.ids for c in fake_kinds.contacts.calls] == [(sf_id("003", 1), sf_id("003", 3))]
    assert [c.ids for c in fake_kinds.matches.calls] == [(sf_id("003", 2),)]


def test_a_large_backlog_is_drained_in_batches_under_one_lock(
    worker: Worker, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "DRAIN_BATCH", 10)
    inbox.store(worker.db, [notice(n) for n in range(25)])
    assert worker.drain("fake_contacts") == 3
    assert [len(c.ids) for c in fake_kinds.contacts.calls] == [10, 10, 5]
    assert statuses(worker) == {"done": 25}


def test_the_same_record_twice_is_one_id(worker: Worker, fake_kinds: FakeKinds) -> None:
    first = notice(1)
    again = inbox.Notice(
        "sf-outbound:other",
        first.source,
        first.kind,
        first.object,
        first.record_id,
        "2026-03-02T15:00:00.000Z",
    )
    inbox.store(worker.db, [first, again])
    worker.drain("fake_contacts")
    assert fake_kinds.contacts.calls[0].ids == (first.record_id,)


def test_unreachable_queue_is_logged_not_raised(
    worker: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionError("queue down")

    monkeypatch.setattr(worker.drain_task, "schedule", refuse)
    worker.wake(["fake_contacts"])
    assert "left to the sweeper: ConnectionError" in caplog.text
    monkeypatch.undo()
    worker.wake(["fake_contacts"])  # not suppressed by the failed attempt
    assert queued(worker) == [("fake_contacts",)]


# --- the kind lock ----------------------------------------------------------------------------


def test_a_held_lock_stops_the_drain_and_its_release_wakes_it(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    inbox.store(worker.db, [notice(1)])
    assert locks.acquire(worker.db, lock_name("fake_contacts"), "other-run", 60)
    assert worker.drain("fake_contacts") == 0
    assert fake_kinds.contacts.calls == []
    assert statuses(worker) == {"pending": 1}
    locks.release(worker.db, lock_name("fake_contacts"), "other-run")
    assert worker.drain("fake_contacts") == 1


def test_a_drain_finding_the_lock_busy_comes_back_when_its_lease_runs_out(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    # The holder may have died (SIGKILL): nobody would wake a drain for the rows it left.
    inbox.store(worker.db, [notice(1)])
    assert locks.acquire(worker.db, lock_name("fake_contacts"), "dead-worker", 30)
    before_count = queued(worker).count(("fake_contacts",))

    assert worker.drain("fake_contacts") == 0

    assert queued(worker).count(("fake_contacts",)) == before_count + 1
    huey = worker.huey
    (task,) = [t for t in huey.pending() + huey.scheduled() if t.args == ("fake_contacts",)]
    eta = task.eta if task.eta.tzinfo else task.eta.replace(tzinfo=dt.UTC)
    wait = (eta - dt.datetime.now(dt.UTC)).total_seconds()
    assert 29 <= wait <= 32, wait  # the lease's 30 s, and a second


def test_two_runs_of_one_kind_never_overlap(worker: Worker, fake_kinds: FakeKinds) -> None:
    started, finish = threading.Event(), threading.Event()

    def slow(ctx: object, request: object, progress: object) -> RunResult:
        started.set()
        assert finish.wait(10)
        return RunResult(kind="fake_contacts")

    fake_kinds.contacts.behaviour = slow
    inbox.store(worker.db, [notice(1)])
    first = threading.Thread(target=worker.drain, args=("fake_contacts",))
    first.start()
    try:
        assert started.wait(10)
        # While the first run holds the lock, a row arrives and other runs are tried.
        inbox.store(worker.db, [notice(2)])
        assert worker.drain("fake_contacts") == 0
        assert worker.run_kind("fake_contacts", "incremental") is None
        assert worker.retry_failures("fake_contacts") == 0
    finally:
        finish.set()
        first.join(10)
    assert fake_kinds.contacts.max_running == 1
    # The first drain went on with the row that arrived meanwhile, under the same lock.
    assert [c.ids for c in fake_kinds.contacts.calls] == [(sf_id("003", 1),), (sf_id("003", 2),)]
    assert statuses(worker) == {"done": 2}


def test_rows_that_arrive_during_a_scheduled_run_are_drained_after_it(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    started, finish = threading.Event(), threading.Event()

    def slow(ctx: object, request: object, progress: object) -> RunResult:
        if request.mode == "full":  # type: ignore[attr-defined]
            started.set()
            assert finish.wait(10)
        return RunResult(kind="fake_contacts")

    fake_kinds.contacts.behaviour = slow
    full = threading.Thread(target=worker.run_kind, args=("fake_contacts", "full"))
    full.start()
    try:
        assert started.wait(10)
        store(worker, notice(1))  # the webhook's drain finds the kind busy and gives up
        run_queued(worker.huey)
        assert statuses(worker) == {"pending": 1}
    finally:
        finish.set()
        full.join(10)
    # Releasing the lock saw the waiting row and scheduled its drain.
    assert queued(worker) == [("fake_contacts",)]
    run_queued(worker.huey)
    assert statuses(worker) == {"done": 1}
    assert [c.mode for c in fake_kinds.contacts.calls] == ["full", "ids"]


def test_a_lock_left_by_a_crashed_worker_expires(worker: Worker, fake_kinds: FakeKinds) -> None:
    with worker.db.session() as session:
        session.add(
            Lock(
                name=lock_name("fake_contacts"),
                owner="dead-host:123:1:x",
                expires_at=utcnow() - dt.timedelta(seconds=1),
            )
        )
    inbox.store(worker.db, [notice(1)])
    assert worker.drain("fake_contacts") == 1
    with worker.db.session() as session:
        assert session.get(Lock, lock_name("fake_contacts")) is None  # released after the run


def test_lock_primitives(worker: Worker) -> None:
    db = worker.db
    assert locks.acquire(db, "x", "a", 60)
    assert not locks.acquire(db, "x", "b", 60)
    assert locks.acquire(db, "x", "a", 60)  # re-entrant for its owner: a renewal
    assert locks.renew(db, "x", "a", 60)
    assert not locks.renew(db, "x", "b", 60)
    with pytest.raises(locks.LockBusy), locks.held(db, "x", 60, owner="b"):
        pass
    with db.session() as session:
        session.execute(update(Lock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert locks.acquire(db, "x", "b", 60)  # expired: taken over
    assert not locks.renew(db, "x", "a", 60)  # the old owner learns it lost the lock
    locks.release(db, "x", "a")  # releasing a lost lock does not free it
    assert not locks.acquire(db, "x", "c", 60)


def test_progress_of_a_run_renews_its_lock(
    worker: Worker, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewed: list[str] = []
    monkeypatch.setattr(locks.Lease, "renew_if_due", lambda lease: renewed.append(lease.name))
    inbox.store(worker.db, [notice(1)])
    worker.drain("fake_contacts")  # the fake kind reports progress once
    assert renewed == [lock_name("fake_contacts")]


def test_a_lease_renews_after_a_quarter_of_its_ttl(worker: Worker) -> None:
    db = worker.db
    assert locks.acquire(db, "x", "a", 60)
    lease = locks.Lease(db, "x", "a", 60)

    def expires() -> dt.datetime:
        with db.session() as session:
            return session.get(Lock, "x").expires_at

    with db.session() as session:
        session.execute(update(Lock).values(expires_at=utcnow() + dt.timedelta(seconds=5)))
    lease.renew_if_due()  # just taken: not yet
    assert expires() < utcnow() + dt.timedelta(seconds=10)
    lease._renewed_at -= dt.timedelta(seconds=16)  # a quarter of the TTL later
    lease.renew_if_due()
    assert expires() > utcnow() + dt.timedelta(seconds=50)


def test_stale_local_locks_are_cleared_at_start(worker: Worker) -> None:
    import os
    import socket

    host = socket.gethostname()[:80]
    later = utcnow() + dt.timedelta(hours=1)
    with worker.db.session() as session:
        session.add(Lock(name="dead", owner=f"{host}:{2**22 + 7}:1:x", expires_at=later))
        session.add(Lock(name="mine", owner=f"{host}:{os.getpid()}:1:x", expires_at=later))
        session.add(Lock(name="alive", owner=f"{host}:1:1:x", expires_at=later))
        session.add(Lock(name="elsewhere", owner="other-host:5:1:x", expires_at=later))
    assert sorted(locks.clear_stale_local(worker.db)) == ["dead", "mine"]
    with worker.db.session() as session:
        assert sorted(session.scalars(select(Lock.name))) == ["alive", "elsewhere"]


# --- the sweeper ------------------------------------------------------------------------------


def test_a_dropped_task_is_recovered_by_the_sweeper(worker: Worker, fake_kinds: FakeKinds) -> None:
    inbox.store(worker.db, [notice(1)])  # stored, but the drain task was lost
    assert worker.tick()["drain"] == []  # too young to count as lost
    with worker.db.session() as session:
        session.execute(update(InboxEvent).values(received_at=utcnow() - dt.timedelta(minutes=6)))
    assert worker.tick()["drain"] == ["fake_contacts"]
    run_queued(worker.huey)
    assert statuses(worker) == {"done": 1}
    assert [c.ids for c in fake_kinds.contacts.calls if c.mode == "ids"] == [(sf_id("003", 1),)]


def test_rows_of_a_worker_killed_mid_run_are_recovered(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    inbox.store(worker.db, [notice(1), notice(2)])
    # A worker leased the rows and took the lock, then died (no finish, no release).
    leased = inbox.lease(worker.db, "fake_contacts", 100, 300)
    assert len(leased.row_ids) == 2
    assert locks.acquire(worker.db, lock_name("fake_contacts"), "dead-host:9:9:x", 3600)
    assert worker.tick()["drain"] == []  # the lease still runs
    with worker.db.session() as session:
        session.execute(update(InboxEvent).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
        session.execute(update(Lock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert worker.tick()["drain"] == ["fake_contacts"]
    assert statuses(worker) == {"pending": 2}
    run_queued(worker.huey)
    assert statuses(worker) == {"done": 2}
    drained = [c.ids for c in fake_kinds.contacts.calls if c.mode == "ids"]
    assert drained == [(sf_id("003", 1), sf_id("003", 2))]


def test_old_done_rows_are_purged_but_recent_ones_still_deduplicate(worker: Worker) -> None:
    inbox.store(worker.db, [notice(1), notice(2)])
    worker.drain("fake_contacts")
    with worker.db.session() as session:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.record_id == sf_id("003", 1))
            .values(processed_at=utcnow() - dt.timedelta(days=8))
        )
    worker.tick()
    assert inbox.store(worker.db, [notice(2)]).duplicates == 1
    assert inbox.store(worker.db, [notice(1)]).stored == 1  # forgotten after a week


# --- failures and backoff ---------------------------------------------------------------------


def test_a_failed_run_backs_off_then_gives_up(worker: Worker, fake_kinds: FakeKinds) -> None:
    def down(ctx: object, request: object, progress: object) -> RunResult:
        raise MoodleTransientError("core_user_get_users_by_field", "http503")

    fake_kinds.contacts.behaviour = down
    inbox.store(worker.db, [notice(1)])
    max_attempts = worker.settings.service.retry_max_attempts
    for attempt in range(1, max_attempts + 1):
        worker.drain("fake_contacts")
        with worker.db.session() as session:
            row = session.scalars(select(InboxEvent)).one()
        assert row.attempts == attempt
        assert row.error_code == "MoodleTransientError:http503"
        if attempt < max_attempts:
            assert row.status == "leased" and row.lease_until > utcnow() + dt.timedelta(seconds=50)
            with worker.db.session() as session:  # the backoff is over
                session.execute(update(InboxEvent).values(lease_until=utcnow()))
            assert worker.tick()["drain"] == ["fake_contacts"]
    assert row.status == "failed"
    assert worker.tick()["drain"] == []
    with worker.db.session() as session:
        errors = session.get(KeyValue, usage.KV_TASK_ERRORS).value
    assert errors == {"fake_contacts": max_attempts}
    # An admin fixed Moodle: `mentorsync retry --all` requeues failed rows.
    fake_kinds.contacts.behaviour = None
    assert inbox.requeue_failed(worker.db) == {"fake_contacts"}
    worker.drain("fake_contacts")
    assert statuses(worker) == {"done": 1}


def test_a_stopped_run_backs_off(worker: Worker, fake_kinds: FakeKinds) -> None:
    fake_kinds.contacts.behaviour = lambda ctx, request, progress: RunResult(
        kind="fake_contacts", status="stopped", reason="budget"
    )
    inbox.store(worker.db, [notice(1)])
    worker.drain("fake_contacts")
    with worker.db.session() as session:
        row = session.scalars(select(InboxEvent)).one()
    assert (row.status, row.error_code) == ("leased", "budget")


def test_a_run_that_ended_in_error_backs_off_instead_of_marking_done(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    # A transient outage that outlived the retries (Moodle answering 503) ends the run
    # "error"; its records were not reconciled, so the rows must wait and be tried again.
    fake_kinds.contacts.behaviour = lambda ctx, request, progress: RunResult(
        kind="fake_contacts", status="error", reason="moodle:http_503"
    )
    inbox.store(worker.db, [notice(1)])
    assert worker.drain("fake_contacts") == 1
    with worker.db.session() as session:
        row = session.scalars(select(InboxEvent)).one()
    assert (row.status, row.error_code, row.attempts) == ("leased", "moodle:http_503", 1)
    assert row.lease_until is not None


def test_a_run_left_running_by_a_dead_worker_is_recorded_as_interrupted(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    from connector.state.database import Run

    with worker.db.session() as session:
        dead = bookkeeping.start_run(session, "fake_contacts", "full").id
        live = bookkeeping.start_run(session, "fake_matches", "full").id
    # fake_matches' run is live (its lock is held); fake_contacts' holder is gone.
    assert locks.acquire(worker.db, lock_name("fake_matches"), "someone-alive", 600)

    assert worker.close_abandoned_runs() == {"fake_contacts": [dead]}

    with worker.db.session() as session:
        runs = {r.id: r for r in session.scalars(select(Run))}
    assert (runs[dead].status, runs[dead].finished_at is not None) == ("interrupted", True)
    assert runs[dead].error == bookkeeping.INTERRUPTED_REASON
    assert (runs[live].status, runs[live].finished_at) == ("running", None)


def test_a_bug_in_a_kind_backs_off_and_propagates_without_its_message(
    worker: Worker, fake_kinds: FakeKinds, caplog: pytest.LogCaptureFixture
) -> None:
    email = "@".join(["jane.doe", "example.org"])  # data, not a source line of the traceback

    def bug(ctx: object, request: object, progress: object) -> RunResult:
        return {"other": 1}[email]  # type: ignore[return-value]  # KeyError: 'jane.doe@...'

    fake_kinds.contacts.behaviour = bug
    inbox.store(worker.db, [notice(1)])
    with pytest.raises(worker_module.KindCrashed) as info:
        worker.drain("fake_contacts")
    # What Huey logs (the task's exception, its context) and what we log hold no record data.
    assert email not in str(info.value) and info.value.__suppress_context__
    assert "ids run of fake_contacts raised KeyError" in caplog.text
    assert "in bug" in caplog.text
    assert email not in caplog.text
    with worker.db.session() as session:
        row = session.scalars(select(InboxEvent)).one()
        assert session.get(Lock, lock_name("fake_contacts")) is None  # released anyway
    assert (row.status, row.error_code) == ("leased", "KeyError")


def test_rows_of_an_unknown_kind_stay_pending(worker: Worker) -> None:
    inbox.store(worker.db, [notice(1, kind="gone")])
    assert worker.drain("gone") == 0
    assert statuses(worker) == {"pending": 1}


# --- failed records ---------------------------------------------------------------------------


def test_due_failed_records_are_retried(worker: Worker, fake_kinds: FakeKinds) -> None:
    svc = worker.settings.service
    with worker.db.session() as session:
        for record in ("003A", "003B", "003C"):
            bookkeeping.record_failure(
                session,
                "fake_contacts",
                record,
                "invalidparameter",
                "moodle:core_user_create_users",
                svc,
            )
        session.execute(
            update(FailedRecord)
            .where(FailedRecord.record_id == "003A")
            .values(next_retry_at=utcnow() - dt.timedelta(seconds=1))
        )
        session.execute(
            update(FailedRecord)
            .where(FailedRecord.record_id == "003C")
            .values(parked=True, next_retry_at=None)
        )

    def clears(ctx: object, request, progress: object) -> RunResult:  # type: ignore[no-untyped-def]
        with worker.db.session() as session:
            bookkeeping.clear_failures(session, "fake_contacts", request.ids)
        return RunResult(kind="fake_contacts")

    fake_kinds.contacts.behaviour = clears
    assert worker.tick()["retry"] == ["fake_contacts"]
    run_queued(worker.huey)
    retries = [c for c in fake_kinds.contacts.calls if c.mode == "ids"]
    assert [c.ids for c in retries] == [("003A",)]
    with worker.db.session() as session:
        assert sorted(session.scalars(select(FailedRecord.record_id))) == ["003B", "003C"]


def test_a_retry_the_kind_did_not_account_for_counts_as_a_failure(
    worker: Worker, fake_kinds: FakeKinds
) -> None:
    with worker.db.session() as session:
        bookkeeping.record_failure(
            session, "fake_contacts", "003A", "x", "moodle", worker.settings.service
        )
        session.execute(update(FailedRecord).values(next_retry_at=utcnow()))
    assert worker.retry_failures("fake_contacts") == 1  # the fake kind does no bookkeeping
    with worker.db.session() as session:
        row = session.scalars(select(FailedRecord)).one()
    assert row.attempts == 2
    assert row.next_retry_at > utcnow() + dt.timedelta(seconds=100)  # backoff: 60 s * 2
    assert worker.tick()["retry"] == []


# --- schedules --------------------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def test_incremental_runs_every_n_minutes(worker: Worker) -> None:
    kinds = ["fake_completions", "fake_contacts", "fake_matches", "fake_moodle"]
    assert worker.tick(T0)["incremental"] == kinds
    assert worker.tick(T0 + dt.timedelta(minutes=1))["incremental"] == []
    assert worker.tick(T0 + dt.timedelta(minutes=4))["incremental"] == []
    assert worker.tick(T0 + dt.timedelta(minutes=5))["incremental"] == kinds
    assert sorted(set(queued(worker))) == [(k, "incremental") for k in kinds]


def test_nightly_full_reconcile_once_a_day_in_the_programme_time_zone(worker: Worker) -> None:
    two_am_new_york = dt.datetime(2026, 1, 10, 7, 0, tzinfo=dt.UTC)  # EST = UTC-5
    assert worker.tick(two_am_new_york - dt.timedelta(hours=1))["full"] == []
    assert "fake_contacts" in worker.tick(two_am_new_york)["full"]
    assert worker.tick(two_am_new_york + dt.timedelta(minutes=30))["full"] == []
    assert "fake_contacts" in worker.tick(two_am_new_york + dt.timedelta(days=1))["full"]


def test_nightly_full_reconcile_when_the_clock_jumps_over_its_hour(worker: Worker) -> None:
    # 8 March 2026 in New York: 2:00 EST becomes 3:00 EDT; 2 AM never comes.
    three_am_edt = dt.datetime(2026, 3, 8, 7, 0, tzinfo=dt.UTC)
    assert "fake_contacts" in worker.tick(three_am_edt)["full"]
    assert worker.tick(three_am_edt + dt.timedelta(minutes=1))["full"] == []


def test_nightly_runs_the_kinds_in_their_declared_order_as_one_task(
    worker: Worker, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.engine.kind import Schedule

    order = {"fake_matches": 20, "fake_contacts": 10, "fake_moodle": 30, "fake_completions": 40}
    for kind in (
        fake_kinds.contacts,
        fake_kinds.matches,
        fake_kinds.moodle,
        fake_kinds.completions,
    ):
        monkeypatch.setattr(
            kind, "schedule", Schedule(nightly_order=order[kind.name]), raising=False
        )
    monkeypatch.setattr(
        fake_kinds.moodle, "schedule", Schedule(incremental=False, nightly_order=30), raising=False
    )
    two_am_new_york = dt.datetime(2026, 1, 10, 7, 0, tzinfo=dt.UTC)

    enqueued = worker.tick(two_am_new_york)

    ordered = ["fake_contacts", "fake_matches", "fake_moodle", "fake_completions"]
    assert enqueued["full"] == ordered
    assert "fake_moodle" not in enqueued["incremental"]  # it declares no incremental sweep
    assert (tuple(ordered),) in queued(worker)
    ran: list[str] = []
    for kind in (
        fake_kinds.contacts,
        fake_kinds.matches,
        fake_kinds.moodle,
        fake_kinds.completions,
    ):
        kind.behaviour = lambda ctx, request, progress, k=kind.name: (
            ran.append(k) or RunResult(kind=k, status="ok")
        )
    assert worker.nightly(tuple(ordered)) == ordered
    assert ran == ordered


def test_nightly_window_ends(worker: Worker) -> None:
    five_am_new_york = dt.datetime(2026, 1, 10, 10, 0, tzinfo=dt.UTC)
    assert worker.tick(five_am_new_york)["full"] == []  # too late: tomorrow night
    assert "fake_contacts" in worker.tick(five_am_new_york - dt.timedelta(minutes=1))["full"]


def test_scheduled_runs_call_the_kind(worker: Worker, fake_kinds: FakeKinds) -> None:
    result = worker.run_kind("fake_contacts", "incremental")
    assert result is not None and result.status == "ok"
    assert fake_kinds.contacts.calls[0].mode == "incremental"


def test_a_busy_kind_skips_incremental_and_retries_full(worker: Worker) -> None:
    assert locks.acquire(worker.db, lock_name("fake_contacts"), "other", 60)
    assert worker.run_kind("fake_contacts", "incremental") is None
    assert queued(worker) == []
    worker.run_kind("fake_contacts", "full")
    assert queued(worker) == [("fake_contacts", "full", 1)]


def test_a_failing_scheduled_run_is_logged(
    worker: Worker, fake_kinds: FakeKinds, caplog: pytest.LogCaptureFixture
) -> None:
    def down(ctx: object, request: object, progress: object) -> RunResult:
        raise MoodleTransientError("core_webservice_get_site_info", "http503")

    fake_kinds.contacts.behaviour = down
    assert worker.run_kind("fake_contacts", "full") is None
    assert (
        "full run of fake_contacts failed: Moodle core_webservice_get_site_info: http503"
        in caplog.text
    )


def test_consumer_periodic_follows_the_scheduler_setting(
    tmp_path: Path, backend: Backend, fake_kinds: FakeKinds
) -> None:
    from tests.webhooks.fakes import make_settings

    for scheduler in (True, False):
        settings = make_settings(tmp_path, scheduler=scheduler, **backend.overrides())
        work = Worker(settings, huey=backend.huey())
        try:
            assert work.consumer().periodic is scheduler
            assert work.consumer(periodic=True).periodic is True
        finally:
            work.close()
            work.db.dispose()


def test_a_record_that_keeps_failing_backs_off_then_is_parked(
    tmp_path: Path, backend: Backend, fake_kinds: FakeKinds
) -> None:
    from tests.webhooks.fakes import make_settings

    settings = make_settings(
        tmp_path, retry_max_attempts=3, retry_base_seconds=10, **backend.overrides()
    )
    work = Worker(settings, huey=backend.huey())
    svc = work.settings.service

    def fails_again(ctx: object, request, progress: object) -> RunResult:  # type: ignore[no-untyped-def]
        with work.db.session() as session:
            for record in request.ids:
                bookkeeping.record_failure(session, "fake_contacts", record, "x", "moodle", svc)
        return RunResult(kind="fake_contacts", status="failed_records")

    fake_kinds.contacts.behaviour = fails_again
    try:
        with work.db.session() as session:
            bookkeeping.record_failure(session, "fake_contacts", "003A", "x", "moodle", svc)
        gaps = []
        for _ in range(2):
            with work.db.session() as session:
                row = session.scalars(select(FailedRecord)).one()
                gaps.append(round((row.next_retry_at - row.last_failed_at).total_seconds()))
                row.next_retry_at = utcnow()  # the backoff is over
            assert work.tick()["retry"] == ["fake_contacts"]
            run_queued(work.huey)
        assert gaps == [10, 20]  # base, then doubled
        with work.db.session() as session:
            row = session.scalars(select(FailedRecord)).one()
        assert (row.attempts, row.parked, row.next_retry_at) == (3, True, None)
        assert work.tick()["retry"] == []  # parked: only `mentorsync retry` brings it back
        retries = [c.ids for c in fake_kinds.contacts.calls if c.mode == "ids"]
        assert retries == [("003A",), ("003A",)]
    finally:
        work.close()
        work.db.dispose()
