"""PHP bracket encoding, field counting and splitting, checked against real Moodle recordings."""

from __future__ import annotations

import pytest
from moodle_helpers import MENTEE, MENTOR, make_client, recorded_fields

from connector.clients.moodle.params import count_fields, encode, split_items
from connector.errors import BatchTooLargeError


def test_nested_users_encode_exactly_like_the_recording() -> None:
    assert encode({"users": [MENTEE, MENTOR]}) == recorded_fields("02_core_user_create_users.json")


def test_integers_and_lists_of_ids_encode_like_the_recordings() -> None:
    enrolments = [
        {"roleid": 5, "userid": 4, "courseid": 2},
        {"roleid": 5, "userid": 5, "courseid": 2},
        {"roleid": 5, "userid": 4, "courseid": 3},
        {"roleid": 4, "userid": 5, "courseid": 3},
    ]
    assert encode({"enrolments": enrolments}) == recorded_fields("19_enrol_manual_enrol_users.json")
    assert encode({"groupids": [1]}) == recorded_fields("74_core_group_delete_groups.json")
    assert encode({"userid": 4, "cmid": 4, "newstate": 1}) == recorded_fields(
        "33_core_completion_override_activity_completion_status_M1.json"
    )


def test_booleans_are_one_and_zero_and_none_is_left_out() -> None:
    fields = encode({"options": {"onlyactive": True, "withcapability": None}, "flag": False})
    assert fields == [("options[onlyactive]", "1"), ("flag", "0")]
    assert encode({"value": 1.5, "empty": "", "missing": None}) == [("value", "1.5"), ("empty", "")]


def test_bad_values_name_the_parameter_path() -> None:
    with pytest.raises(ValueError, match=r"users\[0\]\[customfields\]\[1\]: None"):
        encode({"users": [{"customfields": [{"type": "a"}, None]}]})
    with pytest.raises(TypeError, match=r"users\[0\]\[when\]: cannot send a object"):
        encode({"users": [{"when": object()}]})
    with pytest.raises(ValueError, match="parameter name"):
        encode({"users": [{"a[b]": 1}]})


def test_count_matches_the_encoding() -> None:
    assert count_fields(MENTEE) == 17
    assert count_fields(MENTOR) == 15  # city None is not a field
    assert count_fields(7) == 1
    assert count_fields({"users": [MENTEE, MENTOR]}) == len(encode({"users": [MENTEE, MENTOR]}))


def test_a_batch_exactly_at_the_limit_is_one_call_and_one_more_field_splits() -> None:
    client, _ = make_client(max_input_vars=100, field_margin=10)
    assert client.field_limit == 90
    enrolment = {"roleid": 5, "userid": 4, "courseid": 2}  # 3 fields
    extra = {"note": "x"}  # 1 field; with wstoken, wsfunction, moodlewsrestformat: 4 fields
    # 4 + 3 * 28 = 88, + 2 plain fields item = 90: exactly the limit.
    at_limit = [enrolment] * 28 + [{"userid": 1, "courseid": 2}]
    assert client.split("enrolments", at_limit, extra, max_items=1000) == [at_limit]
    over = [enrolment] * 29  # 4 + 87 = 91
    batches = client.split("enrolments", over, extra, max_items=1000)
    assert [len(b) for b in batches] == [28, 1]
    assert batches[0] + batches[1] == over


def test_the_item_ceiling_applies_whatever_the_field_count() -> None:
    client, _ = make_client(max_batch_items=3)
    items = [{"groupid": 1, "userid": n} for n in range(7)]
    assert [len(b) for b in client.split("members", items)] == [3, 3, 1]
    assert [len(b) for b in client.split("members", items, max_items=5)] == [5, 2]


def test_an_item_too_big_alone_raises() -> None:
    client, _ = make_client(max_input_vars=100, field_margin=0)
    big = {"customfields": [{"type": f"f{n}", "value": "v"} for n in range(49)]}  # 98 fields
    with pytest.raises(BatchTooLargeError, match=r"users\[1\] needs 98 form fields"):
        client.split("users", [{"id": 1}, big])


def test_split_of_nothing_is_no_batch_and_max_items_must_be_positive() -> None:
    assert split_items("x", [], base_fields=3, field_limit=10, max_items=5) == []
    with pytest.raises(ValueError, match="max_items"):
        split_items("x", [1], base_fields=3, field_limit=10, max_items=0)
