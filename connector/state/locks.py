"""Named leases in the state database, so that two runs of one sync kind never overlap.

A lock is a row of the ``locks`` table: a name, an owner and an expiry. Taking it is one
conditional UPDATE (free or expired rows only) or one INSERT guarded by the primary key, so the
database decides who wins, on SQLite and PostgreSQL alike, across processes and machines.
A worker that dies while holding a lock leaves the row behind; it expires after its time to live
and the next taker steals it. A long run renews its lock as it makes progress.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from connector.state.database import Lock, StateDB, utcnow

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A lock owner naming this machine, process and thread, unique per call."""
    return (
        f"{socket.gethostname()[:80]}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
    )


def acquire(db: StateDB, name: str, owner: str, ttl_seconds: float) -> bool:
    """Take lock ``name`` for ``owner`` unless someone else holds an unexpired lease.

    Re-acquiring a lock one already holds renews it. Returns whether the lock is now held.
    """
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl_seconds)
    with db.session() as session:
        taken = session.execute(
            update(Lock)
            .where(Lock.name == name, or_(Lock.expires_at <= now, Lock.owner == owner))
            .values(owner=owner, expires_at=expires)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
    # No row, or a live row of another owner: try to create it. The primary key makes two
    # concurrent inserts end with exactly one winner.
    try:
        with db.session() as session:
            session.add(Lock(name=name, owner=owner, expires_at=expires))
    except IntegrityError:
        return False
    return True


def seconds_left(db: StateDB, name: str) -> float | None:
    """Seconds until the lease on lock ``name`` runs out (0 when it has), None when unheld."""
    with db.session() as session:
        row = session.get(Lock, name)
        if row is None:
            return None
        return max(0.0, (row.expires_at - utcnow()).total_seconds())


def is_held(db: StateDB, name: str) -> bool:
    """Whether someone holds an unexpired lease on lock ``name``."""
    with db.session() as session:
        row = session.get(Lock, name)
        return row is not None and row.expires_at > utcnow()


def renew(db: StateDB, name: str, owner: str, ttl_seconds: float) -> bool:
    """Extend ``owner``'s lease on ``name``; False if the lock was lost (expired and taken)."""
    expires = utcnow() + dt.timedelta(seconds=ttl_seconds)
    with db.session() as session:
        result = session.execute(
            update(Lock).where(Lock.name == name, Lock.owner == owner).values(expires_at=expires)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release(db: StateDB, name: str, owner: str) -> None:
    """Give lock ``name`` back, if ``owner`` still holds it."""
    with db.session() as session:
        session.execute(delete(Lock).where(Lock.name == name, Lock.owner == owner))


class LockBusy(Exception):
    """Raised by :func:`held` when another owner holds the lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"lock {name} is held by another run")


class Lease:
    """A held lock that can be renewed, at most every ``ttl/4`` seconds, from progress hooks."""

    def __init__(self, db: StateDB, name: str, owner: str, ttl_seconds: float) -> None:
        self.db = db
        self.name = name
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self._renewed_at = utcnow()

    def renew_if_due(self) -> None:
        """Renew the lease when a quarter of its time to live has passed since the last renewal."""
        now = utcnow()
        if (now - self._renewed_at).total_seconds() < self.ttl_seconds / 4:
            return
        if not renew(self.db, self.name, self.owner, self.ttl_seconds):
            # Someone took the lock after it expired: a run slower than the TTL between two
            # progress calls. Say so; the runs may now overlap.
            log.warning(
                "lock %s was lost (expired and taken); raise service.lock_ttl_seconds", self.name
            )
        self._renewed_at = now


@contextmanager
def held(db: StateDB, name: str, ttl_seconds: float, owner: str | None = None) -> Iterator[Lease]:
    """Hold lock ``name`` for the ``with`` block, or raise :class:`LockBusy` at once."""
    owner = owner or new_owner()
    if not acquire(db, name, owner, ttl_seconds):
        raise LockBusy(name)
    try:
        yield Lease(db, name, owner, ttl_seconds)
    finally:
        release(db, name, owner)


def _owner_process(owner: str) -> tuple[str, int] | None:
    """``(host, pid)`` from an owner made by :func:`new_owner`, or None for other owners."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clear_stale_local(db: StateDB) -> list[str]:
    """At start-up, drop locks left by dead processes of this machine; return their names.

    A lock of this host whose process is gone (or whose pid is ours: a restart reusing the pid,
    as in a container) cannot be held any more, so there is no need to wait for it to expire.
    Locks of other machines are left to expire.
    """
    host, me = socket.gethostname()[:80], os.getpid()
    cleared = []
    with db.session() as session:
        for lock in session.scalars(select(Lock)).all():
            proc = _owner_process(lock.owner)
            if proc and proc[0] == host and (proc[1] == me or not _pid_alive(proc[1])):
                cleared.append(lock.name)
                session.delete(lock)
    if cleared:
        log.warning("cleared locks left by a stopped process: %s", ", ".join(sorted(cleared)))
    return cleared


def release_process_locks(db: StateDB) -> None:
    """Release every lock this process holds (at shutdown, after workers were interrupted)."""
    prefix = f"{socket.gethostname()[:80]}:{os.getpid()}:"
    with db.session() as session:
        session.execute(delete(Lock).where(Lock.owner.startswith(prefix, autoescape=True)))
