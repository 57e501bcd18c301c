"""Applying a pairs plan: one batched sender per Moodle function, in the plan's order.

The plan comes sorted by kind (enrol, create group, add member, assign role, then the undos);
all actions of one kind go through one :class:`~connector.engine.batching.BatchSender` (full
batches bounded by items and form fields; all-or-nothing calls bisected; ``create_groups``
re-read by idnumber after a lost answer, so a match never gets a second group),
which is flushed before the next kind starts: Moodle refuses a member who is not enrolled yet,
and a member of a group not created yet.

After each action that went through, its ``adds`` are recorded in the ownership ledger and its
``removes`` forgotten; an action Moodle refused leaves the ledger as it was and its match is
reported with the code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from connector.clients.moodle.client import MoodleClient
from connector.engine.batching import BatchSender, Sent
from connector.kinds.pairs.model import (
    ADD_MEMBER,
    ASSIGN_ROLE,
    CREATE_GROUP,
    DELETE_GROUP,
    ENROL,
    FORGET,
    REMOVE_MEMBER,
    REPORT,
    UNASSIGN_ROLE,
    UNENROL,
    Action,
)

log = logging.getLogger(__name__)

# Past-tense counters of the action kinds.
DONE = {
    ENROL: "enrolled",
    UNENROL: "unenrolled",
    CREATE_GROUP: "groups_created",
    ADD_MEMBER: "members_added",
    REMOVE_MEMBER: "members_removed",
    DELETE_GROUP: "groups_deleted",
    ASSIGN_ROLE: "roles_assigned",
    UNASSIGN_ROLE: "roles_removed",
    FORGET: "forgotten",
    REPORT: "reported",
}
# The web-service function of each kind (the stage of a failure).
FUNCTION = {
    ENROL: "enrol_manual_enrol_users",
    UNENROL: "enrol_manual_unenrol_users",
    CREATE_GROUP: "core_group_create_groups",
    ADD_MEMBER: "core_group_add_group_members",
    REMOVE_MEMBER: "core_group_delete_group_members",
    DELETE_GROUP: "core_group_delete_groups",
    ASSIGN_ROLE: "core_role_assign_roles",
    UNASSIGN_ROLE: "core_role_unassign_roles",
}
GROUP_NOT_CREATED = "pairs:group_not_created"

Outcome = Callable[[Action, str], None]
"""``outcome(action, error)``: error is "" when the action went through."""


class PairsApplier:
    """Sends actions kind by kind; tells ``on_outcome`` about each, in order."""

    def __init__(self, moodle: MoodleClient, on_outcome: Outcome) -> None:
        self.moodle = moodle
        self.on_outcome = on_outcome
        # Match Id (= group idnumber) -> id of the group this run created (or found made).
        self.created_groups: dict[str, int] = {}
        self._kind = ""
        self._sender: BatchSender[int] | None = None
        self._pending: dict[int, Action] = {}
        self._next = 0

    def add(self, action: Action) -> None:
        """Queue ``action``; the sender of the previous kind is flushed first."""
        if action.kind != self._kind:
            self.flush()
            self._kind = action.kind
            self._sender = self._sender_for(action.kind)
        if self._sender is None:  # forget / report: no Moodle call
            self.on_outcome(action, "")
            return
        if action.kind == ADD_MEMBER and not action.group_id:
            if action.group_idnumber not in self.created_groups:
                self.on_outcome(action, GROUP_NOT_CREATED)
                return
        key = self._next
        self._next += 1
        self._pending[key] = action
        self._sender.add(key, self._item(action))

    def flush(self) -> None:
        """Send what is queued for the current kind."""
        if self._sender is not None:
            self._sender.flush()

    @property
    def calls(self) -> int:
        """Moodle write calls made by the current kind's sender (for logs)."""
        return self._sender.calls if self._sender is not None else 0

    def _sender_for(self, kind: str) -> BatchSender[int] | None:
        m = self.moodle
        sends: dict[str, tuple[str, Callable[[list[Any]], Any]]] = {
            ENROL: ("enrolments", m.enrol_users),
            UNENROL: ("enrolments", m.unenrol_users),
            CREATE_GROUP: ("groups", m.create_groups),
            ADD_MEMBER: ("members", m.add_group_members),
            REMOVE_MEMBER: ("members", m.delete_group_members),
            DELETE_GROUP: ("groupids", m.delete_groups),
            ASSIGN_ROLE: ("assignments", m.assign_roles),
            UNASSIGN_ROLE: ("unassignments", m.unassign_roles),
        }
        if kind not in sends:
            return None
        list_key, send = sends[kind]
        create = kind == CREATE_GROUP
        # Every one of these is all-or-nothing in Moodle 4.5 (one delegated transaction; the
        # real-Moodle tier shows nothing of a refused create_groups batch stays). A create
        # whose answer was lost is resolved by re-reading the course's groups by idnumber.
        return BatchSender(
            m,
            list_key,
            send,
            self._done,
            reread=self._existing_groups if create else None,
            batch_items=int(m.settings.max_batch_items),
        )

    def _item(self, a: Action) -> Mapping[str, Any] | int:
        if a.kind == ENROL:
            item: dict[str, Any] = {
                "roleid": a.role_id,
                "userid": a.user_id,
                "courseid": a.course_id,
            }
            if a.timestart:
                item["timestart"] = a.timestart
            if a.timeend:
                item["timeend"] = a.timeend
            return item
        if a.kind == UNENROL:
            return {"userid": a.user_id, "courseid": a.course_id}
        if a.kind == CREATE_GROUP:
            return {
                "courseid": a.course_id,
                "name": a.name,
                "idnumber": a.group_idnumber,
                "description": a.description,
            }
        if a.kind in (ADD_MEMBER, REMOVE_MEMBER):
            group = a.group_id or self.created_groups[a.group_idnumber]
            return {"groupid": group, "userid": a.user_id}
        if a.kind == DELETE_GROUP:
            return a.group_id
        # assign / unassign: the mentor's role in the mentee's user context, or a course role.
        return {
            "roleid": a.role_id,
            "userid": a.user_id,
            "contextlevel": "user" if a.context_user_id else "course",
            "instanceid": a.context_user_id or a.course_id,
        }

    def _existing_groups(self, keys: list[int]) -> dict[int, Any]:
        """Which of these create_group actions' groups exist now (re-read by idnumber)."""
        by_course: dict[int, list[int]] = {}
        for key in keys:
            by_course.setdefault(self._pending[key].course_id, []).append(key)
        found: dict[int, Any] = {}
        for course, course_keys in by_course.items():
            existing = {
                str(g.get("idnumber") or ""): g for g in self.moodle.get_course_groups(course)
            }
            for key in course_keys:
                group = existing.get(self._pending[key].group_idnumber)
                if group is not None:
                    found[key] = group
        return found

    def _done(self, sent: list[Sent[int]]) -> None:
        for item in sent:
            action = self._pending.pop(item.key)
            if item.ok and action.kind == CREATE_GROUP and isinstance(item.answer, Mapping):
                self.created_groups[action.group_idnumber] = int(item.answer["id"])
            self.on_outcome(action, item.error)
