"""Group commit for the inbox: the deliveries of one process line up, and the first one writes.

Every webhook must be stored durably before it is acknowledged. Committed one by one, each
delivery pays for its own fsync and, with several threads and processes, queues for the database's
single write lock; SQLite's busy handler then sleeps in growing steps (up to 100 ms) between
attempts, which is where the long tail of the acknowledgement latency came from
(``bench/webhooks.py``: p99 250-350 ms at 8 senders).

Here the request threads of a process line up per state database. The first in line writes: it
takes every delivery waiting behind it, stores them all in ONE transaction (one fsync), wakes each
with its own result, then wakes the next in line, which writes what gathered meanwhile. So the
batch size follows the load: one delivery when idle (no added wait, and no thread switch), dozens
under a burst. Nothing is acknowledged before its batch is committed, and a failed batch fails
every request in it (each answers 503 and the sender delivers again).

There is no writer thread. Handing each batch to one and back took two thread switches besides
the requests' own wake-ups: a two-row store, one at a time, cost the process 0.26-0.31 ms of CPU
that way, against 0.21 ms now and 0.16-0.17 ms for its statement alone (PostgreSQL;
``bench/webhook_costs.py`` measures it, ``bench/thread_writer.py`` is the ``group-v5`` baseline).
Under load, the difference is within this machine's noise on PostgreSQL. The price:
the request whose batch is being written waits for the database itself, as long as it takes;
the ones behind it give up after ``WAIT_SECONDS`` (:class:`~connector.state.inbox.StoreTimeout`,
answered 503), withdrawn from the line if their batch had not started.

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
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from connector.state.database import StateDB
from connector.state.inbox import Notice, StoreResult, StoreTimeout, store_batch

log = logging.getLogger(__name__)

# A batch holds at most this many notices (one Outbound Message carries up to 100).
MAX_BATCH_NOTICES = 2000
# A connection unused this long goes back to the pool before the next batch (see _commit).
IDLE_SECONDS = 5.0
# A request gives up waiting for the batch ahead of it, or its own, after this long: the
# database hangs.
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


@dataclass(eq=False)
class _Delivery:
    """One request's notices in the queue, and how its batch ended."""

    notices: Sequence[Notice]
    # Signalled when the delivery's batch has ended, or when it is first in the queue (its turn
    # to write). A Condition on the writer's lock: waking one request wakes no other.
    turn: threading.Condition
    taken: bool = False  # in a batch being written: may be stored, cannot be withdrawn
    done: bool = False
    result: StoreResult | None = None
    error: BaseException | None = None


class InboxWriter:
    """The group commit of one state database in this process; see the module docstring."""

    def __init__(self, db: StateDB) -> None:
        self._db = weakref.ref(db)
        self._sqlite = db.engine.dialect.name == "sqlite"
        database = db.engine.url.database if self._sqlite else None
        self._lock_path = (
            Path(database + "-inbox.lock") if database and database != ":memory:" else None
        )
        self._lock_file: int | None = None
        self._lock = threading.Lock()
        # Deliveries in arrival order. The first ones are the batch being written, by the
        # request that was first; the rest wait for it to end.
        self._queue: deque[_Delivery] = deque()
        self._conn: Connection | None = None
        self._last_used = 0.0
        self._pid = os.getpid()
        self.stats = WriterStats()

    def submit(self, notices: Sequence[Notice]) -> StoreResult:
        """Store ``notices`` in the next batch, and return when it is committed (or failed).

        Raises what the batch's statement raised (in every request of the batch), or
        :class:`StoreTimeout` when the batch ahead, or the batch this delivery is in (written
        by the request ahead of it), has not ended after ``WAIT_SECONDS``.
        """
        me = _Delivery(notices, threading.Condition(self._lock))
        with self._lock:
            self._queue.append(me)
            try:
                self._wait_for_turn(me)
            except BaseException:
                if not me.taken:
                    self._withdraw(me)  # never written: nothing of it is stored
                raise
            batch = None if me.done else self._take([])  # first in line: this one writes
        if batch is not None:
            self._write(batch)
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _wait_for_turn(self, me: _Delivery) -> None:
        """Wait (lock held) until ``me``'s batch has ended, or ``me`` is first in line."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not me.done and self._queue[0] is not me:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not me.turn.wait(remaining):
                if me.done or self._queue[0] is me:
                    return
                raise StoreTimeout(f"no answer from the inbox write in {WAIT_SECONDS:g} s")

    def _withdraw(self, me: _Delivery) -> None:
        """Take ``me`` (not in a batch) out of the line (lock held); if it was first, the
        next one's turn."""
        first = self._queue[0] is me
        self._queue.remove(me)
        if first and self._queue:
            self._queue[0].turn.notify()

    def _take(self, batch: list[_Delivery]) -> list[_Delivery]:
        """Add the queued deliveries after ``batch`` to it, up to ``MAX_BATCH_NOTICES``.

        Called with the lock held. ``batch`` is always the front of the queue.
        """
        size = sum(len(delivery.notices) for delivery in batch)
        for delivery in itertools.islice(self._queue, len(batch), None):
            if batch and size + len(delivery.notices) > MAX_BATCH_NOTICES:
                break  # the rest makes the next batch
            delivery.taken = True
            batch.append(delivery)
            size += len(delivery.notices)
        return batch

    def _write(self, batch: list[_Delivery]) -> None:
        """Commit ``batch`` (the front of the queue) and hand each delivery its outcome."""
        results: list[StoreResult] | None = None
        error: Exception | None = None
        try:
            db = self._db()
            if db is None:  # cannot be: the request storing the first delivery holds it
                raise RuntimeError("the state database was disposed of")
            started = time.perf_counter()
            with self._process_lock():
                locked = time.perf_counter()
                with self._lock:  # deliveries that arrived while another process wrote join in
                    self._take(batch)
                results = self._commit(db, [delivery.notices for delivery in batch])
            self._count(len(batch), locked - started, time.perf_counter() - locked)
        except Exception as exc:  # noqa: BLE001  (raised in every request of the batch)
            error = exc
        finally:
            with self._lock:
                for n, delivery in enumerate(batch):
                    self._queue.popleft()
                    if results is not None:
                        delivery.result = results[n]
                    else:
                        # The write was interrupted (KeyboardInterrupt, SystemExit) if not
                        # failed: the batch may or may not be committed.
                        delivery.error = error or StoreTimeout("the inbox write was interrupted")
                    delivery.done = True
                    delivery.turn.notify()
                if self._queue:
                    self._queue[0].turn.notify()  # its turn: it writes what waits now

    def _count(self, deliveries: int, lock_wait: float, transaction: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.deliveries += deliveries
        stats.largest_batch = max(stats.largest_batch, deliveries)
        stats.lock_wait_seconds += lock_wait
        stats.transaction_seconds += transaction

    def _commit(self, db: StateDB, batch: list[Sequence[Notice]]) -> list[StoreResult]:
        # The writer keeps its connection between batches: a checkout per batch (with the pool's
        # pre-ping on PostgreSQL) was one more round trip per transaction. One unused for a
        # while goes back to the pool first, so that the checkout tests it: after a quiet spell
        # a server restart costs a reconnect, not a failed batch.
        now = time.monotonic()
        if self._conn is not None and now - self._last_used > IDLE_SECONDS:
            self._close()
        self._last_used = now
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

    def close(self) -> None:
        """Give the writer's connection back to the pool (at :meth:`StateDB.dispose`).

        Not while a batch is being written (that batch keeps it), and not in a forked child,
        whose copy of the connection is its parent's session.
        """
        with self._lock:
            if not self._queue and os.getpid() == self._pid:
                self._close()

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
            db.on_dispose(entry[1].close)
        return entry[1]
