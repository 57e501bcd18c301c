"""The pairs planner: matches + people + Moodle state + ownership ledger -> actions.

Pure functions, no I/O. One call plans a whole run (:func:`plan_pairs`), so a person in several
matches (mentor in one, mentee in another; a mentee with two mentors) gets each enrolment once,
and an undo sees every match that still needs what it would remove.

What a match asks of Moodle, by status:

- ``active`` (both people usable): both in the orientation course (student) and the programme
  course (mentee student, mentor teacher), a group with idnumber = match id and both in it, the
  mentor's role in the mentee's user context. A person with a problem (``person:lapsed``...):
  the match is reported and nothing is added for either person (no half-applied pair).
- ``completed``: nothing is added; enrolments and group stay; the role goes
  (``completed_keeps_role`` / ``completed_keeps_enrolments`` change that).
- ``cancelled`` and ``proposed``: owned members leave the group, the group is deleted (when owned,
  ``cancelled_group = "delete"`` and nobody else is in it) or kept, the role goes.

Undo is limited twice: only what the ledger says mentorsync made (:class:`Owned`), and only
what no active match (planned, or passed in ``others``) still needs. A person who left a match
in place (mentor or mentee changed) loses what mentorsync gave them for it, in any status.

Contract with the engine (what it must read before calling):

- ``owned``: every ledger entry of the planned and rejected matches, plus every enrolment/role
  entry of the users :func:`involved_users` names (a second ledger read).
- ``others``: every active or completed match, not planned, of a Contact that
  :func:`involved_contacts` names; ``people`` covers the Contacts of planned and other matches.
- ``state``: the programme course's groups, the members of each planned match's group, the
  enrolled users (with roles) of both courses.

Applying: in ``plan.actions`` order (enrol before add_member, create before add). An
``add_member`` with ``group_id`` 0 joins the group this plan creates (look it up by idnumber).
``timestart``/``timeend`` 0 mean "leave out". After each action succeeds, record ``adds`` and
delete ``removes`` in the ledger; then write back ``WriteBack.resolve(created_group_id, error)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from connector.kinds.pairs.groups import (
    PENDING,
    Pair,
    asked_enrolments,
    epoch,
    merge_windows,
    pair_of,
    plan_group,
)
from connector.kinds.pairs.model import (
    ACTIVE,
    ADD_MEMBER,
    ASSIGN_ROLE,
    COMPLETED,
    COURSE_ROLE,
    DESTRUCTIVE,
    ENROL,
    ENROLMENT,
    FAILED,
    FORGET,
    KIND_ORDER,
    PROPOSED,
    REPORT,
    ROLE,
    SYNCED,
    UNASSIGN_ROLE,
    UNENROL,
    Action,
    Grant,
    Match,
    MoodleState,
    Owned,
    Person,
    Rejected,
    WriteBack,
)
from connector.kinds.pairs.settings import PairsSettings

Key = tuple[int, int]  # (course id, user id)
RoleKey = tuple[int, int, int]  # (context user id, user id, role id)


@dataclass
class Plan:
    """A run's actions (in apply order) and each planned match's write-back."""

    actions: list[Action] = field(default_factory=list)
    writebacks: list[WriteBack] = field(default_factory=list)

    def lines(self) -> list[tuple[str, str]]:
        """(match id, readable summary) per match with actions, for ``--dry-run``."""
        return describe(self.actions)

    @property
    def destructive_count(self) -> int:
        """How many actions take something away (for the mass-change guard)."""
        return sum(1 for a in self.actions if a.destructive)


def destructive(action: Action) -> bool:
    """Whether ``action`` unenrols, unassigns a role, deletes a group or removes a member."""
    return action.kind in DESTRUCTIVE


def guard_base(owned: Owned) -> int:
    """The mass-change guard's base: how many grants mentorsync owns (of those passed in)."""
    return len(owned)


def involved_contacts(matches: Iterable[Match], owned: Owned) -> frozenset[str]:
    """Contacts whose other matches the engine must pass as ``others``: the planned matches'
    people and anyone the ledger records for those matches (a mentor replaced in place)."""
    ids: set[str] = set()
    for m in matches:
        ids.update(i for i in (m.mentor_id, m.mentee_id) if i)
        ids.update(g.contact_id for g in owned.of_match(m.id) if g.contact_id)
    return frozenset(ids)


def involved_users(
    matches: Iterable[Match], people: Mapping[str, Person], owned: Owned
) -> frozenset[int]:
    """Moodle users whose shared grants (enrolments, roles) the planner may undo."""
    users: set[int] = set()
    for m in matches:
        for contact in (m.mentor_id, m.mentee_id):
            person = people.get(contact)
            if person is not None and person.moodle_id is not None:
                users.add(person.moodle_id)
        for g in owned.of_match(m.id):
            if g.user_id:
                users.add(g.user_id)
            if g.thing == ROLE:
                users.add(int(g.scope))
    return frozenset(users)


def plan_pairs(
    matches: Sequence[Match],
    people: Mapping[str, Person],
    state: MoodleState,
    owned: Owned,
    settings: PairsSettings,
    *,
    rejected: Sequence[Rejected] = (),
    others: Sequence[Match] = (),
    reassert_roles: bool = False,
) -> Plan:
    """Plan one run: the actions that bring Moodle to what ``matches`` ask, and write-backs.

    ``rejected``: rows the mapping refused; reported, and nothing they made is undone.
    ``others``: matches not planned whose needs count (see the module's contract).
    ``reassert_roles``: a full run assigns owned user-context roles again (drift Moodle cannot
    show us). With Moodle already in step (and no reassert), the plan has only ``report``
    actions (for matches with a problem).
    """
    run = _Run(matches, people, state, owned, settings, rejected, others)
    run.add_enrolments()
    run.undo_enrolments()
    taken = {g.name.casefold() for g in state.groups}
    for p in run.pairs:
        run.actions += plan_group(
            p, people, state, owned, settings, taken, run.contact_of, run.group_after
        )
    run.roles(reassert_roles)
    writebacks = run.writebacks()
    run.actions.sort(key=_apply_order)
    return Plan(run.actions, writebacks)


_ORDER = {kind: n for n, kind in enumerate(KIND_ORDER)}


def _apply_order(a: Action) -> tuple[int, str, int, int, int, int]:
    """Kind first (see KIND_ORDER), then match and Moodle keys, so plans are stable."""
    return (_ORDER[a.kind], a.match_id, a.course_id, a.context_user_id, a.user_id, a.role_id)


class _Run:
    """One plan being made: the inputs, what must not be undone, and the actions so far."""

    def __init__(
        self,
        matches: Sequence[Match],
        people: Mapping[str, Person],
        state: MoodleState,
        owned: Owned,
        settings: PairsSettings,
        rejected: Sequence[Rejected],
        others: Sequence[Match],
    ) -> None:
        self.state, self.owned, self.s, self.rejected = state, owned, settings, rejected
        seen: set[str] = set()
        self.pairs: list[Pair] = []
        for m in sorted(matches, key=lambda m: m.id):
            if m.id not in seen:
                seen.add(m.id)
                self.pairs.append(pair_of(m, people))
        context = [pair_of(m, people) for m in others if m.id not in seen]
        self.by_id = {p.match.id: p for p in self.pairs}
        self.contact_of = {p.moodle_id: c for c, p in people.items() if p.moodle_id is not None}
        self.actions: list[Action] = []
        self.group_after: dict[str, str] = {}  # match id -> group id to write back ("" none)
        self.labels = {
            state.orientation_course_id: settings.orientation_label,
            state.programme_course_id: settings.programme_label,
        }
        s = settings
        # What must not be undone: the needs of every active match (and of completed ones, as
        # configured), planned or not, applicable or not.
        self.need_enrol: dict[Key, set[int]] = defaultdict(set)
        self.need_role: set[RoleKey] = set()
        for p in self.pairs + context:
            status = p.match.status
            if status == ACTIVE or (status == COMPLETED and s.completed_keeps_enrolments):
                for course, user, role in asked_enrolments(p, state, s):
                    self.need_enrol[(course, user)].add(role)
            keeps_role = status == ACTIVE or (status == COMPLETED and s.completed_keeps_role)
            if keeps_role and p.mentor is not None and p.mentee is not None:
                self.need_role.add((p.mentee, p.mentor, s.mentor_role_id))
        # A rejected row may still name people we cannot read: whoever its ledger entries name
        # is left alone (their enrolments, and roles between two of them) until it is readable.
        self.frozen: set[int] = set()
        for r in rejected:
            for g in owned.of_match(r.match_id):
                self.frozen.update(u for u in _users(g) if u)
        self.involved = involved_users((p.match for p in self.pairs), people, owned)
        # Which planned match an action on a shared grant is shown under: the one that made
        # it, else the first in which the user takes part.
        self.user_match: dict[int, str] = {}
        for p in self.pairs:
            for uid in (p.mentor, p.mentee):
                if uid is not None:
                    self.user_match.setdefault(uid, p.match.id)
        for p in self.pairs:
            for g in owned.of_match(p.match.id):
                for uid in _users(g):
                    self.user_match.setdefault(uid, p.match.id)
        self.adding: dict[Key, set[Grant]] = defaultdict(set)

    def shown_under(self, grant: Grant, *users: int) -> Pair:
        """The planned match an undo of ``grant`` belongs to."""
        if grant.match_id in self.by_id:
            return self.by_id[grant.match_id]
        for uid in users:
            if uid in self.user_match:
                return self.by_id[self.user_match[uid]]
        return self.pairs[0]  # not reached: every involved user is in user_match

    def add_enrolments(self) -> None:
        """Enrol both people of every applicable active match, each (course, user, role) once."""
        s = self.s
        wanted: dict[Key, dict[int, str]] = defaultdict(dict)  # -> role -> match id
        window: dict[Key, tuple[int, int]] = {}
        for p in self.pairs:
            if not p.doable:
                continue
            m = p.match
            span = (0, 0)
            if s.use_enrolment_dates:
                span = (epoch(m.start_date, s.timezone), epoch(m.end_date, s.timezone, end=True))
            for course, user, role in asked_enrolments(p, self.state, s):
                wanted[(course, user)].setdefault(role, m.id)
                # One enrolment has one window (Moodle keeps the last one sent): cover all.
                key = (course, user)
                window[key] = merge_windows(window[key], span) if key in window else span
        for (course, user), roles in sorted(wanted.items()):
            current = self.state.enrolments.get(course, {}).get(user)
            start, end = window[(course, user)]
            for role, mid in sorted(roles.items()):
                if current is not None and role in current:
                    continue
                contact = self.contact_of.get(user, "")
                grants = [Grant(COURSE_ROLE, str(course), user, role, mid, contact)]
                if current is None:
                    # Each enrol of a user not enrolled before this plan claims the enrolment:
                    # whichever succeeds first made it, and one failing must not lose the claim.
                    grants.insert(0, Grant(ENROLMENT, str(course), user, 0, mid, contact))
                self.adding[(course, user)].update(grants)
                self.actions.append(
                    Action(
                        ENROL, mid, user_id=user, course_id=course, role_id=role,
                        timestart=start, timeend=end, who=self.by_id[mid].who(user),
                        course_label=self.labels.get(course, ""), role_label=s.role_label(role),
                        adds=tuple(grants),
                    )
                )  # fmt: skip

    def undo_enrolments(self) -> None:
        """Unenrol, or take back a course role, where mentorsync made it and nobody needs it."""
        shared: dict[Key, list[Grant]] = defaultdict(list)
        users = self.involved - self.frozen
        for g in self.owned:
            if g.thing in (ENROLMENT, COURSE_ROLE) and g.user_id in users:
                if int(g.scope) in self.state.enrolments:  # a course not read: undo nothing
                    shared[(int(g.scope), g.user_id)].append(g)
        for (course, user), grants in sorted(shared.items()):
            p = self.shown_under(grants[0], user)
            common = {"user_id": user, "course_id": course, "who": p.who(user)}
            common["course_label"] = self.labels.get(course, "")
            present = self.state.enrolments[course].get(user)
            need = self.need_enrol.get((course, user))
            if present is None:  # unenrolled by hand: forget, unless this plan enrols again
                stale = tuple(g for g in grants if g not in self.adding[(course, user)])
                if stale:
                    self.actions.append(Action(FORGET, p.match.id, removes=stale, **common))
                continue
            ours = {g.role_id: g for g in grants if g.thing == COURSE_ROLE}
            made = any(g.thing == ENROLMENT for g in grants)
            # Unenrol only an enrolment mentorsync made and nobody else added a role to.
            if need is None and made and present <= set(ours):
                self.actions.append(Action(UNENROL, p.match.id, removes=tuple(grants), **common))
                continue
            for role, g in sorted(ours.items()):
                if need is not None and role in need:
                    continue
                kind = UNASSIGN_ROLE if role in present else FORGET
                self.actions.append(
                    Action(kind, p.match.id, role_id=role, role_label=self.s.role_label(role),
                           removes=(g,), **common)
                )  # fmt: skip

    def roles(self, reassert: bool) -> None:
        """The mentor's role in the mentee's user context: assign, re-assert, take back."""
        s = self.s
        wanted: dict[RoleKey, str] = {}
        for p in self.pairs:
            if p.mentor is None or p.mentee is None:
                continue
            key = (p.mentee, p.mentor, s.mentor_role_id)
            if p.doable:
                wanted.setdefault(key, p.match.id)
            elif p.match.status == COMPLETED and s.completed_keeps_role and reassert:
                if Grant(ROLE, str(key[0]), key[1], key[2]) in self.owned:
                    wanted.setdefault(key, p.match.id)
        for (ctx, user, role), mid in sorted(wanted.items()):
            grant = Grant(ROLE, str(ctx), user, role, mid, self.contact_of.get(user, ""))
            # Moodle cannot list user-context roles: assign what we do not own yet, and on a
            # full run what we own too (assigning is idempotent) to heal unseen drift.
            if grant not in self.owned or reassert:
                self.actions.append(
                    Action(ASSIGN_ROLE, mid, user_id=user, role_id=role, context_user_id=ctx,
                           who=self.by_id[mid].who(user), role_label=s.role_label(role),
                           adds=(grant,))
                )  # fmt: skip
        for g in self.owned:
            if g.thing != ROLE:
                continue
            ctx = int(g.scope)
            if not (g.user_id in self.involved or ctx in self.involved):
                continue
            if (ctx, g.user_id, g.role_id) in self.need_role or {ctx, g.user_id} <= self.frozen:
                continue
            p = self.shown_under(g, g.user_id, ctx)
            self.actions.append(
                Action(UNASSIGN_ROLE, p.match.id, user_id=g.user_id, role_id=g.role_id,
                       context_user_id=ctx, who=p.who(g.user_id),
                       role_label=s.role_label(g.role_id), removes=(g,))
            )  # fmt: skip

    def writebacks(self) -> list[WriteBack]:
        """Report actions for matches with a problem, and every planned match's write-back."""
        out: list[WriteBack] = []
        for r in sorted(self.rejected, key=lambda r: r.match_id):
            self.actions.append(Action(REPORT, r.match_id, code=r.code))
            group = r.writeback.get("group_id", "")
            target = {"group_id": group, "status": FAILED, "error": r.code}
            out.append(WriteBack(r.match_id, dict(r.writeback), target))
        for p in self.pairs:
            m, read = p.match, dict(p.match.writeback)
            if p.problem:
                self.actions.append(Action(REPORT, m.id, code=p.problem))
                group = read.get("group_id", "")
                target = {"group_id": group, "status": FAILED, "error": p.problem}
                out.append(WriteBack(m.id, read, target))
                continue
            group = self.group_after[m.id]
            status = "" if m.status == PROPOSED and not group else SYNCED
            pending = group == PENDING
            target = {"group_id": "" if pending else group, "status": status, "error": ""}
            out.append(WriteBack(m.id, read, target, group_pending=pending))
        return out


def _users(grant: Grant) -> tuple[int, ...]:
    """The Moodle users a ledger entry names (the member, and a role's context user)."""
    users = (grant.user_id, int(grant.scope) if grant.thing == ROLE else 0)
    return tuple(u for u in users if u)


def describe(actions: Iterable[Action]) -> list[tuple[str, str]]:
    """(match id, "enrol mentor in GMP-2026 as teacher, create group, add 2 members, ...")."""
    parts: dict[str, list[str]] = {}
    members: dict[str, int] = defaultdict(int)
    first_member: dict[str, str] = {}
    for a in actions:
        items = parts.setdefault(a.match_id, [])
        if a.kind == ADD_MEMBER:
            members[a.match_id] += 1
            if members[a.match_id] == 1:
                items.append("\0members")
                first_member[a.match_id] = a.details()
            continue
        items.append(a.details())
    out = []
    for mid, items in parts.items():
        n = members[mid]
        summary = f"add {n} members" if n > 1 else first_member.get(mid, "")
        out.append((mid, ", ".join(summary if i == "\0members" else i for i in items)))
    return out
