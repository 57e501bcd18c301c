"""The member planner: desired Moodle user vs actual Moodle account -> one action per member.

Pure functions, no I/O: the reconciler (:mod:`connector.kinds.members.kind`) reads both sides
and passes them in. Actions:

- ``create``: no account is linked and none matches; ``payload`` is the whole new user.
- ``update``: the linked account differs; ``payload`` holds the changed fields only.
- ``suspend`` / ``reactivate``: the account's suspension changes (plus any changed fields).
- ``adopt``: an existing account gets linked (``idnumber`` set): either the one unlinked account
  matching the email or username, or a merged-away Contact's account re-pointed to the survivor.
- ``conflict``: ambiguous or contradictory (several matches, the username or email belongs to
  another linked person, two Contacts claiming one username in this run); nothing is written.
- ``reject``: the Contact fails validation (``mapping:...``); nothing is written to Moodle.
- ``skip``: no account and none wanted (a lapsed member is not given a new, suspended account).
- ``nothing``: in step.

Within one run, usernames, emails and adopted accounts are *claimed* by the first Contact that
takes them, so two Contacts sharing an email never both get (or adopt) an account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mappings.members import Account, DesiredUser, changed_fields, create_payload

CREATE = "create"
UPDATE = "update"
SUSPEND = "suspend"
REACTIVATE = "reactivate"
ADOPT = "adopt"
CONFLICT = "conflict"
REJECT = "reject"
SKIP = "skip"
NOTHING = "nothing"

# Actions that write to Moodle, and through which call.
CREATES = frozenset({CREATE})
UPDATES = frozenset({UPDATE, SUSPEND, REACTIVATE, ADOPT})

# What a membership status asks for (members.status_policy values).
POLICY_SUSPEND = "suspend"
POLICY_KEEP = "keep"
POLICY_REACTIVATE = "reactivate"


@dataclass(frozen=True)
class Policy:
    """The suspension rules from ``settings.members``."""

    status_policy: dict[str, str]
    # What happens to the account of a Contact that left scope, was deleted or merged away.
    out_of_scope: str = POLICY_SUSPEND
    auth: str = "manual"

    def target_suspended(self, status: str | None, current: bool) -> bool:
        """Whether an account should be suspended for this membership status.

        An unknown or empty status keeps the account as it is.
        """
        rule = self.status_policy.get(status or "", POLICY_KEEP)
        if rule == POLICY_SUSPEND:
            return True
        if rule == POLICY_REACTIVATE:
            return False
        return current

    def gone_suspended(self, current: bool) -> bool:
        """Whether the account of a Contact out of scope, deleted or merged away is suspended."""
        return True if self.out_of_scope == POLICY_SUSPEND else current


@dataclass(slots=True)
class Member:
    """One Contact as read from Salesforce and mapped."""

    contact_id: str
    in_scope: bool
    status: str | None
    # The desired Moodle user when the record is valid (only computed in scope).
    desired: DesiredUser | None
    # The mapping reason code when it is not.
    rejection: str = ""
    # The write-back fields as read: {"user_id", "status", "error"} -> value ("" when empty).
    writeback: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Action:
    """What to do for one member; compact, so a whole run's plan can be spooled."""

    kind: str
    contact_id: str
    # The account acted on (None for create, conflict or skip without an account).
    moodle_id: int | None = None
    # create: the whole user; update kinds: the changed fields (without "id").
    payload: dict[str, Any] = field(default_factory=dict)
    # The problem code written back (mapping:..., conflict:...), "" when none.
    code: str = ""
    # A note for the plan (e.g. "merged from 003..."), without PII.
    note: str = ""
    # The account's suspension once the action is applied.
    suspended: bool = False
    # The write-back fields as read; None means never write back (the Contact is deleted).
    writeback: dict[str, str] | None = None
    # Keys this action claims for the rest of the run ("u:username", "e:email", "a:42").
    claims: tuple[str, ...] = ()

    def details(self) -> str:
        """A plan line's details: field names, codes and ids only, never values."""
        parts = []
        if self.moodle_id is not None:
            parts.append(f"moodle user {self.moodle_id}")
        names = [k for k in self.payload if k not in ("customfields", "createpassword")]
        names += [str(c["type"]) for c in self.payload.get("customfields", [])]
        if names and self.kind != CREATE:
            parts.append("fields: " + ",".join(names))
        if self.code:
            parts.append(self.code)
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


Claimed = Callable[[str], str | None]
"""``claimed(key)``: the Contact Id that claimed ``key`` earlier in this run, or None."""


def email_key(email: str) -> str:
    """The claim key of an email address (case-insensitive)."""
    return "e:" + email.lower()


def username_key(username: str) -> str:
    """The claim key of a username."""
    return "u:" + username


def account_key(moodle_id: int) -> str:
    """The claim key of an existing account."""
    return f"a:{moodle_id}"


def _claimed_by_other(claimed: Claimed, key: str, contact_id: str) -> bool:
    owner = claimed(key)
    return owner is not None and owner != contact_id


def plan_gone(contact_id: str, account: Account, policy: Policy, note: str = "") -> Action:
    """The account of a Contact that was deleted or merged away (nothing is written back)."""
    target = policy.gone_suspended(account.suspended)
    if target and not account.suspended:
        return Action(
            SUSPEND,
            contact_id,
            account.id,
            {"suspended": True},
            note=note,
            suspended=True,
            writeback=None,
        )
    return Action(
        NOTHING, contact_id, account.id, note=note, suspended=account.suspended, writeback=None
    )


def plan_linked(
    member: Member,
    accounts: list[Account],
    policy: Policy,
    others_by_email: Callable[[str], Iterable[Account]],
    claimed: Claimed,
) -> Action:
    """A member whose account is found by ``idnumber`` (``accounts``: every such account).

    ``others_by_email(email)`` gives the accounts Moodle has with that email (looked up for
    changed emails), used to refuse an email change onto another person's address.
    """
    cid = member.contact_id
    wb = member.writeback
    if len(accounts) > 1:
        # Two accounts carry this Contact's Id: a person must decide which one is real.
        return Action(
            CONFLICT,
            cid,
            None,
            code="conflict:duplicate_idnumber",
            writeback=wb,
            note="accounts " + ",".join(str(a.id) for a in accounts),
        )
    account = accounts[0]
    if not member.in_scope:
        target = policy.gone_suspended(account.suspended)
        if target and not account.suspended:
            return Action(
                SUSPEND,
                cid,
                account.id,
                {"suspended": True},
                suspended=True,
                writeback=wb,
                note="out of scope",
            )
        return Action(NOTHING, cid, account.id, suspended=account.suspended, writeback=wb)
    if member.desired is None:
        return Action(
            REJECT,
            cid,
            account.id,
            code=member.rejection,
            suspended=account.suspended,
            writeback=wb,
        )
    desired = member.desired
    changes = changed_fields(desired, account)
    claims: tuple[str, ...] = ()
    if "email" in changes:
        new = desired.email.lower()
        taken = any(a.id != account.id for a in others_by_email(new))
        if taken or _claimed_by_other(claimed, email_key(new), cid):
            return Action(
                CONFLICT,
                cid,
                account.id,
                code="conflict:email_taken",
                suspended=account.suspended,
                writeback=wb,
            )
        claims = (email_key(new),)
    target = policy.target_suspended(member.status, account.suspended)
    if target != account.suspended:
        changes["suspended"] = target
        kind = SUSPEND if target else REACTIVATE
    else:
        kind = UPDATE if changes else NOTHING
    return Action(kind, cid, account.id, changes, suspended=target, writeback=wb, claims=claims)


def plan_unlinked(
    member: Member,
    candidates: list[Account],
    policy: Policy,
    claimed: Claimed,
) -> Action:
    """A member with no account by ``idnumber``.

    ``candidates``: the distinct accounts whose email (case-insensitively) or username matches
    the desired user's. Exactly one, unlinked, is adopted; any other match is a conflict.
    """
    cid = member.contact_id
    wb = member.writeback
    if not member.in_scope:
        return Action(NOTHING, cid, writeback=wb)
    if member.desired is None:
        return Action(REJECT, cid, code=member.rejection, writeback=wb)
    desired = member.desired
    if policy.target_suspended(member.status, False):
        # No account yet and the status says suspended: creating one only to suspend it helps
        # nobody. It is created if the member becomes active again.
        return Action(SKIP, cid, note="no account for a suspended status", writeback=wb)
    if len(candidates) > 1:
        return Action(
            CONFLICT,
            cid,
            code="conflict:ambiguous_match",
            writeback=wb,
            note="accounts " + ",".join(str(a.id) for a in candidates),
        )
    if candidates:
        match = candidates[0]
        if match.idnumber:
            code = (
                "conflict:username_taken"
                if match.username == desired.username
                else "conflict:email_taken"
            )
            return Action(
                CONFLICT, cid, None, code=code, writeback=wb, note=f"matches moodle user {match.id}"
            )
        if _claimed_by_other(claimed, account_key(match.id), cid):
            return Action(
                CONFLICT,
                cid,
                None,
                code="conflict:ambiguous_match",
                writeback=wb,
                note=f"moodle user {match.id} is adopted by another contact",
            )
        if match.email.lower() != desired.email.lower() and _claimed_by_other(
            claimed, email_key(desired.email), cid
        ):
            return Action(
                CONFLICT,
                cid,
                None,
                code="conflict:email_taken",
                writeback=wb,
                note="another contact takes this email in this run",
            )
        return _adopt(member, match, policy, note="matched on email or username")
    username, email = username_key(desired.username), email_key(desired.email)
    if _claimed_by_other(claimed, username, cid):
        return Action(
            CONFLICT,
            cid,
            code="conflict:username_taken",
            writeback=wb,
            note="another contact takes this username in this run",
        )
    if _claimed_by_other(claimed, email, cid):
        return Action(
            CONFLICT,
            cid,
            code="conflict:email_taken",
            writeback=wb,
            note="another contact takes this email in this run",
        )
    return Action(
        CREATE,
        cid,
        None,
        create_payload(desired, policy.auth),
        writeback=wb,
        claims=(username, email),
    )


def plan_relink(member: Member, account: Account, policy: Policy, loser_id: str) -> Action:
    """A merge survivor without an account takes over the merged-away Contact's account."""
    return _adopt(member, account, policy, note=f"merged from {loser_id}")


def _adopt(member: Member, account: Account, policy: Policy, note: str) -> Action:
    cid = member.contact_id
    changes: dict[str, Any] = {"idnumber": cid}
    code = ""
    if not member.in_scope:
        target = policy.gone_suspended(account.suspended)
    elif member.desired is None:
        target, code = account.suspended, member.rejection
    else:
        changes.update(changed_fields(member.desired, account))
        target = policy.target_suspended(member.status, account.suspended)
    if target != account.suspended:
        changes["suspended"] = target
    claims = [account_key(account.id), username_key(account.username)]
    if account.email:
        claims.append(email_key(account.email))
    if "email" in changes:
        claims.append(email_key(str(changes["email"])))
    return Action(
        ADOPT,
        cid,
        account.id,
        changes,
        code=code,
        note=note,
        suspended=target,
        writeback=member.writeback,
        claims=tuple(claims),
    )
