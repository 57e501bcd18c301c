"""The run lifecycle every sync kind shares: :class:`KindRun`.

A kind subclasses :class:`KindRun` and supplies only what is specific to it:

- :meth:`KindRun.plan`: read its source (by cursor, by ids, or all), read the target's actual
  state, call its *pure* planner and put the actions in a
  :class:`~connector.engine.spool.PlanSpool`;
- :meth:`KindRun.guard`: why the plan must not be applied without ``--allow-mass-change``
  (usually through :func:`connector.engine.guard.mass_change`), or "";
- :meth:`KindRun.apply`: send the actions in batches and report each record's outcome with
  :meth:`KindRun.succeeded` / :meth:`KindRun.failed_record`;
- :meth:`KindRun.plan_lines`: the dry run's plan, one line per action, without PII;
- optionally :meth:`KindRun.wind_down` (settle what is in flight when a run stops midway) and
  :meth:`KindRun.final_counts`.

A kind opens its plan spool with :meth:`KindRun.open_spool` and reads it as
:attr:`KindRun.spool`; the engine closes it when the run ends, whatever ended it.

The engine owns the rest, once for every kind:

- the run record (``runs`` table), its :class:`~connector.engine.kind.RunStatus` and counts;
  a run stopped midway still counts everything applied before the stop; Ctrl-C records it as
  ``interrupted``; a run whose process died is recorded as ``interrupted`` by the next run of
  the kind (which holds the kind's lock, so no other run can be live);
- the cursor: read at the start, saved only after everything read was applied or recorded as
  failed, capped at the run's start (the kind reads with a look-back overlap), never in ids
  mode, never after a dry run or a stop;
- the dry run: planned, guarded, reported, nothing applied, no cursor, no failure rows;
- the guard's base: the figure a kind's applied full reads record with their counts
  (:attr:`KindRun.full_read_count`), read back by the runs after them as
  :attr:`KindRun.full_read_base`;
- the Salesforce API budget check before anything is written;
- the failed-records ledger: failures recorded with code and stage (data errors wait for their
  source record to change instead of being retried on a timer), cleared when a record that
  failed before goes through, written in groups of :data:`LEDGER_SIZE`.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from abc import ABC, abstractmethod
from typing import ClassVar, Generic, Protocol, TypeVar

from sqlalchemy.orm import Session

from connector.context import Context
from connector.engine.kind import ProgressHook, RunResult, RunStatus, SyncRequest
from connector.errors import Action as ErrorAction
from connector.errors import MentorsyncError, error_code
from connector.state import bookkeeping
from connector.state.database import utcnow

log = logging.getLogger(__name__)

# Failures and cleared failures are written to the state database in groups of this size.
LEDGER_SIZE = 500
# Plan lines a dry run returns at most (the counts always cover everything).
PLAN_LINES_MAX = 10_000


class Closable(Protocol):
    """What the engine needs of a kind's plan spool: that it can be closed."""

    def close(self) -> None:
        """Release the spool's file and memory."""


SpoolT = TypeVar("SpoolT", bound=Closable)


class StopRun(Exception):
    """Raised by a kind (or the guard) to stop before applying, with a reason without PII."""


class KindRun(ABC, Generic[SpoolT]):
    """One run of one sync kind; :meth:`execute` drives it (see the module docstring).

    ``SpoolT`` is the type of the kind's plan spool.
    """

    #: The kind's name, as registered.
    kind: ClassVar[str]
    #: The cursor's name in the ``cursors`` table (``members:Contact``), or None for no cursor.
    cursor_name: ClassVar[str | None] = None
    #: Stages whose failures are data errors: they wait for the source record to change.
    data_stages: ClassVar[frozenset[str]] = frozenset({"mapping", "plan"})
    #: Counters whose records are also counted in ``failed`` (conflicts, rejections): the
    #: summary says them once, and ``other_failures`` counts the failures not among them.
    failure_counters: ClassVar[tuple[str, ...]] = ()
    #: A figure every applied full read records with its counts (members: ``linked_active``),
    #: read back at the start of the next runs as :attr:`full_read_base`, the guard's base for
    #: runs that read less than everything; None for no such figure.
    full_read_count: ClassVar[str | None] = None

    def __init__(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> None:
        self.ctx = ctx
        self.request = request
        self.progress = progress
        self.counts: collections.Counter[str] = collections.Counter()
        # Records with a failure row at the start: only these can need clearing.
        self.failed_before: set[str] = set()
        # True when this run read everything (a full run, or incremental without a cursor).
        self.full_scan = False
        self._failures: list[tuple[str, str, str]] = []
        self._cleared: list[str] = []
        self._done = 0
        self._total: int | None = None
        self._spool: SpoolT | None = None
        # The figure ``full_read_count`` as the last applied full read recorded it.
        self.full_read_base: int | None = None

    # --- what a kind supplies -----------------------------------------------------------

    def before_run(self, session: Session) -> None:
        """Read what the run needs from the state database at its start (optional)."""
        return None

    @abstractmethod
    def plan(self, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        """Read source and target, plan, and spool the actions (``cursor``: None = read all)."""

    def guard(self) -> str:
        """Why the plan must not be applied without ``--allow-mass-change``, or ""."""
        return ""

    @abstractmethod
    def apply(self) -> None:
        """Apply the spooled actions; report outcomes through the ledger methods."""

    @abstractmethod
    def plan_lines(self) -> list[tuple[str, str, str]]:
        """The plan as ``(action, record id, details)`` lines, without PII."""

    def wind_down(self) -> None:
        """After a stop while applying: settle calls still in flight and send the write-back
        of what went through, so the counts cover everything applied (optional)."""
        return None

    def release(self) -> None:
        """Close what the run opened (threads, clients); called in a ``finally``, before the
        engine closes the spool (optional)."""
        return None

    # --- the plan spool -----------------------------------------------------------------

    def open_spool(self, spool: SpoolT) -> SpoolT:
        """Make ``spool`` this run's plan spool; the engine closes it when the run ends."""
        if self._spool is not None:
            self._spool.close()
        self._spool = spool
        return spool

    @property
    def spool(self) -> SpoolT:
        """This run's plan spool, from :meth:`open_spool` until the run ends."""
        if self._spool is None:
            raise RuntimeError("the plan spool exists only while the run executes")
        return self._spool

    def full_read_figure(self) -> int:
        """The figure named by :attr:`full_read_count`, as this run counted it (optional)."""
        return 0

    def final_counts(self) -> dict[str, int]:
        """The counts stored with the run and returned (non-zero ones, ``failed`` always),
        with the :attr:`full_read_count` figure after an applied full read."""
        counts = {k: v for k, v in self.counts.items() if v}
        counts.setdefault("failed", 0)
        other = counts["failed"] - sum(counts.get(k, 0) for k in self.failure_counters)
        if self.failure_counters and other > 0:
            counts["other_failures"] = other
        if self.full_read_count and self.full_scan and not self.request.dry_run:
            counts[self.full_read_count] = self.full_read_figure()
        return counts

    # --- the run ------------------------------------------------------------------------

    def execute(self) -> RunResult:
        """Plan, guard, apply, record; see the module docstring."""
        try:
            return self._execute()
        finally:
            try:
                self.release()
            finally:
                if self._spool is not None:
                    spool, self._spool = self._spool, None
                    spool.close()

    def _execute(self) -> RunResult:
        request = self.request
        run_start = utcnow()
        with self.ctx.db.session() as session:
            bookkeeping.close_abandoned_runs(session, self.kind)
            run_id = bookkeeping.start_run(session, self.kind, request.mode, request.dry_run).id
            cursor = bookkeeping.get_cursor(session, self.cursor_name) if self.cursor_name else None
            self.failed_before = bookkeeping.failed_ids(session, self.kind)
            if self.full_read_count:
                self.full_read_base = bookkeeping.last_full_read_count(
                    session, self.kind, self.full_read_count
                )
            self.before_run(session)
        log.info("%s run %d: mode=%s dry_run=%s", self.kind, run_id, request.mode, request.dry_run)
        result = RunResult(kind=self.kind, run_id=run_id)
        try:
            self._run(result, cursor, run_start)
        except KeyboardInterrupt:
            # Ctrl-C: keep what is known (failures so far, counts) and say so truly.
            self._flush_ledger()
            self._finish(run_id, RunStatus.INTERRUPTED, "interrupted: stopped by the operator")
            raise
        except BaseException:
            # A bug: say so in the runs table, keep the cursor where it was.
            self._finish(run_id, RunStatus.ERROR, "internal error")
            raise
        log.info("%s run %d %s: %s", self.kind, run_id, result.status, dict(result.counts))
        return result

    def _run(self, result: RunResult, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        request = self.request
        run_id = int(result.run_id or 0)
        applying = False
        try:
            self.plan(None if request.mode == "full" else cursor, run_start)
            stop = self.guard()
            if request.dry_run:
                result.status = RunStatus.DRY_RUN
                result.reason = f"would stop: {stop}" if stop else ""
                result.plan = self.plan_lines()
                result.counts = self.final_counts()
                self._finish(run_id, RunStatus.DRY_RUN, result.reason or None)
                return
            if stop and not request.allow_mass_change:
                raise StopRun(stop)
            self._check_budget()
            applying = True
            self.apply()
            self._flush_ledger()
        except StopRun as stop:
            log.warning("%s run %d stopped before applying: %s", self.kind, run_id, stop)
            result.status, result.reason = RunStatus.STOPPED, str(stop)
        except MentorsyncError as exc:
            retry = exc.action is ErrorAction.RETRY
            result.status = RunStatus.ERROR if retry else RunStatus.STOPPED
            result.reason = f"{error_code(exc)}: {exc}"[:500]
            log.error("%s run %d %s: %s", self.kind, run_id, result.status, result.reason)
            if applying:
                self.wind_down()
            self._flush_ledger()
        else:
            failed = self.counts["failed"]
            result.status = RunStatus.FAILED_RECORDS if failed else RunStatus.OK
        result.counts = self.final_counts()
        applied = result.status in (RunStatus.OK, RunStatus.FAILED_RECORDS)
        self._finish(run_id, result.status, result.reason or None, run_start if applied else None)

    def _check_budget(self) -> None:
        """Refuse to write when Salesforce's daily API budget is above the allowed share.

        Only once a reading is known (every answer carries one), so it costs no call.
        """
        if self.ctx.salesforce.budget is not None:
            self.ctx.salesforce.check_budget()

    def _finish(
        self,
        run_id: int,
        status: RunStatus,
        reason: str | None,
        cursor: dt.datetime | None = None,
    ) -> None:
        with self.ctx.db.session() as session:
            bookkeeping.finish_run(session, run_id, status, self.final_counts(), reason)
            if cursor is not None and self.cursor_name and self.request.mode != "ids":
                # Only after everything planned was applied or recorded as failed.
                bookkeeping.save_cursor(session, self.cursor_name, cursor)

    # --- progress and the failed-records ledger -------------------------------------------

    def tick(self, step: int = 1) -> None:
        """``step`` more records handled; tells the progress hook (which renews the lock)."""
        self._done += step
        if self.progress is not None:
            self.progress(self._done, self._total)

    def start_progress(self, total: int | None) -> None:
        """Restart the progress count for a phase of ``total`` records (None: unknown)."""
        self._done, self._total = 0, total

    def failed_record(self, record_id: str, code: str, stage: str) -> None:
        """Record that ``record_id`` failed with ``code`` at ``stage`` (counted once)."""
        self.counts["failed"] += 1
        self._failures.append((record_id, code, stage))
        self._maybe_flush()

    def succeeded(self, record_id: str) -> None:
        """``record_id`` went through: clear its failure row if it had one."""
        if record_id in self.failed_before:
            self._cleared.append(record_id)
            self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self._failures) + len(self._cleared) >= LEDGER_SIZE:
            self._flush_ledger()

    def _flush_ledger(self) -> None:
        """Write the failures and cleared failures gathered so far to the state database."""
        if self.request.dry_run or not (self._failures or self._cleared):
            return
        service = self.ctx.settings.service
        with self.ctx.db.session() as session:
            for record_id, code, stage in self._failures:
                data_error = stage.split(":", 1)[0] in self.data_stages
                bookkeeping.record_failure(
                    session, self.kind, record_id, code, stage, service, retry=not data_error
                )
            if self._cleared:
                bookkeeping.clear_failures(session, self.kind, self._cleared)
        self._failures.clear()
        self._cleared.clear()
