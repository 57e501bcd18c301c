"""Shared bookkeeping in the state database: cursors, runs and failed records.

Every sync kind uses these, so that ``mentorsync status``, ``mentorsync retry`` and the worker
treat all kinds alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connector.config import ServiceSettings
from connector.state.database import Cursor, FailedRecord, Run, utcnow


def get_cursor(session: Session, name: str) -> dt.datetime | None:
    """The saved cursor ``name`` (e.g. ``members:Contact``), or None before the first run."""
    row = session.get(Cursor, name)
    return row.value if row else None


def save_cursor(session: Session, name: str, value: dt.datetime) -> None:
    """Save cursor ``name``. A cursor never moves backwards."""
    row = session.get(Cursor, name)
    if row is None:
        session.add(Cursor(name=name, value=value, updated_at=utcnow()))
    elif row.value is None or value > row.value:
        row.value = value
        row.updated_at = utcnow()


def start_run(session: Session, kind: str, mode: str, dry_run: bool = False) -> Run:
    """Record the start of a run and return it (its id is set)."""
    run = Run(kind=kind, mode=mode, dry_run=dry_run, started_at=utcnow(), counts={})
    session.add(run)
    session.flush()
    return run


def finish_run(
    session: Session, run_id: int, status: str, counts: dict[str, int], error: str | None = None
) -> None:
    """Record how a run ended (a :class:`~connector.engine.kind.RunStatus` value)."""
    run = session.get(Run, run_id)
    if run is None:
        return
    run.status = str(status)
    run.counts = dict(counts)
    run.error = error
    run.finished_at = utcnow()


INTERRUPTED_REASON = "interrupted: its process stopped before the run ended (lock expired)"


def close_abandoned_runs(session: Session, kind: str) -> list[int]:
    """Record runs of ``kind`` still marked ``running`` as ``interrupted``; return their ids.

    Called by a run of ``kind`` as it starts, holding the kind's lock: no other run of the kind
    can be live, so a ``running`` row is one whose process died (SIGKILL, power cut) and whose
    lock expired or was cleared.
    """
    rows = session.scalars(
        select(Run).where(Run.kind == kind, Run.status == "running", Run.finished_at.is_(None))
    ).all()
    now = utcnow()
    for run in rows:
        run.status = "interrupted"
        run.error = INTERRUPTED_REASON
        run.finished_at = now
    return [run.id for run in rows]


def last_full_read_count(session: Session, kind: str, name: str) -> int | None:
    """The count ``name`` as the newest applied run of ``kind`` that recorded it had it.

    Full reads record such a figure (``linked_active``); the runs after them take it as the
    mass-change guard's base. Only the last 50 applied runs are looked at.
    """
    runs = session.scalars(
        select(Run)
        .where(Run.kind == kind, Run.status.in_(("ok", "failed_records")))
        .order_by(Run.id.desc())
        .limit(50)
    )
    for run in runs:
        if run.counts and name in run.counts:
            return int(run.counts[name])
    return None


def failed_ids(session: Session, kind: str) -> set[str]:
    """Record ids of ``kind`` with a failure row."""
    return set(session.scalars(select(FailedRecord.record_id).where(FailedRecord.kind == kind)))


def retry_delay(attempts: int, settings: ServiceSettings) -> dt.timedelta:
    """Backoff before the next retry of a failed record: base * 2^(attempts-1), capped at a day."""
    seconds = settings.retry_base_seconds * (2 ** max(attempts - 1, 0))
    return dt.timedelta(seconds=min(seconds, 86_400))


def record_failure(
    session: Session,
    kind: str,
    record_id: str,
    error_code: str,
    stage: str,
    settings: ServiceSettings,
    *,
    retry: bool = True,
) -> FailedRecord:
    """Keep a failed record with its error code; schedule its retry or park it.

    After ``settings.retry_max_attempts`` attempts the record is parked: no more automatic
    retries until an admin runs ``mentorsync retry``. A data error (``retry=False``: the
    Contact has no email, two Contacts share one) is not retried on a timer at all, since
    nothing changes until someone edits the record: it waits for the record to change (the
    incremental sweep then reads it again) or for ``mentorsync retry``.
    """
    now = utcnow()
    row = session.scalar(
        select(FailedRecord).where(FailedRecord.kind == kind, FailedRecord.record_id == record_id)
    )
    if row is None:
        row = FailedRecord(
            kind=kind,
            record_id=record_id,
            error_code=error_code[:200],
            stage=stage[:100],
            attempts=1,
            first_failed_at=now,
            last_failed_at=now,
        )
        session.add(row)
    else:
        row.attempts += 1
        row.error_code = error_code[:200]
        row.stage = stage[:100]
        row.last_failed_at = now
    row.parked = row.attempts >= settings.retry_max_attempts
    waiting = row.parked or not retry
    row.next_retry_at = None if waiting else now + retry_delay(row.attempts, settings)
    return row


def clear_failures(session: Session, kind: str, record_ids: Iterable[str]) -> None:
    """Forget failures of records that have now gone through."""
    ids = list(record_ids)
    for start in range(0, len(ids), 500):
        session.execute(
            delete(FailedRecord).where(
                FailedRecord.kind == kind, FailedRecord.record_id.in_(ids[start : start + 500])
            )
        )


def due_failures(session: Session, kind: str, now: dt.datetime | None = None) -> list[str]:
    """Record ids of ``kind`` whose retry is due (not parked)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(FailedRecord.record_id).where(
                FailedRecord.kind == kind,
                FailedRecord.parked.is_(False),
                FailedRecord.next_retry_at <= now,
            )
        )
    )
