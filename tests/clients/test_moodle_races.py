"""What a real Moodle 4.5 showed that no recording does: the dmlwriteexception race, and PHP's
real max_input_vars measured by a probe."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
import requests
import responses
from moodle_helpers import ENDPOINT, MENTEE, add_fixture, make_client

from connector.clients.moodle.site import (
    InputVarsLimit,
    check_max_input_vars,
    measure_max_input_vars,
)
from connector.errors import (
    Action,
    ConfigError,
    MoodleRecordError,
    MoodleTransientError,
    MoodleWriteRefusedError,
)

# What losers of the last_time_enrolments_synced insert answer, on any function (issue 13).
DML_WRITE = {
    "exception": "dml_write_exception",
    "errorcode": "dmlwriteexception",
    "message": "Error writing to database",
}
INVALID = {
    "exception": "core\\exception\\invalid_parameter_exception",
    "errorcode": "invalidparameter",
    "message": "Invalid parameter value detected",
}
ENROLMENT = [{"roleid": 5, "userid": 4, "courseid": 2}]


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def test_a_read_that_loses_the_race_is_retried_with_backoff(rsps: responses.RequestsMock) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    add_fixture(rsps, "28_core_group_get_group_members.json")
    assert client.get_group_members([1]) == [{"groupid": 1, "userids": [4, 5]}]
    assert client.calls == {"core_group_get_group_members": 3}
    assert len(waits) == 2 and 0 <= waits[0] <= 2 and 0 <= waits[1] <= 4


def test_a_read_that_keeps_failing_stops_after_the_configured_attempts(
    rsps: responses.RequestsMock,
) -> None:
    client, waits = make_client(retry_attempts=3)
    for _ in range(3):
        rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    with pytest.raises(MoodleTransientError) as caught:
        client.get_group_members([1])
    assert caught.value.errorcode == "dmlwriteexception"
    assert len(rsps.calls) == 3 and len(waits) == 2


def test_a_write_that_loses_the_race_is_resent_once(rsps: responses.RequestsMock) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    add_fixture(rsps, "02_core_user_create_users.json")
    assert [u["id"] for u in client.create_users([MENTEE])] == [4, 5]
    assert client.calls == {"core_user_create_users": 2}
    assert len(waits) == 1 and 0 <= waits[0] <= 1
    # The resend is the very same call.
    assert rsps.calls[0].request.body == rsps.calls[1].request.body


def test_a_write_refused_twice_is_the_records_fault(rsps: responses.RequestsMock) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    with pytest.raises(MoodleWriteRefusedError) as caught:
        client.enrol_users(ENROLMENT)
    error = caught.value
    assert isinstance(error, MoodleRecordError)  # callers bisect record errors
    assert error.action is Action.FAIL_RECORD
    assert error.errorcode == "dmlwriteexception"
    assert error.wsfunction == "enrol_manual_enrol_users"
    assert len(rsps.calls) == 2 and len(waits) == 1


def test_a_write_resent_after_the_race_keeps_its_own_error(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    rsps.add(responses.POST, ENDPOINT, json=INVALID)
    with pytest.raises(MoodleRecordError) as caught:
        client.create_users([MENTEE])
    assert type(caught.value) is MoodleRecordError
    assert caught.value.errorcode == "invalidparameter"
    assert len(rsps.calls) == 2


# --- the max_input_vars probe ------------------------------------------------------------------


def php_site(rsps: responses.RequestsMock, max_input_vars: int, userid: int = 3) -> list[int]:
    """A Moodle whose PHP keeps the first ``max_input_vars`` form fields; returns the sizes seen."""
    sizes: list[int] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        fields = parse_qsl(request.body, keep_blank_values=True)
        sizes.append(len(fields))
        kept = fields[:max_input_vars]  # PHP drops the rest without a word
        values = {v for k, v in kept if k.startswith("values[")}
        users = [{"id": userid, "username": "mentorsync"}] if str(userid) in values else []
        return 200, {"Content-Type": "application/json"}, json.dumps(users)

    rsps.add_callback(responses.POST, ENDPOINT, callback=answer)
    return sizes


def test_the_probe_takes_one_call_when_the_configured_limit_holds(
    rsps: responses.RequestsMock,
) -> None:
    client, _ = make_client(max_input_vars=5000)
    sizes = php_site(rsps, 5000)
    assert measure_max_input_vars(client, 5000, 3) == InputVarsLimit(5000, at_least=True)
    assert sizes == [5000]
    body = parse_qsl(rsps.calls[0].request.body)
    assert body[3] == ("field", "id")
    assert body[-1] == ("values[4995]", "3")  # the last of the 5000 fields is the user's own id


def test_the_probe_finds_phps_real_limit(rsps: responses.RequestsMock) -> None:
    client, _ = make_client(max_input_vars=5000)
    sizes = php_site(rsps, 1000)
    assert measure_max_input_vars(client, 5000, 3) == InputVarsLimit(1000, at_least=False)
    assert 1000 in sizes and 1001 in sizes
    assert len(sizes) <= 14  # one call, then a binary search


def test_a_configured_limit_above_phps_is_refused_naming_the_key(
    rsps: responses.RequestsMock,
) -> None:
    client, _ = make_client(max_input_vars=5000)
    php_site(rsps, 1000)
    with pytest.raises(ConfigError) as caught:
        check_max_input_vars(client, userid=3)
    assert caught.value.key == "moodle.max_input_vars"
    assert "PHP keeps 1000 form fields" in str(caught.value)
    assert "set moodle.max_input_vars to 999" in str(caught.value)


def test_a_configured_limit_within_phps_passes(rsps: responses.RequestsMock) -> None:
    client, _ = make_client(max_input_vars=1000)
    add_fixture(rsps, "01_core_webservice_get_site_info_GET.json")  # userid 3
    sizes = php_site(rsps, 1000)
    assert check_max_input_vars(client) == InputVarsLimit(1000, at_least=True)
    assert sizes == [1000]


def test_each_retry_is_logged_once(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = make_client()
    rsps.add(responses.POST, ENDPOINT, json=DML_WRITE)
    rsps.add(responses.POST, ENDPOINT, json=[])
    caplog.set_level(logging.INFO)
    client.get_users_by_field("idnumber", ["003x"])
    lines = [
        r.getMessage().rsplit(" in ", 1)[0]  # the wait is random (jittered backoff)
        for r in caplog.records
        if "dmlwriteexception" in r.getMessage()
    ]
    assert lines == [
        "moodle core_user_get_users_by_field: dmlwriteexception, attempt 1 failed, retrying"
    ]
