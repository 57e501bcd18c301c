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

import collections
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from connector.kinds.members.apply import Outcome
from connector.kinds.members.plan import SKIP, Action

log = logging.getLogger(__name__)

SYNCED = "Synced"
SUSPENDED = "Suspended"
FAILED = "Failed"
CONFLICT = "Conflict"
COLLECTION_SIZE = 200
# Collections calls outstanding at once when sending in the background.
IN_FLIGHT = 2
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


@dataclass(slots=True)
class _Pending:
    record: dict[str, Any]
    # Whether the member had gone through until now (so a write-back failure is its only one).
    ok: bool


class WritebackBuffer:
    """Collects Contact updates and sends them in Collections calls of 200.

    With ``background``, calls are sent from one background thread while the caller goes on
    (writing Moodle, typically); at most :data:`IN_FLIGHT` calls are outstanding, and results
    are handed to ``on_result`` in the caller's thread, in order. The Salesforce client must not
    be used by anyone else meanwhile.
    """

    def __init__(
        self,
        salesforce: Any,
        sobject: str,
        on_result: Callable[[str, bool, str, bool], None],
        size: int = COLLECTION_SIZE,
        *,
        background: bool = False,
    ) -> None:
        """``on_result(contact_id, success, error_code, was_ok)`` is called for every record."""
        self.salesforce = salesforce
        self.sobject = sobject
        self.on_result = on_result
        self.size = size
        self.written = 0
        self._pending: list[_Pending] = []
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="salesforce-writeback") if background else None
        )
        self._in_flight: collections.deque[tuple[list[_Pending], Future[Any]]] = collections.deque()

    def add(self, record: dict[str, Any], ok: bool) -> None:
        """Queue one Contact update; sends a call when 200 are queued."""
        self._pending.append(_Pending(record, ok))
        if len(self._pending) >= self.size:
            batch, self._pending = self._pending[: self.size], self._pending[self.size :]
            self._send(batch)
        self._collect(wait=False)

    def flush(self) -> None:
        """Send everything queued and wait for every answer."""
        while self._pending:
            batch, self._pending = self._pending[: self.size], self._pending[self.size :]
            self._send(batch)
        self._collect(wait=True)

    def close(self) -> None:
        """Stop the background thread (after the call it is in, if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _send(self, batch: list[_Pending]) -> None:
        records = [p.record for p in batch]
        if self._pool is None:
            self._deliver(batch, self.salesforce.collection_update(self.sobject, records))
            return
        while len(self._in_flight) >= IN_FLIGHT:
            self._collect_one()
        future = self._pool.submit(self.salesforce.collection_update, self.sobject, records)
        self._in_flight.append((batch, future))

    def _collect(self, *, wait: bool) -> None:
        while self._in_flight and (wait or self._in_flight[0][1].done()):
            self._collect_one()

    def _collect_one(self) -> None:
        batch, future = self._in_flight.popleft()
        # Raises the call's error here, in the caller's thread: the run stops on it.
        self._deliver(batch, future.result())

    def _deliver(self, batch: list[_Pending], results: list[Any]) -> None:
        for pending, result in zip(batch, results, strict=True):
            contact_id = str(pending.record["Id"])
            if result.success:
                self.written += 1
            else:
                log.warning("write-back to contact %s failed: %s", contact_id, result.error_code)
            self.on_result(contact_id, result.success, result.error_code, pending.ok)
