"""``mentorsync demo``: the programme year on loopback sandboxes, end to end.

Starts the sandbox Salesforce and Moodle, the web service and the worker (``mentorsync run``
as a child process, on the real triggers), runs the first member sync, acts out a slice of the
year in Salesforce (an email change, a lapse, a new participant), waits for the Outbound
Messages to travel through the webhook and the worker into Moodle, prints a summary and stops
everything it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

# The demo is read by people new to mentorsync on any terminal: it fits 80 columns.
WIDTH = 80
console = Console(highlight=False, width=min(WIDTH, Console().width))
# Lines of the service log shown when a step fails (the log holds ids and codes only).
LOG_TAIL_LINES = 15

# What the member sync's outcomes mean, in words staff use.
OUTCOMES: tuple[tuple[str, str], ...] = (
    ("created", "new Moodle accounts"),
    ("adopted", "existing accounts linked"),
    ("updated", "accounts updated"),
    ("suspended", "suspended (lapsed)"),
    ("reactivated", "reactivated (returned)"),
    ("conflicts", "left to staff (email or username shared)"),
    ("rejected", "refused (data unusable)"),
    ("skipped", "skipped (no email)"),
    ("failed", "failed (retried later)"),
)


class DemoStepError(Exception):
    """A demo step did not reach its goal in time."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, check: Callable[[], bool], deadline_s: float) -> None:
    """Poll ``check`` until it is true or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise DemoStepError(f"timed out after {deadline_s:.0f}s waiting for {what}")


@contextlib.contextmanager
def _step(name: str, log_dir: Path) -> Iterator[None]:
    console.print(f"[bold cyan]>[/] {name}")
    try:
        yield
    except Exception as exc:
        console.print(f"[bold red]Step failed:[/] {name}: {type(exc).__name__}: {exc}")
        _print_log_tail(log_dir / "service.log")
        raise


def _print_log_tail(log: Path) -> None:
    if not log.is_file():
        return
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    if lines:
        console.print("Last lines of the service log:")
        for line in lines:
            console.print(f"  {line}", overflow="fold", markup=False)


def _in_words(counts: dict[str, Any]) -> str:
    """``new Moodle accounts: 280, skipped (no email): 12``: the non-zero outcomes."""
    parts = []
    for key, label in OUTCOMES:
        n = int(counts.get(key, 0) or 0)
        if n:
            parts.append(f"{label}: {n:,}")
    return ", ".join(parts) or "nothing to change"


@click.command()
@click.option(
    "--members",
    default=300,
    show_default=True,
    type=click.IntRange(min=30),
    help="Members in the sandbox CRM (at least 30, for every case the demo shows).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the demo's data directory (state, logs) afterwards, even when it fails.",
)
def demo(members: int, keep: bool) -> None:
    """Show the programme year end to end on local sandboxes (what `make demo` runs)."""
    from connector.errors import MentorsyncError

    try:
        _run_demo(members, keep)
    except (DemoStepError, MentorsyncError) as exc:
        raise click.ClickException(f"the demo stopped: {exc}") from None


def _run_demo(members: int, keep: bool) -> None:
    """The demo's steps; a step that fails says which, then everything started is stopped."""
    from connector.cli import demo_programme
    from connector.cli.sandbox import write_config
    from connector.config import load_settings
    from connector.context import Context
    from connector.engine.kind import SyncRequest
    from connector.registry import kinds
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox
    from sandbox.seed import seed

    started = time.monotonic()
    # The steps say what happens; the detail (ids and codes) goes to the log files.
    logging.getLogger().setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="mentorsync-demo-"))
    log_dir = work / "logs"
    log_dir.mkdir()
    web_port = _free_port()
    service: subprocess.Popen[bytes] | None = None
    sf = SalesforceSandbox(
        work / "salesforce", outbound_url=f"http://127.0.0.1:{web_port}/hooks/salesforce/outbound"
    )
    moodle = MoodleSandbox(work / "moodle")
    failed = True
    try:
        with _step("Starting the sandbox Salesforce and Moodle", log_dir):
            sf.start()
            moodle.start()
            story = seed(sf, moodle, members=members)
            config = write_config(work, sf, moodle)
            # The service listens where the sandbox sends its Outbound Messages; the periodic
            # sweep is pushed out so that what the demo shows comes through the webhook.
            service_env = {
                "MENTORSYNC_SERVICE_BIND": f"127.0.0.1:{web_port}",
                "MENTORSYNC_SERVICE_INCREMENTAL_MINUTES": "60",
            }
            settings = load_settings(config, env=service_env)
            seeded = story.summary()
            console.print(
                f"  Salesforce: {seeded['members']:,} members, "
                f"{seeded['participants']:,} of them in the programme"
            )
            console.print(f"  Moodle: {seeded['moodle_accounts']} account(s) made by hand")
            console.print(f"  Salesforce: {sf.url}   Moodle: {moodle.url}")

        with _step("First member sync (full)", log_dir):
            ctx = Context(settings)
            first = kinds()["members"].run(ctx, SyncRequest(mode="full"))
            ctx.close()
            for outcome in _in_words(first.counts).split(", "):
                console.print(f"  {outcome}")
            if first.status not in {"ok", "failed_records"}:
                raise DemoStepError(f"first sync {first.status}: {first.reason}")

        with _step("Setting up the matched pairs in Moodle (pairs sync, full)", log_dir):
            pairs_ready = demo_programme.make_pairs(console, settings, sf, story)

        with _step("Starting the web service and the worker (mentorsync run)", log_dir):
            env = dict(os.environ, MENTORSYNC_CONFIG=str(config), **service_env)
            out = (log_dir / "service.log").open("wb")
            service = subprocess.Popen(
                [sys.executable, "-m", "connector.cli", "run"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

            def ready() -> bool:
                if service is not None and service.poll() is not None:
                    raise DemoStepError(f"mentorsync run exited with {service.returncode}")
                with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", web_port), timeout=0.5
                ):
                    return True
                return False

            _wait_for("the web service to listen", ready, 30)

        with _step("Acting out the year in Salesforce", log_dir):
            sf.store.update("Contact", story.email_changer, {"Email": story.email_changer_new})
            sf.store.update("Contact", story.lapser, {"Member_Status__c": "Lapsed"})
            sf.store.update("Contact", story.joiner, {"Mentorship_Role__c": "Mentee"})
            console.print(f"  Contact {story.email_changer}: changed their email")
            console.print(f"  Contact {story.lapser}: membership lapsed")
            console.print(f"  Contact {story.joiner}: joined the programme as a mentee")

        with _step("Waiting for Salesforce's messages to reach Moodle", log_dir):
            site = moodle.site

            def converged() -> bool:
                changer = site.user_by_idnumber(story.email_changer)
                lapser = site.user_by_idnumber(story.lapser)
                joiner = site.user_by_idnumber(story.joiner)
                return bool(
                    changer and changer["email"] == story.email_changer_new
                    and lapser and lapser["suspended"]
                    and joiner
                )

            _wait_for("Moodle to reflect the three changes", converged, 60)
            # Moodle changes before the run records its counts and write-back: wait for the
            # inbox to drain and every run to finish, so the summary is complete.
            _wait_for("the worker's runs to finish", lambda: _settled(settings), 60)

        with _step("Staff cancel a match and re-match its mentee in Salesforce", log_dir):
            rematched = demo_programme.rematch(console, sf, moodle, pairs_ready, _wait_for)

        with _step("Meetings ticked in Moodle come back to Salesforce (progress sync)", log_dir):
            demo_programme.meetings(console, settings, sf, moodle, rematched)
            _wait_for("the worker's runs to finish", lambda: _settled(settings), 60)

        _summary(settings, sf, moodle, work if keep else None, log_dir)
        failed = False
    finally:
        if service is not None and service.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGTERM)
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait()
        sf.stop()
        moodle.stop()
        if keep:
            console.print(f"Data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if failed:
                console.print("To keep the data and logs of a failed demo: mentorsync demo --keep")
    console.print(f"[bold green]Demo finished in {time.monotonic() - started:.1f}s.[/]")


def _settled(settings: Any) -> bool:
    """True when no inbox row is waiting and no run is still going."""
    from sqlalchemy import func, select

    from connector.state.database import InboxEvent, Run, StateDB

    db = StateDB(settings.database_url)
    try:
        with db.session() as session:
            waiting = session.scalar(
                select(func.count())
                .select_from(InboxEvent)
                .where(InboxEvent.status.in_(("pending", "leased")))
            )
            running = session.scalar(
                select(func.count()).select_from(Run).where(Run.finished_at.is_(None))
            )
    finally:
        db.dispose()
    return not waiting and not running


def _summary(settings: Any, sf: Any, moodle: Any, kept: Path | None, log_dir: Path) -> None:
    from sqlalchemy import func, select

    from connector.state.database import FailedRecord, Run, StateDB

    db = StateDB(settings.database_url)
    try:
        with db.session() as session:
            runs = list(session.scalars(select(Run).where(Run.kind == "members").order_by(Run.id)))
            failed = session.scalar(select(func.count()).select_from(FailedRecord)) or 0
    finally:
        db.dispose()
    # The first run is the full sync; the ones after it are the worker's, woken by webhooks.
    first = dict(runs[0].counts or {}) if runs else {}
    later: dict[str, int] = {}
    for run in runs[1:]:
        for key, value in (run.counts or {}).items():
            later[key] = later.get(key, 0) + int(value)
    table = Table(title="Member sync: what happened", title_justify="left")
    table.add_column("outcome")
    table.add_column("first sync", justify="right")
    table.add_column("after the changes", justify="right")
    for key, label in OUTCOMES:
        table.add_row(label, f"{first.get(key, 0):,}", f"{later.get(key, 0):,}")
    console.print(table)
    console.print(
        f"  Member syncs the worker ran, woken by Salesforce: {max(len(runs) - 1, 0)}\n"
        f"  Records waiting for a retry: {failed}\n"
        f"  API calls: Moodle {sum(moodle.calls.values()):,}, "
        f"Salesforce {sum(sf.calls.values()):,}"
    )
    if kept is None:
        console.print(
            "  To look around afterwards: mentorsync demo --keep, then\n"
            "  mentorsync --config <its folder>/mentorsync.toml status"
        )
    else:
        console.print("  To look around:")
        console.print(f"    mentorsync --config {kept / 'mentorsync.toml'} status", soft_wrap=True)
        console.print(f"    service log: {log_dir / 'service.log'}", soft_wrap=True)


COMMANDS: list[click.Command] = [demo]
