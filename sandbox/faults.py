"""Scripted faults for the loopback sandboxes (shared by the Moodle and Salesforce stand-ins).

A test queues faults per function (a Moodle wsfunction or a Salesforce operation name, or ``"*"``
for any), and the sandbox asks :meth:`FaultPlan.take` once per incoming call. Each queued fault
fires ``times`` times, in the order queued; faults for the exact function are used before ``"*"``.
:class:`FirstCallRace` acts out the race of concurrent first calls to a fresh Moodle site.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

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


class FirstCallRace:
    """The race of concurrent first calls after a Moodle site starts (issue 13).

    Every web-service call runs ``enrol_check_plugins`` for the token's user, which inserts the
    user preference ``last_time_enrolments_synced`` when it is missing (``webservice/lib.php``,
    ``lib/enrollib.php``). Calls that overlap the first one all see it missing, and the losers of
    the insert answer ``dmlwriteexception`` whatever the function, read or write; nothing of
    their function ran. Once the first call is done the preference exists and the race is over.

    Disarmed until :meth:`arm`. Armed, the first call to arrive wins and is held ``hold`` seconds
    (the enrolment sync is slow on a real site), and at most ``losers`` calls that arrive while
    it is in flight lose. A server asks :meth:`run` once per call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed = False
        self._in_flight = False
        self._losers = 0
        self.hold = 0.0
        self.lost = 0  # calls that answered dmlwriteexception since the last arm

    def arm(self, losers: int = 3, hold: float = 0.3) -> None:
        """Make the next calls race: up to ``losers`` of those overlapping the first one lose."""
        if losers < 1:
            raise ValueError(f"losers must be >= 1, got {losers}")
        if hold < 0:
            raise ValueError(f"hold must be >= 0, got {hold}")
        with self._lock:
            self._armed, self._in_flight = True, False
            self._losers, self.hold, self.lost = losers, hold, 0

    @property
    def armed(self) -> bool:
        """True until the winning call has finished."""
        with self._lock:
            return self._armed

    def run(
        self, call: Callable[[], T], lost: Callable[[], T], wait: Callable[[float], object]
    ) -> T:
        """Run ``call``, or answer ``lost()`` for a loser; ``wait`` holds the winner."""
        with self._lock:
            role = "pass"
            if self._armed and not self._in_flight:
                self._in_flight, role = True, "win"
            elif self._armed and self._losers > 0:
                self._losers -= 1
                self.lost += 1
                role = "lose"
        if role == "lose":
            return lost()
        if role == "pass":
            return call()
        try:
            wait(self.hold)
            return call()
        finally:
            with self._lock:
                self._armed = self._in_flight = False
