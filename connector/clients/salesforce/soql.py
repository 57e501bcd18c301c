"""Building SOQL safely: quoted literals, Id lists, datetime literals and checked names.

Every value that goes into a SOQL statement passes through :func:`quote` (or :func:`in_list`,
which uses it), so a value can never end the string literal and inject SOQL. Object and field
names cannot be quoted in SOQL, so they are checked against the shape Salesforce allows instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

# A Salesforce record Id: 15 case-sensitive or 18 case-insensitive alphanumerics.
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# An API name, optionally a relationship path: Contact, Region__c, Account.Owner.Name.
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")

# SOQL's escape sequences inside a quoted string. Backslash first is implied by the mapping
# being applied character by character.
_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def quote(value: str) -> str:
    """Return ``value`` as a SOQL string literal: single-quoted, with SOQL's escapes applied.

    Other control characters have no SOQL escape and are refused with ``ValueError``.
    """
    if not isinstance(value, str):
        raise TypeError(f"soql.quote: expected a string, got {type(value).__name__}")
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 32 or ord(char) == 127:
            raise ValueError(
                f"soql.quote: control character U+{ord(char):04X} cannot be put in SOQL"
            )
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def in_list(values: Iterable[str]) -> str:
    """Return ``('a','b')`` for a SOQL ``IN`` clause; every value quoted. Empty is refused."""
    quoted = [quote(v) for v in values]
    if not quoted:
        # "IN ()" is a SOQL syntax error; the caller should skip the query instead.
        raise ValueError("soql.in_list: no values (an empty IN list is not valid SOQL)")
    return "(" + ",".join(quoted) + ")"


def datetime_literal(value: dt.datetime) -> str:
    """Return a SOQL datetime literal (unquoted UTC ``2026-01-31T12:00:00Z``).

    Seconds precision: Salesforce compares datetimes at second precision, so ``<=`` with the
    truncated value still includes a record stamped later within the same second.
    """
    if not isinstance(value, dt.datetime):
        raise TypeError(f"soql.datetime_literal: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError("soql.datetime_literal: naive datetime (give it a time zone, e.g. UTC)")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> dt.datetime:
    """Parse a Salesforce datetime as returned by the API (``2026-01-31T12:00:00.000+0000``)."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a Salesforce datetime: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"Salesforce datetime without a time zone: {value!r}")
    return parsed.astimezone(dt.UTC)


def is_id(value: object) -> bool:
    """True if ``value`` has the shape of a Salesforce record Id (15 or 18 alphanumerics)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def check_id(value: object, where: str = "") -> str:
    """Return ``value`` if it is a Salesforce Id, else raise ``ValueError`` saying where."""
    if not is_id(value):
        place = f"{where}: " if where else ""
        raise ValueError(f"{place}not a Salesforce Id (15 or 18 letters and digits): {value!r}")
    return value  # type: ignore[return-value]


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a valid API name (or relationship path), else ``ValueError``."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"not a valid Salesforce {what}: {name!r}")
    return name


def select(sobject: str, fields: Sequence[str]) -> str:
    """Return ``SELECT f1, f2 FROM Object`` with every name checked."""
    if not fields:
        raise ValueError(f"SELECT from {sobject!r}: no fields given")
    names = [check_name(f, "field name") for f in fields]
    # Names are checked against the API-name shape above; values never reach this function.
    return f"SELECT {', '.join(names)} FROM {check_name(sobject, 'object name')}"  # noqa: S608
