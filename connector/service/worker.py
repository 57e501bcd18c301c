"""Background work: Huey tasks that drain the inbox, run the schedules and retry failed records.

How the pieces fit:

- The web service stores notifications in the inbox, then calls :meth:`Worker.wake` for the
  sync kinds that got rows. ``wake`` schedules one ``drain(kind)`` task ``coalesce_seconds``
  ahead, and skips scheduling while one is already due later: a burst of notifications (one
  message of 100, or 100 messages) becomes one drain.
- ``drain(kind)`` takes the kind's lock, leases ALL pending rows of the kind (up to
  :data:`DRAIN_BATCH` per run) and makes one ``run(ctx, SyncRequest(mode="ids", ids=...))``.
- ``tick`` is the only periodic task, every minute, on the one machine whose consumer runs with
  periodic tasks (``service.scheduler = true``). It sweeps the inbox (rows whose task was lost
  with a killed worker, or whose backoff is over, are drained again), enqueues the incremental
  run of every kind (that declares one, :class:`~connector.engine.kind.Schedule`) every
  ``service.incremental_minutes``, the full reconcile once a night (at ``service.nightly_hour``
  in ``programme.timezone``, or at the first tick in the three hours after it) as one task that
  runs the kinds one after the other in their declared nightly order (members, pairs,
  progress), and the retry of due failed records.
- Every run of a kind holds the lock ``kind:<name>`` (a row in the state database with an
  expiry, renewed from the run's progress hook), so two runs of one kind never overlap, on any
  machine. A lock left by a killed worker expires after ``service.lock_ttl_seconds``.
- Tasks carry ids only: kind names and modes. What to do is read from the state database.

Sync kinds are found through :mod:`connector.engine.kind` at run time, so kinds added later (pairs,
progress) are drained, scheduled and retried without changes here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable

from huey import Huey, crontab
from huey.consumer import Consumer
from sqlalchemy import select

from connector.config import Settings
from connector.context import Context
from connector.engine.kind import (
    ProgressHook,
    RunResult,
    RunStatus,
    SyncKind,
    SyncRequest,
)
from connector.errors import ConfigError, MentorsyncError
from connector.registry import kinds
from connector.service import usage
from connector.service.queue import init_schema, make_huey
from connector.service.schedule import Schedules, lock_name
from connector.state import bookkeeping, inbox, locks
from connector.state.database import FailedRecord, StateDB, utcnow

log = logging.getLogger(__name__)

# Most record ids in one drain run; a larger backlog is drained in several runs under one lock.
DRAIN_BATCH = 1000
# A nightly full run that finds its kind busy is retried this often, this many times.
FULL_RETRY_SECONDS = 60
FULL_RETRY_TIMES = 120
# On SIGTERM, running tasks get this long to finish before the consumer stops anyway.
SHUTDOWN_SECONDS = 30.0


class KindCrashed(Exception):
    """A sync kind raised something other than a mentorsync error: a bug.

    Raised in place of the original, which is logged by class and traceback frames only: its
    message may quote record data (a ``KeyError`` on an email), and Huey logs what a task raises.
    """

    def __init__(self, kind: str, code: str) -> None:
        self.code = code
        super().__init__(f"a run of {kind} raised {code} (see the log line before)")


class RunFailed(Exception):
    """A run ended with a mentorsync error; ``code`` says which, without PII."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


def error_code(exc: BaseException) -> str:
    """``ExceptionClass`` or ``ExceptionClass:code`` (Moodle errorcode, Salesforce errorCode)."""
    code = getattr(exc, "errorcode", None) or getattr(exc, "error_code", None)
    name = type(exc).__name__
    return f"{name}:{code}"[:200] if code else name


class Worker(Schedules):
    """The queue (a Huey instance), its tasks, and the state they work on.

    The web service builds one to enqueue drains; ``mentorsync worker`` builds one and runs its
    consumer. ``context_factory`` builds the per-thread :class:`Context` handed to sync kinds
    (tests pass their own).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        huey: Huey | None = None,
        db: StateDB | None = None,
        context_factory: Callable[[], Context] | None = None,
    ) -> None:
        self.settings = settings
        self.huey = huey if huey is not None else make_huey(settings.queue_url)
        self.db = db if db is not None else StateDB(settings.database_url)
        self._context_factory = context_factory or (lambda: Context(settings))
        self._local = threading.local()
        self._usage = usage.ApiUsage()
        self._contexts: list[Context] = []
        self._contexts_lock = threading.Lock()
        # kind -> monotonic time until which a scheduled drain is known to be pending.
        self._drain_due: dict[str, float] = {}
        # kind -> the lease end (epoch seconds) a drain that found the kind busy comes back at.
        self._comeback: dict[str, int] = {}
        self._drain_lock = threading.Lock()
        self.drain_task = self.huey.task(name="drain")(self.drain)
        self.run_task = self.huey.task(name="run_kind")(self.run_kind)
        self.retry_task = self.huey.task(name="retry_failures")(self.retry_failures)
        self.nightly_task = self.huey.task(name="nightly")(self.nightly)
        self.tick_task = self.huey.periodic_task(crontab(), name="tick")(self.tick)

    # --- enqueueing -----------------------------------------------------------------------

    def wake(self, kind_names: Iterable[str], delay: float | None = None) -> None:
        """Schedule one drain per kind ``delay`` seconds ahead (default ``coalesce_seconds``).

        Call it after the inbox rows are committed. While a drain scheduled by this process is
        still due, no other is scheduled: that drain will see the new rows. A queue that cannot
        be reached is logged, not raised: the rows are stored, and the sweeper enqueues them.
        """
        delay = self.settings.service.coalesce_seconds if delay is None else delay
        for kind in kind_names:
            now = time.monotonic()
            with self._drain_lock:
                # A small margin, so that a drain about to start (or started on a machine whose
                # clock runs ahead) is not counted on to see rows committed just now.
                if self._drain_due.get(kind, 0.0) > now + 0.25:
                    continue
                self._drain_due[kind] = now + delay
            try:
                self.drain_task.schedule((kind,), delay=delay)
            except Exception as exc:  # noqa: BLE001  (any queue backend error; the inbox keeps the work)
                with self._drain_lock:
                    self._drain_due.pop(kind, None)
                log.warning(
                    "queue unreachable, drain of %s left to the sweeper: %s",
                    kind,
                    type(exc).__name__,
                )

    # --- tasks ------------------------------------------------------------------------------

    def drain(self, kind: str) -> int:
        """Reconcile every record with pending inbox rows of ``kind``; return runs made.

        Rows go to ``done`` after a run that returned (per-record failures are the kind's
        failed records), or are backed off after a run that raised or stopped.
        """
        with self._drain_lock:
            # This drain is running now: a later wake() in this process must schedule anew.
            self._drain_due.pop(kind, None)
        sync_kind = kinds().get(kind)
        if sync_kind is None:
            log.warning("inbox rows for unknown sync kind %s left pending", kind)
            return 0
        svc = self.settings.service
        runs = 0

        def work(lease: locks.Lease) -> None:
            nonlocal runs
            while True:
                leased = inbox.lease(self.db, kind, DRAIN_BATCH, svc.inbox_lease_seconds)
                if not leased.row_ids:
                    return
                runs += 1
                if not self._run_leased(sync_kind, leased, lease):
                    return  # the run failed: stop, the rows are backed off

        if not self._locked(kind, work):
            # Busy. A live holder drains what it finds and wakes a drain for what is left
            # when it ends (see _locked). A holder that died cannot: come back when its lease
            # runs out, so a survivor takes the work over within the lease, not at the next
            # scheduler tick.
            left = locks.seconds_left(self.db, lock_name(kind))
            if left is not None:
                expiry = round(time.time() + left)
                with self._drain_lock:
                    # One come-back per lease end: a live holder renews (a new end), a dead
                    # one does not, and a come-back that finds the same lease waits no more.
                    scheduled = self._comeback.get(kind) == expiry
                    self._comeback[kind] = expiry
                if not scheduled:
                    self.drain_task.schedule((kind,), delay=left + 1.0)
        return runs

    def run_kind(self, kind: str, mode: str, attempt: int = 0) -> RunResult | None:
        """A scheduled run (``incremental`` or ``full``) of ``kind``.

        If the kind is busy, an incremental run is skipped (the next one covers it) and a full
        run is tried again a minute later.
        """
        sync_kind = kinds().get(kind)
        if sync_kind is None:
            log.warning("scheduled run of unknown sync kind %s skipped", kind)
            return None
        outcome: list[RunResult | None] = [None]

        def work(lease: locks.Lease) -> None:
            request = SyncRequest(mode=mode)  # type: ignore[arg-type]
            with contextlib.suppress(RunFailed):  # logged; the next scheduled run tries again
                outcome[0] = self._run(sync_kind, request, lease)

        if not self._locked(kind, work):
            if mode == "full" and attempt < FULL_RETRY_TIMES:
                self.run_task.schedule((kind, mode, attempt + 1), delay=FULL_RETRY_SECONDS)
            else:
                log.info("%s run of %s skipped: another run holds the lock", mode, kind)
        return outcome[0]

    def retry_failures(self, kind: str) -> int:
        """Run ``kind`` for its failed records whose retry is due; return how many were tried.

        A retried record the run neither cleared nor failed again is counted as failed again
        (with the previous error code), so a kind that forgets its bookkeeping cannot make a
        record retry every minute forever.
        """
        sync_kind = kinds().get(kind)
        if sync_kind is None:
            return 0
        tried = 0

        def work(lease: locks.Lease) -> None:
            nonlocal tried
            started = utcnow()
            with self.db.session() as session:
                due = bookkeeping.due_failures(session, kind, started)
            for start in range(0, len(due), DRAIN_BATCH):
                ids = tuple(due[start : start + DRAIN_BATCH])
                tried += len(ids)
                try:
                    self._run(sync_kind, SyncRequest(mode="ids", ids=ids), lease)
                except RunFailed:
                    break  # logged; the records are bumped below and retried later
            self._bump_untouched(kind, due, started)

        self._locked(kind, work)
        return tried

    def check_moodle_limit(self) -> None:
        """Measure Moodle's real ``max_input_vars`` once at start (PHP drops fields past it
        silently): a configured ``moodle.max_input_vars`` above it refuses the start with the
        key named. A Moodle that cannot be reached now is logged; the runs find out later."""
        from connector.clients.moodle.client import MoodleClient
        from connector.clients.moodle.site import check_max_input_vars

        quick = dataclasses.replace(self.settings.moodle, retry_attempts=1)
        client = MoodleClient(quick)
        try:
            limit = check_max_input_vars(client)
        except ConfigError:
            raise
        except MentorsyncError as exc:
            log.warning("moodle max_input_vars not measured at start: %s", exc.code)
            return
        finally:
            client.session.close()
        log.info("moodle keeps %d form fields of a call", limit.value)

    # --- the consumer ---------------------------------------------------------------------

    def consumer(self, workers: int = 2, periodic: bool | None = None) -> Consumer:
        """A Huey consumer of thread workers; periodic tasks only where ``periodic`` (default:
        ``service.scheduler``), so that exactly one machine runs the schedules.

        SIGTERM stops it gracefully (running tasks get :data:`SHUTDOWN_SECONDS` to finish),
        SIGINT at once; either way a task cut short is recovered from the inbox by the sweeper.
        """
        periodic = self.settings.service.scheduler if periodic is None else periodic
        return self.huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=periodic,
            # Poll an idle queue at least every two seconds: drains are already delayed by
            # coalesce_seconds, and a SQLite poll costs next to nothing.
            max_delay=2.0,
            check_worker_health=True,
            graceful_signal="TERM",
            shutdown_timeout=SHUTDOWN_SECONDS,
        )

    def run_consumer(self, workers: int = 2, periodic: bool | None = None) -> None:
        """Run the consumer until a signal stops it (``mentorsync worker``); main thread only."""
        kinds()  # import the built-in sync kinds now: a broken one fails at start, not per task
        self.check_moodle_limit()
        locks.clear_stale_local(self.db)
        self.close_abandoned_runs()
        init_schema(self.huey)
        consumer = self.consumer(workers, periodic)
        try:
            consumer.run()
        finally:
            # Threads interrupted mid-run die with the process; their locks need not wait
            # for lock_ttl_seconds.
            locks.release_process_locks(self.db)
            self.close()

    def close(self) -> None:
        """Release the contexts' connections and the queue's storage."""
        with self._contexts_lock:
            contexts, self._contexts = self._contexts, []
        for ctx in contexts:
            ctx.close()
        close = getattr(self.huey.storage, "close", None)
        if close is not None:
            close()

    # --- internals --------------------------------------------------------------------------

    def _locked(self, kind: str, work: Callable[[locks.Lease], None]) -> bool:
        """Run ``work`` holding the kind's lock; False (and nothing run) if it is busy.

        After the lock is released, rows that arrived meanwhile get a drain: a drain that found
        the lock busy gave up, counting on this check.
        """
        try:
            with locks.held(
                self.db, lock_name(kind), self.settings.service.lock_ttl_seconds
            ) as lease:
                work(lease)
        except locks.LockBusy:
            return False
        if inbox.has_pending(self.db, kind):
            self.wake([kind])
        return True

    def _context(self) -> Context:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._context_factory()
            # One state database per process: share the worker's engine.
            ctx.db = self.db  # type: ignore[misc]
            self._local.ctx = ctx
            with self._contexts_lock:
                self._contexts.append(ctx)
        return ctx

    def _progress(self, lease: locks.Lease, row_ids: tuple[int, ...] = ()) -> ProgressHook:
        svc = self.settings.service
        last = [time.monotonic()]

        def hook(done: int, total: int | None) -> None:
            lease.renew_if_due()
            if row_ids and time.monotonic() - last[0] > svc.inbox_lease_seconds / 4:
                inbox.extend(self.db, row_ids, svc.inbox_lease_seconds)
                last[0] = time.monotonic()

        return hook

    def _run(
        self,
        sync_kind: SyncKind,
        request: SyncRequest,
        lease: locks.Lease,
        row_ids: tuple[int, ...] = (),
    ) -> RunResult:
        """One run of a kind. A mentorsync error becomes :class:`RunFailed` (logged, counted)."""
        ctx = self._context()
        try:
            result = sync_kind.run(ctx, request, self._progress(lease, row_ids))
        except MentorsyncError as exc:
            usage.count_task_error(self.db, sync_kind.name)
            log.error("%s run of %s failed: %s", request.mode, sync_kind.name, exc)
            raise RunFailed(error_code(exc)) from exc
        except Exception as exc:  # noqa: BLE001  (a kind's bug: re-raised as KindCrashed)
            usage.count_task_error(self.db, sync_kind.name)
            code = type(exc).__name__
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("%s run of %s raised %s\n%s", request.mode, sync_kind.name, code, frames)
            raise KindCrashed(sync_kind.name, code) from None
        finally:
            self._usage.record(self.db, ctx)
        log.info(
            "%s run of %s: %s %s",
            request.mode,
            sync_kind.name,
            result.status,
            dict(sorted(result.counts.items())),
        )
        return result

    def _run_leased(self, sync_kind: SyncKind, leased: inbox.Leased, lease: locks.Lease) -> bool:
        """Run the kind for leased rows; finish them, or back them off and return False."""
        svc = self.settings.service
        request = SyncRequest(mode="ids", ids=leased.record_ids)
        delay = bookkeeping.retry_delay(leased.max_attempts, svc)
        try:
            result = self._run(sync_kind, request, lease, leased.row_ids)
        except RunFailed as exc:
            inbox.back_off(self.db, leased.row_ids, exc.code, delay, svc.retry_max_attempts)
            return False
        except Exception as exc:
            # Our bug or a kind's: back off (so the rows are not lost or hot-looped), then let
            # Huey log that the task failed.
            code = exc.code if isinstance(exc, KindCrashed) else type(exc).__name__
            inbox.back_off(self.db, leased.row_ids, code, delay, svc.retry_max_attempts)
            raise
        if RunStatus(result.status).failed:
            # Stopped (guard, budget), a passing outage that outlived the retries ("error"),
            # or interrupted: the records were not reconciled. Back the rows off; a run that
            # ended "error" is tried again after the backoff like one that raised.
            inbox.back_off(
                self.db, leased.row_ids, result.reason or "stopped", delay, svc.retry_max_attempts
            )
            return False
        inbox.finish(self.db, leased.row_ids)
        return True

    def _bump_untouched(self, kind: str, record_ids: list[str], started: dt.datetime) -> None:
        if not record_ids:
            return
        with self.db.session() as session:
            rows = session.scalars(
                select(FailedRecord).where(
                    FailedRecord.kind == kind,
                    FailedRecord.record_id.in_(record_ids),
                    FailedRecord.last_failed_at < started,
                    FailedRecord.parked.is_(False),
                )
            ).all()
            for row in rows:
                bookkeeping.record_failure(
                    session, kind, row.record_id, row.error_code, row.stage, self.settings.service
                )
