"""What ``mentorsync doctor`` checks for the pairs kind: the programme course's groups and
the role ids (Moodle lists neither role assignments nor allowed assignments, so the ids are
cross-checked against the roles its enrolled users hold, by shortname)."""

from __future__ import annotations

from typing import Any

from connector.clients.moodle.client import MoodleClient
from connector.config import Settings
from connector.engine.checks import Check, Seen
from connector.errors import MoodleError

# Moodle's course group modes (course.groupmode).
NOGROUPS, SEPARATEGROUPS, VISIBLEGROUPS = 0, 1, 2
# The shortnames the configured role ids should have.
EXPECTED_ROLES = {"student_role_id": "student", "mentor_course_role_id": "teacher"}


def doctor_checks(settings: Settings, moodle: MoodleClient, seen: Seen) -> list[Check]:
    """The programme course uses separate groups; the course role ids are the ones named."""
    course = seen.courses.get(settings.programme.programme_course)
    if course is None:
        return []  # the system checks already report the missing course
    checks = [_group_mode(dict(course))]
    checks.append(_role_ids(settings, moodle, int(course["id"])))
    return checks


def _group_mode(course: dict[str, Any]) -> Check:
    mode = int(course.get("groupmode") or 0)
    forced = bool(course.get("groupmodeforce"))
    if mode == SEPARATEGROUPS:
        return Check(
            "moodle", "pair groups", "ok", f"{course.get('shortname')} uses separate groups"
        )
    words = {NOGROUPS: "no groups", VISIBLEGROUPS: "visible groups"}.get(mode, f"mode {mode}")
    return Check(
        "moodle",
        "pair groups",
        "fail" if forced or mode == VISIBLEGROUPS else "note",
        f"{course.get('shortname')} uses {words}: a pair's activity would not be private",
        "Course settings > Groups > Group mode: Separate groups",
    )


def _role_ids(settings: Settings, moodle: MoodleClient, courseid: int) -> Check:
    """Role ids against the shortnames the course's enrolled users' roles carry."""
    try:
        users = moodle.get_enrolled_users(courseid, {"userfields": "id,roles"})
    except MoodleError as exc:
        return Check("moodle", "course roles", "fail", f"enrolled users failed ({exc.errorcode})")
    seen = {
        int(role["roleid"]): str(role.get("shortname") or "")
        for user in users
        for role in user.get("roles") or []
    }
    wrong = []
    for key, shortname in EXPECTED_ROLES.items():
        role_id = getattr(settings.programme, key)
        if role_id in seen and seen[role_id] != shortname:
            wrong.append(f"programme.{key} = {role_id} is {seen[role_id]!r}, not {shortname!r}")
    if wrong:
        return Check(
            "moodle", "course roles", "fail", "; ".join(wrong), "set the role ids of your site"
        )
    return Check(
        "moodle",
        "course roles",
        "ok" if seen else "note",
        "role ids agree with the roles enrolled users hold"
        if seen
        else "nobody is enrolled yet: the role ids are checked by the first pairs sync",
    )
