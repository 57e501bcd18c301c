"""One run of the member sync (Contacts -> Moodle users), on the engine's :class:`KindRun`.

A run is level-triggered: it reads the Contacts to look at, reads their Moodle accounts, plans
one action per member (:mod:`connector.kinds.members.plan`), checks the mass-change guard,
applies the plan in batches (:mod:`connector.kinds.members.apply`) and writes outcomes back to
the Contacts (:mod:`connector.kinds.members.writeback`).

What a run reads:

- ``incremental``: Contacts changed since the cursor ``members:Contact`` (with the look-back
  overlap, up to the run's start), in scope, still linked or with a sync status (``scope OR
  LMS_User_Id__c != null OR LMS_Sync_Status__c != null``, so a Contact that left scope is seen,
  its account handled and a stale status cleared); Contacts deleted since the
  cursor (``getDeleted``, then ``queryAll`` for their ``MasterRecordId``). Without a cursor an
  incremental run reads everything, like a full one. (Failed records due for retry are run by
  the worker in ``ids`` mode; each is either cleared or failed again.)
- ``full``: every Contact in scope or linked, and every deleted Contact still in the recycle bin.
- ``ids``: the named Contacts (deleted ones included).

Streaming and memory: Contacts are streamed page by page and planned in chunks of
``CHUNK_SIZE`` (a multiple of Moodle's per-call item ceiling, so lookups come in full calls); the
plan goes to an on-disk spool (:mod:`connector.engine.spool`: a private temp directory, deleted
when the run ends), not to memory. Applying reads the spool back in order. Memory stays flat as
the member count grows. ``members.concurrency`` (default 4) is how many Moodle calls are in
flight at once; the calls themselves are the same whatever it is.

Adoption: an existing account without ``idnumber`` is linked only when it is the one match of
the member's email or username, and no other Contact read in the same run has that email (two
people sharing an address cannot tell Moodle which of them the account is): otherwise every
Contact concerned gets ``conflict:ambiguous_match`` and the account is left alone.

Merges: the merged-away Contact's account is re-pointed to the survivor (its ``idnumber`` becomes
the survivor's Id) when the survivor has no account; otherwise it is handled like a deletion
(``members.out_of_scope``, default suspend).

Limitation: Moodle offers no paged listing of users with an ``idnumber``, so a full run finds
accounts whose Contact is gone only through Salesforce (the recycle bin and ``getDeleted``, about
15 days). A Contact hard-deleted while no run happened for longer than that leaves its account
as it is; it shows as linked to a Contact that does not exist.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
from typing import Any

from connector.context import Context
from connector.engine.guard import mass_change
from connector.engine.kind import ProgressHook, SyncRequest
from connector.engine.run import PLAN_LINES_MAX, KindRun
from connector.engine.writeback import WritebackBuffer
from connector.errors import (
    MentorsyncError,
)
from connector.kinds.members.apply import MoodleApplier, Outcome
from connector.kinds.members.lookup import ParallelLookup
from connector.kinds.members.plan import (
    ADOPT,
    CONFLICT,
    CREATE,
    CREATES,
    NOTHING,
    REACTIVATE,
    REJECT,
    SKIP,
    SUSPEND,
    UPDATE,
    UPDATES,
    Member,
    Policy,
    plan_gone,
    plan_linked,
    plan_relink,
    plan_unlinked,
)
from connector.kinds.members.read import MemberSource
from connector.kinds.members.spool import MemberPlanSpool
from connector.kinds.members.writeback import WRITEBACK_STAGE, read_values
from connector.kinds.members.writeback import writeback_record as build_writeback
from connector.state.database import utcnow
from mappings.fieldmap import FieldMap, load_field_map
from mappings.members import Account, ContactMapper, MappingRejected

log = logging.getLogger(__name__)

KIND = "members"
CURSOR = "members:Contact"
# Past-tense counters of the actions.
DONE = {
    CREATE: "created",
    UPDATE: "updated",
    SUSPEND: "suspended",
    REACTIVATE: "reactivated",
    ADOPT: "adopted",
    NOTHING: "unchanged",
    SKIP: "skipped",
    CONFLICT: "conflicts",
    REJECT: "rejected",
}


class MembersRun(MemberSource, KindRun[MemberPlanSpool]):
    """One run of the member sync."""

    kind = KIND
    cursor_name = CURSOR
    failure_counters = ("conflicts", "rejected")
    # Linked active accounts: the guard's denominator when a run reads less than everything.
    full_read_count = "linked_active"

    def __init__(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> None:
        super().__init__(ctx, request, progress)
        settings = ctx.settings
        self.members_settings = settings.members
        self.fieldmap: FieldMap = load_field_map(settings.members.field_map)
        self.mapper = ContactMapper(self.fieldmap)
        self.policy = Policy(
            status_policy=dict(settings.members.status_policy),
            out_of_scope=settings.members.out_of_scope,
            auth=settings.members.auth,
        )
        self.read_fields = self.fieldmap.read_fields()
        # Values looked up in Moodle per field (what the benchmark's minimum is computed from).
        self.lookups: collections.Counter[str] = collections.Counter()
        # Moodle calls in flight at once (members.concurrency): lookups use all of it, write
        # batches half, and with more than one, write-backs to Salesforce are sent from a
        # background thread while Moodle is written. Only waiting overlaps; the calls are the
        # same (see connector.kinds.members.lookup).
        concurrency = max(1, int(settings.members.concurrency))
        self.lookup_threads = concurrency
        self.write_threads = max(1, concurrency // 2)
        self.background_writeback = concurrency > 1
        self.lookup = ParallelLookup(ctx.moodle, self.lookup_threads)
        # Merge survivors without an account -> (the merged-away Contact's account, its Id).
        self.repoint: dict[str, tuple[Account, str]] = {}
        self.in_scope_read = 0
        self.linked_active = 0
        self._now = utcnow()
        self._writeback: WritebackBuffer | None = None
        self._applier: MoodleApplier | None = None

    # --- what the engine asks for -------------------------------------------------------------

    def release(self) -> None:
        """Close the lookup threads, the applier and the write-back thread."""
        self.lookup.close()
        if self._applier is not None:
            self._applier.close()
        if self._writeback is not None:
            self._writeback.close()

    def full_read_figure(self) -> int:
        """Linked active accounts, as this run counted them."""
        return self.linked_active

    # --- reading and planning -----------------------------------------------------------------

    def plan(self, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        """Read the Contacts (by cursor, ids or all) and their accounts; spool the plan."""
        request = self.request
        self.open_spool(MemberPlanSpool())
        if request.mode == "ids":
            self._plan_ids(self._contact_ids(list(request.ids)))
        else:
            self.full_scan = request.mode == "full" or cursor is None
            since = None if self.full_scan else cursor
            self._plan_deleted(since, run_start)
            rows = self.ctx.salesforce.changed_since(
                self.fieldmap.sobject,
                self.read_fields,
                since,
                lookback=dt.timedelta(seconds=self.members_settings.lookback_seconds),
                run_start=run_start,
                where=self._where(),
            )
            with contextlib.closing(self._prefetched(rows)) as chunks:
                for chunk, linked in chunks:
                    self._plan_chunk(chunk, linked)
        # Merge survivors no read reached yet (not changed in the window, not named).
        self._plan_ids(self.spool.unseen(self.repoint))
        # Survivors that are gone themselves: the re-pointed account is handled as deleted.
        for survivor, (account, loser) in list(self.repoint.items()):
            self._add(plan_gone(loser, account, self.policy, note=f"survivor {survivor} gone"))
        self.repoint.clear()
        refused = self.spool.refuse_shared_adoptions()
        if refused:
            log.warning("%d adoptions refused: their email is shared by contacts", len(refused))
        self.counts["planned"] = len(self.spool)

    def _plan_gone_chunk(self, rows: list[dict[str, Any]]) -> None:
        losers = {
            str(r["Id"]): (str(r["MasterRecordId"]) if r.get("MasterRecordId") else "")
            for r in rows
        }
        self.spool.mark_seen(losers)
        masters = {m for m in losers.values() if m}
        accounts = self._accounts_by_idnumber([*losers, *masters])
        self.counts["deleted_read"] += len(losers)
        for loser, master in losers.items():
            if not accounts.get(loser):
                self.succeeded(loser)  # gone, with no account: nothing left to retry
            for account in accounts.get(loser, []):
                if master and not accounts.get(master) and master not in self.repoint:
                    # The survivor has no account: it takes this one over when it is planned.
                    self.repoint[master] = (account, loser)
                    continue
                note = f"merged into {master}" if master else "deleted"
                self._add(plan_gone(loser, account, self.policy, note=note))
        self.tick(len(rows))

    def _plan_chunk(
        self, rows: list[dict[str, Any]], linked: dict[str, list[Account]] | None = None
    ) -> None:
        """Plan one chunk of live Contacts: look up their accounts in batched calls, then plan."""
        members = [self._member(row) for row in rows]
        self.counts["read"] += len(members)
        self.spool.mark_seen(m.contact_id for m in members)
        self.spool.note_emails((m.desired.email, m.contact_id) for m in members if m.desired)
        if linked is None:
            linked = self._accounts_by_idnumber([m.contact_id for m in members])
        # Emails and usernames to look up: for accounts to adopt, and changed emails to check.
        emails: set[str] = set()
        usernames: set[str] = set()
        for m in members:
            if m.desired is None or m.contact_id in self.repoint:
                continue
            accounts = linked.get(m.contact_id)
            if not accounts:
                if not self.policy.target_suspended(m.status, False):
                    emails.update({m.desired.email, m.desired.email.lower()})
                    usernames.add(m.desired.username)
            elif len(accounts) == 1 and accounts[0].email.lower() != m.desired.email.lower():
                emails.update({m.desired.email, m.desired.email.lower()})
        self.lookups["email"] += len(emails)
        self.lookups["username"] += len(usernames)
        found = self.lookup.by_fields({"email": sorted(emails), "username": sorted(usernames)})
        by_email = self._group(found["email"], lambda a: a.email.lower())
        by_username = self._group(found["username"], lambda a: a.username)
        for m in members:
            accounts = linked.get(m.contact_id, [])
            if m.in_scope:
                self.in_scope_read += 1
            if accounts:
                self.linked_active += sum(1 for a in accounts if not a.suspended)
                action = plan_linked(
                    m, accounts, self.policy, lambda e: by_email.get(e, []), self.spool.claimed
                )
            elif m.contact_id in self.repoint:
                account, loser = self.repoint.pop(m.contact_id)
                action = plan_relink(m, account, self.policy, loser)
            else:
                candidates: dict[int, Account] = {}
                if m.desired is not None:
                    for a in by_email.get(m.desired.email.lower(), []):
                        candidates[a.id] = a
                    for a in by_username.get(m.desired.username, []):
                        candidates[a.id] = a
                action = plan_unlinked(
                    m, list(candidates.values()), self.policy, self.spool.claimed
                )
                if action.kind == ADOPT and m.desired is not None:
                    # Undone after planning if another Contact of the run has this email too.
                    self.spool.add(action, adopted_email=m.desired.email)
                    continue
            self._add(action)
        self.tick(len(rows))

    def _member(self, row: dict[str, Any]) -> Member:
        fm = self.fieldmap
        in_scope = fm.in_scope(row)
        desired = None
        rejection = ""
        if in_scope:
            try:
                desired = self.mapper.desired(row)
            except MappingRejected as exc:
                rejection = exc.code
        status = row.get(fm.status_field)
        return Member(
            contact_id=str(row["Id"]),
            in_scope=in_scope,
            status=str(status) if status is not None else None,
            desired=desired,
            rejection=rejection,
            writeback=read_values(row, fm.writeback),
        )

    def _add(self, action: Any) -> None:
        """Spool an action, unless it needs nothing at all (counted as unchanged)."""
        if action.kind in (NOTHING, SKIP) and action.contact_id not in self.failed_before:
            probe = Outcome(action, action.moodle_id)
            if build_writeback(probe, self.fieldmap.writeback, self._now) is None:
                self.counts[DONE[action.kind]] += 1
                return
        self.spool.add(action)

    # --- the guard ----------------------------------------------------------------------------

    def guard(self) -> str:
        """Why the plan must not be applied without --allow-mass-change, or ""."""
        last_linked = self.full_read_base
        if self.full_scan and self.in_scope_read == 0:
            return "source_empty: no Contact is in scope; check the field map and Salesforce"
        suspensions = self.spool.suspensions
        if not suspensions:
            return ""
        settings = self.members_settings
        linked = self.linked_active if self.full_scan else max(self.linked_active, last_linked or 0)
        return mass_change(
            "suspend",
            suspensions,
            linked,
            "linked active accounts",
            settings.mass_change_share,
            settings.mass_change_count,
        )

    def plan_lines(self) -> list[tuple[str, str, str]]:
        """The plan as (action, Contact Id, details) lines; a write-back alone is "writeback"."""
        lines: list[tuple[str, str, str]] = []
        for action in self.spool:
            if len(lines) >= PLAN_LINES_MAX:
                lines.append(("...", "", "more not shown; the counts cover everything"))
                break
            if action.kind in (NOTHING, SKIP):
                record = build_writeback(
                    Outcome(action, action.moodle_id), self.fieldmap.writeback, self._now
                )
                if record is None:
                    continue  # only a stale failure row to clear
                fields = ",".join(k for k in record if k != "Id")
                lines.append(("writeback", action.contact_id, f"fields: {fields}"))
                continue
            lines.append((action.kind, action.contact_id, action.details()))
        return lines

    # --- applying -----------------------------------------------------------------------------

    def apply(self) -> None:
        """Send creates and updates in batches; settle the rest; write back."""
        fm = self.fieldmap
        self._writeback = WritebackBuffer(
            self.ctx.salesforce,
            fm.sobject,
            self._writeback_result,
            background=self.background_writeback,
        )
        applier = MoodleApplier(self.ctx.moodle, self._settle, self.write_threads)
        self._applier = applier
        self.start_progress(len(self.spool))
        for action in self.spool:
            if action.kind in CREATES or action.kind in UPDATES:
                applier.add(action)
            else:
                self._settle([Outcome(action, action.moodle_id)])
        applier.flush()
        self._writeback.flush()
        self.counts["written_back"] = self._writeback.written

    def wind_down(self) -> None:
        """After a stop midway: settle the batches in flight and send the write-back of what
        went through (best effort: the stop may be Salesforce's), so counts cover it all."""
        if self._applier is not None:
            try:
                self._applier.settle()
            except MentorsyncError as exc:
                log.warning("after the stop, a Moodle batch in flight failed: %s", exc.code)
        if self._writeback is not None:
            try:
                self._writeback.flush()
            except MentorsyncError as exc:
                log.warning("after the stop, the write-back could not be sent: %s", exc.code)
            self.counts["written_back"] = self._writeback.written

    def _settle(self, outcomes: list[Outcome]) -> None:
        """Count outcomes, record failures, then queue the write-back (counting first, so a
        write-back that stops the run cannot leave outcomes uncounted)."""
        records: list[tuple[dict[str, Any], bool]] = []
        now = utcnow()
        for outcome in outcomes:
            action = outcome.action
            contact_id = action.contact_id
            if outcome.error:
                self.counts["moodle_failed"] += 1
                self.failed_record(contact_id, outcome.error, f"moodle:{outcome.stage}")
                log.warning("member %s: %s failed: %s", contact_id, action.kind, outcome.error)
            else:
                self.counts[DONE[action.kind]] += 1
                self.linked_active += _linked_delta(action)
                if action.code:
                    stage = "mapping" if action.code.startswith("mapping:") else "plan"
                    self.failed_record(contact_id, action.code, stage)
                    log.info("member %s: %s", contact_id, action.code)
            ok = outcome.ok and not action.code
            record = build_writeback(outcome, self.fieldmap.writeback, now)
            if record is not None:
                records.append((record, ok))
            elif ok:
                self.succeeded(contact_id)
        self.tick(len(outcomes))
        for record, ok in records:
            self.writeback.add(record, ok)

    @property
    def writeback(self) -> WritebackBuffer:
        """The write-back buffer (exists while applying)."""
        if self._writeback is None:
            raise RuntimeError("the write-back exists only while the run applies")
        return self._writeback

    def _writeback_result(self, contact_id: str, success: bool, code: str, was_ok: bool) -> None:
        if not success:
            if was_ok:
                self.failed_record(contact_id, f"salesforce:{code or 'error'}", WRITEBACK_STAGE)
            self.counts["writeback_failed"] += 1
        elif was_ok:
            self.succeeded(contact_id)


def _linked_delta(action: Any) -> int:
    """How an applied action changes the number of linked active accounts (the guard's base)."""
    if action.kind in (CREATE, REACTIVATE) or (action.kind == ADOPT and not action.suspended):
        return 1
    # Suspensions of live Contacts' accounts (those counted when read); deleted ones were not.
    if action.kind == SUSPEND and action.writeback is not None:
        return -1
    return 0
