"""Apply planned member actions to Moodle in batches sized by the client's limits.

Creates and updates are buffered separately and sent when a full batch is ready (a batch is
what :meth:`MoodleClient.split` allows: items per call and form fields per call), so a run makes
close to the minimal number of calls whatever order the actions come in.

- ``core_user_create_users`` is all or nothing: a batch refused with :class:`MoodleRecordError`
  is bisected until the bad rows are isolated; each is reported with its error code, the others
  are created.
- A create that ends in :class:`UnknownOutcomeError` (read timeout) is resolved by re-reading the
  batch's users by ``idnumber``: those found were created; only the others are sent again. Nothing
  is ever created twice.
- ``core_user_update_users`` reports per-user ``warnings``; each becomes that member's failure.
  Updates are idempotent, so an update with an unknown outcome is simply sent once more.

Errors that are not about a record (transient errors that outlived the client's retries,
configuration errors) propagate and stop the run.

Full batches may be sent from a couple of threads (``threads``), so the next batch is encoded
while one is on the wire; a batch's bisection or re-read stays in its thread, and outcomes are
handled in the caller's thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connector.clients.moodle.client import MoodleClient
from connector.engine.pipeline import InFlight
from connector.errors import MoodleRecordError, UnknownOutcomeError
from connector.kinds.members.lookup import ThreadClients
from connector.kinds.members.plan import CREATES, UPDATES, Action

log = logging.getLogger(__name__)

CREATE_FUNCTION = "core_user_create_users"
UPDATE_FUNCTION = "core_user_update_users"
# How often one batch may end with an unknown outcome before the run stops.
MAX_UNKNOWN_OUTCOMES = 2
_CODE_SHAPE = re.compile(r"^[a-z0-9_.:-]{1,60}$")


@dataclass(slots=True)
class Outcome:
    """What became of one action."""

    action: Action
    # The account after the action (the new id for a create).
    moodle_id: int | None
    # "moodle:<errorcode>" when Moodle refused it, else "".
    error: str = ""
    stage: str = ""
    # Whether Moodle was written for this member.
    written: bool = False

    @property
    def ok(self) -> bool:
        """Whether the action went through."""
        return not self.error


def error_code(prefix: str, raw: str) -> str:
    """A safe error code for logs and Salesforce: ``prefix:code``, or ``prefix:error`` if the
    upstream code does not look like one (Moodle sometimes puts HTML there)."""
    code = str(raw or "").lower()
    return f"{prefix}:{code}" if _CODE_SHAPE.match(code) else f"{prefix}:error"


class MoodleApplier:
    """Buffers create and update actions and sends them in full batches.

    With ``threads`` > 1, full batches are sent from that many threads (each with its own
    client), so the next batch is prepared while one is on the wire. Outcomes are handed to
    ``on_outcomes`` in the caller's thread, batch by batch in the order the batches were sent.
    """

    def __init__(
        self, moodle: MoodleClient, on_outcomes: Callable[[list[Outcome]], None], threads: int = 1
    ) -> None:
        self.moodle = moodle
        self.on_outcomes = on_outcomes
        self.batch_items = max(1, int(moodle.settings.max_batch_items))
        self.threads = max(1, threads)
        self._creates: list[Action] = []
        self._updates: list[Action] = []
        self._clients = ThreadClients(moodle)
        # One thread sends in the caller's thread; more keep that many batches on the wire.
        self._pipe: InFlight[list[Outcome]] = InFlight(
            on_outcomes, self.threads if self.threads > 1 else 0, name="moodle-write"
        )

    def add(self, action: Action) -> None:
        """Queue an action that writes to Moodle; sends a batch when one is full."""
        if action.kind in CREATES:
            self._creates.append(action)
            if len(self._creates) >= self.batch_items:
                self._creates = self._send(self._creates, create_batch, final=False)
        elif action.kind in UPDATES:
            self._updates.append(action)
            if len(self._updates) >= self.batch_items:
                self._updates = self._send(self._updates, update_batch, final=False)
        else:
            raise ValueError(f"MoodleApplier.add: {action.kind} does not write to Moodle")
        self._pipe.poll()

    def flush(self) -> None:
        """Send everything still queued and wait for every outcome."""
        self._creates = self._send(self._creates, create_batch, final=True)
        self._updates = self._send(self._updates, update_batch, final=True)
        self._pipe.settle()

    def settle(self) -> None:
        """Wait for the batches on the wire and hand over their outcomes (nothing new is sent)."""
        self._pipe.settle()

    def close(self) -> None:
        """Stop the threads (after the calls they are in) and merge their call counts."""
        self._pipe.close()
        self._clients.close()

    def _send(
        self,
        queue: list[Action],
        send: Callable[[MoodleClient, list[Action]], list[Outcome]],
        *,
        final: bool,
    ) -> list[Action]:
        """Send the full batches of ``queue`` (all of it when ``final``); return the rest."""
        if not queue or (not final and len(queue) < self.batch_items):
            return queue
        batches = self.moodle.split("users", [_item(a) for a in queue])
        # Split by form fields, the last batch may be partial: keep it for more to join,
        # unless this is the end.
        if not final and len(batches) > 1:
            batches = batches[:-1]
        start = 0
        for batch in batches:
            actions = queue[start : start + len(batch)]
            start += len(batch)
            if self._pipe.threaded:
                self._pipe.submit(self._in_thread, send, actions)
            else:
                self._pipe.submit(send, self.moodle, actions)
        return queue[start:]

    def _in_thread(
        self, send: Callable[[MoodleClient, list[Action]], list[Outcome]], actions: list[Action]
    ) -> list[Outcome]:
        return send(self._clients.get(), actions)


# --- sending one batch (in whatever thread; only the given client is used) ---------------------


def create_batch(moodle: MoodleClient, actions: list[Action], unknown: int = 0) -> list[Outcome]:
    """Create the users of ``actions``; bisect a refused batch; resolve an unknown outcome."""
    try:
        created = moodle.create_users([a.payload for a in actions])
    except MoodleRecordError as exc:
        if len(actions) == 1:
            return _failed(actions, exc.errorcode, CREATE_FUNCTION)
        # All or nothing: one bad row refused them all. Halve until it is alone.
        log.info("moodle create batch of %d refused (%s), bisecting", len(actions), exc.errorcode)
        middle = len(actions) // 2
        return create_batch(moodle, actions[:middle], unknown) + create_batch(
            moodle, actions[middle:], unknown
        )
    except UnknownOutcomeError:
        return _resolve_unknown_create(moodle, actions, unknown + 1)
    if len(created) != len(actions):
        raise UnknownOutcomeError(
            f"Moodle {CREATE_FUNCTION}: {len(created)} results for {len(actions)} users"
        )
    return [Outcome(a, int(r["id"]), written=True) for a, r in zip(actions, created, strict=True)]


def _resolve_unknown_create(
    moodle: MoodleClient, actions: list[Action], unknown: int
) -> list[Outcome]:
    """Learn by re-reading which users of a timed-out create exist, then send only the rest."""
    ids = [a.contact_id for a in actions]
    found = {
        str(u.get("idnumber")): int(u["id"]) for u in moodle.get_users_by_field("idnumber", ids)
    }
    done = [a for a in actions if a.contact_id in found]
    missing = [a for a in actions if a.contact_id not in found]
    log.warning(
        "moodle create outcome unknown for %d users: %d found on re-read, %d to send again",
        len(actions),
        len(done),
        len(missing),
    )
    outcomes = [Outcome(a, found[a.contact_id], written=True) for a in done]
    if not missing:
        return outcomes
    if unknown >= MAX_UNKNOWN_OUTCOMES:
        raise UnknownOutcomeError(
            f"Moodle {CREATE_FUNCTION}: outcome unknown {unknown} times; stopping the run"
        )
    return outcomes + create_batch(moodle, missing, unknown)


def update_batch(moodle: MoodleClient, actions: list[Action], unknown: int = 0) -> list[Outcome]:
    """Update the accounts of ``actions``; per-user warnings become those members' failures."""
    try:
        warnings = moodle.update_users([_item(a) for a in actions])
    except MoodleRecordError as exc:
        if len(actions) == 1:
            return _failed(actions, exc.errorcode, UPDATE_FUNCTION)
        middle = len(actions) // 2
        return update_batch(moodle, actions[:middle], unknown) + update_batch(
            moodle, actions[middle:], unknown
        )
    except UnknownOutcomeError:
        if unknown + 1 >= MAX_UNKNOWN_OUTCOMES:
            raise
        # Setting fields to values is idempotent: sending the batch again is safe.
        log.warning("moodle update outcome unknown for %d users, sending again", len(actions))
        return update_batch(moodle, actions, unknown + 1)
    refused: dict[int, str] = {}
    for warning in warnings:
        if not isinstance(warning, dict):
            continue
        try:
            refused[int(warning.get("itemid"))] = str(warning.get("warningcode") or "")
        except (TypeError, ValueError):
            code = error_code("moodle", str(warning.get("warningcode") or ""))
            log.warning("moodle update warning without a user id: %s", code)
    return [
        Outcome(a, a.moodle_id, error_code("moodle", refused[a.moodle_id]), UPDATE_FUNCTION)
        if a.moodle_id in refused
        else Outcome(a, a.moodle_id, written=True)
        for a in actions
    ]


def _failed(actions: Sequence[Action], code: str, function: str) -> list[Outcome]:
    return [Outcome(a, a.moodle_id, error_code("moodle", code), function) for a in actions]


def _item(action: Action) -> dict[str, Any]:
    """The create or update item of an action (updates carry the account id)."""
    if action.kind in CREATES:
        return action.payload
    return {"id": action.moodle_id, **action.payload}
