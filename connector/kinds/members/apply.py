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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.clients.moodle.client import MoodleClient
from connector.engine.batching import Bisector, moodle_code
from connector.engine.pipeline import InFlight
from connector.kinds.members.lookup import ThreadClients
from connector.kinds.members.plan import CREATES, UPDATES, Action

log = logging.getLogger(__name__)

CREATE_FUNCTION = "core_user_create_users"
UPDATE_FUNCTION = "core_user_update_users"


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


def create_batch(moodle: MoodleClient, actions: list[Action]) -> list[Outcome]:
    """Create the users of ``actions`` (the engine's :class:`Bisector`: a refused batch is
    bisected; a lost answer is resolved by re-reading by ``idnumber``, never by creating
    again)."""

    def reread(keys: list[int]) -> dict[int, Any]:
        ids = [actions[k].contact_id for k in keys]
        found = {str(u.get("idnumber")): u for u in moodle.get_users_by_field("idnumber", ids)}
        return {k: found[actions[k].contact_id] for k in keys if actions[k].contact_id in found}

    bisect: Bisector[int] = Bisector(moodle.create_users, CREATE_FUNCTION, reread=reread)
    sent = bisect(list(range(len(actions))), [a.payload for a in actions])
    return [
        Outcome(actions[s.key], int(s.answer["id"]), written=True)
        if s.ok
        else Outcome(actions[s.key], actions[s.key].moodle_id, s.error, CREATE_FUNCTION)
        for s in sent
    ]


def update_batch(moodle: MoodleClient, actions: list[Action]) -> list[Outcome]:
    """Update the accounts of ``actions``; per-user warnings become those members' failures.

    Setting fields to values is idempotent, so a lost answer is sent again (no re-read).
    """

    def send(items: list[Mapping[str, Any]]) -> list[str]:
        # One answer per item: its warning code, "" when it went through.
        refused = _warnings(moodle.update_users(items))
        return [refused.get(int(item["id"]), "") for item in items]

    bisect: Bisector[int] = Bisector(send, UPDATE_FUNCTION)
    sent = bisect(list(range(len(actions))), [_item(a) for a in actions])
    outcomes = []
    for s in sent:
        action = actions[s.key]
        code = s.error or (moodle_code(s.answer) if s.answer else "")
        if code:
            outcomes.append(Outcome(action, action.moodle_id, code, UPDATE_FUNCTION))
        else:
            outcomes.append(Outcome(action, action.moodle_id, written=True))
    return outcomes


def _warnings(warnings: list[dict[str, Any]]) -> dict[int, str]:
    """User id -> warning code of ``core_user_update_users``' per-user warnings."""
    refused: dict[int, str] = {}
    for warning in warnings:
        if not isinstance(warning, dict):
            continue
        try:
            refused[int(warning.get("itemid"))] = str(warning.get("warningcode") or "error")
        except (TypeError, ValueError):
            code = moodle_code(str(warning.get("warningcode") or ""))
            log.warning("moodle update warning without a user id: %s", code)
    return refused


def _item(action: Action) -> dict[str, Any]:
    """The create or update item of an action (updates carry the account id)."""
    if action.kind in CREATES:
        return action.payload
    return {"id": action.moodle_id, **action.payload}
