"""The ownership ledger: what mentorsync itself made in Moodle, for which source record.

Moodle cannot say who made an enrolment, a group, a group membership or a role assignment, and
no web-service function lists role assignments in a user context. So every grant mentorsync
makes is recorded here against its owner (the match that wanted it), and an undo removes only
what the ledger holds — never an enrolment someone made by hand, never a grant another live
owner still holds. A grant that existed before mentorsync looked is never recorded, so it is
never undone.

An entry is an :class:`Entry`: what (``thing``), where (``scope``: a course id, a group
idnumber, the user whose context holds a role), who (``user_id``), which role (``role_id``), for
whom (``owner``), about whom (``subject``: the person's source record).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from connector.state.database import Ownership, utcnow

# SQL "IN"/"OR" lists are sent in chunks of this size.
_CHUNK = 200


@dataclass(frozen=True, order=True)
class Entry:
    """One ledger entry (identity: owner, thing, scope, user_id, role_id)."""

    owner: str
    thing: str
    scope: str
    user_id: int = 0
    role_id: int = 0
    subject: str = ""

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        """The entry's identity."""
        return (self.owner, self.thing, self.scope, self.user_id, self.role_id)


def record(session: Session, kind: str, entries: Iterable[Entry]) -> int:
    """Record ``entries`` (one already recorded is skipped); return how many were new."""
    wanted = {e.key: e for e in entries}
    if not wanted:
        return 0
    have = _keys(session, kind, {k[0] for k in wanted})
    new = [e for k, e in sorted(wanted.items()) if k not in have]
    now = utcnow()
    session.add_all(
        Ownership(
            kind=kind,
            owner=e.owner,
            thing=e.thing,
            scope=e.scope,
            user_id=e.user_id,
            role_id=e.role_id,
            subject=e.subject,
            created_at=now,
        )
        for e in new
    )
    return len(new)


def forget(session: Session, kind: str, entries: Iterable[Entry]) -> None:
    """Forget ``entries`` (after they were undone, or found gone from Moodle)."""
    items = sorted({e.key for e in entries})
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        session.execute(
            delete(Ownership).where(
                Ownership.kind == kind,
                or_(
                    *(
                        and_(
                            Ownership.owner == owner,
                            Ownership.thing == thing,
                            Ownership.scope == scope,
                            Ownership.user_id == user_id,
                            Ownership.role_id == role_id,
                        )
                        for owner, thing, scope, user_id, role_id in chunk
                    )
                ),
            )
        )


def count(session: Session, kind: str) -> int:
    """How many entries ``kind`` holds in all (a mass-change guard's base)."""
    return int(
        session.scalar(select(func.count()).select_from(Ownership).where(Ownership.kind == kind))
        or 0
    )


def owners(session: Session, kind: str) -> set[str]:
    """Every owner ``kind`` holds entries for (for a sweep of owners that are gone)."""
    return set(session.scalars(select(Ownership.owner).where(Ownership.kind == kind).distinct()))


def owned_by(session: Session, kind: str, owners: Iterable[str]) -> list[Entry]:
    """Every entry held by one of ``owners``."""
    ids = sorted(set(owners))
    out: list[Entry] = []
    for start in range(0, len(ids), _CHUNK):
        out += _entries(
            session,
            select(Ownership).where(
                Ownership.kind == kind, Ownership.owner.in_(ids[start : start + _CHUNK])
            ),
        )
    return out


def of_users(
    session: Session, kind: str, things: Iterable[str], user_ids: Iterable[int]
) -> list[Entry]:
    """Every entry of these ``things`` about one of ``user_ids`` (whoever the owner)."""
    ids, wanted = sorted(set(user_ids)), sorted(set(things))
    out: list[Entry] = []
    for start in range(0, len(ids), _CHUNK):
        out += _entries(
            session,
            select(Ownership).where(
                Ownership.kind == kind,
                Ownership.thing.in_(wanted),
                Ownership.user_id.in_(ids[start : start + _CHUNK]),
            ),
        )
    return out


_COLUMNS = (
    Ownership.owner,
    Ownership.thing,
    Ownership.scope,
    Ownership.user_id,
    Ownership.role_id,
    Ownership.subject,
)


def _keys(
    session: Session, kind: str, owners: Iterable[str]
) -> set[tuple[str, str, str, int, int]]:
    """The identities of the entries held by ``owners`` (plain rows, no ORM objects)."""
    ids = sorted(set(owners))
    keys: set[tuple[str, str, str, int, int]] = set()
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(*_COLUMNS[:5]).where(
                Ownership.kind == kind, Ownership.owner.in_(ids[start : start + _CHUNK])
            )
        )
        keys.update((r[0], r[1], r[2], r[3], r[4]) for r in rows)
    return keys


def _entries(session: Session, query: Any) -> list[Entry]:
    # Columns, not ORM objects: a 5,000-pair programme holds some 40,000 entries.
    columns = query.with_only_columns(*_COLUMNS)
    return [Entry(*row) for row in session.execute(columns)]
