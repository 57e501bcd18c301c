"""Scripted faults for the loopback sandboxes (shared by the Moodle and Salesforce stand-ins).

A test queues faults per function (a Moodle wsfunction or a Salesforce operation name, or ``"*"``
for any), and the sandbox asks :meth:`FaultPlan.take` once per incoming call. Each queued fault
fires ``times`` times, in the order queued; faults for the exact function are used before ``"*"``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

ANY = "*"

FAULTS: frozenset[str] = frozenset(
    {"http503", "timeout", "drop", "lock_row", "invalid_session", "budget_exhausted"}
)


class FaultPlan:
    """A thread-safe queue of faults per function name.

    ``supported`` limits the fault names :meth:`add` accepts (a sandbox passes the ones it can
    act out, so a test asking for an impossible fault fails at once instead of silently).
    """

    def __init__(self, supported: Iterable[str] = FAULTS) -> None:
        self.supported = frozenset(supported)
        self._lock = threading.Lock()
        # function -> deque of [fault, remaining]; a list so the count can be decremented in place.
        self._queues: dict[str, deque[list]] = {}
        self.fired: list[tuple[str, str]] = []  # (function, fault) actually taken, for assertions

    def add(self, function: str, fault: str, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` calls of ``function`` ("*" = any function)."""
        if fault not in self.supported:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(self.supported)}")
        if not function:
            raise ValueError("function must be a function name or '*'")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        with self._lock:
            self._queues.setdefault(function, deque()).append([fault, times])

    def take(self, function: str) -> str | None:
        """Pop the next fault for ``function`` (or for "*"), or None when none is queued."""
        with self._lock:
            for key in (function, ANY):
                queue = self._queues.get(key)
                if not queue:
                    continue
                entry = queue[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    queue.popleft()
                self.fired.append((function, entry[0]))
                return entry[0]
            return None

    def pending(self) -> int:
        """How many fault firings are still queued, over all functions."""
        with self._lock:
            return sum(entry[1] for queue in self._queues.values() for entry in queue)

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._queues.clear()
