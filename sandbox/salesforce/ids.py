"""Salesforce record Ids: 15 case-sensitive characters plus a 3-character case-safe suffix.

An Id is a 3-character key prefix (``003`` Contact), a 2-character pod, a reserved ``0`` and a
9-character base-62 counter. The 18-character form appends a checksum that encodes, for each
5-character chunk, which characters are upper case: it makes the Id safe for case-insensitive
systems, and Salesforce accepts either form in SOQL and URLs.
"""

from __future__ import annotations

import re
import secrets

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# The pod of this pretend org, as in the fixtures (0035e00000AbCdEAAV).
POD = "5e"


def checksum(id15: str) -> str:
    """The 3-character suffix that turns a 15-character Id into its 18-character form."""
    out = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        out.append(_SUFFIX[bits])
    return "".join(out)


def make_id(prefix: str, number: int) -> str:
    """The 18-character Id number ``number`` for key prefix ``prefix``."""
    if len(prefix) != 3:
        raise ValueError(f"key prefix must have 3 characters, got {prefix!r}")
    digits = []
    for _ in range(9):
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    if number:
        raise ValueError("Id counter overflow")
    id15 = prefix + POD + "0" + "".join(reversed(digits))
    return id15 + checksum(id15)


def random_id(prefix: str) -> str:
    """A random 18-character Id with key prefix ``prefix`` (org Ids, user Ids)."""
    return make_id(prefix, secrets.randbelow(62**9))


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Id, or None if ``value`` is not an Id.

    The 18-character form is matched case-insensitively: its suffix restores the case.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        return None
    if len(value) == 15:
        return value + checksum(value)
    id15 = value[:15]
    # Repair the case of the first 15 characters from the suffix, as Salesforce does.
    fixed = []
    for chunk in range(3):
        try:
            bits = _SUFFIX.index(value[15 + chunk].upper())
        except ValueError:
            return None
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            upper = bool(bits & (1 << position))
            if upper and not char.isalpha():
                return None
            fixed.append(char.upper() if upper else char.lower())
    repaired = "".join(fixed)
    return repaired + checksum(repaired)
