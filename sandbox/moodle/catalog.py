"""The fixed part of the sandbox site: courses, activities, roles, profile fields, services.

Values are the real Moodle 4.5 lab site's, as the recordings in
``tests/fixtures/moodle-4.5/`` show them (ids, names, context ids, completion settings).
"""

from __future__ import annotations

from dataclasses import dataclass

SITE_NAME = "Pharmacy Association LMS (lab)"
RELEASE = "4.5dev+ (Build: 20240903)"
VERSION = "2024090300"
THEME_REV = "1795783642"
COURSE_TIME = 1795783497

ADMIN_ID = 2
GUEST_ID = 1
INTEGRATION_ID = 3
FIRST_USER_ID = 4

# Role id -> (shortname, context levels where it may be assigned).
ROLES: dict[int, tuple[str, frozenset[str]]] = {
    1: ("manager", frozenset({"system", "coursecat", "course"})),
    2: ("coursecreator", frozenset({"system", "coursecat"})),
    3: ("editingteacher", frozenset({"course", "module"})),
    4: ("teacher", frozenset({"course", "module"})),
    5: ("student", frozenset({"course", "module"})),
    6: ("guest", frozenset()),
    7: ("user", frozenset()),
    8: ("frontpage", frozenset()),
    9: ("mentor", frozenset({"user"})),
}
# What the integration user's system role may assign (role_allow_assign).
ASSIGNABLE_BY_INTEGRATION = frozenset({3, 4, 5, 9})
# Roles whose holders appear in completion reports ("tracked users").
TRACKED_ROLES = frozenset({5})
# Roles holding moodle/course:overridecompletion in a course.
OVERRIDE_ROLES = frozenset({3, 4})

# Custom profile fields, in sortorder: shortname -> display name.
PROFILE_FIELDS: dict[str, str] = {
    "crmid": "CRM ID (Salesforce Contact Id)",
    "memberstatus": "Membership status",
    "practicesetting": "Practice setting",
    "region": "Region",
}

CATEGORY = {"id": 2, "name": "Guided Mentorship Program"}


@dataclass(frozen=True)
class Course:
    """A course of the fixed catalogue."""

    id: int
    shortname: str
    fullname: str
    idnumber: str
    summary: str
    sortorder: int
    startdate: int
    enddate: int
    groupmode: int
    contextid: int
    imagecontextid: int


@dataclass(frozen=True)
class Section:
    """A course section."""

    id: int
    course: int
    section: int
    name: str


@dataclass(frozen=True)
class Module:
    """A course module (activity). ``completion``: 0 none, 1 manual, 2 automatic (on view)."""

    id: int
    course: int
    section: int  # Section.id
    modname: str
    instance: int
    name: str
    idnumber: str
    contextid: int
    completion: int


COURSES: dict[int, Course] = {
    2: Course(
        2,
        "GMP-ORIENT",
        "Guided Mentorship Program - Orientation",
        "GMP-ORIENT",
        "<p>Orientation for mentors and mentees of the Guided Mentorship Program.</p>",
        20002,
        1785542400,
        0,
        0,
        13,
        13,
    ),
    3: Course(
        3,
        "GMP-2026",
        "Guided Mentorship Program 2026-27",
        "GMP-2026",
        "<p>Monthly one-on-one meetings of matched mentor/mentee pairs (October 2026 - March "
        "2027). Each pair has its own group.</p>",
        20001,
        1788220800,
        1814313600,
        1,
        15,
        15,
    ),
}

SECTIONS: dict[int, Section] = {
    1: Section(1, 2, 0, "General"),
    2: Section(2, 2, 1, "Orientation"),
    3: Section(3, 3, 0, "General"),
    4: Section(4, 3, 1, "Monthly one-on-one meetings"),
}

_MONTHS = ("October", "November", "December", "January", "February", "March")

MODULES: dict[int, Module] = {
    1: Module(1, 2, 1, "forum", 1, "Announcements", "", 24, 0),
    2: Module(2, 2, 2, "page", 1, "Orientation training", "GMP-ORIENT-TRAINING", 14, 2),
    3: Module(3, 3, 3, "forum", 2, "Announcements", "", 25, 0),
    **{
        4 + i: Module(
            4 + i,
            3,
            4,
            "page",
            2 + i,
            f"Meeting {i + 1} ({month})",
            f"GMP-2026-M{i + 1}",
            16 + i,
            1,
        )
        for i, month in enumerate(_MONTHS)
    },
}

# Course completion criteria: every listed activity complete (aggregation 1 = all).
COMPLETION_CRITERIA: dict[int, tuple[int, ...]] = {2: (2,), 3: (4, 5, 6, 7, 8, 9)}

INTEGRATION_SERVICE = "mentorsync"
SELF_SERVICE = "selfservice"

# Functions of the local_mentorsync plugin (deploy/moodle/local_mentorsync/db/services.php).
PLUGIN_FUNCTIONS: tuple[str, ...] = ("local_mentorsync_get_completions",)

# The "Mentorship sync" service, in the order the real site lists it.
SERVICE_FUNCTIONS: dict[str, tuple[str, ...]] = {
    INTEGRATION_SERVICE: (
        "core_webservice_get_site_info",
        "core_user_create_users",
        "core_user_update_users",
        "core_user_get_users_by_field",
        "core_user_get_users",
        "core_course_get_courses_by_field",
        "core_course_get_courses",
        "enrol_manual_enrol_users",
        "enrol_manual_unenrol_users",
        "core_enrol_get_enrolled_users",
        "core_group_create_groups",
        "core_group_get_course_groups",
        "core_group_add_group_members",
        "core_group_delete_group_members",
        "core_group_get_group_members",
        "core_role_assign_roles",
        "core_role_unassign_roles",
        "core_completion_get_activities_completion_status",
        "core_completion_get_course_completion_status",
        "core_completion_update_activity_completion_status_manually",
        "core_completion_override_activity_completion_status",
        "core_course_get_contents",
        "core_cohort_create_cohorts",
        "core_cohort_add_cohort_members",
        "core_cohort_search_cohorts",
        "core_cohort_get_cohort_members",
        "core_user_get_course_user_profiles",
        "core_user_delete_users",
        "core_enrol_get_users_courses",
        "core_group_get_groups",
        "core_group_delete_groups",
        "core_group_get_course_user_groups",
        "core_cohort_get_cohorts",
        "core_cohort_delete_cohort_members",
        "core_cohort_delete_cohorts",
        "core_course_get_course_module",
        "core_course_get_categories",
        # The mentorsync plugin's function: listed (and callable) only while the site has the
        # plugin installed (``Site.plugin_installed``); otherwise Moodle knows no such function.
        *PLUGIN_FUNCTIONS,
    ),
    # What a participant's own token may call (the lab's self-service service).
    SELF_SERVICE: (
        "core_webservice_get_site_info",
        "core_course_get_contents",
        "core_enrol_get_users_courses",
        "core_completion_get_activities_completion_status",
        "core_completion_get_course_completion_status",
        "core_completion_update_activity_completion_status_manually",
        "core_completion_override_activity_completion_status",
        "mod_page_view_page",
    ),
}

FUNCTION_VERSIONS = {
    "enrol_manual_enrol_users": "2024042200",
    "enrol_manual_unenrol_users": "2024042200",
}

# Real Moodle functions outside both services (answer accessexception, not invalidrecord).
OTHER_KNOWN_FUNCTIONS = frozenset(
    {
        "core_course_create_courses",
        "core_course_update_courses",
        "core_course_delete_courses",
        "core_course_duplicate_course",
        "core_course_create_categories",
        "core_cohort_update_cohorts",
        "core_group_update_groups",
        "core_group_create_groupings",
        "core_user_update_picture",
        "core_user_get_users_by_id",
        "core_course_get_course_module_by_instance",
        "core_enrol_get_enrolled_users_with_capability",
        "core_completion_mark_course_self_completed",
        "core_message_send_instant_messages",
        "core_files_upload",
        "core_webservice_get_site_info_by_token",
        "enrol_self_enrol_user",
        "mod_page_get_pages_by_courses",
        "tool_mobile_get_config",
    }
)
