"""A sync kind that only declares itself gets the engine's machinery: cursors, failed records
and their retries, the guard, the dry run, its CLI command and webhook routing.

``NotesKind`` mirrors an in-memory source into an in-memory target. Everything it writes is
the part specific to it (read, a pure planner, apply); the rest comes from the engine.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from huey import MemoryHuey
from sqlalchemy import select

import connector.registry
from connector.cli import main
from connector.context import Context
from connector.engine import spool as spool_module
from connector.engine.guard import mass_change
from connector.engine.kind import SALESFORCE_ID, ProgressHook, RunResult, Schedule, SyncRequest
from connector.engine.run import KindRun
from connector.engine.spool import PlanSpool
from connector.service.worker import Worker
from connector.state import bookkeeping
from connector.state.database import FailedRecord, InboxEvent, Run
from tests.webhooks.fakes import ORG_ID, make_settings, outbound_message, sf_id

T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class NoteAction:
    """Set or remove one note in the target."""

    kind: str  # set | remove
    record_id: str
    value: str = ""


class NoteCodec:
    def dump(self, a: NoteAction) -> dict[str, Any]:
        return {"k": a.kind, "r": a.record_id, "v": a.value}

    def load(self, d: dict[str, Any]) -> NoteAction:
        return NoteAction(d["k"], d["r"], d["v"])

    def kind(self, a: NoteAction) -> str:
        return a.kind

    def record_id(self, a: NoteAction) -> str:
        return a.record_id

    def claims(self, a: NoteAction) -> tuple[str, ...]:
        return ()

    def destructive(self, a: NoteAction) -> bool:
        return a.kind == "remove"


def plan_note(record_id: str, desired: str | None, actual: str | None) -> NoteAction | None:
    """The pure planner: what to do for one record."""
    if desired is None:
        return NoteAction("remove", record_id) if actual is not None else None
    return NoteAction("set", record_id, desired) if desired != actual else None


@dataclass
class World:
    """The source (value, modified at) and the target, plus records the target refuses."""

    source: dict[str, tuple[str | None, dt.datetime]] = field(default_factory=dict)
    target: dict[str, str] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)
    reads: list[dt.datetime | None] = field(default_factory=list)


WORLD = World()


class NotesRun(KindRun[PlanSpool[NoteAction]]):
    kind = "notes"
    cursor_name = "notes:Note__c"

    def plan(self, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        self.open_spool(PlanSpool(NoteCodec()))
        WORLD.reads.append(cursor)
        if self.request.mode == "ids":
            ids = list(self.request.ids)
        else:
            ids = [r for r, (_, at) in WORLD.source.items() if cursor is None or at >= cursor]
        for record_id in ids:
            desired = WORLD.source.get(record_id, (None, T0))[0]
            action = plan_note(record_id, desired, WORLD.target.get(record_id))
            if action is None:
                self.succeeded(record_id)
            else:
                self.spool.add(action)

    def guard(self) -> str:
        return mass_change("remove", self.spool.destructive, len(WORLD.target), "notes", 0.5, 1)

    def apply(self) -> None:
        for action in self.spool:
            if action.record_id in WORLD.refuse:
                self.failed_record(action.record_id, "target:refused", "target:write")
                continue
            if action.kind == "set":
                WORLD.target[action.record_id] = action.value
            else:
                WORLD.target.pop(action.record_id, None)
            self.counts[action.kind] += 1
            self.succeeded(action.record_id)

    def plan_lines(self) -> list[tuple[str, str, str]]:
        return [(a.kind, a.record_id, "") for a in self.spool]


class NotesKind:
    """Notes, source -> target (a test kind: declarations only, plus its run)."""

    name = "notes"
    objects = ("Note__c",)
    id_type = SALESFORCE_ID
    schedule = Schedule(nightly_order=40)
    summary_labels = {"set": "set {n} notes", "remove": "removed {n} notes"}

    def run(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> RunResult:
        return NotesRun(ctx, request, progress).execute()


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Context]:
    connector.registry.kinds()
    monkeypatch.setattr(connector.registry, "REGISTRY", {"notes": NotesKind()})
    global WORLD
    WORLD = World()
    ctx = Context(make_settings(tmp_path))
    try:
        yield ctx
    finally:
        ctx.close()


def rid(n: int) -> str:
    return sf_id("a0N", n)


def run(ctx: Context, **request: Any) -> RunResult:
    return NotesKind().run(ctx, SyncRequest(**request))


def test_cursor_is_kept_and_only_changes_are_read_after_the_first_run(notes: Context) -> None:
    WORLD.source = {rid(1): ("a", T0), rid(2): ("b", T0)}
    first = run(notes)
    assert (first.status, first.counts) == ("ok", {"set": 2, "failed": 0})
    with notes.db.session() as session:
        cursor = bookkeeping.get_cursor(session, "notes:Note__c")
    assert cursor is not None

    # A dry run and an ids run neither read by nor move the cursor.
    WORLD.source[rid(3)] = ("c", cursor + dt.timedelta(seconds=1))
    assert run(notes, dry_run=True).plan == [("set", rid(3), "")]
    assert run(notes, mode="ids", ids=(rid(3),)).counts == {"set": 1, "failed": 0}
    with notes.db.session() as session:
        assert bookkeeping.get_cursor(session, "notes:Note__c") == cursor
    assert WORLD.reads == [None, cursor, cursor]


def test_a_failed_record_is_kept_retried_by_the_worker_and_cleared(
    notes: Context, tmp_path: Path
) -> None:
    WORLD.source = {rid(1): ("a", T0), rid(2): ("b", T0)}
    WORLD.refuse = {rid(2)}
    result = run(notes)
    assert (result.status, result.counts) == ("failed_records", {"set": 1, "failed": 1})
    with notes.db.session() as session:
        row = session.scalars(select(FailedRecord)).one()
        assert (row.kind, row.record_id, row.error_code, row.stage) == (
            "notes",
            rid(2),
            "target:refused",
            "target:write",
        )
        row.next_retry_at = row.first_failed_at  # due now

    WORLD.refuse = set()
    worker = Worker(
        notes.settings, huey=MemoryHuey("notes"), db=notes.db, context_factory=lambda: notes
    )
    assert worker.retry_failures("notes") == 1
    with notes.db.session() as session:
        assert session.scalars(select(FailedRecord)).all() == []
    assert WORLD.target == {rid(1): "a", rid(2): "b"}


def test_the_guard_stops_a_mass_removal_and_a_dry_run_says_so(notes: Context) -> None:
    WORLD.target = {rid(n): "x" for n in range(4)}
    WORLD.source = {rid(n): (None, T0) for n in range(3)}

    dry = run(notes, dry_run=True)
    assert dry.status == "dry_run"
    assert dry.reason == (
        "would stop: mass_change: would remove 3 of 4 notes (limits: 50%, 1); "
        "run with --allow-mass-change to proceed"
    )
    stopped = run(notes)
    assert (stopped.status, len(WORLD.target)) == ("stopped", 4)
    allowed = run(notes, allow_mass_change=True)
    assert (allowed.status, allowed.counts["remove"], len(WORLD.target)) == ("ok", 3, 1)
    with notes.db.session() as session:
        statuses = [r.status for r in session.scalars(select(Run).order_by(Run.id))]
    assert statuses == ["dry_run", "stopped", "ok"]


def test_the_cli_has_its_command_and_validates_its_ids(notes: Context, tmp_path: Path) -> None:
    config = tmp_path / "mentorsync.toml"
    config.write_text(
        f'[service]\ndata_dir = "{tmp_path}"\nqueue_url = "memory://"\n'
        '[moodle]\ntoken = "test-token"\n'
        '[salesforce]\nauth = "session"\nsession_id = "test-session"\n'
        'instance_url = "https://acme.my.salesforce.com"\n'
    )
    WORLD.source = {rid(1): ("a", T0)}
    runner = CliRunner()

    listed = runner.invoke(main, ["--config", str(config), "sync", "--help"])
    assert listed.exit_code == 0 and "notes" in listed.output

    bad = runner.invoke(main, ["--config", str(config), "sync", "notes", "42"])
    assert bad.exit_code == 2
    assert "not a Salesforce record Id (15 or 18 letters and digits): 42" in bad.output

    ok = runner.invoke(main, ["--config", str(config), "sync", "notes", rid(1)])
    assert ok.exit_code == 0, ok.output
    assert WORLD.target == {rid(1): "a"}


def test_webhook_events_for_its_object_route_to_it(notes: Context) -> None:
    from webhooks import create_app

    app = create_app(notes.settings)
    body = outbound_message([("04l000000000001AAA", "Note__c", rid(7), "2026-11-01T09:00:00Z")])
    answer = app.test_client().post(
        "/hooks/salesforce/outbound", data=body, headers={"Content-Type": "text/xml"}
    )
    assert answer.status_code == 200, answer.data
    with notes.db.session() as session:
        row = session.scalars(select(InboxEvent)).one()
    assert (row.kind, row.object, row.record_id) == ("notes", "Note__c", rid(7))
    assert ORG_ID  # the fake org the message comes from is allowed in make_settings


def test_sync_all_runs_every_kind_in_its_nightly_order(
    notes: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class EarlyNotes(NotesKind):
        name = "early"
        schedule = Schedule(nightly_order=5)

        def run(
            self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
        ) -> RunResult:
            ran.append(self.name)
            return RunResult(kind=self.name, status="stopped", reason="mass_change: test")

    ran: list[str] = []
    original = NotesKind.run

    def notes_run(self: NotesKind, *args: Any) -> RunResult:
        ran.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(NotesKind, "run", notes_run)
    connector.registry.register(EarlyNotes())
    config = tmp_path / "mentorsync.toml"
    config.write_text(
        f'[service]\ndata_dir = "{tmp_path}"\nqueue_url = "memory://"\n'
        '[moodle]\ntoken = "test-token"\n'
        '[salesforce]\nauth = "session"\nsession_id = "test-session"\n'
        'instance_url = "https://acme.my.salesforce.com"\n'
    )
    WORLD.source = {rid(1): ("a", T0)}

    result = CliRunner().invoke(main, ["--config", str(config), "sync", "all"])

    assert ran == ["early", "notes"]  # a stopped kind does not keep the next from running
    assert result.exit_code == 2, result.output  # the worst of the runs
    assert WORLD.target == {rid(1): "a"}


def test_the_composition_root_has_the_three_kinds_in_nightly_order() -> None:
    from connector.engine.kind import schedule

    built_in = connector.registry.kinds()
    assert list(built_in) == ["members", "pairs", "progress"]
    assert [schedule(k).nightly_order for k in built_in.values()] == [10, 20, 30]


def test_the_engine_closes_the_spool_however_the_run_ends(
    notes: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kind opens its spool and declares no release: closing it is the engine's.
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    during: list[int] = []
    real_apply = NotesRun.apply

    def apply(self: NotesRun) -> None:
        during.append(len(list(temp.glob(spool_module.PREFIX + "*"))))
        real_apply(self)

    monkeypatch.setattr(NotesRun, "apply", apply)
    WORLD.source = {rid(1): ("a", T0)}
    assert run(notes).status == "ok"
    assert run(notes, dry_run=True).status == "dry_run"

    def crash(self: NotesRun) -> None:
        during.append(len(list(temp.glob(spool_module.PREFIX + "*"))))
        raise RuntimeError("power cut")

    monkeypatch.setattr(NotesRun, "apply", crash)
    WORLD.source[rid(2)] = ("b", T0 + dt.timedelta(seconds=1))
    with pytest.raises(RuntimeError):
        run(notes, mode="full")
    assert during == [1, 1]  # the plan was on disk while each run applied it...
    assert list(temp.iterdir()) == []  # ...and is gone after every run


class CountingNotesRun(NotesRun):
    """Notes that record how many a full read saw, as the guard's base for later runs."""

    full_read_count = "notes_read"
    bases: ClassVar[list[int | None]] = []

    def plan(self, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        self.full_scan = cursor is None
        CountingNotesRun.bases.append(self.full_read_base)
        super().plan(cursor, run_start)

    def full_read_figure(self) -> int:
        return len(WORLD.source)


def test_a_full_read_figure_is_recorded_and_read_back_by_the_next_runs(notes: Context) -> None:
    CountingNotesRun.bases = []
    WORLD.source = {rid(1): ("a", T0), rid(2): ("b", T0)}
    first = CountingNotesRun(notes, SyncRequest()).execute()
    assert first.counts == {"set": 2, "failed": 0, "notes_read": 2}
    WORLD.source[rid(3)] = ("c", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))  # after the cursor
    dry = CountingNotesRun(notes, SyncRequest(mode="full", dry_run=True)).execute()
    assert "notes_read" not in dry.counts  # a dry run applied nothing: it records no base
    second = CountingNotesRun(notes, SyncRequest()).execute()
    assert second.counts == {"set": 1, "failed": 0}  # incremental: no full read, no figure
    assert CountingNotesRun.bases == [None, 2, 2]
