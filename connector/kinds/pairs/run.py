"""One run of the pairs sync (matches -> Moodle), on the engine's :class:`KindRun`.

Plan: read the programme's matches (by cursor, by ids — a Contact's id reads that person's
matches — or all), the Contacts of their people and their Moodle accounts; give accounts to
people of active matches who lack one by running the member reconcile for them (the member
kind, in the same run); read Moodle's groups, members and enrolments and the ownership ledger;
then the pure planner (:func:`connector.kinds.pairs.plan.plan_pairs`) decides everything.

Apply: the actions kind by kind (:mod:`connector.kinds.pairs.apply`), the ledger after each,
then the write-back to each match (group id, status, error code), only what changed.

Memory: a programme has thousands of matches, not millions; the planner sees them all at once
(it must: a person's other matches decide what an undo may take), and the actions go to the
on-disk spool.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from connector.context import Context
from connector.engine.guard import mass_change
from connector.engine.kind import ProgressHook, SyncRequest
from connector.engine.run import PLAN_LINES_MAX, KindRun
from connector.engine.spool import PlanSpool
from connector.engine.writeback import WritebackBuffer
from connector.kinds.pairs import read
from connector.kinds.pairs.apply import DONE, PairsApplier
from connector.kinds.pairs.model import (
    ACTIVE,
    CANCELLED,
    FAILED,
    REPORT,
    Action,
    Match,
    Owned,
    Person,
    WriteBack,
)
from connector.kinds.pairs.plan import guard_base, involved_contacts, involved_users, plan_pairs
from connector.kinds.pairs.settings import PairsSettings, validate_pairs
from connector.state import ownership
from mappings.fieldmap import load_field_map
from mappings.pairs import MatchMapper, load_pairs_field_map

log = logging.getLogger(__name__)

KIND = read.KIND
CURSOR = "pairs:Mentorship_Match__c"
# Undos that always go through: a cancelled pair is about eight (two members, the group, the
# mentor's role, four enrolments), whatever the size of the programme.
GUARD_FLOOR = 10
WRITEBACK_STAGE = "salesforce:writeback"


class PairsCodec:
    """Pairs actions in and out of the spool; the undos are what the guard counts."""

    def dump(self, action: Action) -> dict[str, Any]:
        """JSON-ready data."""
        return action.to_json()

    def load(self, data: dict[str, Any]) -> Action:
        """The action back."""
        return Action.from_json(data)

    def kind(self, action: Action) -> str:
        """The action's kind."""
        return action.kind

    def record_id(self, action: Action) -> str:
        """The match."""
        return action.match_id

    def claims(self, action: Action) -> tuple[str, ...]:
        """Pairs actions claim nothing (the planner saw the whole run)."""
        return ()

    def destructive(self, action: Action) -> bool:
        """Unenrol, unassign a role, delete a group, remove a member."""
        return action.destructive


def pairs_settings(ctx: Context) -> PairsSettings:
    """The planner's settings: role ids and labels from ``[programme]``, policy from ``[pairs]``."""
    p, s = ctx.settings.programme, ctx.settings.pairs
    settings = PairsSettings(
        student_role_id=p.student_role_id,
        teacher_role_id=p.mentor_course_role_id,
        mentor_role_id=p.mentor_user_role_id,
        completed_keeps_role=s.completed_keeps_role,
        completed_keeps_enrolments=s.completed_keeps_enrolments,
        cancelled_group=s.cancelled_group,
        use_enrolment_dates=s.use_enrolment_dates,
        timezone=p.timezone,
        group_name_template=s.group_name_template,
        orientation_label=p.orientation_course,
        programme_label=p.programme_course,
        field_map=s.field_map,
    )
    validate_pairs(settings)
    return settings


class PairsRun(KindRun[PlanSpool[Action]]):
    """One run of the pairs sync."""

    kind = KIND
    cursor_name = CURSOR
    failure_counters = ("reported",)

    def __init__(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> None:
        super().__init__(ctx, request, progress)
        self.settings = pairs_settings(ctx)
        self.fieldmap = load_pairs_field_map(ctx.settings.pairs.field_map)
        self.mapper = MatchMapper(self.fieldmap)
        self.members = load_field_map(ctx.settings.members.field_map)
        self.writebacks: list[WriteBack] = []
        self.owned = Owned()
        self.ledger_size = 0
        self._lines: list[tuple[str, str]] = []
        self._errors: dict[str, str] = {}
        self._ledger_adds: list[ownership.Entry] = []
        self._ledger_removes: list[ownership.Entry] = []
        self._applier: PairsApplier | None = None
        self._writeback: WritebackBuffer | None = None

    def release(self) -> None:
        """Close the write-back thread."""
        if self._writeback is not None:
            self._writeback.close()

    # --- planning -------------------------------------------------------------------------

    def plan(self, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        """Read matches, people, Moodle and the ledger; plan the whole run; spool it."""
        ctx, request = self.ctx, self.request
        self.open_spool(PlanSpool(PairsCodec()))
        self.full_scan = request.mode == "full" or (request.mode != "ids" and cursor is None)
        program = ctx.settings.programme.programme_code
        rows = read.match_rows(
            ctx.salesforce,
            self.fieldmap,
            program,
            mode=request.mode,
            ids=request.ids,
            since=cursor,
            lookback=dt.timedelta(seconds=ctx.settings.pairs.lookback_seconds),
            run_start=run_start,
        )
        matches, rejected = read.load_matches(rows, self.mapper)
        self.counts["matches_read"] += len(matches) + len(rejected)
        self.tick(len(matches) + len(rejected))
        planned = {m.id for m in matches} | {r.match_id for r in rejected}
        gone = self._gone(planned, cursor, run_start)
        if gone:
            # Planned as cancelled with nobody in them: everything mentorsync made for them is
            # undone (what another match still needs stays), and nothing is written back.
            matches += [
                Match(id=i, name="", mentor_id="", mentee_id="", status=CANCELLED, program=program)
                for i in sorted(gone)
            ]
            planned |= gone
            self.counts["matches_gone"] += len(gone)
        if not planned:
            return  # nothing changed: no Moodle read, no ledger read
        with ctx.db.session() as session:
            first = read.ledger(session, planned)
        # A full scan read every match of the programme up to run_start: only one changed since
        # can be missing (one query), not one query per few hundred people.
        others = read.other_matches(
            ctx.salesforce,
            self.fieldmap,
            self.mapper,
            program,
            involved_contacts(matches, first),
            planned,
            changed_after=run_start if self.full_scan else None,
        )
        people = self._people([*matches, *others], first)
        p = ctx.settings.programme
        orientation = read.course_id(
            ctx.moodle, p.orientation_course, "programme.orientation_course"
        )
        programme = read.course_id(ctx.moodle, p.programme_course, "programme.programme_course")
        state = read.moodle_state(ctx.moodle, orientation, programme, planned)
        with ctx.db.session() as session:
            self.owned = read.ledger(
                session, planned, involved_users(matches, people, first), known=first
            )
            # The guard's base: everything mentorsync made, not only this run's part of it.
            self.ledger_size = ownership.count(session, KIND)
        plan = plan_pairs(
            matches,
            people,
            state,
            self.owned,
            self.settings,
            rejected=rejected,
            others=others,
            reassert_roles=self.full_scan,
        )
        for action in plan.actions:
            self.spool.add(action)
        self.writebacks = [w for w in plan.writebacks if w.match_id not in gone]
        self._lines = plan.lines()
        self.counts["planned"] = len(self.spool)
        touched = {a.match_id for a in plan.actions} | {w.match_id for w in plan.writebacks}
        for match_id in sorted(planned - touched):
            self.succeeded(match_id)  # in step already

    def _gone(
        self, planned: set[str], cursor: dt.datetime | None, run_start: dt.datetime
    ) -> set[str]:
        """Matches mentorsync made something for that have left the programme since.

        Deleted in Salesforce, or moved to another programme: a full scan read every match of
        the programme, so a match of the ledger it did not read is gone; an ids run, one it
        was asked for and did not find; an incremental run asks ``getDeleted`` and reads the
        matches changed into another programme (:func:`read.gone_matches`).
        """
        with self.ctx.db.session() as session:
            candidates = ownership.owners(session, KIND) - planned
        if not candidates:
            return set()
        if self.full_scan:
            return candidates
        if self.request.mode == "ids":
            return candidates & set(self.request.ids)
        assert cursor is not None  # an incremental run without a cursor is a full scan
        return read.gone_matches(
            self.ctx.salesforce,
            self.fieldmap,
            self.ctx.settings.programme.programme_code,
            candidates,
            since=cursor,
            lookback=dt.timedelta(seconds=self.ctx.settings.pairs.lookback_seconds),
            run_start=run_start,
        )

    def _people(self, matches: list[Match], owned: Owned) -> dict[str, Person]:
        """Contact Id -> Person for everyone of ``matches`` and the ledger's subjects.

        People of active matches without an account get one first (the member reconcile for
        them, under the member kind's lock), unless this is a dry run.
        """
        ctx = self.ctx
        ids = {i for m in matches for i in (m.mentor_id, m.mentee_id) if i}
        ids |= {g.contact_id for g in owned if g.contact_id}
        contacts = read.contacts(ctx.salesforce, self.members, ids)
        accounts = read.accounts(ctx.moodle, ids)
        suspend = read.suspend_statuses(ctx.settings)
        people = {
            c: read.person(c, contacts.get(c), accounts.get(c), self.members, suspend) for c in ids
        }
        missing = sorted(
            {
                c
                for m in matches
                if m.status == ACTIVE
                for c in (m.mentor_id, m.mentee_id)
                if c in people and people[c].moodle_id is None and not people[c].problem
            }
        )
        if missing and not self.request.dry_run and self._make_accounts(missing):
            accounts.update(read.accounts(ctx.moodle, missing))
            for c in missing:
                people[c] = read.person(c, contacts.get(c), accounts.get(c), self.members, suspend)
        return people

    def _make_accounts(self, contact_ids: list[str]) -> bool:
        """Run the member reconcile for ``contact_ids``; False if the member kind is busy."""
        from connector.kinds.members.run import KIND as MEMBERS
        from connector.kinds.members.run import MembersRun
        from connector.state import locks

        ctx = self.ctx
        try:
            with locks.held(ctx.db, f"kind:{MEMBERS}", ctx.settings.service.lock_ttl_seconds):
                result = MembersRun(ctx, SyncRequest(mode="ids", ids=tuple(contact_ids))).execute()
        except locks.LockBusy:
            log.info("pairs: member sync busy; %d people get accounts later", len(contact_ids))
            return False
        self.counts["accounts_made"] += result.counts.get("created", 0)
        return True

    def guard(self) -> str:
        """Stop a run that would undo too much of what mentorsync made."""
        s = self.ctx.settings.pairs
        return mass_change(
            "undo",
            self.spool.destructive,
            max(self.ledger_size, guard_base(self.owned)),
            "grants mentorsync made",
            s.mass_change_share,
            s.mass_change_count,
            floor=GUARD_FLOOR,
        )

    def plan_lines(self) -> list[tuple[str, str, str]]:
        """One line per match: ``match a0X…: enrol mentor in GMP-2026 as teacher, ...``."""
        lines = [("pair", match_id, summary) for match_id, summary in self._lines]
        if len(lines) > PLAN_LINES_MAX:
            lines = lines[:PLAN_LINES_MAX]
            lines.append(("...", "", "more not shown; the counts cover everything"))
        return lines

    # --- applying -------------------------------------------------------------------------

    def apply(self) -> None:
        """Apply the actions kind by kind, keep the ledger, write back to the matches."""
        applier = PairsApplier(self.ctx.moodle, self._outcome)
        self._applier = applier
        self.start_progress(len(self.spool))
        for action in self.spool:
            applier.add(action)
        applier.flush()
        self._save_ledger()
        self._write_back(applier.created_groups)

    def wind_down(self) -> None:
        """After a stop: keep the ledger of what went through (it is the only record)."""
        self._save_ledger()

    def _outcome(self, action: Action, error: str) -> None:
        if error:
            self._errors.setdefault(action.match_id, error)
            self.counts["moodle_failed"] += 1
            log.warning("match %s: %s failed: %s", action.match_id, action.kind, error)
        else:
            self.counts[DONE[action.kind]] += 1
            self._ledger_adds += [read.entry_of(g, action.match_id) for g in action.adds]
            self._ledger_removes += [read.entry_of(g, g.match_id) for g in action.removes]
            if action.kind == REPORT and action.code:
                self._errors.setdefault(action.match_id, action.code)
        self.tick()

    def _save_ledger(self) -> None:
        if not (self._ledger_adds or self._ledger_removes):
            return
        with self.ctx.db.session() as session:
            ownership.forget(session, KIND, self._ledger_removes)
            ownership.record(session, KIND, self._ledger_adds)
        self._ledger_adds, self._ledger_removes = [], []

    def _write_back(self, created_groups: dict[str, int]) -> None:
        fm = self.fieldmap
        self._writeback = WritebackBuffer(self.ctx.salesforce, fm.sobject, self._written)
        for wb in self.writebacks:
            reported = wb.target.get("error", "") if wb.target.get("status") == FAILED else ""
            error = self._errors.get(wb.match_id, "") or reported
            changes = wb.resolve(created_groups.get(wb.match_id), error)
            record: dict[str, Any] = {
                fm.writeback[k]: (v or None) for k, v in changes.items() if fm.writeback.get(k)
            }
            ok = not error
            if record:
                record["Id"] = wb.match_id
                self._writeback.add(record, ok)
            self._settle(wb.match_id, error)
        written = {wb.match_id for wb in self.writebacks}
        for match_id, error in self._errors.items():
            if match_id not in written:
                self._settle(match_id, error)
        self._writeback.flush()
        self.counts["written_back"] = self._writeback.written

    def _settle(self, match_id: str, error: str) -> None:
        if not error:
            self.succeeded(match_id)
            return
        # Moodle's refusals (and a group its create failed for) are retried; a person's or a
        # mapping problem waits for the record to change.
        stage = "moodle" if error.startswith(("moodle:", "pairs:")) else "plan"
        self.failed_record(match_id, error, stage)

    def _written(self, match_id: str, success: bool, code: str, was_ok: bool) -> None:
        if not success:
            self.counts["writeback_failed"] += 1
            if was_ok:
                self.failed_record(match_id, f"salesforce:{code or 'error'}", WRITEBACK_STAGE)
