"""The Moodle plugin ``local_mentorsync`` in the real site, delivering to mentorsync's webhook.

A completion made through the web service (the mentee's own token) makes the plugin's observer
queue an adhoc task; Moodle's own CLI runner (``admin/cli/adhoc_task.php``) POSTs the signed
event to the webhook service this test serves on loopback; the worker turns it into the
``Mentoring_Meeting__c`` record. With mentorsync down the task fails and Moodle keeps it with a
fail delay; run again (``--id``) once mentorsync is back, it delivers: nothing lost.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from huey import MemoryHuey
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from connector.clients.moodle.client import MoodleClient
from connector.config import Settings
from connector.context import Context
from connector.engine.kind import SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.pairs.kind import PairsSync
from connector.service.worker import Worker
from connector.state.database import InboxEvent
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import seed
from tests.deploy.moodle_plugin_payload import MOODLE_EVENTS_PATH
from tests.kinds.progress.progress_world import meetings_of
from tests.real_moodle.builder import free_port
from tests.real_moodle.conftest import RealMoodle, salesforce_settings
from tests.serving import wait_for
from tests.webhooks.fakes import MOODLE_SECRET
from webhooks import create_app

TASK = "\\local_mentorsync\\task\\deliver_event"
MANUAL_TICK = "core_completion_update_activity_completion_status_manually"


class Webhooks:
    """mentorsync's webhook app on a fixed loopback port, which can be stopped and restarted."""

    def __init__(self, settings: Settings, worker: Worker) -> None:
        self.app = create_app(settings, worker=worker)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{MOODLE_EVENTS_PATH}"
        self.server: BaseWSGIServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.thread.join(10)
            self.server.server_close()
            self.server = None


@dataclass
class World:
    moodle: RealMoodle
    sf: SalesforceSandbox
    ctx: Context
    worker: Worker
    hooks: Webhooks
    admin: MoodleClient
    mentee: MoodleClient
    mentee_uid: int
    match_id: str

    def tick(self, idnumber: str) -> None:
        cmid = int(self.moodle.site.info["meeting_cmids"][idnumber])
        answer = self.mentee.call(MANUAL_TICK, {"cmid": cmid, "completed": 1}, write=True)
        assert answer == {"status": True, "warnings": []}

    def tasks(self) -> list[tuple[int, int]]:
        """(id, faildelay) of the plugin's queued adhoc tasks, in Moodle's own table."""
        rows = self.moodle.site.sql(
            "SELECT id, faildelay FROM mdl_task_adhoc WHERE classname = "
            f"'{TASK}' ORDER BY id", "moodle")  # standard strings: backslashes are literal
        return [(int(a), int(b)) for a, b in (line.split("|") for line in rows.split())]

    def cron(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Moodle's adhoc task runner as cron runs it (the caller judges its exit status)."""
        return subprocess.run(
            ["php", "admin/cli/adhoc_task.php", *args], env=self.moodle.site.env(),
            cwd=self.moodle.site.code, capture_output=True, text=True, check=False, timeout=300)

    def inbox(self) -> list[InboxEvent]:
        with self.worker.db.session() as session:
            return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


@pytest.fixture(scope="module")
def world(real_moodle: RealMoodle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("plugin")
    admin = real_moodle.client(tmp)
    sf = SalesforceSandbox(tmp / "salesforce")
    sf.start()
    today = dt.datetime.now(dt.UTC).date()
    try:
        report = seed(sf, None, members=30, seed=9)
        settings = real_moodle.settings(
            tmp / "mentorsync",
            salesforce=salesforce_settings(sf),
            service={"moodle_events_secret": MOODLE_SECRET, "queue_url": "memory://"},
            members={"mass_change_share": 1.0, "mass_change_count": 1000},
            programme={
                "timezone": "UTC", "window_start": today.strftime("%m-%d"),
                "window_end": (today + dt.timedelta(days=180)).strftime("%m-%d"),
            },
        )
        settings.pairs.mass_change_share = 1.0
        settings.pairs.mass_change_count = 1000
        ctx = Context(settings)
        worker = Worker(settings, huey=MemoryHuey("real-moodle-plugin"))
        hooks = Webhooks(settings, worker)
        try:
            assert MembersSync().run(ctx, SyncRequest(mode="full")).status in (
                "ok", "failed_records")
            assert PairsSync().run(ctx, SyncRequest(mode="full")).status in (
                "ok", "failed_records")
            match_id = next(
                m for m in report.active_matches
                if sf.store.get("Mentorship_Match__c", m)["LMS_Sync_Status__c"] == "Synced"
                and m not in report.two_mentor_matches and m not in report.dual_role_matches)
            contact = sf.store.get("Mentorship_Match__c", match_id)["Mentee__c"]
            (user,) = admin.get_users_by_field("idnumber", [contact])
            # Configured only now: the syncs' own user updates above queue nothing.
            for name, value in (("endpoint", hooks.url), ("secret", MOODLE_SECRET),
                                ("courses", "GMP-ORIENT,GMP-2026"), ("timeout", "5")):
                real_moodle.site.php("admin/cli/cfg.php", "--component=local_mentorsync",
                                     f"--name={name}", f"--set={value}")
            hooks.start()
            yield World(real_moodle, sf, ctx, worker, hooks, admin,
                        real_moodle.participant(tmp, int(user["id"])), int(user["id"]), match_id)
        finally:
            hooks.stop()
            worker.close()
            ctx.close()
    finally:
        sf.stop()


def record(w: World, n: int) -> dict[str, Any]:
    return meetings_of(w.sf, w.match_id).get(f"{w.match_id}:GMP-2026-M{n}") or {}


def test_moodles_cron_delivers_the_signed_event_and_the_worker_writes_the_meeting(
    world: World,
) -> None:
    w = world
    w.tick("GMP-2026-M1")
    (task,) = w.tasks()
    assert task[1] == 0  # queued, never failed

    ran = w.cron("--execute")

    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "delivered (HTTP 202)" in ran.stdout
    assert w.tasks() == []
    (event,) = w.inbox()
    assert (event.kind, event.record_id, event.status) == ("progress", str(w.mentee_uid),
                                                           "pending")
    assert w.worker.drain("progress") == 1
    wait_for(lambda: bool(record(w, 1)), "the meeting record")
    assert record(w, 1)["Activity_Idnumber__c"] == "GMP-2026-M1"
    assert record(w, 1)["Source__c"] == "Moodle"
    assert [e.status for e in w.inbox()] == ["done"]


def test_with_mentorsync_down_the_task_fails_is_retried_and_nothing_is_lost(
    world: World,
) -> None:
    w = world
    w.hooks.stop()
    w.tick("GMP-2026-M2")

    down = w.cron("--execute")

    # A failed adhoc task is not a failed cron run: exit 0, the task kept for a retry.
    assert down.returncode == 0, down.stderr[-2000:]
    assert f"Adhoc task failed: {TASK[1:]}" in down.stdout
    assert "(cURL error 7 " in down.stdout and "it will be retried." in down.stdout
    ((task_id, faildelay),) = w.tasks()
    assert faildelay == 60  # Moodle's first backoff: one minute
    # Not due yet: the next cron run leaves it alone.
    w.cron("--execute")
    assert w.tasks() == [(task_id, 60)]
    assert len(w.inbox()) == 1

    w.hooks.start()
    again = w.cron(f"--id={task_id}")

    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "delivered (HTTP 202)" in again.stdout
    assert w.tasks() == []
    assert [e.status for e in w.inbox()] == ["done", "pending"]
    assert w.worker.drain("progress") == 1
    wait_for(lambda: bool(record(w, 2)), "the second meeting record")
    assert set(meetings_of(w.sf, w.match_id)) == {
        f"{w.match_id}:GMP-2026-M1", f"{w.match_id}:GMP-2026-M2"}


def test_the_plugins_bulk_completion_read_answers_through_rest(world: World) -> None:
    w = world
    programme = int(w.moodle.site.info["courses"]["GMP-2026"])
    page = w.admin.get_completions_page(programme, 0, "", 1000)

    assert set(page) == {"activities", "courses", "nextcursor", "servertime"}
    assert page["nextcursor"] == ""
    assert page["courses"] == []
    rows = sorted((r["userid"], r["idnumber"], r["completionstate"]) for r in page["activities"])
    assert rows == [(w.mentee_uid, "GMP-2026-M1", 1), (w.mentee_uid, "GMP-2026-M2", 1)]
    cmids = w.moodle.site.info["meeting_cmids"]
    for row in page["activities"]:
        assert row["cmid"] == cmids[row["idnumber"]]
        assert isinstance(row["timemodified"], int) and row["timemodified"] > 0
    assert isinstance(page["servertime"], int)
