"""Field values as the sandbox stores and returns them, and the checks every write goes through.

Stored forms are the REST forms: datetimes ``2026-03-02T14:05:11.000+0000`` (UTC, whole seconds,
so equal-format strings sort in time order), dates ``2026-03-02``, numbers as floats, Ids in
their 18-character form. Text ``""`` is stored as null, as Salesforce does.
"""

from __future__ import annotations

import datetime as dt
import re

from sandbox.salesforce.ids import normalize_id
from sandbox.salesforce.schema import TEXT_TYPES, FieldDef

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class FieldValueError(ValueError):
    """A value a field refuses; ``status_code`` is Salesforce's error code."""

    def __init__(self, status_code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field


def format_datetime(value: dt.datetime) -> str:
    """The stored and returned form of a datetime: UTC, whole seconds, ``.000+0000``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_datetime(value: str) -> dt.datetime:
    """Parse an ISO 8601 datetime (``Z``, ``+0000`` or ``+00:00``; naive means UTC)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def outbound_datetime(stored: str) -> str:
    """A stored datetime in the form Outbound Messages use (``2026-03-02T14:05:11.000Z``)."""
    return stored.replace("+0000", "Z")


def coerce(f: FieldDef, value: object) -> object:
    """The stored form of ``value`` for field ``f``, or :class:`FieldValueError`."""
    label = f.label or f.name
    if value is None or (value == "" and f.type != "boolean"):
        if f.type == "boolean":
            return False
        return None
    if f.type in TEXT_TYPES:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _json_error(f, "string")
        text = str(value)
        if f.length and len(text) > f.length:
            # Salesforce quotes the value; the sandbox does not, so logs never see it.
            raise FieldValueError(
                "STRING_TOO_LONG", f"{label}: data value too large (max length={f.length})", f.name
            )
        if f.type == "email" and not _EMAIL_RE.fullmatch(text):
            raise FieldValueError(
                "INVALID_EMAIL_ADDRESS", f"{label}: invalid email address", f.name
            )
        return text
    if f.type in ("reference", "id"):
        normalized = normalize_id(value) if isinstance(value, str) else None
        if normalized is None:
            raise FieldValueError("MALFORMED_ID", f"{label}: id value of incorrect type", f.name)
        return normalized
    if f.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _json_error(f, "boolean")
    if f.type == "double":
        if isinstance(value, bool):
            raise _json_error(f, "double")
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _json_error(f, "double") from None
    if f.type == "date":
        if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
            raise _json_error(f, "date")
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise _json_error(f, "date") from None
        return value
    if f.type == "datetime":
        if not isinstance(value, str):
            raise _json_error(f, "datetime")
        try:
            return format_datetime(parse_datetime(value))
        except ValueError:
            raise _json_error(f, "datetime") from None
    raise FieldValueError("INVALID_FIELD", f"{label}: unsupported field type {f.type}", f.name)


def _json_error(f: FieldDef, kind: str) -> FieldValueError:
    return FieldValueError(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} for field {f.name}",
        f.name,
    )
