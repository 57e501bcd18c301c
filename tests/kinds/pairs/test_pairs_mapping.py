"""The pairs field map, the match row -> Match schema, and the pairs settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.kinds.pairs.model import Group, Match, Rejected, enrolled_roles, group_members
from connector.kinds.pairs.settings import (
    PairsSettings,
    pairs_settings_from_mapping,
    validate_pairs,
)
from mappings.pairs import (
    MatchMapper,
    load_pairs_field_map,
    parse_pairs_field_map,
    salesforce_fields,
)

ROW = {
    "Id": "a0X000000000001AAA",
    "Name": "MM-0001",
    "Mentor__c": "003000000000001AAA",
    "Mentee__c": "003000000000002AAA",
    "Status__c": "Active",
    "Program__c": "GMP-2026",
    "Start_Date__c": "2026-10-01",
    "End_Date__c": None,
    "LMS_Group_Id__c": "17",
    "LMS_Sync_Status__c": "Synced",
    "LMS_Sync_Error__c": None,
}


ROW_WB = ("group_id", "status", "error")


def mapper(data: dict | None = None) -> MatchMapper:
    return MatchMapper(parse_pairs_field_map(data or {}) if data else load_pairs_field_map())


def test_default_map_reads_the_default_data_model() -> None:
    fm = load_pairs_field_map()
    assert fm.sobject == "Mentorship_Match__c"
    assert fm.read_fields() == [
        "Id", "Name", "Mentor__c", "Mentee__c", "Status__c", "Program__c", "Start_Date__c",
        "End_Date__c", "LMS_Group_Id__c", "LMS_Sync_Status__c", "LMS_Sync_Error__c",
    ]  # fmt: skip
    assert fm.status_values == {
        "Proposed": "proposed", "Active": "active", "Completed": "completed",
        "Cancelled": "cancelled",
    }  # fmt: skip
    assert fm.program_soql("GMP-2026") == "Program__c = 'GMP-2026'"
    assert fm.program_soql("x' OR Id != '") == "Program__c = 'x\\' OR Id != \\''"
    assert fm.other_programs_soql("GMP-2026") == (
        "(Program__c != 'GMP-2026' OR Program__c = null)"
    )
    assert fm.people_soql(["003A", "003B"]) == (
        "(Mentor__c IN ('003A','003B') OR Mentee__c IN ('003A','003B'))"
    )
    assert salesforce_fields(fm) == {"Mentorship_Match__c": set(fm.read_fields())}
    assert parse_pairs_field_map({}) == parse_pairs_field_map({}, "")


def test_a_good_row_becomes_a_match() -> None:
    assert mapper().load(ROW) == Match(
        id="a0X000000000001AAA",
        name="MM-0001",
        mentor_id="003000000000001AAA",
        mentee_id="003000000000002AAA",
        status="active",
        program="GMP-2026",
        start_date=dt.date(2026, 10, 1),
        end_date=None,
        writeback={"group_id": "17", "status": "Synced", "error": ""},
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Mentor__c": None}, "mapping:mentor_missing"),
        ({"Mentor__c": "  "}, "mapping:mentor_missing"),
        ({"Mentee__c": "not-an-id"}, "mapping:mentee_invalid"),
        ({"Status__c": None}, "mapping:status_missing"),
        ({"Status__c": "On hold"}, "mapping:status_invalid"),
        ({"Program__c": ""}, "mapping:program_missing"),
        ({"Start_Date__c": "1 Oct"}, "mapping:start_date_invalid"),
        ({"End_Date__c": "2026-09-30"}, "mapping:end_date_before_start"),
        ({"Mentee__c": "003000000000001"}, "mapping:mentee_same_as_mentor"),
        # Several problems: the most basic one is reported.
        ({"Mentor__c": None, "Status__c": None, "Start_Date__c": "x"}, "mapping:mentor_missing"),
    ],
)
def test_bad_rows_are_rejected_with_a_code(change: dict, code: str) -> None:
    result = mapper().load({**ROW, **change})
    assert result == Rejected("a0X000000000001AAA", code, result.writeback)
    assert result.writeback == {"group_id": "17", "status": "Synced", "error": ""}


def test_a_row_without_id_is_rejected_not_raised() -> None:
    assert mapper().load({}) == Rejected("", "mapping:id_missing", {k: "" for k in ROW_WB})
    assert mapper().load({**ROW, "Id": 12}).code == "mapping:id_invalid"


def test_a_custom_map_renames_fields_and_statuses() -> None:
    custom = mapper(
        {
            "source": {"object": "Pairing__c"},
            "fields": {"mentor": "Guide__c", "mentee": "Learner__c", "start_date": ""},
            "status": {"active": ["Live", "Running"], "cancelled": ["Stopped"]},
            "writeback": {"error": ""},
        }
    )
    fm = custom.fieldmap
    assert fm.sobject == "Pairing__c" and "Start_Date__c" not in fm.read_fields()
    assert "LMS_Sync_Error__c" not in fm.read_fields()
    row = {**ROW, "Guide__c": ROW["Mentor__c"], "Learner__c": ROW["Mentee__c"], "Status__c": "Live"}
    loaded = custom.load(row)
    assert isinstance(loaded, Match)
    assert (loaded.status, loaded.start_date) == ("active", None)
    assert loaded.writeback == {"group_id": "17", "status": "Synced", "error": ""}
    assert custom.load({**row, "Status__c": "Active"}).code == "mapping:status_invalid"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"extra": {}}, "[extra]: unknown section"),
        ({"fields": {"nickname": "X__c"}}, "[fields] nickname: unknown key"),
        ({"fields": {"mentor": "bad name"}}, "[fields] mentor: not a valid Salesforce API name"),
        ({"fields": {"mentor": ""}}, "[fields] mentor: not a valid Salesforce API name"),
        ({"fields": {"mentee": "Mentor__c"}}, "[fields] mentee: must not be the same field"),
        ({"status": {"active": "Active"}}, "[status] active: must be a list"),
        ({"status": {"completed": ["Active"]}}, "[status] completed: value 'Active' is listed"),
        ({"status": {"active": []}}, "[status] active: must list at least one value"),
        ({"writeback": {"status": 3}}, "[writeback] status: must be a Salesforce field name"),
        ({"source": []}, "[source]: must be a table"),
    ],
)
def test_map_mistakes_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_pairs_field_map(data, "pairs.toml")
    assert err.value.key == "pairs.field_map"
    assert message in str(err.value) and "(in pairs.toml)" in str(err.value)


def test_map_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pairs.field_map: cannot read .*missing.toml"):
        load_pairs_field_map(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[fields\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_pairs_field_map(broken)
    good = tmp_path / "good.toml"
    good.write_text('[fields]\nprogram = "Cohort__c"\n')
    assert load_pairs_field_map(good).fields["program"] == "Cohort__c"


def test_moodle_readers_decode_names_and_roles() -> None:
    group = Group.from_moodle({"id": 7, "name": "Okafor &amp; Lindqvist", "idnumber": "a0X1"})
    assert (group.id, group.name, group.idnumber) == (7, "Okafor & Lindqvist", "a0X1")
    assert "Okafor" not in repr(group)
    assert Group.from_moodle({"id": "8", "name": "x", "idnumber": None}).idnumber == ""
    # As 22_core_enrol_get_enrolled_users and 28_core_group_get_group_members answer.
    users = [{"id": 4, "roles": [{"roleid": 5, "shortname": "student"}]}, {"id": 5, "roles": []}]
    assert enrolled_roles(users) == {4: frozenset({5}), 5: frozenset()}
    assert group_members([{"groupid": 1, "userids": [4, 5]}]) == {1: frozenset({4, 5})}


# --- settings ----------------------------------------------------------------------------------


def test_default_settings_are_valid() -> None:
    validate_pairs(PairsSettings())
    s = pairs_settings_from_mapping({"cancelled_group": "keep", "student_role_id": 7})
    assert (s.cancelled_group, s.student_role_id, s.teacher_role_id) == ("keep", 7, 4)
    assert s.role_label(7) == "student" and s.role_label(99) == "role 99"


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        ({"cancelled_group": "archive"}, "pairs.cancelled_group", "must be one of delete, keep"),
        ({"mentor_role_id": 0}, "pairs.mentor_role_id", "must be a role id"),
        ({"mentor_role_id": 5}, "pairs.mentor_role_id", "must differ"),
        ({"mentor_role_id": True}, "pairs.mentor_role_id", "must be int"),
        ({"completed_keeps_role": "yes"}, "pairs.completed_keeps_role", "must be bool"),
        ({"timezone": "Mars/Olympus"}, "pairs.timezone", "unknown time zone"),
        ({"group_name_template": "{mentor_first}"}, "pairs.group_name_template", "unknown field"),
        ({"group_name_template": "{program:>9}"}, "pairs.group_name_template", "format specs"),
        ({"group_name_template": "Pair"}, "pairs.group_name_template", "at least one field"),
        ({"group_name_template": "{"}, "pairs.group_name_template", "not a valid template"),
        ({"colour": "red"}, "pairs.colour", "unknown key"),
    ],
)
def test_setting_mistakes_name_the_key(raw: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        pairs_settings_from_mapping(raw)
    assert err.value.key == key and message in err.value.problem
