"""The programme half of ``mentorsync demo``: pairs made, one cancelled and re-matched, and
meetings ticked in Moodle turning into records and a health status in Salesforce.

Each step says what a staff member would see, in their words; ids are the match numbers staff
know (``Name``), never people's names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from rich.console import Console

from connector.config import Settings
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest

MATCH = "Mentorship_Match__c"
MEETING = "Mentoring_Meeting__c"
PROGRAMME_COURSE = 3
# The meeting activities' course-module ids in the sandbox (GMP-2026-M1.. in catalog order).
MEETING_CMIDS = (4, 5, 6)
# The orientation course's page, completed by viewing it (and with it the course).
ORIENTATION_PAGE = 2

Wait = Callable[[str, Callable[[], bool], float], None]


def _run(settings: Settings, kind: str, request: SyncRequest) -> RunResult:
    """One run of ``kind`` under its lock, waiting (with a deadline) while the worker has it."""
    import time

    from connector.registry import kinds
    from connector.state import locks

    ctx = Context(settings)
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with locks.held(ctx.db, f"kind:{kind}", settings.service.lock_ttl_seconds):
                    return kinds()[kind].run(ctx, request)
            except locks.LockBusy:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker kept the {kind} lock for 120 s") from None
                time.sleep(0.2)  # the worker's run holds it; it ends on its own
    finally:
        ctx.close()


def _label(sf: Any, match_id: str) -> str:
    record = sf.store.get(MATCH, match_id) or {}
    return f"match {record.get('Name') or match_id}"


def make_pairs(console: Console, settings: Settings, sf: Any, story: Any) -> list[str]:
    """The first pairs sync; returns the active matches that were set up."""
    result = _run(settings, "pairs", SyncRequest(mode="full"))
    ready = [
        m
        for m in story.active_matches
        if (sf.store.get(MATCH, m) or {}).get("LMS_Sync_Status__c") == "Synced"
    ]
    console.print(
        f"  {len(ready)} pairs ready: both people in the orientation and programme courses,"
        "\n  a private group each, and each mentor can follow the mentee's progress"
    )
    if result.failed:
        console.print(
            f"  {result.failed} match(es) need attention in Salesforce: a person without a"
            "\n  Moodle account (see LMS_Sync_Error__c on the match)"
        )
    return ready


def rematch(console: Console, sf: Any, moodle: Any, ready: list[str], wait: Wait) -> str:
    """Staff cancel one match and re-match its mentee with another mentor; the worker (woken by
    the Outbound Messages) applies both. Returns the new match's Id."""
    old_id = next(m for m in ready if _alone(sf, m))
    old = sf.store.get(MATCH, old_id)
    other = next(m for m in ready if m != old_id)
    new_mentor = sf.store.get(MATCH, other)["Mentor__c"]
    sf.store.update(MATCH, old_id, {"Status__c": "Cancelled"})
    new_id = sf.store.create(
        MATCH,
        {
            "Mentor__c": new_mentor,
            "Mentee__c": old["Mentee__c"],
            "Status__c": "Active",
            "Program__c": old["Program__c"],
        },
    )
    console.print(f"  {_label(sf, old_id)}: cancelled by staff")
    console.print(f"  {_label(sf, new_id)}: the same mentee with a new mentor")
    site = moodle.site

    def applied() -> bool:
        return (
            site.group_by_idnumber(old_id, PROGRAMME_COURSE) is None
            and site.group_by_idnumber(new_id, PROGRAMME_COURSE) is not None
            and (sf.store.get(MATCH, new_id) or {}).get("LMS_Sync_Status__c") == "Synced"
        )

    wait("the cancel and the re-match to reach Moodle", applied, 60)
    console.print(
        f"  Moodle now: {_label(sf, old_id)}'s group is gone and its mentor no longer sees the"
        f"\n  mentee; {_label(sf, new_id)} has its own group, and the new mentor sees her"
    )
    return new_id


def meetings(console: Console, settings: Settings, sf: Any, moodle: Any, match_id: str) -> None:
    """Both people do the orientation and the mentee ticks three meetings (a month apart); the
    progress sync writes them and the pair's health to Salesforce."""
    before = _run(settings, "progress", SyncRequest(mode="ids", ids=(match_id,)))
    health_before = (sf.store.get(MATCH, match_id) or {}).get("Health__c") or "-"
    match = sf.store.get(MATCH, match_id)
    mentee = moodle.site.user_by_idnumber(match["Mentee__c"])["id"]
    mentor = moodle.site.user_by_idnumber(match["Mentor__c"])["id"]
    for person in (mentor, mentee):
        moodle.site.view_page(person, ORIENTATION_PAGE)
    today = dt.datetime.now(dt.UTC)
    for n, cmid in enumerate(MEETING_CMIDS):
        moodle.site.set_completion(mentee, cmid, 1)
        when = today - dt.timedelta(days=30 * (len(MEETING_CMIDS) - 1 - n))
        moodle.site.completions[(mentee, cmid)]["timemodified"] = int(when.timestamp())
    after = _run(settings, "progress", SyncRequest(mode="ids", ids=(match_id,)))
    record = sf.store.get(MATCH, match_id) or {}
    written = len(sf.store.find(MEETING, Match__c=match_id))
    console.print(
        "  Both did the orientation training, and the mentee ticked"
        f" {len(MEETING_CMIDS)} meetings"
        "\n  in Moodle, a month apart. Salesforce now has"
        f" {written} meeting records"
        f"\n  for {_label(sf, match_id)} ({record.get('Meeting_Hours__c') or 0:g} hours),"
        f" and its health went from {health_before} to {record.get('Health__c') or '-'}"
    )
    if before.status not in ("ok", "failed_records") or after.status not in (
        "ok",
        "failed_records",
    ):
        raise RuntimeError(f"progress sync {after.status}: {after.reason}")


def _alone(sf: Any, match_id: str) -> bool:
    m = sf.store.get(MATCH, match_id)
    people = {m["Mentor__c"], m["Mentee__c"]}
    for other in sf.store.find(MATCH):
        if other["Id"] != match_id and other["Status__c"] in ("Active", "Completed"):
            if people & {other["Mentor__c"], other["Mentee__c"]}:
                return False
    return True
