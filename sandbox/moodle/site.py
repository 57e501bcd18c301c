"""The sandbox Moodle's data: users, enrolments, groups, role assignments, completion, cohorts.

Plain dicts behind a lock, with indexes so that every web-service call costs O(items in the
call), even with 50,000 users. The web-service layer (``functions.py``) decides which Moodle
error a request earns; this module keeps the data consistent and offers helpers for tests.

Read the public mappings (``users``, ``groups``...) as read-only; change state through methods.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sandbox.moodle import catalog

STATE_VERSION = 1

# Event names as Moodle's event classes spell them (with the leading backslash).
COMPLETION_UPDATED = "\\core\\event\\course_module_completion_updated"
COURSE_COMPLETED = "\\core\\event\\course_completed"

# User columns with their default values, as a fresh Moodle row has them.
USER_DEFAULTS: dict[str, Any] = {
    "username": "",
    "firstname": "",
    "lastname": "",
    "email": "",
    "idnumber": "",
    "auth": "manual",
    "suspended": 0,
    "confirmed": 1,
    "department": "",
    "institution": "",
    "city": "",
    "country": "",
    "address": "",
    "phone1": "",
    "phone2": "",
    "lang": "en",
    "theme": "",
    "timezone": "99",
    "mailformat": 1,
    "description": "",
    "interests": "",
    "firstaccess": 0,
    "lastaccess": 0,
    "timecreated": 0,
    "timemodified": 0,
    "customfields": {},
}


def now() -> int:
    """Unix time, as Moodle stores it."""
    return int(time.time())


class Site:
    """All mutable state of one sandbox Moodle site.

    ``lock`` serialises web-service calls; helpers take it too, so tests may call them while the
    server runs.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.wwwroot = "http://127.0.0.1"
        self.users: dict[int, dict[str, Any]] = {}
        self.deleted_users: dict[int, dict[str, Any]] = {}
        # courseid -> userid -> {"status", "timestart", "timeend", "timecreated"}
        self.enrolments_by_course: dict[int, dict[int, dict[str, int]]] = {
            cid: {} for cid in catalog.COURSES
        }
        # (contextlevel, instanceid) -> userid -> [roleid, ...] in assignment order
        self.roles_by_context: dict[tuple[str, int], dict[int, list[int]]] = {}
        self.groups: dict[int, dict[str, Any]] = {}
        # (userid, cmid) -> {"state", "timemodified", "overrideby", "viewed"}
        self.completions: dict[tuple[int, int], dict[str, Any]] = {}
        # (userid, courseid) -> {cmid: timecompleted}; rows are never removed (like Moodle's
        # course_completion_crit_compl), which is why a course stays complete.
        self.criteria_done: dict[tuple[int, int], dict[int, int]] = {}
        self.course_completed: dict[tuple[int, int], int] = {}
        self.cohorts: dict[int, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        # Whether the local_mentorsync plugin is installed (its web-service function and events).
        self.plugin_installed = False
        # Called (under the lock) with the data of each event the plugin observes: see
        # sandbox/moodle/events.py. Not saved with the state.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.next_ids: dict[str, int] = {"user": catalog.FIRST_USER_ID, "group": 1, "cohort": 1}
        self._reset_indexes()

    # ------------------------------------------------------------------ indexes

    def _reset_indexes(self) -> None:
        self._by_username: dict[str, int] = {}
        # idnumber and email are not unique in Moodle's schema: value -> ordered set of ids.
        self._by_idnumber: dict[str, dict[int, None]] = {}
        self._by_email: dict[str, dict[int, None]] = {}  # lower-cased email
        self._groups_of_user: dict[int, dict[int, None]] = {}
        self._group_ids_by_course: dict[int, dict[int, None]] = {cid: {} for cid in catalog.COURSES}
        self._user_role_contexts: dict[int, dict[tuple[str, int], None]] = {}
        for user in self.users.values():
            self._index_user(user)
        # (courseid, name) and (courseid, idnumber) -> group id: both unique per course.
        self._group_by_name: dict[tuple[int, str], int] = {}
        self._group_by_idnumber: dict[tuple[int, str], int] = {}
        for group in self.groups.values():
            self._index_group(group)
            for uid in group["members"]:
                self._groups_of_user.setdefault(uid, {})[group["id"]] = None
        for ctx, holders in self.roles_by_context.items():
            for uid in holders:
                self._user_role_contexts.setdefault(uid, {})[ctx] = None

    def _index_user(self, user: dict[str, Any]) -> None:
        self._by_username[user["username"]] = user["id"]
        if user["idnumber"]:
            self._by_idnumber.setdefault(user["idnumber"], {})[user["id"]] = None
        if user["email"]:
            self._by_email.setdefault(user["email"].lower(), {})[user["id"]] = None

    def _unindex_user(self, user: dict[str, Any]) -> None:
        if self._by_username.get(user["username"]) == user["id"]:
            del self._by_username[user["username"]]
        for index, key in (
            (self._by_idnumber, user["idnumber"]),
            (self._by_email, user["email"].lower()),
        ):
            ids = index.get(key)
            if ids is not None:
                ids.pop(user["id"], None)
                if not ids:
                    del index[key]

    def _index_group(self, group: dict[str, Any]) -> None:
        courseid = group["courseid"]
        self._group_ids_by_course.setdefault(courseid, {})[group["id"]] = None
        self._group_by_name[(courseid, group["name"])] = group["id"]
        if group["idnumber"]:
            self._group_by_idnumber[(courseid, group["idnumber"])] = group["id"]

    # ------------------------------------------------------------------ fresh site

    @classmethod
    def fresh(cls) -> Site:
        """The default lab site: guest, admin and the integration user; no participants."""
        site = cls()
        created = now()
        site._insert_user(
            catalog.GUEST_ID,
            {
                "username": "guest",
                "firstname": "Guest user",
                "lastname": " ",
                "email": "root@localhost",
                "auth": "manual",
                "timecreated": created,
            },
        )
        site._insert_user(
            catalog.ADMIN_ID,
            {
                "username": "admin",
                "firstname": "Admin",
                "lastname": "User",
                "email": "admin@lms.example.invalid",
                "timecreated": created,
            },
        )
        site._insert_user(
            catalog.INTEGRATION_ID,
            {
                "username": "mentorsync",
                "firstname": "Mentorship",
                "lastname": "Sync",
                "email": "mentorsync@lms.example.invalid",
                "auth": "webservice",
                "timecreated": created,
            },
        )
        site.tokens[secrets.token_hex(16)] = {
            "userid": catalog.INTEGRATION_ID,
            "service": catalog.INTEGRATION_SERVICE,
        }
        return site

    @property
    def integration_token(self) -> str:
        """The token of the integration user (all functions of the "Mentorship sync" service)."""
        for token, info in self.tokens.items():
            if info["service"] == catalog.INTEGRATION_SERVICE:
                return token
        raise LookupError("the site has no integration token")

    # ------------------------------------------------------------------ users

    def _insert_user(self, uid: int, fields: dict[str, Any]) -> dict[str, Any]:
        user = {"id": uid, **USER_DEFAULTS, **fields}
        user["customfields"] = dict(fields.get("customfields") or {})
        self.users[uid] = user
        self._index_user(user)
        return user

    def add_user(self, fields: dict[str, Any]) -> int:
        """Store a new user (no checks: callers validate) and return its id."""
        with self.lock:
            uid = self.next_ids["user"]
            self.next_ids["user"] += 1
            stamp = now()
            self._insert_user(uid, {"timecreated": stamp, "timemodified": stamp, **fields})
            return uid

    def create_user(
        self,
        username: str,
        email: str,
        *,
        firstname: str = "Test",
        lastname: str = "User",
        idnumber: str = "",
        **fields: Any,
    ) -> int:
        """Test helper: an account as if made by hand in Moodle (e.g. one to be adopted)."""
        with self.lock:
            if username in self._by_username:
                raise ValueError(f"username {username!r} already exists")
            return self.add_user(
                {
                    "username": username,
                    "email": email,
                    "firstname": firstname,
                    "lastname": lastname,
                    "idnumber": idnumber,
                    **fields,
                }
            )

    def update_user(self, uid: int, changes: dict[str, Any]) -> None:
        """Apply column changes (``customfields``: shortname -> value, merged) to a live user."""
        with self.lock:
            user = self.users[uid]
            self._unindex_user(user)
            for key, value in changes.items():
                if key == "customfields":
                    user["customfields"].update(value)
                else:
                    user[key] = value
            user["timemodified"] = now()
            self._index_user(user)

    def delete_user(self, uid: int) -> None:
        """Delete like Moodle's ``delete_user``: memberships go, the row is kept but renamed."""
        with self.lock:
            user = self.users.pop(uid)
            self._unindex_user(user)
            for courseid in catalog.COURSES:
                self.enrolments_by_course[courseid].pop(uid, None)
            for gid in list(self._groups_of_user.get(uid, {})):
                self.remove_group_member(gid, uid)
            for ctx in list(self._user_role_contexts.get(uid, {})):
                self.roles_by_context.get(ctx, {}).pop(uid, None)
            self._user_role_contexts.pop(uid, None)
            # Assignments held over the deleted user (their user context) go too.
            for holder in list(self.roles_by_context.pop(("user", uid), {})):
                self._user_role_contexts.get(holder, {}).pop(("user", uid), None)
            for cohort in self.cohorts.values():
                if uid in cohort["members"]:
                    cohort["members"].remove(uid)
            stamp = now()
            user.update(
                {
                    "deleted": 1,
                    "username": f"{user['email']}.{stamp}",
                    "email": secrets.token_hex(16),
                    "idnumber": "",
                    "timemodified": stamp,
                }
            )
            self.deleted_users[uid] = user

    def user_id_by_username(self, username: str) -> int | None:
        """The live user with this exact username."""
        return self._by_username.get(username)

    def user_ids_by_idnumber(self, idnumber: str) -> list[int]:
        """Live users with this idnumber (Moodle does not make idnumber unique)."""
        return list(self._by_idnumber.get(idnumber, ()))

    def user_ids_by_email(self, email: str) -> list[int]:
        """Live users whose email equals ``email`` ignoring case."""
        return list(self._by_email.get(email.lower(), ()))

    def email_taken(self, email: str, except_uid: int | None = None) -> bool:
        """Whether another live user has this email, ignoring case (allowaccountssameemail=0)."""
        ids = self._by_email.get(email.lower(), {})
        return any(uid != except_uid for uid in ids)

    # ------------------------------------------------------------------ enrolment and roles

    def is_enrolled(self, courseid: int, uid: int) -> bool:
        """Whether the user has an enrolment in the course (active or suspended)."""
        return uid in self.enrolments_by_course.get(courseid, {})

    def course_roles(self, courseid: int, uid: int) -> list[int]:
        """Role ids the user holds in the course context, in assignment order."""
        return list(self.roles_by_context.get(("course", courseid), {}).get(uid, ()))

    def enrol(
        self,
        courseid: int,
        uid: int,
        roleid: int | None,
        *,
        status: int | None = None,
        timestart: int | None = None,
        timeend: int | None = None,
    ) -> None:
        """Enrol (or update the enrolment of) a user and add the role, like ``enrol_user``."""
        with self.lock:
            enrolments = self.enrolments_by_course[courseid]
            row = enrolments.get(uid)
            if row is None:
                row = {"status": 0, "timestart": 0, "timeend": 0, "timecreated": now()}
                enrolments[uid] = row
            if status is not None:
                row["status"] = status
            if timestart is not None:
                row["timestart"] = timestart
            if timeend is not None:
                row["timeend"] = timeend
            if roleid:
                self.assign_role(roleid, uid, "course", courseid)
            self.review_course_completion(uid, courseid)

    def unenrol(self, courseid: int, uid: int) -> None:
        """Remove the enrolment; with it go course roles and group memberships in the course."""
        with self.lock:
            if self.enrolments_by_course[courseid].pop(uid, None) is None:
                return
            holders = self.roles_by_context.get(("course", courseid), {})
            if holders.pop(uid, None) is not None:
                self._user_role_contexts.get(uid, {}).pop(("course", courseid), None)
            for gid in list(self._groups_of_user.get(uid, {})):
                if self.groups[gid]["courseid"] == courseid:
                    self.remove_group_member(gid, uid)

    def assign_role(self, roleid: int, uid: int, contextlevel: str, instanceid: int) -> None:
        """Add a role assignment (a repeated one is a no-op, like ``role_assign``)."""
        with self.lock:
            ctx = (contextlevel, instanceid)
            roles = self.roles_by_context.setdefault(ctx, {}).setdefault(uid, [])
            if roleid not in roles:
                roles.append(roleid)
            self._user_role_contexts.setdefault(uid, {})[ctx] = None

    def unassign_role(self, roleid: int, uid: int, contextlevel: str, instanceid: int) -> None:
        """Remove a role assignment if present."""
        with self.lock:
            ctx = (contextlevel, instanceid)
            holders = self.roles_by_context.get(ctx, {})
            roles = holders.get(uid)
            if roles and roleid in roles:
                roles.remove(roleid)
                if not roles:
                    del holders[uid]
                    self._user_role_contexts.get(uid, {}).pop(ctx, None)

    def enrolments(self, courseid: int) -> dict[int, list[int]]:
        """Test helper: enrolled user id -> role ids in the course."""
        with self.lock:
            return {
                uid: self.course_roles(courseid, uid)
                for uid in self.enrolments_by_course.get(courseid, {})
            }

    @property
    def role_assignments(self) -> list[tuple[int, int, str, int]]:
        """Test helper: every (roleid, userid, contextlevel, instanceid)."""
        with self.lock:
            return [
                (roleid, uid, level, instance)
                for (level, instance), holders in self.roles_by_context.items()
                for uid, roles in holders.items()
                for roleid in roles
            ]

    # ------------------------------------------------------------------ groups

    def add_group(self, courseid: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a new group (callers validate) and return it."""
        with self.lock:
            gid = self.next_ids["group"]
            self.next_ids["group"] += 1
            stamp = now()
            group = {
                "id": gid,
                "courseid": courseid,
                "members": [],
                "timecreated": stamp,
                "timemodified": stamp,
                **fields,
            }
            self.groups[gid] = group
            self._index_group(group)
            return group

    def delete_group(self, gid: int) -> None:
        """Delete a group and its memberships."""
        with self.lock:
            group = self.groups.pop(gid)
            for uid in group["members"]:
                self._groups_of_user.get(uid, {}).pop(gid, None)
            self._group_ids_by_course[group["courseid"]].pop(gid, None)
            self._group_by_name.pop((group["courseid"], group["name"]), None)
            if group["idnumber"]:
                self._group_by_idnumber.pop((group["courseid"], group["idnumber"]), None)

    def add_group_member(self, gid: int, uid: int) -> None:
        """Add a member (already a member: nothing happens)."""
        with self.lock:
            members = self.groups[gid]["members"]
            if gid not in self._groups_of_user.get(uid, {}):
                members.append(uid)
                self._groups_of_user.setdefault(uid, {})[gid] = None

    def remove_group_member(self, gid: int, uid: int) -> None:
        """Remove a member if present."""
        with self.lock:
            if gid in self._groups_of_user.get(uid, {}):
                self.groups[gid]["members"].remove(uid)
                del self._groups_of_user[uid][gid]

    def course_group_ids(self, courseid: int) -> list[int]:
        """Ids of the course's groups."""
        return list(self._group_ids_by_course.get(courseid, ()))

    def user_group_ids(self, uid: int, courseid: int | None = None) -> list[int]:
        """Ids of the groups the user belongs to (in one course, or anywhere)."""
        return [
            gid
            for gid in self._groups_of_user.get(uid, ())
            if courseid is None or self.groups[gid]["courseid"] == courseid
        ]

    def group_by_name(self, courseid: int, name: str) -> dict[str, Any] | None:
        """The course's group with this name (Moodle keeps names unique per course)."""
        gid = self._group_by_name.get((courseid, name))
        return self.groups[gid] if gid is not None else None

    def group_by_idnumber(
        self, idnumber: str, courseid: int | None = None
    ) -> dict[str, Any] | None:
        """The group with this idnumber (optionally in one course), or None."""
        with self.lock:
            if courseid is not None:
                gid = self._group_by_idnumber.get((courseid, idnumber))
                return self.groups[gid] if gid is not None else None
            for group in self.groups.values():
                if group["idnumber"] == idnumber and courseid in (None, group["courseid"]):
                    return group
            return None

    # ------------------------------------------------------------------ completion

    def is_tracked(self, courseid: int, uid: int) -> bool:
        """Whether the user is in the course's completion reports (enrolled as student)."""
        return self.is_enrolled(courseid, uid) and any(
            role in catalog.TRACKED_ROLES for role in self.course_roles(courseid, uid)
        )

    def activity(self, uid: int, cmid: int) -> dict[str, Any] | None:
        """The stored completion row of a user for an activity, if any."""
        return self.completions.get((uid, cmid))

    def set_activity_state(
        self,
        uid: int,
        cmid: int,
        state: int,
        *,
        overrideby: int | None = None,
        viewed: bool = False,
    ) -> dict[str, Any]:
        """Store an activity completion state and review the course's completion."""
        with self.lock:
            row = self.completions.setdefault(
                (uid, cmid), {"state": 0, "timemodified": 0, "overrideby": None, "viewed": 0}
            )
            row["state"] = state
            row["timemodified"] = now()
            row["overrideby"] = overrideby
            if viewed:
                row["viewed"] = 1
            module = catalog.MODULES[cmid]
            self.emit(
                COMPLETION_UPDATED,
                userid=overrideby or uid,
                relateduserid=uid,
                courseid=module.course,
                contextinstanceid=cmid,
            )
            self.review_course_completion(uid, module.course)
            return row

    def emit(self, eventname: str, **data: int) -> None:
        """Tell the listeners about a Moodle event (ids and time only, like the plugin sends)."""
        if not self.listeners:
            return
        event = {"eventname": eventname, **data, "timecreated": now()}
        for listener in list(self.listeners):
            listener(event)

    def review_course_completion(self, uid: int, courseid: int) -> None:
        """Mark criteria of complete activities and, when all are met, the course; never undo."""
        with self.lock:
            criteria = catalog.COMPLETION_CRITERIA.get(courseid)
            if not criteria or not self.is_tracked(courseid, uid):
                return
            done = self.criteria_done.setdefault((uid, courseid), {})
            for cmid in criteria:
                row = self.completions.get((uid, cmid))
                if cmid not in done and row and row["state"] in (1, 2):
                    done[cmid] = row["timemodified"]
            if not done:
                del self.criteria_done[(uid, courseid)]
            elif (uid, courseid) not in self.course_completed and all(c in done for c in criteria):
                self.course_completed[(uid, courseid)] = max(done.values())
                # \core\event\course_completed: relateduserid the learner, context the course.
                self.emit(
                    COURSE_COMPLETED,
                    userid=uid,
                    relateduserid=uid,
                    courseid=courseid,
                    contextinstanceid=courseid,
                )

    def set_completion(self, uid: int, cmid: int, state: int) -> None:
        """Test helper: the user ticks (1) or unticks (0) a manual activity themselves."""
        if catalog.MODULES[cmid].completion != 1:
            raise ValueError(f"cmid {cmid} does not use manual completion")
        self.set_activity_state(uid, cmid, state)

    def view_page(self, uid: int, cmid: int) -> None:
        """Test helper: the user views a page; automatic (on view) completion follows."""
        with self.lock:
            module = catalog.MODULES[cmid]
            if module.completion == 2 and self.is_tracked(module.course, uid):
                self.set_activity_state(uid, cmid, 1, viewed=True)

    def activity_state(self, uid: int, cmid: int) -> int:
        """Test helper: 0 incomplete, 1 complete."""
        row = self.completions.get((uid, cmid))
        return row["state"] if row else 0

    def course_completion_time(self, uid: int, courseid: int) -> int | None:
        """Test helper: when the user completed the course, or None."""
        return self.course_completed.get((uid, courseid))

    # ------------------------------------------------------------------ cohorts

    def add_cohort(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a new cohort (callers validate) and return it."""
        with self.lock:
            cid = self.next_ids["cohort"]
            self.next_ids["cohort"] += 1
            cohort = {"id": cid, "members": [], **fields}
            self.cohorts[cid] = cohort
            return cohort

    def cohort_by_idnumber(self, idnumber: str) -> dict[str, Any] | None:
        """The cohort with this idnumber, or None."""
        for cohort in self.cohorts.values():
            if cohort["idnumber"] == idnumber:
                return cohort
        return None

    # ------------------------------------------------------------------ tokens and helpers

    def user_token(self, uid: int) -> str:
        """Test helper: a self-service token for a participant (made on first use)."""
        with self.lock:
            if uid not in self.users:
                raise KeyError(f"no live user {uid}")
            for token, info in self.tokens.items():
                if info["userid"] == uid and info["service"] == catalog.SELF_SERVICE:
                    return token
            token = secrets.token_hex(16)
            self.tokens[token] = {"userid": uid, "service": catalog.SELF_SERVICE}
            return token

    def user_by_idnumber(self, idnumber: str) -> dict[str, Any] | None:
        """Test helper: the (first) live user with this idnumber."""
        with self.lock:
            ids = self.user_ids_by_idnumber(idnumber)
            return self.users[ids[0]] if ids else None

    def user_by_username(self, username: str) -> dict[str, Any] | None:
        """Test helper: the live user with this username."""
        with self.lock:
            uid = self._by_username.get(username)
            return self.users[uid] if uid is not None else None

    def live_users(self, ids: Iterable[int]) -> Iterator[dict[str, Any]]:
        """The live users among ``ids``, in the order given."""
        for uid in ids:
            user = self.users.get(uid)
            if user is not None:
                yield user

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        """Everything mutable, as JSON-ready data."""
        with self.lock:
            return {
                "version": STATE_VERSION,
                "users": list(self.users.values()),
                "deleted_users": list(self.deleted_users.values()),
                "enrolments": [
                    {"courseid": cid, "userid": uid, **row}
                    for cid, rows in self.enrolments_by_course.items()
                    for uid, row in rows.items()
                ],
                "roles": [
                    {"contextlevel": level, "instanceid": inst, "userid": uid, "roleids": roles}
                    for (level, inst), holders in self.roles_by_context.items()
                    for uid, roles in holders.items()
                ],
                "groups": list(self.groups.values()),
                "completions": [
                    {"userid": uid, "cmid": cmid, **row}
                    for (uid, cmid), row in self.completions.items()
                ],
                "criteria_done": [
                    {"userid": uid, "courseid": cid, "done": [[m, t] for m, t in done.items()]}
                    for (uid, cid), done in self.criteria_done.items()
                ],
                "course_completed": [
                    {"userid": uid, "courseid": cid, "time": t}
                    for (uid, cid), t in self.course_completed.items()
                ],
                "cohorts": list(self.cohorts.values()),
                "plugin_installed": self.plugin_installed,
                "tokens": self.tokens,
                "next_ids": self.next_ids,
            }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Site:
        """Rebuild a site saved by :meth:`to_json`."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"moodle sandbox state version {data.get('version')!r} is not {STATE_VERSION}"
            )
        site = cls()
        site.users = {u["id"]: u for u in data["users"]}
        site.deleted_users = {u["id"]: u for u in data["deleted_users"]}
        for row in data["enrolments"]:
            cid, uid = row.pop("courseid"), row.pop("userid")
            site.enrolments_by_course.setdefault(cid, {})[uid] = row
        for row in data["roles"]:
            ctx = (row["contextlevel"], row["instanceid"])
            site.roles_by_context.setdefault(ctx, {})[row["userid"]] = row["roleids"]
        site.groups = {g["id"]: g for g in data["groups"]}
        for row in data["completions"]:
            key = (row.pop("userid"), row.pop("cmid"))
            site.completions[key] = row
        for row in data["criteria_done"]:
            site.criteria_done[(row["userid"], row["courseid"])] = {m: t for m, t in row["done"]}
        for row in data["course_completed"]:
            site.course_completed[(row["userid"], row["courseid"])] = row["time"]
        site.cohorts = {c["id"]: c for c in data["cohorts"]}
        site.plugin_installed = bool(data.get("plugin_installed", False))
        site.tokens = data["tokens"]
        site.next_ids = data["next_ids"]
        site._reset_indexes()
        return site

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically."""
        data = self.to_json()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Site:
        """Read a state file written by :meth:`save`."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_json(json.load(handle))
