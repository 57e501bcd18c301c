"""The Moodle web-service functions mentorsync calls, one method each, over the client's wire.

Reads that take lists batch internally (within ``field_limit`` and ``max_batch_items``) and
merge the answers; writes send exactly one HTTP call each (callers batch with
:meth:`~connector.clients.moodle.client.MoodleClient.split`). The request path (encoding,
retries, the write rule, errors) is :class:`~connector.clients.moodle.client.MoodleClient`'s,
into which :class:`MoodleFunctions` is mixed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from connector.clients.moodle.params import PROTOCOL_FIELDS, count_fields, split_items
from connector.clients.moodle.site import PLUGIN_COMPLETIONS
from connector.config import MoodleSettings

log = logging.getLogger(__name__)


class MoodleFunctions:
    """The function methods of the Moodle client (see the module docstring)."""

    settings: MoodleSettings
    field_limit: int

    def call(
        self, wsfunction: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> Any:
        raise NotImplementedError  # the client's request path

    def _batched_read(
        self, wsfunction: str, list_key: str, values: Sequence[Any], extra: Mapping[str, Any]
    ) -> list[Any]:
        merged: list[Any] = []
        batches = split_items(
            list_key,
            values,
            base_fields=PROTOCOL_FIELDS + count_fields(dict(extra)),
            field_limit=self.field_limit,
            max_items=self.settings.max_batch_items,
        )
        for batch in batches:
            merged.extend(self.call(wsfunction, {**extra, list_key: list(batch)}) or [])
        return merged

    # --- reads --------------------------------------------------------------------------------

    def site_info(self) -> dict[str, Any]:
        """Site name, release, the token's user and ``functions`` it may call."""
        info = dict(self.call("core_webservice_get_site_info"))
        # A per-user key that opens file downloads: a credential, so it never leaves the client.
        info.pop("userprivateaccesskey", None)
        return info

    def get_users_by_field(self, field: str, values: Sequence[str | int]) -> list[dict[str, Any]]:
        """Users whose ``field`` (id, idnumber, username or email) is one of ``values``.

        Unknown values are simply absent from the answer; deleted users are never returned.
        """
        if field not in ("id", "idnumber", "username", "email"):
            # Moodle searches only these (08_: a profile field is invalidparameter).
            raise ValueError(
                f"get_users_by_field: field must be id, idnumber, username or email, got {field!r}"
            )
        return self._batched_read(
            "core_user_get_users_by_field", "values", values, {"field": field}
        )

    def get_courses_by_field(self, field: str, value: str | int) -> list[dict[str, Any]]:
        """The ``courses`` list of core_course_get_courses_by_field (id, shortname, idnumber...)."""
        answer = self.call("core_course_get_courses_by_field", {"field": field, "value": value})
        return list(answer.get("courses", []))

    def get_course_contents(self, courseid: int) -> list[dict[str, Any]]:
        """The course's sections, each with its ``modules`` (id = cmid, idnumber...)."""
        return list(self.call("core_course_get_contents", {"courseid": courseid}))

    def get_enrolled_users(
        self, courseid: int, options: Mapping[str, str | int] | None = None
    ) -> list[dict[str, Any]]:
        """Users enrolled in the course (active and suspended), by default with every field.

        ``options`` are core_enrol_get_enrolled_users' (enrol/externallib.php): ``userfields``
        (``"id,idnumber,roles"`` keeps payloads small; ``id`` and ``fullname`` always come back),
        ``onlyactive``/``onlysuspended`` (1), ``groupid``, ``limitfrom``, ``limitnumber``,
        ``sortby``, ``sortdirection``.
        """
        params: dict[str, Any] = {"courseid": courseid}
        if options:
            params["options"] = [{"name": k, "value": v} for k, v in options.items()]
        return list(self.call("core_enrol_get_enrolled_users", params))

    def get_course_module(self, cmid: int) -> dict[str, Any]:
        """The ``cm`` of core_course_get_course_module: ``id``, ``course``, ``completion`` and,
        for a user with moodle/course:manageactivities, ``idnumber`` (contents leave it out)."""
        return dict(self.call("core_course_get_course_module", {"cmid": cmid})["cm"])

    def get_course_module_by_instance(self, module: str, instance: int) -> dict[str, Any]:
        """The ``cm`` of a module instance (``page``, 3), shaped like :meth:`get_course_module`."""
        answer = self.call(
            "core_course_get_course_module_by_instance", {"module": module, "instance": instance}
        )
        return dict(answer["cm"])

    def get_groups(self, groupids: Sequence[int]) -> list[dict[str, Any]]:
        """Groups by id (every id must exist: a missing one fails the call, ``invalidrecord``)."""
        return self._batched_read("core_group_get_groups", "groupids", groupids, {})

    def get_completions_page(
        self, courseid: int, since: int = 0, cursor: str = "", limit: int = 1000
    ) -> dict[str, Any]:
        """One page of the mentorsync plugin's bulk completion read (``local_mentorsync``).

        ``{"activities": [{"userid","cmid","idnumber","completionstate","timemodified"}],
        "courses": [{"userid","timecompleted"}], "nextcursor": str, "servertime": int}``;
        an empty ``nextcursor`` is the last page. Only on sites with the plugin
        (:func:`has_plugin`).
        """
        params = {"courseid": courseid, "since": since, "cursor": cursor, "limit": limit}
        return dict(self.call(PLUGIN_COMPLETIONS, params))

    def get_completions(
        self, courseid: int, since: int = 0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every page of :meth:`get_completions_page`: ``(activities, courses)``."""
        activities: list[dict[str, Any]] = []
        courses: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.get_completions_page(courseid, since, cursor, limit)
            activities.extend(page.get("activities") or [])
            courses.extend(page.get("courses") or [])
            cursor = str(page.get("nextcursor") or "")
            if not cursor:
                return activities, courses

    def get_course_groups(self, courseid: int) -> list[dict[str, Any]]:
        """The course's groups (id, name, idnumber...)."""
        return list(self.call("core_group_get_course_groups", {"courseid": courseid}))

    def get_group_members(self, groupids: Sequence[int]) -> list[dict[str, Any]]:
        """``[{"groupid", "userids"}]`` for each group, batched over many groups."""
        return self._batched_read("core_group_get_group_members", "groupids", groupids, {})

    def get_activities_completion_status(self, courseid: int, userid: int) -> dict[str, Any]:
        """The whole answer: ``{"statuses": [{"cmid", "state", ...}], "warnings": [...]}``."""
        return dict(
            self.call(
                "core_completion_get_activities_completion_status",
                {"courseid": courseid, "userid": userid},
            )
        )

    def get_course_completion_status(self, courseid: int, userid: int) -> dict[str, Any]:
        """The whole answer: ``{"completionstatus": {"completed", ...}, "warnings": [...]}``."""
        return dict(
            self.call(
                "core_completion_get_course_completion_status",
                {"courseid": courseid, "userid": userid},
            )
        )

    # --- writes: one HTTP call each ------------------------------------------------------------

    def _write(self, wsfunction: str, list_key: str, items: Sequence[Any]) -> Any:
        if not items:
            return None  # nothing to do; Moodle would reject an empty list anyway
        log.info("moodle %s: %d items", wsfunction, len(items))
        return self.call(wsfunction, {list_key: list(items)}, write=True)

    def create_users(self, users: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create users, all or nothing: ``[{"id", "username"}]`` in input order."""
        return list(self._write("core_user_create_users", "users", users) or [])

    def update_users(self, users: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Update users (each with its ``id``); returns the per-user ``warnings`` list."""
        answer = self._write("core_user_update_users", "users", users)
        return list((answer or {}).get("warnings", []))

    def enrol_users(self, enrolments: Sequence[Mapping[str, Any]]) -> None:
        """Manual enrolments ``{"roleid","userid","courseid"}``, all or nothing; idempotent."""
        self._write("enrol_manual_enrol_users", "enrolments", enrolments)

    def unenrol_users(self, enrolments: Sequence[Mapping[str, Any]]) -> None:
        """Remove manual enrolments ``{"userid","courseid"}``."""
        self._write("enrol_manual_unenrol_users", "enrolments", enrolments)

    def create_groups(self, groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create groups ``{"courseid","name","idnumber",...}``; returns them with their ``id``."""
        return list(self._write("core_group_create_groups", "groups", groups) or [])

    def delete_groups(self, groupids: Sequence[int]) -> None:
        """Delete groups by id."""
        self._write("core_group_delete_groups", "groupids", groupids)

    def add_group_members(self, members: Sequence[Mapping[str, Any]]) -> None:
        """Add ``{"groupid","userid"}`` memberships."""
        self._write("core_group_add_group_members", "members", members)

    def delete_group_members(self, members: Sequence[Mapping[str, Any]]) -> None:
        """Remove ``{"groupid","userid"}`` memberships."""
        self._write("core_group_delete_group_members", "members", members)

    def assign_roles(self, assignments: Sequence[Mapping[str, Any]]) -> None:
        """Assign ``{"roleid","userid","contextlevel","instanceid"}`` (mentor: user context)."""
        self._write("core_role_assign_roles", "assignments", assignments)

    def unassign_roles(self, assignments: Sequence[Mapping[str, Any]]) -> None:
        """Unassign roles; same item shape as :meth:`assign_roles`."""
        self._write("core_role_unassign_roles", "unassignments", assignments)

    def override_activity_completion(self, userid: int, cmid: int, newstate: int) -> dict[str, Any]:
        """Override a user's completion of activity ``cmid`` (1 complete, 0 incomplete)."""
        params = {"userid": userid, "cmid": cmid, "newstate": newstate}
        return dict(
            self.call("core_completion_override_activity_completion_status", params, write=True)
        )
