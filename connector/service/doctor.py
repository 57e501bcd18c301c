"""``mentorsync doctor``: check a configuration against the real systems.

Each check says what it found and, when something is wrong, what to fix. The report is made of
:class:`Check` rows; the run is healthy only when no row has ``status == "fail"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connector.config import Settings
from connector.engine.checks import Check, Seen
from connector.errors import (
    ConfigError,
    MentorsyncError,
    MoodleConfigurationError,
    MoodleError,
    SalesforceAuthError,
    SalesforceBudgetError,
    SalesforceError,
)

# Objects and fields mentorsync reads or writes, by default names (DESIGN.md's data model).
DEFAULT_SALESFORCE_FIELDS: dict[str, tuple[str, ...]] = {
    "Contact": (
        "Id", "FirstName", "LastName", "Email", "Member_Status__c", "Mentorship_Role__c",
        "Practice_Setting__c", "Region__c", "SystemModstamp", "IsDeleted", "MasterRecordId",
        "LMS_User_Id__c", "LMS_Sync_Status__c", "LMS_Sync_Error__c", "LMS_Synced_At__c",
    ),
    "Mentorship_Match__c": (
        "Id", "Name", "Mentor__c", "Mentee__c", "Status__c", "Program__c", "Start_Date__c",
        "End_Date__c", "SystemModstamp", "LMS_Group_Id__c", "LMS_Sync_Status__c",
        "LMS_Sync_Error__c", "Mentor_Orientation_Completed__c",
        "Mentee_Orientation_Completed__c", "Meetings_Completed__c", "Meeting_Hours__c",
        "Last_Meeting_Date__c", "Health__c",
    ),
    "Mentoring_Meeting__c": (
        "External_Id__c", "Match__c", "Meeting_Number__c", "Activity_Idnumber__c",
        "Completed_On__c", "Hours__c", "Source__c",
    ),
}


def required_salesforce_fields(settings: Settings) -> dict[str, set[str]]:
    """Objects and fields the configuration needs: the defaults plus the member field map."""
    needed = {obj: set(fields) for obj, fields in DEFAULT_SALESFORCE_FIELDS.items()}
    try:
        from mappings import fieldmap
    except ImportError:  # the mapping package is optional for the doctor's own checks
        return needed
    loader: Callable[[Settings], Any] | None = getattr(fieldmap, "salesforce_fields", None)
    if loader is not None:
        for obj, fields in loader(settings).items():
            needed.setdefault(obj, set()).update(fields)
    return needed


def config_check(system: str, exc: ConfigError) -> Check:
    """A failed check for a configuration mistake: names the key, says where to set it."""
    env = "MENTORSYNC_" + exc.key.replace(".", "_").upper()
    return Check(
        system, "configuration", "fail", str(exc),
        f"set {exc.key} in the config file (or {env}, or {env}_FILE for a secret)",
    )


def check_moodle(settings: Settings, moodle: Any) -> list[Check]:
    """Moodle: reachable, site and version, functions in the service, courses and activities."""
    from connector.clients.moodle.site import missing_functions

    checks: list[Check] = []
    try:
        info = moodle.site_info()
    except MoodleConfigurationError as exc:
        fix = exc.hint or "check moodle.token and that web services and REST are enabled"
        detail = f"Moodle refused the token ({exc.errorcode})"
        return [Check("moodle", "login", "fail", detail, fix)]
    except ConfigError as exc:
        return [config_check("moodle", exc)]
    except MentorsyncError as exc:
        return [
            Check(
                "moodle", "reachable", "fail", f"cannot use {settings.moodle.url}: {exc}",
                "check moodle.url (it must be the site's wwwroot) and the network",
            )
        ]
    checks.append(
        Check(
            "moodle", "site", "ok",
            f"{info.get('sitename', '?')}, release {info.get('release', '?')}, "
            f"as user id {info.get('userid', '?')}",
        )
    )
    checks.append(_check_max_input_vars(moodle, info))
    missing = missing_functions(info)
    if missing:
        checks.extend(
            Check(
                "moodle", f"function {name}", "fail", "not in the token's external service",
                f"Site administration > Server > Web services > External services: add {name}",
            )
            for name in missing
        )
    else:
        checks.append(Check("moodle", "functions", "ok", "every needed web-service function"))

    prog = settings.programme
    seen_courses: dict[str, dict[str, Any]] = {}
    for label, shortname in (
        ("orientation course", prog.orientation_course),
        ("programme course", prog.programme_course),
    ):
        try:
            courses = moodle.get_courses_by_field("shortname", shortname)
        except MoodleError as exc:
            checks.append(Check("moodle", label, "fail", f"lookup failed ({exc.errorcode})"))
            continue
        if not courses:
            checks.append(
                Check(
                    "moodle", label, "fail", f"no course with shortname {shortname}",
                    f"create it, or set programme.{_key_for(label)} to its shortname",
                )
            )
            continue
        course = courses[0]
        checks.append(Check("moodle", label, "ok", f"{shortname} (id {course['id']})"))
        seen_courses[shortname] = course
    checks.append(
        Check(
            "moodle", "roles and profile fields", "note",
            f"roles {prog.student_role_id}/{prog.mentor_course_role_id}/"
            f"{prog.mentor_user_role_id} and profile fields {', '.join(prog.profile_fields)} "
            "cannot be listed through web services; the first sync reports them if wrong",
        )
    )
    checks.extend(kind_checks(settings, moodle, Seen(info, seen_courses)))
    return checks


def kind_checks(settings: Settings, moodle: Any, seen: Seen) -> list[Check]:
    """What each sync kind declares it needs of Moodle (its ``doctor_checks``)."""
    from connector.registry import kinds

    checks: list[Check] = []
    for kind in kinds().values():
        declared = getattr(kind, "doctor_checks", None)
        if declared is not None:
            checks.extend(declared(settings, moodle, seen))
    return checks


def _check_max_input_vars(moodle: Any, info: dict[str, Any]) -> Check:
    """PHP's real max_input_vars against moodle.max_input_vars: PHP drops fields past it silently.

    A probe (``check_max_input_vars``): one lookup of the integration user when the setting
    holds, a binary search for the real limit when it does not.
    """
    from connector.clients.moodle.site import check_max_input_vars

    try:
        limit = check_max_input_vars(moodle, int(info["userid"]))
    except ConfigError as exc:
        return Check(
            "moodle", "max_input_vars", "fail", exc.problem,
            "set moodle.max_input_vars to what PHP has, or raise max_input_vars in the Moodle "
            "server's php.ini",
        )
    except (MoodleError, KeyError, TypeError, ValueError) as exc:
        code = getattr(exc, "errorcode", type(exc).__name__)
        return Check("moodle", "max_input_vars", "fail", f"the probe failed ({code})")
    return Check(
        "moodle", "max_input_vars", "ok",
        f"a call of {limit.value} form fields arrives whole (moodle.max_input_vars)",
    )


def _key_for(label: str) -> str:
    return "orientation_course" if label.startswith("orientation") else "programme_course"


def check_salesforce(settings: Settings, salesforce: Any) -> list[Check]:
    """Salesforce: login, API budget, and every object and field the configuration names."""
    checks: list[Check] = []
    try:
        salesforce.login()
    except SalesforceAuthError as exc:
        return [
            Check(
                "salesforce", "login", "fail", f"login refused ({exc.error_code})",
                f"check salesforce.auth ({settings.salesforce.auth}), its credentials and "
                "salesforce.domain",
            )
        ]
    except ConfigError as exc:  # a setting the grant needs: not a network problem
        return [config_check("salesforce", exc)]
    except MentorsyncError as exc:
        return [
            Check(
                "salesforce", "login", "fail", f"cannot log in: {exc}",
                "check salesforce.domain, salesforce.ca_bundle and the network",
            )
        ]
    checks.append(Check("salesforce", "login", "ok", f"auth {settings.salesforce.auth}"))
    try:
        budget = salesforce.check_budget()
        checks.append(
            Check(
                "salesforce", "API budget", "ok",
                f"{budget.used} of {budget.limit} daily requests used",
            )
        )
    except SalesforceBudgetError as exc:
        checks.append(
            Check(
                "salesforce", "API budget", "fail", str(exc),
                "wait for the daily budget to reset, or raise salesforce.max_budget_share",
            )
        )
    except SalesforceError as exc:
        checks.append(
            Check(
                "salesforce", "API budget", "fail", f"cannot read the limits ({exc.error_code})",
                "give the integration user the API Enabled and View Setup permissions",
            )
        )
    for obj, fields in sorted(required_salesforce_fields(settings).items()):
        checks.extend(_check_object(salesforce, obj, fields))
    return checks


def _check_object(salesforce: Any, obj: str, fields: Iterable[str]) -> list[Check]:
    try:
        described = salesforce.describe(obj)
    except SalesforceError as exc:
        return [
            Check(
                "salesforce", f"object {obj}", "fail", f"describe failed ({exc.error_code})",
                "create the object, give the integration user access, or rename it in the "
                "field map",
            )
        ]
    present = {f["name"] for f in described.get("fields", [])}
    missing = sorted(set(fields) - present)
    if not missing:
        return [Check("salesforce", f"object {obj}", "ok", f"{len(present)} fields visible")]
    return [
        Check(
            "salesforce", f"field {obj}.{name}", "fail", "missing or not visible",
            "create it, grant field-level security to the integration user, or rename it "
            "in the field map",
        )
        for name in missing
    ]


# The SFDX metadata an admin deploys (deploy/salesforce), present in a checkout or an editable
# install; a wheel does not carry it.
SALESFORCE_METADATA = (
    Path(__file__).resolve().parents[2] / "deploy" / "salesforce" / "force-app" / "main" / "default"
)


def check_metadata(settings: Settings, root: Path = SALESFORCE_METADATA) -> list[Check]:
    """Custom fields the configuration names that ``deploy/salesforce`` does not define.

    A note, not a failure: an org may have its own fields under those names, but deploying the
    metadata will not create them. Standard fields (no ``__c``) are never in the metadata.
    """
    objects = root / "objects"
    if not objects.is_dir():
        return [Check("salesforce", "metadata", "note", f"not found at {root}; not compared")]
    defined = {
        f"{folder.name}.{path.name.removesuffix('.field-meta.xml')}".lower()
        for folder in objects.iterdir()
        for path in (folder / "fields").glob("*.field-meta.xml")
    }
    checks = [
        Check(
            "salesforce", f"metadata {obj}.{name}", "note",
            "named by the configuration but not defined in deploy/salesforce",
            f"add objects/{obj}/fields/{name}.field-meta.xml and its permission to "
            "deploy/salesforce, or create the field in the org yourself",
        )
        for obj, fields in sorted(required_salesforce_fields(settings).items())
        for name in sorted(fields)
        if name.endswith("__c") and f"{obj}.{name}".lower() not in defined
    ]
    return checks or [
        Check("salesforce", "metadata", "ok", "deploy/salesforce defines every custom field named")
    ]


def run_doctor(settings: Settings, moodle: Any, salesforce: Any) -> list[Check]:
    """Every check, Moodle first."""
    return (
        check_moodle(settings, moodle)
        + check_salesforce(settings, salesforce)
        + check_metadata(settings)
    )


def healthy(checks: Iterable[Check]) -> bool:
    """True when no check failed."""
    return all(check.status != "fail" for check in checks)
