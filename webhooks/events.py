"""Signed JSON events: ``POST /hooks/salesforce/events`` and ``POST /hooks/moodle/events``.

Both are signed the Standard Webhooks way (see :mod:`webhooks.signing`), verified over the raw
body before it is parsed, and deduplicated on ``webhook-id`` through the inbox.

Salesforce (a Flow, Apex, or a Change Data Capture relay)::

    {"object": "Contact", "ids": ["0035e00000AbCdEAAV", ...], "changeType": "UPDATE"}

``object`` routes to the sync kinds it wakes (:func:`webhooks.runtime.kinds_for`). ``ids``
must not be empty (gap and overflow events carry none; the incremental sweep covers those).

Moodle (the event observer of the mentorsync Moodle plugin), one event or a list of them, with
the fields of Moodle's event data::

    {"eventname": "\\core\\event\\course_module_completion_updated", "userid": 3,
     "relateduserid": 7, "courseid": 3, "contextinstanceid": 4, "timecreated": 1790000000}

Routing convention for Moodle events: the object name is ``moodle:<eventname>`` (the event
class with its leading backslash, e.g. ``moodle:\\core\\event\\course_completed``); a sync kind
claims it by listing that name in ``objects``, or claims every Moodle event by listing
``"moodle"``. The exact name wins. The record id handed to the kind (``SyncRequest.ids``) is the
Moodle user id the event is about: ``relateduserid`` when set, else ``userid``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from connector.state import inbox
from webhooks.runtime import kinds_for, read_body, routed, runtime
from webhooks.signing import SignatureError, verify

log = logging.getLogger(__name__)

blueprint = Blueprint("events", __name__)

MAX_IDS = 10_000
MAX_MOODLE_EVENTS = 1_000
# Moodle ids and times are database BIGINTs; anything larger is not an id (and a string of
# over 4,300 digits would make int() raise ValueError: Python's integer-string limit).
MAX_WHOLE = 2**63 - 1
_MAX_WHOLE_DIGITS = len(str(MAX_WHOLE))
# Used with fullmatch(): "$" would let a trailing newline through.
_SF_ID = re.compile(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?")
_OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_CHANGE_TYPE = re.compile(r"[A-Z_]{1,40}")
_EVENT_NAME = re.compile(r"\\?[A-Za-z0-9_]+(\\[A-Za-z0-9_]+){0,8}")


class PayloadError(ValueError):
    """The event body is not what the endpoint takes; ``str()`` names the field."""


def _error(status: int, code: str, detail: str) -> Response:
    log.info("event refused: %s %s", status, code)
    response = jsonify(error=code, detail=detail)
    response.status_code = status
    return response


def _key_part(msg_id: str) -> str:
    # The inbox key is at most 200 characters; long ids are hashed (still unique per id).
    return msg_id if len(msg_id) <= 100 else hashlib.sha256(msg_id.encode()).hexdigest()


def parse_salesforce_event(data: Any) -> tuple[str, tuple[str, ...]]:
    """``(object, ids)`` from a Salesforce event body; raise :class:`PayloadError`."""
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    obj = data.get("object")
    if not isinstance(obj, str) or not _OBJECT_NAME.fullmatch(obj):
        raise PayloadError("object must be an object API name such as Contact")
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids:
        raise PayloadError("ids must be a non-empty list of record Ids")
    if len(ids) > MAX_IDS:
        raise PayloadError(f"ids holds more than {MAX_IDS} Ids")
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not _SF_ID.fullmatch(value):
            raise PayloadError(f"ids[{index}] is not a 15- or 18-character Salesforce Id")
    change = data.get("changeType")
    if change is not None and (not isinstance(change, str) or not _CHANGE_TYPE.fullmatch(change)):
        raise PayloadError("changeType must be an upper-case word such as UPDATE")
    return obj, tuple(dict.fromkeys(ids))


def _whole(event: dict[str, Any], field: str, where: str) -> int | None:
    """A non-negative whole number field (Moodle may send numbers as strings), or None."""
    value = event.get(field)
    if value is None or value == "":
        return None
    # isascii(): str.isdigit() is also true for "²" (superscript two), which int() refuses.
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= _MAX_WHOLE_DIGITS
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WHOLE:
        raise PayloadError(f"{where}.{field} must be a whole number (0 to 2^63-1)")
    return value


def parse_moodle_events(data: Any) -> list[tuple[str, str]]:
    """``[(eventname, moodle user id), ...]`` from a Moodle body; raise :class:`PayloadError`."""
    events = data if isinstance(data, list) else [data]
    if not events:
        raise PayloadError("body holds no event")
    if len(events) > MAX_MOODLE_EVENTS:
        raise PayloadError(f"more than {MAX_MOODLE_EVENTS} events in one body")
    parsed = []
    for index, event in enumerate(events):
        where = f"event[{index}]" if isinstance(data, list) else "event"
        if not isinstance(event, dict):
            raise PayloadError(f"{where} must be a JSON object")
        name = event.get("eventname")
        if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
            raise PayloadError(f"{where}.eventname must be a Moodle event class name")
        userid = _whole(event, "userid", where)
        if userid is None:
            raise PayloadError(f"{where}.userid is required")
        related = _whole(event, "relateduserid", where)
        for field in ("courseid", "contextinstanceid", "timecreated"):
            _whole(event, field, where)
        subject = related or userid
        if not subject:
            raise PayloadError(f"{where} names no user (userid and relateduserid are 0)")
        if not name.startswith("\\"):
            name = "\\" + name
        parsed.append((name, str(subject)))
    return parsed


def moodle_kinds(eventname: str) -> list[str]:
    """The sync kinds a Moodle event wakes: those of ``moodle:<eventname>``, else ``moodle``."""
    return kinds_for(f"moodle:{eventname}") or kinds_for("moodle")


def _signed_json(keys: list[bytes], setting: str) -> tuple[str, Any] | Response:
    """Verify the signature, then parse the JSON body: ``(webhook-id, data)`` or an error."""
    if not keys:
        return _error(404, "not_enabled", f"signed events are not enabled (set service.{setting})")
    if request.mimetype != "application/json":
        return _error(415, "unsupported_media_type", "expected Content-Type application/json")
    body = read_body()  # over max_body_bytes: 413 from Werkzeug
    try:
        msg_id = verify(keys, request.headers, body)
    except SignatureError as exc:
        return _error(
            exc.status, "bad_signature" if exc.status == 401 else "bad_request", exc.reason
        )
    try:
        return msg_id, json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # deep nesting too
        return _error(400, "bad_json", "body is not valid UTF-8 JSON")
    except ValueError:  # an integer of over 4,300 digits (Python's integer-string limit)
        return _error(400, "bad_json", "body holds a number too long to be a value")


def _store(notices: list[inbox.Notice], what: str) -> Response:
    rt = runtime()
    try:
        stored = inbox.store(rt.db, notices)
    except (SQLAlchemyError, inbox.StoreTimeout) as exc:
        log.error("inbox write failed, %s not accepted: %s", what, type(exc).__name__)
        response = _error(503, "unavailable", "cannot store the event now; retry later")
        response.headers["Retry-After"] = "30"
        return response
    rt.worker.wake(stored.kinds)
    log.info("%s: %d stored, %d duplicates", what, stored.stored, stored.duplicates)
    response = jsonify(stored=stored.stored, duplicates=stored.duplicates)
    response.status_code = 202
    return response


def _handle(
    keys: list[bytes], setting: str, build: Callable[[str, Any], list[inbox.Notice]], what: str
) -> Response:
    checked = _signed_json(keys, setting)
    if isinstance(checked, Response):
        return checked
    msg_id, data = checked
    try:
        notices = build(msg_id, data)
    except PayloadError as exc:
        return _error(400, "bad_payload", str(exc))
    except LookupError as exc:  # no sync kind for the object
        return _error(422, "unroutable", str(exc.args[0]))
    return _store(notices, what)


def _salesforce_notices(msg_id: str, data: Any) -> list[inbox.Notice]:
    obj, ids = parse_salesforce_event(data)
    woken = kinds_for(obj)
    if not woken:
        raise LookupError(f"no sync kind handles object {obj}")
    prefix = f"sf-events:{_key_part(msg_id)}"
    return [
        inbox.Notice(key, "salesforce-events", kind, obj, record_id)
        for record_id in ids
        for key, kind, _ in routed(f"{prefix}:{record_id}", woken)
    ]


def _moodle_notices(msg_id: str, data: Any) -> list[inbox.Notice]:
    notices = []
    prefix = f"moodle:{_key_part(msg_id)}"
    for index, (name, user_id) in enumerate(parse_moodle_events(data)):
        woken = moodle_kinds(name)
        if not woken:
            raise LookupError(f"no sync kind handles Moodle event {name}")
        for key, kind, _ in routed(f"{prefix}#{index}", woken):
            notices.append(
                inbox.Notice(key, "moodle", kind, f"moodle:{name}"[:100], user_id)
            )
    return notices


@blueprint.post("/hooks/salesforce/events")
def salesforce_events() -> Response:
    """Store a signed Salesforce change event's record Ids in the inbox."""
    rt = runtime()
    return _handle(
        rt.salesforce_event_keys, "events_secret", _salesforce_notices, "salesforce event"
    )


@blueprint.post("/hooks/moodle/events")
def moodle_events() -> Response:
    """Store signed Moodle event notifications in the inbox."""
    rt = runtime()
    return _handle(rt.moodle_event_keys, "moodle_events_secret", _moodle_notices, "moodle event")
