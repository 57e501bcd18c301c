"""Calls kept in flight together: a small thread pool, a bound on what is outstanding, and
results handed back in the caller's thread, in the order the calls were sent.

A sync's cost is round trips, and each waits for the network and the far end in turn. The calls
of a run that do not depend on each other (the lookups of a chunk, full write batches, the
Salesforce write-back while Moodle is written) are therefore sent a few at a time. The number of
calls does not change; only the waiting overlaps.

Without threads (``threads=0``) every call is made at once in the caller's thread, so the same
code serves ``concurrency = 1``.

If a call raised, :meth:`InFlight.settle` re-raises it in the caller's thread (the run stops on
it) — but only after every other outstanding call has finished and the successful ones have been
delivered, so what was applied before a stop is counted and written back.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class InFlight(Generic[T]):
    """At most ``limit`` calls outstanding on ``threads`` threads; results go to ``deliver``."""

    def __init__(
        self,
        deliver: Callable[[T], None],
        threads: int,
        *,
        name: str,
        limit: int | None = None,
    ) -> None:
        self.deliver = deliver
        self.threads = max(0, threads)
        self.limit = max(1, limit if limit is not None else self.threads)
        self._pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix=name) if self.threads else None
        )
        self._futures: collections.deque[Future[T]] = collections.deque()

    @property
    def threaded(self) -> bool:
        """Whether calls go to threads (else they run at once in the caller's thread)."""
        return self._pool is not None

    def submit(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> None:
        """Send ``call``; waits first while ``limit`` calls are outstanding."""
        if self._pool is None:
            self.deliver(call(*args, **kwargs))
            return
        while len(self._futures) >= self.limit:
            self._deliver_head()
        self._futures.append(self._pool.submit(call, *args, **kwargs))
        self.poll()

    def poll(self) -> None:
        """Deliver the results that are ready, in order (stops at the first one still running)."""
        while self._futures and self._futures[0].done():
            self._deliver_head()

    def settle(self) -> None:
        """Wait for every outstanding call and deliver its result, in order."""
        while self._futures:
            self._deliver_head()

    def close(self) -> None:
        """Stop the threads (after the calls they are in)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _deliver_head(self) -> None:
        future = self._futures.popleft()
        try:
            result = future.result()
        except BaseException:
            # The run stops on this error. The calls behind it may have gone through: deliver
            # those first, so the counts and the write-back cover everything applied.
            self._deliver_rest()
            raise
        self.deliver(result)

    def _deliver_rest(self) -> None:
        while self._futures:
            future = self._futures.popleft()
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001  (the first error is the one raised)
                log.info("a call behind a failed one failed too: %s", type(exc).__name__)
                continue
            self.deliver(result)
