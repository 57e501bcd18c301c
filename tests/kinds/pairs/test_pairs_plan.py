"""The pairs planner: every transition, exact action lists, exact undo, idempotent re-plans."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest
from pairs_world import MENTOR, ORIENT, PROG, STUDENT, TEACHER, World, written_back

from connector.kinds.pairs.model import (
    COURSE_ROLE,
    ENROLMENT,
    GROUP,
    GROUP_MEMBER,
    ROLE,
    Action,
    Grant,
    Match,
    Owned,
    Person,
    Rejected,
    WriteBack,
)
from connector.kinds.pairs.plan import (
    Plan,
    destructive,
    guard_base,
    involved_contacts,
    involved_users,
    plan_pairs,
)
from connector.kinds.pairs.settings import PairsSettings

S = PairsSettings()
OKAFOR = Person("003OKAFOR", 11, last_name="Okafor")
LINDQVIST = Person("003LINDQVIST", 12, last_name="Lindqvist")
BANDA = Person("003BANDA", 13, last_name="Banda")
CHEN = Person("003CHEN", 14, last_name="Chen")
PEOPLE = {p.contact_id: p for p in (OKAFOR, LINDQVIST, BANDA, CHEN)}
EMPTY_WB = {"group_id": "", "status": "", "error": ""}


def match(mid: str, mentor: Person, mentee: Person, status: str = "active", **kw) -> Match:
    return Match(
        id=mid,
        name=f"MM-{mid}",
        mentor_id=mentor.contact_id,
        mentee_id=mentee.contact_id,
        status=status,
        program="GMP-2026",
        writeback=kw.pop("writeback", EMPTY_WB),
        **kw,
    )


def plan(world: World, matches, people=PEOPLE, settings=S, **kw) -> Plan:
    return plan_pairs(matches, people, world.state(), world.owned(), settings, **kw)


def rows(p: Plan) -> list[tuple]:
    """(match, kind, user, course or context user, role) per action: exact and readable."""
    return [
        (a.match_id, a.kind, a.user_id, a.context_user_id or a.course_id, a.role_id)
        for a in p.actions
    ]


def run(world: World, matches, **kw) -> tuple[Plan, list[Match]]:
    """Plan, apply, write back: the matches as the next run reads them."""
    p = plan(world, matches, **kw)
    created = world.apply(p)
    return p, written_back(list(matches), p, created)


ACTIVATE_A1 = [
    ("a0X1", "enrol", 11, ORIENT, STUDENT),
    ("a0X1", "enrol", 12, ORIENT, STUDENT),
    ("a0X1", "enrol", 11, PROG, TEACHER),
    ("a0X1", "enrol", 12, PROG, STUDENT),
    ("a0X1", "create_group", 0, PROG, 0),
    ("a0X1", "add_member", 11, 0, 0),
    ("a0X1", "add_member", 12, 0, 0),
    ("a0X1", "assign_role", 11, 12, MENTOR),
]


def test_active_match_gets_everything_in_one_plan() -> None:
    world = World()
    p = plan(world, [match("a0X1", OKAFOR, LINDQVIST)])
    assert rows(p) == ACTIVATE_A1
    assert p.lines() == [
        (
            "a0X1",
            "enrol mentor in GMP-ORIENT as student, enrol mentee in GMP-ORIENT as student, "
            "enrol mentor in GMP-2026 as teacher, enrol mentee in GMP-2026 as student, "
            "create group, add 2 members, assign mentor role",
        )
    ]
    create = p.actions[4]
    assert (create.name, create.group_idnumber) == ("Okafor & Lindqvist (GMP-2026)", "a0X1")
    assert create.adds == (Grant(GROUP, "a0X1"),)
    assert p.actions[0].adds == (
        Grant(ENROLMENT, str(ORIENT), 11),
        Grant(COURSE_ROLE, str(ORIENT), 11, STUDENT),
    )
    assert p.actions[0].adds[0].contact_id == "003OKAFOR"
    assert p.actions[-1].adds == (Grant(ROLE, "12", 11, MENTOR),)
    (wb,) = p.writebacks
    assert wb.group_pending and wb.changes() == {"status": "Synced"}
    assert wb.resolve(created_group_id=100) == {"group_id": "100", "status": "Synced"}
    assert p.destructive_count == 0


def test_names_never_in_details_or_repr() -> None:
    p = plan(World(), [match("a0X1", OKAFOR, LINDQVIST)])
    text = " ".join(a.details() + repr(a) for a in p.actions) + repr(OKAFOR)
    assert "Okafor" not in text and "Lindqvist" not in text


def test_replan_after_apply_is_empty_and_reassert_only_assigns_roles() -> None:
    world = World()
    _, matches = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    assert matches[0].writeback == {"group_id": "100", "status": "Synced", "error": ""}
    again = plan(world, matches)
    assert again.actions == []
    assert [wb.changes() for wb in again.writebacks] == [{}]
    full = plan(world, matches, reassert_roles=True)
    assert rows(full) == [("a0X1", "assign_role", 11, 12, MENTOR)]


def test_proposed_does_nothing() -> None:
    p = plan(World(), [match("a0X1", OKAFOR, LINDQVIST, "proposed")])
    assert p.actions == [] and p.writebacks[0].changes() == {}


def test_completed_keeps_enrolments_and_group_but_drops_the_role() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    done = replace(m1, status="completed")
    p = plan(world, [done])
    assert rows(p) == [("a0X1", "unassign_role", 11, 12, MENTOR)]
    assert p.writebacks[0].changes() == {}
    assert plan(world, [done], settings=replace(S, completed_keeps_role=True)).actions == []
    drop = plan(world, [done], settings=replace(S, completed_keeps_enrolments=False))
    assert rows(drop) == [
        ("a0X1", "unassign_role", 11, 12, MENTOR),
        ("a0X1", "unenrol", 11, ORIENT, 0),
        ("a0X1", "unenrol", 12, ORIENT, 0),
        ("a0X1", "unenrol", 11, PROG, 0),
        ("a0X1", "unenrol", 12, PROG, 0),
    ]


def test_cancelled_undoes_exactly_and_then_replans_empty() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    cancelled = replace(m1, status="cancelled")
    p, (m1,) = run(world, [cancelled])
    assert rows(p) == [
        ("a0X1", "delete_group", 0, 0, 0),
        ("a0X1", "unassign_role", 11, 12, MENTOR),
        ("a0X1", "unenrol", 11, ORIENT, 0),
        ("a0X1", "unenrol", 12, ORIENT, 0),
        ("a0X1", "unenrol", 11, PROG, 0),
        ("a0X1", "unenrol", 12, PROG, 0),
    ]
    assert p.actions[0].group_id == 100
    assert set(p.actions[0].removes) == {
        Grant(GROUP, "a0X1"),
        Grant(GROUP_MEMBER, "a0X1", 11),
        Grant(GROUP_MEMBER, "a0X1", 12),
    }
    assert p.destructive_count == 6 and all(destructive(a) for a in p.actions)
    assert m1.writeback == {"group_id": "", "status": "Synced", "error": ""}
    assert world.ledger == {} and world.groups == {} and world.user_roles == set()
    assert world.enrol == {ORIENT: {}, PROG: {}}
    assert plan(world, [m1]).actions == []


def test_cancelled_keeps_the_group_when_configured() -> None:
    world = World()
    keep = replace(S, cancelled_group="keep")
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)], settings=keep)
    p, (m1,) = run(world, [replace(m1, status="cancelled")], settings=keep)
    assert rows(p)[:2] == [
        ("a0X1", "remove_member", 11, 0, 0),
        ("a0X1", "remove_member", 12, 0, 0),
    ]
    assert world.groups == {100: ("Okafor & Lindqvist (GMP-2026)", "a0X1")}
    assert m1.writeback["group_id"] == "100"
    assert plan(world, [m1], settings=keep).actions == []


def test_cancel_keeps_a_group_someone_else_joined() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    world.members[100].add(99)  # a staff member added themselves by hand
    p = plan(world, [replace(m1, status="cancelled")])
    assert [r for r in rows(p) if r[1] in ("delete_group", "remove_member")] == [
        ("a0X1", "remove_member", 11, 0, 0),
        ("a0X1", "remove_member", 12, 0, 0),
    ]


def test_mentee_with_two_mentors() -> None:
    world = World()
    a1, a2 = match("a0X1", OKAFOR, LINDQVIST), match("a0X2", BANDA, LINDQVIST)
    p, (a1, a2) = run(world, [a1, a2])
    assert rows(p) == [
        *ACTIVATE_A1[:4],
        ("a0X2", "enrol", 13, ORIENT, STUDENT),
        ("a0X2", "enrol", 13, PROG, TEACHER),
        ("a0X1", "create_group", 0, PROG, 0),
        ("a0X2", "create_group", 0, PROG, 0),
        ("a0X1", "add_member", 11, 0, 0),
        ("a0X1", "add_member", 12, 0, 0),
        ("a0X2", "add_member", 12, 0, 0),
        ("a0X2", "add_member", 13, 0, 0),
        ("a0X1", "assign_role", 11, 12, MENTOR),
        ("a0X2", "assign_role", 13, 12, MENTOR),
    ]
    assert world.user_roles == {(12, 11, MENTOR), (12, 13, MENTOR)}
    assert sorted(world.members.values()) == [{11, 12}, {12, 13}]
    # Cancelling one mentor's match leaves the mentee and the other mentor as they are.
    p, _ = run(world, [a1, replace(a2, status="cancelled")])
    assert rows(p) == [
        ("a0X2", "delete_group", 0, 0, 0),
        ("a0X2", "unassign_role", 13, 12, MENTOR),
        ("a0X2", "unenrol", 13, ORIENT, 0),
        ("a0X2", "unenrol", 13, PROG, 0),
    ]
    assert world.enrol == {ORIENT: {11: {5}, 12: {5}}, PROG: {11: {4}, 12: {5}}}


def test_person_in_two_pairs_as_mentor_and_mentee() -> None:
    world = World()
    # Lindqvist is Okafor's mentee and Chen's mentor.
    a1, a2 = match("a0X1", OKAFOR, LINDQVIST), match("a0X2", LINDQVIST, CHEN)
    p, _ = run(world, [a1, a2])
    enrols = [(r[2], r[3], r[4]) for r in rows(p) if r[1] == "enrol"]
    assert enrols == [(11, ORIENT, 5), (12, ORIENT, 5), (11, PROG, 4), (12, PROG, 5),
                      (14, ORIENT, 5), (12, PROG, 4), (14, PROG, 5)]  # fmt: skip
    lind = [a for a in p.actions if a.kind == "enrol" and a.user_id == 12 and a.course_id == PROG]
    # Both enrols of a not-yet-enrolled user claim the enrolment (one may fail alone).
    assert [g.thing for a in lind for g in a.adds] == [ENROLMENT, COURSE_ROLE] * 2
    assert world.enrol[PROG][12] == {STUDENT, TEACHER}
    # An event run for a0X2 alone, with a0X1 passed as another match of the same people.
    owned = world.owned()
    assert involved_contacts([a2], owned) == {"003LINDQVIST", "003CHEN"}
    assert involved_users([a2], PEOPLE, owned) == {12, 14}
    p = plan(world, [replace(a2, status="cancelled")], others=[a1])
    assert rows(p) == [
        ("a0X2", "delete_group", 0, 0, 0),
        ("a0X2", "unassign_role", 12, 14, MENTOR),
        ("a0X2", "unassign_role", 12, PROG, TEACHER),
        ("a0X2", "unenrol", 14, ORIENT, 0),
        ("a0X2", "unenrol", 14, PROG, 0),
    ]
    assert [a.details() for a in p.actions[1:3]] == [
        "remove mentor role", "remove teacher of mentor in GMP-2026",
    ]  # fmt: skip


def test_enrolled_by_hand_is_never_unenrolled() -> None:
    world = World()
    world.enrol_by_hand(PROG, 12, STUDENT)  # the mentee, before mentorsync looked
    world.enrol_by_hand(PROG, 11, STUDENT)  # the mentor, but in another role
    p, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    enrols = [a for a in p.actions if a.kind == "enrol"]
    assert [(a.user_id, a.course_id, a.role_id) for a in enrols] == [
        (11, ORIENT, 5), (12, ORIENT, 5), (11, PROG, 4),
    ]  # fmt: skip
    assert enrols[2].adds == (Grant(COURSE_ROLE, str(PROG), 11, TEACHER),)
    p, _ = run(world, [replace(m1, status="cancelled")])
    assert rows(p)[1:] == [
        ("a0X1", "unassign_role", 11, 12, MENTOR),
        ("a0X1", "unassign_role", 11, PROG, TEACHER),
        ("a0X1", "unenrol", 11, ORIENT, 0),
        ("a0X1", "unenrol", 12, ORIENT, 0),
    ]
    assert world.enrol == {ORIENT: {}, PROG: {11: {STUDENT}, 12: {STUDENT}}}


def test_duplicate_group_name_gets_a_suffix_and_no_second_group() -> None:
    world = World()
    world.add_group("Okafor & Lindqvist (GMP-2026)", "a0XOTHER")  # a previous year's pair
    a1, a2 = match("a0X1", OKAFOR, LINDQVIST), match("a0X2", OKAFOR, LINDQVIST)
    p, matches = run(world, [a1, a2])
    names = [a.name for a in p.actions if a.kind == "create_group"]
    assert names == ["Okafor & Lindqvist (GMP-2026) (2)", "Okafor & Lindqvist (GMP-2026) (3)"]
    # Moodle answers the names escaped (&amp;): decoded, they are in step.
    assert plan(world, matches).actions == []


def test_group_name_kept_within_moodles_limit() -> None:
    long = replace(OKAFOR, last_name="O" * 300)
    world = World()
    world.add_group(("O" * 300 + " & Lindqvist (GMP-2026)")[:254])
    p = plan(world, [match("a0X1", long, LINDQVIST)], people={**PEOPLE, long.contact_id: long})
    (create,) = [a for a in p.actions if a.kind == "create_group"]
    assert len(create.name) == 254 and create.name == "O" * 250 + " (2)"


def test_group_name_without_last_names_uses_the_match_name() -> None:
    nameless = replace(OKAFOR, last_name="")
    people = {**PEOPLE, nameless.contact_id: nameless}
    p = plan(World(), [match("a0X1", nameless, LINDQVIST)], people=people)
    assert [a.name for a in p.actions if a.name] == ["MM-a0X1 (GMP-2026)"]


@pytest.mark.parametrize("code", ["person:lapsed", "person:out_of_scope", "person:deleted"])
def test_mentor_lapsing_mid_year_is_reported_and_nothing_undone(code: str) -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    lapsed = {**PEOPLE, OKAFOR.contact_id: replace(OKAFOR, problem=code)}
    p = plan(world, [m1], people=lapsed)
    assert rows(p) == [("a0X1", "report", 0, 0, 0)]
    assert p.actions[0].details() == f"report {code}"
    assert p.writebacks[0].changes() == {"status": "Failed", "error": code}


def test_new_match_with_a_problem_grants_nothing_to_either_person() -> None:
    people = {**PEOPLE, OKAFOR.contact_id: Person(OKAFOR.contact_id, None)}
    p = plan(World(), [match("a0X1", OKAFOR, LINDQVIST)], people=people)
    assert rows(p) == [("a0X1", "report", 0, 0, 0)]
    assert p.writebacks[0].changes() == {"status": "Failed", "error": "person:no_account"}
    missing = plan(World(), [match("a0X1", OKAFOR, LINDQVIST)], people={})
    assert [a.code for a in missing.actions] == ["person:no_account"]


def test_mentor_changed_in_place() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    p, (m1,) = run(world, [replace(m1, mentor_id=BANDA.contact_id)])
    assert rows(p) == [
        ("a0X1", "enrol", 13, ORIENT, STUDENT),
        ("a0X1", "enrol", 13, PROG, TEACHER),
        ("a0X1", "add_member", 13, 0, 0),
        ("a0X1", "assign_role", 13, 12, MENTOR),
        ("a0X1", "remove_member", 11, 0, 0),
        ("a0X1", "unassign_role", 11, 12, MENTOR),
        ("a0X1", "unenrol", 11, ORIENT, 0),
        ("a0X1", "unenrol", 11, PROG, 0),
    ]
    assert [a.details() for a in p.actions[4:6]] == [
        "remove user 11 from group 100",
        "remove mentor role of user 11",
    ]
    assert world.user_roles == {(12, 13, MENTOR)} and world.members == {100: {12, 13}}
    assert plan(world, [m1]).actions == []


def test_replaced_mentor_keeps_what_another_match_needs() -> None:
    world = World()
    a1, a2 = match("a0X1", OKAFOR, LINDQVIST), match("a0X2", OKAFOR, CHEN)
    _, (a1, a2) = run(world, [a1, a2])
    # Event run for a0X1 only; Okafor's other match comes in as "others".
    assert involved_contacts([replace(a1, mentor_id=BANDA.contact_id)], world.owned()) == {
        "003BANDA", "003LINDQVIST", "003OKAFOR",
    }  # fmt: skip
    p = plan(world, [replace(a1, mentor_id=BANDA.contact_id)], others=[a2])
    assert [r for r in rows(p) if r[1] in ("unenrol", "remove_member", "unassign_role")] == [
        ("a0X1", "remove_member", 11, 0, 0),
        ("a0X1", "unassign_role", 11, 12, MENTOR),
    ]


def test_rematch_in_one_run() -> None:
    world = World()
    _, (old,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    new = match("a0X2", BANDA, LINDQVIST)
    p, _ = run(world, [replace(old, status="cancelled"), new])
    assert rows(p) == [
        ("a0X2", "enrol", 13, ORIENT, STUDENT),
        ("a0X2", "enrol", 13, PROG, TEACHER),
        ("a0X2", "create_group", 0, PROG, 0),
        ("a0X2", "add_member", 12, 0, 0),
        ("a0X2", "add_member", 13, 0, 0),
        ("a0X2", "assign_role", 13, 12, MENTOR),
        ("a0X1", "delete_group", 0, 0, 0),
        ("a0X1", "unassign_role", 11, 12, MENTOR),
        ("a0X1", "unenrol", 11, ORIENT, 0),
        ("a0X1", "unenrol", 11, PROG, 0),
    ]


def test_drift_healed() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    world.members[100].discard(11)  # the mentor removed from the group by hand
    p = plan(world, [m1])
    assert rows(p) == [("a0X1", "add_member", 11, 0, 0)]
    assert p.actions[0].group_id == 100
    world.groups.clear()  # the group deleted by hand
    world.members.clear()
    p, (m1,) = run(world, [m1])
    assert rows(p) == [
        ("a0X1", "create_group", 0, PROG, 0),
        ("a0X1", "add_member", 11, 0, 0),
        ("a0X1", "add_member", 12, 0, 0),
    ]
    assert m1.writeback["group_id"] == "101"
    del world.enrol[ORIENT][12]  # unenrolled by hand: enrolled again, owned again
    p, _ = run(world, [m1])
    assert rows(p) == [("a0X1", "enrol", 12, ORIENT, STUDENT)]
    assert Grant(ENROLMENT, str(ORIENT), 12) in world.owned()


def test_cancel_after_hand_unenrolment_only_forgets() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    del world.enrol[ORIENT][11]
    p, (m1,) = run(world, [replace(m1, status="cancelled")])
    forget = [a for a in p.actions if a.kind == "forget"]
    assert [(a.user_id, a.course_id) for a in forget] == [(11, ORIENT)]
    assert forget[0].details() == (
        "forget course_role,enrolment of mentor (already gone from Moodle)"
    )
    assert not destructive(forget[0])
    assert world.ledger == {} and plan(world, [m1]).actions == []


def test_rejected_match_is_reported_and_what_it_made_is_kept() -> None:
    world = World()
    a1, a2 = match("a0X1", OKAFOR, LINDQVIST), match("a0X2", BANDA, LINDQVIST)
    _, (a1, a2) = run(world, [a1, a2])
    bad = Rejected("a0X2", "mapping:mentor_missing", a2.writeback)
    # a0X1 cancelled: Lindqvist's enrolments were made for a0X1 but a0X2 (unreadable) may need them.
    p = plan(world, [replace(a1, status="cancelled")], rejected=[bad])
    assert [r for r in rows(p) if r[2] == 12 or r[1] == "report"] == [("a0X2", "report", 0, 0, 0)]
    wbs = {wb.match_id: wb.changes() for wb in p.writebacks}
    assert wbs["a0X2"] == {"status": "Failed", "error": "mapping:mentor_missing"}


def test_enrolment_dates_in_the_associations_time_zone() -> None:
    settings = replace(S, use_enrolment_dates=True, timezone="America/New_York")
    m1 = match("a0X1", OKAFOR, LINDQVIST, start_date=dt.date(2026, 10, 1),
               end_date=dt.date(2027, 3, 31))  # fmt: skip
    p = plan(World(), [m1], settings=settings)
    enrols = [a for a in p.actions if a.kind == "enrol"]
    start = int(dt.datetime(2026, 10, 1, 4, tzinfo=dt.UTC).timestamp())
    end = int(dt.datetime(2027, 4, 1, 4, tzinfo=dt.UTC).timestamp())
    assert {(a.timestart, a.timeend) for a in enrols} == {(start, end)}
    assert {(a.timestart, a.timeend) for a in plan(World(), [m1]).actions} == {(0, 0)}


def test_actions_and_writebacks_survive_json() -> None:
    world = World()
    p = plan(world, [match("a0X1", OKAFOR, LINDQVIST), match("a0X2", BANDA, CHEN, "cancelled")])
    for a in p.actions:
        again = Action.from_json(json.loads(json.dumps(a.to_json())))
        assert again == a and again.adds == a.adds and again.name == a.name
        assert [g.contact_id for g in again.adds] == [g.contact_id for g in a.adds]
    for wb in p.writebacks:
        assert WriteBack.from_json(json.loads(json.dumps(wb.to_json()))) == wb
    assert p.actions[0].to_json() == {
        "kind": "enrol", "match_id": "a0X1", "user_id": 11, "course_id": ORIENT,
        "role_id": STUDENT, "who": "mentor", "course_label": "GMP-ORIENT",
        "role_label": "student",
        "adds": [
            {"thing": "enrolment", "scope": "2", "user_id": 11, "role_id": 0,
             "match_id": "a0X1", "contact_id": "003OKAFOR"},
            {"thing": "course_role", "scope": "2", "user_id": 11, "role_id": 5,
             "match_id": "a0X1", "contact_id": "003OKAFOR"},
        ],
    }  # fmt: skip


def test_writeback_failure_and_guard_base() -> None:
    wb = WriteBack("a0X1", EMPTY_WB, {"group_id": "", "status": "Synced", "error": ""}, True)
    assert wb.resolve(error="moodle:invalidparameter") == {
        "status": "Failed", "error": "moodle:invalidparameter",
    }  # fmt: skip
    world = World()
    run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    # 4 enrolments + 4 course roles + group + 2 members + the mentor role.
    assert guard_base(world.owned()) == 12 == len(Owned(list(world.owned()) * 2))


def test_cancel_undoes_even_when_a_person_has_lapsed() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    lapsed = {**PEOPLE, OKAFOR.contact_id: replace(OKAFOR, problem="person:lapsed")}
    p, _ = run(world, [replace(m1, status="cancelled")], people=lapsed)
    assert [r[1] for r in rows(p)] == ["delete_group", "unassign_role"] + ["unenrol"] * 4
    assert world.ledger == {}


def test_mentor_replaced_by_someone_without_an_account() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    people = {**PEOPLE, BANDA.contact_id: Person(BANDA.contact_id, None)}
    p = plan(world, [replace(m1, mentor_id=BANDA.contact_id)], people=people)
    # The old mentor loses what the match gave them; nothing new for anyone; reported.
    assert rows(p) == [
        ("a0X1", "remove_member", 11, 0, 0),
        ("a0X1", "unassign_role", 11, 12, MENTOR),
        ("a0X1", "unenrol", 11, ORIENT, 0),
        ("a0X1", "unenrol", 11, PROG, 0),
        ("a0X1", "report", 0, 0, 0),
    ]
    assert p.writebacks[0].changes() == {"status": "Failed", "error": "person:no_account"}


def test_back_to_proposed_undoes_and_clears_the_writeback() -> None:
    world = World()
    _, (m1,) = run(world, [match("a0X1", OKAFOR, LINDQVIST)])
    p, (m1,) = run(world, [replace(m1, status="proposed")])
    assert [r[1] for r in rows(p)] == ["delete_group", "unassign_role"] + ["unenrol"] * 4
    assert m1.writeback == EMPTY_WB


def test_completed_match_elsewhere_keeps_shared_enrolments() -> None:
    world = World()
    a1, a2 = match("a0X1", OKAFOR, LINDQVIST), match("a0X2", OKAFOR, CHEN)
    _, (a1, a2) = run(world, [a1, a2])
    p = plan(world, [replace(a1, status="cancelled")], others=[replace(a2, status="completed")])
    assert [r for r in rows(p) if r[1] == "unenrol"] == [
        ("a0X1", "unenrol", 12, ORIENT, 0),
        ("a0X1", "unenrol", 12, PROG, 0),
    ]


def test_one_enrolment_window_covers_every_match_of_the_person() -> None:
    settings = replace(S, use_enrolment_dates=True)
    a1 = match("a0X1", OKAFOR, LINDQVIST, start_date=dt.date(2026, 10, 1))
    a2 = match("a0X2", OKAFOR, CHEN, start_date=dt.date(2026, 9, 1), end_date=dt.date(2027, 1, 31))
    p = plan(World(), [a1, a2], settings=settings)
    okafor = {(a.timestart, a.timeend) for a in p.actions if a.kind == "enrol" and a.user_id == 11}
    assert okafor == {(int(dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp()), 0)}


def test_a_match_listed_twice_is_planned_once() -> None:
    m1 = match("a0X1", OKAFOR, LINDQVIST)
    assert rows(plan(World(), [m1, m1])) == ACTIVATE_A1
