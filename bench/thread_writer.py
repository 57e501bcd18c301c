"""``group-v5``'s inbox writer: the group commit as it was, on a writer thread of its own.

Each request handed its notices to the process's writer thread and waited on a ``Future``; the
thread took everything waiting, committed it as one batch (the same statement and connection
handling as today's :class:`~connector.state.inbox_writer.InboxWriter`, whose ``_commit`` it
runs), and woke each request with its result. That is two thread switches per batch besides the
requests' own wake-ups (request to writer, writer to request): a two-row store, one at a time on
PostgreSQL, cost 0.26-0.31 ms of the process's CPU, against 0.16-0.17 ms for the statement
alone. Today the first request in line writes its batch itself (0.21 ms).

:func:`bench.inbox_baselines.install` swaps this class in for the modes before ``group``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from connector.state import inbox_writer
from connector.state.database import StateDB
from connector.state.inbox import Notice, StoreResult, StoreTimeout

_Item = tuple[Sequence[Notice], "Future[StoreResult]"]


class ThreadWriter(inbox_writer.InboxWriter):
    """The writer thread of one state database in this process (see the module docstring)."""

    def __init__(self, db: StateDB) -> None:
        super().__init__(db)
        self._cond = threading.Condition()
        self._waiting: list[_Item] = []
        self._thread: threading.Thread | None = None

    def submit(self, notices: Sequence[Notice]) -> StoreResult:
        """Queue ``notices`` for the writer thread's next batch and wait for its outcome."""
        future: Future[StoreResult] = Future()
        with self._cond:
            self._waiting.append((notices, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            return future.result(timeout=inbox_writer.WAIT_SECONDS)
        except TimeoutError:
            raise StoreTimeout("the inbox writer did not answer in time") from None

    def _take_waiting(self, batch: list[_Item] | None = None) -> list[_Item] | None:
        """The next batch (waiting for one), or None when idle long enough to end the thread.

        With ``batch``, adds what is waiting now to it, without waiting.
        """
        with self._cond:
            if batch is None:
                if not self._waiting:
                    self._cond.wait(inbox_writer.IDLE_SECONDS)
                if not self._waiting:
                    self._thread = None
                    self._close()
                    return None
                batch = []
            size = sum(len(notices) for notices, _ in batch)
            while self._waiting:
                if batch and size + len(self._waiting[0][0]) > inbox_writer.MAX_BATCH_NOTICES:
                    break
                item = self._waiting.pop(0)
                batch.append(item)
                size += len(item[0])
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_waiting()
            if batch is None:
                return
            db = self._db()
            if db is None:
                return
            try:
                started = time.perf_counter()
                with self._process_lock():
                    locked = time.perf_counter()
                    self._take_waiting(batch)
                    results = self._commit(db, [notices for notices, _ in batch])
                self._count(len(batch), locked - started, time.perf_counter() - locked)
            except Exception as exc:  # noqa: BLE001  (re-raised in every waiting request)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            finally:
                del db
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)


@contextmanager
def writing_by_thread(db: StateDB) -> Iterator[None]:
    """Within: this process stores ``db``'s deliveries through a :class:`ThreadWriter`."""
    saved = inbox_writer._writers.get(db)
    inbox_writer._writers[db] = (os.getpid(), ThreadWriter(db))
    try:
        yield
    finally:
        if saved is None:
            del inbox_writer._writers[db]
        else:
            inbox_writer._writers[db] = saved
