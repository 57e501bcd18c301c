"""Mentorship match -> :class:`Match`: the pairs field map and its marshmallow schema.

The map is a TOML file (``mappings/default_pairs_fieldmap.toml`` is the built-in default;
``pairs.field_map`` names an override). Loading checks every name, so a typo fails at start-up
with the key named (``pairs.field_map: [fields] mentor: ...``).

``MatchMapper.load(record)`` turns one match row as read from Salesforce into a :class:`Match`,
or a :class:`Rejected` with a reason code such as ``mapping:mentor_missing`` or
``mapping:status_invalid``; it never raises for a bad row. Codes name the field and the problem,
never the value: they go to logs and back to Salesforce.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from connector.clients.salesforce import soql
from connector.errors import ConfigError
from mappings.files import read_map_file

DEFAULT_FILE = "default_pairs_fieldmap.toml"
CONFIG_KEY = "pairs.field_map"

# The canonical match statuses the planner knows.
PROPOSED = "proposed"
ACTIVE = "active"
COMPLETED = "completed"
CANCELLED = "cancelled"
STATUSES = (PROPOSED, ACTIVE, COMPLETED, CANCELLED)

# Logical match fields -> default Salesforce names; name/start_date/end_date may be "" (not read).
FIELD_DEFAULTS: dict[str, str] = {
    "name": "Name",
    "mentor": "Mentor__c",
    "mentee": "Mentee__c",
    "status": "Status__c",
    "program": "Program__c",
    "start_date": "Start_Date__c",
    "end_date": "End_Date__c",
}
OPTIONAL_FIELDS = frozenset({"name", "start_date", "end_date"})
WRITEBACK_KEYS = ("group_id", "status", "error")
WRITEBACK_DEFAULTS = {
    "group_id": "LMS_Group_Id__c",
    "status": "LMS_Sync_Status__c",
    "error": "LMS_Sync_Error__c",
}
# Reported first when a row has several problems: the most basic ones.
_PRIORITY = ("id", "mentor", "mentee", "status", "program", "start_date", "end_date")
_ERRORS = {"required": "missing", "null": "missing", "invalid": "invalid"}
_SF_ID = r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"


@dataclass(frozen=True)
class PairsFieldMap:
    """A validated pairs field map."""

    sobject: str
    # Logical field (name, mentor, mentee, status, program, start_date, end_date) -> SF field.
    fields: dict[str, str]
    # Salesforce status value -> canonical status (proposed/active/completed/cancelled).
    status_values: dict[str, str]
    # group_id / status / error -> Salesforce field ("" = not written).
    writeback: dict[str, str]
    source: str = ""

    def read_fields(self) -> list[str]:
        """Every Salesforce field a pairs sync reads, each once, ``Id`` first."""
        wanted = ["Id", *(f for f in self.fields.values() if f)]
        wanted += [f for f in self.writeback.values() if f]
        seen: dict[str, str] = {}
        for name in wanted:
            seen.setdefault(name.lower(), name)
        return list(seen.values())

    def program_soql(self, program_code: str) -> str:
        """The SOQL condition selecting the matches of one programme (the value is quoted)."""
        return f"{self.fields['program']} = {soql.quote(program_code)}"

    def other_programs_soql(self, program_code: str) -> str:
        """The SOQL condition selecting the matches NOT of one programme, or of none (the null
        test is explicit rather than left to how ``!=`` treats null)."""
        program = self.fields["program"]
        return f"({program} != {soql.quote(program_code)} OR {program} = null)"

    def people_soql(self, contact_ids: list[str]) -> str:
        """The SOQL condition selecting matches in which any of ``contact_ids`` takes part."""
        ids = soql.in_list(contact_ids)
        return f"({self.fields['mentor']} IN {ids} OR {self.fields['mentee']} IN {ids})"


@dataclass(frozen=True)
class Match:
    """One mentorship match as the planner sees it. ``status`` is canonical (``active``...)."""

    id: str
    name: str
    mentor_id: str
    mentee_id: str
    status: str
    program: str
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    # The write-back fields as read: group_id / status / error -> value ("" when empty).
    writeback: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Rejected:
    """A match row that cannot be planned; ``code`` says why (``mapping:mentor_missing``)."""

    match_id: str
    code: str
    writeback: Mapping[str, str] = field(default_factory=dict, hash=False)


def load_pairs_field_map(path: str | Path | None = None) -> PairsFieldMap:
    """Load and check the pairs field map at ``path``, or the built-in default when empty.

    Raises :class:`ConfigError` (key ``pairs.field_map``) naming what is wrong and where.
    """
    data, source = read_map_file(path, DEFAULT_FILE, CONFIG_KEY)
    return parse_pairs_field_map(data, source)


def parse_pairs_field_map(data: Mapping[str, Any], source: str = "") -> PairsFieldMap:
    """Check a decoded pairs field map and build the :class:`PairsFieldMap`.

    Omitted sections and keys take the defaults of ``default_pairs_fieldmap.toml``.
    """

    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(CONFIG_KEY, f"{where}: {problem} (in {source or 'the map'})")

    def table(name: str, allowed: set[str] | None) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise fail(f"[{name}]", "must be a table")
        for key in value:
            if allowed is not None and key not in allowed:
                known = ", ".join(sorted(allowed))
                raise fail(f"[{name}] {key}", f"unknown key (known: {known})")
        return value

    def sf_name(where: str, value: Any, *, allow_empty: bool = False) -> str:
        if allow_empty and value == "":
            return ""
        if not isinstance(value, str):
            raise fail(where, "must be a Salesforce field name (a string)")
        try:
            return soql.check_name(value, "field name")
        except ValueError:
            raise fail(where, f"not a valid Salesforce API name: {value!r}") from None

    known = {"source", "fields", "status", "writeback"}
    for section in data:
        if section not in known:
            raise fail(f"[{section}]", f"unknown section (known: {', '.join(sorted(known))})")

    src = table("source", {"object"})
    sobject = sf_name("[source] object", src.get("object", "Mentorship_Match__c"))

    given = table("fields", set(FIELD_DEFAULTS))
    field_map = {
        key: sf_name(
            f"[fields] {key}", given.get(key, default), allow_empty=key in OPTIONAL_FIELDS
        )
        for key, default in FIELD_DEFAULTS.items()
    }
    if field_map["mentor"].lower() == field_map["mentee"].lower():
        raise fail("[fields] mentee", "must not be the same field as mentor")

    statuses = table("status", set(STATUSES))
    status_values: dict[str, str] = {}
    for canonical in STATUSES:
        values = statuses.get(canonical, [canonical.capitalize()])
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise fail(f"[status] {canonical}", "must be a list of non-empty strings")
        for value in values:
            if value in status_values:
                raise fail(f"[status] {canonical}", f"value {value!r} is listed twice")
            status_values[value] = canonical
    if not any(s == ACTIVE for s in status_values.values()):
        raise fail("[status] active", "must list at least one value")

    wb = table("writeback", set(WRITEBACK_KEYS))
    writeback = {
        key: sf_name(f"[writeback] {key}", wb.get(key, default), allow_empty=True)
        for key, default in WRITEBACK_DEFAULTS.items()
    }
    return PairsFieldMap(
        sobject=sobject,
        fields=field_map,
        status_values=status_values,
        writeback=writeback,
        source=source,
    )


def _match_schema() -> Schema:
    """A marshmallow schema checking one match row (already renamed to logical fields)."""

    def sf_id() -> fields.String:
        return fields.String(
            required=True,
            validate=validate.Regexp(_SF_ID, error="invalid"),
            error_messages=_ERRORS,
        )

    def date() -> fields.Date:
        return fields.Date(allow_none=True, load_default=None, error_messages=_ERRORS)

    declared: dict[str, fields.Field] = {
        "id": sf_id(),
        "mentor": sf_id(),
        "mentee": sf_id(),
        "status": fields.String(required=True, error_messages=_ERRORS),
        "program": fields.String(required=True, error_messages=_ERRORS),
        "name": fields.String(allow_none=True, load_default=None),
        "start_date": date(),
        "end_date": date(),
    }
    schema_class = Schema.from_dict(declared, name="MatchSchema")
    return schema_class(unknown=EXCLUDE)


class MatchMapper:
    """Turns match rows read from Salesforce into :class:`Match` (or :class:`Rejected`)."""

    def __init__(self, fieldmap: PairsFieldMap) -> None:
        self.fieldmap = fieldmap
        self._schema = _match_schema()

    def read_writeback(self, record: Mapping[str, Any]) -> dict[str, str]:
        """The write-back fields of ``record`` as read (``""`` when empty or not mapped)."""
        return {
            key: (_text(record.get(sf_field)) or "") if sf_field else ""
            for key, sf_field in self.fieldmap.writeback.items()
        }

    def load(self, record: Mapping[str, Any]) -> Match | Rejected:
        """The :class:`Match` of ``record``, or :class:`Rejected` with a reason code."""
        fm = self.fieldmap
        match_id = _text(record.get("Id")) or ""
        writeback = self.read_writeback(record)
        values: dict[str, Any] = {"id": match_id or None}
        for key, sf_field in fm.fields.items():
            if sf_field:
                values[key] = _text(record.get(sf_field))
        try:
            loaded = self._schema.load(values)
        except ValidationError as exc:
            return Rejected(match_id, _reason(exc.messages), writeback)
        status = fm.status_values.get(loaded["status"])
        if status is None:
            return Rejected(match_id, "mapping:status_invalid", writeback)
        if loaded["mentor"][:15] == loaded["mentee"][:15]:
            # 15- and 18-character forms of one Id name the same Contact.
            return Rejected(match_id, "mapping:mentee_same_as_mentor", writeback)
        start, end = loaded["start_date"], loaded["end_date"]
        if start is not None and end is not None and end < start:
            return Rejected(match_id, "mapping:end_date_before_start", writeback)
        return Match(
            id=loaded["id"],
            name=loaded["name"] or "",
            mentor_id=loaded["mentor"],
            mentee_id=loaded["mentee"],
            status=status,
            program=loaded["program"],
            start_date=start,
            end_date=end,
            writeback=writeback,
        )


def _text(value: Any) -> str | None:
    """A Salesforce value as trimmed text; empty becomes None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _reason(messages: Any) -> str:
    """The reason code of the most basic problem in marshmallow's error messages."""
    if not isinstance(messages, dict) or not messages:
        return "mapping:invalid"
    names = sorted(messages, key=lambda n: (_PRIORITY.index(n) if n in _PRIORITY else 99, n))
    name = names[0]
    problem = messages[name]
    kind = "invalid"
    if isinstance(problem, list) and problem and problem[0] == "missing":
        kind = "missing"
    return f"mapping:{name}_{kind}"


def salesforce_fields(fieldmap: PairsFieldMap) -> dict[str, set[str]]:
    """The Salesforce object and fields the pairs field map reads and writes (for doctor)."""
    return {fieldmap.sobject: set(fieldmap.read_fields())}
