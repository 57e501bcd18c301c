"""The rules settings must follow beyond their types: bounds, formats, files, choices.

:func:`validate` runs when settings are loaded (:func:`connector.config.load_settings`); the
first value that breaks a rule raises :class:`ConfigError` naming its key and what is wrong.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from connector.errors import ConfigError

if TYPE_CHECKING:  # connector.config imports this module
    from connector.config import (
        MembersSettings,
        MoodleSettings,
        PairsConfig,
        ProgrammeSettings,
        SalesforceSettings,
        ServiceSettings,
        Settings,
    )


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in {"http", "https"} and bool(parsed.netloc)


# Numeric settings and their smallest allowed value; ">" marks a strict lower bound.
_MINIMUMS: tuple[tuple[str, float, str], ...] = (
    ("moodle.connect_timeout", 0, ">"),
    ("moodle.read_timeout", 0, ">"),
    ("moodle.retry_max_seconds", 0, ">"),
    ("moodle.retry_attempts", 1, ">="),
    ("salesforce.connect_timeout", 0, ">"),
    ("salesforce.read_timeout", 0, ">"),
    ("salesforce.retry_max_seconds", 0, ">"),
    ("salesforce.retry_attempts", 1, ">="),
    ("programme.student_role_id", 1, ">="),
    ("programme.mentor_course_role_id", 1, ">="),
    ("programme.mentor_user_role_id", 1, ">="),
    ("programme.meeting_hours", 0, ">"),
    ("programme.min_hours", 0, ">="),
    ("programme.completion_reads_per_run", 0, ">="),
    ("programme.completion_concurrency", 1, ">="),
    ("programme.mass_change_share", 0, ">="),
    ("programme.mass_change_count", 0, ">="),
    ("members.mass_change_count", 0, ">="),
    ("members.lookback_seconds", 0, ">="),
    ("service.coalesce_seconds", 0, ">="),
    ("service.inbox_lease_seconds", 1, ">="),
    ("service.lock_ttl_seconds", 1, ">="),
    ("service.retry_max_attempts", 1, ">="),
    ("service.retry_base_seconds", 1, ">="),
    ("service.incremental_minutes", 1, ">="),
    ("service.stalled_feed_minutes", 0, ">="),
)
# Text settings that must not be empty.
_REQUIRED_TEXT = (
    "programme.orientation_course",
    "programme.programme_course",
    "programme.programme_code",
    "members.auth",
    "service.data_dir",
)


def _check_minimums(settings: Settings) -> None:
    for key, minimum, op in _MINIMUMS:
        section, name = key.split(".")
        value = getattr(getattr(settings, section), name)
        if op == ">" and not value > minimum:
            raise ConfigError(key, f"must be greater than {minimum}")
        if op == ">=" and not value >= minimum:
            raise ConfigError(key, f"must be at least {minimum}")
    for key in _REQUIRED_TEXT:
        section, name = key.split(".")
        if not str(getattr(getattr(settings, section), name)).strip():
            raise ConfigError(key, "must not be empty")


def validate(settings: Settings) -> None:
    """Check values that types alone do not catch. Raises :class:`ConfigError`."""
    _check_minimums(settings)
    _check_moodle(settings.moodle)
    _check_salesforce(settings.salesforce)
    _check_programme(settings.programme)
    _check_members(settings.members)
    _check_pairs(settings.pairs)
    _check_service(settings.service)


def _check_moodle(m: MoodleSettings) -> None:
    if not _is_http_url(m.url):
        raise ConfigError("moodle.url", "not an http(s) URL")
    if m.max_input_vars < 100:
        raise ConfigError("moodle.max_input_vars", "must be at least 100 (PHP's default is 1000)")
    if not 0 <= m.field_margin < m.max_input_vars // 2:
        raise ConfigError("moodle.field_margin", "must be between 0 and half of max_input_vars")
    if m.max_batch_items < 1:
        raise ConfigError("moodle.max_batch_items", "must be at least 1")
    if m.ca_bundle and not Path(m.ca_bundle).is_file():
        raise ConfigError("moodle.ca_bundle", f"file not found: {m.ca_bundle}")


def _check_salesforce(s: SalesforceSettings) -> None:
    if s.auth not in {"password", "jwt", "client_credentials", "session"}:
        raise ConfigError(
            "salesforce.auth", "must be one of password, jwt, client_credentials, session"
        )
    if not s.domain or "/" in s.domain or " " in s.domain:
        raise ConfigError("salesforce.domain", "must be login, test or a My Domain host name")
    try:
        if float(s.api_version) < 42.0:
            raise ConfigError("salesforce.api_version", "must be 42.0 or later (Collections)")
    except ValueError:
        raise ConfigError("salesforce.api_version", "must look like 59.0") from None
    if not 0 < s.max_budget_share <= 1:
        raise ConfigError("salesforce.max_budget_share", "must be above 0 and at most 1")
    if s.instance_url and not _is_http_url(s.instance_url):
        raise ConfigError("salesforce.instance_url", "not an http(s) URL")
    if s.ca_bundle and not Path(s.ca_bundle).is_file():
        raise ConfigError("salesforce.ca_bundle", f"file not found: {s.ca_bundle}")
    for org_id in s.org_ids:
        if len(org_id) not in (15, 18) or not org_id.isalnum() or not org_id.startswith("00D"):
            raise ConfigError(
                "salesforce.org_ids", "each must be a 15- or 18-character Id (00D...)"
            )


def _check_programme(p: ProgrammeSettings) -> None:
    try:
        zoneinfo.ZoneInfo(p.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("programme.timezone", f"unknown time zone {p.timezone!r}") from None
    for key in ("window_start", "window_end"):
        value = getattr(p, key)
        try:
            dt.datetime.strptime(f"2000-{value}", "%Y-%m-%d")
        except ValueError:
            raise ConfigError(f"programme.{key}", f"must be MM-DD, got {value!r}") from None
    if not p.meeting_activities:
        raise ConfigError("programme.meeting_activities", "must name at least one activity")
    if not all(a.strip() for a in p.meeting_activities):
        raise ConfigError("programme.meeting_activities", "must not contain an empty name")
    if len(set(p.meeting_activities)) != len(p.meeting_activities):
        raise ConfigError("programme.meeting_activities", "names an activity twice")
    for activity, hours in p.activity_hours.items():
        if activity not in p.meeting_activities:
            raise ConfigError(
                f"programme.activity_hours.{activity}", "not one of programme.meeting_activities"
            )
        if not hours > 0:
            raise ConfigError(f"programme.activity_hours.{activity}", "must be greater than 0")
    if p.window_year and not 2000 <= p.window_year <= 2100:
        raise ConfigError("programme.window_year", "must be 0 or a year such as 2026")
    if p.window_start == p.window_end:
        raise ConfigError("programme.window_end", "must differ from programme.window_start")
    if p.cadence not in {"monthly", "none"}:
        raise ConfigError("programme.cadence", "must be monthly or none")
    if p.ticked_by not in {"mentee", "mentor", "either"}:
        raise ConfigError("programme.ticked_by", "must be mentee, mentor or either")
    if p.progress_field_map and not Path(p.progress_field_map).is_file():
        raise ConfigError(
            "programme.progress_field_map", f"file not found: {p.progress_field_map}"
        )


def _check_members(mem: MembersSettings) -> None:
    allowed = {"suspend", "keep", "reactivate"}
    for status, action in mem.status_policy.items():
        if action not in allowed:
            raise ConfigError(
                f"members.status_policy.{status}", "must be suspend, keep or reactivate"
            )
    if mem.out_of_scope not in {"suspend", "keep"}:
        raise ConfigError("members.out_of_scope", "must be suspend or keep")
    if not 0 <= mem.mass_change_share <= 1:
        raise ConfigError("members.mass_change_share", "must be between 0 and 1")
    if not 1 <= mem.concurrency <= 16:
        raise ConfigError("members.concurrency", "must be between 1 and 16")
    if mem.field_map and not Path(mem.field_map).is_file():
        raise ConfigError("members.field_map", f"file not found: {mem.field_map}")


def _check_pairs(pairs: PairsConfig) -> None:
    if pairs.cancelled_group not in {"delete", "keep"}:
        raise ConfigError("pairs.cancelled_group", "must be delete or keep")
    if not 0 <= pairs.mass_change_share <= 1:
        raise ConfigError("pairs.mass_change_share", "must be between 0 and 1")
    if pairs.mass_change_count < 0 or pairs.lookback_seconds < 0:
        key = "pairs.mass_change_count" if pairs.mass_change_count < 0 else "pairs.lookback_seconds"
        raise ConfigError(key, "must be at least 0")
    if pairs.field_map and not Path(pairs.field_map).is_file():
        raise ConfigError("pairs.field_map", f"file not found: {pairs.field_map}")


def _check_service(svc: ServiceSettings) -> None:
    for key, secret in (
        ("events_secret", svc.events_secret),
        ("moodle_events_secret", svc.moodle_events_secret),
    ):
        if secret and not secret.get().startswith("whsec_"):
            raise ConfigError(f"service.{key}", "must start with whsec_ (Standard Webhooks)")
    if svc.max_body_bytes < 1024:
        raise ConfigError("service.max_body_bytes", "must be at least 1024")
    if not 0 <= svc.nightly_hour <= 23:
        raise ConfigError("service.nightly_hour", "must be 0 to 23")
    host, _, port = svc.bind.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError("service.bind", "must be host:port")
    for key in ("database_url", "queue_url"):
        url = getattr(svc, key)
        if url and "://" not in url:
            raise ConfigError(f"service.{key}", "must be a URL such as sqlite:///path")
    if svc.basic_auth_user and not svc.basic_auth_password:
        raise ConfigError("service.basic_auth_password", "required with service.basic_auth_user")
    if svc.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("service.log_level", "must be DEBUG, INFO, WARNING or ERROR")
