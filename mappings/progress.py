"""The progress field map: the Salesforce names the progress sync writes.

A TOML file (``mappings/default_progress_fieldmap.toml`` is the built-in default, read with
``importlib.resources``; ``programme.progress_field_map`` names an override). Loading checks
every name, so a typo fails at start-up with the key named
(``programme.progress_field_map: [meeting] hours: ...``), not in the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.clients.salesforce import soql
from connector.errors import ConfigError
from mappings.files import read_map_file

DEFAULT_FILE = "default_progress_fieldmap.toml"
CONFIG_KEY = "programme.progress_field_map"

# Meeting keys: required ones cannot be left out (the upsert key, the link, the date).
MEETING_REQUIRED = ("external_id", "match", "completed_on")
MEETING_OPTIONAL = ("number", "activity", "hours", "source")
MATCH_KEYS = (
    "mentor_orientation",
    "mentee_orientation",
    "meetings_completed",
    "meeting_hours",
    "last_meeting_date",
    "health",
)
HEALTH_KEYS = ("complete", "on_track", "behind", "at_risk")

_DEFAULTS: dict[str, dict[str, str]] = {
    "meeting": {
        "object": "Mentoring_Meeting__c",
        "external_id": "External_Id__c",
        "match": "Match__c",
        "number": "Meeting_Number__c",
        "activity": "Activity_Idnumber__c",
        "completed_on": "Completed_On__c",
        "hours": "Hours__c",
        "source": "Source__c",
        "source_value": "Moodle",
    },
    "match": {
        "object": "Mentorship_Match__c",
        "mentor_orientation": "Mentor_Orientation_Completed__c",
        "mentee_orientation": "Mentee_Orientation_Completed__c",
        "meetings_completed": "Meetings_Completed__c",
        "meeting_hours": "Meeting_Hours__c",
        "last_meeting_date": "Last_Meeting_Date__c",
        "health": "Health__c",
    },
    "health": {
        "complete": "Complete",
        "on_track": "On track",
        "behind": "Behind",
        "at_risk": "At risk",
    },
}


@dataclass(frozen=True)
class ProgressMap:
    """A validated progress field map."""

    meeting_object: str
    # external_id / match / number / activity / completed_on / hours / source -> field
    # ("" = not written; never for the required ones).
    meeting: dict[str, str]
    source_value: str
    match_object: str
    # mentor_orientation ... health -> field ("" = not written).
    match: dict[str, str]
    # complete / on_track / behind / at_risk -> picklist value.
    health: dict[str, str]
    source: str = ""

    def meeting_read_fields(self) -> list[str]:
        """The meeting fields a progress run reads, ``Id`` first, each once."""
        return _unique(["Id", *(f for f in self.meeting.values() if f)])

    def match_read_fields(self) -> list[str]:
        """The match fields a progress run reads (to compare), ``Id`` first, each once."""
        return _unique(["Id", *(f for f in self.match.values() if f)])


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())


def load_progress_map(path: str | Path | None = None) -> ProgressMap:
    """Load and check the progress map at ``path``, or the built-in default when empty.

    Raises :class:`ConfigError` (key ``programme.progress_field_map``) naming what is wrong.
    """
    data, source = read_map_file(path, DEFAULT_FILE, CONFIG_KEY)
    return parse_progress_map(data, source)


def parse_progress_map(data: dict[str, Any], source: str = "") -> ProgressMap:
    """Check a decoded progress map and build the :class:`ProgressMap`; absent keys default."""

    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(CONFIG_KEY, f"{where}: {problem} (in {source or 'the map'})")

    for section in data:
        if section not in _DEFAULTS:
            raise fail(f"[{section}]", f"unknown section (known: {', '.join(_DEFAULTS)})")

    def table(name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise fail(f"[{name}]", "must be a table")
        for key in value:
            if key not in _DEFAULTS[name]:
                known = ", ".join(_DEFAULTS[name])
                raise fail(f"[{name}] {key}", f"unknown key (known: {known})")
        return {**_DEFAULTS[name], **value}

    def sf_name(where: str, value: Any, *, allow_empty: bool, what: str = "field name") -> str:
        if allow_empty and value == "":
            return ""
        if not isinstance(value, str):
            raise fail(where, "must be a Salesforce API name (a string)")
        try:
            return soql.check_name(value, what)
        except ValueError:
            raise fail(where, f"not a valid Salesforce API name: {value!r}") from None

    meeting = table("meeting")
    meeting_fields = {
        key: sf_name(f"[meeting] {key}", meeting[key], allow_empty=key in MEETING_OPTIONAL)
        for key in (*MEETING_REQUIRED, *MEETING_OPTIONAL)
    }
    source_value = meeting["source_value"]
    if not isinstance(source_value, str) or not source_value.strip():
        raise fail("[meeting] source_value", "must be a non-empty string")
    match = table("match")
    match_fields = {
        key: sf_name(f"[match] {key}", match[key], allow_empty=True) for key in MATCH_KEYS
    }
    health = table("health")
    values: dict[str, str] = {}
    for key in HEALTH_KEYS:
        value = health[key]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"[health] {key}", "must be a non-empty string")
        values[key] = value
    if len(set(values.values())) != len(values):
        raise fail("[health]", "two health states share one picklist value")
    return ProgressMap(
        meeting_object=sf_name(
            "[meeting] object", meeting["object"], allow_empty=False, what="object name"
        ),
        meeting=meeting_fields,
        source_value=source_value,
        match_object=sf_name(
            "[match] object", match["object"], allow_empty=False, what="object name"
        ),
        match=match_fields,
        health=values,
        source=source,
    )


def salesforce_fields(settings: Any) -> dict[str, set[str]]:
    """The Salesforce objects and fields the progress map of ``settings`` writes
    (``mentorsync doctor`` checks they exist)."""
    fieldmap = load_progress_map(settings.programme.progress_field_map)
    return {
        fieldmap.meeting_object: set(fieldmap.meeting_read_fields()),
        fieldmap.match_object: set(fieldmap.match_read_fields()),
    }
