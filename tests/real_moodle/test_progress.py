"""The progress sync against the real Moodle 4.5 site and the sandbox Salesforce.

Participants act with their *own* tokens, as the mobile app would: the mentee ticks meetings
(``core_completion_update_activity_completion_status_manually``), both people view the
orientation page (``mod_page_view_page``: automatic completion on view completes the
orientation course at once). The people and their pair are made by the members and pairs
syncs, so every enrolment is Moodle's own.

The health rule depends on today's date, so the programme window here starts today (UTC):
with cadence ``none`` and 2 hours needed, two meetings and both orientations are "Complete",
one meeting is "On track", whatever day the tier runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from connector.clients.moodle.client import MoodleClient
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.pairs.kind import PairsSync
from connector.kinds.progress.kind import ProgressSync
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import seed
from tests.kinds.progress.progress_world import meetings_of
from tests.real_moodle.conftest import RealMoodle, salesforce_settings

MANUAL_TICK = "core_completion_update_activity_completion_status_manually"


@dataclass
class World:
    moodle: RealMoodle
    sf: SalesforceSandbox
    ctx: Context
    admin: MoodleClient
    match_id: str
    mentor: MoodleClient  # the mentor's own token
    mentee: MoodleClient  # the mentee's own token
    mentor_uid: int
    mentee_uid: int

    def progress(self, mode: str = "incremental", **kwargs: Any) -> RunResult:
        return ProgressSync().run(self.ctx, SyncRequest(mode=mode, **kwargs))  # type: ignore[arg-type]

    def cmid(self, idnumber: str) -> int:
        return int(self.moodle.site.info["meeting_cmids"][idnumber])

    def tick(self, idnumber: str, completed: bool) -> None:
        """The mentee ticks (or unticks) a meeting herself."""
        answer = self.mentee.call(MANUAL_TICK, {"cmid": self.cmid(idnumber),
                                                "completed": int(completed)}, write=True)
        assert answer == {"status": True, "warnings": []}

    def mentee_states(self) -> dict[int, dict[str, Any]]:
        """The mentee's own view of her meeting completions, by cmid."""
        course = int(self.moodle.site.info["courses"]["GMP-2026"])
        answer = self.mentee.get_activities_completion_status(course, self.mentee_uid)
        return {int(s["cmid"]): s for s in answer["statuses"]}

    def match(self) -> dict[str, Any]:
        record = self.sf.store.get("Mentorship_Match__c", self.match_id)
        assert record is not None
        return record


def day_of(unix: int) -> str:
    """The UTC date of Unix seconds (the programme's time zone here is UTC)."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).date().isoformat()


@pytest.fixture(scope="module")
def world(real_moodle: RealMoodle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("progress")
    admin = real_moodle.client(tmp)
    sf = SalesforceSandbox(tmp / "salesforce")
    sf.start()
    today = dt.datetime.now(dt.UTC).date()
    try:
        report = seed(sf, None, members=30, seed=5)
        settings = real_moodle.settings(
            tmp / "mentorsync",
            salesforce=salesforce_settings(sf),
            members={"mass_change_share": 1.0, "mass_change_count": 1000},
            programme={
                "timezone": "UTC", "window_year": 0, "cadence": "none", "min_hours": 2.0,
                "window_start": today.strftime("%m-%d"),
                "window_end": (today + dt.timedelta(days=180)).strftime("%m-%d"),
                "mass_change_share": 1.0,
            },
        )
        settings.pairs.mass_change_share = 1.0
        settings.pairs.mass_change_count = 1000
        ctx = Context(settings)
        try:
            assert MembersSync().run(ctx, SyncRequest(mode="full")).status in (
                "ok", "failed_records")
            assert PairsSync().run(ctx, SyncRequest(mode="full")).status in (
                "ok", "failed_records")
            match_id = next(
                m for m in report.active_matches
                if sf.store.get("Mentorship_Match__c", m)["LMS_Sync_Status__c"] == "Synced"
                and m not in report.two_mentor_matches and m not in report.dual_role_matches
            )
            match = sf.store.get("Mentorship_Match__c", match_id)
            uids = {}
            for role in ("Mentor__c", "Mentee__c"):
                (user,) = admin.get_users_by_field("idnumber", [match[role]])
                uids[role] = int(user["id"])
            yield World(
                real_moodle, sf, ctx, admin, match_id,
                real_moodle.participant(tmp, uids["Mentor__c"]),
                real_moodle.participant(tmp, uids["Mentee__c"]),
                uids["Mentor__c"], uids["Mentee__c"],
            )
        finally:
            ctx.close()
    finally:
        sf.stop()


def test_meetings_ticked_and_orientation_viewed_by_the_participants(world: World) -> None:
    w = world
    w.tick("GMP-2026-M1", True)
    w.tick("GMP-2026-M2", True)
    pageid = int(w.moodle.site.info["orientation_pageid"])
    for person in (w.mentor, w.mentee):
        assert person.call("mod_page_view_page", {"pageid": pageid}, write=True) == {
            "status": True, "warnings": []}
    states = w.mentee_states()
    m1, m2 = states[w.cmid("GMP-2026-M1")], states[w.cmid("GMP-2026-M2")]
    assert (m1["state"], m2["state"]) == (1, 1)
    orient = int(w.moodle.site.info["courses"]["GMP-ORIENT"])
    done_at = {}
    for uid in (w.mentor_uid, w.mentee_uid):
        answer = w.admin.get_course_completion_status(orient, uid)
        status = answer["completionstatus"]
        assert status["completed"] is True  # at once, not at the next cron
        done_at[uid] = day_of(int(answer["completionstatus"]["completions"][0]["timecompleted"]))

    result = w.progress("full")

    assert result.status == "ok", result.reason
    expected = {
        f"{w.match_id}:GMP-2026-M{n}": {
            "External_Id__c": f"{w.match_id}:GMP-2026-M{n}", "Match__c": w.match_id,
            "Meeting_Number__c": n, "Activity_Idnumber__c": f"GMP-2026-M{n}",
            "Completed_On__c": day_of(int(state["timecompleted"])), "Hours__c": 1.0,
            "Source__c": "Moodle",
        }
        for n, state in ((1, m1), (2, m2))
    }
    assert meetings_of(w.sf, w.match_id) == expected
    match = w.match()
    assert {k: match.get(k) for k in (
        "Meetings_Completed__c", "Meeting_Hours__c", "Last_Meeting_Date__c",
        "Mentor_Orientation_Completed__c", "Mentee_Orientation_Completed__c", "Health__c",
    )} == {
        "Meetings_Completed__c": 2, "Meeting_Hours__c": 2.0,
        "Last_Meeting_Date__c": max(r["Completed_On__c"] for r in expected.values()),
        "Mentor_Orientation_Completed__c": done_at[w.mentor_uid],
        "Mentee_Orientation_Completed__c": done_at[w.mentee_uid],
        "Health__c": "Complete",
    }


def test_an_undone_completion_removes_its_meeting_record(world: World) -> None:
    w = world
    w.tick("GMP-2026-M2", False)
    assert w.mentee_states()[w.cmid("GMP-2026-M2")]["state"] == 0

    # Incremental: the plugin's bulk read since the last run names the mentee.
    result = w.progress()

    assert result.status == "ok", result.reason
    assert result.counts["meetings_deleted"] == 1
    assert list(meetings_of(w.sf, w.match_id)) == [f"{w.match_id}:GMP-2026-M1"]
    match = w.match()
    assert (match["Meetings_Completed__c"], match["Meeting_Hours__c"], match["Health__c"]) == (
        1, 1.0, "On track")
