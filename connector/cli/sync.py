"""``mentorsync sync <kind>``: run one sync kind now, from the command line.

The subcommands are made from the registered sync kinds when the group is used, so a sync kind
added later (pairs, progress) gets its command without changes here. Every kind takes the same
arguments and options:

    mentorsync sync members [ID]... [--full] [--dry-run [--only ACTION]...] [--show-names]
                            [--allow-mass-change] [--json]

Record Ids are positional everywhere (``sync`` and ``retry`` alike). Exit status: 0 when
everything went through (or a dry run), 1 when some records failed, 2 when the run stopped
(mass-change guard, configuration, budget, an outage), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from connector.cli import EXIT_INTERRUPTED
from connector.cli.names import read_names, source_object
from connector.cli.options import json_option
from connector.cli.preflight import state_file
from connector.cli.progress import ProgressReport
from connector.cli.report import print_result, result_json
from connector.config import Settings
from connector.context import Context
from connector.engine import kind as engine_kind
from connector.engine.kind import RunResult, SyncKind, SyncRequest

ALL = "all"
EXIT_OK = 0
EXIT_FAILED_RECORDS = 1
EXIT_STOPPED = 2


def _kinds() -> dict[str, SyncKind]:
    try:
        from connector.registry import kinds
    except ImportError:  # before the composition root exists
        from connector.engine.kind import kinds
    return kinds()


class KindsGroup(click.Group):
    """A group whose subcommands are the registered sync kinds."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The kinds' names, and ``all``."""
        return [*sorted(_kinds()), ALL]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command of one kind, or ``all``."""
        if cmd_name == ALL:
            return all_command
        kind = _kinds().get(cmd_name)
        return make_command(cmd_name, kind) if kind is not None else None


@click.group(name="sync", cls=KindsGroup)
def sync_group() -> None:
    """Run one sync kind now (members: Contacts -> Moodle users; one command per kind).

    Without options a run is incremental: what changed since the last run. Exit status 1 when
    records failed, 2 when the run stopped, 130 when interrupted.
    """


def make_command(name: str, kind: SyncKind) -> click.Command:
    """The ``mentorsync sync <name>`` command of one sync kind."""

    @click.command(name=name, help=help_text(name, kind))
    @click.argument("ids", nargs=-1, metavar="[ID]...")
    @click.option("--full", is_flag=True, help="Reconcile everything, not only what changed.")
    @click.option(
        "--dry-run",
        is_flag=True,
        help="Print the plan, counted per action; change nothing in Moodle or Salesforce.",
    )
    @click.option(
        "--only",
        multiple=True,
        metavar="ACTION",
        help="With --dry-run: list only these actions (repeat: --only create --only suspend).",
    )
    @click.option(
        "--show-names",
        is_flag=True,
        help="Show people's names beside the Ids, read from Salesforce for this print only.",
    )
    @click.option(
        "--allow-mass-change",
        is_flag=True,
        help="Apply even when the run would suspend more than the configured share.",
    )
    @json_option
    @click.pass_obj
    def command(
        app: Any,
        ids: tuple[str, ...],
        full: bool,
        dry_run: bool,
        only: tuple[str, ...],
        show_names: bool,
        allow_mass_change: bool,
        as_json: bool,
    ) -> None:
        wanted = tuple(dict.fromkeys(i.strip() for v in ids for i in v.split(",") if i.strip()))
        if full and wanted:
            raise click.UsageError("--full and record Ids exclude each other")
        # The kind says what its ids look like (Salesforce Ids, Moodle user ids...).
        ids_of = engine_kind.id_type(kind)
        bad = ids_of.invalid(wanted)
        if bad:
            raise click.UsageError(f"not {ids_of.label}: {bad[0]}")
        if only and not dry_run:
            raise click.UsageError("--only lists part of a plan: use it with --dry-run")
        settings = app.require("moodle", "salesforce", storage=not dry_run)
        mode = "ids" if wanted else "full" if full else "incremental"
        request = SyncRequest(
            mode=mode, ids=wanted, dry_run=dry_run, allow_mass_change=allow_mass_change
        )
        console = _console()
        result = run_kind(settings, name, kind, request, console=console, quiet=as_json)
        names = _names(settings, kind, result) if show_names else None
        if as_json:
            click.echo(result_json(kind, result, only=only, names=names))
        else:
            print_result(console, kind, result, only=only, names=names)
        sys.exit(exit_status(result))

    return command


def help_text(name: str, kind: object) -> str:
    """The command's help: the kind's whole first docstring paragraph, then the conventions."""
    doc = inspect.cleandoc(type(kind).__doc__ or "")
    first = " ".join(doc.split("\n\n")[0].split()) or f"The {name} sync."
    return (
        f"{first}\n\nIncremental by default (changed since the last run); --full reconciles "
        "everything; IDs (Salesforce record Ids, separated by spaces or commas) only those "
        "records. --dry-run prints the plan and changes nothing in Moodle or Salesforce; it "
        "records one run marked 'dry run' in the state database (no cursor, no failed record), "
        "and none at all when there is no state database yet. Exit status: 0 ok, 1 records "
        "failed, 2 stopped, 130 interrupted."
    )


@contextmanager
def _dry_run_settings(settings: Settings, dry_run: bool) -> Iterator[Settings]:
    """For a dry run without a state database yet: a throwaway one, so it leaves no trace."""
    path = state_file(settings)
    if not dry_run or path is None or path.exists():
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="mentorsync-dry-run-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'mentorsync.db'}"
        service = dataclasses.replace(settings.service, database_url=url)
        yield dataclasses.replace(settings, service=service)


def _lock_name(name: str) -> str:
    try:
        from connector.service.worker import lock_name
    except ImportError:
        return f"kind:{name}"
    return str(lock_name(name))


def run_kind(
    settings: Settings,
    name: str,
    kind: SyncKind,
    request: SyncRequest,
    *,
    console: Console | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run ``kind`` under its lock, with a progress bar on a terminal (plain lines otherwise).

    Ctrl-C ends the command with exit status 130 and one line; the engine records the run as
    interrupted.
    """
    from connector.state import locks

    console = console or _console()
    with _dry_run_settings(settings, request.dry_run) as run_settings:
        ctx = Context(run_settings)
        try:
            with (
                locks.held(ctx.db, _lock_name(name), settings.service.lock_ttl_seconds) as lease,
                ProgressReport(console if not quiet else _null_console(), name) as hook,
            ):

                def progress(done: int, total: int | None) -> None:
                    lease.renew_if_due()
                    hook(done, total)

                return kind.run(ctx, request, progress)
        except locks.LockBusy:
            console.print(f"[bold red]another {name} run is in progress[/]; try again later")
            sys.exit(EXIT_STOPPED)
        except KeyboardInterrupt:
            click.echo(
                f"\n{name}: interrupted (Ctrl-C); a run that had started is "
                "recorded as interrupted, and the next one starts from the last saved cursor",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)
        finally:
            ctx.close()


def _names(settings: Settings, kind: SyncKind, result: RunResult) -> dict[str, str]:
    """Names of the records the plan lists, read from Salesforce now (never stored)."""
    ids: Sequence[str] = [record for _, record, _ in result.plan]
    if not ids:
        return {}
    ctx = Context(settings)
    try:
        return read_names(ctx.salesforce, source_object(kind, settings), ids)
    finally:
        ctx.close()


def _console() -> Console:
    """A console; when not a terminal (a pipe, a log), wide enough that ids are not folded."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _null_console() -> Console:
    # --json: stdout holds the JSON only; progress goes to stderr as plain lines.
    return Console(file=sys.stderr, force_terminal=False, highlight=False)


def exit_status(result: RunResult) -> int:
    """0 ok or dry run, 1 records failed, 2 stopped or error (or a dry run the guard would
    stop), 130 interrupted."""
    if result.status in ("stopped", "error", "interrupted"):
        return EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_STOPPED
    if result.status == "dry_run" and result.reason.startswith("would stop"):
        return EXIT_STOPPED
    if result.status == "failed_records" or result.failed:
        return EXIT_FAILED_RECORDS
    return EXIT_OK


@click.command(name=ALL)
@click.option("--full", is_flag=True, help="Reconcile everything, not only what changed.")
@click.option("--dry-run", is_flag=True, help="Print each kind's plan; change nothing.")
@click.option(
    "--allow-mass-change",
    is_flag=True,
    help="Apply even when a run would undo more than the configured share.",
)
@json_option
@click.pass_obj
def all_command(
    app: Any, full: bool, dry_run: bool, allow_mass_change: bool, as_json: bool
) -> None:
    """Run every kind in its nightly order: members, then pairs, then progress.

    Each kind runs under its own lock and reports as ``sync <kind>`` does; a kind that stops
    does not keep the next from running. The exit status is the worst of the runs.
    """
    settings = app.require("moodle", "salesforce", storage=not dry_run)
    request = SyncRequest(
        mode="full" if full else "incremental", dry_run=dry_run, allow_mass_change=allow_mass_change
    )
    ordered = sorted(
        _kinds().items(), key=lambda item: (engine_kind.schedule(item[1]).nightly_order, item[0])
    )
    console = _console()
    results: list[tuple[SyncKind, RunResult]] = []
    for name, kind in ordered:
        result = run_kind(settings, name, kind, request, console=console, quiet=as_json)
        results.append((kind, result))
        if not as_json:
            print_result(console, kind, result)
    if as_json:
        click.echo("[" + ",".join(result_json(k, r) for k, r in results) + "]")
    statuses = [exit_status(r) for _, r in results]
    sys.exit(max(statuses, key=lambda s: (s == EXIT_INTERRUPTED, s)) if statuses else EXIT_OK)


COMMANDS: list[click.Command] = [sync_group]
