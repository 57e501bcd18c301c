"""A Python mirror of the Moodle plugin's payload builder (``classes/payload.php``).

``deploy/moodle/local_mentorsync/classes/payload.php`` builds the body and headers the plugin's
adhoc task POSTs to ``/hooks/moodle/events``. Tests use this module to send byte-for-byte what
the plugin sends (``test_moodle_plugin.py`` runs the PHP class and compares), so keep the two in
step: the same keys in the same order, compact JSON, ``/`` not escaped (PHP's
``JSON_UNESCAPED_SLASHES``), non-ASCII escaped as ``\\uXXXX`` (PHP's default, Python's
``ensure_ascii``).
"""

from __future__ import annotations

import base64
import json
import re

from webhooks.signing import decode_secret, sign

MOODLE_EVENTS_PATH = "/hooks/moodle/events"
# The body's keys, in order (payload::FIELDS).
FIELDS = ("eventname", "userid", "relateduserid", "courseid", "contextinstanceid", "timecreated")
_EVENT_NAME = re.compile(r"\\?[A-Za-z0-9_]+(\\[A-Za-z0-9_]+){0,8}")

EventValue = str | int | None


def event_from_data(data: dict[str, object]) -> dict[str, EventValue]:
    """The body's event from Moodle event data (``payload::event_from_data``)."""
    name = data.get("eventname")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        raise ValueError("eventname must be a Moodle event class name")
    if not name.startswith("\\"):
        name = "\\" + name
    event: dict[str, EventValue] = {"eventname": name}
    for field in FIELDS[1:]:
        event[field] = _whole(data.get(field), field)
    if event["userid"] is None:
        event["userid"] = 0
    return event


def _whole(value: object, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    # PHP's ctype_digit(): ASCII digits only.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"{field} must be a whole number")


def body(event: dict[str, EventValue]) -> bytes:
    """The exact body bytes (``payload::body``)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def headers(secret: str, msg_id: str, timestamp: int, body_bytes: bytes) -> dict[str, str]:
    """The request headers, in sending order (``payload::headers``)."""
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(decode_secret(secret.strip()), msg_id, timestamp, body_bytes),
    }


def secret_for(key: bytes) -> str:
    """The ``whsec_<base64>`` secret of a raw key (what the admin pastes into the plugin)."""
    return "whsec_" + base64.b64encode(key).decode("ascii")


def build(
    data: dict[str, object], secret: str, msg_id: str, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` for one Moodle event, exactly as the plugin's task sends them."""
    payload = body(event_from_data(data))
    return payload, headers(secret, msg_id, timestamp, payload)
