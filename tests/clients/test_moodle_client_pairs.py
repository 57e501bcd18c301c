"""Client methods the pairs and progress kinds use: exact form fields, answers, batching."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import responses
from moodle_helpers import (
    ENDPOINT,
    add_fixture,
    fixture_body,
    make_client,
    protocol_fields,
    sent_fields,
)

from connector.clients.moodle.site import PLUGIN_COMPLETIONS, has_plugin


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def test_enrolled_users_sends_options_as_name_value_pairs(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    add_fixture(rsps, "22_core_enrol_get_enrolled_users_GMP-ORIENT.json")
    users = client.get_enrolled_users(2, {"userfields": "id,idnumber,roles", "onlyactive": 1})
    assert users == json.loads(fixture_body("22_core_enrol_get_enrolled_users_GMP-ORIENT.json"))
    assert sent_fields(rsps.calls[0]) == [
        *protocol_fields("core_enrol_get_enrolled_users"),
        ("courseid", "2"),
        ("options[0][name]", "userfields"),
        ("options[0][value]", "id,idnumber,roles"),
        ("options[1][name]", "onlyactive"),
        ("options[1][value]", "1"),
    ]


def test_enrolled_users_without_options_sends_only_the_course(
    rsps: responses.RequestsMock,
) -> None:
    client, _ = make_client()
    add_fixture(rsps, "22_core_enrol_get_enrolled_users_GMP-ORIENT.json")
    client.get_enrolled_users(2)
    assert sent_fields(rsps.calls[0]) == [
        *protocol_fields("core_enrol_get_enrolled_users"),
        ("courseid", "2"),
    ]


def test_course_groups_and_group_members_use_the_recorded_answers(
    rsps: responses.RequestsMock,
) -> None:
    client, _ = make_client()
    add_fixture(rsps, "27_core_group_get_course_groups.json")
    add_fixture(rsps, "28_core_group_get_group_members.json")
    groups = client.get_course_groups(3)
    members = client.get_group_members([1])
    assert [(g["id"], g["idnumber"]) for g in groups] == [(1, "PAIR-LAB-0001")]
    assert members == json.loads(fixture_body("28_core_group_get_group_members.json"))
    assert sent_fields(rsps.calls[1]) == [
        *protocol_fields("core_group_get_group_members"),
        ("groupids[0]", "1"),
    ]


def test_course_module_by_id_and_by_instance(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    cm = {"id": 4, "course": 3, "modname": "page", "instance": 2, "completion": 1}
    body = json.dumps({"cm": {**cm, "idnumber": "GMP-2026-M1"}, "warnings": []})
    rsps.add(responses.POST, ENDPOINT, body=body, content_type="application/json")
    rsps.add(responses.POST, ENDPOINT, body=body, content_type="application/json")
    assert client.get_course_module(4)["idnumber"] == "GMP-2026-M1"
    assert client.get_course_module_by_instance("page", 2)["id"] == 4
    assert sent_fields(rsps.calls[0])[3:] == [("cmid", "4")]
    assert sent_fields(rsps.calls[1]) == [
        *protocol_fields("core_course_get_course_module_by_instance"),
        ("module", "page"),
        ("instance", "2"),
    ]


def test_plugin_completions_are_read_page_by_page(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    row = {"userid": 4, "cmid": 4, "idnumber": "GMP-2026-M1", "completionstate": 1}
    # The plugin's PHP contract: keyset pages, "nextcursor" empty on the last.
    pages = {
        "": {
            "activities": [{**row, "timemodified": 10}],
            "courses": [],
            "nextcursor": "a-10-400004",
            "servertime": 50,
        },
        "a-10-400004": {
            "activities": [{**row, "cmid": 5, "timemodified": 11}],
            "courses": [{"userid": 4, "timecompleted": 12}],
            "nextcursor": "",
            "servertime": 51,
        },
    }

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps(pages[dict(sent_fields(request)).get("cursor", "")])

    rsps.add_callback(responses.POST, ENDPOINT, callback=answer)
    activities, courses = client.get_completions(3, since=100, limit=1)
    assert [a["cmid"] for a in activities] == [4, 5]
    assert courses == [{"userid": 4, "timecompleted": 12}]
    assert [sent_fields(c)[3:] for c in rsps.calls] == [
        [("courseid", "3"), ("since", "100"), ("cursor", ""), ("limit", "1")],
        [("courseid", "3"), ("since", "100"), ("cursor", "a-10-400004"), ("limit", "1")],
    ]
    assert client.calls == {PLUGIN_COMPLETIONS: 2}


def test_has_plugin_reads_site_info_functions() -> None:
    info = json.loads(fixture_body("01_core_webservice_get_site_info_GET.json"))
    assert has_plugin(info) is False
    info["functions"].append({"name": PLUGIN_COMPLETIONS, "version": "2026010100"})
    assert has_plugin(info) is True
    assert has_plugin({}) is False


def test_write_batches_split_by_fields(rsps: responses.RequestsMock) -> None:
    # 3 protocol fields + 2 per member: 20 - 3 = 17 -> 8 members a call.
    client, _ = make_client(max_input_vars=20, field_margin=0, max_batch_items=1000)
    members = [{"groupid": 1, "userid": n} for n in range(20)]
    batches = client.split("members", members)
    assert [len(b) for b in batches] == [8, 8, 4]
    for _ in batches:
        rsps.add(responses.POST, ENDPOINT, body="null", content_type="application/json")
    for batch in batches:
        client.add_group_members(batch)
    assert [len(sent_fields(c)) for c in rsps.calls] == [19, 19, 11]
    roles = [
        {"roleid": 9, "userid": n, "contextlevel": "user", "instanceid": n + 1} for n in range(9)
    ]
    # 4 fields per assignment: 17 // 4 = 4 a call.
    assert [len(b) for b in client.split("assignments", roles)] == [4, 4, 1]
