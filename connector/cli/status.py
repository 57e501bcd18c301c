"""``mentorsync status``: the last runs, the cursors, the feeds and the failed records.

Reads the state database only (it never creates one, and calls Salesforce only for
``--show-names``). Everything shown is ids, codes and counts: the state database holds no names
or emails. Times are in the programme's time zone (``programme.timezone``), which the titles
name. Each failed record has its number (``#``), which ``mentorsync retry #`` takes, its error
code and stage, attempts, and when it is retried next (or ``parked``: no automatic retries until
an admin runs ``retry``).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.cli.options import json_option, kind_names, kind_option
from connector.cli.preflight import state_file
from connector.config import Settings
from connector.service.feeds import Feed, feeds
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
@kind_option("Only this sync kind.")
@click.option(
    "--show-names",
    is_flag=True,
    help="Show people's names beside failed records, read from Salesforce for this print only.",
)
@json_option
@click.pass_obj
def status(
    app: Any, run_limit: int, failure_limit: int, kind: str | None, show_names: bool, as_json: bool
) -> None:
    """Show the last runs, the cursors, the feeds (stalled or not) and the failed records.

    A feed is stalled when its kind had no event and no successful run for longer than
    service.stalled_feed_minutes (--json: "stalled": true; /metrics: mentorsync_feed_stalled).
    """
    settings: Settings = app.require(*(["salesforce"] if show_names else []), storage=False)
    path = state_file(settings)
    if path is not None and not path.exists():
        # Reading must not create the database (nor its directory).
        if as_json:
            click.echo(json.dumps({"database": None, "runs": [], "cursors": [], "failed": []}))
        else:
            click.echo(f"No state database yet ({path}): nothing has run with this config.")
        return
    zone = zoneinfo.ZoneInfo(settings.programme.timezone)
    db = StateDB(settings.database_url)
    try:
        with db.session() as session:
            report = collect(session, settings, run_limit, failure_limit, kind)
    finally:
        db.dispose()
    names = _names(app.settings, report["failed"]) if show_names else None
    if as_json:
        click.echo(json.dumps(_jsonable(report, names), indent=2))
    else:
        console = _console()
        for table in tables(report, zone, names):
            console.print(table)


def collect(
    session: Session, settings: Settings, run_limit: int, failure_limit: int, kind: str | None
) -> dict[str, Any]:
    """Everything status shows, as plain objects (rows of the state database)."""
    runs = select(Run).order_by(Run.id.desc()).limit(run_limit)
    cursors = select(Cursor).order_by(Cursor.name)
    where = [FailedRecord.kind == kind] if kind else []
    if kind:
        runs = runs.where(Run.kind == kind)
        cursors = cursors.where(Cursor.name.startswith(f"{kind}:"))
    count = select(func.count()).select_from(FailedRecord)
    total = session.scalar(count.where(*where)) or 0
    parked = session.scalar(count.where(*where, FailedRecord.parked.is_(True))) or 0
    failed = (
        select(FailedRecord)
        .where(*where)
        .order_by(FailedRecord.last_failed_at.desc(), FailedRecord.id.desc())
        .limit(failure_limit)
    )
    limit = settings.service.stalled_feed_minutes
    all_feeds = feeds(session, [kind] if kind else kind_names(), limit)
    return {
        "runs": list(session.scalars(runs)),
        "cursors": list(session.scalars(cursors)),
        "failed": list(session.scalars(failed)),
        "failed_total": total,
        "failed_parked": parked,
        "failure_limit": failure_limit,
        "feeds": [f for f in all_feeds if not kind or f.kind == kind],
    }


def _names(settings: Settings, failed: list[FailedRecord]) -> dict[str, str]:
    from connector.cli.names import read_names, source_object
    from connector.cli.sync import _kinds
    from connector.context import Context

    registry = _kinds()
    ctx = Context(settings)
    names: dict[str, str] = {}
    try:
        for kind in sorted({row.kind for row in failed}):
            ids = [row.record_id for row in failed if row.kind == kind]
            obj = source_object(registry[kind], settings) if kind in registry else "Contact"
            names.update(read_names(ctx.salesforce, obj, ids))
    finally:
        ctx.close()
    return names


def _console() -> Console:
    """A console; when not a terminal (a pipe, a log), wide enough that ids are not folded."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def when(value: dt.datetime | None, zone: zoneinfo.ZoneInfo, *, short: bool = False) -> str:
    """``value`` in the programme's time zone; ``-`` when unset.

    ``short``: to the minute, and without the year when it is this year's (narrow tables);
    ``--json`` has every time whole.
    """
    if not value:
        return "-"
    local = value.astimezone(zone)
    if not short:
        return local.strftime("%Y-%m-%d %H:%M:%S")
    this_year = dt.datetime.now(zone).year == local.year
    return local.strftime("%m-%d %H:%M" if this_year else "%Y-%m-%d %H:%M")


def _table(title: str, caption: str = "") -> Table:
    # Light borders and one space of padding: the tables fit an 80-column terminal.
    return Table(
        title=title, title_justify="left", caption=caption, caption_justify="left",
        box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
    )


def tables(
    report: dict[str, Any], zone: zoneinfo.ZoneInfo, names: dict[str, str] | None
) -> list[Table]:
    """The four tables of ``status``; titles name the time zone of the times shown."""
    from connector.cli.report import summary_words
    from connector.cli.sync import _kinds

    registry = _kinds()
    label = f"times in {zone.key}"
    runs = _table(f"Last runs ({label})")
    for column in ("run", "kind"):
        runs.add_column(column, no_wrap=True)  # ids, codes and times are read whole
    runs.add_column("mode")
    for column in ("started", "status"):
        runs.add_column(column, no_wrap=True)
    runs.add_column("outcome", ratio=1)
    for run in report["runs"]:
        # In words, as `sync` says them; every counter is in --json and /metrics.
        outcome = ", ".join(summary_words(registry.get(run.kind), run.counts or {})) or "-"
        if run.error:
            outcome += f" ({run.error})"
        mode = f"{run.mode} (dry run)" if run.dry_run else run.mode
        runs.add_row(
            str(run.id), run.kind, mode, when(run.started_at, zone, short=True), run.status,
            outcome,
        )
    if not runs.row_count:
        runs.add_row("-", "no runs yet", "", "", "", "")

    cursors = _table(f"Cursors ({label})")
    for column in ("cursor", "changes read up to", "saved"):
        cursors.add_column(column)
    for cursor in report["cursors"]:
        cursors.add_row(cursor.name, when(cursor.value, zone), when(cursor.updated_at, zone))
    if not cursors.row_count:
        cursors.add_row("no cursors yet", "", "")

    feed_table = _table(f"Feeds ({label})")
    for column in ("kind", "last event", "last successful run", "alarm"):
        feed_table.add_column(column)
    for feed in report["feeds"]:
        alarm = feed.describe()
        style = "bold red" if feed.stalled else "green" if alarm == "ok" else ""
        feed_table.add_row(
            feed.kind, when(feed.last_event, zone), when(feed.last_success, zone),
            f"[{style}]{alarm}[/]" if style else alarm,
        )
    return [runs, cursors, feed_table, _failures_table(report, zone, names)]


def _failures_table(
    report: dict[str, Any], zone: zoneinfo.ZoneInfo, names: dict[str, str] | None
) -> Table:
    total, limit = report["failed_total"], report["failure_limit"]
    title = f"Failed records: {total} ({report['failed_parked']} parked)"
    if total > limit:
        title += f", showing the {limit} most recent"
    caption = "retry now: mentorsync retry # (or the record Id); parked ones wait for it"
    table = _table(title, caption if total else "")
    columns = ["#", "kind", "record", "error (stage)", "tries", "last failed", "next retry"]
    if names is not None:
        columns.insert(3, "name")
    for column in columns:
        if column in ("error (stage)", "name"):
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, no_wrap=True)
    for row in report["failed"]:
        cells = [
            str(row.id), row.kind, row.record_id, f"{row.error_code} ({row.stage})",
            str(row.attempts), when(row.last_failed_at, zone, short=True),
            "parked" if row.parked else when(row.next_retry_at, zone, short=True),
        ]
        if names is not None:
            cells.insert(3, names.get(row.record_id, "?"))
        table.add_row(*cells)
    if not table.row_count:
        table.add_row("-", "-", "none", *[""] * (len(columns) - 3))
    return table


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _feed_json(feed: Feed) -> dict[str, Any]:
    return {
        "kind": feed.kind,
        "last_event": _iso(feed.last_event),
        "last_success": _iso(feed.last_success),
        "stalled": feed.stalled,
        "limit_minutes": feed.limit_minutes,
    }


def _jsonable(report: dict[str, Any], names: dict[str, str] | None) -> dict[str, Any]:
    """The report for ``--json``: UTC ISO 8601 times (the programme zone is for people)."""
    failed = []
    for row in report["failed"]:
        item = {
            "number": row.id, "kind": row.kind, "record": row.record_id,
            "error": row.error_code, "stage": row.stage, "attempts": row.attempts,
            "last_failed": _iso(row.last_failed_at), "parked": bool(row.parked),
            "next_retry": None if row.parked else _iso(row.next_retry_at),
        }
        if names is not None:
            item["name"] = names.get(row.record_id)
        failed.append(item)
    return {
        "runs": [
            {
                "run": r.id, "kind": r.kind, "mode": r.mode, "dry_run": bool(r.dry_run),
                "started": _iso(r.started_at), "finished": _iso(r.finished_at),
                "status": r.status, "counts": r.counts or {}, "reason": r.error or None,
            }
            for r in report["runs"]
        ],
        "cursors": [
            {"cursor": c.name, "value": _iso(c.value), "saved": _iso(c.updated_at)}
            for c in report["cursors"]
        ],
        "feeds": [_feed_json(f) for f in report["feeds"]],
        "failed_total": report["failed_total"],
        "failed_parked": report["failed_parked"],
        "failed": failed,
    }


COMMANDS: list[click.Command] = [status]
