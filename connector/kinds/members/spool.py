"""The member run's plan spool: the engine's :class:`PlanSpool` with member actions.

What is member-specific: the codec of :class:`Action`, suspensions as the destructive actions,
and the one check after planning: an adoption by an email that several Contacts of the run share
is refused (``conflict:ambiguous_match``), because whose the account is, a person must decide.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from connector.engine.spool import PlanSpool
from connector.kinds.members.plan import CONFLICT, Action

_EMAILS = "email"
_ADOPTED = "adopted_email"


class MemberCodec:
    """Member actions to compact JSON and back; a suspension is what the guard counts."""

    def dump(self, action: Action) -> dict[str, Any]:
        """Compact JSON-ready data (claims are not kept: they live in the claims table)."""
        return {
            "k": action.kind,
            "c": action.contact_id,
            "m": action.moodle_id,
            "p": action.payload,
            "e": action.code,
            "n": action.note,
            "s": action.suspended,
            "w": action.writeback,
        }

    def load(self, data: dict[str, Any]) -> Action:
        """The action back from :meth:`dump`."""
        return Action(
            kind=data["k"],
            contact_id=data["c"],
            moodle_id=data["m"],
            payload=data["p"],
            code=data["e"],
            note=data["n"],
            suspended=data["s"],
            writeback=data["w"],
        )

    def kind(self, action: Action) -> str:
        """The action's kind."""
        return action.kind

    def record_id(self, action: Action) -> str:
        """The Contact Id."""
        return action.contact_id

    def claims(self, action: Action) -> Iterable[str]:
        """Usernames, emails and accounts the action takes."""
        return action.claims

    def destructive(self, action: Action) -> bool:
        """Actions that suspend an account."""
        return action.payload.get("suspended") is True


class MemberPlanSpool(PlanSpool[Action]):
    """The spool of one member run."""

    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        super().__init__(MemberCodec(), parent)

    @property
    def suspensions(self) -> int:
        """Actions that suspend an account (the mass-change guard's number)."""
        return self.destructive

    def add(self, action: Action, adopted_email: str = "") -> None:  # type: ignore[override]
        """Append ``action``; ``adopted_email``: for an adoption matched on email or username,
        the member's email, so :meth:`refuse_shared_adoptions` can undo it if another Contact
        has that email too."""
        super().add(action, {_ADOPTED: adopted_email.lower()} if adopted_email else None)

    def note_emails(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(email, contact_id)`` of members read (emails compared case-insensitively)."""
        self.note(_EMAILS, ((email.lower(), cid) for email, cid in pairs if email))

    def refuse_shared_adoptions(self) -> list[str]:
        """Turn each adoption by an email that several Contacts of this run share into a
        conflict (``conflict:ambiguous_match``); return the Contact Ids concerned."""
        changed = []
        for seq, old in self.tagged_shared(_ADOPTED, _EMAILS):
            conflict = Action(
                CONFLICT,
                old.contact_id,
                None,
                code="conflict:ambiguous_match",
                note=f"moodle user {old.moodle_id} matches an email several contacts share",
                writeback=old.writeback,
            )
            self.replace(seq, old, conflict)
            changed.append(old.contact_id)
        self.drop_tags(_ADOPTED)
        return changed
