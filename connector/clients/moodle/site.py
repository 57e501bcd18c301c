"""What a Moodle site must offer mentorsync: the functions its token may call, the plugin, and
room enough in PHP's ``max_input_vars`` for the batches the client sends.

``doctor`` and the worker at start use these; the client itself needs only the plugin's
function name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.clients.moodle.params import PROTOCOL_FIELDS
from connector.errors import ConfigError

if TYPE_CHECKING:  # the client imports this module
    from connector.clients.moodle.client import MoodleClient

log = logging.getLogger(__name__)

REQUIRED_FUNCTIONS: tuple[str, ...] = (
    "core_webservice_get_site_info",
    "core_user_get_users_by_field",
    "core_user_create_users",
    "core_user_update_users",
    "core_course_get_courses_by_field",
    "core_course_get_contents",
    "core_course_get_course_module",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_enrol_get_enrolled_users",
    "core_group_get_course_groups",
    "core_group_create_groups",
    "core_group_delete_groups",
    "core_group_add_group_members",
    "core_group_delete_group_members",
    "core_group_get_group_members",
    "core_role_assign_roles",
    "core_role_unassign_roles",
    "core_completion_get_activities_completion_status",
    "core_completion_override_activity_completion_status",
    "core_completion_get_course_completion_status",
)

# The mentorsync Moodle plugin's read-only bulk completion function (deploy/moodle/).
PLUGIN_COMPLETIONS = "local_mentorsync_get_completions"


def has_plugin(site_info: Mapping[str, Any]) -> bool:
    """Whether the token may call the plugin's bulk completion read (site info lists it)."""
    functions = site_info.get("functions") or []
    return any(isinstance(f, Mapping) and f.get("name") == PLUGIN_COMPLETIONS for f in functions)


def missing_functions(site_info: Mapping[str, Any]) -> list[str]:
    """The REQUIRED_FUNCTIONS absent from ``site_info["functions"]`` (what the token may call)."""
    present = {f.get("name") for f in site_info.get("functions") or [] if isinstance(f, Mapping)}
    return [name for name in REQUIRED_FUNCTIONS if name not in present]


@dataclass(frozen=True)
class InputVarsLimit:
    """How many form fields of one call reach Moodle: ``value`` exactly, or at least ``value``.

    PHP 8 keeps one body field past its ``max_input_vars`` (``add_post_vars`` in
    main/php_variables.c stores a field, then counts it): at 1000, 1001 fields arrive.
    """

    value: int
    at_least: bool


def measure_max_input_vars(client: MoodleClient, ceiling: int, userid: int) -> InputVarsLimit:
    """PHP's max_input_vars on the site, measured up to ``ceiling`` (one call when it holds).

    When ``ceiling`` fields arrive the answer is ``at_least`` ceiling; otherwise a binary
    search (about log2(ceiling) calls) finds the exact limit.
    """
    if client.fields_arrive(ceiling, userid):
        return InputVarsLimit(ceiling, at_least=True)
    low, high = PROTOCOL_FIELDS + 1, ceiling  # low: nothing to lose; high: known to fail
    while high - low > 1:
        middle = (low + high) // 2
        if client.fields_arrive(middle, userid):
            low = middle
        else:
            high = middle
    log.info("moodle max_input_vars measured: %d", low)
    return InputVarsLimit(low, at_least=False)


def check_max_input_vars(client: MoodleClient, userid: int | None = None) -> InputVarsLimit:
    """Measure the site's max_input_vars; refuse a configured ``moodle.max_input_vars`` above it.

    For ``doctor`` and the worker at start. ``userid`` is the integration user's id (from site
    info when not given). Raises :class:`ConfigError` naming the key and what PHP has.
    """
    if userid is None:
        userid = int(client.site_info()["userid"])
    configured = client.settings.max_input_vars
    limit = measure_max_input_vars(client, configured, userid)
    if not limit.at_least:
        raise ConfigError(
            "moodle.max_input_vars",
            f"{configured} is above the Moodle server's limit: PHP keeps {limit.value} form "
            f"fields of a call and drops the rest silently (max_input_vars = {limit.value - 1} "
            f"in its php.ini, as PHP keeps one past it): set moodle.max_input_vars to "
            f"{limit.value - 1}, or raise max_input_vars on the Moodle server",
        )
    return limit
