"""The sandbox Moodle carries pairs and progress: the facts measured on a live Moodle 4.5."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sandbox.moodle import MoodleSandbox
from sandbox.moodle.events import MoodleEventEmitter, body_bytes
from webhooks.signing import decode_secret, verify

REST = "/webservice/rest/server.php"
SECRET = "whsec_" + base64.b64encode(b"sandbox-events-key-0123456789").decode()


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """PHP bracket encoding."""
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = enumerate(value)
    else:
        return [(prefix, str(int(value) if isinstance(value, bool) else value))]
    out = []
    for key, sub in items:
        out += flatten(sub, f"{prefix}[{key}]" if prefix else str(key))
    return out


def call(sandbox: MoodleSandbox, wsfunction: str, params: Any = None, token: str = "") -> Any:
    """One web-service call; the decoded JSON."""
    body = [
        ("wstoken", token or sandbox.token),
        ("wsfunction", wsfunction),
        ("moodlewsrestformat", "json"),
        *flatten(params or {}),
    ]
    response = requests.post(sandbox.url + REST, data=body, timeout=10)
    assert response.status_code == 200
    return response.json()


def error(answer: Any) -> tuple[str, str]:
    """(exception, errorcode) of an error answer."""
    return answer["exception"], answer["errorcode"]


@pytest.fixture
def moodle() -> Iterator[MoodleSandbox]:
    sandbox = MoodleSandbox()
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def pair(moodle: MoodleSandbox) -> tuple[int, int]:
    """(mentee, mentor), enrolled in GMP-2026 as student and non-editing teacher."""
    mentee = moodle.site.create_user("okafor", "okafor@example.org", lastname="Okafor")
    mentor = moodle.site.create_user("lindqvist", "lindqvist@example.org", lastname="Lindqvist")
    moodle.site.enrol(3, mentee, 5)
    moodle.site.enrol(3, mentor, 4)
    return mentee, mentor


def group(name: str, idnumber: str) -> dict[str, Any]:
    return {"courseid": 3, "name": name, "idnumber": idnumber, "description": ""}


# ----------------------------------------------------------------------------- groups


def test_create_groups_rolls_back_the_batch_on_a_taken_idnumber(moodle: MoodleSandbox) -> None:
    # One delegated transaction (group/externallib.php), as the real-Moodle tier shows.
    call(moodle, "core_group_create_groups", {"groups": [group("Old pair", "a0X2")]})
    batch = [group("New pair", "a0X1"), group("Other pair", "a0X2"), group("Third", "a0X3")]
    answer = call(moodle, "core_group_create_groups", {"groups": batch})
    assert answer == {
        "exception": "core\\exception\\moodle_exception",
        "errorcode": "idnumbertaken",
        "message": "This ID number is already taken",
    }
    names = sorted(g["name"] for g in moodle.site.groups.values())
    assert names == ["Old pair"]  # "New pair" was rolled back, the third never tried


def test_group_name_taken_and_column_lengths(moodle: MoodleSandbox) -> None:
    call(moodle, "core_group_create_groups", {"groups": [group("Pair", "a0X1")]})
    taken = call(moodle, "core_group_create_groups", {"groups": [group("Pair", "a0X9")]})
    assert error(taken) == ("core\\exception\\invalid_parameter_exception", "invalidparameter")
    long_name = call(moodle, "core_group_create_groups", {"groups": [group("n" * 255, "a0X8")]})
    assert error(long_name) == ("dml_write_exception", "dmlwriteexception")
    assert long_name["message"] == "Error writing to database"
    long_id = call(moodle, "core_group_create_groups", {"groups": [group("Pair 2", "i" * 101)]})
    assert error(long_id) == ("dml_write_exception", "dmlwriteexception")
    ok = call(
        moodle, "core_group_create_groups", {"groups": [group("m" * 254, " " + "j" * 100 + " ")]}
    )
    assert [g["idnumber"] for g in ok] == ["j" * 100]  # trimmed like groups_create_group
    assert len(moodle.site.groups) == 2


def test_course_groups_come_back_html_escaped(moodle: MoodleSandbox) -> None:
    name = "Okafor & Lindqvist (GMP-2026)"
    (created,) = call(moodle, "core_group_create_groups", {"groups": [group(name, "a0X1")]})
    assert created["name"] == name  # create echoes what was sent
    (listed,) = call(moodle, "core_group_get_course_groups", {"courseid": 3})
    assert listed["name"] == "Okafor &amp; Lindqvist (GMP-2026)"
    assert moodle.site.groups[created["id"]]["name"] == name
    (by_id,) = call(moodle, "core_group_get_groups", {"groupids": [created["id"]]})
    assert by_id["name"] == "Okafor &amp; Lindqvist (GMP-2026)"


def test_member_role_and_enrol_batches_are_all_or_nothing(
    moodle: MoodleSandbox, pair: tuple[int, int]
) -> None:
    mentee, mentor = pair
    outsider = moodle.site.create_user("outsider", "outsider@example.org")
    (g,) = call(moodle, "core_group_create_groups", {"groups": [group("Pair", "a0X1")]})
    members = [{"groupid": g["id"], "userid": mentee}, {"groupid": g["id"], "userid": outsider}]
    answer = call(moodle, "core_group_add_group_members", {"members": members})
    assert error(answer) == ("core\\exception\\invalid_parameter_exception", "invalidparameter")
    assert moodle.site.groups[g["id"]]["members"] == []

    assignments = [
        {"roleid": 9, "userid": mentor, "contextlevel": "user", "instanceid": mentee},
        {"roleid": 9, "userid": mentor, "contextlevel": "user", "instanceid": 999999},
    ]
    answer = call(moodle, "core_role_assign_roles", {"assignments": assignments})
    assert error(answer) == ("core\\exception\\invalid_parameter_exception", "invalidparameter")
    assert moodle.site.role_assignments == [(5, mentee, "course", 3), (4, mentor, "course", 3)]

    enrolments = [
        {"roleid": 5, "userid": outsider, "courseid": 2},
        {"roleid": 5, "userid": 999999, "courseid": 2},
    ]
    answer = call(moodle, "enrol_manual_enrol_users", {"enrolments": enrolments})
    assert error(answer) == ("core\\exception\\coding_exception", "codingerror")
    assert moodle.site.enrolments(2) == {}


def test_repeated_and_missing_writes_answer_null(
    moodle: MoodleSandbox, pair: tuple[int, int]
) -> None:
    mentee, mentor = pair
    stranger = moodle.site.create_user("stranger", "stranger@example.org")
    (g,) = call(moodle, "core_group_create_groups", {"groups": [group("Pair", "a0X1")]})
    member = {"members": [{"groupid": g["id"], "userid": mentee}]}
    mentor_role = {"roleid": 9, "userid": mentor, "contextlevel": "user", "instanceid": mentee}
    repeated = [
        ("core_group_add_group_members", member),
        ("core_group_add_group_members", member),  # an existing member
        ("core_role_assign_roles", {"assignments": [mentor_role]}),
        ("core_role_assign_roles", {"assignments": [mentor_role]}),  # an existing role
        ("core_role_unassign_roles", {"unassignments": [{**mentor_role, "instanceid": mentor}]}),
        ("core_group_delete_group_members", {"members": [{"groupid": g["id"], "userid": mentor}]}),
        ("enrol_manual_unenrol_users", {"enrolments": [{"userid": stranger, "courseid": 3}]}),
        ("core_group_delete_groups", {"groupids": [g["id"] + 100]}),
    ]
    assert [call(moodle, name, params) for name, params in repeated] == [None] * 8
    assert moodle.site.groups[g["id"]]["members"] == [mentee]
    assert (9, mentor, "user", mentee) in moodle.site.role_assignments


def test_group_members_of_a_deleted_group_fail_the_whole_call(
    moodle: MoodleSandbox, pair: tuple[int, int]
) -> None:
    mentee, _ = pair
    groups = [group("Pair 1", "a0X1"), group("Pair 2", "a0X2")]
    one, two = call(moodle, "core_group_create_groups", {"groups": groups})
    moodle.site.add_group_member(one["id"], mentee)
    moodle.site.delete_group(two["id"])  # deleted by hand
    answer = call(moodle, "core_group_get_group_members", {"groupids": [one["id"], two["id"]]})
    assert error(answer) == ("dml_missing_record_exception", "invalidrecord")
    answer = call(moodle, "core_group_get_group_members", {"groupids": [one["id"]]})
    assert answer == [{"groupid": one["id"], "userids": [mentee]}]


# ----------------------------------------------------------------------------- course modules


def test_course_module_by_id_carries_the_idnumber(moodle: MoodleSandbox) -> None:
    answer = call(moodle, "core_course_get_course_module", {"cmid": 4})
    cm = answer["cm"]
    assert (cm["id"], cm["course"], cm["idnumber"], cm["completion"]) == (4, 3, "GMP-2026-M1", 1)
    assert answer["warnings"] == []
    missing = call(moodle, "core_course_get_course_module", {"cmid": 999})
    assert error(missing) == ("dml_missing_record_exception", "invalidrecordunknown")
    # Not in the lab's service (recording 01): an access error, like the real site.
    by_instance = call(
        moodle, "core_course_get_course_module_by_instance", {"module": "page", "instance": 2}
    )
    assert error(by_instance) == ("webservice_access_exception", "accessexception")
    bad_cm = call(
        moodle,
        "core_completion_override_activity_completion_status",
        {"userid": 3, "cmid": 999, "newstate": 1},
    )
    assert error(bad_cm) == ("dml_missing_record_exception", "invalidcoursemodule")


def test_every_meeting_resolves_to_a_manual_completion_cmid(moodle: MoodleSandbox) -> None:
    contents = call(moodle, "core_course_get_contents", {"courseid": 3})
    cmids = [m["id"] for s in contents for m in s["modules"]]
    cms = [call(moodle, "core_course_get_course_module", {"cmid": c})["cm"] for c in cmids]
    meetings = {cm["idnumber"]: (cm["id"], cm["completion"]) for cm in cms if cm["idnumber"]}
    assert meetings == {f"GMP-2026-M{n}": (3 + n, 1) for n in range(1, 7)}


def test_enrolled_users_options_keep_payloads_small(
    moodle: MoodleSandbox, pair: tuple[int, int]
) -> None:
    mentee, mentor = pair
    moodle.site.update_user(mentee, {"idnumber": "003A"})
    moodle.site.enrol(3, mentor, None, status=1)  # enrolment suspended
    options = [{"name": "userfields", "value": "idnumber, roles"}]
    answer = call(moodle, "core_enrol_get_enrolled_users", {"courseid": 3, "options": options})
    assert answer == [
        {
            "id": mentee,
            "fullname": "Test Okafor",
            "idnumber": "003A",
            "roles": [{"roleid": 5, "name": "", "shortname": "student", "sortorder": 0}],
        },
        {
            "id": mentor,
            "fullname": "Test Lindqvist",
            "roles": [{"roleid": 4, "name": "", "shortname": "teacher", "sortorder": 0}],
        },
    ]
    active = [*options, {"name": "onlyactive", "value": "1"}]
    answer = call(moodle, "core_enrol_get_enrolled_users", {"courseid": 3, "options": active})
    assert [u["id"] for u in answer] == [mentee]
    bad = [{"name": "userfields", "value": "idnumber,password"}]
    answer = call(moodle, "core_enrol_get_enrolled_users", {"courseid": 3, "options": bad})
    assert answer == {
        "exception": "core\\exception\\moodle_exception",
        "errorcode": "invaliduserfield",
        "message": "Invalid user field: password",
    }


# ----------------------------------------------------------------------------- the plugin


def test_plugin_function_only_while_installed(moodle: MoodleSandbox) -> None:
    def listed() -> bool:
        info = call(moodle, "core_webservice_get_site_info")
        return "local_mentorsync_get_completions" in {f["name"] for f in info["functions"]}

    assert not listed()
    answer = call(moodle, "local_mentorsync_get_completions", {"courseid": 3})
    assert error(answer) == ("dml_missing_record_exception", "invalidrecord")
    moodle.site.plugin_installed = True
    assert listed()
    empty = call(moodle, "local_mentorsync_get_completions", {"courseid": 3})
    assert (empty["activities"], empty["courses"], empty["nextcursor"]) == ([], [], "")
    assert isinstance(empty["servertime"], int)


def test_plugin_reads_completions_since_a_time_in_pages(
    moodle: MoodleSandbox, pair: tuple[int, int]
) -> None:
    mentee, mentor = pair
    moodle.site.plugin_installed = True
    for cmid in (4, 5, 6):
        moodle.site.set_completion(mentee, cmid, 1)
    moodle.site.set_completion(mentee, 6, 0)  # undone: still reported, as state 0
    moodle.site.set_activity_state(mentor, 4, 1, overrideby=3)
    moodle.site.completions[(mentee, 4)]["timemodified"] = 1000  # long ago
    for n, key in enumerate([(mentee, 5), (mentee, 6), (mentor, 4)]):
        moodle.site.completions[key]["timemodified"] = 3000 + n  # keyset order: by time
    first = call(
        moodle, "local_mentorsync_get_completions", {"courseid": 3, "since": 2000, "limit": 2}
    )
    rows = [
        (r["userid"], r["cmid"], r["idnumber"], r["completionstate"]) for r in first["activities"]
    ]
    assert rows == [(mentee, 5, "GMP-2026-M2", 1), (mentee, 6, "GMP-2026-M3", 0)]
    assert first["nextcursor"] == f"a-3001-{mentee * 100000 + 6}" and first["courses"] == []
    second = call(
        moodle,
        "local_mentorsync_get_completions",
        {"courseid": 3, "since": 2000, "cursor": first["nextcursor"], "limit": 2},
    )
    assert [(r["userid"], r["cmid"]) for r in second["activities"]] == [(mentor, 4)]
    assert second["nextcursor"] == ""
    bad = call(moodle, "local_mentorsync_get_completions", {"courseid": 3, "cursor": "x-1-2"})
    assert error(bad)[1] == "invalidparameter"
    moodle.site.enrol(2, mentee, 5)
    moodle.site.view_page(mentee, 2)  # orientation completes on view, and so does the course
    orient = call(moodle, "local_mentorsync_get_completions", {"courseid": 2})
    assert [c["userid"] for c in orient["courses"]] == [mentee]
    assert orient["courses"][0]["timecompleted"] > 0
    bad = call(moodle, "local_mentorsync_get_completions", {"courseid": 3, "limitnum": 0})
    assert error(bad) == ("core\\exception\\invalid_parameter_exception", "invalidparameter")
    token = moodle.site.user_token(mentee)
    denied = call(moodle, "local_mentorsync_get_completions", {"courseid": 3}, token=token)
    assert error(denied) == ("webservice_access_exception", "accessexception")


# ----------------------------------------------------------------------------- events


class _Receiver:
    """A loopback webhook: answers 503 to the first ``fail_first`` posts, then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(503)
                else:
                    receiver.received.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/moodle/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_events_are_off_by_default(moodle: MoodleSandbox, pair: tuple[int, int]) -> None:
    assert moodle.site.listeners == []
    moodle.site.set_completion(pair[0], 4, 1)  # nothing to deliver, nothing fails


def test_completion_events_are_signed_posts_retried_in_the_background(
    moodle: MoodleSandbox, pair: tuple[int, int]
) -> None:
    mentee, _ = pair
    receiver = _Receiver(fail_first=1)
    emitter = MoodleEventEmitter(receiver.url, SECRET, courses={3}, backoff_seconds=0.01)
    emitter.attach(moodle.site)
    try:
        answer = call(
            moodle,
            "core_completion_override_activity_completion_status",
            {"userid": mentee, "cmid": 4, "newstate": 1},
        )
        assert answer["state"] == 1
        moodle.site.enrol(2, mentee, 5)
        moodle.site.view_page(mentee, 2)  # course 2 is not reported
        wait_for(lambda: emitter.delivered == 1)
        assert emitter.wait_idle(5.0) and emitter.failed == 0
    finally:
        emitter.stop()
        receiver.close()
    assert receiver.attempts == 2  # the 503, then the retry
    [(headers, body)] = receiver.received
    event = json.loads(body)
    assert list(event) == [
        "eventname",
        "userid",
        "relateduserid",
        "courseid",
        "contextinstanceid",
        "timecreated",
    ]
    assert event["eventname"] == "\\core\\event\\course_module_completion_updated"
    assert (event["userid"], event["relateduserid"], event["courseid"]) == (3, mentee, 3)
    assert event["contextinstanceid"] == 4
    assert body == body_bytes(event)
    assert body.startswith(b'{"eventname":"\\\\core\\\\event\\\\course_module_completion_updated"')
    assert verify([decode_secret(SECRET)], headers, body) == headers["webhook-id"]
    assert headers["webhook-id"].startswith("msg_") and len(headers["webhook-id"]) == 36
    assert moodle.site.listeners == []  # stop() detached it
