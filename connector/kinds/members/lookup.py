"""Moodle calls of a member run kept in flight together, from threads with their own clients.

A first sync of 50,000 members makes about a thousand Moodle calls; sent one after the other,
each waits for the network and for Moodle in turn. Independent calls (the lookups of a chunk,
the create batches) are therefore sent a few at a time. The number of calls does not change;
only the waiting overlaps.

:class:`MoodleClient` is not meant to be shared between threads, so every thread gets its own
(:class:`ThreadClients`); their call counts are added to the run's main client at the end, so
``ctx.moodle.calls`` still counts every call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from connector.clients.moodle.client import MoodleClient

# Lookups in flight at once; a few are enough to hide latency without crowding Moodle.
DEFAULT_THREADS = 4


class ThreadClients:
    """One Moodle client per thread, made like the main one; counts merged back on close."""

    def __init__(self, moodle: MoodleClient) -> None:
        self.moodle = moodle
        self._local = threading.local()
        self._clients: list[MoodleClient] = []
        self._lock = threading.Lock()

    def get(self) -> MoodleClient:
        """This thread's client."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = type(self.moodle)(self.moodle.settings)
            client.sleep = self.moodle.sleep  # the same retry waits as the main client
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Add the threads' call counts to the main client and close their connections."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            self.moodle.calls.update(client.calls)
            session = getattr(client, "session", None)
            if session is not None:
                session.close()


class ParallelLookup:
    """Batched ``core_user_get_users_by_field`` over a small thread pool."""

    def __init__(self, moodle: MoodleClient, threads: int = DEFAULT_THREADS) -> None:
        self.moodle = moodle
        self.threads = max(1, threads)
        self.batch = max(1, int(moodle.settings.max_batch_items))
        self._clients = ThreadClients(moodle)
        # Callable from several threads at once (the run's and its prefetcher): the calls
        # themselves are always made from the pool's threads, never with the main client.
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            self.threads, thread_name_prefix="moodle-lookup"
        )

    def by_fields(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, list[dict[str, Any]]]:
        """Users whose ``field`` is one of the values, for each field of ``wanted``."""
        jobs = [
            (field, list(values[start : start + self.batch]))
            for field, values in wanted.items()
            for start in range(0, len(values), self.batch)
        ]
        found: dict[str, list[dict[str, Any]]] = {field: [] for field in wanted}
        if self._pool is None:
            raise RuntimeError("ParallelLookup used after close()")
        futures: list[tuple[str, Future[list[dict[str, Any]]]]] = [
            (field, self._pool.submit(self._lookup, field, values)) for field, values in jobs
        ]
        for field, future in futures:
            found[field].extend(future.result())
        return found

    def _lookup(self, field: str, values: list[str]) -> list[dict[str, Any]]:
        return list(self._clients.get().get_users_by_field(field, values))

    def close(self) -> None:
        """Stop the threads and add their call counts to the main client's."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._clients.close()
