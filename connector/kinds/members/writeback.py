"""Write the outcome of each member back to the Contact, so staff see it where they work.

Fields (names from the field map's ``[writeback]``): the Moodle user id, a status (``Synced``,
``Suspended``, ``Failed``, ``Conflict``), an error code (never PII) and the time of the sync.
Only changed values are written, compared with the values read at the start of the run; the
sync time is written only together with a change (or after a Moodle write for that member).

Convergence: every write bumps the Contact's ``SystemModstamp`` (and fires its Outbound
Message), so the next incremental run reads these Contacts again. It finds Moodle in step and the
written values equal to what it would write, so it writes nothing, and the run after that does
not see them at all: the echo dies out after one run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from connector.kinds.members.apply import Outcome
from connector.kinds.members.plan import SKIP, Action

log = logging.getLogger(__name__)

SYNCED = "Synced"
SUSPENDED = "Suspended"
FAILED = "Failed"
CONFLICT = "Conflict"
WRITEBACK_STAGE = "salesforce:writeback"


def read_values(record: Mapping[str, Any], writeback_fields: Mapping[str, str]) -> dict[str, str]:
    """The write-back fields of a record as read: ``{"user_id","status","error"}`` ("" if empty)."""
    values = {}
    for key in ("user_id", "status", "error"):
        name = writeback_fields.get(key, "")
        value = record.get(name) if name else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a Number field: 42.0 is the id 42, not a change
        values[key] = "" if value is None else str(value)
    return values


def target_values(outcome: Outcome) -> dict[str, str] | None:
    """What the write-back fields should say after ``outcome``; None when nothing is to say.

    Nothing is said for a deleted Contact, and for one with neither an account nor a problem
    (out of scope, or a lapsed member never given an account); but a link, status or error
    left from an earlier run is then cleared, so staff do not chase what is gone.
    """
    action: Action = outcome.action
    read = action.writeback
    if read is None:
        return None
    code = outcome.error or action.code
    moodle_id = outcome.moodle_id
    if action.kind == SKIP or (moodle_id is None and not code):
        if any(read.get(k) for k in ("user_id", "status", "error")):
            # No account carries this Contact's Id any more: the old link is stale too.
            return {"user_id": "", "status": "", "error": ""}
        return None
    if code:
        status = CONFLICT if code.startswith("conflict:") else FAILED
    else:
        status = SUSPENDED if action.suspended else SYNCED
    return {
        # A conflict or failure without an account keeps whatever link was there.
        "user_id": str(moodle_id) if moodle_id is not None else read.get("user_id", ""),
        "status": status,
        "error": code,
    }


def writeback_record(
    outcome: Outcome, writeback_fields: Mapping[str, str], now: dt.datetime
) -> dict[str, Any] | None:
    """The Contact update for ``outcome`` with only the changed fields, or None."""
    target = target_values(outcome)
    if target is None:
        return None
    read = outcome.action.writeback or {}
    record: dict[str, Any] = {}
    for key, value in target.items():
        name = writeback_fields.get(key, "")
        if name and value != read.get(key, ""):
            record[name] = value or None
    if not record and not outcome.written:
        return None
    synced_at = writeback_fields.get("synced_at", "")
    if not record and not synced_at:
        return None
    if synced_at:
        record[synced_at] = now
    record["Id"] = outcome.action.contact_id
    return record
