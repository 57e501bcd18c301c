"""``mentorsync sync <kind>``: run one sync kind now, from the command line.

The subcommands are made from :func:`connector.engine.kind.kinds` when the group is used, so a sync
kind added later (pairs, progress) gets its command without changes here. Every kind takes the
same options:

    mentorsync sync members [--full] [--ids ID ...] [--dry-run] [--allow-mass-change]

Exit status: 0 when everything went through (or a dry run), 1 when some records failed, 2 when
the run stopped (mass-change guard, configuration, budget, an outage).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.clients.salesforce import soql
from connector.context import Context
from connector.engine.kind import RunResult, SyncKind, SyncRequest, kinds

EXIT_OK = 0
EXIT_FAILED_RECORDS = 1
EXIT_STOPPED = 2


class KindsGroup(click.Group):
    """A group whose subcommands are the registered sync kinds."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(kinds())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        kind = kinds().get(cmd_name)
        return make_command(cmd_name, kind) if kind is not None else None


@click.group(name="sync", cls=KindsGroup)
def sync_group() -> None:
    """Run a sync now (members: Contacts -> Moodle users).

    Without options a run is incremental: what changed since the last run. Exit status 1 when
    records failed, 2 when the run stopped.
    """


def make_command(name: str, kind: SyncKind) -> click.Command:
    """The ``mentorsync sync <name>`` command of one sync kind."""

    @click.command(name=name, help=_help(name, kind))
    @click.option("--full", is_flag=True, help="Reconcile everything, not only what changed.")
    @click.option(
        "--ids",
        "ids",
        multiple=True,
        metavar="ID",
        help="Only these record Ids (repeat, separate with commas, or list them after --ids).",
    )
    @click.argument("more_ids", nargs=-1, metavar="[ID]...")
    @click.option("--dry-run", is_flag=True, help="Print the plan; change nothing anywhere.")
    @click.option(
        "--allow-mass-change",
        is_flag=True,
        help="Apply even when the run would suspend more than the configured share.",
    )
    @click.pass_obj
    def command(
        app: Any,
        full: bool,
        ids: tuple[str, ...],
        more_ids: tuple[str, ...],
        dry_run: bool,
        allow_mass_change: bool,
    ) -> None:
        if more_ids and not ids:
            raise click.UsageError("record Ids go after --ids (e.g. --ids 003A... 003B...)")
        wanted = tuple(
            dict.fromkeys(i.strip() for v in (*ids, *more_ids) for i in v.split(",") if i.strip())
        )
        if full and wanted:
            raise click.UsageError("--full and --ids exclude each other")
        if ids and not wanted:
            raise click.UsageError("--ids needs at least one record Id")
        bad = [i for i in wanted if not soql.is_id(i)]
        if bad:
            raise click.UsageError(
                f"not a Salesforce record Id (15 or 18 letters and digits): {bad[0]}"
            )
        mode = "ids" if wanted else "full" if full else "incremental"
        request = SyncRequest(
            mode=mode, ids=wanted, dry_run=dry_run, allow_mass_change=allow_mass_change
        )
        result = run_kind(app.settings, name, kind, request)
        sys.exit(exit_status(result))

    return command


def _help(name: str, kind: SyncKind) -> str:
    doc = (type(kind).__doc__ or "").strip().splitlines()
    first = doc[0] if doc else f"The {name} sync."
    return (
        f"{first}\n\nIncremental by default (changed since the last run); --full reconciles "
        "everything; --ids only the named records. --dry-run prints the plan and changes "
        "nothing. Exit status: 0 ok, 1 records failed, 2 stopped."
    )


def run_kind(settings: Any, name: str, kind: SyncKind, request: SyncRequest) -> RunResult:
    """Run ``kind`` under its lock with a progress bar (on a terminal) and print the outcome."""
    from connector.service.worker import lock_name
    from connector.state import locks

    console = _console()
    ctx = Context(settings)
    try:
        try:
            with (
                locks.held(ctx.db, lock_name(name), settings.service.lock_ttl_seconds) as lease,
                _ProgressBar(console) as hook,
            ):

                def progress(done: int, total: int | None) -> None:
                    lease.renew_if_due()
                    hook(done, total)

                result = kind.run(ctx, request, progress)
        except locks.LockBusy:
            console.print(f"[bold red]another {name} run is in progress[/]; try again later")
            sys.exit(EXIT_STOPPED)
    finally:
        ctx.close()
    print_result(console, result)
    return result


def _console() -> Console:
    """A console; when not a terminal (a pipe, a log), wide enough that ids are not folded."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


class _ProgressBar:
    """A rich progress bar when stdout is a terminal; a no-op hook otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task: Any = None
        self.total: int | None = None

    def __enter__(self) -> Callable[[int, int | None], None]:
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("reading", total=None)
        return self.update

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            return
        if total != self.total:
            # Reading has no known total; applying has one.
            self.total = total
            self.bar.update(self.task, description="applying" if total else "reading")
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def exit_status(result: RunResult) -> int:
    """0 ok or dry run, 1 records failed, 2 stopped or error."""
    if result.status in ("stopped", "error"):
        return EXIT_STOPPED
    if result.status == "failed_records" or result.failed:
        return EXIT_FAILED_RECORDS
    return EXIT_OK


def print_result(console: Console, result: RunResult) -> None:
    """The plan (dry run) and the summary table of a run."""
    if result.plan:
        plan = Table(title=f"Plan ({result.kind})", title_justify="left")
        plan.add_column("action")
        plan.add_column("record")
        plan.add_column("details", overflow="fold")
        for action, record_id, details in result.plan:
            plan.add_row(action, record_id, details)
        console.print(plan)
    elif result.status == "dry_run":
        console.print("Plan: nothing to do.")
    summary = Table(title=f"{result.kind} run {result.run_id or ''}".strip(), title_justify="left")
    summary.add_column("outcome")
    summary.add_column("records", justify="right")
    for key, value in sorted(result.counts.items()):
        summary.add_row(key, str(value))
    console.print(summary)
    style = {"ok": "green", "dry_run": "cyan", "failed_records": "yellow"}.get(
        result.status, "bold red"
    )
    line = f"status: [{style}]{result.status}[/]"
    if result.reason:
        line += f" ({result.reason})"
    console.print(line, soft_wrap=True)
    if result.failed:
        console.print("Failed records: see `mentorsync status`.")


COMMANDS: list[click.Command] = [sync_group]
