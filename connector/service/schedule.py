"""The schedules: the scheduler's minute tick, the nightly full reconciles in the kinds' order,
and recording runs left behind by a dead process as interrupted.

A mixin of :class:`connector.service.worker.Worker` (whose tasks these are): ``tick`` is its
only periodic task, run on the one machine whose consumer runs periodic tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import TYPE_CHECKING, Any

from connector.config import Settings
from connector.engine.kind import RunResult, schedule
from connector.registry import kinds
from connector.state import bookkeeping, inbox, locks
from connector.state.database import KeyValue, StateDB, utcnow

if TYPE_CHECKING:
    from huey.api import TaskWrapper

log = logging.getLogger(__name__)

# The nightly full reconcile may start this long after service.nightly_hour (see _nightly_due).
NIGHTLY_WINDOW = dt.timedelta(hours=3)


def lock_name(kind: str) -> str:
    """The lock that serialises runs of one sync kind."""
    return f"kind:{kind}"


class Schedules:
    """The scheduler's part of the worker (see the module docstring)."""

    settings: Settings
    db: StateDB
    drain_task: TaskWrapper
    run_task: TaskWrapper
    retry_task: TaskWrapper
    nightly_task: TaskWrapper

    if TYPE_CHECKING:

        def run_kind(self, kind: str, mode: str, attempt: int = 0) -> RunResult | None: ...

    def tick(self, now: dt.datetime | None = None) -> dict[str, list[str]]:
        """The scheduler's minute: sweep the inbox, enqueue due runs; return what was enqueued."""
        now = now or utcnow()
        svc = self.settings.service
        enqueued: dict[str, list[str]] = {"drain": [], "incremental": [], "full": [], "retry": []}
        waiting = inbox.sweep(self.db, svc.inbox_lease_seconds)
        for kind in sorted(waiting):
            self.drain_task(kind)
            enqueued["drain"].append(kind)
        self.close_abandoned_runs()
        local = now.astimezone(zoneinfo.ZoneInfo(self.settings.programme.timezone))
        nightly: list[str] = []
        for kind in sorted(kinds()):
            declared = schedule(kinds()[kind])
            if declared.incremental and self._due_once(
                f"schedule:{kind}:incremental", now, svc.incremental_minutes
            ):
                self.run_task(kind, "incremental")
                enqueued["incremental"].append(kind)
            if _nightly_due(local, svc.nightly_hour) and self._claim_day(
                f"schedule:{kind}:full", local
            ):
                nightly.append(kind)
            with self.db.session() as session:
                due = bookkeeping.due_failures(session, kind, now)
            if due:
                self.retry_task(kind)
                enqueued["retry"].append(kind)
        if nightly:
            # One task runs the night's full reconciles one after the other, in the kinds'
            # declared order (members, then pairs, then progress): each builds on the last.
            nightly.sort(key=lambda k: (schedule(kinds()[k]).nightly_order, k))
            self.nightly_task(tuple(nightly))
            enqueued["full"] = nightly
        return enqueued

    def nightly(self, kind_names: tuple[str, ...]) -> list[str]:
        """The night's full reconciles, one kind after the other in the given order; returns
        the kinds run. A kind that is busy gets its full run retried on its own (run_kind)."""
        done = []
        for kind in kind_names:
            if self.run_kind(kind, "full") is not None:
                done.append(kind)
        return done

    def close_abandoned_runs(self) -> dict[str, list[int]]:
        """Record as ``interrupted`` the runs still ``running`` whose kind's lock is free (their
        process died and the lock expired or was cleared); return their ids per kind."""
        closed: dict[str, list[int]] = {}
        for kind in sorted(kinds()):
            if locks.is_held(self.db, lock_name(kind)):
                continue
            with self.db.session() as session:
                ids = bookkeeping.close_abandoned_runs(session, kind)
            if ids:
                log.warning("runs of %s recorded as interrupted: %s", kind, ids)
                closed[kind] = ids
        return closed

    def _due_once(self, key: str, now: dt.datetime, minutes: int) -> bool:
        """True (and remembered) when ``minutes`` have passed since the last time for ``key``."""
        with self.db.session() as session:
            row = session.get(KeyValue, key, with_for_update=True)
            last = dt.datetime.fromisoformat(row.value) if row and row.value else None
            # 30 s slack: the scheduler's minute ticks drift a little.
            if last is not None and (now - last).total_seconds() < minutes * 60 - 30:
                return False
            put_value(session, key, now.isoformat())
        return True

    def _claim_day(self, key: str, local: dt.datetime) -> bool:
        today = local.date().isoformat()
        with self.db.session() as session:
            row = session.get(KeyValue, key, with_for_update=True)
            if row is not None and row.value == today:
                return False
            put_value(session, key, today)
        return True


def _nightly_due(local: dt.datetime, hour: int) -> bool:
    """Whether ``local`` is in the nightly window: ``hour`` o'clock until three hours later.

    A window, not the hour itself: on the night a clock jumps forward over that hour (2:00 in
    many zones), the hour never comes, and a scheduler that was down at the hour catches up.
    ``_claim_day`` keeps it to one run a day. (Same-zone subtraction is wall-clock time.)
    """
    start = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return dt.timedelta(0) <= local - start < NIGHTLY_WINDOW


def put_value(session: Any, key: str, value: Any) -> None:
    row = session.get(KeyValue, key)
    if row is None:
        session.add(KeyValue(key=key, value=value, updated_at=utcnow()))
    else:
        row.value = value
        row.updated_at = utcnow()
