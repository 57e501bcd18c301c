"""Group commit for the inbox: one writer thread per process and state database.

Every webhook must be stored durably before it is acknowledged. Committed one by one, each
delivery pays for its own fsync and, with several threads and processes, queues for the database's
single write lock; SQLite's busy handler then sleeps in growing steps (up to 100 ms) between
attempts, which is where the long tail of the acknowledgement latency came from
(``bench/webhooks.py``: p99 250-350 ms at 8 senders).

Here the request threads hand their notices to one writer thread and wait. The writer takes
everything that is waiting, stores it in ONE transaction (one fsync), then wakes each request with
its own result. While one commit is being written the next batch gathers, so the batch size follows
the load: one delivery when idle (no added wait), dozens under a burst. Nothing is acknowledged
before its batch is committed, and a failed batch fails every request in it (each answers 503 and
the sender delivers again).

A batch is ONE SQL statement (:func:`connector.state.inbox.store_batch`: an INSERT ... SELECT over
the batch as one parameter, ON CONFLICT DO NOTHING RETURNING), sent as written below SQLAlchemy
(on PostgreSQL with libpq's prepared-statement call; its rows go in in key order, so writers of
two processes never deadlock). On PostgreSQL the writer's connection is in autocommit, so the
statement is its own transaction: one round trip and one WAL flush per batch (before: BEGIN +
SELECT, INSERT, COMMIT, three round trips with the server, gunicorn and the load generator
sharing two cores). Writers of several processes need no coordination there: the unique key
decides.

On SQLite the statement runs between ``BEGIN IMMEDIATE`` and ``COMMIT``: the write lock is taken
first, so the transaction never has to be retried for a lock it could not upgrade. Between
processes, writers on one SQLite file also serialise on an ``flock`` of a sidecar file, which wakes
the next writer as soon as the lock is free instead of after a busy-handler sleep.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from connector.state.database import StateDB
from connector.state.inbox import Notice, StoreResult, StoreTimeout, store_batch

log = logging.getLogger(__name__)

# A batch holds at most this many notices (one Outbound Message carries up to 100).
MAX_BATCH_NOTICES = 2000
# An idle writer thread ends after this long; the next store starts a new one.
IDLE_SECONDS = 5.0
# A request gives up waiting after this long (the writer is stuck: the database hangs).
WAIT_SECONDS = 60.0


@dataclass
class WriterStats:
    """What one process's writer did: for ``bench/webhooks.py`` and the curious."""

    batches: int = 0
    deliveries: int = 0
    # Seconds spent waiting for the flock (other processes' commits) and in transactions.
    lock_wait_seconds: float = 0.0
    transaction_seconds: float = 0.0
    largest_batch: int = 0


_Item = tuple[Sequence[Notice], "Future[StoreResult]"]


class InboxWriter:
    """The writer thread of one state database in this process; see the module docstring."""

    def __init__(self, db: StateDB) -> None:
        self._db = weakref.ref(db)
        self._sqlite = db.engine.dialect.name == "sqlite"
        database = db.engine.url.database if self._sqlite else None
        self._lock_path = (
            Path(database + "-inbox.lock") if database and database != ":memory:" else None
        )
        self._lock_file: int | None = None
        self._cond = threading.Condition()
        self._waiting: list[_Item] = []
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self.stats = WriterStats()

    def submit(self, notices: Sequence[Notice]) -> StoreResult:
        """Queue ``notices`` for the next batch and wait until it is committed (or failed)."""
        future: Future[StoreResult] = Future()
        with self._cond:
            self._waiting.append((notices, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="inbox-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            return future.result(timeout=WAIT_SECONDS)
        except TimeoutError:
            raise StoreTimeout(f"the inbox writer did not answer in {WAIT_SECONDS:g} s") from None

    def _take(self, batch: list[_Item] | None = None) -> list[_Item] | None:
        """The next batch (waiting for one), or None when idle long enough to end the thread.

        With ``batch``, adds what is waiting now to it, without waiting.
        """
        with self._cond:
            if batch is None:
                if not self._waiting:
                    self._cond.wait(IDLE_SECONDS)
                if not self._waiting:
                    # Under the lock: a submit from now on starts a new thread, which must find
                    # no connection of this one's.
                    self._thread = None
                    self._close()
                    return None
                batch = []
            size = sum(len(notices) for notices, _ in batch)
            while self._waiting:
                if batch and size + len(self._waiting[0][0]) > MAX_BATCH_NOTICES:
                    break  # the rest makes the next batch
                item = self._waiting.pop(0)
                batch.append(item)
                size += len(item[0])
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            db = self._db()
            if db is None:  # the database object is gone; nobody can be waiting on it
                return
            try:
                started = time.perf_counter()
                with self._process_lock():
                    locked = time.perf_counter()
                    # Deliveries that arrived while another process held the lock join in.
                    self._take(batch)
                    results = self._commit(db, [notices for notices, _ in batch])
                self._count(len(batch), locked - started, time.perf_counter() - locked)
            except Exception as exc:  # noqa: BLE001  (re-raised in every waiting request)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            finally:
                del db  # no strong reference while idle: the StateDB may be disposed of
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    def _count(self, deliveries: int, lock_wait: float, transaction: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.deliveries += deliveries
        stats.largest_batch = max(stats.largest_batch, deliveries)
        stats.lock_wait_seconds += lock_wait
        stats.transaction_seconds += transaction

    def _commit(self, db: StateDB, batch: list[Sequence[Notice]]) -> list[StoreResult]:
        # The writer keeps its connection while it runs: a checkout per batch (with the pool's
        # pre-ping on PostgreSQL) was one more round trip per transaction.
        if self._conn is None:
            conn = db.engine.connect()
            if not self._sqlite:
                # The batch is one INSERT: in autocommit it is its own transaction, one round
                # trip instead of three (BEGIN with the statement, the statement, COMMIT).
                conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        conn = self._conn
        try:
            if not self._sqlite:
                return store_batch(conn, batch)
            # pysqlite would begin a deferred transaction at the INSERT; BEGIN IMMEDIATE takes
            # the write lock up front, so the statement never fails to upgrade a read lock that
            # another connection's commit made stale (SQLITE_BUSY_SNAPSHOT, not retried).
            # (SQLAlchemy only tracks the transaction; the driver issues no BEGIN of its own.)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            results = store_batch(conn, batch)
            conn.commit()
            return results
        except BaseException:
            # Discard the connection: closing it rolls back whatever the failed commit left
            # open. (After a commit that failed, SQLAlchemy no longer counts the transaction
            # as open, and would hand the connection back to the pool with the batch's rows
            # still in it, uncommitted but visible to its next user.) The next batch connects
            # anew, which also gets over a server restart.
            self._conn = None
            conn.invalidate()
            conn.close()
            raise

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    @contextmanager
    def _process_lock(self) -> Iterator[None]:
        """Between processes writing one SQLite file: an exclusive ``flock`` (else nothing)."""
        if self._lock_path is None:
            yield
            return
        if self._lock_file is None:
            self._lock_file = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)


_writers: weakref.WeakKeyDictionary[StateDB, tuple[int, InboxWriter]] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(db: StateDB) -> InboxWriter:
    """The writer of ``db`` in this process (a new one after a fork: threads do not survive it)."""
    pid = os.getpid()
    with _writers_lock:
        entry = _writers.get(db)
        if entry is None or entry[0] != pid:
            entry = (pid, InboxWriter(db))
            _writers[db] = entry
        return entry[1]
