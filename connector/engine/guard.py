"""The mass-change guard: a plan that would undo too much stops before anything is applied.

An empty or sharply shrunken source (a broken filter, a renamed field, an export gone wrong) must
never mass-suspend accounts or unenrol people. Each kind says which of its actions are
destructive (suspend; unenrol, remove a role, delete a group; delete a meeting record) and over
what base they are counted; this module decides and words the reason, the same way for every
kind. ``--allow-mass-change`` proceeds on purpose.
"""

from __future__ import annotations


def mass_change(
    verb: str,
    destructive: int,
    base: int,
    base_label: str,
    share: float,
    count: int,
    *,
    floor: int = 0,
) -> str:
    """Why ``destructive`` actions over ``base`` things must not run unasked, or "".

    Stops when they are more than ``count``, or more than ``share`` of ``base``:
    ``mass_change: would suspend 40 of 500 linked active accounts (limits: 5%, 100); ...``.
    Up to ``floor`` always go through (one cancelled pair is a handful of undos, however small
    the programme).
    """
    if destructive <= max(0, floor):
        return ""
    if destructive > count or destructive > share * base:
        return (
            f"mass_change: would {verb} {destructive} of {base} {base_label} "
            f"(limits: {share:.0%}, {count}); run with --allow-mass-change to proceed"
        )
    return ""
