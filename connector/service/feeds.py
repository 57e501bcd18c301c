"""The stalled-feed alarm: a sync kind that has heard nothing and done nothing for too long.

A kind's feed is *stalled* when neither an event for it arrived nor a run of it succeeded (ok or
with failed records; dry runs do not count) within ``service.stalled_feed_minutes``. The
scheduler runs every kind incrementally every few minutes, so a stall means the worker or the
scheduler is down, or every run fails: something an admin must look at. ``status``, ``/readyz``
(as detail; a stall does not make the web service unready, which would stop the events too)
and ``/metrics`` all read it from here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.state.database import InboxEvent, Run, utcnow

SUCCESS = ("ok", "failed_records")


@dataclass(frozen=True)
class Feed:
    """What the alarm knows of one kind."""

    kind: str
    last_event: dt.datetime | None
    last_success: dt.datetime | None
    stalled: bool
    limit_minutes: int

    @property
    def last_activity(self) -> dt.datetime | None:
        """The later of the last event and the last successful run."""
        seen = [t for t in (self.last_event, self.last_success) if t is not None]
        return max(seen) if seen else None

    def describe(self) -> str:
        """``ok``, ``off``, or why it is stalled, without names."""
        if not self.limit_minutes:
            return "off"
        if not self.stalled:
            return "ok"
        if self.last_activity is None:
            return "stalled: no event and no successful run yet"
        return f"stalled: no event and no successful run for over {self.limit_minutes} min"


def feeds(
    session: Session, kinds: Iterable[str], limit_minutes: int, now: dt.datetime | None = None
) -> list[Feed]:
    """The feed of every kind in ``kinds`` (and of any kind the database knows), by name."""
    now = now or utcnow()
    events = dict(
        session.execute(
            select(InboxEvent.kind, func.max(InboxEvent.received_at)).group_by(InboxEvent.kind)
        ).all()
    )
    runs = dict(
        session.execute(
            select(Run.kind, func.max(Run.finished_at))
            .where(Run.status.in_(SUCCESS), Run.dry_run.is_(False))
            .group_by(Run.kind)
        ).all()
    )
    limit = dt.timedelta(minutes=limit_minutes)
    out = []
    for kind in sorted(set(kinds) | set(runs)):
        last_event, last_success = events.get(kind), runs.get(kind)
        seen = [_aware(t) for t in (last_event, last_success) if t is not None]
        stalled = bool(limit_minutes) and (not seen or now - max(seen) > limit)
        out.append(
            Feed(kind, _aware(last_event), _aware(last_success), stalled, limit_minutes)
        )
    return out


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # Aggregates (max) bypass the UTC column type on SQLite and come back naive.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
