"""The web-service functions of the sandbox Moodle, with Moodle 4.5's checks and errors.

Each function declares its parameters like Moodle's ``*_parameters()`` (validated before it
runs) and a handler that gets the site, the caller and the typed parameters. Calls that Moodle
wraps in one database transaction (create users, enrol, groups, roles, cohorts, delete) check
every row before changing anything, so one bad row leaves the site untouched.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.moodle import catalog, shapes
from sandbox.moodle.site import Site, now
from sandbox.moodle.wire import (
    ACCESS_EXCEPTION,
    ALPHA,
    ALPHANUMEXT,
    AUTH,
    BOOL,
    CAPABILITY_EXCEPTION,
    DEFAULT,
    INT,
    LANG,
    MISSING_RECORD,
    NOTAGS,
    OPTIONAL,
    RAW,
    RAW_TRIMMED,
    REQUIRE_LOGIN_EXCEPTION,
    TEXT,
    TIMEZONE,
    USERNAME,
    WRITE_EXCEPTION,
    MoodleError,
    Multiple,
    Single,
    Value,
    clean_param,
    coding_error,
    invalid_parameter,
    missing_record,
    moodle_exception,
    query_debuginfo,
)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's user and service."""

    userid: int
    service: str

    @property
    def integration(self) -> bool:
        """The integration user: system-level rights over the whole site."""
        return self.service == catalog.INTEGRATION_SERVICE


Handler = Callable[[Site, Caller, dict[str, Any]], Any]


@dataclass(frozen=True)
class Function:
    """A web-service function: its parameter description and handler."""

    params: Single
    handler: Handler


FUNCTIONS: dict[str, Function] = {}


def function(name: str, **params: Value | Single | Multiple) -> Callable[[Handler], Handler]:
    """Register ``handler`` as wsfunction ``name`` with these top-level parameters."""

    def register(handler: Handler) -> Handler:
        FUNCTIONS[name] = Function(Single(params), handler)
        return handler

    return register


def opt(ptype: str) -> Value:
    """An optional scalar parameter."""
    return Value(ptype, OPTIONAL)


def default(ptype: str, value: Any) -> Value:
    """A scalar parameter with a default."""
    return Value(ptype, DEFAULT, value)


# ----------------------------------------------------------------------------- shared checks

_EMAIL_RE = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$",
    re.IGNORECASE,
)
_INTERNAL_AUTH = frozenset({"manual", "email"})


def validate_email(email: str) -> bool:
    """Moodle's ``validate_email``."""
    return len(email) <= 254 and bool(_EMAIL_RE.match(email))


def password_policy_errors(password: str) -> str:
    """Moodle's default password policy messages (empty when the password passes)."""
    errors = []
    if len(password) < 8:
        errors.append("<div>Passwords must be at least 8 characters long.</div>")
    if not re.search(r"[0-9]", password):
        errors.append("<div>Passwords must have at least 1 digit(s).</div>")
    if not re.search(r"[a-z]", password):
        errors.append("<div>Passwords must have at least 1 lower case letter(s).</div>")
    if not re.search(r"[A-Z]", password):
        errors.append("<div>Passwords must have at least 1 upper case letter(s).</div>")
    if not re.search(r"[^a-zA-Z0-9]", password):
        errors.append(
            "<div>The password must have at least 1 special character(s) such as *, -, or #.</div>"
        )
    return "".join(errors)


def policy_exception(errmsg: str) -> MoodleError:
    """What ``throw new moodle_exception($errmsg)`` looks like (recording 05)."""
    return moodle_exception(errmsg, f"error/{errmsg}")


def get_course(courseid: int) -> catalog.Course:
    """``get_course`` (MUST_EXIST)."""
    course = catalog.COURSES.get(courseid)
    if course is None:
        raise missing_record("course", courseid)
    return course


def get_module(cmid: int) -> catalog.Module:
    """``context_module::instance($cmid)`` (MUST_EXIST), how the completion functions start.

    ``get_record('course_modules', ...)`` names its table, which dml_missing_record_exception
    turns into ``invalidcoursemodule`` (lib/dmllib.php).
    """
    module = catalog.MODULES.get(cmid)
    if module is None:
        raise MoodleError(
            MISSING_RECORD,
            "invalidcoursemodule",
            "Invalid course module ID",
            query_debuginfo("course_modules", "id", cmid),
        )
    return module


def missing_unknown_table(debuginfo: str) -> MoodleError:
    """A MUST_EXIST ``get_record_sql`` miss: no table name, so ``invalidrecordunknown``."""
    return MoodleError(
        MISSING_RECORD, "invalidrecordunknown", "Can't find data record in database.", debuginfo
    )


def get_user(site: Site, uid: int) -> dict[str, Any]:
    """``core_user::get_user(..., MUST_EXIST)`` for a live user."""
    user = site.users.get(uid)
    if user is None:
        raise MoodleError(
            "dml_missing_record_exception",
            "invaliduser",
            "Invalid user",
            query_debuginfo("user", "id", uid),
        )
    return user


def live_user_record(site: Site, uid: int) -> dict[str, Any]:
    """``$DB->get_record('user', ['id' => .., 'deleted' => 0], MUST_EXIST)``."""
    user = site.users.get(uid)
    if user is None:
        raise missing_record("user", uid)
    return user


def require_course_access(site: Site, caller: Caller, courseid: int) -> None:
    """``validate_context`` for a course: a participant must be enrolled there."""
    if not caller.integration and not site.is_enrolled(courseid, caller.userid):
        raise MoodleError(
            REQUIRE_LOGIN_EXCEPTION,
            "requireloginerror",
            "Course or activity not accessible.",
            "Not enrolled",
        )


def course_context_error(courseid: int) -> MoodleError:
    """``errorcoursecontextnotvalid`` (a course that does not exist, for group functions)."""
    return moodle_exception(
        "errorcoursecontextnotvalid",
        f"You cannot execute functions in the course context (course id:{courseid}). The error "
        "message was: Invalid parameter value detected",
        "Context does not exist",
    )


def can_override(site: Site, caller: Caller, courseid: int) -> bool:
    """moodle/course:overridecompletion in the course."""
    return caller.integration or any(
        r in catalog.OVERRIDE_ROLES for r in site.course_roles(courseid, caller.userid)
    )


def no_permission(capability: str) -> MoodleError:
    """``required_capability_exception``."""
    return MoodleError(
        CAPABILITY_EXCEPTION,
        "nopermissions",
        f"Sorry, but you do not currently have permissions to do that ({capability}).",
    )


def require_view_completion(site: Site, caller: Caller, courseid: int, uid: int) -> None:
    """Who may read a user's completion: the integration user, the user, a teacher, a mentor."""
    if caller.integration or caller.userid == uid or can_override(site, caller, courseid):
        return
    if 9 in site.roles_by_context.get(("user", uid), {}).get(caller.userid, ()):
        return
    raise no_permission("View course reports")


def _custom(rows: list[dict[str, str]] | None) -> dict[str, str]:
    """Custom field rows to shortname -> value; unknown shortnames are ignored like Moodle."""
    return {r["type"]: r["value"] for r in rows or [] if r["type"] in catalog.PROFILE_FIELDS}


_AMPERSAND = re.compile(r"&(?![a-zA-Z0-9#]{1,8};)")


def format_string(text: str) -> str:
    """Moodle's ``format_string`` with the default settings (lib/classes/formatting.php).

    Ampersands not starting an entity become ``&amp;`` (``replace_ampersands_not_followed_by_
    entity``, lib/weblib.php), tags are stripped (formatstringstriptags is on by default) and a
    stray ``<`` or ``>`` left over is escaped.
    """
    if text == "":
        return ""
    text = _AMPERSAND.sub("&amp;", text)
    text = re.sub(r"<[^>]*>", "", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------- site info


@function(
    "core_webservice_get_site_info", serviceshortnames=Multiple(Value(ALPHANUMEXT), DEFAULT, [])
)
def site_info(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """``core_webservice_get_site_info`` (recording 01)."""
    user = site.users[caller.userid]
    key = hashlib.sha256(f"{caller.userid}:{caller.service}".encode()).hexdigest()[:32]
    return {
        "sitename": catalog.SITE_NAME,
        "username": user["username"],
        "firstname": user["firstname"],
        "lastname": user["lastname"],
        "fullname": f"{user['firstname']} {user['lastname']}",
        "lang": "en",
        "userid": user["id"],
        "siteurl": site.wwwroot,
        "userpictureurl": shapes.picture_urls(site)["profileimageurl"],
        "functions": [
            {"name": name, "version": catalog.FUNCTION_VERSIONS.get(name, catalog.VERSION)}
            for name in catalog.SERVICE_FUNCTIONS[caller.service]
            if site.plugin_installed or name not in catalog.PLUGIN_FUNCTIONS
        ],
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": catalog.RELEASE,
        "version": catalog.VERSION,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in shapes.ADVANCED_FEATURES],
        "usercanmanageownfiles": True,
        "userquota": 104857600,
        "usermaxuploadfilesize": 67108864,
        "userhomepage": 1,
        "userprivateaccesskey": key,
        "siteid": 1,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": False,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }


def site_info_xml(result: dict[str, Any]) -> dict[str, Any]:
    """XML walks the return description, so the optional null key shows up there (63)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key == "policyagreed":
            out["usersessionscount"] = None
        out[key] = value
    return out


XML_SHAPES: dict[str, Callable[[Any], Any]] = {"core_webservice_get_site_info": site_info_xml}

# ----------------------------------------------------------------------------- users

_NAME_PARAMS = {
    k: opt(NOTAGS) for k in ("firstnamephonetic", "lastnamephonetic", "middlename", "alternatename")
}
_PROFILE_PARAMS: dict[str, Value | Single | Multiple] = {
    "maildisplay": opt(INT),
    "city": opt(TEXT),
    "country": opt(ALPHA),
    "timezone": opt(TIMEZONE),
    "description": opt(RAW),
}
_MORE_PARAMS: dict[str, Value | Single | Multiple] = {
    "institution": opt(TEXT),
    "department": opt(TEXT),
    "phone1": opt(NOTAGS),
    "phone2": opt(NOTAGS),
    "address": opt(TEXT),
}
_CUSTOMFIELDS = Multiple(Single({"type": Value(ALPHANUMEXT), "value": Value(RAW)}), OPTIONAL)
_PREFERENCES = Multiple(Single({"type": Value(RAW), "value": Value(RAW)}), OPTIONAL)
_STORED_USER_KEYS = (
    "username",
    "auth",
    "firstname",
    "lastname",
    "email",
    "city",
    "country",
    "timezone",
    "description",
    "interests",
    "idnumber",
    "institution",
    "department",
    "phone1",
    "phone2",
    "address",
    "lang",
    "theme",
    "mailformat",
    "suspended",
)

CREATE_USER = Single(
    {
        "createpassword": opt(BOOL),
        "username": Value(USERNAME),
        "auth": default(AUTH, "manual"),
        "password": opt(RAW),
        "firstname": Value(NOTAGS),
        "lastname": Value(NOTAGS),
        "email": Value(RAW_TRIMMED),
        **_PROFILE_PARAMS,
        **_NAME_PARAMS,
        "interests": opt(TEXT),
        "idnumber": default(RAW, ""),
        **_MORE_PARAMS,
        "lang": default(LANG, "en"),
        "calendartype": opt(NOTAGS),
        "theme": opt(ALPHANUMEXT),
        "mailformat": opt(INT),
        "customfields": _CUSTOMFIELDS,
        "preferences": _PREFERENCES,
    }
)


@function("core_user_create_users", users=Multiple(CREATE_USER))
def create_users(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All-or-nothing: the first bad user fails the call and nobody is created (02-05)."""
    usernames: set[str] = set()
    emails: set[str] = set()
    for user in params["users"]:
        for key in ("username", "firstname", "lastname"):
            if user[key].strip() == "":
                raise invalid_parameter(f"The field {key} cannot be blank")
        if user["username"] in usernames or site.user_id_by_username(user["username"]):
            raise invalid_parameter(f"Username already exists: {user['username']}")
        internal = user["auth"] in _INTERNAL_AUTH
        if internal and not user.get("password") and not user.get("createpassword"):
            raise invalid_parameter(
                "Invalid password: you must provide a password, or set createpassword."
            )
        if not validate_email(user["email"]):
            raise invalid_parameter(f"Email address is invalid: {user['email']}")
        if user["email"].lower() in emails or site.email_taken(user["email"]):
            raise invalid_parameter(f"Email address already exists: {user['email']}")
        if internal and user.get("password") and not user.get("createpassword"):
            errmsg = password_policy_errors(user["password"])
            if errmsg:
                raise policy_exception(errmsg)
        usernames.add(user["username"])
        emails.add(user["email"].lower())
    created = []
    for user in params["users"]:
        fields = {k: user[k] for k in _STORED_USER_KEYS if k in user}
        fields["customfields"] = _custom(user.get("customfields"))
        uid = site.add_user(fields)
        created.append({"id": uid, "username": user["username"]})
    return created


UPDATE_USER = Single(
    {
        "id": Value(INT),
        "username": opt(USERNAME),
        "auth": opt(AUTH),
        "suspended": opt(INT),
        "password": opt(RAW),
        "firstname": opt(NOTAGS),
        "lastname": opt(NOTAGS),
        "email": opt(RAW_TRIMMED),
        **_PROFILE_PARAMS,
        "userpicture": opt(INT),
        **_NAME_PARAMS,
        "interests": opt(TEXT),
        "idnumber": opt(RAW),
        **_MORE_PARAMS,
        "lang": opt(LANG),
        "calendartype": opt(NOTAGS),
        "theme": opt(ALPHANUMEXT),
        "mailformat": opt(INT),
        "customfields": _CUSTOMFIELDS,
        "preferences": _PREFERENCES,
    }
)


def _update_warning(uid: int, code: str, message: str) -> dict[str, Any]:
    return {"item": "user", "itemid": uid, "warningcode": code, "message": message}


@function("core_user_update_users", users=Multiple(UPDATE_USER))
def update_users(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """One transaction per user; a failing user becomes a warning, the others go on (11, 12)."""
    warnings = []
    for user in params["users"]:
        uid = user["id"]
        existing = site.users.get(uid)
        problem: tuple[str, str] | None = None
        if existing is None:
            problem = (
                ("usernotupdateddeleted", "User is a deleted user")
                if uid in site.deleted_users
                else ("invaliduserid", "Invalid user ID")
            )
        elif uid == catalog.ADMIN_ID and caller.userid != uid:
            problem = ("usernotupdatedadmin", "Cannot update admin accounts")
        elif uid == catalog.GUEST_ID:
            problem = ("usernotupdatedguest", "Cannot update guest account")
        elif "email" in user and user["email"] != existing["email"]:
            if not validate_email(user["email"]):
                problem = ("useremailinvalid", "Invalid email address")
            elif site.email_taken(user["email"], except_uid=uid):
                problem = ("useremailduplicate", "Duplicate email address")
        if problem is None and existing is not None:
            other = site.user_id_by_username(user.get("username", existing["username"]))
            if other is not None and other != uid:
                problem = ("dmlwriteexception", "Error writing to database")
        if problem is None and user.get("password"):
            auth = user.get("auth", existing["auth"] if existing else "manual")
            errmsg = password_policy_errors(user["password"]) if auth in _INTERNAL_AUTH else ""
            if errmsg:
                problem = (errmsg, f"error/{errmsg}")
        if problem is not None:
            warnings.append(_update_warning(uid, *problem))
            continue
        changes = {k: user[k] for k in _STORED_USER_KEYS if k in user}
        if "customfields" in user:
            changes["customfields"] = _custom(user["customfields"])
        site.update_user(uid, changes)
    return {"warnings": warnings}


_LOOKUP_TYPES = {"id": INT, "idnumber": RAW, "username": USERNAME, "email": RAW_TRIMMED}


@function("core_user_get_users_by_field", field=Value(ALPHA), values=Multiple(Value(RAW)))
def get_users_by_field(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """Only id, idnumber, username, email; unknown values and deleted users are absent (06-10)."""
    field = params["field"]
    ptype = _LOOKUP_TYPES.get(field)
    if ptype is None:
        raise coding_error("invalid field parameter")
    ids: dict[int, None] = {}
    for value in params["values"]:
        if clean_param(value, ptype) != value:
            raise invalid_parameter(f"The field '{field}' value is invalid: {value}")
        if field == "id":
            found = [int(value)] if int(value) in site.users else []
        elif field == "idnumber":
            found = site.user_ids_by_idnumber(value)
        elif field == "username":
            uid = site.user_id_by_username(value)
            found = [uid] if uid is not None else []
        else:
            # PostgreSQL compares exactly; the index is by lower-case email.
            found = [u for u in site.user_ids_by_email(value) if site.users[u]["email"] == value]
        ids.update(dict.fromkeys(found))
    return [shapes.user_details(site, site.users[uid]) for uid in sorted(ids)]


_CRITERIA_KEYS = ("id", "lastname", "firstname", "idnumber", "username", "email", "auth")


def _like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (case-insensitive, ``%`` and ``_`` wildcards, ``|`` escape) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "|" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


@function(
    "core_user_get_users", criteria=Multiple(Single({"key": Value(ALPHA), "value": Value(RAW)}))
)
def get_users(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """Search with AND-ed criteria; email/names match like SQL LIKE ignoring case (09, 10)."""
    warnings, seen = [], set()
    candidates: set[int] | None = None
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for criterion in params["criteria"]:
        key, value = criterion["key"], criterion["value"]
        if key not in _CRITERIA_KEYS:
            warnings.append(
                {
                    "item": key,
                    "warningcode": "invalidfieldparameter",
                    "message": f"The search key '{key}' is not supported, look at the "
                    "web service documentation",
                }
            )
            continue
        if key in seen:
            raise invalid_parameter("You cannot use the same key twice")
        seen.add(key)
        ids: set[int] | None = None
        if key == "id":
            ids = {int(value)} if value.isdigit() and int(value) in site.users else set()
        elif key == "idnumber":
            ids = set(site.user_ids_by_idnumber(value))
        elif key == "username":
            uid = site.user_id_by_username(value)
            ids = {uid} if uid is not None else set()
        elif key == "email" and not re.search(r"[%_|]", value):
            ids = set(site.user_ids_by_email(value))
        elif key in ("email", "firstname", "lastname"):
            regex = _like(value)
            tests.append(lambda u, k=key, r=regex: bool(r.match(u[k])))
        else:
            tests.append(lambda u, k=key, v=value: u[k] == v)
        if ids is not None:
            candidates = ids if candidates is None else candidates & ids
    if not seen:
        return {"users": [], "warnings": warnings}
    pool = sorted(candidates) if candidates is not None else sorted(site.users)
    users = [site.users[uid] for uid in pool]
    found = [shapes.user_details(site, u) for u in users if all(t(u) for t in tests)]
    return {"users": found, "warnings": warnings}


@function("core_user_delete_users", userids=Multiple(Value(INT)))
def delete_users(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; admins, the guest and the caller cannot be deleted (77)."""
    for uid in params["userids"]:
        live_user_record(site, uid)
        if uid == catalog.ADMIN_ID:
            raise moodle_exception("useradminodelete", "Administrator accounts cannot be deleted")
        if uid == catalog.GUEST_ID:
            raise moodle_exception("guestnodeleteallowed", "Can not delete guest user")
        if uid == caller.userid:
            raise moodle_exception("usernotdeletederror", "User not deleted - error")
    for uid in dict.fromkeys(params["userids"]):
        site.delete_user(uid)


@function(
    "core_user_get_course_user_profiles",
    userlist=Multiple(Single({"userid": Value(INT), "courseid": Value(INT)})),
)
def get_course_user_profiles(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """Full details plus groups, roles and courses for the given course (58)."""
    out = []
    for row in params["userlist"]:
        user = site.users.get(row["userid"])
        if user is None or row["courseid"] not in catalog.COURSES:
            continue
        out.append(shapes.course_user_profile(site, user, row["courseid"]))
    return out


# ----------------------------------------------------------------------------- courses


@function("core_course_get_courses_by_field", field=default(ALPHA, ""), value=default(RAW, ""))
def get_courses_by_field(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """Courses by id, ids, shortname, idnumber or category (13, 14)."""
    field, value = params["field"], params["value"]
    courses = list(catalog.COURSES.values())
    if field == "id":
        courses = [c for c in courses if str(c.id) == value]
    elif field == "ids":
        wanted = {v.strip() for v in value.split(",")}
        courses = [c for c in courses if str(c.id) in wanted]
    elif field in ("shortname", "idnumber"):
        courses = [c for c in courses if getattr(c, field) == value]
    elif field == "category":
        courses = [c for c in courses if str(catalog.CATEGORY["id"]) == value]
    elif field:
        raise invalid_parameter("Invalid field name")
    return {"courses": [shapes.course_by_field(site, c) for c in courses], "warnings": []}


@function(
    "core_course_get_courses", options=Single({"ids": Multiple(Value(INT), OPTIONAL)}, DEFAULT, {})
)
def get_courses(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Courses by id; unknown ids are absent (15)."""
    ids = params["options"].get("ids")
    courses = [c for c in catalog.COURSES.values() if ids is None or c.id in ids]
    return [shapes.course_plain(c) for c in courses]


@function(
    "core_course_get_contents",
    courseid=Value(INT),
    options=Multiple(Single({"name": Value(ALPHANUMEXT), "value": Value(RAW)}), DEFAULT, []),
)
def get_contents(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Sections and modules with the caller's completion data (16-18, 38)."""
    course = get_course(params["courseid"])
    require_course_access(site, caller, course.id)
    privileged = can_override(site, caller, course.id)
    return shapes.course_contents(site, course, caller.userid, privileged)


def course_module_answer(site: Site, caller: Caller, m: catalog.Module) -> dict[str, Any]:
    """``core_course_external::get_course_module`` (course/externallib.php, Moodle 4.5).

    With moodle/course:manageactivities (the integration user, a course's editing teacher) the
    whole cm row in the return description's order, ``idnumber`` included; anyone else gets
    the safe subset, without ``idnumber``. ``validate_context`` needs course access first.
    """
    require_course_access(site, caller, m.course)
    section = catalog.SECTIONS[m.section]
    module_type = 9 if m.modname == "forum" else 15
    manager = caller.integration or 3 in site.course_roles(m.course, caller.userid)
    if not manager:
        cm = {
            "id": m.id,
            "course": m.course,
            "module": module_type,
            "name": m.name,
            "modname": m.modname,
            "instance": m.instance,
            "section": section.id,
            "sectionnum": section.section,
            "groupmode": 0,
            "groupingid": 0,
            "completion": m.completion,
            "downloadcontent": 1,
        }
        return {"cm": cm, "warnings": []}
    return {
        "cm": {
            "id": m.id,
            "course": m.course,
            "module": module_type,
            "name": m.name,
            "modname": m.modname,
            "instance": m.instance,
            "section": section.id,
            "sectionnum": section.section,
            "groupmode": 0,
            "groupingid": 0,
            "completion": m.completion,
            "idnumber": m.idnumber,
            "added": catalog.COURSE_TIME,
            "score": 0,
            "indent": 0,
            "visible": 1,
            "visibleoncoursepage": 1,
            "visibleold": 1,
            "completiongradeitemnumber": None,
            "completionpassgrade": 0,
            "completionview": 1 if m.completion == 2 else 0,
            "completionexpected": 0,
            "showdescription": 0,
            "downloadcontent": 1,
            "availability": None,
        },
        "warnings": [],
    }


@function("core_course_get_course_module", cmid=Value(INT))
def get_course_module(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """One course module, with its idnumber (which course contents leave out).

    A missing cmid fails in ``get_coursemodule_from_id``'s first query, a ``get_field_sql``
    without a table name: ``invalidrecordunknown`` (lib/datalib.php, lib/dmllib.php).
    """
    m = catalog.MODULES.get(params["cmid"])
    if m is None:
        raise missing_unknown_table(query_debuginfo("course_modules", "cm.id", params["cmid"]))
    return course_module_answer(site, caller, m)


_MODULE_NAMES = frozenset(
    {"assign", "book", "forum", "label", "page", "quiz", "resource", "url", "lesson", "feedback"}
)


@function(
    "core_course_get_course_module_by_instance", module=Value(ALPHANUMEXT), instance=Value(INT)
)
def get_course_module_by_instance(
    site: Site, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    """The cm of (module name, instance id); then the same answer as get_course_module.

    course/externallib.php: ``get_coursemodule_from_instance($module, $instance, 0, false,
    MUST_EXIST)``; an unknown module name is a coding_exception, an unknown instance a
    ``get_record_sql`` miss (``invalidrecordunknown``). Not in the lab's "Mentorship sync"
    service (recording 01), so there it answers ``accessexception``.
    """
    name, instance = params["module"], params["instance"]
    if name not in _MODULE_NAMES:
        raise coding_error("Invalid modulename parameter")
    m = next(
        (x for x in catalog.MODULES.values() if x.modname == name and x.instance == instance),
        None,
    )
    if m is None:
        raise missing_unknown_table(query_debuginfo(name, "m.id", instance))
    return course_module_answer(site, caller, m)


@function(
    "core_course_get_categories",
    criteria=Multiple(Single({"key": Value(ALPHA), "value": Value(RAW)}), DEFAULT, []),
    addsubcategories=default(BOOL, True),
)
def get_categories(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The two categories of the lab site."""
    categories = [(1, "Category 1", 0), (2, catalog.CATEGORY["name"], len(catalog.COURSES))]
    out = [
        {
            "id": cid,
            "name": name,
            "idnumber": "",
            "description": "",
            "descriptionformat": 1,
            "parent": 0,
            "sortorder": cid * 10000,
            "coursecount": count,
            "visible": 1,
            "visibleold": 1,
            "timemodified": catalog.COURSE_TIME,
            "depth": 1,
            "path": f"/{cid}",
            "theme": "",
        }
        for cid, name, count in categories
    ]
    for criterion in params["criteria"]:
        key, value = criterion["key"], criterion["value"]
        out = [c for c in out if str(c.get(key, "")) == value]
    return out


# ----------------------------------------------------------------------------- enrolment


@function(
    "enrol_manual_enrol_users",
    enrolments=Multiple(
        Single(
            {
                "roleid": Value(INT),
                "userid": Value(INT),
                "courseid": Value(INT),
                "timestart": opt(INT),
                "timeend": opt(INT),
                "suspend": opt(INT),
            }
        )
    ),
)
def enrol_users(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; re-enrolling is fine; unassignable roles are ``wsusercannotassign``."""
    for row in params["enrolments"]:
        if row["courseid"] not in catalog.COURSES:
            raise invalid_parameter("Context does not exist")
        role = catalog.ROLES.get(row["roleid"])
        if (
            row["roleid"] not in catalog.ASSIGNABLE_BY_INTEGRATION
            or role is None
            or "course" not in role[1]
        ):
            raise moodle_exception(
                "wsusercannotassign",
                f"You don't have the permission to assign this role ({row['roleid']}) to this "
                f"user ({row['userid']}) in this course ({row['courseid']}).",
            )
        if row["userid"] not in site.users:
            raise coding_error("User ID does not exist or is deleted!")
    for row in params["enrolments"]:
        status = None if "suspend" not in row else (1 if row["suspend"] else 0)
        site.enrol(
            row["courseid"],
            row["userid"],
            row["roleid"],
            status=status,
            timestart=row.get("timestart"),
            timeend=row.get("timeend"),
        )


@function(
    "enrol_manual_unenrol_users",
    enrolments=Multiple(
        Single(
            {
                "userid": Value(INT),
                "courseid": Value(INT),
                "roleid": opt(INT),
            }
        )
    ),
)
def unenrol_users(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; not enrolled is a no-op (75)."""
    for row in params["enrolments"]:
        get_course(row["courseid"])
        if row["userid"] not in site.users and row["userid"] not in site.deleted_users:
            raise invalid_parameter(f"User id not exist: {row['userid']}")
    for row in params["enrolments"]:
        site.unenrol(row["courseid"], row["userid"])


@function(
    "core_enrol_get_enrolled_users",
    courseid=Value(INT),
    options=Multiple(Single({"name": Value(ALPHANUMEXT), "value": Value(RAW)}), DEFAULT, []),
)
def get_enrolled_users(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """Enrolled users (active and suspended) by id (22), with the options of enrol/externallib.php.

    ``groupid``, ``onlyactive`` (enrolment active and within its dates, account not suspended),
    ``onlysuspended``, ``userfields`` (comma-separated; ``id`` and ``fullname`` always come back,
    an unknown field is ``invaliduserfield``: user/lib.php ``user_get_user_details``),
    ``limitfrom``, ``limitnumber``, ``sortby`` (id, firstname, lastname, siteorder) and
    ``sortdirection``. Unknown option names are ignored, as Moodle does.
    """
    course = get_course(params["courseid"])
    options = {o["name"]: o["value"] for o in params["options"]}
    fields = _userfields(options.get("userfields"))
    sortby = options.get("sortby", "id")
    if sortby not in ("id", "firstname", "lastname", "siteorder"):
        raise invalid_parameter(
            f"Invalid value for sortby parameter (value: {sortby}), allowed values are: "
            "id,firstname,lastname,siteorder"
        )
    direction = options.get("sortdirection", "ASC").upper()
    if direction not in ("ASC", "DESC"):
        raise invalid_parameter(f"Invalid value for sortdirection parameter (value: {direction})")
    enrolments = site.enrolments_by_course[course.id]
    uids = list(enrolments)
    if options.get("groupid", "0") not in ("", "0"):
        members = set(site.groups.get(int(options["groupid"]), {}).get("members", ()))
        uids = [u for u in uids if u in members]
    stamp = now()

    def active(uid: int) -> bool:
        row = enrolments[uid]
        return (
            not row["status"]
            and row["timestart"] <= stamp
            and (not row["timeend"] or row["timeend"] > stamp)
            and not site.users[uid]["suspended"]
        )

    if options.get("onlyactive", "") not in ("", "0"):
        uids = [u for u in uids if active(u)]
    elif options.get("onlysuspended", "") not in ("", "0"):
        uids = [u for u in uids if not active(u)]
    key = {
        "id": lambda u: (u,),
        "firstname": lambda u: (site.users[u]["firstname"], u),
        "lastname": lambda u: (site.users[u]["lastname"], u),
        "siteorder": lambda u: (site.users[u]["lastname"], site.users[u]["firstname"], u),
    }[sortby]
    uids.sort(key=key, reverse=direction == "DESC")
    start = int(options.get("limitfrom", "0") or 0)
    number = int(options.get("limitnumber", "0") or 0)
    uids = uids[start : start + number] if number else uids[start:]
    users = [shapes.enrolled_user(site, site.users[u], course.id) for u in uids]
    if fields is None:
        return users
    keep = fields | {"id", "fullname"}
    if "description" in fields:
        keep.add("descriptionformat")
    return [{k: v for k, v in u.items() if k in keep} for u in users]


_USER_FIELDS = frozenset(
    "id username fullname firstname lastname email address phone1 phone2 department institution "
    "interests firstaccess lastaccess auth confirmed idnumber lang theme timezone mailformat "
    "description descriptionformat city country profileimageurlsmall profileimageurl customfields "
    "groups roles preferences enrolledcourses suspended lastcourseaccess trackforums".split()
)


def _userfields(value: str | None) -> set[str] | None:
    """The ``userfields`` option: None for all (user/lib.php ``user_get_default_fields``)."""
    if value is None:
        return None
    fields = [clean_param(f, ALPHANUMEXT) for f in value.split(",")]
    for f in fields:
        if f not in _USER_FIELDS:
            raise moodle_exception("invaliduserfield", f"Invalid user field: {f}")
    return set(fields) or None


@function("core_enrol_get_users_courses", userid=Value(INT), returnusercount=default(BOOL, True))
def get_users_courses(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """The user's courses in sort order (23, 70)."""
    uid = params["userid"]
    return [
        shapes.user_course(site, c, uid, params["returnusercount"])
        for c in shapes.enrolled_courses(site, uid)
    ]


# ----------------------------------------------------------------------------- groups


@function(
    "core_group_create_groups",
    groups=Multiple(
        Single(
            {
                "courseid": Value(INT),
                "name": Value(TEXT),
                "description": Value(RAW),
                "descriptionformat": default(INT, 1),
                "enrolmentkey": opt(RAW),
                "idnumber": opt(RAW),
                "visibility": opt(INT),
                "participation": opt(BOOL),
                "customfields": Multiple(
                    Single({"shortname": Value(ALPHANUMEXT), "value": Value(RAW)}), OPTIONAL
                ),
            }
        )
    ),
)
def create_groups(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One group after the other in ONE transaction: a failing group rolls the batch back.

    group/externallib.php opens a delegated transaction around the loop, and the real-Moodle
    tier (Moodle 4.5 on PostgreSQL) shows nothing of a failed batch stays — not what the pairs
    issue reported from another site, so the sandbox follows the code and the tier. Per group,
    in Moodle's order: a blank name and a name taken in the course are ``invalidparameter``
    (25), a missing course ``errorcoursecontextnotvalid``, a bad visibility ``invalidparameter``;
    then ``groups_create_group`` (group/lib.php) trims name and idnumber, refuses a taken
    idnumber (``idnumbertaken``), and the insert fails with ``dmlwriteexception`` for a name
    over 254 characters or an idnumber over 100 (the column sizes of ``{groups}``).
    """
    made: list[int] = []
    try:
        return _create_groups(site, params["groups"], made)
    except MoodleError:
        for gid in made:  # the delegated transaction is rolled back
            site.delete_group(gid)
        raise


def _create_groups(
    site: Site, groups: list[dict[str, Any]], made: list[int]
) -> list[dict[str, Any]]:
    created = []
    for g in groups:
        cid, name = g["courseid"], g["name"]
        if name.strip() == "":
            raise invalid_parameter("Invalid group name")
        if site.group_by_name(cid, name):
            raise invalid_parameter("Group with the same name already exists in the course")
        if cid not in catalog.COURSES:
            raise course_context_error(cid)
        visibility = g.get("visibility", 0)
        if visibility not in (0, 1, 2, 3):
            raise invalid_parameter("Invalid group visibility provided. Must be one of 0,1,2,3")
        name, idnumber = name.strip(), g.get("idnumber", "").strip()
        if idnumber and site.group_by_idnumber(idnumber, cid):
            raise moodle_exception("idnumbertaken", "This ID number is already taken")
        if len(name) > GROUP_NAME_MAX or len(idnumber) > GROUP_IDNUMBER_MAX:
            raise write_error("groups")
        group = site.add_group(
            cid,
            {
                "name": name,
                "description": g["description"],
                "descriptionformat": g["descriptionformat"],
                "enrolmentkey": g.get("enrolmentkey", ""),
                "idnumber": idnumber,
                "visibility": visibility,
                "participation": g.get("participation", True),
            },
        )
        made.append(int(group["id"]))
        created.append(shapes.group(group, created=True))
    return created


# Column sizes of {groups} (lib/db/install.xml): name char(254), idnumber char(100).
GROUP_NAME_MAX = 254
GROUP_IDNUMBER_MAX = 100


def write_error(table: str) -> MoodleError:
    """``dml_write_exception`` as the REST server shows it (a value too long for its column)."""
    return MoodleError(
        WRITE_EXCEPTION,
        "dmlwriteexception",
        "Error writing to database",
        f"ERROR:  value too long for type character varying\nINSERT INTO {{{table}}} ...",
    )


def _groups_sorted(site: Site, gids: list[int]) -> list[dict[str, Any]]:
    return sorted((site.groups[g] for g in gids), key=lambda g: (g["name"], g["id"]))


@function("core_group_get_course_groups", courseid=Value(INT))
def get_course_groups(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """The course's groups by name (27), names through ``format_string`` (HTML-escaped).

    group/externallib.php formats the name with ``\\core_external\\util::format_string``:
    ``Okafor & Lindqvist`` reads back as ``Okafor &amp; Lindqvist`` (measured on a live 4.5).
    """
    cid = params["courseid"]
    if cid not in catalog.COURSES:
        raise course_context_error(cid)
    return [
        {**shapes.group(g), "name": format_string(g["name"])}
        for g in _groups_sorted(site, site.course_group_ids(cid))
    ]


def _get_group(site: Site, gid: int) -> dict[str, Any]:
    group = site.groups.get(gid)
    if group is None:
        raise missing_record("groups", gid)
    return group


@function("core_group_get_groups", groupids=Multiple(Value(INT)))
def get_groups(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Groups by id (MUST_EXIST)."""
    return [
        {**shapes.group(g), "name": format_string(g["name"])}
        for g in (_get_group(site, gid) for gid in params["groupids"])
    ]


@function("core_group_delete_groups", groupids=Multiple(Value(INT)))
def delete_groups(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """Unknown ids are silently ignored (74)."""
    for gid in dict.fromkeys(params["groupids"]):
        if gid in site.groups:
            site.delete_group(gid)


_MEMBER = Single({"groupid": Value(INT), "userid": Value(INT)})


@function("core_group_add_group_members", members=Multiple(_MEMBER))
def add_group_members(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; members must be enrolled in the group's course (26)."""
    for row in params["members"]:
        group = _get_group(site, row["groupid"])
        live_user_record(site, row["userid"])
        if not site.is_enrolled(group["courseid"], row["userid"]):
            raise invalid_parameter("Only enrolled users may be members of groups")
    for row in params["members"]:
        site.add_group_member(row["groupid"], row["userid"])


@function("core_group_delete_group_members", members=Multiple(_MEMBER))
def delete_group_members(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; a non-member is a no-op (73)."""
    for row in params["members"]:
        _get_group(site, row["groupid"])
        live_user_record(site, row["userid"])
    for row in params["members"]:
        site.remove_group_member(row["groupid"], row["userid"])


@function("core_group_get_group_members", groupids=Multiple(Value(INT)))
def get_group_members(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """Members per group, by last name (28)."""
    out = []
    for gid in params["groupids"]:
        group = _get_group(site, gid)
        members = sorted(
            site.live_users(group["members"]),
            key=lambda u: (u["lastname"], u["firstname"], u["id"]),
        )
        out.append({"groupid": gid, "userids": [u["id"] for u in members]})
    return out


@function(
    "core_group_get_course_user_groups",
    courseid=default(INT, 0),
    userid=default(INT, 0),
    groupingid=default(INT, 0),
)
def get_course_user_groups(site: Site, caller: Caller, params: dict[str, Any]) -> dict:
    """The user's groups in one course (or all), with a warning when not enrolled (29)."""
    uid = params["userid"] or caller.userid
    get_user(site, uid)
    warnings = []
    courseids = list(catalog.COURSES)
    if params["courseid"]:
        cid = get_course(params["courseid"]).id
        courseids = [cid]
        if uid != caller.userid and not site.is_enrolled(cid, uid):
            warnings.append(
                {
                    "item": "course",
                    "itemid": cid,
                    "warningcode": "1",
                    "message": f"User {uid} is not enrolled in course {cid}",
                }
            )
    groups = []
    for cid in courseids:
        for g in _groups_sorted(site, site.user_group_ids(uid, cid)):
            groups.append(
                {
                    "id": g["id"],
                    "name": format_string(g["name"]),
                    "description": g["description"],
                    "descriptionformat": g["descriptionformat"],
                    "idnumber": g["idnumber"],
                    "courseid": g["courseid"],
                }
            )
    return {"groups": groups, "warnings": warnings}


# ----------------------------------------------------------------------------- roles

_ASSIGNMENT = Single(
    {
        "roleid": Value(INT),
        "userid": Value(INT),
        "contextid": opt(INT),
        "contextlevel": opt(ALPHA),
        "instanceid": opt(INT),
    }
)
_CONTEXT_IDS = {
    1: ("system", 0),
    **{c.contextid: ("course", c.id) for c in catalog.COURSES.values()},
}
_LEVELS = ("system", "user", "coursecat", "course", "module", "block")


def _context(site: Site, row: dict[str, Any]) -> tuple[str, int]:
    """``get_context_from_params`` then ``validate_context``."""
    if row.get("contextid"):
        ctx = _CONTEXT_IDS.get(row["contextid"])
        if ctx is None:
            raise invalid_parameter("Context does not exist")
        return ctx
    if row.get("contextlevel") and "instanceid" in row:
        level, instance = row["contextlevel"], row["instanceid"]
        if level not in _LEVELS:
            raise invalid_parameter(f"Invalid context level = {level}")
        exists = {
            "system": True,
            "user": instance in site.users,
            "course": instance in catalog.COURSES,
            "coursecat": instance in (1, 2),
            "module": instance in catalog.MODULES,
            "block": False,
        }[level]
        if not exists:
            raise invalid_parameter("Context does not exist")
        return (level, 0 if level == "system" else instance)
    raise invalid_parameter(
        "Missing parameters, please provide either context level with instance id or contextid"
    )


def _check_assignable(site: Site, rows: list[dict[str, Any]]) -> list[tuple[int, int, str, int]]:
    out = []
    for row in rows:
        level, instance = _context(site, row)
        role = catalog.ROLES.get(row["roleid"])
        if (
            row["roleid"] not in catalog.ASSIGNABLE_BY_INTEGRATION
            or role is None
            or level not in role[1]
        ):
            raise invalid_parameter(
                f"Can not assign roleid={row['roleid']} in contextid={row.get('contextid', '')}"
            )
        out.append((row["roleid"], row["userid"], level, instance))
    return out


@function("core_role_assign_roles", assignments=Multiple(_ASSIGNMENT))
def assign_roles(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; the mentor role only in a user context (30, 31)."""
    rows = _check_assignable(site, params["assignments"])
    for _roleid, uid, _level, _instance in rows:
        if uid not in site.users:
            raise coding_error("User ID does not exist or is deleted!")
    for roleid, uid, level, instance in rows:
        site.assign_role(roleid, uid, level, instance)


@function("core_role_unassign_roles", unassignments=Multiple(_ASSIGNMENT))
def unassign_roles(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing; an absent assignment is a no-op (72)."""
    for roleid, uid, level, instance in _check_assignable(site, params["unassignments"]):
        site.unassign_role(roleid, uid, level, instance)


# ----------------------------------------------------------------------------- completion


@function(
    "core_completion_get_activities_completion_status", courseid=Value(INT), userid=Value(INT)
)
def get_activities_completion_status(
    site: Site, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    """Per-activity state of one user: ``overrideby``, ``timecompleted`` (32, 41)."""
    course = get_course(params["courseid"])
    uid = get_user(site, params["userid"])["id"]
    require_course_access(site, caller, course.id)
    require_view_completion(site, caller, course.id, uid)
    statuses = [
        shapes.activity_status(site, m, uid)
        for m in catalog.MODULES.values()
        if m.course == course.id and m.completion
    ]
    return {"statuses": statuses, "warnings": []}


@function("core_completion_get_course_completion_status", courseid=Value(INT), userid=Value(INT))
def get_course_completion_status(
    site: Site, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    """Criteria and course completion; once complete, always complete (42-52)."""
    course = get_course(params["courseid"])
    uid = get_user(site, params["userid"])["id"]
    require_course_access(site, caller, course.id)
    require_view_completion(site, caller, course.id, uid)
    if not site.is_tracked(course.id, uid):
        if uid == caller.userid:
            raise moodle_exception("notenroled", "You are not enrolled in this course")
        raise moodle_exception("usernotenroled", "User is not enrolled in this course")
    site.review_course_completion(uid, course.id)
    return shapes.course_completion(site, course, uid)


def _err_system(debuginfo: str) -> MoodleError:
    return moodle_exception(
        "err_system",
        "An internal error occurred in the completion system. (System administrators can enable "
        "debugging information to see more detail.)",
        debuginfo,
    )


@function(
    "core_completion_override_activity_completion_status",
    userid=Value(INT),
    cmid=Value(INT),
    newstate=Value(INT),
)
def override_activity_completion_status(
    site: Site, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    """Set a user's state (0/1) as the caller; records ``overrideby`` (33, 34, 40, 44, 50)."""
    uid = get_user(site, params["userid"])["id"]
    module = get_module(params["cmid"])
    require_course_access(site, caller, module.course)
    if not can_override(site, caller, module.course):
        raise no_permission("Override activity completion status")
    newstate = params["newstate"]
    if newstate not in (0, 1):
        raise _err_system(f"Unexpected manual completion state for {module.id}: {newstate}")
    row = site.activity(uid, module.id)
    if module.completion and (row["state"] if row else 0) != newstate:
        row = site.set_activity_state(uid, module.id, newstate, overrideby=caller.userid)
    row = row or {}
    return {
        "cmid": module.id,
        "userid": uid,
        "state": row.get("state", 0),
        "timecompleted": row.get("timemodified", 0),
        "overrideby": row.get("overrideby"),
        "tracking": module.completion,
    }


@function(
    "core_completion_update_activity_completion_status_manually",
    cmid=Value(INT),
    completed=Value(BOOL),
)
def update_activity_completion_status_manually(
    site: Site, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    """Ticks the activity for the TOKEN's user (there is no user parameter: 35, 36, 37)."""
    module = get_module(params["cmid"])
    require_course_access(site, caller, module.course)
    if module.completion != 1:
        raise moodle_exception(
            "cannotmanualctrack", "Activity does not provide manual completion tracking"
        )
    state = 1 if params["completed"] else 0
    if site.activity_state(caller.userid, module.id) != state:
        site.set_activity_state(caller.userid, module.id, state)
    return {"status": True, "warnings": []}


@function("mod_page_view_page", pageid=Value(INT))
def view_page(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """Viewing a page completes it when it completes on view (39)."""
    module = next(
        (
            m
            for m in catalog.MODULES.values()
            if m.modname == "page" and m.instance == params["pageid"]
        ),
        None,
    )
    if module is None:
        raise missing_record("page", params["pageid"])
    require_course_access(site, caller, module.course)
    if site.activity_state(caller.userid, module.id) == 0:
        site.view_page(caller.userid, module.id)
    return {"status": True, "warnings": []}


# ----------------------------------------------------------------------------- cohorts

_TYPED = Single({"type": Value(ALPHANUMEXT), "value": Value(RAW)})


@function(
    "core_cohort_create_cohorts",
    cohorts=Multiple(
        Single(
            {
                "categorytype": Single({"type": Value(TEXT), "value": Value(RAW)}),
                "name": Value(RAW),
                "idnumber": Value(RAW),
                "description": opt(RAW),
                "descriptionformat": default(INT, 1),
                "visible": opt(BOOL),
                "theme": opt(ALPHANUMEXT),
                "customfields": Multiple(
                    Single({"shortname": Value(ALPHANUMEXT), "value": Value(RAW)}), OPTIONAL
                ),
            }
        )
    ),
)
def create_cohorts(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All-or-nothing; idnumbers unique (53, 54)."""
    seen: set[str] = set()
    for c in params["cohorts"]:
        ctype = c["categorytype"]["type"]
        if ctype not in ("id", "idnumber", "system"):
            raise invalid_parameter(f"category type must be id, idnumber or system:{ctype}")
        if c["idnumber"] and (c["idnumber"] in seen or site.cohort_by_idnumber(c["idnumber"])):
            raise invalid_parameter("duplicate idnumber")
        seen.add(c["idnumber"])
    created = []
    for c in params["cohorts"]:
        cohort = site.add_cohort(
            {
                "name": c["name"],
                "idnumber": c["idnumber"],
                "description": c.get("description", ""),
                "descriptionformat": c["descriptionformat"],
                "visible": c.get("visible", True),
                "theme": c.get("theme", ""),
            }
        )
        created.append(shapes.cohort(cohort, customfields=False))
    return created


@function(
    "core_cohort_add_cohort_members",
    members=Multiple(Single({"cohorttype": _TYPED, "usertype": _TYPED})),
)
def add_cohort_members(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """Unknown cohorts or users become warnings, not errors (55)."""
    warnings = []
    for row in params["members"]:
        ctype, cvalue = row["cohorttype"]["type"], row["cohorttype"]["value"]
        utype, uvalue = row["usertype"]["type"], row["usertype"]["value"]
        if ctype not in ("id", "idnumber"):
            warnings.append(
                {"warningcode": "1", "message": f"invalid parameter: cohortype={ctype}"}
            )
            continue
        if utype not in ("id", "idnumber", "username"):
            warnings.append({"warningcode": "1", "message": f"invalid parameter: usertype={utype}"})
            continue
        cohort = (
            (site.cohorts.get(int(cvalue)) if cvalue.isdigit() else None)
            if ctype == "id"
            else site.cohort_by_idnumber(cvalue)
        )
        if cohort is None:
            warnings.append({"warningcode": "2", "message": f"cohort {ctype}={cvalue} not exists"})
            continue
        if utype == "id":
            uid = int(uvalue) if uvalue.isdigit() and int(uvalue) in site.users else None
        elif utype == "idnumber":
            ids = site.user_ids_by_idnumber(uvalue)
            uid = ids[0] if ids else None
        else:
            uid = site.user_id_by_username(uvalue)
        if uid is None:
            warnings.append({"warningcode": "2", "message": f"user {utype}={uvalue} not exists"})
            continue
        if uid in cohort["members"]:
            warnings.append(
                {
                    "warningcode": "3",
                    "message": f"record already exists: cohort({ctype}={cvalue} {utype}={uvalue})",
                }
            )
            continue
        cohort["members"].append(uid)
    return {"warnings": warnings}


@function(
    "core_cohort_search_cohorts",
    query=Value(RAW),
    context=Single(
        {
            "contextid": opt(INT),
            "contextlevel": opt(ALPHA),
            "instanceid": opt(INT),
        }
    ),
    includes=default(ALPHA, "parents"),
    limitfrom=default(INT, 0),
    limitnum=default(INT, 25),
)
def search_cohorts(site: Site, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """Cohorts whose name, idnumber or description contains the query, ignoring case (56)."""
    if params["includes"] not in ("all", "parents", "self"):
        raise invalid_parameter("Invalid parameter includes")
    query = params["query"].lower()
    found = [
        c
        for c in site.cohorts.values()
        if query in c["name"].lower()
        or query in c["idnumber"].lower()
        or query in c["description"].lower()
    ]
    start, number = params["limitfrom"], params["limitnum"]
    found = found[start : start + number] if number else found[start:]
    return {"cohorts": [shapes.cohort(c, customfields=True) for c in found]}


def _get_cohort(site: Site, cid: int) -> dict[str, Any]:
    cohort = site.cohorts.get(cid)
    if cohort is None:
        raise missing_record("cohort", cid)
    return cohort


@function("core_cohort_get_cohort_members", cohortids=Multiple(Value(INT)))
def get_cohort_members(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict]:
    """Members per cohort (57)."""
    return [
        {"cohortid": cid, "userids": list(_get_cohort(site, cid)["members"])}
        for cid in params["cohortids"]
    ]


@function("core_cohort_get_cohorts", cohortids=Multiple(Value(INT), DEFAULT, []))
def get_cohorts(site: Site, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Cohorts by id, or all."""
    ids = params["cohortids"] or list(site.cohorts)
    return [shapes.cohort(_get_cohort(site, cid), customfields=True) for cid in ids]


@function("core_cohort_delete_cohorts", cohortids=Multiple(Value(INT)))
def delete_cohorts(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing (76)."""
    for cid in params["cohortids"]:
        _get_cohort(site, cid)
    for cid in dict.fromkeys(params["cohortids"]):
        del site.cohorts[cid]


@function(
    "core_cohort_delete_cohort_members",
    members=Multiple(Single({"cohortid": Value(INT), "userid": Value(INT)})),
)
def delete_cohort_members(site: Site, caller: Caller, params: dict[str, Any]) -> None:
    """All-or-nothing."""
    for row in params["members"]:
        _get_cohort(site, row["cohortid"])
        live_user_record(site, row["userid"])
    for row in params["members"]:
        members = site.cohorts[row["cohortid"]]["members"]
        if row["userid"] in members:
            members.remove(row["userid"])


# ----------------------------------------------------------------------------- dispatch

KNOWN_FUNCTIONS = (
    frozenset(FUNCTIONS) | catalog.OTHER_KNOWN_FUNCTIONS | frozenset(catalog.PLUGIN_FUNCTIONS)
)


def access_error() -> MoodleError:
    """``webservice_access_exception``: the function is not in the token's service (60, 62)."""
    return MoodleError(
        ACCESS_EXCEPTION,
        "accessexception",
        "Access control exception",
        "Access to the function is not allowed.",
    )


# The plugin's functions register themselves into FUNCTIONS (they need this module's helpers).
from sandbox.moodle import plugin as _plugin  # noqa: E402, F401
