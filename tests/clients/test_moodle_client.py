"""The Moodle client on the wire: form bodies, typed reads and writes, batching of list reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from moodle_helpers import (
    ENDPOINT,
    MENTEE,
    MENTOR,
    TOKEN,
    URL,
    add_fixture,
    fixture_body,
    make_client,
    protocol_fields,
    recorded_fields,
    recorded_function,
    sent_fields,
)

from connector.clients.moodle.client import MoodleClient
from connector.clients.moodle.site import REQUIRED_FUNCTIONS, missing_functions
from connector.config import MoodleSettings, Secret
from connector.errors import BatchTooLargeError


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def test_create_users_posts_the_recorded_form_with_the_token_only_in_the_body(
    rsps: responses.RequestsMock,
) -> None:
    client, _ = make_client()
    add_fixture(rsps, "02_core_user_create_users.json")

    created = client.create_users([MENTEE, MENTOR])

    assert created == [
        {"id": 4, "username": "labtest.mentee1"},
        {"id": 5, "username": "labtest.mentor1"},
    ]
    (call,) = rsps.calls
    assert call.request.method == "POST"
    assert call.request.url == ENDPOINT  # no query string at all, so no token in any URL
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent_fields(call) == protocol_fields("core_user_create_users") + recorded_fields(
        "02_core_user_create_users.json"
    )
    assert client.calls == {"core_user_create_users": 1}


def test_timeouts_are_set_on_every_request(rsps: responses.RequestsMock) -> None:
    client, _ = make_client(connect_timeout=3.0, read_timeout=42.0)
    add_fixture(rsps, "01_core_webservice_get_site_info_GET.json")
    client.site_info()
    kwargs = rsps.calls[0].request.req_kwargs
    assert kwargs["timeout"] == (3.0, 42.0)


def test_default_session_verifies_tls_with_the_ca_bundle(tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read here")
    assert MoodleClient(MoodleSettings(ca_bundle=str(bundle))).session.verify == str(bundle)
    assert MoodleClient(MoodleSettings()).session.verify is True


def test_an_injected_session_is_used(rsps: responses.RequestsMock) -> None:
    session = requests.Session()
    session.headers["X-Probe"] = "injected"
    client = MoodleClient(MoodleSettings(url=URL, token=Secret(TOKEN)), session=session)
    add_fixture(rsps, "13_core_course_get_courses_by_field_shortname_GMP-ORIENT.json")
    client.get_courses_by_field("shortname", "GMP-ORIENT")
    assert rsps.calls[0].request.headers["X-Probe"] == "injected"


VOID_WRITES: list[tuple[str, Callable[[MoodleClient], Any]]] = [
    (
        "19_enrol_manual_enrol_users.json",
        lambda c: c.enrol_users(
            [
                {"roleid": 5, "userid": 4, "courseid": 2},
                {"roleid": 5, "userid": 5, "courseid": 2},
                {"roleid": 5, "userid": 4, "courseid": 3},
                {"roleid": 4, "userid": 5, "courseid": 3},
            ]
        ),
    ),
    (
        "75_enrol_manual_unenrol_users.json",
        lambda c: c.unenrol_users([{"userid": u, "courseid": k} for k in (2, 3) for u in (4, 5)]),
    ),
    (
        "26_core_group_add_group_members.json",
        lambda c: c.add_group_members([{"groupid": 1, "userid": 4}, {"groupid": 1, "userid": 5}]),
    ),
    (
        "73_core_group_delete_group_members.json",
        lambda c: c.delete_group_members(
            [{"groupid": 1, "userid": 4}, {"groupid": 1, "userid": 5}]
        ),
    ),
    ("74_core_group_delete_groups.json", lambda c: c.delete_groups([1])),
    (
        "30_core_role_assign_roles_mentor_in_user_context.json",
        lambda c: c.assign_roles(
            [{"roleid": 9, "userid": 5, "contextlevel": "user", "instanceid": 4}]
        ),
    ),
    (
        "72_core_role_unassign_roles.json",
        lambda c: c.unassign_roles(
            [{"roleid": 9, "userid": 5, "contextlevel": "user", "instanceid": 4}]
        ),
    ),
]


@pytest.mark.parametrize(("fixture", "action"), VOID_WRITES, ids=[f[:2] for f, _ in VOID_WRITES])
def test_void_writes_send_the_recorded_form_and_return_none_for_null(
    rsps: responses.RequestsMock, fixture: str, action: Callable[[MoodleClient], Any]
) -> None:
    assert fixture_body(fixture).strip() == b"null"
    client, _ = make_client()
    add_fixture(rsps, fixture)
    assert action(client) is None
    (call,) = rsps.calls
    wsfunction = recorded_function(fixture)
    assert sent_fields(call) == protocol_fields(wsfunction) + recorded_fields(fixture)
    assert client.calls == {wsfunction: 1}


def test_update_users_returns_the_warnings(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    add_fixture(rsps, "11_core_user_update_users.json")
    add_fixture(rsps, "12_core_user_update_users_WARNING_unknown_id.json")
    update = {
        "id": 4,
        "city": "Cleveland",
        "customfields": [{"type": "memberstatus", "value": "Active - Renewed"}],
    }
    assert client.update_users([update]) == []
    assert client.update_users([{"id": 999999, "city": "Nowhere"}]) == [
        {
            "item": "user",
            "itemid": 999999,
            "warningcode": "invaliduserid",
            "message": "Invalid user ID",
        }
    ]
    assert sent_fields(rsps.calls[0])[3:] == recorded_fields("11_core_user_update_users.json")


def test_create_groups_and_override_completion_return_moodle_answers(
    rsps: responses.RequestsMock,
) -> None:
    client, _ = make_client()
    add_fixture(rsps, "24_core_group_create_groups.json")
    add_fixture(rsps, "33_core_completion_override_activity_completion_status_M1.json")
    group = {
        "courseid": 3,
        "name": "Pair: Mark Mentor / Maria Mentee",
        "idnumber": "PAIR-LAB-0001",
        "description": "Mentorship pair synced from the CRM (match record a0XLAB0001)",
        "descriptionformat": 1,
    }
    created = client.create_groups([group])
    assert [(g["id"], g["idnumber"]) for g in created] == [(1, "PAIR-LAB-0001")]
    assert sent_fields(rsps.calls[0])[3:] == recorded_fields("24_core_group_create_groups.json")
    result = client.override_activity_completion(userid=4, cmid=4, newstate=1)
    assert result["state"] == 1 and result["overrideby"] == 3


def test_reads_return_the_recorded_shapes(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    add_fixture(rsps, "13_core_course_get_courses_by_field_shortname_GMP-ORIENT.json")
    add_fixture(rsps, "32_core_completion_get_activities_completion_status_before.json")
    add_fixture(rsps, "42_core_completion_get_course_completion_status_GMP-2026_partial.json")
    courses = client.get_courses_by_field("shortname", "GMP-ORIENT")
    assert [(c["id"], c["shortname"]) for c in courses] == [(2, "GMP-ORIENT")]
    activities = client.get_activities_completion_status(courseid=3, userid=4)
    assert [s["cmid"] for s in activities["statuses"]] == [4, 5, 6, 7, 8, 9]
    course = client.get_course_completion_status(courseid=3, userid=4)
    assert course["completionstatus"]["completed"] is False
    assert [sent_fields(c)[3:] for c in rsps.calls] == [
        [("field", "shortname"), ("value", "GMP-ORIENT")],
        [("courseid", "3"), ("userid", "4")],
        [("courseid", "3"), ("userid", "4")],
    ]


def test_site_info_and_missing_functions(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    add_fixture(rsps, "01_core_webservice_get_site_info_GET.json")
    info = client.site_info()
    assert info["userid"] == 3 and info["release"].startswith("4.5")
    assert "userprivateaccesskey" not in info  # a credential for file downloads
    assert missing_functions(info) == []  # the recorded service has every function we need
    info["functions"] = [f for f in info["functions"] if f["name"] != "core_role_assign_roles"]
    assert missing_functions(info) == ["core_role_assign_roles"]
    assert missing_functions({}) == list(REQUIRED_FUNCTIONS)


def test_required_functions_cover_every_function_the_client_calls() -> None:
    item = [{"id": 1}]
    arguments: dict[str, tuple[Any, ...]] = {
        "site_info": (),
        "get_users_by_field": ("id", [1]),
        "get_courses_by_field": ("id", 1),
        "get_course_contents": (1,),
        "get_enrolled_users": (1,),
        "get_course_groups": (1,),
        "get_group_members": ([1],),
        "get_activities_completion_status": (1, 1),
        "get_course_completion_status": (1, 1),
        "create_users": (item,),
        "update_users": (item,),
        "enrol_users": (item,),
        "unenrol_users": (item,),
        "create_groups": (item,),
        "delete_groups": ([1],),
        "add_group_members": (item,),
        "delete_group_members": (item,),
        "assign_roles": (item,),
        "unassign_roles": (item,),
        "override_activity_completion": (1, 1, 1),
        "get_course_module": (4,),
    }
    seen: list[str] = []

    class Recorder(MoodleClient):
        def call(self, wsfunction: str, params: Any = None, *, write: bool = False) -> Any:
            seen.append(wsfunction)
            return {"cm": {}}

    client = Recorder(MoodleSettings())
    for name, args in arguments.items():
        getattr(client, name)(*args)
    assert sorted(seen) == sorted(REQUIRED_FUNCTIONS)


def test_get_users_by_field_splits_at_the_field_limit_and_merges(
    rsps: responses.RequestsMock,
) -> None:
    # 100 - 0 = 100 fields: wstoken, wsfunction, format, field = 4, so 96 values fit one call.
    client, _ = make_client(max_input_vars=100, field_margin=0, max_batch_items=1000)
    user = json.loads(fixture_body("06_core_user_get_users_by_field_idnumber.json"))[0]

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        values = [v for k, v in sent_fields(request) if k.startswith("values[")]
        return 200, {}, json.dumps([{**user, "idnumber": v} for v in values])

    rsps.add_callback(responses.POST, ENDPOINT, callback=answer)
    at_limit = [f"003LAB{n:012d}" for n in range(96)]
    assert [u["idnumber"] for u in client.get_users_by_field("idnumber", at_limit)] == at_limit
    assert len(rsps.calls) == 1 and len(sent_fields(rsps.calls[0])) == 100

    over = [*at_limit, "003LABEXTRA0000001"]
    assert [u["idnumber"] for u in client.get_users_by_field("idnumber", over)] == over
    assert [len(sent_fields(c)) for c in rsps.calls[1:]] == [100, 5]
    assert sent_fields(rsps.calls[2])[3:] == [
        ("field", "idnumber"),
        ("values[0]", "003LABEXTRA0000001"),
    ]
    assert client.calls == {"core_user_get_users_by_field": 3}


def test_get_group_members_batches_by_the_item_ceiling(rsps: responses.RequestsMock) -> None:
    client, _ = make_client(max_batch_items=2)
    rsps.add(
        responses.POST,
        ENDPOINT,
        json=[{"groupid": 1, "userids": [4, 5]}, {"groupid": 2, "userids": []}],
    )
    add_fixture(rsps, "28_core_group_get_group_members.json")
    members = client.get_group_members([1, 2, 7])
    assert [m["groupid"] for m in members] == [1, 2, 1]
    assert [sent_fields(c)[3:] for c in rsps.calls] == [
        [("groupids[0]", "1"), ("groupids[1]", "2")],
        [("groupids[0]", "7")],
    ]


def test_empty_lists_make_no_call(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    assert client.get_users_by_field("idnumber", []) == []
    assert client.get_group_members([]) == []
    assert client.create_users([]) == []
    assert client.enrol_users([]) is None
    assert not rsps.calls and not client.calls


def test_a_write_over_the_field_limit_is_never_sent(rsps: responses.RequestsMock) -> None:
    client, _ = make_client(max_input_vars=100, field_margin=50)  # 50 fields
    # 3 + 3 * 15 = 48 fits; 3 + 3 * 16 = 51 does not.
    client_ok = [{"roleid": 5, "userid": n, "courseid": 2} for n in range(15)]
    rsps.add(responses.POST, ENDPOINT, body="null", content_type="application/json")
    client.enrol_users(client_ok)
    with pytest.raises(BatchTooLargeError, match="51 form fields, over the limit of 50"):
        client.enrol_users([*client_ok, {"roleid": 5, "userid": 99, "courseid": 2}])
    assert len(rsps.calls) == 1 and client.calls == {"enrol_manual_enrol_users": 1}


def test_get_users_by_field_refuses_fields_moodle_cannot_search() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError, match="profile_field_crmid"):
        client.get_users_by_field("profile_field_crmid", ["x"])
