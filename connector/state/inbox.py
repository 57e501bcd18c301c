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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

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


def _chunks(items: Sequence[object], size: int = _CHUNK) -> Iterable[Sequence[object]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store(db: StateDB, notices: Sequence[Notice]) -> StoreResult:
    """Store ``notices`` in one transaction, skipping duplicates; return what was new.

    A notice is a duplicate when its ``dedup_key`` is already stored, or (for notices that carry
    a ``modstamp``) when the same record with the same ``SystemModstamp`` is: one change reported
    by two messages. Database errors propagate (the caller answers 503 and stores nothing).
    """
    try:
        return _store_once(db, notices)
    except IntegrityError:
        # A concurrent delivery of the same notification committed first; a second pass sees
        # its rows and skips them.
        return _store_once(db, notices)


def _store_once(db: StateDB, notices: Sequence[Notice]) -> StoreResult:
    # SQLAlchemy Core on one connection, not the ORM: this is the hot path of every webhook,
    # and the ORM's unit of work costs several times the database's own work here.
    result = StoreResult()
    unique: dict[str, Notice] = {}
    changes: set[tuple[str, str]] = set()
    for notice in notices:
        change = (notice.record_id, notice.modstamp) if notice.modstamp else None
        if notice.dedup_key in unique or (change and change in changes):
            result.duplicates += 1
            continue
        unique[notice.dedup_key] = notice
        if change:
            changes.add(change)
    keys = list(unique)
    changed_ids = sorted({record_id for record_id, _ in changes})
    existing: set[str] = set()
    known_changes: set[tuple[str, str]] = set()
    now = utcnow()
    with db.engine.begin() as conn:
        for start in range(0, max(len(keys), len(changed_ids)), _CHUNK):
            key_chunk = keys[start : start + _CHUNK]
            id_chunk = changed_ids[start : start + _CHUNK]
            rows = conn.execute(
                select(InboxEvent.dedup_key, InboxEvent.record_id, InboxEvent.modstamp).where(
                    or_(InboxEvent.dedup_key.in_(key_chunk), InboxEvent.record_id.in_(id_chunk))
                )
            )
            for key, record_id, modstamp in rows:
                existing.add(key)
                if modstamp is not None:
                    known_changes.add((record_id, modstamp))
        new_rows = []
        for key, notice in unique.items():
            if key in existing or (
                notice.modstamp and (notice.record_id, notice.modstamp) in known_changes
            ):
                result.duplicates += 1
                continue
            new_rows.append(
                {
                    "dedup_key": key,
                    "source": notice.source,
                    "kind": notice.kind,
                    "object": notice.object,
                    "record_id": notice.record_id,
                    "modstamp": notice.modstamp,
                    "received_at": now,
                    "status": "pending",
                    "attempts": 0,
                }
            )
            result.kinds.add(notice.kind)
        if new_rows:
            conn.execute(insert(InboxEvent), new_rows)
        result.stored = len(new_rows)
    return result


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
