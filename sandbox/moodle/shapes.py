"""Answer shapes: how Moodle 4.5 renders users, courses, groups and course contents.

Key names, order and value types follow the recordings in ``tests/fixtures/moodle-4.5/``.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle import catalog
from sandbox.moodle.site import Site

_FILTERS = ("displayh5p", "activitynames", "mathjaxloader", "emoticon", "urltolink", "mediaplugin")
ADVANCED_FEATURES = (
    ("usecomments", 1),
    ("usetags", 1),
    ("enablenotes", 1),
    ("messaging", 1),
    ("enableblogs", 1),
    ("enablecompletion", 1),
    ("enablebadges", 1),
    ("messagingallusers", 0),
    ("enablecustomreports", 1),
    ("enableglobalsearch", 0),
    ("mnet_dispatcher_mode", 0),
    ("enablecompetencies", 1),
)


def picture_urls(site: Site) -> dict[str, str]:
    """The default profile picture URLs."""
    base = f"{site.wwwroot}/theme/image.php/boost/core/{catalog.THEME_REV}/u"
    return {"profileimageurlsmall": f"{base}/f2", "profileimageurl": f"{base}/f1"}


def customfields(user: dict[str, Any], *, displayvalue: bool) -> list[dict[str, Any]]:
    """Non-empty custom profile fields in field order (empty ones are left out, as Moodle does)."""
    fields = []
    for shortname, name in catalog.PROFILE_FIELDS.items():
        value = user["customfields"].get(shortname, "")
        if value == "":
            continue
        field: dict[str, Any] = {"type": "text", "value": value}
        if displayvalue:
            field["displayvalue"] = value
        field.update({"name": name, "shortname": shortname})
        fields.append(field)
    return fields


def _names(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "username": user["username"],
        "firstname": user["firstname"],
        "lastname": user["lastname"],
        "fullname": f"{user['firstname']} {user['lastname']}",
        "email": user["email"],
        **{k: user[k] for k in ("address", "phone1", "phone2") if user.get(k)},
        "department": user["department"],
        **({"institution": user["institution"]} if user.get("institution") else {}),
        # user/lib.php user_get_user_details: an empty idnumber is left out.
        **({"idnumber": user["idnumber"]} if user.get("idnumber") else {}),
        **({"interests": user["interests"]} if user.get("interests") else {}),
        "firstaccess": user["firstaccess"],
        "lastaccess": user["lastaccess"],
    }


def _tail(site: Site, user: dict[str, Any], *, displayvalue: bool) -> dict[str, Any]:
    tail: dict[str, Any] = {}
    if user.get("description"):
        tail.update({"description": user["description"], "descriptionformat": 1})
    for key in ("city", "country"):
        if user.get(key):
            tail[key] = user[key]
    tail.update(picture_urls(site))
    fields = customfields(user, displayvalue=displayvalue)
    if fields:
        tail["customfields"] = fields
    return tail


def user_details(site: Site, user: dict[str, Any]) -> dict[str, Any]:
    """``user_get_user_details`` as the integration user sees it (recording 06)."""
    return {
        **_names(user),
        "auth": user["auth"],
        "suspended": bool(user["suspended"]),
        "confirmed": bool(user["confirmed"]),
        "lang": user["lang"],
        "theme": user["theme"],
        "timezone": user["timezone"],
        "mailformat": user["mailformat"],
        "trackforums": 0,
        **_tail(site, user, displayvalue=True),
    }


def _course_extras(site: Site, user: dict[str, Any], courseid: int) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    groups = [site.groups[gid] for gid in site.user_group_ids(user["id"], courseid)]
    if groups:
        extras["groups"] = [
            {
                "id": g["id"],
                "name": g["name"],
                "description": g["description"],
                "descriptionformat": g["descriptionformat"],
            }
            for g in groups
        ]
    roles = site.course_roles(courseid, user["id"])
    if roles:
        extras["roles"] = [
            {"roleid": r, "name": "", "shortname": catalog.ROLES[r][0], "sortorder": 0}
            for r in roles
        ]
    courses = enrolled_courses(site, user["id"])
    if courses:
        extras["enrolledcourses"] = [
            {"id": c.id, "fullname": c.fullname, "shortname": c.shortname} for c in courses
        ]
    return extras


def enrolled_courses(site: Site, uid: int) -> list[catalog.Course]:
    """Courses the user is enrolled in, in course sort order."""
    courses = [c for c in catalog.COURSES.values() if site.is_enrolled(c.id, uid)]
    return sorted(courses, key=lambda c: c.sortorder)


def enrolled_user(site: Site, user: dict[str, Any], courseid: int) -> dict[str, Any]:
    """A ``core_enrol_get_enrolled_users`` entry (recording 22)."""
    names = _names(user)
    names["lastcourseaccess"] = 0
    return {
        **names,
        **_tail(site, user, displayvalue=False),
        **_course_extras(site, user, courseid),
    }


def course_user_profile(site: Site, user: dict[str, Any], courseid: int) -> dict[str, Any]:
    """A ``core_user_get_course_user_profiles`` entry (recording 58)."""
    return {**user_details(site, user), **_course_extras(site, user, courseid)}


def _image(site: Site, course: catalog.Course) -> str:
    return f"{site.wwwroot}/pluginfile.php/{course.imagecontextid}/course/generated/course.svg"


def course_by_field(site: Site, course: catalog.Course) -> dict[str, Any]:
    """A ``core_course_get_courses_by_field`` course (recording 13)."""
    return {
        "id": course.id,
        "fullname": course.fullname,
        "displayname": course.fullname,
        "shortname": course.shortname,
        "courseimage": _image(site, course),
        "categoryid": catalog.CATEGORY["id"],
        "categoryname": catalog.CATEGORY["name"],
        "sortorder": course.sortorder,
        "summary": course.summary,
        "summaryformat": 1,
        "summaryfiles": [],
        "overviewfiles": [],
        "showactivitydates": False,
        "showcompletionconditions": True,
        "contacts": [],
        "enrollmentmethods": ["manual"],
        "idnumber": course.idnumber,
        "format": "topics",
        "showgrades": 1,
        "newsitems": 1,
        "startdate": course.startdate,
        "enddate": course.enddate,
        "maxbytes": 0,
        "showreports": 0,
        "visible": 1,
        "groupmode": course.groupmode,
        "groupmodeforce": 0,
        "defaultgroupingid": 0,
        "enablecompletion": 1,
        "completionnotify": 0,
        "lang": "",
        "theme": "",
        "marker": 0,
        "legacyfiles": 0,
        "calendartype": "",
        "timecreated": catalog.COURSE_TIME,
        "timemodified": catalog.COURSE_TIME,
        "requested": 0,
        "cacherev": int(catalog.THEME_REV),
        "filters": [{"filter": f, "localstate": 0, "inheritedstate": 1} for f in _FILTERS],
        "courseformatoptions": [
            {"name": "hiddensections", "value": 1},
            {"name": "coursedisplay", "value": 0},
            {"name": "indentation", "value": "1"},
        ],
    }


def course_plain(course: catalog.Course) -> dict[str, Any]:
    """A ``core_course_get_courses`` course (recording 15)."""
    return {
        "id": course.id,
        "shortname": course.shortname,
        "categoryid": catalog.CATEGORY["id"],
        "categorysortorder": course.sortorder,
        "fullname": course.fullname,
        "displayname": course.fullname,
        "idnumber": course.idnumber,
        "summary": course.summary,
        "summaryformat": 1,
        "format": "topics",
        "showgrades": 1,
        "newsitems": 1,
        "startdate": course.startdate,
        "enddate": course.enddate,
        "numsections": 1,
        "maxbytes": 0,
        "showreports": 0,
        "visible": 1,
        "hiddensections": 1,
        "groupmode": course.groupmode,
        "groupmodeforce": 0,
        "defaultgroupingid": 0,
        "timecreated": catalog.COURSE_TIME,
        "timemodified": catalog.COURSE_TIME,
        "enablecompletion": 1,
        "completionnotify": 0,
        "lang": "",
        "forcetheme": "",
        "courseformatoptions": [
            {"name": "hiddensections", "value": 1},
            {"name": "coursedisplay", "value": 0},
        ],
        "showactivitydates": False,
        "showcompletionconditions": True,
    }


def progress_percentage(done: int, total: int) -> int | float:
    """Course progress like PHP computes it: an int when the division is exact, else a float."""
    if total == 0:
        return 0
    if done % total == 0:
        return done // total * 100
    return done / total * 100


def user_course(
    site: Site, course: catalog.Course, uid: int, returnusercount: bool
) -> dict[str, Any]:
    """A ``core_enrol_get_users_courses`` course (recording 23)."""
    entry: dict[str, Any] = {
        "id": course.id,
        "shortname": course.shortname,
        "fullname": course.fullname,
        "displayname": course.fullname,
    }
    if returnusercount:
        entry["enrolledusercount"] = len(site.enrolments_by_course[course.id])
    criteria = catalog.COMPLETION_CRITERIA.get(course.id, ())
    tracked = site.is_tracked(course.id, uid)
    done = sum(1 for cmid in criteria if site.activity_state(uid, cmid) in (1, 2))
    entry.update(
        {
            "idnumber": course.idnumber,
            "visible": 1,
            "summary": course.summary,
            "summaryformat": 1,
            "format": "topics",
            "courseimage": _image(site, course),
            "showgrades": True,
            "lang": "",
            "enablecompletion": True,
            "completionhascriteria": bool(criteria),
            "completionusertracked": tracked,
            "category": catalog.CATEGORY["id"],
            "progress": progress_percentage(done, len(criteria)) if tracked else None,
            "completed": site.course_completion_time(uid, course.id) is not None,
            "startdate": course.startdate,
            "enddate": course.enddate,
            "marker": 0,
            "lastaccess": None,
            "isfavourite": False,
            "hidden": False,
            "overviewfiles": [],
            "showactivitydates": False,
            "showcompletionconditions": True,
            "timemodified": catalog.COURSE_TIME,
        }
    )
    return entry


def group(g: dict[str, Any], *, created: bool = False) -> dict[str, Any]:
    """A group as create (``created``) or get answers it (recordings 24, 27)."""
    key = g["enrolmentkey"]
    return {
        "id": g["id"],
        "courseid": g["courseid"],
        "name": g["name"],
        "description": g["description"],
        "descriptionformat": g["descriptionformat"],
        # Stored empty, the key reads back as null (27); create echoes it (24).
        "enrolmentkey": key if created or key else None,
        "idnumber": g["idnumber"],
        "visibility": g["visibility"],
        "participation": g["participation"],
    }


def cohort(c: dict[str, Any], *, customfields: bool) -> dict[str, Any]:
    """A cohort (recordings 53, 56)."""
    out = {
        "id": c["id"],
        "name": c["name"],
        "idnumber": c["idnumber"],
        "description": c["description"],
        "descriptionformat": c["descriptionformat"],
        "visible": c["visible"],
        "theme": c["theme"],
    }
    if customfields:
        out["customfields"] = []
    return out


def completion_data(site: Site, module: catalog.Module, uid: int) -> dict[str, Any]:
    """The per-user completion block of a module in course contents (recordings 16, 38)."""
    row = site.activity(uid, module.id) or {}
    state = row.get("state", 0)
    automatic = module.completion == 2
    details = []
    if automatic:
        viewed = 1 if row.get("viewed") or state else 0
        details = [
            {"rulename": "completionview", "rulevalue": {"status": viewed, "description": "View"}}
        ]
    return {
        "state": state,
        "timecompleted": row.get("timemodified", 0),
        "overrideby": row.get("overrideby"),
        "valueused": False,
        "hascompletion": True,
        "isautomatic": automatic,
        "istrackeduser": site.is_tracked(module.course, uid),
        "uservisible": True,
        "details": details,
        "isoverallcomplete": state in (1, 2),
    }


def activity_status(site: Site, module: catalog.Module, uid: int) -> dict[str, Any]:
    """A ``core_completion_get_activities_completion_status`` entry (recordings 32, 41)."""
    data = completion_data(site, module, uid)
    return {
        "cmid": module.id,
        "modname": module.modname,
        "instance": module.instance,
        "state": data["state"],
        "timecompleted": data["timecompleted"],
        "tracking": module.completion,
        "overrideby": data["overrideby"],
        "valueused": False,
        "hascompletion": True,
        "isautomatic": data["isautomatic"],
        "istrackeduser": data["istrackeduser"],
        "uservisible": True,
        "details": data["details"],
        "isoverallcomplete": data["isoverallcomplete"],
    }


def course_contents(
    site: Site, course: catalog.Course, uid: int, privileged: bool
) -> list[dict[str, Any]]:
    """``core_course_get_contents`` for one viewer (``privileged``: sees ``availability``)."""
    sections = []
    for section in catalog.SECTIONS.values():
        if section.course != course.id:
            continue
        modules = [
            _module(site, m, uid, privileged)
            for m in catalog.MODULES.values()
            if m.section == section.id
        ]
        sections.append(
            {
                "id": section.id,
                "name": section.name,
                "visible": 1,
                "summary": "",
                "summaryformat": 1,
                "section": section.section,
                "hiddenbynumsections": 0,
                "uservisible": True,
                "component": None,
                "itemid": None,
                "modules": modules,
            }
        )
    return sections


def _module(site: Site, m: catalog.Module, uid: int, privileged: bool) -> dict[str, Any]:
    forum = m.modname == "forum"
    out: dict[str, Any] = {
        "id": m.id,
        "url": f"{site.wwwroot}/mod/{m.modname}/view.php?id={m.id}",
        "name": m.name,
        "instance": m.instance,
        "contextid": m.contextid,
        "visible": 1,
        "uservisible": True,
        "visibleoncoursepage": 1,
        "modicon": f"{site.wwwroot}/theme/image.php/boost/{m.modname}/{catalog.THEME_REV}"
        "/monologo?filtericon=1",
        "modname": m.modname,
        "purpose": "collaboration" if forum else "content",
        "branded": False,
        "modplural": "Forums" if forum else "Pages",
    }
    if privileged:
        out["availability"] = None
    out.update({"indent": 0, "onclick": "", "afterlink": None})
    if forum:
        out["activitybadge"] = []
    out.update(
        {
            "customdata": '{"trackingtype":"1"}' if forum else '""',
            "noviewlink": False,
            "completion": m.completion,
        }
    )
    if m.completion:
        out["completiondata"] = completion_data(site, m, uid)
    out.update({"downloadcontent": 1, "dates": [], "groupmode": 0})
    if not forum:
        out["contents"] = [
            {
                "type": "file",
                "filename": "index.html",
                "filepath": "/",
                "filesize": 0,
                "fileurl": f"{site.wwwroot}/webservice/pluginfile.php/{m.contextid}/mod_page/"
                "content/index.html?forcedownload=1",
                "timecreated": None,
                "timemodified": catalog.COURSE_TIME,
                "sortorder": 1,
                "userid": None,
                "author": None,
                "license": None,
            }
        ]
        out["contentsinfo"] = {
            "filescount": 1,
            "filessize": 0,
            "lastmodified": catalog.COURSE_TIME,
            "mimetypes": [],
            "repositorytype": "",
        }
    return out


def course_completion(site: Site, course: catalog.Course, uid: int) -> dict[str, Any]:
    """``core_completion_get_course_completion_status`` (recordings 42, 43, 49, 51)."""
    done = site.criteria_done.get((uid, course.id), {})
    completions = []
    for cmid in catalog.COMPLETION_CRITERIA.get(course.id, ()):
        module = catalog.MODULES[cmid]
        complete = cmid in done
        completions.append(
            {
                "type": 4,
                "title": "Activity completion",
                "status": "Yes" if complete else "No",
                "complete": complete,
                "timecompleted": done[cmid] if complete else None,
                "details": {
                    "type": "Activity completion",
                    "criteria": f'<a href="{site.wwwroot}/mod/{module.modname}/view.php?id={cmid}">'
                    f"{module.name}</a>",
                    "requirement": "Viewing the page"
                    if module.completion == 2
                    else "Marking yourself complete",
                    "status": "",
                },
            }
        )
    return {
        "completionstatus": {
            "completed": site.course_completion_time(uid, course.id) is not None,
            "aggregation": 1,
            "completions": completions,
        },
        "warnings": [],
    }
