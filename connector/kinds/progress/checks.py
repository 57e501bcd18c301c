"""What ``mentorsync doctor`` checks for the progress kind: every configured meeting activity
exists in the programme course with manual completion, and whether the plugin is there."""

from __future__ import annotations

from connector.clients.moodle.client import MoodleClient
from connector.clients.moodle.site import has_plugin
from connector.config import Settings
from connector.engine.checks import Check, Seen
from connector.errors import MoodleError

# Moodle's course_modules.completion: manual tracking (COMPLETION_TRACKING_MANUAL).
COMPLETION_MANUAL = 1


def doctor_checks(settings: Settings, moodle: MoodleClient, seen: Seen) -> list[Check]:
    """Meeting activities by idnumber (``core_course_get_course_module``: contents leave the
    idnumber out), each with manual completion; the plugin's bulk read and events."""
    p = settings.programme
    checks: list[Check] = []
    course = seen.courses.get(p.programme_course)
    if course is None:
        return []  # the system checks already report the missing course
    try:
        modules: dict[str, int] = {}
        for section in moodle.get_course_contents(int(course["id"])):
            for module in section.get("modules") or []:
                cm = moodle.get_course_module(int(module["id"]))
                if "idnumber" not in cm:  # left out without moodle/course:manageactivities
                    return [
                        Check(
                            "moodle",
                            "meeting activities",
                            "fail",
                            "Moodle does not show the integration user activities' idnumbers",
                            "give the integration role moodle/course:manageactivities in "
                            f"{p.programme_course}",
                        )
                    ]
                if cm.get("idnumber"):
                    modules[str(cm["idnumber"])] = int(cm.get("completion") or 0)
    except MoodleError as exc:
        return [Check("moodle", "meeting activities", "fail", f"lookup failed ({exc.errorcode})")]
    missing = [a for a in p.meeting_activities if a not in modules]
    not_manual = [a for a in p.meeting_activities if modules.get(a, COMPLETION_MANUAL) != 1]
    if missing or not_manual:
        problems = []
        if missing:
            problems.append(f"no activity with idnumber {', '.join(missing)}")
        if not_manual:
            problems.append(f"not manual completion: {', '.join(not_manual)}")
        checks.append(
            Check(
                "moodle",
                "meeting activities",
                "fail",
                f"in {p.programme_course}: " + "; ".join(problems),
                "give each meeting activity its idnumber (Activity settings > ID number) and "
                "'Students can manually mark the activity as completed', or fix "
                "programme.meeting_activities",
            )
        )
    else:
        checks.append(
            Check(
                "moodle",
                "meeting activities",
                "ok",
                f"{len(p.meeting_activities)} meetings by idnumber, manual completion",
            )
        )
    if has_plugin(dict(seen.site_info)):
        checks.append(
            Check("moodle", "plugin", "ok", "local_mentorsync: events and bulk completion reads")
        )
    else:
        checks.append(
            Check(
                "moodle",
                "plugin",
                "note",
                "local_mentorsync is not installed: completions are read user by user",
                "install deploy/moodle/local_mentorsync and add its function to the service",
            )
        )
    return checks
