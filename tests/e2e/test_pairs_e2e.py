"""The pairs sync against the loopback sandboxes: matches become enrolments, a private group
per pair and the mentor's user-context role; a cancelled match undoes exactly what it did."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.pairs import read
from connector.kinds.pairs.kind import PairsSync
from connector.state.database import Ownership
from mappings.pairs import load_pairs_field_map
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import SeedReport
from sandbox.testing import running_sandboxes

pytestmark = pytest.mark.e2e

ORIENT, PROGRAMME = 2, 3
STUDENT, TEACHER, MENTOR = 5, 4, 9
WRITES = (
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_group_create_groups",
    "core_group_delete_groups",
    "core_group_add_group_members",
    "core_group_delete_group_members",
    "core_role_assign_roles",
    "core_role_unassign_roles",
)


@dataclass
class World:
    sf: SalesforceSandbox
    moodle: MoodleSandbox
    ctx: Context
    report: SeedReport

    def pairs(self, mode: str = "incremental", **kwargs: Any) -> RunResult:
        return PairsSync().run(self.ctx, SyncRequest(mode=mode, **kwargs))  # type: ignore[arg-type]

    def match(self, match_id: str) -> dict[str, Any]:
        record = self.sf.store.get("Mentorship_Match__c", match_id)
        assert record is not None
        return record

    def has_account(self, contact_id: str) -> bool:
        return len(self.moodle.site.user_ids_by_idnumber(contact_id)) == 1

    def ready(self) -> list[str]:
        """Active matches whose two people have accounts (the seed's shared-email Contact
        cannot get one: a conflict for staff to resolve)."""
        return [
            m
            for m in self.report.active_matches
            if all(self.has_account(self.match(m)[f]) for f in ("Mentor__c", "Mentee__c"))
        ]

    def alone(self, match_id: str) -> bool:
        """Whether neither person of the match is in another active or completed match."""
        m = self.match(match_id)
        people = {m["Mentor__c"], m["Mentee__c"]}
        for other in self.sf.store.find("Mentorship_Match__c"):
            if other["Id"] != match_id and other["Status__c"] in ("Active", "Completed"):
                if people & {other["Mentor__c"], other["Mentee__c"]}:
                    return False
        return True

    def user(self, contact_id: str) -> int:
        ids = self.moodle.site.user_ids_by_idnumber(contact_id)
        assert len(ids) == 1
        return ids[0]

    def group(self, match_id: str) -> dict[str, Any] | None:
        return self.moodle.site.group_by_idnumber(match_id, PROGRAMME)

    def members(self, match_id: str) -> set[int]:
        group = self.group(match_id)
        assert group is not None
        return {
            uid
            for uid in self.moodle.site.enrolments(PROGRAMME)
            if group["id"] in self.moodle.site.user_group_ids(uid, PROGRAMME)
        }

    def writes(self) -> int:
        return sum(self.moodle.calls[f] for f in WRITES)

    def set_status(self, match_id: str, status: str) -> None:
        self.sf.store.update("Mentorship_Match__c", match_id, {"Status__c": status})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    overrides = {"members": {"mass_change_share": 1.0, "mass_change_count": 1000}}
    with running_sandboxes(tmp_path, members=80, overrides=overrides) as (sf, moodle, settings):
        settings.pairs.mass_change_share = 1.0
        settings.pairs.mass_change_count = 1000
        ctx = Context(settings)
        try:
            yield World(sf, moodle, ctx, sf.seed_report)
        finally:
            ctx.close()


def people(w: World, match_id: str) -> tuple[int, int]:
    m = w.match(match_id)
    return w.user(m["Mentor__c"]), w.user(m["Mentee__c"])


def test_active_matches_get_courses_group_and_mentor_role_then_settle(world: World) -> None:
    w = world
    assert MembersSync().run(w.ctx, SyncRequest(mode="full")).status in ("ok", "failed_records")

    first = w.pairs("full")

    ready = w.ready()
    blocked = sorted(set(w.report.active_matches) - set(ready))
    assert (first.status, first.failed) == ("failed_records" if blocked else "ok", len(blocked))
    assert first.counts["groups_created"] == len(ready)
    for match_id in blocked:  # reported on the match, nothing half-applied
        assert w.group(match_id) is None
        record = w.match(match_id)
        assert (record["LMS_Sync_Status__c"], record["LMS_Sync_Error__c"]) == (
            "Failed",
            "person:no_account",
        )
    for match_id in ready:
        mentor, mentee = people(w, match_id)
        enrolled_o, enrolled_p = (
            w.moodle.site.enrolments(ORIENT),
            w.moodle.site.enrolments(PROGRAMME),
        )
        assert STUDENT in enrolled_o[mentor] and STUDENT in enrolled_o[mentee]
        assert STUDENT in enrolled_p[mentee] and TEACHER in enrolled_p[mentor]
        assert w.members(match_id) == {mentor, mentee}
        assert (MENTOR, mentor, "user", mentee) in w.moodle.site.role_assignments
        record = w.match(match_id)
        assert record["LMS_Sync_Status__c"] == "Synced"
        assert record["LMS_Group_Id__c"] == str(w.group(match_id)["id"])  # type: ignore[index]
    # Nothing for the proposed, cancelled or completed match.
    for idle in (w.report.proposed_match, w.report.cancelled_match, w.report.completed_match):
        assert w.group(idle) is None

    # The mentee with two mentors: two groups, both mentors hold the role over her.
    mentee = w.user(w.report.two_mentor_mentee)
    mentors = {people(w, m)[0] for m in w.report.two_mentor_matches}
    assert len(mentors) == 2
    assert {(MENTOR, m, "user", mentee) for m in mentors} <= set(w.moodle.site.role_assignments)
    assert len(w.moodle.site.user_group_ids(mentee, PROGRAMME)) == 2

    # Idempotent: an incremental run (it reads the write-back echo) writes nothing to Moodle.
    before = w.writes()
    again = w.pairs()
    assert again.status == first.status, again.reason
    assert w.writes() == before


def test_cancel_undoes_exactly_what_mentorsync_did(world: World) -> None:
    w = world
    MembersSync().run(w.ctx, SyncRequest(mode="full"))
    # One of the dual-role person's matches: she keeps what her other match needs.
    as_mentee, _as_mentor = w.report.dual_role_matches
    # A hand enrolment before mentorsync looked: never mentorsync's to undo.
    cancel = next(m for m in w.ready() if w.alone(m))
    mentor, mentee = people(w, cancel)
    w.moodle.site.enrol(ORIENT, mentee, STUDENT)
    assert w.pairs("full").status in ("ok", "failed_records")
    group_id = w.group(cancel)["id"]  # type: ignore[index]

    w.set_status(cancel, "Cancelled")
    w.set_status(as_mentee, "Cancelled")
    result = w.pairs("ids", ids=(cancel, as_mentee))

    assert (result.status, result.counts["groups_deleted"]) == ("ok", 2), result.reason
    assert w.group(cancel) is None and group_id not in w.moodle.site.groups
    assert (MENTOR, mentor, "user", mentee) not in w.moodle.site.role_assignments
    assert mentor not in w.moodle.site.enrolments(PROGRAMME)
    assert mentee not in w.moodle.site.enrolments(PROGRAMME)
    assert mentee in w.moodle.site.enrolments(ORIENT)  # enrolled by hand: stays
    assert mentor not in w.moodle.site.enrolments(ORIENT)
    dual = w.user(w.report.dual_role)
    assert TEACHER in w.moodle.site.enrolments(PROGRAMME)[dual]  # still a mentor elsewhere
    assert dual in w.moodle.site.enrolments(ORIENT)
    with w.ctx.db.session() as session:
        owners = set(session.scalars(select(Ownership.owner)))
    assert cancel not in owners
    assert w.match(cancel)["LMS_Group_Id__c"] is None


def test_drift_is_healed_and_a_mass_cancel_is_stopped(world: World) -> None:
    w = world
    MembersSync().run(w.ctx, SyncRequest(mode="full"))
    assert w.pairs("full").status in ("ok", "failed_records")
    match_id = w.ready()[0]
    mentor, mentee = people(w, match_id)
    group = w.group(match_id)
    assert group is not None
    w.moodle.site.remove_group_member(group["id"], mentor)  # by hand in Moodle

    dry = w.pairs("full", dry_run=True)
    # A full run also re-asserts the mentor roles it owns (Moodle cannot list them).
    assert [line for line in dry.plan if line[1] == match_id] == [
        ("pair", match_id, "add mentor to group, assign mentor role")
    ]
    healed = w.pairs("full")
    assert healed.counts["members_added"] == 1
    assert w.members(match_id) == {mentor, mentee}

    w.ctx.settings.pairs.mass_change_share = 0.05
    w.ctx.settings.pairs.mass_change_count = 5
    for m in w.report.active_matches:
        w.set_status(m, "Cancelled")
    stopped = w.pairs("full")
    assert stopped.status == "stopped"
    assert stopped.reason.startswith("mass_change: would undo ")
    assert w.members(match_id) == {mentor, mentee}


def test_a_failure_midway_through_the_pairs_then_a_re_run_converges(world: World) -> None:
    w = world
    w.ctx.settings.moodle.retry_attempts = 1
    MembersSync().run(w.ctx, SyncRequest(mode="full"))
    # Moodle is down for the group-member calls: enrolments and groups are made, then it stops.
    w.moodle.faults.add("core_group_add_group_members", "http503", times=5)

    broken = w.pairs("full")

    assert broken.status == "error"
    assert broken.reason.startswith("moodle:")
    ready = w.ready()
    assert broken.counts["groups_created"] == len(ready)
    assert "members_added" not in broken.counts
    assert all(w.members(m) == set() for m in ready)
    with w.ctx.db.session() as session:  # what was made is owned, so it can be undone later
        groups = set(session.scalars(select(Ownership.owner).where(Ownership.thing == "group")))
    assert groups == set(ready)

    w.moodle.faults.clear()
    healed = w.pairs("full")

    assert healed.status in ("ok", "failed_records"), healed.reason
    assert "groups_created" not in healed.counts  # never a second group for one match
    assert healed.counts["members_added"] == 2 * len(ready)
    for match_id in ready:
        assert w.members(match_id) == set(people(w, match_id))
        assert w.match(match_id)["LMS_Sync_Status__c"] == "Synced"


def test_a_mentor_lapsing_mid_year_is_reported_on_the_match(world: World) -> None:
    w = world
    MembersSync().run(w.ctx, SyncRequest(mode="full"))
    assert w.pairs("full").status in ("ok", "failed_records")
    match_id = next(m for m in w.ready() if w.alone(m))
    mentor_contact = w.match(match_id)["Mentor__c"]
    mentor, mentee = people(w, match_id)
    w.sf.store.update("Contact", mentor_contact, {"Member_Status__c": "Lapsed"})
    MembersSync().run(w.ctx, SyncRequest(mode="ids", ids=(mentor_contact,)))
    assert w.moodle.site.users[mentor]["suspended"] in (1, True)

    result = w.pairs("ids", ids=(mentor_contact,))  # a Contact event re-reads her matches

    assert result.failed == 1
    record = w.match(match_id)
    assert (record["LMS_Sync_Status__c"], record["LMS_Sync_Error__c"]) == (
        "Failed",
        "person:lapsed",
    )
    # Her suspended account keeps its place; nothing is half-undone while staff decide.
    assert w.members(match_id) == {mentor, mentee}


def _a_granted_pair(w: World) -> tuple[str, int, int, int]:
    """After a member and a pairs sync: a ready match of two people in no other match, its
    mentor and mentee, and its group id, once checked to be all in Moodle."""
    MembersSync().run(w.ctx, SyncRequest(mode="full"))
    assert w.pairs("full").status in ("ok", "failed_records")
    match_id = next(m for m in w.ready() if w.alone(m))
    mentor, mentee = people(w, match_id)
    group = w.group(match_id)
    assert group is not None
    assert (MENTOR, mentor, "user", mentee) in w.moodle.site.role_assignments
    assert {mentor, mentee} <= set(w.moodle.site.enrolments(PROGRAMME))
    return match_id, mentor, mentee, int(group["id"])


def _undone(w: World, match_id: str, mentor: int, mentee: int, group_id: int) -> None:
    """Everything the match had is gone, from Moodle and from the ledger."""
    assert w.group(match_id) is None and group_id not in w.moodle.site.groups
    assert (MENTOR, mentor, "user", mentee) not in w.moodle.site.role_assignments
    for course in (ORIENT, PROGRAMME):
        assert mentor not in w.moodle.site.enrolments(course)
        assert mentee not in w.moodle.site.enrolments(course)
    with w.ctx.db.session() as session:
        assert match_id not in set(session.scalars(select(Ownership.owner)))


def test_a_match_deleted_in_salesforce_is_undone_by_the_next_incremental_run(
    world: World,
) -> None:
    w = world
    deleted, mentor, mentee, group_id = _a_granted_pair(w)

    w.sf.store.delete("Mentorship_Match__c", deleted)
    calls = w.sf.calls["getDeleted"]
    result = w.pairs()

    assert result.status in ("ok", "failed_records"), result.reason
    assert (result.counts["matches_gone"], result.counts["groups_deleted"]) == (1, 1)
    assert result.counts["roles_removed"] == 1 and result.counts["unenrolled"] == 4
    _undone(w, deleted, mentor, mentee, group_id)
    assert w.sf.calls["getDeleted"] == calls + 1
    # Nothing is written back to the deleted record, and the next run has nothing to do.
    assert w.sf.store.get("Mentorship_Match__c", deleted)["IsDeleted"] is True  # type: ignore[index]
    before = w.writes()
    assert "matches_gone" not in w.pairs().counts
    assert w.writes() == before


@pytest.mark.parametrize("new_program", ["OTHER-2026", None])
def test_a_match_moved_out_of_the_programme_is_undone_by_the_next_incremental_run(
    world: World, new_program: str | None
) -> None:
    w = world
    moved, mentor, mentee, group_id = _a_granted_pair(w)

    w.sf.store.update("Mentorship_Match__c", moved, {"Program__c": new_program})
    result = w.pairs()

    assert result.counts["matches_gone"] == 1, result.reason
    _undone(w, moved, mentor, mentee, group_id)
    # Nothing is written to the match: it is another programme's (or none's) now.
    assert w.match(moved)["LMS_Group_Id__c"] == str(group_id)
    assert "matches_gone" not in w.pairs().counts


def test_a_deleted_match_named_by_id_is_undone(world: World) -> None:
    w = world
    deleted, mentor, mentee, group_id = _a_granted_pair(w)
    w.sf.store.delete("Mentorship_Match__c", deleted)

    result = w.pairs("ids", ids=(deleted,))

    assert result.counts["matches_gone"] == 1, result.reason
    _undone(w, deleted, mentor, mentee, group_id)


def test_a_wrong_programme_code_is_stopped_by_the_guard_not_undone(world: World) -> None:
    w = world
    MembersSync().run(w.ctx, SyncRequest(mode="full"))
    assert w.pairs("full").status in ("ok", "failed_records")
    ready = w.ready()
    w.ctx.settings.pairs.mass_change_share = 0.05
    w.ctx.settings.pairs.mass_change_count = 5
    w.ctx.settings.programme.programme_code = "GMP-2062"  # a typo: no match is in it

    stopped = w.pairs("full")

    assert stopped.status == "stopped"
    assert stopped.reason.startswith("mass_change: would undo ")
    assert stopped.counts["matches_gone"] == len(ready)
    assert all(w.group(m) is not None for m in ready)


def test_deleted_and_moved_matches_are_found_with_one_getdeleted_and_one_query(
    world: World,
) -> None:
    w = world
    kept, deleted, moved, elsewhere = w.report.active_matches[:4]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    w.sf.store.delete("Mentorship_Match__c", deleted)
    w.sf.store.update("Mentorship_Match__c", moved, {"Program__c": "OTHER-2026"})
    w.sf.store.update("Mentorship_Match__c", elsewhere, {"Program__c": "OTHER-2026"})
    fieldmap = load_pairs_field_map(w.ctx.settings.pairs.field_map)

    gone = read.gone_matches(
        w.ctx.salesforce,
        fieldmap,
        w.ctx.settings.programme.programme_code,
        {kept, deleted, moved},  # ``elsewhere`` is not mentorsync's: not a candidate
        since=since,
        lookback=dt.timedelta(seconds=60),
        run_start=dt.datetime.now(dt.UTC),
    )

    assert gone == {deleted, moved}
    assert (w.sf.calls["getDeleted"], w.sf.calls["query"]) == (1, 1)


def test_deletions_older_than_salesforce_keeps_are_found_by_looking_the_matches_up(
    world: World,
) -> None:
    w = world
    kept, deleted, moved = w.report.active_matches[:3]
    w.sf.store.delete("Mentorship_Match__c", deleted)
    w.sf.store.update("Mentorship_Match__c", moved, {"Program__c": "OTHER-2026"})
    now = dt.datetime.now(dt.UTC)
    fieldmap = load_pairs_field_map(w.ctx.settings.pairs.field_map)

    gone = read.gone_matches(
        w.ctx.salesforce,
        fieldmap,
        w.ctx.settings.programme.programme_code,
        {kept, deleted, moved},
        since=now - dt.timedelta(days=60),  # getDeleted answers INVALID_REPLICATION_DATE
        lookback=dt.timedelta(seconds=60),
        run_start=now,
    )

    assert gone == {deleted, moved}
    assert (w.sf.calls["getDeleted"], w.sf.calls["query"]) == (1, 1)
