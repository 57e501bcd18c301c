"""Moodle failures: each error class from real recordings, retries, unknown outcomes, secrets."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from moodle_helpers import ENDPOINT, MENTEE, TOKEN, add_fixture, fixture_body, make_client
from urllib3.exceptions import ProtocolError

from connector.clients.moodle.client import MoodleClient
from connector.errors import (
    Action,
    MoodleConfigurationError,
    MoodleError,
    MoodleProtocolError,
    MoodleRecordError,
    MoodleTransientError,
    UnknownOutcomeError,
)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def _site_info(c: MoodleClient) -> Any:
    return c.site_info()


def _enrol_guest(c: MoodleClient) -> Any:
    return c.enrol_users([{"roleid": 1, "userid": 4, "courseid": 2}])


ERROR_CASES: list[tuple[str, Callable[[MoodleClient], Any], type[MoodleError], str, str]] = [
    # fixture, action, error class, errorcode, a word the hint must contain ("" = no hint)
    ("59_ERROR_invalid_token.json", _site_info, MoodleConfigurationError, "invalidtoken", "token"),
    (
        "60_ERROR_function_not_in_service.json",
        lambda c: c.call(
            "core_course_create_courses", {"courses": [{"fullname": "x"}]}, write=True
        ),
        MoodleConfigurationError,
        "accessexception",
        "add core_course_create_courses to the integration user's external service",
    ),
    (
        "61_ERROR_no_such_function.json",
        lambda c: c.call("core_no_such_function"),
        MoodleConfigurationError,
        "invalidrecord",
        "core_no_such_function does not exist",
    ),
    (
        "21_enrol_manual_enrol_users_ERROR_role_not_assignable.json",
        _enrol_guest,
        MoodleConfigurationError,
        "wsusercannotassign",
        "allow the integration role to assign role 1",
    ),
    (
        "03_core_user_create_users_ERROR_duplicate_username.json",
        lambda c: c.create_users([MENTEE]),
        MoodleRecordError,
        "invalidparameter",
        "",
    ),
    (
        "05_core_user_create_users_ERROR_weak_password.json",
        lambda c: c.create_users([{**MENTEE, "password": "abc"}]),
        MoodleRecordError,
        "passwordpolicy",
        "",
    ),
    (
        "18_core_course_get_contents_ERROR_no_such_course.json",
        lambda c: c.get_course_contents(999999),
        MoodleRecordError,
        "invalidrecord",
        "",
    ),
    (
        "52_core_completion_get_course_completion_status_ERROR_not_enrolled.json",
        lambda c: c.get_course_completion_status(3, 2),
        MoodleRecordError,
        "usernotenroled",
        "",
    ),
    (
        "63_core_webservice_get_site_info_NO_FORMAT_is_XML.xml",
        _site_info,
        MoodleProtocolError,
        "xmlresponse",
        "the REST protocol must answer JSON",
    ),
    (
        "64_ERROR_invalid_token_NO_FORMAT_is_XML.xml",
        _site_info,
        MoodleProtocolError,
        "xmlresponse",
        "the REST protocol must answer JSON",
    ),
]


@pytest.mark.parametrize(
    ("fixture", "action", "error_class", "errorcode", "hint"),
    ERROR_CASES,
    ids=[case[0][:2] for case in ERROR_CASES],
)
def test_recorded_errors_become_typed_errors_without_retry(
    rsps: responses.RequestsMock,
    fixture: str,
    action: Callable[[MoodleClient], Any],
    error_class: type[MoodleError],
    errorcode: str,
    hint: str,
) -> None:
    client, waits = make_client()
    add_fixture(rsps, fixture)
    with pytest.raises(error_class) as caught:
        action(client)
    error = caught.value
    assert type(error) is error_class
    assert error.errorcode == errorcode
    if hint:
        assert isinstance(error, (MoodleConfigurationError, MoodleProtocolError))
        assert hint in error.hint and hint in str(error)
        assert error.action is Action.STOP
    if error_class is MoodleRecordError:
        assert error.action is Action.FAIL_RECORD
    assert len(rsps.calls) == 1 and not waits  # none of these is worth a retry
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    if error.upstream_message:
        assert error.upstream_message not in str(error)


def test_the_upstream_message_is_kept_but_not_shown(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    add_fixture(rsps, "05_core_user_create_users_ERROR_weak_password.json")
    with pytest.raises(MoodleRecordError) as caught:
        client.create_users([{**MENTEE, "password": "abc"}])
    assert "Passwords must be at least 8 characters long" in caught.value.upstream_message
    assert "<div>" not in str(caught.value)
    assert caught.value.exception == "core\\exception\\moodle_exception"


def test_a_redirect_is_a_protocol_error_and_is_not_followed(rsps: responses.RequestsMock) -> None:
    client, waits = make_client(url="http://localhost:8081")
    wrong_host = "http://localhost:8081/webservice/rest/server.php"
    rsps.add(
        responses.POST,
        wrong_host,
        body=fixture_body("71_PROTOCOL_host_localhost_redirects.html"),
        status=303,
        headers={"Location": ENDPOINT},
        content_type="text/html; charset=UTF-8",
    )
    # Where a followed redirect would land (303 turns the POST into a GET):
    rsps.add(responses.GET, ENDPOINT, json={"sitename": "followed"})
    rsps.add(responses.POST, ENDPOINT, json={"sitename": "followed"})
    rsps.assert_all_requests_are_fired = False
    with pytest.raises(MoodleProtocolError) as caught:
        client.site_info()
    assert caught.value.errorcode == "redirect303"
    assert "moodle.url must be the site's wwwroot exactly" in str(caught.value)
    assert caught.value.action is Action.STOP
    assert [c.request.url for c in rsps.calls] == [wrong_host]
    assert not waits


def test_an_unexpected_status_is_a_protocol_error_with_a_hint(
    rsps: responses.RequestsMock,
) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, body="<h1>Not Found</h1>", status=404)
    with pytest.raises(MoodleProtocolError) as caught:
        client.site_info()
    assert caught.value.errorcode == "http404"
    assert "REST protocol is enabled" in str(caught.value)
    assert len(rsps.calls) == 1 and not waits


def test_a_bare_403_says_to_enable_web_services(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    rsps.add(responses.POST, ENDPOINT, body=b"", status=403)
    with pytest.raises(MoodleConfigurationError) as caught:
        client.site_info()
    assert caught.value.errorcode == "http403"
    assert "enable web services" in caught.value.hint


def test_503_503_200_is_retried_to_success_with_backoff(rsps: responses.RequestsMock) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, body="<html>busy</html>", status=503)
    rsps.add(responses.POST, ENDPOINT, body="<html>busy</html>", status=503)
    add_fixture(rsps, "01_core_webservice_get_site_info_GET.json")
    assert client.site_info()["userid"] == 3
    assert client.calls == {"core_webservice_get_site_info": 3}
    assert len(rsps.calls) == 3
    # Exponential with full jitter: the n-th wait is random in [0, 2**n], never real sleep.
    assert len(waits) == 2 and 0 <= waits[0] <= 2 and 0 <= waits[1] <= 4


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 429, "body": ""},
        {"status": 500, "body": "Internal Server Error"},
        {"status": 200, "body": "<html><body>proxy says hello</body></html>"},
        {"body": requests.exceptions.ReadTimeout("read timed out")},
        {"body": requests.exceptions.ConnectTimeout("connect timed out")},
    ],
    ids=["429", "500", "html-200", "read-timeout", "connect-timeout"],
)
def test_transient_failures_of_a_read_are_retried(
    rsps: responses.RequestsMock, failure: dict[str, Any]
) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, **failure)
    add_fixture(rsps, "28_core_group_get_group_members.json")
    assert client.get_group_members([1]) == [{"groupid": 1, "userids": [4, 5]}]
    assert len(rsps.calls) == 2 and len(waits) == 1


def test_retries_stop_after_the_configured_attempts(rsps: responses.RequestsMock) -> None:
    client, waits = make_client(retry_attempts=4)
    rsps.add(responses.POST, ENDPOINT, status=503)
    with pytest.raises(MoodleTransientError) as caught:
        client.get_course_groups(3)
    assert caught.value.errorcode == "http503"
    assert caught.value.action is Action.RETRY
    assert len(rsps.calls) == 4 and len(waits) == 3
    assert client.calls == {"core_group_get_course_groups": 4}


def test_retries_stop_within_the_total_time(rsps: responses.RequestsMock) -> None:
    # No wait fits in a budget this small, so the first failure is the last attempt.
    client, waits = make_client(retry_attempts=10, retry_max_seconds=1e-9)
    rsps.add(responses.POST, ENDPOINT, status=503)
    with pytest.raises(MoodleTransientError):
        client.get_course_groups(3)
    assert len(rsps.calls) == 1 and not waits


def test_a_read_timeout_on_a_create_is_an_unknown_outcome_never_retried(
    rsps: responses.RequestsMock,
) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UnknownOutcomeError) as caught:
        client.create_users([MENTEE])
    assert caught.value.wsfunction == "core_user_create_users"
    assert caught.value.operation == "core_user_create_users"
    assert len(rsps.calls) == 1 and not waits
    assert client.calls == {"core_user_create_users": 1}


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 504, "body": "gateway timeout"},
        {"status": 502, "body": "bad gateway"},
        {"status": 200, "body": '<b>Notice</b>: PHP said something [{"id": 4}]'},
        {"body": requests.exceptions.ConnectionError(ProtocolError("Connection aborted."))},
    ],
    ids=["504", "502", "non-json-200", "connection-aborted"],
)
def test_a_write_whose_outcome_is_unknown_is_not_retried(
    rsps: responses.RequestsMock, failure: dict[str, Any]
) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, **failure)
    with pytest.raises(UnknownOutcomeError) as caught:
        client.enrol_users([{"roleid": 5, "userid": 4, "courseid": 2}])
    assert caught.value.wsfunction == "enrol_manual_enrol_users"
    assert len(rsps.calls) == 1 and not waits


def test_a_write_that_surely_did_not_happen_is_retried(rsps: responses.RequestsMock) -> None:
    client, waits = make_client()
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ConnectTimeout("connect timed out"))
    rsps.add(responses.POST, ENDPOINT, status=503)
    add_fixture(rsps, "02_core_user_create_users.json")
    assert [u["id"] for u in client.create_users([MENTEE])] == [4, 5]
    assert len(waits) == 2
    # The connect timeout never reached Moodle, so it is not counted as a call.
    assert client.calls == {"core_user_create_users": 2}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_transient_and_never_counted_as_sent() -> None:
    client, waits = make_client(url=f"http://127.0.0.1:{_closed_port()}", retry_attempts=3)
    with pytest.raises(MoodleTransientError) as caught:
        client.create_users([MENTEE])  # a write: refused means it surely did not happen
    assert caught.value.errorcode == "connectionrefused"
    assert len(waits) == 2 and not client.calls


def test_no_secret_or_personal_data_in_logs_reprs_or_errors(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = make_client()
    rsps.add(responses.POST, ENDPOINT, status=503)
    add_fixture(rsps, "02_core_user_create_users.json")
    add_fixture(rsps, "59_ERROR_invalid_token.json")
    add_fixture(rsps, "03_core_user_create_users_ERROR_duplicate_username.json")
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ReadTimeout("read timed out"))
    client.create_users([MENTEE])
    errors: list[Exception] = []
    for _ in range(3):
        with pytest.raises((MoodleError, UnknownOutcomeError)) as caught:
            client.create_users([MENTEE])
        errors.append(caught.value)

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "core_user_create_users" in logged and "invalidtoken" in logged
    assert "attempt 1" in logged  # the retry is logged with its attempt number
    for secret in (TOKEN, MENTEE["email"], MENTEE["password"], MENTEE["lastname"]):
        assert secret not in logged
        assert secret not in repr(client) and secret not in str(client)
        assert all(secret not in str(e) and secret not in repr(e) for e in errors)
    assert "Invalid token - token not found" not in logged  # upstream messages stay out
    assert all(TOKEN not in c.request.url for c in rsps.calls)
