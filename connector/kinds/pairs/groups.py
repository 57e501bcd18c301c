"""One match as the planner sees it: what it asks for, and its group (name, create, join, leave).

Pure functions, no I/O; :mod:`connector.kinds.pairs.plan` calls them for each planned match.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from connector.kinds.pairs.model import (
    ACTIVE,
    ADD_MEMBER,
    COMPLETED,
    CREATE_GROUP,
    DELETE_GROUP,
    FORGET,
    GROUP,
    GROUP_MEMBER,
    NO_ACCOUNT,
    REMOVE_MEMBER,
    Action,
    Grant,
    Match,
    MoodleState,
    Owned,
    Person,
)
from connector.kinds.pairs.settings import GROUP_NAME_MAX, PairsSettings

# group_after value of a group the plan creates (its id is known only once it is applied).
PENDING = "pending"


@dataclass
class Pair:
    """A match with its people's Moodle ids (known even when the person has a problem)."""

    match: Match
    mentor: int | None
    mentee: int | None
    problem: str  # why an active match cannot be applied ("" when it can)

    @property
    def doable(self) -> bool:
        """Whether the match is active and both people may be granted things."""
        return self.match.status == ACTIVE and not self.problem

    def who(self, user_id: int) -> str:
        """How a plan line names ``user_id`` for this match (never by name)."""
        if user_id == self.mentor:
            return "mentor"
        if user_id == self.mentee:
            return "mentee"
        return f"user {user_id}"


def pair_of(match: Match, people: Mapping[str, Person]) -> Pair:
    """The :class:`Pair` of ``match``; an active match's problem is its first person's code."""
    mentor, mentee = people.get(match.mentor_id), people.get(match.mentee_id)
    problem = ""
    if match.status == ACTIVE:
        for person in (mentor, mentee):
            code = NO_ACCOUNT if person is None else person.code
            if code:
                problem = code
                break
    return Pair(
        match,
        mentor.moodle_id if mentor else None,
        mentee.moodle_id if mentee else None,
        problem,
    )


def asked_enrolments(p: Pair, state: MoodleState, s: PairsSettings) -> list[tuple[int, int, int]]:
    """(course, user, role) a match asks for, for the people whose account is known."""
    out = []
    if p.mentor is not None:
        out += [
            (state.orientation_course_id, p.mentor, s.student_role_id),
            (state.programme_course_id, p.mentor, s.teacher_role_id),
        ]
    if p.mentee is not None:
        out += [
            (state.orientation_course_id, p.mentee, s.student_role_id),
            (state.programme_course_id, p.mentee, s.student_role_id),
        ]
    return out


def epoch(day: dt.date | None, tz: str, *, end: bool = False) -> int:
    """Midnight starting ``day`` (the day after, for an inclusive end) in ``tz``; 0 for none."""
    if day is None:
        return 0
    if end:
        day += dt.timedelta(days=1)
    return int(dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(tz)).timestamp())


def merge_windows(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """The enrolment window covering both (0 = open)."""
    start = 0 if 0 in (a[0], b[0]) else min(a[0], b[0])
    end = 0 if 0 in (a[1], b[1]) else max(a[1], b[1])
    return start, end


def group_name(p: Pair, people: Mapping[str, Person], s: PairsSettings, taken: set[str]) -> str:
    """A readable name within Moodle's limit, not taken in the course (suffix " (2)"...)."""
    mentor, mentee = people.get(p.match.mentor_id), people.get(p.match.mentee_id)
    mentor_last = mentor.last_name.strip() if mentor else ""
    mentee_last = mentee.last_name.strip() if mentee else ""
    match_name = p.match.name or p.match.id
    if mentor_last and mentee_last:
        base = s.group_name_template.format(
            mentor_last=mentor_last,
            mentee_last=mentee_last,
            program=p.match.program,
            match_name=match_name,
        )
    else:
        base = f"{match_name} ({p.match.program})"
    base = re.sub(r"\s+", " ", base).strip() or p.match.id
    number = 1
    while True:
        suffix = "" if number == 1 else f" ({number})"
        name = base[: GROUP_NAME_MAX - len(suffix)].rstrip() + suffix
        if name.casefold() not in taken:
            taken.add(name.casefold())
            return name
        number += 1


def plan_group(
    p: Pair,
    people: Mapping[str, Person],
    state: MoodleState,
    owned: Owned,
    s: PairsSettings,
    taken: set[str],
    contact_of: Mapping[int, str],
    group_after: dict[str, str],
) -> list[Action]:
    """The group actions of one match; records the group id to write back in ``group_after``."""
    m = p.match
    g = state.group(m.id)
    known = g is not None and g.id in state.members
    now = state.members.get(g.id, frozenset()) if g is not None else frozenset()
    ours = owned.members(m.id)
    group_grant = owned.get(Grant(GROUP, m.id))
    out: list[Action] = []

    def leave(uid: int, grant: Grant) -> Action:
        """Take ``uid`` out of the group (or only forget it, when it is already out)."""
        kind = FORGET if g is None or (known and uid not in now) else REMOVE_MEMBER
        return Action(
            kind, m.id, user_id=uid, group_idnumber=m.id, group_id=g.id if g else 0,
            who=p.who(uid), removes=(grant,),
        )  # fmt: skip

    if m.status in (ACTIVE, COMPLETED):
        current = {uid for uid in (p.mentor, p.mentee) if uid is not None}
        # Someone who left the match in place: undo their membership, whatever the status.
        for uid, grant in sorted(ours.items()):
            if uid not in current:
                out.append(leave(uid, grant))
        if not p.doable:
            group_after[m.id] = str(g.id) if g is not None else ""
            return out
        if g is None:
            name = group_name(p, people, s, taken)
            out.append(
                Action(
                    CREATE_GROUP, m.id, course_id=state.programme_course_id,
                    group_idnumber=m.id, name=name,
                    description=f"Mentorship pair synced from the CRM (match record {m.id})",
                    adds=(Grant(GROUP, m.id, 0, 0, m.id),),
                )
            )  # fmt: skip
        for uid in (p.mentor, p.mentee):
            if uid is not None and (g is None or uid not in now):
                grant = Grant(GROUP_MEMBER, m.id, uid, 0, m.id, contact_of.get(uid, ""))
                out.append(
                    Action(ADD_MEMBER, m.id, user_id=uid, group_idnumber=m.id,
                           group_id=g.id if g else 0, who=p.who(uid), adds=(grant,))
                )  # fmt: skip
        group_after[m.id] = str(g.id) if g is not None else PENDING
        return out

    # Cancelled or proposed: nothing of the pair stays in the group.
    if g is None:
        stale = ([group_grant] if group_grant else []) + [ours[u] for u in sorted(ours)]
        if stale:
            out.append(Action(FORGET, m.id, group_idnumber=m.id, who="group", removes=tuple(stale)))
        group_after[m.id] = ""
        return out
    foreign = now - set(ours)
    if s.cancelled_group == "delete" and group_grant is not None and known and not foreign:
        removes = (group_grant, *(ours[u] for u in sorted(ours)))
        out.append(Action(DELETE_GROUP, m.id, group_idnumber=m.id, group_id=g.id, removes=removes))
        group_after[m.id] = ""
        return out
    out += [leave(uid, grant) for uid, grant in sorted(ours.items())]
    group_after[m.id] = str(g.id)
    return out
