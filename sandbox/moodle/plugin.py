"""The local_mentorsync plugin's web-service function, as the sandbox Moodle serves it.

The same contract as the plugin's PHP (``deploy/moodle/local_mentorsync/classes/external/
get_completions.php``), which is what a real site runs:
``local_mentorsync_get_completions(courseid, since, cursor, limit)`` returns every activity
completion row of the course's modules, then every course completion, changed at or after
``since`` (Unix seconds), one page at a time in keyset order::

    {"activities": [{"userid", "cmid", "idnumber", "completionstate", "timemodified"}],
     "courses": [{"userid", "timecompleted"}],
     "nextcursor": "a-<time>-<row id>" | "c-<time>-<row id>" | "",
     "servertime": int}

- Rows are ordered by (time, row id): a row that changes while a sweep pages through moves to
  the end and is read again, never skipped. ``nextcursor`` empty means this page was the last.
- ``activities`` includes rows set back to incomplete (``completionstate`` 0), so an undone
  completion is seen; ``idnumber`` is the course module's (empty when it has none).
- ``limit`` must be 1..:data:`MAX_LIMIT`; a cursor not made by this function is refused
  (``invalidparameter``). The sandbox's row id is ``userid * 100000 + cmid`` (course
  completions: ``userid``), stable like a database row's.

Only while ``Site.plugin_installed``; without the plugin the call fails like any function the
site does not have (``invalidrecord`` on ``external_functions``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sandbox.moodle import catalog
from sandbox.moodle.functions import Caller, default, function, get_course
from sandbox.moodle.site import Site
from sandbox.moodle.wire import ALPHANUMEXT, INT, Value, invalid_parameter, missing_record

NAME = "local_mentorsync_get_completions"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
_CURSOR = re.compile(r"([ac])-(\d{1,12})-(\d{1,18})")


@function(
    NAME,
    courseid=Value(INT),
    since=default(INT, 0),
    cursor=default(ALPHANUMEXT, ""),
    limit=default(INT, DEFAULT_LIMIT),
)
def get_completions(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """One page of the course's completions changed since ``since`` (see the module doc)."""
    if not site.plugin_installed:
        raise missing_record("external_functions", NAME, "name")
    course = get_course(params["courseid"])
    since, limit = max(0, params["since"]), params["limit"]
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_parameter(f"limit must be between 1 and {MAX_LIMIT}")
    phase, after = "a", (since, 0)
    if params["cursor"]:
        found = _CURSOR.fullmatch(params["cursor"])
        if found is None:
            raise invalid_parameter("cursor is not a nextcursor of this function")
        phase, after = found[1], (int(found[2]), int(found[3]))
        if after[0] < since:
            after = (since, 0)
    servertime = int(time.time())
    activities: list[dict[str, Any]] = []
    if phase == "a":
        modules = {m.id: m for m in catalog.MODULES.values() if m.course == course.id}
        rows = sorted(
            ((row["timemodified"], uid * 100000 + cmid), uid, cmid, row)
            for (uid, cmid), row in site.completions.items()
            if cmid in modules and uid in site.users
        )
        for key, uid, cmid, row in rows:
            if key[0] < after[0] or (key[0] == after[0] and key[1] <= after[1]):
                continue
            activities.append(
                {
                    "userid": uid,
                    "cmid": cmid,
                    "idnumber": modules[cmid].idnumber,
                    "completionstate": row["state"],
                    "timemodified": row["timemodified"],
                }
            )
            if len(activities) == limit:
                return _page(activities, [], f"a-{key[0]}-{key[1]}", servertime)
        after = (since, 0)
    courses: list[dict[str, Any]] = []
    remaining = limit - len(activities)
    done = sorted(
        ((when, uid), uid)
        for (uid, cid), when in site.course_completed.items()
        if cid == course.id and uid in site.users and when is not None
    )
    for key, uid in done:
        if key[0] < after[0] or (key[0] == after[0] and key[1] <= after[1]):
            continue
        courses.append({"userid": uid, "timecompleted": key[0]})
        if len(courses) == remaining:
            return _page(activities, courses, f"c-{key[0]}-{key[1]}", servertime)
    return _page(activities, courses, "", servertime)


def _page(
    activities: list[dict[str, Any]], courses: list[dict[str, Any]], cursor: str, now: int
) -> dict[str, Any]:
    return {"activities": activities, "courses": courses, "nextcursor": cursor, "servertime": now}
