"""Send the items of one Moodle web-service function in full batches, with bisection and re-read.

One :class:`BatchSender` per function (enrol, add group members, assign roles, create groups...):
items are buffered and sent when a batch is full, each call bounded by ``max_batch_items`` and by
form fields against PHP's ``max_input_vars`` (:meth:`MoodleClient.split`). Then:

- an all-or-nothing call (``enrol_manual_enrol_users``, ``core_group_add_group_members``,
  ``core_role_assign_roles``: one bad row fails the call and nothing of it is applied) that
  Moodle refuses is bisected until the bad rows are alone; each is reported with its code, the
  others go through;
- a call that is *not* all-or-nothing (``all_or_nothing=False``: part of a refused batch may
  stay) is followed by a re-read after any refusal: what exists is done, only the rest is
  bisected and sent again. (Every Moodle 4.5 write mentorsync makes turned out all-or-nothing
  in the real-Moodle tier, ``core_group_create_groups`` included; the mode is kept for sites
  that answer otherwise and is tested.)
- a write whose answer was lost (:class:`UnknownOutcomeError`) is resolved by the re-read when
  the sender has one, otherwise sent once more (the void functions are idempotent: adding an
  existing member, assigning an existing role, unenrolling a non-enrolled user all answer
  ``null``).

Outcomes go to ``on_done`` as :class:`Sent` items, in the caller's thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from connector.errors import MoodleRecordError, UnknownOutcomeError

log = logging.getLogger(__name__)

K = TypeVar("K")
# How often one batch may end with an unknown outcome before the run stops.
MAX_UNKNOWN_OUTCOMES = 2
_CODE_SHAPE = re.compile(r"^[a-z0-9_.:-]{1,60}$")


class Splitter(Protocol):
    """What a sender needs of the Moodle client: its batch limits."""

    def split(
        self, list_key: str, items: Sequence[Mapping[str, Any]]
    ) -> list[list[Mapping[str, Any]]]:
        """``items`` in batches of one call each."""
        ...


@dataclass(frozen=True)
class Sent(Generic[K]):
    """What became of one item: ``error`` is ``moodle:<errorcode>`` when Moodle refused it;
    ``answer`` is the item's part of the answer (a created group), when there is one."""

    key: K
    error: str = ""
    answer: Any = None

    @property
    def ok(self) -> bool:
        """Whether the item went through."""
        return not self.error


Send = Callable[[list[Mapping[str, Any]]], Any]
"""Makes one call with a batch of items; returns the answer (a list per item, or None)."""
Reread = Callable[[list[K]], dict[K, Any]]
"""Which of these keys exist in Moodle now (key -> what Moodle holds for it)."""


class BatchSender(Generic[K]):
    """Buffers the items of one function and sends them in full batches (see module doc)."""

    def __init__(
        self,
        moodle: Splitter,
        list_key: str,
        send: Send,
        on_done: Callable[[list[Sent[K]]], None],
        *,
        all_or_nothing: bool = True,
        reread: Reread[K] | None = None,
        batch_items: int = 200,
    ) -> None:
        self.moodle = moodle
        self.list_key = list_key
        self.send = send
        self.on_done = on_done
        self.all_or_nothing = all_or_nothing
        self.reread = reread
        self.batch_items = max(1, batch_items)
        self.calls = 0
        self._keys: list[K] = []
        self._items: list[Mapping[str, Any]] = []

    def add(self, key: K, item: Mapping[str, Any]) -> None:
        """Queue one item; sends when a batch is full."""
        self._keys.append(key)
        self._items.append(item)
        if len(self._items) >= self.batch_items:
            self._send_full(final=False)

    def flush(self) -> None:
        """Send everything queued."""
        self._send_full(final=True)

    def _send_full(self, *, final: bool) -> None:
        if not self._items:
            return
        batches = self.moodle.split(self.list_key, self._items)
        if not final and len(batches) > 1:
            batches = batches[:-1]  # a partial last batch waits for more items
        start = 0
        for batch in batches:
            keys = self._keys[start : start + len(batch)]
            items = self._items[start : start + len(batch)]
            start += len(batch)
            self.on_done(self._send(keys, items, unknown=0))
        self._keys, self._items = self._keys[start:], self._items[start:]

    def _send(self, keys: list[K], items: list[Mapping[str, Any]], unknown: int) -> list[Sent[K]]:
        bisector = Bisector(
            _Counting(self.send, self), self.list_key, self.all_or_nothing, self.reread
        )
        return bisector(keys, items, unknown)


class _Counting:
    """``send`` that counts its calls on ``owner.calls``."""

    def __init__(self, send: Send, owner: BatchSender[Any]) -> None:
        self.send = send
        self.owner = owner

    def __call__(self, items: list[Mapping[str, Any]]) -> Any:
        self.owner.calls += 1
        return self.send(items)


def moodle_code(raw: str) -> str:
    """A safe error code for logs and Salesforce: ``moodle:<code>``, or ``moodle:error`` when the
    upstream code does not look like one (Moodle sometimes puts HTML there)."""
    code = str(raw or "").lower()
    return f"moodle:{code}" if _CODE_SHAPE.match(code) else "moodle:error"


@dataclass(frozen=True)
class Bisector(Generic[K]):
    """Sends one batch with one call and says what became of each key: bisected when Moodle
    refuses it, resolved by ``reread`` (or sent again, when there is none) when the answer was
    lost. It keeps no state, so it can be used from any thread."""

    send: Send
    label: str
    all_or_nothing: bool = True
    reread: Reread[K] | None = None

    def __call__(
        self, keys: list[K], items: list[Mapping[str, Any]], unknown: int = 0
    ) -> list[Sent[K]]:
        """The outcome of every key of this batch, in order."""
        try:
            answer = self.send(items)
        except MoodleRecordError as exc:
            return self._refused(keys, items, exc, unknown)
        except UnknownOutcomeError:
            return self._resolve_unknown(keys, items, unknown + 1)
        answers = answer if isinstance(answer, list) else [None] * len(keys)
        if len(answers) != len(keys):
            raise UnknownOutcomeError(
                f"Moodle {self.label}: {len(answers)} results for {len(keys)} items"
            )
        return [Sent(k, answer=a) for k, a in zip(keys, answers, strict=True)]

    def _refused(
        self, keys: list[K], items: list[Mapping[str, Any]], exc: MoodleRecordError, unknown: int
    ) -> list[Sent[K]]:
        done: list[Sent[K]] = []
        if not self.all_or_nothing and self.reread is not None:
            # Part of the batch may have been applied before the bad item: learn which.
            done, keys, items = self._split_existing(keys, items)
            if not keys:
                return done
        if len(keys) == 1:
            return [*done, Sent(keys[0], error=moodle_code(exc.errorcode))]
        log.info(
            "moodle %s batch of %d refused (%s), bisecting", self.label, len(keys), exc.errorcode
        )
        middle = len(keys) // 2
        return (
            done
            + self(keys[:middle], items[:middle], unknown)
            + self(keys[middle:], items[middle:], unknown)
        )

    def _resolve_unknown(
        self, keys: list[K], items: list[Mapping[str, Any]], unknown: int
    ) -> list[Sent[K]]:
        if self.reread is None:
            if unknown >= MAX_UNKNOWN_OUTCOMES:
                raise UnknownOutcomeError(f"Moodle {self.label}: outcome unknown {unknown} times")
            # The void functions and updates are idempotent: sending again is safe.
            log.warning(
                "moodle %s outcome unknown for %d items, sending again", self.label, len(keys)
            )
            return self(keys, items, unknown)
        total = len(keys)
        done, keys, items = self._split_existing(keys, items)
        log.warning(
            "moodle %s outcome unknown for %d items: %d found on re-read, %d to send again",
            self.label,
            total,
            len(done),
            len(keys),
        )
        if not keys:
            return done
        if unknown >= MAX_UNKNOWN_OUTCOMES:
            raise UnknownOutcomeError(
                f"Moodle {self.label}: outcome unknown {unknown} times; stopping the run"
            )
        return done + self(keys, items, unknown)

    def _split_existing(
        self, keys: list[K], items: list[Mapping[str, Any]]
    ) -> tuple[list[Sent[K]], list[K], list[Mapping[str, Any]]]:
        """What the re-read finds (done), and the keys and items still to send."""
        assert self.reread is not None
        existing = self.reread(keys)
        done = [Sent(k, answer=existing[k]) for k in keys if k in existing]
        rest = [(k, i) for k, i in zip(keys, items, strict=True) if k not in existing]
        return done, [k for k, _ in rest], [i for _, i in rest]
