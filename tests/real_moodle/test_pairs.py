"""The pairs sync against the real Moodle 4.5 site and the sandbox Salesforce.

Moodle's state is read through its own web-service functions (``core_enrol_get_enrolled_users``,
``core_group_get_course_groups``, ``core_group_get_group_members``). No function lists roles
assigned in a user context, so the mentor's role over a mentee is read from Moodle's own
``mdl_role_assignments`` table (joined to ``mdl_context`` at ``CONTEXT_USER`` = 30). The tests
build on each other in order: members, then pairs, then a cancel, then a re-match.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from connector.clients.moodle.client import MoodleClient
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.pairs.kind import PairsSync
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import SeedReport, seed
from tests.real_moodle.conftest import RealMoodle

STUDENT, TEACHER = 5, 4
CONTEXT_USER = 30
WRITES = (
    "enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_group_create_groups",
    "core_group_delete_groups", "core_group_add_group_members",
    "core_group_delete_group_members", "core_role_assign_roles", "core_role_unassign_roles",
)


@dataclass
class World:
    """The real site, the sandbox org, a mentorsync context and Moodle's own view."""

    moodle: RealMoodle
    sf: SalesforceSandbox
    report: SeedReport
    ctx: Context
    admin: MoodleClient
    # Chosen in the first test: a pair whose mentee was enrolled in orientation by hand.
    hand_match: str = ""

    @property
    def orient(self) -> int:
        return int(self.moodle.site.info["courses"]["GMP-ORIENT"])

    @property
    def programme(self) -> int:
        return int(self.moodle.site.info["courses"]["GMP-2026"])

    @property
    def mentor_role(self) -> int:
        return int(self.moodle.site.info["mentor_roleid"])

    def pairs(self, mode: str = "incremental", **kwargs: Any) -> RunResult:
        return PairsSync().run(self.ctx, SyncRequest(mode=mode, **kwargs))  # type: ignore[arg-type]

    def match(self, match_id: str) -> dict[str, Any]:
        record = self.sf.store.get("Mentorship_Match__c", match_id)
        assert record is not None
        return record

    def user(self, contact_id: str) -> int | None:
        found = self.admin.get_users_by_field("idnumber", [contact_id])
        return int(found[0]["id"]) if len(found) == 1 else None

    def people(self, match_id: str) -> tuple[int, int]:
        m = self.match(match_id)
        mentor, mentee = self.user(m["Mentor__c"]), self.user(m["Mentee__c"])
        assert mentor is not None and mentee is not None
        return mentor, mentee

    def ready(self) -> list[str]:
        """Active matches whose two people have accounts (not the shared-email conflict)."""
        return [m for m in self.report.active_matches
                if self.match(m)["Status__c"] == "Active"
                and all(self.user(self.match(m)[f]) for f in ("Mentor__c", "Mentee__c"))]

    def alone(self, match_id: str) -> bool:
        """Neither person of the match is in another active or completed match."""
        m = self.match(match_id)
        people = {m["Mentor__c"], m["Mentee__c"]}
        return not any(
            other["Id"] != match_id and other["Status__c"] in ("Active", "Completed")
            and people & {other["Mentor__c"], other["Mentee__c"]}
            for other in self.sf.store.find("Mentorship_Match__c"))

    def enrolments(self, course: int) -> dict[int, set[int]]:
        """Moodle's answer: user id -> role ids in ``course``."""
        users = self.admin.get_enrolled_users(course, {"userfields": "id,roles"})
        return {int(u["id"]): {int(r["roleid"]) for r in u.get("roles", [])} for u in users}

    def group(self, match_id: str) -> dict[str, Any] | None:
        found = [g for g in self.admin.get_course_groups(self.programme)
                 if g["idnumber"] == match_id]
        assert len(found) <= 1
        return found[0] if found else None

    def members(self, group_id: int) -> set[int]:
        (answer,) = self.admin.get_group_members([group_id])
        return {int(u) for u in answer["userids"]}

    def groups_of(self, uid: int) -> set[int]:
        groups = self.admin.get_course_groups(self.programme)
        answers = self.admin.get_group_members([int(g["id"]) for g in groups])
        return {int(a["groupid"]) for a in answers if uid in {int(u) for u in a["userids"]}}

    def mentor_roles(self) -> set[tuple[int, int]]:
        """(mentor, mentee) for every mentor role assignment in a user context."""
        rows = self.moodle.site.sql(
            "SELECT ra.userid, ctx.instanceid FROM mdl_role_assignments ra JOIN mdl_context ctx "
            f"ON ctx.id = ra.contextid WHERE ctx.contextlevel = {CONTEXT_USER} "
            f"AND ra.roleid = {self.mentor_role}", "moodle")
        return {(int(a), int(b)) for a, b in (line.split("|") for line in rows.split())}

    def writes(self) -> int:
        return sum(self.ctx.moodle.calls[f] for f in WRITES)


@pytest.fixture(scope="module")
def world(real_moodle: RealMoodle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("pairs")
    admin = real_moodle.client(tmp)
    sf = SalesforceSandbox(tmp / "salesforce")
    sf.start()
    try:
        report = seed(sf, None, members=80, seed=11)
        settings = real_moodle.settings(
            tmp / "mentorsync",
            salesforce={
                "auth": "password", "username": sf.username, "password": sf.password,
                "security_token": sf.security_token, "domain": f"{sf.host}:{sf.port}",
                "ca_bundle": sf.ca_file, "org_ids": [sf.org_id],
            },
            members={"mass_change_share": 1.0, "mass_change_count": 1000},
        )
        settings.pairs.mass_change_share = 1.0
        settings.pairs.mass_change_count = 1000
        ctx = Context(settings)
        try:
            yield World(real_moodle, sf, report, ctx, admin)
        finally:
            ctx.close()
    finally:
        sf.stop()


def test_active_matches_get_courses_group_and_mentor_role(world: World) -> None:
    w = world
    assert MembersSync().run(w.ctx, SyncRequest(mode="full")).status in ("ok", "failed_records")
    ready = w.ready()
    # A hand enrolment before mentorsync looked: never mentorsync's to undo.
    w.hand_match = next(m for m in ready if w.alone(m))
    _, hand_mentee = w.people(w.hand_match)
    w.admin.enrol_users([{"roleid": STUDENT, "userid": hand_mentee, "courseid": w.orient}])

    first = w.pairs("full")

    blocked = sorted(set(w.report.active_matches) - set(ready))
    assert (first.status, first.failed) == ("failed_records" if blocked else "ok", len(blocked))
    assert first.counts["groups_created"] == len(ready)
    orient, programme = w.enrolments(w.orient), w.enrolments(w.programme)
    roles = w.mentor_roles()
    groups = {g["idnumber"]: g for g in w.admin.get_course_groups(w.programme)}
    assert set(groups) == set(ready)
    for match_id in ready:
        mentor, mentee = w.people(match_id)
        assert STUDENT in orient[mentor] and STUDENT in orient[mentee]
        assert STUDENT in programme[mentee] and TEACHER in programme[mentor]
        assert w.members(int(groups[match_id]["id"])) == {mentor, mentee}
        assert (mentor, mentee) in roles
        record = w.match(match_id)
        assert record["LMS_Sync_Status__c"] == "Synced"
        assert record["LMS_Group_Id__c"] == str(groups[match_id]["id"])
    # Exactly the ready pairs' roles: nothing for proposed, cancelled or completed matches.
    assert roles == {w.people(m) for m in ready}

    # The mentee with two mentors: two groups, both mentors hold the role over her.
    mentee = w.user(w.report.two_mentor_mentee)
    assert mentee is not None
    mentors = {w.people(m)[0] for m in w.report.two_mentor_matches}
    assert len(mentors) == 2
    assert {(m, mentee) for m in mentors} <= roles
    assert len(w.groups_of(mentee)) == 2

    # Idempotent: an incremental run (it reads the write-back echo) writes nothing to Moodle.
    before = w.writes()
    again = w.pairs()
    assert again.status == first.status, again.reason
    assert w.writes() == before


def test_cancel_undoes_exactly_what_mentorsync_did(world: World) -> None:
    w = world
    cancel = w.hand_match
    as_mentee, _as_mentor = w.report.dual_role_matches
    mentor, mentee = w.people(cancel)
    group = w.group(cancel)
    assert group is not None
    w.sf.store.update("Mentorship_Match__c", cancel, {"Status__c": "Cancelled"})
    w.sf.store.update("Mentorship_Match__c", as_mentee, {"Status__c": "Cancelled"})

    result = w.pairs("ids", ids=(cancel, as_mentee))

    assert (result.status, result.counts["groups_deleted"]) == ("ok", 2), result.reason
    assert w.group(cancel) is None and w.group(as_mentee) is None
    roles = w.mentor_roles()
    assert (mentor, mentee) not in roles and w.people(as_mentee) not in roles
    programme, orient = w.enrolments(w.programme), w.enrolments(w.orient)
    assert mentor not in programme and mentee not in programme
    assert mentee in orient  # enrolled by hand: stays
    assert mentor not in orient
    dual = w.user(w.report.dual_role)
    assert dual is not None
    assert TEACHER in programme[dual]  # still a mentor in her other match
    assert dual in orient
    assert w.match(cancel)["LMS_Group_Id__c"] is None


def test_a_cancelled_mentee_re_matched_with_another_mentor(world: World) -> None:
    w = world
    old = w.match(w.hand_match)
    _, mentee = w.people(w.hand_match)
    other = next(m for m in w.ready() if w.alone(m))
    new_mentor, other_mentee = w.people(other)
    assert other_mentee != mentee
    (rematch,) = w.sf.store.bulk_insert("Mentorship_Match__c", [{
        "Mentor__c": w.match(other)["Mentor__c"], "Mentee__c": old["Mentee__c"],
        "Status__c": "Active", "Program__c": old["Program__c"],
        "Start_Date__c": old["Start_Date__c"], "End_Date__c": old["End_Date__c"],
    }])

    result = w.pairs("ids", ids=(rematch,))

    assert (result.status, result.counts["groups_created"]) == ("ok", 1), result.reason
    group = w.group(rematch)
    assert group is not None
    assert w.members(int(group["id"])) == {new_mentor, mentee}
    assert {(new_mentor, mentee), (new_mentor, other_mentee)} <= w.mentor_roles()
    assert STUDENT in w.enrolments(w.programme)[mentee]
    assert w.match(rematch)["LMS_Sync_Status__c"] == "Synced"

    # Cancelled again: the re-match is undone, the hand enrolment in orientation still stays.
    w.sf.store.update("Mentorship_Match__c", rematch, {"Status__c": "Cancelled"})
    undone = w.pairs("ids", ids=(rematch,))
    assert (undone.status, undone.counts["groups_deleted"]) == ("ok", 1), undone.reason
    assert (new_mentor, mentee) not in w.mentor_roles()
    assert (new_mentor, other_mentee) in w.mentor_roles()  # his other pair keeps it
    assert mentee not in w.enrolments(w.programme)
    assert TEACHER in w.enrolments(w.programme)[new_mentor]
    assert mentee in w.enrolments(w.orient)
