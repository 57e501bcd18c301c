"""The progress run against the loopback sandboxes: exact payloads, exact call counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.progress.run import ProgressRun
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.testing import running_sandboxes
from tests.kinds.progress.progress_world import (
    MEETING_CMIDS,
    Pair,
    Writes,
    add_pairs,
    add_person,
    meetings_of,
    orient,
    spy_writes,
    tick,
    unix,
)

pytestmark = pytest.mark.e2e

# 10 December 2026: October and November have passed in the 2026 window.
NOW = dt.datetime(2026, 12, 10, 15, 0, tzinfo=dt.UTC)
M1, M2, M3 = (MEETING_CMIDS[f"GMP-2026-M{n}"] for n in (1, 2, 3))
# site_info 1, courses by shortname 2, contents 1, course module 6 (one per module with
# completion in the programme course: the contents leave idnumbers out).
OVERHEAD = 10


@dataclass
class World:
    sf: SalesforceSandbox
    moodle: MoodleSandbox
    ctx: Context
    writes: Writes

    def run(self, **request: Any) -> RunResult:
        self.writes.clear()
        self.ctx.moodle.calls.clear()
        return ProgressRun(self.ctx, SyncRequest(**request), now=NOW).execute()

    def match(self, match_id: str) -> dict[str, Any]:
        record = self.sf.store.get("Mentorship_Match__c", match_id)
        assert record is not None
        return record


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    overrides = {"programme": {"window_year": 2026, "mass_change_share": 1.0}}
    with running_sandboxes(tmp_path, members=0, overrides=overrides) as (sf, moodle, settings):
        ctx = Context(settings)
        try:
            yield World(sf, moodle, ctx, spy_writes(ctx.salesforce))
        finally:
            ctx.close()


def meeting(pair: Pair, n: int, day: str) -> dict[str, Any]:
    return {
        "External_Id__c": f"{pair.match_id}:GMP-2026-M{n}",
        "Match__c": pair.match_id,
        "Meeting_Number__c": n,
        "Activity_Idnumber__c": f"GMP-2026-M{n}",
        "Completed_On__c": day,
        "Hours__c": 1.0,
        "Source__c": "Moodle",
    }


def test_completions_become_meeting_records_and_a_rerun_writes_nothing(world: World) -> None:
    site = world.moodle.site
    (pair, idle) = add_pairs(world.sf, site, 2)
    orient(site, pair.mentor_uid, unix("2026-09-20"))
    orient(site, pair.mentee_uid, unix("2026-09-21"))
    # 23:30 in New York on 31 October is 03:30 UTC on 1 November: an October meeting.
    tick(site, pair.mentee_uid, M1, unix("2026-11-01", hour=3) + 1800)
    tick(site, pair.mentee_uid, M2, unix("2026-11-20"))
    # The mentor's tick does not count (programme.ticked_by = mentee).
    tick(site, pair.mentor_uid, M3, unix("2026-12-01"))

    first = world.run(mode="full")
    assert first.status == "ok", first.reason
    assert first.counts == {
        "meetings_written": 2, "matches_updated": 2, "matches_read": 2, "planned": 4,
        "moodle_reads": 6, "meeting_records": 0, "failed": 0,
    }
    assert world.writes.upserts == [
        (
            "Mentoring_Meeting__c",
            "External_Id__c",
            [meeting(pair, 1, "2026-10-31"), meeting(pair, 2, "2026-11-20")],
        )
    ]
    assert world.writes.updates == [
        (
            "Mentorship_Match__c",
            [
                {
                    "Id": pair.match_id,
                    "Mentor_Orientation_Completed__c": "2026-09-20",
                    "Mentee_Orientation_Completed__c": "2026-09-21",
                    "Meetings_Completed__c": 2,
                    "Meeting_Hours__c": 2,
                    "Last_Meeting_Date__c": "2026-11-20",
                    "Health__c": "On track",
                },
                {
                    "Id": idle.match_id,
                    "Meetings_Completed__c": 0,
                    "Meeting_Hours__c": 0,
                    "Health__c": "At risk",
                },
            ],
        )
    ]
    assert world.writes.deletes == []
    assert meetings_of(world.sf, pair.match_id) == {
        f"{pair.match_id}:GMP-2026-M1": meeting(pair, 1, "2026-10-31"),
        f"{pair.match_id}:GMP-2026-M2": meeting(pair, 2, "2026-11-20"),
    }
    assert world.match(pair.match_id)["Health__c"] == "On track"

    again = world.run(mode="full")
    assert again.status == "ok"
    assert again.counts == {
        "unchanged": 2, "matches_read": 2, "moodle_reads": 6, "meeting_records": 2, "failed": 0,
    }
    assert world.writes.calls == 0
    # Per-user: 2 orientation reads and 1 meeting read per pair, plus the run's overhead.
    assert sum(world.ctx.moodle.calls.values()) == OVERHEAD + 6


def test_an_undone_completion_deletes_its_record(world: World) -> None:
    site = world.moodle.site
    (pair,) = add_pairs(world.sf, site, 1)
    tick(site, pair.mentee_uid, M1, unix("2026-10-10"))
    tick(site, pair.mentee_uid, M2, unix("2026-11-10"))
    assert world.run(mode="full").counts["meetings_written"] == 2
    (m2,) = [
        r for r in world.sf.store.find("Mentoring_Meeting__c", Match__c=pair.match_id)
        if r["Activity_Idnumber__c"] == "GMP-2026-M2"
    ]

    tick(site, pair.mentee_uid, M2, unix("2026-12-01"), state=0)
    undone = world.run(mode="ids", ids=(str(pair.mentee_uid),))
    assert undone.status == "ok", undone.reason
    assert world.writes.deletes == [[m2["Id"]]]
    assert world.writes.upserts == []
    assert world.writes.updates == [
        (
            "Mentorship_Match__c",
            [{"Id": pair.match_id, "Meetings_Completed__c": 1, "Meeting_Hours__c": 1,
              "Last_Meeting_Date__c": "2026-10-10"}],
        )
    ]
    assert undone.counts["meetings_deleted"] == 1
    assert list(meetings_of(world.sf, pair.match_id)) == [f"{pair.match_id}:GMP-2026-M1"]


def test_the_guard_stops_a_mass_deletion(world: World) -> None:
    site = world.moodle.site
    (pair,) = add_pairs(world.sf, site, 1)
    cmids = [MEETING_CMIDS[f"GMP-2026-M{n}"] for n in range(1, 5)]
    days = ("2026-10-10", "2026-11-10", "2026-12-01", "2026-12-02")
    for cmid, day in zip(cmids, days, strict=True):
        tick(site, pair.mentee_uid, cmid, unix(day))
    world.run(mode="full")
    world.ctx.settings.programme.mass_change_share = 0.5
    for cmid in cmids:
        tick(site, pair.mentee_uid, cmid, unix("2026-12-03"), state=0)
    stopped = world.run(mode="full")
    assert stopped.status == "stopped"
    assert stopped.reason == (
        "mass_change: would delete 4 of 4 meeting records (limits: 50%, 100); "
        "run with --allow-mass-change to proceed"
    )
    assert world.writes.calls == 0
    assert len(meetings_of(world.sf, pair.match_id)) == 4
    # Up to GUARD_FLOOR deletions always go through.
    tick(site, pair.mentee_uid, cmids[0], unix("2026-12-04"))
    allowed = world.run(mode="full")
    assert (allowed.status, allowed.counts["meetings_deleted"]) == ("ok", 3)


def test_two_mentors_each_match_has_its_own_records(world: World) -> None:
    site = world.moodle.site
    mentee = add_person(world.sf, site, "shared-mentee", False)
    first, second = add_pairs(world.sf, site, 2, mentee=mentee)
    tick(site, mentee[1], M1, unix("2026-10-15"))

    result = world.run(mode="ids", ids=(str(mentee[1]),))
    assert result.status == "ok", result.reason
    ((_, _, sent),) = world.writes.upserts
    assert sent == [meeting(first, 1, "2026-10-15"), meeting(second, 1, "2026-10-15")]
    assert list(meetings_of(world.sf, first.match_id)) == [f"{first.match_id}:GMP-2026-M1"]
    assert list(meetings_of(world.sf, second.match_id)) == [f"{second.match_id}:GMP-2026-M1"]
    # The mentee is read once although in two matches: 1 meeting read + 3 orientation reads.
    assert sum(world.ctx.moodle.calls.values()) == OVERHEAD + 4


def test_the_plugin_and_the_per_user_path_plan_the_same_records(world: World) -> None:
    site = world.moodle.site
    pairs = add_pairs(world.sf, site, 6)
    for n, pair in enumerate(pairs):
        orient(site, pair.mentee_uid, unix("2026-09-25"))
        if n % 2:
            orient(site, pair.mentor_uid, unix("2026-09-26"))
        for k, cmid in enumerate((M1, M2, M3)[: n % 4]):
            tick(site, pair.mentee_uid, cmid, unix(f"2026-{10 + k}-0{n + 1}"))

    per_user = world.run(mode="full", dry_run=True)
    per_user_calls = dict(world.ctx.moodle.calls)
    site.plugin_installed = True
    bulk = world.run(mode="full", dry_run=True)
    bulk_calls = dict(world.ctx.moodle.calls)

    assert per_user.plan == bulk.plan
    assert len(per_user.plan) == 6 + sum(n % 4 for n in range(6))
    assert per_user_calls["core_completion_get_course_completion_status"] == 12
    assert per_user_calls["core_completion_get_activities_completion_status"] == 6
    assert sum(per_user_calls.values()) == OVERHEAD + 18
    # One page per course for the bulk read.
    assert bulk_calls["local_mentorsync_get_completions"] == 2
    assert "core_completion_get_course_completion_status" not in bulk_calls
    assert sum(bulk_calls.values()) == OVERHEAD + 2


def test_the_incremental_sweep_without_the_plugin_is_capped_and_goes_on(world: World) -> None:
    site = world.moodle.site
    pairs = add_pairs(world.sf, site, 5)
    for pair in pairs:
        tick(site, pair.mentee_uid, M1, unix("2026-10-12"))
    # 3 reads per pair: a cap of 7 takes two pairs a run.
    world.ctx.settings.programme.completion_reads_per_run = 7
    ordered = sorted(p.match_id for p in pairs)
    covered = []
    for _ in range(3):
        result = world.run()
        assert result.status == "ok", result.reason
        ((_, _, sent),) = world.writes.upserts
        covered.append([r["Match__c"] for r in sent])
    assert covered == [ordered[0:2], ordered[2:4], ordered[4:5]]
    # The sweep starts over after the last match.
    result = world.run()
    assert result.counts["unchanged"] == 2 and world.writes.calls == 0


def test_incremental_with_the_plugin_reads_only_what_changed(world: World) -> None:
    site = world.moodle.site
    site.plugin_installed = True
    pairs = add_pairs(world.sf, site, 3)
    assert world.run().counts["matches_updated"] == 3  # no cursor yet: everything
    tick(site, pairs[1].mentee_uid, M1, int(dt.datetime.now(dt.UTC).timestamp()))
    result = world.run()
    assert result.status == "ok", result.reason
    assert result.counts["users_changed"] == 1
    assert result.counts["matches_read"] == 1
    ((_, _, sent),) = world.writes.upserts
    assert [r["Match__c"] for r in sent] == [pairs[1].match_id]
    calls = world.ctx.moodle.calls
    # Changes since the cursor (2 bulk pages), then that pair's 3 per-user reads.
    assert calls["local_mentorsync_get_completions"] == 2
    assert sum(calls.values()) == OVERHEAD + 2 + 3


def test_ids_are_match_ids_or_moodle_user_ids() -> None:
    from connector.kinds.progress.kind import MATCH_OR_MOODLE_USER
    from connector.kinds.progress.run import split_ids

    match = "a015e000000001AAAA"
    assert split_ids([match, "42"]) == ([match], [42])
    assert MATCH_OR_MOODLE_USER.invalid([match, "42", "0", "4-2", "a01"]) == ["0", "4-2", "a01"]


def test_a_course_completion_is_dated_by_its_criteria() -> None:
    from connector.kinds.progress.read import course_completed_at

    def answer(completed: bool, aggregation: int, *times: int | None) -> dict[str, Any]:
        criteria = [{"complete": t is not None, "timecompleted": t} for t in times]
        status = {"completed": completed, "aggregation": aggregation, "completions": criteria}
        return {"completionstatus": status, "warnings": []}

    assert course_completed_at(answer(True, 1, 100, 300)) == 300  # all: the last criterion
    assert course_completed_at(answer(True, 2, 100, None, 300)) == 100  # any: the first
    assert course_completed_at(answer(False, 1, 100, None)) is None
    assert course_completed_at(answer(True, 1)) is None  # cannot be dated
