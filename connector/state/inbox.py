"""The durable inbox: every notification is stored here before its sender is acknowledged.

The web service calls :func:`store` (all notifications of one delivery in ONE transaction,
duplicates skipped). The worker leases pending rows of a sync kind (:func:`lease`), runs the kind
once for all their record ids, then marks them done (:func:`finish`) or backs them off
(:func:`back_off`). The sweeper (:func:`sweep`) puts rows whose lease ran out back to pending, so a
task lost with a killed worker or a dropped queue message is done later anyway.

Statuses: ``pending`` (waiting), ``leased`` (a run has them, or they wait out a backoff until
``lease_until``), ``done``, ``failed`` (gave up after ``service.retry_max_attempts``; an admin
requeues them with ``mentorsync retry --all``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import DBAPIError

from connector.state.database import InboxEvent, StateDB, utcnow

# Done rows are kept this long so that late redeliveries (Salesforce retries for 24 hours)
# are still recognised as duplicates; then the sweeper deletes them.
KEEP_DONE = dt.timedelta(days=7)
# SQL "IN" lists are sent in chunks of this size.
_CHUNK = 500


@dataclass(frozen=True)
class Notice:
    """One notification to store: what changed, where it routes, and its dedup key."""

    dedup_key: str
    source: str  # salesforce-outbound | salesforce-events | moodle
    kind: str
    object: str
    record_id: str
    modstamp: str | None = None


@dataclass
class StoreResult:
    """What :func:`store` did."""

    stored: int = 0
    duplicates: int = 0
    # Sync kinds that got new rows: the ones to wake up.
    kinds: set[str] = field(default_factory=set)


class StoreTimeout(RuntimeError):
    """The inbox write did not end in time (the database hangs), or the request writing the
    batch was interrupted: the delivery may or may not be stored. Callers answer as for a
    database error (503: the sender delivers again, and a delivery that was stored after all is
    then a duplicate)."""


def _chunks(items: Sequence[object], size: int = _CHUNK) -> Iterable[Sequence[object]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# The whole batch is ONE statement: every notice of it in one parameter, a JSON array of rows,
# so that the statement text, and on PostgreSQL its server-side prepared plan, is the same for
# any batch size. The database skips what it already holds (ON CONFLICT DO NOTHING over every
# unique index): a stored ``dedup_key``, or a stored change of the same record with the same
# SystemModstamp (``ux_inbox_change``). RETURNING says what was new. Sent as written, below
# SQLAlchemy (see _insert_new): composing and compiling Core expressions cost more CPU than the
# database's work here (bench/webhooks.py).
#
# The statement reads nothing from the table, so its plan cannot depend on how big the table
# is. It used to look each change up (NOT EXISTS), which on PostgreSQL cost either way: planned
# for each batch (0.14 ms of the server's 0.44 ms per request, bench/webhooks.py ``group-v3``),
# or, once PostgreSQL settled on a cached generic plan, a plan made while the inbox was small
# that hashed the whole table for the lookup and went on doing so as it grew (1.4-1.8 ms per
# batch by the end of an 8,800-row run, measured with larger batches: the web processes' writers
# taking turns). Without the lookup: 0.19 ms per request, nothing planned twice.
#
# On PostgreSQL the rows go in in key order. Writers of several processes run at once there, and
# a row one of them has inserted but not committed makes another inserting the same key wait for
# it; inserted in the order they came, two writers holding keys the other wants deadlock
# ("deadlock detected", 40P01: one of them fails and its deliveries answer 503). In one order, a
# writer waits only for keys below the one it is at, so no two ever wait for each other. (One
# change under two keys can still cross: two writers each holding a change the other's next row
# repeats. That takes the same changes arriving at once in two deliveries under different
# notification Ids, in opposite key order; PostgreSQL then fails one, which answers 503 and is
# delivered again.)
_SQLITE_INSERT = """
INSERT INTO inbox
    (dedup_key, source, kind, object, record_id, modstamp, received_at, status, attempts)
SELECT n.value ->> 0, n.value ->> 1, n.value ->> 2, n.value ->> 3, n.value ->> 4, n.value ->> 5,
       ?, 'pending', 0
FROM json_each(?) AS n
WHERE true
ON CONFLICT DO NOTHING
RETURNING dedup_key
"""
# libpq's own placeholders: the statement is prepared and run with libpq's calls (_insert_postgres).
_POSTGRES_INSERT = """
INSERT INTO inbox
    (dedup_key, source, kind, object, record_id, modstamp, received_at, status, attempts)
SELECT n ->> 0, n ->> 1, n ->> 2, n ->> 3, n ->> 4, n ->> 5, $1::timestamp, 'pending', 0
FROM jsonb_array_elements($2::jsonb) AS n
ORDER BY n ->> 0
ON CONFLICT DO NOTHING
RETURNING dedup_key
"""
# The server-side prepared statement's name, and the key of "prepared on this connection" in
# the pooled connection's ``info`` (which lives as long as the driver's connection does).
_PREPARED = "mentorsync_inbox_insert"


def insert_statement(dialect: str) -> str:
    """The one statement :func:`store_batch` runs, for ``sqlite`` or ``postgresql``."""
    return _SQLITE_INSERT if dialect == "sqlite" else _POSTGRES_INSERT


def store(db: StateDB, notices: Sequence[Notice]) -> StoreResult:
    """Store ``notices`` durably, skipping duplicates; return what was new.

    A notice is a duplicate when its ``dedup_key`` is already stored, or (for notices that carry
    a ``modstamp``) when the same record with the same ``SystemModstamp`` is: one change reported
    by two messages. Returns only after the rows are committed; database errors propagate as
    :class:`~sqlalchemy.exc.SQLAlchemyError` (the caller answers 503 and nothing of this
    delivery is stored), and a write that does not end in time as :class:`StoreTimeout`.

    Concurrent calls in one process are group-committed (:mod:`connector.state.inbox_writer`):
    one statement, and one fsync, for every delivery that arrived while the previous commit was
    being written, instead of one each, contending for the database's write lock.
    """
    from connector.state.inbox_writer import writer_for

    return writer_for(db).submit(notices)


def store_batch(conn: Connection, batch: Sequence[Sequence[Notice]]) -> list[StoreResult]:
    """Store several deliveries with one statement on ``conn``; one result each.

    On PostgreSQL ``conn`` is in autocommit (the statement is its own transaction: one round
    trip); on SQLite the caller has begun the transaction and commits it. Deliveries are taken
    in order, so a notification in two deliveries of one batch is stored by the first and
    counted as a duplicate by the second, exactly as if they had been stored one after the
    other. Driver errors are raised as SQLAlchemy's (``OperationalError``, ...).

    Between processes, the unique indexes decide: a notification, or one change under two
    keys, stored twice at once ends as one row.
    """
    keys: set[str] = set()
    changes: set[tuple[str, str]] = set()
    candidates: list[list[Notice]] = []
    rows: list[Notice] = []
    results = [StoreResult() for _ in batch]
    for result, notices in zip(results, batch, strict=True):
        mine: list[Notice] = []
        for notice in notices:
            change = (notice.record_id, notice.modstamp) if notice.modstamp else None
            if notice.dedup_key in keys or (change is not None and change in changes):
                result.duplicates += 1
                continue
            keys.add(notice.dedup_key)
            if change is not None:
                changes.add(change)
            mine.append(notice)
        candidates.append(mine)
        rows.extend(mine)
    stored = _insert_new(conn, rows) if rows else set()
    for result, mine in zip(results, candidates, strict=True):
        for notice in mine:
            if notice.dedup_key in stored:
                result.stored += 1
                result.kinds.add(notice.kind)
            else:
                result.duplicates += 1
    return results


def insert_params(rows: Sequence[Notice]) -> tuple[str, str]:
    """The parameters of :func:`insert_statement` for ``rows``, received now, as text.

    The time received, in the text form SQLAlchemy's SQLite DateTime stores (and compares as
    text), which PostgreSQL reads as a ``timestamp``; and the rows, as a JSON array of arrays.
    """
    now = utcnow().replace(tzinfo=None)  # the state database keeps naive UTC (UTCDateTime)
    values = [[n.dedup_key, n.source, n.kind, n.object, n.record_id, n.modstamp] for n in rows]
    return now.strftime("%Y-%m-%d %H:%M:%S.%f"), json.dumps(values)


def _insert_new(conn: Connection, rows: Sequence[Notice]) -> set[str]:
    """Insert ``rows`` (no two with one key or change) unless stored; return the new keys."""
    dialect = conn.dialect
    params = insert_params(rows)
    statement = insert_statement(dialect.name)
    # Below SQLAlchemy: its execution context, result object and events doubled the cost of a
    # small batch's statement (0.21 against 0.11 ms of CPU on SQLite, measured in-process) and
    # it needs none of them; the transaction stays SQLAlchemy's. Driver errors are wrapped as
    # SQLAlchemy would have: callers answer 503 on any SQLAlchemyError.
    try:
        if dialect.name == "postgresql":
            return _insert_postgres(conn, params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement, params)
            return {row[0] for row in cursor.fetchall()}
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc


def _insert_postgres(conn: Connection, params: tuple[str, str]) -> set[str]:
    """Run the insert with libpq's prepared-statement call, on psycopg's connection.

    psycopg's cursor spends more of the web process's CPU on one small statement than libpq's
    call does (0.29 against 0.14 ms per batch, measured in-process: its Python-level query
    conversion, per-parameter dumpers, prepare bookkeeping and result rows), and nothing here
    needs it: two text parameters in, one text column out. The statement is prepared once per
    connection, as psycopg would after a few runs. ``conn`` must be in autocommit: the statement
    is its own transaction. Errors are psycopg's own, built from the server's result.
    """
    import psycopg
    from psycopg import pq

    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection) or not driver.autocommit:
        raise TypeError("the inbox insert needs a psycopg connection in autocommit")
    encoding = driver.info.encoding
    pgconn = driver.pgconn
    info = conn.connection.info
    if not info.get(_PREPARED):
        prepared = pgconn.prepare(_PREPARED.encode(), _POSTGRES_INSERT.encode(encoding))
        if prepared.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(prepared, encoding=encoding)
        info[_PREPARED] = True
    # libpq's call waits for the server without holding the GIL, as psycopg's cursor does.
    result = pgconn.exec_prepared(_PREPARED.encode(), [p.encode(encoding) for p in params])
    if result.status != pq.ExecStatus.TUPLES_OK:
        raise psycopg.errors.error_from_result(result, encoding=encoding)
    keys = (result.get_value(row, 0) for row in range(result.ntuples))
    return {key.decode(encoding) for key in keys if key is not None}


@dataclass(frozen=True)
class Leased:
    """Rows leased by one drain: their row ids and the distinct record ids, in arrival order."""

    row_ids: tuple[int, ...]
    record_ids: tuple[str, ...]
    max_attempts: int


def lease(db: StateDB, kind: str, limit: int, lease_seconds: float) -> Leased:
    """Lease up to ``limit`` pending rows of ``kind`` (oldest first) for ``lease_seconds``."""
    now = utcnow()
    with db.session() as session:
        rows = session.execute(
            select(InboxEvent.id, InboxEvent.record_id, InboxEvent.attempts)
            .where(InboxEvent.kind == kind, InboxEvent.status == "pending")
            .order_by(InboxEvent.id)
            .limit(limit)
        ).all()
        row_ids = [r.id for r in rows]
        for chunk in _chunks(row_ids):
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(chunk), InboxEvent.status == "pending")
                .values(
                    status="leased",
                    lease_until=now + dt.timedelta(seconds=lease_seconds),
                    attempts=InboxEvent.attempts + 1,
                )
            )
    record_ids = tuple(dict.fromkeys(r.record_id for r in rows))
    return Leased(tuple(row_ids), record_ids, max((r.attempts + 1 for r in rows), default=0))


def extend(db: StateDB, row_ids: Sequence[int], lease_seconds: float) -> None:
    """Push the lease of rows still being worked on further out."""
    until = utcnow() + dt.timedelta(seconds=lease_seconds)
    with db.session() as session:
        for chunk in _chunks(row_ids):
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(chunk), InboxEvent.status == "leased")
                .values(lease_until=until)
            )


def finish(db: StateDB, row_ids: Sequence[int]) -> None:
    """Mark rows done (their records were reconciled; per-record failures are tracked apart)."""
    now = utcnow()
    with db.session() as session:
        for chunk in _chunks(row_ids):
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(chunk))
                .values(status="done", processed_at=now, lease_until=None, error_code=None)
            )


def back_off(
    db: StateDB, row_ids: Sequence[int], error_code: str, delay: dt.timedelta, max_attempts: int
) -> None:
    """After a failed run: keep rows leased until ``delay`` has passed, or fail them for good.

    The sweeper puts them back to pending when the delay is over. Rows that have had
    ``max_attempts`` attempts become ``failed`` (``mentorsync retry --all`` requeues them).
    """
    until = utcnow() + delay
    with db.session() as session:
        for chunk in _chunks(row_ids):
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(chunk), InboxEvent.attempts >= max_attempts)
                .values(status="failed", lease_until=None, error_code=error_code[:200])
            )
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(chunk), InboxEvent.attempts < max_attempts)
                .values(status="leased", lease_until=until, error_code=error_code[:200])
            )


def sweep(db: StateDB, lease_seconds: float) -> set[str]:
    """Heal the inbox; return the sync kinds that have work waiting (to enqueue a drain for).

    Rows leased past their lease (a worker died, or a backoff is over) go back to pending.
    Rows pending longer than ``lease_seconds`` (their queue task was lost) are work waiting.
    Done rows older than :data:`KEEP_DONE` are deleted.
    """
    now = utcnow()
    stale = now - dt.timedelta(seconds=lease_seconds)
    with db.session() as session:
        expired = session.execute(
            update(InboxEvent)
            .where(InboxEvent.status == "leased", InboxEvent.lease_until <= now)
            .values(status="pending", lease_until=None)
            .returning(InboxEvent.kind)
        )
        kinds = set(expired.scalars())
        kinds.update(
            session.scalars(
                select(InboxEvent.kind)
                .where(InboxEvent.status == "pending", InboxEvent.received_at <= stale)
                .distinct()
            )
        )
        session.execute(
            delete(InboxEvent).where(
                InboxEvent.status == "done", InboxEvent.processed_at <= now - KEEP_DONE
            )
        )
    return kinds


def has_pending(db: StateDB, kind: str) -> bool:
    """Whether ``kind`` has rows waiting to be drained."""
    with db.session() as session:
        return (
            session.scalar(
                select(InboxEvent.id)
                .where(InboxEvent.kind == kind, InboxEvent.status == "pending")
                .limit(1)
            )
            is not None
        )


def requeue_failed(db: StateDB) -> set[str]:
    """Put every ``failed`` row back to pending with a fresh attempt count; return their kinds."""
    with db.session() as session:
        result = session.execute(
            update(InboxEvent)
            .where(InboxEvent.status == "failed")
            .values(status="pending", attempts=0, lease_until=None)
            .returning(InboxEvent.kind)
        )
        return set(result.scalars())


@dataclass
class InboxStats:
    """Row counts by status and the age of the oldest row still waiting."""

    counts: dict[str, int]
    oldest_pending_seconds: float


def stats(db: StateDB) -> InboxStats:
    """Counts by status and the oldest waiting (pending or leased) row's age in seconds."""
    now = utcnow()
    with db.session() as session:
        counts = {
            status: int(n)
            for status, n in session.execute(
                select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
            )
        }
        oldest = session.scalar(
            select(func.min(InboxEvent.received_at)).where(
                InboxEvent.status.in_(("pending", "leased"))
            )
        )
    age = 0.0
    if oldest is not None:
        if oldest.tzinfo is None:  # min() bypasses the column type on some backends
            oldest = oldest.replace(tzinfo=dt.UTC)
        age = max((now - oldest).total_seconds(), 0.0)
    return InboxStats(counts, age)
