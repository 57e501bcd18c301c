"""One run of the progress sync (Moodle completions -> Salesforce), on the engine's KindRun.

A run reads the programme's matches (Active and Completed ones of ``programme.programme_code``:
a completed pair keeps its final totals and health; proposed and cancelled ones are left
alone) with their people's Moodle user ids, resolves the meeting activities once, reads the
completions, reads the matches' meeting records, plans each match with the pure
:func:`~connector.kinds.progress.plan.plan_match` for today in the programme's time zone,
spools the actions, guards the deletions and applies: meeting upserts on the external id and
match updates through :class:`~connector.engine.writeback.WritebackBuffer` (Collections of 200,
only changed values), deletions with ``collection_delete``.

What a run reads:

- ``full`` (the nightly pass): every match, so health is re-evaluated even when nothing changed
  in Moodle. With the plugin its bulk read of both courses (a handful of calls); without, two
  calls per person at most, ``programme.completion_concurrency`` in flight.
- ``incremental`` with the plugin: the completions changed since the cursor
  ``progress:completions`` (the last run's start, less :data:`LOOKBACK_SECONDS` for clock skew)
  name the users; their matches are reconciled, reading the users one by one when few
  (:data:`PER_USER_MAX`), else the bulk read of everything. Without a cursor: as ``full``.
- ``incremental`` without the plugin (no change feed): a sweep in match Id order of at most
  ``programme.completion_reads_per_run`` per-user reads (0: no cap), so one sweep never starves
  the other kinds; the next run goes on after the last match covered (state key
  ``progress:sweep_after``), and starts again from the first once the end was reached.
- ``ids``: Match Ids, and Moodle user ids (events carry those): each user's matches.

The guard: more than ``programme.mass_change_count`` deletions of meeting records, or more than
``programme.mass_change_share`` of those read (at least as many as the last full read saw),
stop the run before anything is written; up to :data:`GUARD_FLOOR` always go through.

A match whose person cannot be read (a per-record Moodle error) is recorded as failed and not
planned, so a missing answer never deletes a meeting record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.orm import Session

from connector.clients.moodle.site import has_plugin
from connector.context import Context
from connector.engine.guard import mass_change
from connector.engine.kind import ProgressHook, SyncRequest
from connector.engine.run import PLAN_LINES_MAX, KindRun
from connector.engine.spool import PlanSpool
from connector.engine.writeback import COLLECTION_SIZE, WritebackBuffer
from connector.kinds.progress.plan import (
    DELETE_MEETING,
    UPDATE_MATCH,
    UPSERT_MEETING,
    MatchInput,
    ProgressAction,
    destructive,
    plan_match,
)
from connector.kinds.progress.read import (
    Completions,
    Courses,
    MatchReader,
    MatchRow,
    PerUserReader,
    bulk_read,
    read_meetings,
    resolve_courses,
)
from connector.kinds.progress.rules import ProgrammeRules
from connector.state.database import KeyValue, utcnow
from mappings.fieldmap import load_field_map
from mappings.pairs import load_pairs_field_map
from mappings.progress import load_progress_map

log = logging.getLogger(__name__)

KIND = "progress"
CURSOR = "progress:completions"
KV_SWEEP = "progress:sweep_after"
# Re-read margin before the cursor: Moodle's clock and ours may differ a little.
LOOKBACK_SECONDS = 300
# Incremental with the plugin: up to this many users are read one by one, more by the bulk read.
PER_USER_MAX = 25
# Deletions the guard always lets through: a person unticking a meeting or two is normal (and
# in a small programme, or an event's run, one deletion is already a large share); a broken
# source shows in more than this.
GUARD_FLOOR = 3
# Matches planned together (one meetings query per 200, one batch of per-user reads).
CHUNK_SIZE = 500
DONE = {UPSERT_MEETING: "meetings_written", DELETE_MEETING: "meetings_deleted",
        UPDATE_MATCH: "matches_updated"}


class ProgressCodec:
    """How progress actions go into the engine's spool."""

    def dump(self, action: ProgressAction) -> dict[str, Any]:
        """The action as JSON-ready data."""
        return dict(json.loads(action.to_json()))

    def load(self, data: dict[str, Any]) -> ProgressAction:
        """The action back."""
        return ProgressAction.from_json(json.dumps(data))

    def kind(self, action: ProgressAction) -> str:
        """upsert_meeting, delete_meeting or update_match."""
        return action.kind

    def record_id(self, action: ProgressAction) -> str:
        """The match the action is for."""
        return action.match_id

    def claims(self, action: ProgressAction) -> tuple[str, ...]:
        """Progress actions take no keys."""
        return ()

    def destructive(self, action: ProgressAction) -> bool:
        """Meeting deletions are what the guard counts."""
        return destructive(action)


def split_ids(ids: Iterable[str]) -> tuple[list[str], list[int]]:
    """``(match Ids, Moodle user ids)``: all digits is a Moodle user id, anything else a
    Salesforce Id. (An 18-character Salesforce Id is never all digits: an all-digit first 15
    characters get the suffix ``AAA``.)"""
    matches: list[str] = []
    users: list[int] = []
    for value in ids:
        if value.isdigit():
            users.append(int(value))
        else:
            matches.append(value)
    return matches, users


class ProgressRun(KindRun[PlanSpool[ProgressAction]]):
    """One run of the progress sync."""

    kind = KIND
    cursor_name = CURSOR
    # Meeting records read: the guard's base when a run reads less than everything.
    full_read_count = "meeting_records"

    def __init__(
        self,
        ctx: Context,
        request: SyncRequest,
        progress: ProgressHook | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> None:
        super().__init__(ctx, request, progress)
        settings = ctx.settings
        self.programme = settings.programme
        self.rules = ProgrammeRules.from_settings(settings.programme)
        self.pmap = load_progress_map(settings.programme.progress_field_map or None)
        pairs_settings = getattr(settings, "pairs", None)
        pairs_map = load_pairs_field_map(getattr(pairs_settings, "field_map", "") or None)
        user_id_field = load_field_map(settings.members.field_map).writeback.get("user_id")
        self.matches = MatchReader(
            ctx.salesforce,
            pairs_map,
            self.pmap,
            user_id_field or "LMS_User_Id__c",
            settings.programme.programme_code,
        )
        # Today in the programme's time zone: health is a function of the date.
        self.today = self.rules.today(now or utcnow())
        self.courses: Courses | None = None
        self.plugin = False
        self.meetings_read = 0
        self.sweep_after = ""
        self.next_sweep: str | None = None
        self._reader: PerUserReader | None = None
        self._failed_matches: set[str] = set()

    def before_run(self, session: Session) -> None:
        """Where the capped sweep goes on."""
        row = session.get(KeyValue, KV_SWEEP)
        self.sweep_after = str(row.value or "") if row is not None else ""

    def release(self) -> None:
        """Close the per-user reader's clients."""
        if self._reader is not None:
            self._reader.close()

    def full_read_figure(self) -> int:
        """Meeting records read, as this run counted them."""
        return self.meetings_read

    # --- reading and planning -----------------------------------------------------------

    def plan(self, cursor: dt.datetime | None, run_start: dt.datetime) -> None:
        """Read matches, completions and meeting records; spool the plan."""
        moodle = self.ctx.moodle
        self.open_spool(PlanSpool(ProgressCodec()))
        self.courses = resolve_courses(moodle, self.rules)
        self.plugin = has_plugin(moodle.site_info())
        self._reader = PerUserReader(moodle, self.courses, self.programme.completion_concurrency)
        mode = self.request.mode
        if mode == "ids":
            self._plan_ids()
        elif self.plugin and (mode == "full" or cursor is None):
            self.full_scan = True
            everything = bulk_read(moodle, self.courses)
            for chunk in _chunks(self.matches.query(), CHUNK_SIZE):
                self._plan_chunk(chunk, everything)
        elif self.plugin and cursor is not None:
            since = int((cursor - dt.timedelta(seconds=LOOKBACK_SECONDS)).timestamp())
            self._plan_changed(bulk_read(moodle, self.courses, since))
        elif mode == "full":
            self.full_scan = True
            for chunk in _chunks(self.matches.query(), CHUNK_SIZE):
                self._plan_chunk(chunk, self._read_users(chunk))
        else:
            self._plan_sweep()
        self.counts["moodle_reads"] = self._reader.calls
        self.counts["planned"] = len(self.spool)

    def _plan_ids(self) -> None:
        match_ids, user_ids = split_ids(self.request.ids)
        rows = {r.match_id: r for r in self.matches.by_ids(match_ids)}
        rows.update((r.match_id, r) for r in self.matches.by_users(user_ids))
        for match_id in match_ids:
            # Named but not in scope (cancelled, another programme): nothing to do for it.
            if not any(m[:15] == match_id[:15] for m in rows):
                self.succeeded(match_id)
        for chunk in _chunks(iter(rows.values()), CHUNK_SIZE):
            self._plan_chunk(chunk, self._read_users(chunk))

    def _plan_changed(self, changed: Completions) -> None:
        """Incremental with the plugin: the matches of the users whose completions changed."""
        users = set(changed.activities) | set(changed.orientation)
        self.counts["users_changed"] = len(users)
        if not users:
            return
        rows = {r.match_id: r for r in self.matches.by_users(users)}
        people = {u for r in rows.values() for u in r.userids}
        if len(people) <= PER_USER_MAX:
            for chunk in _chunks(iter(rows.values()), CHUNK_SIZE):
                self._plan_chunk(chunk, self._read_users(chunk))
            return
        assert self.courses is not None
        everything = bulk_read(self.ctx.moodle, self.courses)
        for chunk in _chunks(iter(rows.values()), CHUNK_SIZE):
            self._plan_chunk(chunk, everything)

    def _plan_sweep(self) -> None:
        """Without the plugin: matches after the saved position, up to the per-run read cap."""
        cap = int(self.programme.completion_reads_per_run)
        used = 0
        last = ""
        stopped = False
        for chunk in _chunks(self.matches.query(after=self.sweep_after), CHUNK_SIZE):
            taken: list[MatchRow] = []
            for row in chunk:
                cost = self._reads_for([row])
                if cap and used + cost > cap and (taken or used):
                    stopped = True
                    break
                used += cost
                taken.append(row)
            if taken:
                self._plan_chunk(taken, self._read_users(taken))
                last = taken[-1].match_id
            if stopped:
                break
        # Where the next sweep goes on ("" = from the first match again).
        self.next_sweep = last if stopped else ""
        self.full_scan = not stopped and not self.sweep_after

    def _counted(self, row: MatchRow) -> set[int]:
        """The users whose meeting ticks count for this match (programme.ticked_by)."""
        by = self.rules.ticked_by
        wanted = {
            "mentee": (row.mentee_userid,),
            "mentor": (row.mentor_userid,),
            "either": (row.mentor_userid, row.mentee_userid),
        }[by]
        return {u for u in wanted if u is not None}

    def _reads_for(self, rows: list[MatchRow]) -> int:
        people = {u for r in rows for u in r.userids}
        counted = {u for r in rows for u in self._counted(r)}
        return len(people) + len(counted)

    def _read_users(self, rows: list[MatchRow]) -> Completions:
        """Per-user reads of these matches' people (orientation for both, meetings for the
        counted ones)."""
        assert self._reader is not None
        out = Completions()
        people = sorted({u for r in rows for u in r.userids})
        counted = {u for r in rows for u in self._counted(r)}
        self._reader.read(people, counted, out)
        return out

    def _plan_chunk(self, rows: list[MatchRow], completions: Completions) -> None:
        meetings = read_meetings(self.ctx.salesforce, self.pmap, [r.match_id for r in rows])
        for row in rows:
            self.counts["matches_read"] += 1
            records = meetings.get(row.match_id, {})
            self.meetings_read += len(records)
            failed = [completions.failed[u] for u in row.userids if u in completions.failed]
            if failed:
                # Unknown completions: planning would delete what it could not see.
                self.failed_record(row.match_id, failed[0], "moodle:read")
                continue
            if not row.userids:
                self.counts["unlinked"] += 1
            acts, courses = completions.for_users(row.userids)
            inp = MatchInput(
                match_id=row.match_id,
                mentor_userid=row.mentor_userid,
                mentee_userid=row.mentee_userid,
                match_values=row.values,
                completions=acts,
                orientation=courses,
                meetings=records,
            )
            actions = plan_match(inp, self.rules, self.pmap, self.today)
            if not actions:
                self.counts["unchanged"] += 1
                self.succeeded(row.match_id)
            for action in actions:
                self.spool.add(action)
        self.tick(len(rows))

    # --- the guard -------------------------------------------------------------------------

    def guard(self) -> str:
        """Stop before deleting too many meeting records (over the last full read's count);
        at most :data:`GUARD_FLOOR` deletions always go through."""
        base = self.meetings_read
        if not self.full_scan:
            base = max(base, self.full_read_base or 0)
        return mass_change(
            "delete",
            self.spool.destructive,
            base,
            "meeting records",
            self.programme.mass_change_share,
            self.programme.mass_change_count,
            floor=GUARD_FLOOR,
        )

    def plan_lines(self) -> list[tuple[str, str, str]]:
        """The plan as (action, external id or match Id, details) lines."""
        lines: list[tuple[str, str, str]] = []
        for action in self.spool:
            if len(lines) >= PLAN_LINES_MAX:
                lines.append(("...", "", "more not shown; the counts cover everything"))
                break
            lines.append((action.kind, action.record_key, action.details()))
        return lines

    # --- applying ----------------------------------------------------------------------------

    def apply(self) -> None:
        """Upsert meetings, update matches, delete undone meetings; report per match."""
        sf = self.ctx.salesforce
        pmap = self.pmap
        meetings = WritebackBuffer(
            sf, pmap.meeting_object, self._meeting_result, external_id=pmap.meeting["external_id"]
        )
        matches = WritebackBuffer(sf, pmap.match_object, self._match_result)
        deletes: list[ProgressAction] = []
        touched: set[str] = set()
        self.start_progress(len(self.spool))
        try:
            for action in self.spool:
                touched.add(action.match_id)
                if action.kind == UPSERT_MEETING:
                    meetings.add(dict(action.fields), True)
                elif action.kind == UPDATE_MATCH:
                    matches.add({"Id": action.record_id, **action.fields}, True)
                elif action.record_id:
                    deletes.append(action)
                    if len(deletes) >= COLLECTION_SIZE:
                        self._delete(deletes)
                        deletes = []
                self.tick()
            meetings.flush()
            matches.flush()
            self._delete(deletes)
        finally:
            meetings.close()
            matches.close()
        for match_id in touched - self._failed_matches:
            self.succeeded(match_id)
        if self.next_sweep is not None:
            with self.ctx.db.session() as session:
                _put(session, KV_SWEEP, self.next_sweep)

    def _delete(self, actions: list[ProgressAction]) -> None:
        if not actions:
            return
        results = self.ctx.salesforce.collection_delete([a.record_id for a in actions])
        for action, result in zip(actions, results, strict=True):
            # Already gone is what was wanted.
            if result.success or result.error_code == "ENTITY_IS_DELETED":
                self.counts[DONE[DELETE_MEETING]] += 1
            else:
                self._fail(action.match_id, f"salesforce:{result.error_code or 'error'}", "delete")

    def _meeting_result(self, key: str, success: bool, code: str, was_ok: bool) -> None:
        if success:
            self.counts[DONE[UPSERT_MEETING]] += 1
        else:
            self._fail(key.rsplit(":", 1)[0], f"salesforce:{code or 'error'}", "meeting")

    def _match_result(self, match_id: str, success: bool, code: str, was_ok: bool) -> None:
        if success:
            self.counts[DONE[UPDATE_MATCH]] += 1
        else:
            self._fail(match_id, f"salesforce:{code or 'error'}", "match")

    def _fail(self, match_id: str, code: str, what: str) -> None:
        """Record a match's failure once, whichever of its writes failed first."""
        self.counts[f"{what}_failed"] += 1
        if match_id not in self._failed_matches:
            self._failed_matches.add(match_id)
            self.failed_record(match_id, code, f"salesforce:{what}")


def _chunks(rows: Iterable[MatchRow], size: int) -> Iterator[list[MatchRow]]:
    chunk: list[MatchRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _put(session: Session, key: str, value: Any) -> None:
    row = session.get(KeyValue, key)
    if row is None:
        session.add(KeyValue(key=key, value=value, updated_at=utcnow()))
    else:
        row.value = value
        row.updated_at = utcnow()
