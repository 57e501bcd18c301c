"""The shapes the pairs planner works on: people, Moodle state, the ownership ledger, actions.

Everything here is plain data (frozen dataclasses), so a plan can be spooled to disk
(:meth:`Action.to_json` / :meth:`Action.from_json`) and re-read by the applier. ``Match`` and
``Rejected`` come from the mapping (:mod:`mappings.pairs`) and are re-exported here.

Privacy: last names travel on :class:`Person` only to build a group's name, and the group's name
on a ``create_group`` :class:`Action` only to send it; neither is in a ``repr`` or in
:meth:`Action.details`, which is what plan lines and logs show.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any

from mappings.pairs import ACTIVE, CANCELLED, COMPLETED, PROPOSED, Match, Rejected

__all__ = [
    "ACTIVE",
    "CANCELLED",
    "COMPLETED",
    "PROPOSED",
    "Action",
    "Grant",
    "Group",
    "Match",
    "MoodleState",
    "Owned",
    "Person",
    "Rejected",
    "WriteBack",
]

# Person problem codes (set by the member side; any other non-empty code is passed through).
NO_ACCOUNT = "person:no_account"
LAPSED = "person:lapsed"
OUT_OF_SCOPE = "person:out_of_scope"
DELETED = "person:deleted"
MERGED = "person:merged"

# What the ledger records mentorsync made (Grant.thing) and what Grant.scope then holds.
ENROLMENT = "enrolment"  # scope: course id; the user enrolment itself was created by mentorsync
COURSE_ROLE = "course_role"  # scope: course id; role_id given to the user in that course
ROLE = "role_assignment"  # scope: the context user id (the mentee); user_id holds role_id there
GROUP = "group"  # scope: the group idnumber (= match id); user_id 0
GROUP_MEMBER = "group_member"  # scope: the group idnumber; user_id is the member
THINGS = (ENROLMENT, COURSE_ROLE, ROLE, GROUP, GROUP_MEMBER)

# Action kinds.
ENROL = "enrol"
UNENROL = "unenrol"
CREATE_GROUP = "create_group"
ADD_MEMBER = "add_member"
REMOVE_MEMBER = "remove_member"
DELETE_GROUP = "delete_group"
ASSIGN_ROLE = "assign_role"
UNASSIGN_ROLE = "unassign_role"
FORGET = "forget"  # ledger only: what it records is already gone from Moodle; no call
REPORT = "report"  # write-back only: the match has a problem (code); no call
# The order a plan is applied in: enrol before adding to a group (Moodle refuses a
# non-enrolled member), create before adding members, undo after do.
KIND_ORDER = (
    ENROL,
    CREATE_GROUP,
    ADD_MEMBER,
    ASSIGN_ROLE,
    REMOVE_MEMBER,
    DELETE_GROUP,
    UNASSIGN_ROLE,
    UNENROL,
    FORGET,
    REPORT,
)
DESTRUCTIVE = frozenset({UNENROL, UNASSIGN_ROLE, DELETE_GROUP, REMOVE_MEMBER})

# LMS_Sync_Status__c values.
SYNCED = "Synced"
FAILED = "Failed"


@dataclass(frozen=True)
class Person:
    """A Contact of a match as the member side resolved it.

    ``moodle_id`` is the linked account (set whenever one exists, even when suspended);
    ``problem`` is an error code when the account cannot be used (``person:lapsed``...).
    """

    contact_id: str
    moodle_id: int | None
    problem: str = ""
    # Only for the group's name; never logged.
    last_name: str = field(default="", repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Whether the planner may grant this person anything."""
        return self.moodle_id is not None and not self.problem

    @property
    def code(self) -> str:
        """Why the person is not usable ("" when usable)."""
        if self.problem:
            return self.problem
        return NO_ACCOUNT if self.moodle_id is None else ""


@dataclass(frozen=True)
class Group:
    """A group of the programme course; ``name`` decoded (Moodle answers it HTML-escaped)."""

    id: int
    name: str = field(repr=False)
    idnumber: str

    @classmethod
    def from_moodle(cls, item: Mapping[str, Any]) -> Group:
        """A group as ``core_group_get_course_groups`` returns it."""
        return cls(
            id=int(item["id"]),
            name=html.unescape(str(item.get("name") or "")),
            idnumber=str(item.get("idnumber") or ""),
        )


@dataclass(frozen=True)
class MoodleState:
    """What Moodle holds, read in bulk before planning.

    ``groups``: every group of the programme course. ``members``: group id -> member user ids,
    for (at least) every existing group of the planned matches. ``enrolments``: course id ->
    user id -> role ids in that course; a course missing here was not read, so nothing in it is
    undone.
    """

    orientation_course_id: int
    programme_course_id: int
    groups: tuple[Group, ...] = ()
    members: Mapping[int, frozenset[int]] = field(default_factory=dict, hash=False)
    enrolments: Mapping[int, Mapping[int, frozenset[int]]] = field(
        default_factory=dict, hash=False
    )

    @cached_property
    def _by_idnumber(self) -> dict[str, Group]:
        return {g.idnumber: g for g in self.groups if g.idnumber}

    def group(self, idnumber: str) -> Group | None:
        """The group whose idnumber is ``idnumber`` (a match id), if any."""
        return self._by_idnumber.get(idnumber)


def enrolled_roles(users: Iterable[Mapping[str, Any]]) -> dict[int, frozenset[int]]:
    """User id -> role ids, from ``core_enrol_get_enrolled_users`` of one course."""
    return {
        int(user["id"]): frozenset(int(role["roleid"]) for role in user.get("roles") or [])
        for user in users
    }


def group_members(items: Iterable[Mapping[str, Any]]) -> dict[int, frozenset[int]]:
    """Group id -> user ids, from ``core_group_get_group_members``."""
    return {int(i["groupid"]): frozenset(int(u) for u in i.get("userids") or []) for i in items}


@dataclass(frozen=True, order=True)
class Grant:
    """One ownership-ledger entry: something mentorsync made in Moodle.

    Identity is ``(thing, scope, user_id, role_id)``; ``match_id`` (the match that made it) and
    ``contact_id`` (the user's Contact, so the engine can find the person's other matches) are
    bookkeeping. An enrolment or role shared by two matches is one entry.
    """

    thing: str
    scope: str
    user_id: int = 0
    role_id: int = 0
    match_id: str = field(default="", compare=False)
    contact_id: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grant:
        """The inverse of :meth:`to_json`."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class Owned:
    """The ledger entries relevant to a run (read-only view keyed by grant identity)."""

    def __init__(self, grants: Iterable[Grant] = ()) -> None:
        self._grants: dict[Grant, Grant] = {}
        for grant in grants:
            self._grants.setdefault(grant, grant)
        # Indexes, so a 5,000-pair run stays linear.
        self._sorted = sorted(self._grants.values())
        self._by_match: dict[str, list[Grant]] = {}
        self._members: dict[str, dict[int, Grant]] = {}
        for grant in self._sorted:
            self._by_match.setdefault(grant.match_id, []).append(grant)
            if grant.thing == GROUP_MEMBER:
                self._members.setdefault(grant.scope, {})[grant.user_id] = grant

    def __contains__(self, grant: object) -> bool:
        return grant in self._grants

    def __iter__(self) -> Iterator[Grant]:
        return iter(self._sorted)

    def __len__(self) -> int:
        return len(self._grants)

    def get(self, grant: Grant) -> Grant | None:
        """The recorded entry equal to ``grant`` (with its match and contact ids), if owned."""
        return self._grants.get(grant)

    def of_match(self, match_id: str) -> list[Grant]:
        """The entries recorded as made for ``match_id``."""
        return list(self._by_match.get(match_id, ()))

    def members(self, idnumber: str) -> dict[int, Grant]:
        """User id -> entry, for the owned members of the group ``idnumber``."""
        return dict(self._members.get(idnumber, {}))


@dataclass(frozen=True)
class Action:
    """One step of a pairs plan.

    Moodle keys by kind: ``enrol``/``unenrol``: course_id, user_id (role_id, timestart and
    timeend for enrol). ``create_group``: course_id, group_idnumber, name, description.
    ``add_member``/``remove_member``: group_idnumber, group_id (0 = the group this plan creates:
    resolve by idnumber), user_id. ``delete_group``: group_id. ``assign_role``/``unassign_role``:
    role_id, user_id and the context: ``context_user_id`` (user context) or else ``course_id``.
    ``forget``/``report``: no Moodle call. After an action succeeds, the applier records
    ``adds`` in the ledger and deletes ``removes`` from it.
    """

    kind: str
    match_id: str
    user_id: int = 0
    course_id: int = 0
    role_id: int = 0
    context_user_id: int = 0
    group_idnumber: str = ""
    group_id: int = 0
    name: str = field(default="", repr=False)
    description: str = ""
    timestart: int = 0
    timeend: int = 0
    # report: the problem code written back.
    code: str = ""
    # For details(): who ("mentor", "mentee", "user 42"), the course and role shortnames.
    who: str = ""
    course_label: str = ""
    role_label: str = ""
    adds: tuple[Grant, ...] = ()
    removes: tuple[Grant, ...] = ()

    @property
    def destructive(self) -> bool:
        """Whether the action takes something away (counted by the mass-change guard)."""
        return self.kind in DESTRUCTIVE

    def details(self) -> str:
        """The plan line of this action: roles, course shortnames, ids and codes, never names."""
        course = self.course_label or f"course {self.course_id}"
        role = self.role_label or f"role {self.role_id}"
        if self.kind == ENROL:
            return f"enrol {self.who} in {course} as {role}"
        if self.kind == UNENROL:
            return f"unenrol {self.who} from {course}"
        if self.kind == CREATE_GROUP:
            return "create group"
        if self.kind == ADD_MEMBER:
            return f"add {self.who} to group"
        if self.kind == REMOVE_MEMBER:
            return f"remove {self.who} from group {self.group_id}"
        if self.kind == DELETE_GROUP:
            return f"delete group {self.group_id}"
        if self.kind in (ASSIGN_ROLE, UNASSIGN_ROLE):
            verb = "assign" if self.kind == ASSIGN_ROLE else "remove"
            if self.context_user_id:  # the mentor's role over the mentee
                whose = "" if self.who == "mentor" else f" of {self.who}"
                return f"{verb} {role}{whose}"
            return f"{verb} {role} of {self.who} in {course}"
        if self.kind == FORGET:
            things = ",".join(sorted({g.thing for g in self.removes}))
            return f"forget {things} of {self.who} (already gone from Moodle)"
        if self.kind == REPORT:
            return f"report {self.code}"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (default values left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("adds", "removes"):
                if value:
                    out[f.name] = [g.to_json() for g in value]
            elif value != f.default:
                out[f.name] = value
        out["kind"], out["match_id"] = self.kind, self.match_id
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        """The inverse of :meth:`to_json`."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in ("adds", "removes"):
            values[key] = tuple(Grant.from_json(g) for g in data.get(key, ()))
        return cls(**values)


@dataclass(frozen=True)
class WriteBack:
    """The match's write-back fields (group_id, status, error): as read and as wanted.

    ``target`` holds the values for a plan applied without error; when ``group_pending`` the
    group is created by this plan and its id is only known after applying it.
    """

    match_id: str
    read: Mapping[str, str] = field(hash=False)
    target: Mapping[str, str] = field(hash=False)
    group_pending: bool = False

    def changes(self) -> dict[str, str]:
        """The planned changes (a pending group id is left out until :meth:`resolve`)."""
        return self.resolve()

    def resolve(self, created_group_id: int | None = None, error: str = "") -> dict[str, str]:
        """The fields to write after applying: only those that differ from what was read.

        ``created_group_id``: the id of the group the plan created. ``error``: the code of an
        action of this match that failed; the match is then reported ``Failed`` with it.
        """
        final = dict(self.target)
        if self.group_pending:
            if created_group_id is None:
                final.pop("group_id", None)
            else:
                final["group_id"] = str(created_group_id)
        if error:
            final["status"], final["error"] = FAILED, error
        return {k: v for k, v in final.items() if self.read.get(k, "") != v}

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "match_id": self.match_id,
            "read": dict(self.read),
            "target": dict(self.target),
            "group_pending": self.group_pending,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WriteBack:
        """The inverse of :meth:`to_json`."""
        return cls(
            match_id=data["match_id"],
            read=dict(data["read"]),
            target=dict(data["target"]),
            group_pending=bool(data.get("group_pending", False)),
        )
