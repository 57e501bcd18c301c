"""``mentorsync retry``: un-park failed records; the worker retries them, or ``--now`` does here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy import or_, select

from connector.cli.options import json_option, kind_option
from connector.cli.report import print_result, result_json
from connector.cli.sync import _console, _kinds, exit_status, run_kind
from connector.config import Settings
from connector.engine.kind import RunResult, SyncRequest
from connector.state.database import FailedRecord, StateDB, utcnow


@click.command()
@click.option("--all", "all_", is_flag=True, help="Every failed record, parked or not.")
@kind_option("Only records of this sync kind.")
@click.option(
    "--now",
    is_flag=True,
    help="Run the retries here and now (as `sync <kind> ID...`) instead of leaving them to "
    "the worker.",
)
@json_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.pass_obj
def retry(
    state: Any, all_: bool, kind: str | None, now: bool, as_json: bool, ids: tuple[str, ...]
) -> None:
    """Un-park failed records and retry them: by the worker, or here with --now.

    IDs are failed-record numbers (the # column of `mentorsync status`) or record Ids. Without
    --now the records are made due at once and the worker (`mentorsync run` or `mentorsync
    worker`) retries them within a minute; nothing happens while no worker runs. --all also
    requeues inbox events that were given up on.
    """
    if all_ == bool(ids):
        raise click.UsageError("give either --all or one or more IDS")
    settings: Settings = state.require("moodle", "salesforce") if now else state.require()
    db = StateDB(settings.database_url)
    try:
        kinds_done, count, missing = requeue_failures(db, ids, all_, kind)
        records = _due_records(db, kinds_done) if now else {}
        inbox_kinds: set[str] = set()
        if all_:
            from connector.state import inbox

            inbox_kinds = inbox.requeue_failed(db)
        queued = False if now else _enqueue_retries(settings, db, kinds_done, inbox_kinds)
    finally:
        db.dispose()
    for record in missing:
        click.echo(f"not a failed record: {record}", err=True)
    of = f" of {', '.join(sorted(kinds_done))}" if kinds_done else ""
    runs = _run_now(settings, records) if now else []
    if as_json:
        import json

        click.echo(
            json.dumps(
                {
                    "requeued": count,
                    "kinds": sorted(kinds_done),
                    "not_found": missing,
                    "queued_for_worker": queued,
                    "runs": [json.loads(result_json(kind, r)) for kind, r in runs],
                },
                indent=2,
            )
        )
    elif now:
        for kind, result in runs:
            print_result(_console(), kind, result)
        click.echo(f"retried {count} failed record(s){of} here")
    elif count:
        click.echo(
            f"requeued {count} failed record(s){of}: a running worker (`mentorsync run` or "
            "`mentorsync worker`) retries them within a minute; while none runs nothing "
            "happens. `mentorsync retry --now ...` runs them here instead."
        )
    else:
        click.echo("requeued 0 failed record(s)")
    if missing:
        raise SystemExit(1)
    if runs:  # as `sync` would: 1 when records failed again, 2 when a run stopped
        raise SystemExit(max(exit_status(result) for _, result in runs))


def _due_records(db: StateDB, kinds: set[str]) -> dict[str, list[str]]:
    """The record Ids of the failed records of ``kinds`` that are due now, by kind."""
    now = utcnow()
    out: dict[str, list[str]] = {}
    with db.session() as session:
        rows = session.scalars(
            select(FailedRecord).where(
                FailedRecord.kind.in_(sorted(kinds)),
                FailedRecord.parked.is_(False),
                FailedRecord.next_retry_at <= now,
            )
        )
        for row in rows:
            out.setdefault(row.kind, []).append(row.record_id)
    return out


def _run_now(settings: Settings, records: dict[str, list[str]]) -> list[tuple[Any, RunResult]]:
    """Run each kind for its due records, as ``sync <kind> ID...`` would: ``(kind, result)``."""
    registry = _kinds()
    out = []
    for name, ids in sorted(records.items()):
        kind = registry.get(name)
        if kind is None:
            click.echo(f"{name}: not a sync kind any more; its records stay due", err=True)
            continue
        request = SyncRequest(mode="ids", ids=tuple(dict.fromkeys(ids)))
        out.append((kind, run_kind(settings, name, kind, request, quiet=True)))
    return out


def requeue_failures(
    db: StateDB, ids: Sequence[str], all_: bool, kind: str | None
) -> tuple[set[str], int, list[str]]:
    """Make failed records due now with a fresh attempt count; return (kinds, count, unknown ids).

    An id that is all digits is a failed-record number, anything else a record Id.
    """
    now = utcnow()
    kinds: set[str] = set()
    missing: list[str] = []
    count = 0
    with db.session() as session:
        query = select(FailedRecord)
        if kind:
            query = query.where(FailedRecord.kind == kind)
        if not all_:
            numbers = [int(i) for i in ids if i.isdigit()]
            record_ids = [i for i in ids if not i.isdigit()]
            query = query.where(
                or_(FailedRecord.id.in_(numbers), FailedRecord.record_id.in_(record_ids))
            )
        rows = session.scalars(query).all()
        found = {str(r.id) for r in rows} | {r.record_id for r in rows}
        missing = [i for i in ids if i not in found]
        for row in rows:
            row.parked = False
            row.attempts = 0
            row.next_retry_at = now
            kinds.add(row.kind)
            count += 1
    return kinds, count, missing


def _enqueue_retries(
    settings: Settings, db: StateDB, kinds: set[str], inbox_kinds: set[str]
) -> bool:
    """Tell the worker now (True); if the queue is unreachable, the scheduler's next minute does."""
    if not kinds and not inbox_kinds:
        return False
    from connector.service.worker import Worker

    try:
        work = Worker(settings, db=db)
        for name in sorted(kinds):
            work.retry_task(name)
        work.wake(sorted(inbox_kinds), delay=0)
        work.close()
        return True
    except Exception as exc:  # noqa: BLE001  (any queue backend error; the records are due anyway)
        click.echo(
            f"queue unreachable ({type(exc).__name__}); the scheduler will retry them "
            "within a minute",
            err=True,
        )
        return False


COMMANDS: list[click.Command] = [retry]
