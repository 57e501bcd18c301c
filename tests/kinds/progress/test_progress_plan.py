"""The progress planner: Moodle completions -> Mentoring_Meeting__c records and match totals."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest

from connector.config import ProgrammeSettings, load_settings
from connector.errors import ConfigError
from connector.kinds.progress.plan import (
    DELETE_MEETING,
    UPDATE_MATCH,
    UPSERT_MEETING,
    ActivityCompletion,
    CourseCompletion,
    MatchInput,
    ProgressAction,
    desired_state,
    destructive,
    external_id,
    normalise,
    plan,
    plan_match,
)
from connector.kinds.progress.rules import ProgrammeRules
from mappings.progress import load_progress_map, parse_progress_map

MATCH = "a015g00000AbCdEAAV"
MATCH_2 = "a015g00000XyZwVAAV"
MENTOR, MENTEE, MENTOR_2 = 30, 40, 31
NY = zoneinfo.ZoneInfo("America/New_York")
D = dt.date.fromisoformat
FMAP = load_progress_map()


def rules(**overrides: object) -> ProgrammeRules:
    settings = {"window_year": 2026, **overrides}
    return ProgrammeRules.from_settings(ProgrammeSettings(**settings))  # type: ignore[arg-type]


RULES = rules()


def at(local: str, zone: zoneinfo.ZoneInfo = NY) -> int:
    """Unix seconds of a local wall-clock time."""
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=zone).timestamp())


def done(user: int, n: int, local: str, state: int = 1) -> ActivityCompletion:
    return ActivityCompletion(user, f"GMP-2026-M{n}", state, at(local))


def oriented(user: int, local: str | None) -> CourseCompletion:
    return CourseCompletion(user, at(local) if local else None)


def match_input(completions=(), orientation=(), meetings=None, values=None, **kw) -> MatchInput:
    return MatchInput(
        match_id=kw.get("match_id", MATCH),
        mentor_userid=kw.get("mentor", MENTOR),
        mentee_userid=kw.get("mentee", MENTEE),
        match_values=values or {},
        completions=tuple(completions),
        orientation=tuple(orientation),
        meetings=meetings or {},
    )


def meeting_record(match: str, n: int, day: str, hours: float = 1.0) -> dict[str, object]:
    return {
        "External_Id__c": f"{match}:GMP-2026-M{n}",
        "Match__c": match,
        "Meeting_Number__c": n,
        "Activity_Idnumber__c": f"GMP-2026-M{n}",
        "Completed_On__c": day,
        "Hours__c": hours,
        "Source__c": "Moodle",
    }


def as_read(actions: list[ProgressAction]) -> tuple[dict, dict]:
    """What Salesforce holds once ``actions`` were applied to an empty org, as it reads back."""
    meetings: dict[str, dict] = {}
    values: dict[str, object] = {}
    for i, action in enumerate(actions):
        if action.kind == UPSERT_MEETING:
            # Salesforce hands numbers back as floats (3.0), with the record's Id.
            record = {k: float(v) if isinstance(v, int) else v for k, v in action.fields.items()}
            meetings[action.external_id] = {"Id": f"a02000000000{i:03d}AAA", **record}
        elif action.kind == UPDATE_MATCH:
            values.update(action.fields)
    return meetings, values


TWO_MEETINGS = [done(MENTEE, 1, "2026-10-14T18:00"), done(MENTEE, 3, "2026-11-09T12:00")]
BOTH_ORIENTED = [oriented(MENTOR, "2026-09-18T10:00"), oriented(MENTEE, "2026-09-21T20:15")]


def test_completions_become_meeting_records_with_exact_payloads() -> None:
    actions = plan_match(match_input(TWO_MEETINGS, BOTH_ORIENTED), RULES, FMAP, D("2026-11-20"))
    assert [(a.kind, a.external_id, a.fields) for a in actions] == [
        (
            UPSERT_MEETING,
            f"{MATCH}:GMP-2026-M1",
            meeting_record(MATCH, 1, "2026-10-14"),
        ),
        (
            UPSERT_MEETING,
            f"{MATCH}:GMP-2026-M3",
            meeting_record(MATCH, 3, "2026-11-09"),
        ),
        (
            UPDATE_MATCH,
            "",
            {
                "Mentor_Orientation_Completed__c": "2026-09-18",
                "Mentee_Orientation_Completed__c": "2026-09-21",
                "Meetings_Completed__c": 2,
                "Meeting_Hours__c": 2.0,
                "Last_Meeting_Date__c": "2026-11-09",
                "Health__c": "On track",
            },
        ),
    ]
    assert actions[2].record_id == MATCH
    assert not any(destructive(a) for a in actions)
    # Nothing but these fields leaves Moodle.
    assert {k for a in actions for k in a.fields} == {
        *FMAP.meeting.values(),
        *FMAP.match.values(),
    }


def test_replanning_with_nothing_changed_plans_nothing() -> None:
    first = plan_match(match_input(TWO_MEETINGS, BOTH_ORIENTED), RULES, FMAP, D("2026-11-20"))
    meetings, values = as_read(first)
    assert values["Meeting_Hours__c"] == 2.0 and meetings[f"{MATCH}:GMP-2026-M1"]["Hours__c"] == 1.0
    again = match_input(
        TWO_MEETINGS, BOTH_ORIENTED, meetings, {**values, "Meetings_Completed__c": 2.0}
    )
    assert plan_match(again, RULES, FMAP, D("2026-11-20")) == []


def test_a_day_with_no_moodle_change_updates_health_only() -> None:
    first = plan_match(match_input(TWO_MEETINGS, BOTH_ORIENTED), RULES, FMAP, D("2026-11-20"))
    meetings, values = as_read(first)
    same = match_input(TWO_MEETINGS, BOTH_ORIENTED, meetings, values)
    assert plan_match(same, RULES, FMAP, D("2026-12-24")) == []
    actions = plan_match(same, RULES, FMAP, D("2026-12-25"))
    assert actions == [
        ProgressAction(
            UPDATE_MATCH,
            MATCH,
            record_id=MATCH,
            fields={"Health__c": "At risk"},
            note="health: At risk (gap:46d)",
        )
    ]
    assert actions[0].details() == f"record {MATCH}; fields: Health__c; health: At risk (gap:46d)"


def test_an_undone_completion_deletes_its_meeting_record() -> None:
    first = plan_match(match_input(TWO_MEETINGS, BOTH_ORIENTED), RULES, FMAP, D("2026-11-20"))
    meetings, values = as_read(first)
    # Moodle's undo (recording 50): state 0, the old timecompleted kept.
    undone = [TWO_MEETINGS[0], done(MENTEE, 3, "2026-11-09T12:00", state=0)]
    actions = plan_match(
        match_input(undone, BOTH_ORIENTED, meetings, values), RULES, FMAP, D("2026-11-20")
    )
    record_id = meetings[f"{MATCH}:GMP-2026-M3"]["Id"]
    assert actions == [
        ProgressAction(DELETE_MEETING, MATCH, f"{MATCH}:GMP-2026-M3", record_id, {}, "undone"),
        ProgressAction(
            UPDATE_MATCH,
            MATCH,
            record_id=MATCH,
            fields={
                "Meetings_Completed__c": 1,
                "Meeting_Hours__c": 1.0,
                "Last_Meeting_Date__c": "2026-10-14",
            },
            note="health: On track",
        ),
    ]
    assert [destructive(a) for a in actions] == [True, False]
    assert actions[0].details() == f"record {record_id}; undone"


def test_records_not_ours_are_never_deleted() -> None:
    staff = {**meeting_record(MATCH, 2, "2026-10-30"), "Id": "a02S", "Source__c": "Manual"}
    other = {**meeting_record(MATCH_2, 2, "2026-10-30"), "Id": "a02O"}
    ours_unsourced = {
        k: v for k, v in meeting_record(MATCH, 5, "2026-10-30").items() if k != "Source__c"
    }
    meetings = {
        f"{MATCH}:GMP-2026-M2": staff,
        f"{MATCH_2}:GMP-2026-M2": other,
        f"{MATCH}:GMP-2026-M5": {**ours_unsourced, "Id": "a02U"},
        f"{MATCH}:GMP-OLD-M9": {"Id": "a02X", "Source__c": "Moodle"},
    }
    actions = plan_match(match_input(meetings=meetings), RULES, FMAP, D("2026-10-02"))
    deletes = [(a.external_id, a.record_id) for a in actions if a.kind == DELETE_MEETING]
    assert deletes == [(f"{MATCH}:GMP-2026-M5", "a02U"), (f"{MATCH}:GMP-OLD-M9", "a02X")]


def test_a_changed_completion_date_sends_only_the_changed_field() -> None:
    meetings = {f"{MATCH}:GMP-2026-M1": {**meeting_record(MATCH, 1, "2026-10-13"), "Id": "a02A"}}
    actions = plan_match(
        match_input(TWO_MEETINGS[:1], meetings=meetings), RULES, FMAP, D("2026-10-20")
    )
    assert actions[0] == ProgressAction(
        UPSERT_MEETING,
        MATCH,
        f"{MATCH}:GMP-2026-M1",
        "a02A",
        {"External_Id__c": f"{MATCH}:GMP-2026-M1", "Completed_On__c": "2026-10-14"},
    )


@pytest.mark.parametrize(
    ("mentor", "mentee", "fields"),
    [
        (None, None, {}),
        ("2026-09-18T10:00", None, {"Mentor_Orientation_Completed__c": "2026-09-18"}),
        (None, "2026-09-21T20:15", {"Mentee_Orientation_Completed__c": "2026-09-21"}),
        (
            "2026-09-18T10:00",
            "2026-09-21T20:15",
            {
                "Mentor_Orientation_Completed__c": "2026-09-18",
                "Mentee_Orientation_Completed__c": "2026-09-21",
            },
        ),
    ],
    ids=["neither", "mentor", "mentee", "both"],
)
def test_orientation_for_one_and_for_both(mentor, mentee, fields) -> None:
    orientation = [
        oriented(MENTOR, mentor),
        oriented(MENTEE, mentee),
        oriented(99, "2026-09-01T09:00"),
    ]
    values = {"Meetings_Completed__c": 0, "Meeting_Hours__c": 0, "Health__c": "On track"}
    actions = plan_match(
        match_input(orientation=orientation, values=values), RULES, FMAP, D("2026-10-05")
    )
    assert [a.fields for a in actions] == ([fields] if fields else [])


def test_two_mentors_each_match_has_its_own_records() -> None:
    by_mentor = rules(ticked_by="mentor")
    ticks = [
        done(MENTOR, 1, "2026-10-05T17:00"),
        done(MENTOR_2, 1, "2026-10-07T17:00"),
        done(MENTOR_2, 2, "2026-11-04T17:00"),
        done(MENTEE, 1, "2026-10-05T17:00"),
    ]
    first = match_input(ticks)
    second = match_input(ticks, match_id=MATCH_2, mentor=MENTOR_2)
    today = D("2026-11-10")
    upserts = [
        (a.external_id, a.fields["Match__c"], a.fields["Completed_On__c"])
        for a in plan([first, second], by_mentor, FMAP, today)
        if a.kind == UPSERT_MEETING
    ]
    assert upserts == [
        (f"{MATCH}:GMP-2026-M1", MATCH, "2026-10-05"),
        (f"{MATCH_2}:GMP-2026-M1", MATCH_2, "2026-10-07"),
        (f"{MATCH_2}:GMP-2026-M2", MATCH_2, "2026-11-04"),
    ]
    # Ticked by the mentee, the one completion counts for both matches, each its own record.
    both = [
        a.external_id for a in plan([first, second], RULES, FMAP, today) if a.kind == UPSERT_MEETING
    ]
    assert both == [f"{MATCH}:GMP-2026-M1", f"{MATCH_2}:GMP-2026-M1"]


def test_ticked_by_either_takes_the_earlier_tick() -> None:
    ticks = [done(MENTOR, 1, "2026-10-06T09:00"), done(MENTEE, 1, "2026-10-05T21:00")]
    desired = desired_state(match_input(ticks), rules(ticked_by="either"), FMAP, D("2026-10-10"))
    assert desired.meetings[f"{MATCH}:GMP-2026-M1"]["Completed_On__c"] == "2026-10-05"
    assert desired_state(match_input(ticks[:1]), RULES, FMAP, D("2026-10-10")).meetings == {}


@pytest.mark.parametrize(
    ("state", "counts"), [(0, False), (1, True), (2, True), (3, False), (4, False)]
)
def test_completion_states(state: int, counts: bool) -> None:
    desired = desired_state(
        match_input([done(MENTEE, 2, "2026-10-05T09:00", state)]), RULES, FMAP, D("2026-10-10")
    )
    assert bool(desired.meetings) is counts


def test_other_activities_users_and_undated_rows_are_ignored() -> None:
    rows = [
        ActivityCompletion(MENTEE, "GMP-ORIENT-TRAINING", 1, at("2026-10-05T09:00")),
        done(77, 2, "2026-10-05T09:00"),
        ActivityCompletion(MENTEE, "GMP-2026-M4", 1, 0),
        # The last row of a user and activity is the current state.
        done(MENTEE, 5, "2026-10-05T09:00"),
        done(MENTEE, 5, "2026-10-05T09:00", state=0),
    ]
    desired = desired_state(match_input(rows), RULES, FMAP, D("2026-10-10"))
    assert desired.meetings == {}
    assert desired.match["Meetings_Completed__c"] == 0
    assert desired.match["Last_Meeting_Date__c"] is None


def test_completed_on_is_the_local_date_at_midnight_and_across_dst() -> None:
    # 23:30 EDT on 31 October 2026 (03:30 UTC on 1 November, the day clocks go back).
    late = ActivityCompletion(MENTEE, "GMP-2026-M1", 1, at("2026-10-31T23:30"))
    assert dt.datetime.fromtimestamp(late.timecompleted, dt.UTC).date() == D("2026-11-01")
    # 00:10 EST on 2 November 2026 (05:10 UTC).
    early = ActivityCompletion(MENTEE, "GMP-2026-M2", 1, at("2026-11-02T00:10"))
    desired = desired_state(match_input([late, early]), RULES, FMAP, D("2026-11-05"))
    days = {k: v["Completed_On__c"] for k, v in desired.meetings.items()}
    assert days == {f"{MATCH}:GMP-2026-M1": "2026-10-31", f"{MATCH}:GMP-2026-M2": "2026-11-02"}
    auckland = zoneinfo.ZoneInfo("Pacific/Auckland")
    kiwi = ActivityCompletion(MENTEE, "GMP-2026-M1", 1, at("2026-10-01T00:30", auckland))
    got = desired_state(
        match_input([kiwi]), rules(timezone="Pacific/Auckland"), FMAP, D("2026-10-02")
    )
    assert got.meetings[f"{MATCH}:GMP-2026-M1"]["Completed_On__c"] == "2026-10-01"


def test_activity_hours_and_positions_come_from_the_programme() -> None:
    r = rules(
        meeting_activities=["GMP-2026-M6", "GMP-2026-M1"], activity_hours={"GMP-2026-M1": 1.5}
    )
    ticks = [done(MENTEE, 1, "2026-10-05T09:00"), done(MENTEE, 6, "2026-10-20T09:00")]
    desired = desired_state(match_input(ticks), r, FMAP, D("2026-10-25"))
    assert [(v["Meeting_Number__c"], v["Hours__c"]) for v in desired.meetings.values()] == [
        (1, 1.0),
        (2, 1.5),
    ]
    assert desired.match["Meeting_Hours__c"] == 2.5


def test_a_custom_map_renames_and_leaves_fields_out() -> None:
    fmap = parse_progress_map(
        {
            "meeting": {
                "object": "Session__c",
                "external_id": "Key__c",
                "number": "",
                "source": "",
            },
            "match": {"health": "", "meeting_hours": "Hours_Total__c"},
            "health": {"on_track": "Green"},
        }
    )
    actions = plan_match(match_input(TWO_MEETINGS[:1]), RULES, fmap, D("2026-10-20"))
    assert actions[0].fields == {
        "Key__c": f"{MATCH}:GMP-2026-M1",
        "Match__c": MATCH,
        "Activity_Idnumber__c": "GMP-2026-M1",
        "Completed_On__c": "2026-10-14",
        "Hours__c": 1.0,
    }
    assert actions[1].fields == {
        "Meetings_Completed__c": 1,
        "Hours_Total__c": 1.0,
        "Last_Meeting_Date__c": "2026-10-14",
    }
    # Without a source field, every record under the match's prefix is ours.
    assert fmap.meeting_read_fields() == [
        "Id",
        "Key__c",
        "Match__c",
        "Completed_On__c",
        "Activity_Idnumber__c",
        "Hours__c",
    ]


def test_actions_round_trip_through_json_without_values_in_details() -> None:
    actions = plan_match(match_input(TWO_MEETINGS, BOTH_ORIENTED), RULES, FMAP, D("2026-11-20"))
    for action in actions:
        text = action.to_json()
        assert json.loads(text)["kind"] == action.kind
        assert ProgressAction.from_json(text) == action
        assert "2026-" not in action.details()
    assert actions[0].details() == "fields: " + ",".join(meeting_record(MATCH, 1, "x"))
    with pytest.raises(ValueError, match="unknown progress action"):
        ProgressAction("create_meeting", MATCH)


def test_normalise() -> None:
    assert normalise(3.0) == normalise(3) == 3
    assert normalise(1.50000000001) == 1.5
    assert normalise("") is None and normalise(None) is None
    assert normalise(D("2026-10-05")) == "2026-10-05"
    assert normalise(True) is True
    assert external_id(MATCH, "GMP-2026-M3") == f"{MATCH}:GMP-2026-M3"


# --- settings and the field map ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"ticked_by": "both"}, "programme.ticked_by"),
        ({"cadence": "weekly"}, "programme.cadence"),
        ({"window_year": 26}, "programme.window_year"),
        ({"window_start": "03-31"}, "programme.window_end"),
        ({"activity_hours": {"GMP-2026-M9": 1}}, "programme.activity_hours.GMP-2026-M9"),
        ({"activity_hours": {"GMP-2026-M1": 0}}, "programme.activity_hours.GMP-2026-M1"),
        ({"activity_hours": {"GMP-2026-M1": "lots"}}, "programme.activity_hours.GMP-2026-M1"),
        ({"progress_field_map": "/nonexistent.toml"}, "programme.progress_field_map"),
    ],
)
def test_programme_settings_name_the_wrong_key(values, key) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides={"programme": values})
    assert info.value.key == key


def test_programme_settings_defaults_and_hours() -> None:
    s = load_settings(env={}, overrides={"programme": {"activity_hours": {"GMP-2026-M2": "1.5"}}})
    r = ProgrammeRules.from_settings(s.programme)
    assert (r.ticked_by, r.cadence, r.window_year, r.min_hours) == ("mentee", "monthly", 0, 6.0)
    assert [a.hours for a in r.activities] == [1.0, 1.5, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"meeting": {"hours": "Hours c"}}, "[meeting] hours: not a valid Salesforce API name"),
        ({"meeting": {"external_id": ""}}, "[meeting] external_id: not a valid"),
        ({"meeting": {"notes": "Notes__c"}}, "[meeting] notes: unknown key"),
        ({"grades": {}}, "[grades]: unknown section"),
        ({"health": {"behind": "At risk"}}, "[health]: two health states share"),
    ],
)
def test_the_progress_map_names_its_mistakes(data, problem) -> None:
    with pytest.raises(ConfigError) as info:
        parse_progress_map(data, "x.toml")
    assert info.value.key == "programme.progress_field_map"
    assert problem in info.value.problem
