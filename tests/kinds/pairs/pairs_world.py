"""A tiny in-memory Moodle + ownership ledger that applies a pairs plan, for planner tests.

It behaves like Moodle where the planner depends on it: group names come back HTML-escaped,
adding a member who is not enrolled in the course fails, unenrolling removes the user from the
course's groups, and every call is safe to repeat.
"""

from __future__ import annotations

import html
from dataclasses import replace

from connector.kinds.pairs import model as m
from connector.kinds.pairs.model import Grant, Group, Match, MoodleState, Owned
from connector.kinds.pairs.plan import Plan

ORIENT, PROG = 2, 3
STUDENT, TEACHER, MENTOR = 5, 4, 9


class World:
    """Moodle's groups, members, enrolments and user-context roles, and mentorsync's ledger."""

    def __init__(self) -> None:
        self.groups: dict[int, tuple[str, str]] = {}  # id -> (raw name, idnumber)
        self.members: dict[int, set[int]] = {}
        self.enrol: dict[int, dict[int, set[int]]] = {ORIENT: {}, PROG: {}}
        self.user_roles: set[tuple[int, int, int]] = set()  # (context user, user, role)
        self.ledger: dict[Grant, Grant] = {}
        self.next_group = 100

    def add_group(self, name: str, idnumber: str = "", members: tuple[int, ...] = ()) -> int:
        """A group made outside mentorsync (by hand, or a plan under test)."""
        gid = self.next_group
        self.next_group += 1
        self.groups[gid] = (name, idnumber)
        self.members[gid] = set(members)
        return gid

    def enrol_by_hand(self, course: int, user: int, role: int) -> None:
        """An enrolment someone else made."""
        self.enrol[course].setdefault(user, set()).add(role)

    def group_id(self, idnumber: str) -> int | None:
        """The id of the group with this idnumber."""
        for gid, (_, idn) in self.groups.items():
            if idn == idnumber:
                return gid
        return None

    def state(self) -> MoodleState:
        """What the engine would read (names escaped as core_group_get_course_groups does)."""
        groups = tuple(
            Group.from_moodle({"id": gid, "name": html.escape(name, quote=False), "idnumber": idn})
            for gid, (name, idn) in sorted(self.groups.items())
        )
        return MoodleState(
            orientation_course_id=ORIENT,
            programme_course_id=PROG,
            groups=groups,
            members={gid: frozenset(users) for gid, users in self.members.items()},
            enrolments={
                c: {u: frozenset(r) for u, r in users.items()} for c, users in self.enrol.items()
            },
        )

    def owned(self) -> Owned:
        """The ledger as the engine would pass it."""
        return Owned(self.ledger.values())

    def apply(self, plan: Plan) -> dict[str, int]:
        """Apply every action (and its ledger changes); return created group ids by idnumber."""
        created: dict[str, int] = {}
        for a in plan.actions:
            getattr(self, f"_do_{a.kind}")(a, created)
            for g in a.removes:
                self.ledger.pop(g, None)
            for g in a.adds:
                self.ledger[g] = g
        return created

    def _gid(self, a: m.Action) -> int:
        gid = a.group_id or self.group_id(a.group_idnumber)
        assert gid is not None, "group not found"
        return gid

    def _do_enrol(self, a: m.Action, created: dict[str, int]) -> None:
        self.enrol[a.course_id].setdefault(a.user_id, set()).add(a.role_id)

    def _do_unenrol(self, a: m.Action, created: dict[str, int]) -> None:
        self.enrol[a.course_id].pop(a.user_id, None)
        if a.course_id == PROG:
            for users in self.members.values():
                users.discard(a.user_id)

    def _do_create_group(self, a: m.Action, created: dict[str, int]) -> None:
        assert self.group_id(a.group_idnumber) is None, "idnumbertaken"
        taken = {name.casefold() for name, _ in self.groups.values()}
        assert a.name.casefold() not in taken, "invalidparameter: name taken"
        assert len(a.name) <= 254, "dmlwriteexception"
        created[a.group_idnumber] = self.add_group(a.name, a.group_idnumber)

    def _do_add_member(self, a: m.Action, created: dict[str, int]) -> None:
        assert a.user_id in self.enrol[PROG], "not enrolled"
        self.members[self._gid(a)].add(a.user_id)

    def _do_remove_member(self, a: m.Action, created: dict[str, int]) -> None:
        self.members[self._gid(a)].discard(a.user_id)

    def _do_delete_group(self, a: m.Action, created: dict[str, int]) -> None:
        self.groups.pop(a.group_id, None)
        self.members.pop(a.group_id, None)

    def _do_assign_role(self, a: m.Action, created: dict[str, int]) -> None:
        if a.context_user_id:
            self.user_roles.add((a.context_user_id, a.user_id, a.role_id))
        else:
            self.enrol[a.course_id][a.user_id].add(a.role_id)

    def _do_unassign_role(self, a: m.Action, created: dict[str, int]) -> None:
        if a.context_user_id:
            self.user_roles.discard((a.context_user_id, a.user_id, a.role_id))
        else:
            self.enrol[a.course_id].get(a.user_id, set()).discard(a.role_id)

    def _do_forget(self, a: m.Action, created: dict[str, int]) -> None:
        pass

    def _do_report(self, a: m.Action, created: dict[str, int]) -> None:
        pass


def written_back(matches: list[Match], plan: Plan, created: dict[str, int]) -> list[Match]:
    """The matches as the next run reads them, after the plan's write-backs were made."""
    by_id = {wb.match_id: wb for wb in plan.writebacks}
    out = []
    for match in matches:
        wb = by_id.get(match.id)
        if wb is None:
            out.append(match)
            continue
        values = dict(match.writeback)
        values.update(wb.resolve(created_group_id=created.get(match.id)))
        out.append(replace(match, writeback=values))
    return out
