"""``mentorsync status``: the last runs, the cursors and the failed records, as tables.

Reads the state database only; it never calls Moodle or Salesforce. Everything shown is ids,
codes and counts (the state database holds no names or emails). Each failed record has its
number (``#``), which ``mentorsync retry #`` takes, its error code and stage, attempts, and when
it is retried next (or ``parked``: no automatic retries until an admin runs ``retry``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from connector.state.database import Cursor, FailedRecord, Run, StateDB


@click.command()
@click.option("--runs", "run_limit", default=10, show_default=True, help="How many runs to show.")
@click.option(
    "--failures",
    "failure_limit",
    default=50,
    show_default=True,
    help="How many failed records to show (most recent first).",
)
@click.option("--kind", default=None, help="Only this sync kind (e.g. members).")
@click.pass_obj
def status(app: Any, run_limit: int, failure_limit: int, kind: str | None) -> None:
    """Show the last runs, the cursors and the failed records (parked ones included)."""
    db = StateDB(app.settings.database_url)
    console = _console()
    try:
        with db.session() as session:
            console.print(_runs_table(session, run_limit, kind))
            console.print(_cursors_table(session, kind))
            console.print(_failures_table(session, failure_limit, kind))
    finally:
        db.dispose()


def _console() -> Console:
    """A console; when not a terminal (a pipe, a log), wide enough that ids are not folded."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _runs_table(session: Any, limit: int, kind: str | None) -> Table:
    query = select(Run).order_by(Run.id.desc()).limit(limit)
    if kind:
        query = query.where(Run.kind == kind)
    table = Table(title="Last runs (UTC)", title_justify="left")
    for column in ("run", "kind", "mode", "started", "finished", "status", "counts", "reason"):
        table.add_column(column, overflow="fold")
    for run in session.scalars(query):
        counts = ", ".join(f"{k}={v}" for k, v in sorted((run.counts or {}).items()) if v)
        mode = f"{run.mode} (dry run)" if run.dry_run else run.mode
        table.add_row(
            str(run.id),
            run.kind,
            mode,
            _when(run.started_at),
            _when(run.finished_at),
            run.status,
            counts or "-",
            run.error or "",
        )
    if not table.row_count:
        table.add_row("-", "no runs yet", "", "", "", "", "", "")
    return table


def _cursors_table(session: Any, kind: str | None) -> Table:
    query = select(Cursor).order_by(Cursor.name)
    if kind:
        query = query.where(Cursor.name.startswith(f"{kind}:"))
    table = Table(title="Cursors (UTC)", title_justify="left")
    table.add_column("cursor")
    table.add_column("changes read up to")
    table.add_column("saved")
    for cursor in session.scalars(query):
        table.add_row(cursor.name, _when(cursor.value), _when(cursor.updated_at))
    if not table.row_count:
        table.add_row("no cursors yet", "", "")
    return table


def _failures_table(session: Any, limit: int, kind: str | None) -> Table:
    where = [FailedRecord.kind == kind] if kind else []
    total = session.scalar(select(func.count()).select_from(FailedRecord).where(*where)) or 0
    parked = (
        session.scalar(
            select(func.count())
            .select_from(FailedRecord)
            .where(*where, FailedRecord.parked.is_(True))
        )
        or 0
    )
    query = (
        select(FailedRecord)
        .where(*where)
        .order_by(FailedRecord.last_failed_at.desc(), FailedRecord.id.desc())
        .limit(limit)
    )
    title = f"Failed records: {total} ({parked} parked)"
    if total > limit:
        title += f", showing the {limit} most recent"
    caption = "retry now: mentorsync retry # (or the record Id); parked ones wait for it"
    if not total:
        caption = ""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    columns = ("#", "kind", "record", "error", "stage", "attempts", "last failed", "next retry")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in session.scalars(query):
        next_retry = "parked" if row.parked else _when(row.next_retry_at)
        table.add_row(
            str(row.id),
            row.kind,
            row.record_id,
            row.error_code,
            row.stage,
            str(row.attempts),
            _when(row.last_failed_at),
            next_retry,
        )
    if not table.row_count:
        table.add_row("-", "-", "none", "", "", "", "", "")
    return table


COMMANDS: list[click.Command] = [status]
