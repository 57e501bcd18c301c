"""The pairs policy: which roles, what a completed or cancelled match keeps, group names.

:class:`PairsSettings` is what the planner reads. Role ids are resolved from shortnames by the
engine once per run; the rest comes from the ``[pairs]`` configuration section
(:func:`pairs_settings_from_mapping` builds and checks it, naming the key of any mistake).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.errors import ConfigError

DEFAULT_GROUP_NAME = "{mentor_last} & {mentee_last} ({program})"
# The fields a group name template may use.
TEMPLATE_FIELDS = frozenset({"mentor_last", "mentee_last", "program", "match_name"})
CANCELLED_GROUP = ("delete", "keep")
# Moodle's groups.name column length.
GROUP_NAME_MAX = 254


@dataclass(frozen=True)
class PairsSettings:
    """Policy and resolved ids for one pairs run."""

    # Moodle role ids (resolved from shortnames once per run).
    student_role_id: int = 5
    teacher_role_id: int = 4
    mentor_role_id: int = 9
    # A Completed match keeps the mentor's user-context role / both people's enrolments.
    completed_keeps_role: bool = False
    completed_keeps_enrolments: bool = True
    # What a Cancelled match does with its group once both people left it.
    cancelled_group: str = "delete"
    # Enrolment start/end from the match's Start_Date__c / End_Date__c (end date inclusive).
    use_enrolment_dates: bool = False
    # The association's time zone: the dates are days there.
    timezone: str = "UTC"
    group_name_template: str = DEFAULT_GROUP_NAME
    # Course and role shortnames, for plan lines only.
    orientation_label: str = "GMP-ORIENT"
    programme_label: str = "GMP-2026"
    student_label: str = "student"
    teacher_label: str = "teacher"
    mentor_label: str = "mentor role"
    # A pairs field map file (TOML); empty means the built-in default.
    field_map: str = ""

    def role_label(self, role_id: int) -> str:
        """The plan-line name of a role id."""
        labels = {
            self.student_role_id: self.student_label,
            self.teacher_role_id: self.teacher_label,
            self.mentor_role_id: self.mentor_label,
        }
        return labels.get(role_id, f"role {role_id}")


def validate_pairs(settings: PairsSettings) -> None:
    """Check ``settings``; raise :class:`ConfigError` naming the first wrong key."""
    for key in ("student_role_id", "teacher_role_id", "mentor_role_id"):
        value = getattr(settings, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"pairs.{key}", f"must be a role id (an integer >= 1), got {value!r}")
    roles = (settings.student_role_id, settings.teacher_role_id, settings.mentor_role_id)
    if len(set(roles)) != len(roles):
        raise ConfigError("pairs.mentor_role_id", "student, teacher and mentor roles must differ")
    for key in ("completed_keeps_role", "completed_keeps_enrolments", "use_enrolment_dates"):
        if not isinstance(getattr(settings, key), bool):
            raise ConfigError(f"pairs.{key}", "must be true or false")
    if settings.cancelled_group not in CANCELLED_GROUP:
        raise ConfigError(
            "pairs.cancelled_group",
            f"must be one of {', '.join(CANCELLED_GROUP)}, got {settings.cancelled_group!r}",
        )
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("pairs.timezone", f"unknown time zone {settings.timezone!r}") from None
    _check_template(settings.group_name_template)


def _check_template(template: object) -> None:
    """Check the group name template: known fields only, no format specs."""
    key = "pairs.group_name_template"
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(key, "must be a non-empty string")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(key, f"not a valid template ({exc})") from None
    used = set()
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if spec or conv:
            raise ConfigError(key, "format specs and conversions are not supported")
        if name not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            raise ConfigError(key, f"unknown field {{{name}}} (known: {known})")
        used.add(name)
    if not used:
        raise ConfigError(key, "must use at least one field, like {mentee_last}")


def pairs_settings_from_mapping(
    raw: Mapping[str, Any], base: PairsSettings | None = None
) -> PairsSettings:
    """Build :class:`PairsSettings` from a ``[pairs]`` configuration table and check it.

    Unknown keys are refused by name; omitted keys keep ``base`` (or the defaults).
    """
    known = {f.name: f for f in fields(PairsSettings)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"pairs.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    for key, value in raw.items():
        default = getattr(base or PairsSettings(), key)
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, type(default)
        ):
            raise ConfigError(
                f"pairs.{key}", f"must be {type(default).__name__}, got {type(value).__name__}"
            )
    settings = replace(base or PairsSettings(), **dict(raw))
    validate_pairs(settings)
    return settings
