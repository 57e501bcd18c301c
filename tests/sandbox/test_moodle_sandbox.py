"""Focused behaviour of the sandbox Moodle: PHP limits, batches, faults, persistence, helpers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import requests

from sandbox.faults import FaultPlan
from sandbox.moodle import MoodleSandbox
from sandbox.moodle.wire import php_parse, truncate_fields

REST = "/webservice/rest/server.php"
PASSWORD = "Lab#Mentee2026"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """PHP bracket encoding: ``{"users": [{"a": 1}]}`` -> ``users[0][a]=1``."""
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = enumerate(value)
    else:
        if isinstance(value, bool):
            value = int(value)
        return [(prefix, str(value))]
    out = []
    for key, sub in items:
        out += flatten(sub, f"{prefix}[{key}]" if prefix else str(key))
    return out


def call(
    sandbox: MoodleSandbox,
    wsfunction: str,
    params: Mapping[str, Any] | None = None,
    *,
    token: str | None = None,
    timeout: float = 10,
) -> Any:
    """POST one web-service call like mentorsync's client does; return the decoded JSON."""
    body = [
        ("wstoken", token or sandbox.token),
        ("wsfunction", wsfunction),
        ("moodlewsrestformat", "json"),
        *flatten(params or {}),
    ]
    response = requests.post(sandbox.url + REST, data=body, timeout=timeout)
    assert response.status_code == 200, response.text[:200]
    return response.json()


def user(n: int, **extra: Any) -> dict[str, Any]:
    """A valid create_users entry."""
    return {
        "username": f"member{n}",
        "password": PASSWORD,
        "firstname": "Mem",
        "lastname": f"Ber{n}",
        "email": f"member{n}@example.com",
        "idnumber": f"003TEST{n:011d}",
        "customfields": [
            {"type": "region", "value": "Midwest"},
            {"type": "memberstatus", "value": "Active"},
        ],
        **extra,
    }


@pytest.fixture
def moodle() -> Iterator[MoodleSandbox]:
    """A fresh sandbox on a free port, stopped after the test."""
    sandbox = MoodleSandbox()
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def create(sandbox: MoodleSandbox, *numbers: int) -> list[int]:
    """Create members through the web service; their ids."""
    answer = call(sandbox, "core_user_create_users", {"users": [user(n) for n in numbers]})
    return [row["id"] for row in answer]


# ----------------------------------------------------------------------------- PHP limits


def test_fields_past_max_input_vars_are_dropped_silently() -> None:
    """At 20, PHP keeps 21 body fields: wstoken, wsfunction, format, field + 17 values; values
    18-20 vanish."""
    with MoodleSandbox(max_input_vars=20) as sandbox:
        idnumbers = [f"ID{n}" for n in range(20)]
        for n, idnumber in enumerate(idnumbers):
            sandbox.site.create_user(f"u{n}", f"u{n}@example.com", idnumber=idnumber)
        found = call(
            sandbox, "core_user_get_users_by_field", {"field": "idnumber", "values": idnumbers}
        )
        assert [u["idnumber"] for u in found] == idnumbers[:17]


def test_create_batch_cut_mid_user_loses_trailing_fields_or_fails_whole() -> None:
    """The cut lands in the last user's custom fields: created without them. In a required
    key: the whole batch fails and nobody is created."""
    # 3 reserved + 10 fields per user below; user 2's customfields start at field 20. PHP keeps
    # one body field past max_input_vars: 19 fields are kept at 18.
    with MoodleSandbox(max_input_vars=3 + 10 + 5) as sandbox:
        ids = create(sandbox, 1, 2)
        second = sandbox.site.users[ids[1]]
        assert sandbox.site.users[ids[0]]["customfields"] == {
            "region": "Midwest",
            "memberstatus": "Active",
        }
        assert second["customfields"] == {}
    with MoodleSandbox(max_input_vars=3 + 10 + 3) as sandbox:  # user 2 loses lastname, email
        answer = call(sandbox, "core_user_create_users", {"users": [user(1), user(2)]})
        assert answer["errorcode"] == "invalidparameter"
        assert sandbox.site.user_by_username("member1") is None


def test_query_string_and_body_are_counted_separately() -> None:
    """PHP limits $_GET and $_POST each; the token in the URL leaves the body its full quota.

    At 4, the query string keeps 4 fields and the body 5 (PHP checks the body's count after
    storing a field): field + Q0..Q3, and Q4 is dropped.
    """
    with MoodleSandbox(max_input_vars=4) as sandbox:
        for n in range(5):
            sandbox.site.create_user(f"q{n}", f"q{n}@example.com", idnumber=f"Q{n}")
        response = requests.post(
            sandbox.url + REST,
            params={
                "wstoken": sandbox.token,
                "wsfunction": "core_user_get_users_by_field",
                "moodlewsrestformat": "json",
            },
            data=[
                ("field", "idnumber"),
                ("values[0]", "Q0"),
                ("values[1]", "Q1"),
                ("values[2]", "Q2"),
                ("values[3]", "Q3"),
                ("values[4]", "Q4"),
            ],
            timeout=10,
        )
        assert [u["idnumber"] for u in response.json()] == ["Q0", "Q1", "Q2", "Q3"]


def test_php_parse_builds_nested_arrays_like_php() -> None:
    """Brackets nest, ``[]`` appends, a repeated key overwrites, order is kept."""
    parsed = php_parse(
        [
            ("a[0][b]", "1"),
            ("a[0][c][]", "x"),
            ("a[0][c][]", "y"),
            ("v[5]", "p"),
            ("v[2]", "q"),
            ("v[5]", "r"),
            ("plain", "z"),
        ]
    )
    assert parsed == {
        "a": {"0": {"b": "1", "c": {"0": "x", "1": "y"}}},
        "v": {"5": "r", "2": "q"},
        "plain": "z",
    }


# ----------------------------------------------------------------------------- users


def test_create_is_all_or_nothing(moodle: MoodleSandbox) -> None:
    """One bad row (a taken username) and none of the batch is stored."""
    create(moodle, 1)
    before = dict(moodle.site.users)
    answer = call(
        moodle, "core_user_create_users", {"users": [user(2), user(3), user(4, username="member1")]}
    )
    assert answer["errorcode"] == "invalidparameter"
    assert moodle.site.users == before
    # A duplicate inside the same batch fails the same way.
    answer = call(
        moodle, "core_user_create_users", {"users": [user(5), user(6, email="MEMBER5@example.com")]}
    )
    assert answer["errorcode"] == "invalidparameter"
    assert moodle.site.user_by_username("member5") is None


def test_duplicate_email_is_rejected_ignoring_case(moodle: MoodleSandbox) -> None:
    """allowaccountssameemail=0: create fails; update gets a per-user warning."""
    first, second = create(moodle, 1, 2)
    answer = call(
        moodle, "core_user_create_users", {"users": [user(3, email="Member1@Example.com")]}
    )
    assert answer == {
        "exception": "core\\exception\\invalid_parameter_exception",
        "errorcode": "invalidparameter",
        "message": "Invalid parameter value detected",
    }
    answer = call(
        moodle,
        "core_user_update_users",
        {
            "users": [
                {"id": second, "email": "MEMBER1@example.com"},
                {"id": first, "city": "Toledo"},
            ]
        },
    )
    assert answer == {
        "warnings": [
            {
                "item": "user",
                "itemid": second,
                "warningcode": "useremailduplicate",
                "message": "Duplicate email address",
            }
        ]
    }
    assert moodle.site.users[second]["email"] == "member2@example.com"
    assert moodle.site.users[first]["city"] == "Toledo"


def test_create_rejects_what_moodle_rejects(moodle: MoodleSandbox) -> None:
    """Upper-case usernames, ``suspended`` (not a create parameter), bool "true", bad email."""
    for bad in (
        user(1, username="Member1"),
        user(1, suspended=1),
        user(1, email="not-an-email"),
        user(1, createpassword="true"),
    ):
        answer = call(moodle, "core_user_create_users", {"users": [bad]})
        assert answer["errorcode"] == "invalidparameter", bad
    assert moodle.site.user_by_username("member1") is None


def test_update_suspends_and_merges_custom_fields(moodle: MoodleSandbox) -> None:
    """Updates change only what is sent; unknown ids are warnings; lookups follow changes."""
    (uid,) = create(moodle, 1)
    answer = call(
        moodle,
        "core_user_update_users",
        {
            "users": [
                {
                    "id": uid,
                    "suspended": 1,
                    "email": "new@example.com",
                    "customfields": [{"type": "memberstatus", "value": "Lapsed"}],
                },
                {"id": 99999, "city": "Nowhere"},
            ]
        },
    )
    assert [w["warningcode"] for w in answer["warnings"]] == ["invaliduserid"]
    (found,) = call(
        moodle, "core_user_get_users_by_field", {"field": "email", "values": ["new@example.com"]}
    )
    assert found["suspended"] is True
    assert {f["shortname"]: f["value"] for f in found["customfields"]} == {
        "memberstatus": "Lapsed",
        "region": "Midwest",
    }
    assert (
        call(
            moodle,
            "core_user_get_users_by_field",
            {"field": "email", "values": ["member1@example.com"]},
        )
        == []
    )


def test_deleted_users_are_never_returned(moodle: MoodleSandbox) -> None:
    """After delete: absent from every lookup, memberships gone, username free again."""
    uid, other = create(moodle, 1, 2)
    call(
        moodle,
        "enrol_manual_enrol_users",
        {"enrolments": [{"roleid": 5, "userid": uid, "courseid": 3}]},
    )
    assert call(moodle, "core_user_delete_users", {"userids": [uid]}) is None
    for field, value in (
        ("id", uid),
        ("idnumber", user(1)["idnumber"]),
        ("username", "member1"),
        ("email", "member1@example.com"),
    ):
        assert (
            call(moodle, "core_user_get_users_by_field", {"field": field, "values": [value]}) == []
        )
    assert (
        call(
            moodle,
            "core_user_get_users",
            {"criteria": [{"key": "email", "value": "member1@example.com"}]},
        )["users"]
        == []
    )
    assert uid not in moodle.site.enrolments(3)
    (again,) = create(moodle, 1)
    assert again not in (uid, other)


def test_lookups_stay_correct_with_many_users() -> None:
    """Indexed lookups over thousands of users; mixed hits and misses in one call."""
    with MoodleSandbox() as sandbox:
        batch = 200
        for start in range(0, 1000, batch):
            create(sandbox, *range(start, start + batch))
        wanted = [user(n)["idnumber"] for n in (5, 999, 777)] + ["NOPE"]
        found = call(
            sandbox, "core_user_get_users_by_field", {"field": "idnumber", "values": wanted}
        )
        assert sorted(u["idnumber"] for u in found) == sorted(wanted[:3])
        assert sandbox.calls["core_user_create_users"] == 5


# ----------------------------------------------------------------------------- courses, roles


def test_enrol_is_all_or_nothing_and_roles_are_checked(moodle: MoodleSandbox) -> None:
    """wsusercannotassign for a role outside {3,4,5} in a course; nothing enrolled."""
    mentee, mentor = create(moodle, 1, 2)
    for roleid in (1, 9):
        answer = call(
            moodle,
            "enrol_manual_enrol_users",
            {
                "enrolments": [
                    {"roleid": 5, "userid": mentee, "courseid": 3},
                    {"roleid": roleid, "userid": mentor, "courseid": 3},
                ]
            },
        )
        assert answer["errorcode"] == "wsusercannotassign"
    assert moodle.site.enrolments(3) == {}
    assert (
        call(
            moodle,
            "enrol_manual_enrol_users",
            {
                "enrolments": [
                    {"roleid": 5, "userid": mentee, "courseid": 3},
                    {"roleid": 4, "userid": mentor, "courseid": 3},
                ]
            },
        )
        is None
    )
    assert moodle.site.enrolments(3) == {mentee: [5], mentor: [4]}


def test_mentor_role_only_in_user_context(moodle: MoodleSandbox) -> None:
    """Role 9 over the mentee's user context works; in a course, or role 1 anywhere, does not."""
    mentee, mentor = create(moodle, 1, 2)
    bad = [
        {"roleid": 9, "userid": mentor, "contextlevel": "course", "instanceid": 3},
        {"roleid": 1, "userid": mentor, "contextlevel": "user", "instanceid": mentee},
        {"roleid": 5, "userid": mentor, "contextlevel": "user", "instanceid": mentee},
    ]
    for assignment in bad:
        answer = call(moodle, "core_role_assign_roles", {"assignments": [assignment]})
        assert answer["errorcode"] == "invalidparameter", assignment
    good = {"roleid": 9, "userid": mentor, "contextlevel": "user", "instanceid": mentee}
    assert call(moodle, "core_role_assign_roles", {"assignments": [good]}) is None
    assert moodle.site.role_assignments == [(9, mentor, "user", mentee)]
    assert call(moodle, "core_role_unassign_roles", {"unassignments": [good]}) is None
    assert moodle.site.role_assignments == []


def test_groups_unique_names_per_course_and_unenrol_cleans_up(moodle: MoodleSandbox) -> None:
    """Same name twice in a course fails; members must be enrolled; unenrol leaves the group."""
    mentee, mentor = create(moodle, 1, 2)
    group = {"courseid": 3, "name": "Pair 1", "idnumber": "a0X1", "description": ""}
    (created,) = call(moodle, "core_group_create_groups", {"groups": [group]})
    again = call(moodle, "core_group_create_groups", {"groups": [{**group, "idnumber": "a0X2"}]})
    assert again["errorcode"] == "invalidparameter"
    members = {
        "members": [
            {"groupid": created["id"], "userid": mentee},
            {"groupid": created["id"], "userid": mentor},
        ]
    }
    assert call(moodle, "core_group_add_group_members", members)["errorcode"] == "invalidparameter"
    assert moodle.site.groups[created["id"]]["members"] == []
    call(
        moodle,
        "enrol_manual_enrol_users",
        {
            "enrolments": [
                {"roleid": 5, "userid": mentee, "courseid": 3},
                {"roleid": 4, "userid": mentor, "courseid": 3},
            ]
        },
    )
    assert call(moodle, "core_group_add_group_members", members) is None
    assert moodle.site.group_by_idnumber("a0X1")["members"] == [mentee, mentor]
    call(moodle, "enrol_manual_unenrol_users", {"enrolments": [{"userid": mentor, "courseid": 3}]})
    assert moodle.site.group_by_idnumber("a0X1")["members"] == [mentee]
    assert moodle.site.enrolments(3) == {mentee: [5]}


# ----------------------------------------------------------------------------- completion


def test_completion_per_user_and_course_completion_never_undone(moodle: MoodleSandbox) -> None:
    """Overrides are per user and record who; the course completes with all six and stays."""
    mentee, mentor = create(moodle, 1, 2)
    call(
        moodle,
        "enrol_manual_enrol_users",
        {
            "enrolments": [
                {"roleid": 5, "userid": mentee, "courseid": 3},
                {"roleid": 4, "userid": mentor, "courseid": 3},
            ]
        },
    )
    for cmid in (4, 5, 6, 7, 8):
        answer = call(
            moodle,
            "core_completion_override_activity_completion_status",
            {"userid": mentee, "cmid": cmid, "newstate": 1},
        )
        assert (answer["state"], answer["overrideby"]) == (1, 3)
    moodle.site.set_completion(mentee, 9, 1)  # she ticks the last one herself
    status = call(
        moodle,
        "core_completion_get_activities_completion_status",
        {"courseid": 3, "userid": mentee},
    )["statuses"]
    assert [(s["cmid"], s["state"], s["overrideby"]) for s in status] == [
        (4, 1, 3),
        (5, 1, 3),
        (6, 1, 3),
        (7, 1, 3),
        (8, 1, 3),
        (9, 1, None),
    ]
    assert moodle.site.activity_state(mentor, 4) == 0
    call(
        moodle,
        "core_completion_override_activity_completion_status",
        {"userid": mentee, "cmid": 9, "newstate": 0},
    )
    answer = call(
        moodle, "core_completion_get_course_completion_status", {"courseid": 3, "userid": mentee}
    )
    assert answer["completionstatus"]["completed"] is True
    assert moodle.site.activity_state(mentee, 9) == 0
    # The mentor is a teacher there: not tracked, so no course completion for him.
    answer = call(
        moodle, "core_completion_get_course_completion_status", {"courseid": 3, "userid": mentor}
    )
    assert answer["errorcode"] == "usernotenroled"


def test_orientation_completes_on_view_and_self_service_tokens(moodle: MoodleSandbox) -> None:
    """The mentee's own token may tick manual meetings and view the page, nothing else."""
    (mentee,) = create(moodle, 1)
    call(
        moodle,
        "enrol_manual_enrol_users",
        {
            "enrolments": [
                {"roleid": 5, "userid": mentee, "courseid": 2},
                {"roleid": 5, "userid": mentee, "courseid": 3},
            ]
        },
    )
    token = moodle.site.user_token(mentee)
    assert call(moodle, "mod_page_view_page", {"pageid": 1}, token=token)["status"] is True
    assert moodle.site.course_completion_time(mentee, 2) is not None
    call(
        moodle,
        "core_completion_update_activity_completion_status_manually",
        {"cmid": 6, "completed": 1},
        token=token,
    )
    assert moodle.site.activity_state(mentee, 6) == 1
    assert (
        call(moodle, "core_user_create_users", {"users": [user(2)]}, token=token)["errorcode"]
        == "accessexception"
    )
    assert call(moodle, "mod_page_view_page", {"pageid": 1})["errorcode"] == "accessexception"
    # The integration token's "manual" tick marks the integration user, never the mentee.
    call(
        moodle,
        "core_completion_update_activity_completion_status_manually",
        {"cmid": 7, "completed": 1},
    )
    assert moodle.site.activity_state(mentee, 7) == 0
    assert moodle.site.activity_state(3, 7) == 1


# ----------------------------------------------------------------------------- knobs


def test_persistence_across_stop_and_start(tmp_path) -> None:
    """A stopped sandbox with a data dir starts again where it was, token included."""
    first = MoodleSandbox(tmp_path)
    first.start()
    mentee, mentor = create(first, 1, 2)
    call(
        first,
        "enrol_manual_enrol_users",
        {"enrolments": [{"roleid": 5, "userid": mentee, "courseid": 3}]},
    )
    (group,) = call(
        first,
        "core_group_create_groups",
        {"groups": [{"courseid": 3, "name": "Pair", "idnumber": "a0X9", "description": ""}]},
    )
    call(
        first,
        "core_group_add_group_members",
        {"members": [{"groupid": group["id"], "userid": mentee}]},
    )
    call(
        first,
        "core_completion_override_activity_completion_status",
        {"userid": mentee, "cmid": 4, "newstate": 1},
    )
    call(first, "core_user_delete_users", {"userids": [mentor]})
    token = first.token
    first.stop()

    second = MoodleSandbox(tmp_path)
    second.start()
    try:
        assert second.token == token
        (found,) = call(
            second,
            "core_user_get_users_by_field",
            {"field": "idnumber", "values": [user(1)["idnumber"]]},
        )
        assert found["id"] == mentee
        assert (
            call(second, "core_user_get_users_by_field", {"field": "id", "values": [mentor]}) == []
        )
        assert second.site.enrolments(3) == {mentee: [5]}
        assert call(second, "core_group_get_group_members", {"groupids": [group["id"]]}) == [
            {"groupid": group["id"], "userids": [mentee]}
        ]
        assert second.site.activity_state(mentee, 4) == 1
        (newer,) = create(second, 3)
        assert newer > mentor
    finally:
        second.stop()


def test_http503_and_drop_happen_before_processing(moodle: MoodleSandbox) -> None:
    """Nothing is written when the call is refused or dropped; the next call goes through."""
    moodle.faults.add("core_user_create_users", "http503")
    moodle.faults.add("core_user_create_users", "drop")
    response = requests.post(
        moodle.url + REST,
        data=[
            ("wstoken", moodle.token),
            ("wsfunction", "core_user_create_users"),
            ("moodlewsrestformat", "json"),
            *flatten({"users": [user(1)]}),
        ],
        timeout=10,
    )
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.ConnectionError):
        create(moodle, 1)
    assert moodle.site.user_by_username("member1") is None
    create(moodle, 1)
    assert moodle.site.user_by_username("member1") is not None
    assert moodle.calls["core_user_create_users"] == 3


def test_timeout_and_drop_after_apply_the_write(moodle: MoodleSandbox) -> None:
    """The client gives up (read timeout / lost connection) but the users exist."""
    moodle.timeout_seconds = 30  # released by stop(); the client gives up long before
    moodle.faults.add("*", "timeout")
    with pytest.raises(requests.ReadTimeout):
        call(moodle, "core_user_create_users", {"users": [user(1)]}, timeout=0.3)
    assert moodle.site.user_by_username("member1") is not None
    moodle.faults.add("core_user_create_users", "drop_after")
    with pytest.raises(requests.ConnectionError):
        create(moodle, 2)
    assert moodle.site.user_by_username("member2") is not None
    assert moodle.faults.pending() == 0


def test_fault_plan_order_wildcard_and_supported_names() -> None:
    """Exact function first, then "*"; each fault fires ``times`` times; unknown names fail."""
    plan = FaultPlan()
    plan.add("*", "drop")
    plan.add("f", "http503", times=2)
    assert [plan.take("f"), plan.take("f"), plan.take("f"), plan.take("f")] == [
        "http503",
        "http503",
        "drop",
        None,
    ]
    with pytest.raises(ValueError, match="unknown fault"):
        MoodleSandbox().faults.add("*", "lock_row")


def test_calls_are_counted_per_function_including_errors(moodle: MoodleSandbox) -> None:
    """Every request counts, errors too; the counter is what benchmarks read."""
    call(moodle, "core_webservice_get_site_info")
    call(moodle, "core_webservice_get_site_info", token="bad")
    call(moodle, "core_course_get_contents", {"courseid": 999})
    assert moodle.calls == {"core_webservice_get_site_info": 2, "core_course_get_contents": 1}


def test_concurrent_creates_get_unique_ids(moodle: MoodleSandbox) -> None:
    """The threaded server serialises writes: parallel batches never share an id."""
    results: list[int] = []
    lock = threading.Lock()

    def worker(base: int) -> None:
        ids = create(moodle, *range(base, base + 5))
        with lock:
            results.extend(ids)

    threads = [threading.Thread(target=worker, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == len(set(results)) == 20


def test_latency_knob_keeps_answers_right() -> None:
    """A sandbox with latency still answers correctly (benchmarks use it for round trips)."""
    with MoodleSandbox(latency=0.01) as sandbox:
        assert call(sandbox, "core_webservice_get_site_info")["userid"] == 3


def test_no_token_or_personal_data_in_logs(moodle: MoodleSandbox, caplog) -> None:
    """Requests carry tokens and emails; none of it reaches the server's logs."""
    caplog.set_level(logging.DEBUG)
    params = {
        "wstoken": moodle.token,
        "wsfunction": "core_user_get_users_by_field",
        "field": "email",
        "values[0]": "secret@example.com",
    }
    requests.get(moodle.url + REST, params=params, timeout=10)  # XML answer
    moodle.faults.add("*", "drop_after")
    with pytest.raises(requests.ConnectionError):
        requests.get(moodle.url + REST, params={**params, "moodlewsrestformat": "json"}, timeout=10)
    server_logs = [
        r.getMessage() for r in caplog.records if r.name.startswith(("sandbox", "werkzeug"))
    ]
    assert server_logs, "the server logged nothing at all: the check would be vacuous"
    assert not [m for m in server_logs if moodle.token in m or "secret@" in m]


def test_stop_releases_held_answers_and_leaves_no_threads() -> None:
    """A call held by a ``timeout`` fault ends when the sandbox stops; no thread lingers."""
    before = set(threading.enumerate())
    sandbox = MoodleSandbox(timeout_seconds=60)
    sandbox.start()
    sandbox.faults.add("*", "timeout")
    with pytest.raises(requests.ReadTimeout):
        call(sandbox, "core_webservice_get_site_info", timeout=0.3)
    sandbox.stop()
    assert set(threading.enumerate()) - before == set()


def test_the_query_string_keeps_max_input_vars_fields_and_the_body_one_more() -> None:
    """As PHP 8.2 does (measured with ``php -S`` at max_input_vars=3: 3 of 5 query fields, 4 of
    5 body fields; the real-Moodle tier measures the body at 1000 and 5000)."""
    pairs = [(f"f{n}", str(n)) for n in range(5)]
    assert truncate_fields(pairs, 3, body=False) == pairs[:3]
    assert truncate_fields(pairs, 3, body=True) == pairs[:4]
