"""The progress planner: a match's Moodle completions -> the Salesforce state it should have -> the
actions that get it there. Pure: no I/O, no clock (``today`` is an argument, a programme-local
date), so the nightly pass re-plans every match and health changes by date alone.

Per match (:class:`MatchInput`) the planner derives:

- one ``Mentoring_Meeting__c`` per meeting activity the pair completed, keyed
  ``<match Id>:<activity idnumber>`` (:func:`external_id`), with the match, the activity's
  position in ``programme.meeting_activities`` (1-based), its idnumber, the completion's date in
  the programme's time zone, its hours and the source value;
- on the match: both orientation dates, the number of meetings, their hours, the latest meeting
  date, and the health (:mod:`connector.kinds.progress.health`).

Actions (:class:`ProgressAction`):

- ``upsert_meeting``: a meeting record is missing or differs; ``fields`` holds the external id
  field plus every field for a new record, only the changed ones for an existing one.
- ``delete_meeting``: a record of ours (its external id starts ``<match Id>:`` and its source is
  ours) that no completion backs any more (undone in Moodle). Destructive: the engine's guard
  counts these (:func:`destructive`).
- ``update_match``: the changed match fields only.

Values are compared normalised (:func:`normalise`): dates as ``YYYY-MM-DD`` strings, numbers so
that ``3.0 == 3``, ``""`` as null. Whose completion counts is ``programme.ticked_by``: the
mentee's, the mentor's, or either's (the earlier of the two). Moodle completion is per user, not
per pair: a mentee with two mentors who ticks a meeting ticks it for both matches
(``ticked_by = "mentor"`` tells them apart). Only dates, counts, hours and the health leave Moodle.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from connector.kinds.progress.health import Assessment, HealthFacts, assess
from connector.kinds.progress.rules import MeetingActivity, ProgrammeRules, is_done
from mappings.progress import ProgressMap

UPSERT_MEETING = "upsert_meeting"
DELETE_MEETING = "delete_meeting"
UPDATE_MATCH = "update_match"
KINDS = (UPSERT_MEETING, DELETE_MEETING, UPDATE_MATCH)

Scalar = str | int | float | bool | None
Fields = dict[str, Scalar]


@dataclass(frozen=True, slots=True)
class ActivityCompletion:
    """One user's completion of one activity, as Moodle reports it.

    ``state``: Moodle's completion state (1 and 2 count as done; see ``rules``);
    ``timecompleted``: Unix seconds (the web service's ``timecompleted``, the plugin's
    ``timemodified``). A done state without a time (0) cannot be dated and is ignored.
    """

    userid: int
    activity: str
    state: int
    timecompleted: int


@dataclass(frozen=True, slots=True)
class CourseCompletion:
    """One user's completion of the orientation course (``timecompleted`` None: not complete)."""

    userid: int
    timecompleted: int | None


@dataclass(frozen=True)
class MatchInput:
    """Everything the planner needs about one match, as read from both systems."""

    match_id: str
    mentor_userid: int | None
    mentee_userid: int | None
    # The match's mapped fields as read from Salesforce (field name -> value).
    match_values: Mapping[str, Scalar] = field(default_factory=dict)
    # Activity completions of the pair's users (other users and activities are ignored). At most
    # one row per user and activity is expected; with more, the last one wins.
    completions: Sequence[ActivityCompletion] = ()
    # Orientation course completions of the pair's users.
    orientation: Sequence[CourseCompletion] = ()
    # The match's meeting records as read: external id -> field values (with "Id").
    meetings: Mapping[str, Mapping[str, Scalar]] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    """The Salesforce state a match should have."""

    # external id -> every field of the meeting record (the external id field included).
    meetings: dict[str, Fields]
    # match field -> value (only the mapped fields).
    match: Fields
    assessment: Assessment


@dataclass(frozen=True, slots=True)
class ProgressAction:
    """One write the plan asks for; JSON round-trips with :meth:`to_json` / :meth:`from_json`."""

    kind: str
    match_id: str
    external_id: str = ""
    # The Salesforce Id of the record acted on, when known (always for delete_meeting if read).
    record_id: str = ""
    fields: Fields = field(default_factory=dict)
    # Reason codes (health reasons, "undone"), never PII.
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown progress action kind: {self.kind!r}")

    def to_json(self) -> str:
        """Compact JSON of the action."""
        return json.dumps(
            {
                "kind": self.kind,
                "match_id": self.match_id,
                "external_id": self.external_id,
                "record_id": self.record_id,
                "fields": self.fields,
                "note": self.note,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ProgressAction:
        """The action :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(
            kind=data["kind"],
            match_id=data["match_id"],
            external_id=data.get("external_id", ""),
            record_id=data.get("record_id", ""),
            fields=dict(data.get("fields", {})),
            note=data.get("note", ""),
        )

    @property
    def record_key(self) -> str:
        """The record this action is about: the external id, else the match Id."""
        return self.external_id or self.match_id

    def details(self) -> str:
        """A plan line's details: ids, field names and reason codes, never values."""
        parts = []
        if self.record_id:
            parts.append(f"record {self.record_id}")
        if self.fields:
            parts.append("fields: " + ",".join(self.fields))
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


def destructive(action: ProgressAction) -> bool:
    """Whether the engine's mass-change guard counts this action (meeting deletions)."""
    return action.kind == DELETE_MEETING


def external_id(match_id: str, idnumber: str) -> str:
    """The stable key of a match's meeting record: ``<match Id>:<activity idnumber>``."""
    return f"{match_id}:{idnumber}"


def normalise(value: object) -> Scalar:
    """A value in the form used to compare what was read with what is wanted."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        number = round(float(value), 6)
        return int(number) if number.is_integer() else number
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day is not None else None


def meetings_held(inp: MatchInput, rules: ProgrammeRules) -> list[tuple[MeetingActivity, dt.date]]:
    """The pair's completed meetings (activity, local date), in activity order."""
    counted = {
        "mentee": {inp.mentee_userid},
        "mentor": {inp.mentor_userid},
        "either": {inp.mentee_userid, inp.mentor_userid},
    }[rules.ticked_by] - {None}
    latest: dict[tuple[int, str], ActivityCompletion] = {}
    for completion in inp.completions:
        if completion.userid in counted:
            latest[(completion.userid, completion.activity)] = completion
    held: list[tuple[MeetingActivity, dt.date]] = []
    for activity in rules.activities:
        times = [
            c.timecompleted
            for (_, idnumber), c in latest.items()
            if idnumber == activity.idnumber and is_done(c.state) and c.timecompleted > 0
        ]
        if times:
            # With "either", the first tick dates the meeting.
            held.append((activity, rules.local_date(min(times))))
    return held


def orientation_date(inp: MatchInput, rules: ProgrammeRules, userid: int | None) -> dt.date | None:
    """The local date ``userid`` completed the orientation course, or None."""
    times = [
        c.timecompleted
        for c in inp.orientation
        if userid is not None and c.userid == userid and c.timecompleted
    ]
    return rules.local_date(min(times)) if times else None


def desired_state(
    inp: MatchInput, rules: ProgrammeRules, fmap: ProgressMap, today: dt.date
) -> Desired:
    """The Salesforce state ``inp``'s match should have on ``today``."""
    m = fmap.meeting
    held = meetings_held(inp, rules)
    meetings: dict[str, Fields] = {}
    for activity, day in held:
        key = external_id(inp.match_id, activity.idnumber)
        record: Fields = {
            m["external_id"]: key,
            m["match"]: inp.match_id,
            m["number"]: activity.number,
            m["activity"]: activity.idnumber,
            m["completed_on"]: day.isoformat(),
            m["hours"]: activity.hours,
            m["source"]: fmap.source_value,
        }
        record.pop("", None)  # fields the map leaves out
        meetings[key] = record
    mentor = orientation_date(inp, rules, inp.mentor_userid)
    mentee = orientation_date(inp, rules, inp.mentee_userid)
    facts = HealthFacts(
        meetings=tuple((day, activity.hours) for activity, day in held),
        mentor_orientation=mentor,
        mentee_orientation=mentee,
    )
    assessment = assess(facts, rules, today)
    hours = round(sum(activity.hours for activity, _ in held), 6)
    values: dict[str, Scalar] = {
        "mentor_orientation": _iso(mentor),
        "mentee_orientation": _iso(mentee),
        "meetings_completed": len(held),
        "meeting_hours": hours,
        "last_meeting_date": _iso(max((day for _, day in held), default=None)),
        "health": fmap.health[assessment.health.name.lower()],
    }
    match = {fmap.match[key]: value for key, value in values.items() if fmap.match[key]}
    return Desired(meetings=meetings, match=match, assessment=assessment)


def _ours(inp: MatchInput, fmap: ProgressMap, key: str, record: Mapping[str, Scalar]) -> bool:
    """Whether a meeting record read is one the progress sync manages (staff's are not)."""
    if not key.startswith(inp.match_id + ":"):
        return False
    source_field = fmap.meeting["source"]
    if source_field and source_field in record:
        return normalise(record[source_field]) == fmap.source_value
    return True


def plan_match(
    inp: MatchInput, rules: ProgrammeRules, fmap: ProgressMap, today: dt.date
) -> list[ProgressAction]:
    """The actions that bring one match's Salesforce state to what Moodle says, on ``today``.

    Order: upserts (activity order), deletions, then the match update. Nothing when in step.
    """
    desired = desired_state(inp, rules, fmap, today)
    key_field = fmap.meeting["external_id"]
    actions: list[ProgressAction] = []
    for key, wanted in desired.meetings.items():
        current = inp.meetings.get(key)
        if current is None:
            changed = dict(wanted)
        else:
            changed = {
                name: value
                for name, value in wanted.items()
                if name != key_field and normalise(current.get(name)) != normalise(value)
            }
            if not changed:
                continue
            changed = {key_field: key, **changed}
        record_id = str(current.get("Id") or "") if current is not None else ""
        actions.append(ProgressAction(UPSERT_MEETING, inp.match_id, key, record_id, changed))
    for key, record in sorted(inp.meetings.items()):
        if key in desired.meetings or not _ours(inp, fmap, key, record):
            continue
        actions.append(
            ProgressAction(
                DELETE_MEETING, inp.match_id, key, str(record.get("Id") or ""), note="undone"
            )
        )
    changed_match = {
        name: value
        for name, value in desired.match.items()
        if normalise(inp.match_values.get(name)) != normalise(value)
    }
    if changed_match:
        reasons = ",".join(desired.assessment.reasons)
        note = f"health: {desired.assessment.health.value}" + (f" ({reasons})" if reasons else "")
        actions.append(
            ProgressAction(
                UPDATE_MATCH,
                inp.match_id,
                record_id=inp.match_id,
                fields=changed_match,
                note=note,
            )
        )
    return actions


def plan(
    inputs: Iterable[MatchInput], rules: ProgrammeRules, fmap: ProgressMap, today: dt.date
) -> Iterator[ProgressAction]:
    """:func:`plan_match` over many matches, streamed (flat memory for a full sweep)."""
    for inp in inputs:
        yield from plan_match(inp, rules, fmap, today)
