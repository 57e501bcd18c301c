"""A Moodle completion event end to end: the plugin's signed payload -> the webhook -> the inbox
-> the worker -> the progress run -> ``Mentoring_Meeting__c`` in the sandbox Salesforce."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from huey import MemoryHuey
from sqlalchemy import select

from connector.service.worker import Worker
from connector.state.database import InboxEvent
from sandbox.moodle.events import MoodleEventEmitter
from sandbox.testing import running_sandboxes
from tests.deploy import moodle_plugin_payload as plugin
from tests.kinds.progress.progress_world import MEETING_CMIDS, add_pairs, meetings_of, tick, unix
from tests.serving import serving, wait_for
from tests.webhooks.fakes import MOODLE_SECRET
from webhooks import create_app

pytestmark = pytest.mark.e2e

COMPLETION_UPDATED = "\\core\\event\\course_module_completion_updated"
M1 = MEETING_CMIDS["GMP-2026-M1"]
OVERRIDES = {
    "service": {"moodle_events_secret": MOODLE_SECRET, "queue_url": "memory://"},
    "programme": {"window_year": 2026},
}


def test_the_plugins_payload_posted_to_the_webhook_becomes_a_meeting_record(
    tmp_path: Path,
) -> None:
    with running_sandboxes(tmp_path, members=0, overrides=OVERRIDES) as (sf, moodle, settings):
        (pair,) = add_pairs(sf, moodle.site, 1)
        tick(moodle.site, pair.mentee_uid, M1, unix("2026-10-14"))
        worker = Worker(settings, huey=MemoryHuey("progress-e2e"))
        try:
            app = create_app(settings, worker=worker)
            data = {
                "eventname": COMPLETION_UPDATED,
                "userid": str(pair.mentee_uid),  # Moodle's event data may hold strings
                "relateduserid": pair.mentee_uid,
                "courseid": 3,
                "contextinstanceid": M1,
                "timecreated": unix("2026-10-14"),
            }
            body, headers = plugin.build(
                data, MOODLE_SECRET, "msg_" + "ab" * 16, int(time.time())
            )
            answer = app.test_client().post(plugin.MOODLE_EVENTS_PATH, data=body, headers=headers)
            assert answer.status_code == 202, answer.data
            assert answer.get_json() == {"stored": 1, "duplicates": 0}
            with worker.db.session() as session:
                row = session.scalars(select(InboxEvent)).one()
                assert (row.kind, row.record_id) == ("progress", str(pair.mentee_uid))

            assert worker.drain("progress") == 1
            wait_for(lambda: bool(meetings_of(sf, pair.match_id)), "the meeting record")
            assert meetings_of(sf, pair.match_id) == {
                f"{pair.match_id}:GMP-2026-M1": {
                    "External_Id__c": f"{pair.match_id}:GMP-2026-M1",
                    "Match__c": pair.match_id,
                    "Meeting_Number__c": 1,
                    "Activity_Idnumber__c": "GMP-2026-M1",
                    "Completed_On__c": "2026-10-14",
                    "Hours__c": 1.0,
                    "Source__c": "Moodle",
                }
            }
            match = sf.store.get("Mentorship_Match__c", pair.match_id)
            assert match is not None and match["Meetings_Completed__c"] == 1
            with worker.db.session() as session:
                assert session.scalars(select(InboxEvent)).one().status == "done"
        finally:
            worker.close()





def test_a_tick_in_moodle_reaches_salesforce_through_the_plugins_events(tmp_path: Path) -> None:
    with running_sandboxes(tmp_path, members=0, overrides=OVERRIDES) as (sf, moodle, settings):
        settings.service.coalesce_seconds = 0.2
        (pair,) = add_pairs(sf, moodle.site, 1)
        with serving(settings) as (base_url, _worker):
            emitter = MoodleEventEmitter(f"{base_url}{plugin.MOODLE_EVENTS_PATH}", MOODLE_SECRET)
            emitter.attach(moodle.site)
            try:
                moodle.site.set_completion(pair.mentee_uid, M1, 1)
                wait_for(lambda: bool(meetings_of(sf, pair.match_id)), "the meeting record")
                moodle.site.set_completion(pair.mentee_uid, M1, 0)
                wait_for(lambda: not meetings_of(sf, pair.match_id), "the undone meeting gone")
            finally:
                emitter.stop()
            assert emitter.failed == 0
