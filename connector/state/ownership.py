"""The ownership ledger: what mentorsync itself made in Moodle, for which source record.

Moodle cannot say who made an enrolment, a group, a group membership or a role assignment, and
no web-service function lists role assignments in a user context. So every grant mentorsync
makes is recorded here against its owner (the match that wanted it), and an undo removes only
what the ledger holds — never an enrolment someone made by hand, never a grant another live
owner still holds. A grant that existed before mentorsync looked is never recorded, so it is
never undone.

A grant is ``(thing, target)``: ``thing`` one of :data:`THINGS`, ``target`` its Moodle keys as
a string made by :func:`target` (``course=3:user=10:role=5``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from connector.state.database import Ownership, utcnow

ENROLMENT = "enrolment"
GROUP = "group"
GROUP_MEMBER = "group_member"
ROLE_ASSIGNMENT = "role_assignment"
THINGS = (ENROLMENT, GROUP, GROUP_MEMBER, ROLE_ASSIGNMENT)
# SQL "IN"/"OR" lists are sent in chunks of this size.
_CHUNK = 200


@dataclass(frozen=True, order=True)
class Grant:
    """One thing in Moodle: what it is and its keys."""

    thing: str
    target: str


def target(**keys: int | str) -> str:
    """The canonical target string of Moodle keys, in the order given."""
    return ":".join(f"{name}={value}" for name, value in keys.items())


def record(session: Session, kind: str, owner: str, grants: Iterable[Grant]) -> int:
    """Record that ``owner`` made ``grants`` (a grant already recorded for it is skipped)."""
    wanted = set(grants)
    if not wanted:
        return 0
    have = owned_by(session, kind, [owner]).get(owner, set())
    new = sorted(wanted - have)
    now = utcnow()
    session.add_all(
        Ownership(kind=kind, owner=owner, thing=g.thing, target=g.target, created_at=now)
        for g in new
    )
    return len(new)


def forget(session: Session, kind: str, owner: str, grants: Iterable[Grant]) -> None:
    """Forget ``owner``'s hold on ``grants`` (after they were undone, or handed over)."""
    items = sorted(set(grants))
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        session.execute(
            delete(Ownership).where(
                Ownership.kind == kind,
                Ownership.owner == owner,
                _any_of(chunk),
            )
        )


def owned_by(session: Session, kind: str, owners: Iterable[str]) -> dict[str, set[Grant]]:
    """The grants each of ``owners`` holds."""
    out: dict[str, set[Grant]] = {}
    ids = sorted(set(owners))
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(Ownership.owner, Ownership.thing, Ownership.target).where(
                Ownership.kind == kind, Ownership.owner.in_(ids[start : start + _CHUNK])
            )
        )
        for owner, thing, tgt in rows:
            out.setdefault(owner, set()).add(Grant(thing, tgt))
    return out


def holders(session: Session, kind: str, grants: Iterable[Grant]) -> dict[Grant, set[str]]:
    """Who holds each of ``grants`` (owners of any record, not only this run's)."""
    out: dict[Grant, set[str]] = {}
    items = sorted(set(grants))
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        rows = session.execute(
            select(Ownership.owner, Ownership.thing, Ownership.target).where(
                Ownership.kind == kind,
                _any_of(chunk),
            )
        )
        for owner, thing, tgt in rows:
            out.setdefault(Grant(thing, tgt), set()).add(owner)
    return out


def _any_of(grants: list[Grant]):  # type: ignore[no-untyped-def]  (a SQL expression)
    """``(thing, target)`` is one of ``grants``."""
    return or_(*(and_(Ownership.thing == g.thing, Ownership.target == g.target) for g in grants))
