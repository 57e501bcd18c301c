"""Salesforce errors keyed on errorCode, retries, the API budget, and no secrets in logs."""

from __future__ import annotations

import logging
import socket

import pytest
import requests
import responses
from salesforce_helpers import (
    CONSUMER_SECRET,
    DATA,
    OAUTH_TOKEN,
    PASSWORD,
    SECURITY_TOKEN,
    SESSION_ID,
    TOKEN_URL,
    fixture_json,
    make_client,
    oauth_password_settings,
    settings,
)

from connector.clients.salesforce.client import ApiBudget, classify
from connector.errors import (
    Action,
    SalesforceAuthError,
    SalesforceBudgetError,
    SalesforceError,
    SalesforceRecordError,
    SalesforceSchemaError,
    SalesforceTransientError,
)

QUERY = f"{DATA}/query/"
LIMITS = f"{DATA}/limits/"
EMPTY = {"totalSize": 0, "done": True, "records": []}


@responses.activate
def test_503_503_200_is_retried_to_success_with_backoff() -> None:
    responses.get(QUERY, json=fixture_json("error-server-unavailable.json"), status=503)
    responses.get(QUERY, body="<html>Service Unavailable</html>", status=503)
    responses.get(QUERY, json=fixture_json("query-page2.json"))
    client, sleeps = make_client()
    records = list(client.query("SELECT Id FROM Contact"))
    assert [r["Id"] for r in records] == ["003D000000QV9n4IAD"]
    assert client.calls["query"] == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 30 for s in sleeps)


@responses.activate
def test_unable_to_lock_row_is_retried() -> None:
    responses.get(QUERY, json=fixture_json("error-unable-to-lock-row.json"), status=400)
    responses.get(QUERY, json=EMPTY)
    client, sleeps = make_client()
    assert list(client.query("SELECT Id FROM Contact")) == []
    assert client.calls["query"] == 2
    assert len(sleeps) == 1


@responses.activate
def test_concurrent_request_limit_is_retried() -> None:
    responses.get(QUERY, json=fixture_json("error-request-limit-concurrent.json"), status=403)
    responses.get(QUERY, json=EMPTY)
    client, _ = make_client()
    assert list(client.query("SELECT Id FROM Contact")) == []
    assert client.calls["query"] == 2


@responses.activate
def test_daily_request_limit_stops_without_retry() -> None:
    responses.get(QUERY, json=fixture_json("error-request-limit-daily.json"), status=403)
    client, sleeps = make_client()
    with pytest.raises(SalesforceBudgetError) as info:
        list(client.query("SELECT Id FROM Contact"))
    assert info.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert info.value.action is Action.STOP
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_retries_are_capped_by_attempts() -> None:
    responses.get(QUERY, json=fixture_json("error-server-unavailable.json"), status=503)
    client, sleeps = make_client(settings(retry_attempts=3))
    with pytest.raises(SalesforceTransientError) as info:
        list(client.query("SELECT Id FROM Contact"))
    assert info.value.status == 503
    assert client.calls["query"] == 3
    assert len(sleeps) == 2


@responses.activate
def test_retries_stop_within_the_total_time() -> None:
    # No wait fits in a budget this small, so the first failure is the last attempt.
    responses.get(QUERY, json=fixture_json("error-server-unavailable.json"), status=503)
    client, sleeps = make_client(settings(retry_attempts=10, retry_max_seconds=1e-9))
    with pytest.raises(SalesforceTransientError):
        list(client.query("SELECT Id FROM Contact"))
    assert client.calls["query"] == 1
    assert sleeps == []


@responses.activate
def test_read_timeout_and_dropped_connection_on_a_read_are_retried() -> None:
    responses.get(QUERY, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(QUERY, body=requests.exceptions.ConnectionError("Connection aborted."))
    responses.get(QUERY, json=EMPTY)
    client, _ = make_client()
    assert list(client.query("SELECT Id FROM Contact")) == []
    assert client.calls["query"] == 3


@responses.activate
def test_non_json_answer_from_a_proxy_is_retried() -> None:
    responses.get(QUERY, body="<html>gateway</html>", status=200, content_type="text/html")
    responses.get(QUERY, json=EMPTY)
    client, _ = make_client()
    assert list(client.query("SELECT Id FROM Contact")) == []
    assert client.calls["query"] == 2


def test_connection_refused_on_a_write_is_retried_as_never_sent() -> None:
    # A real refused connection on loopback: nothing was sent, so even a create may repeat.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client, sleeps = make_client(
        settings(instance_url=f"https://127.0.0.1:{port}", retry_attempts=2, connect_timeout=2.0)
    )
    with pytest.raises(SalesforceTransientError):
        client.collection_create("Contact", [{"LastName": "A"}])
    assert client.calls["collections.create"] == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, "error-invalid-field.json", SalesforceSchemaError),
        (
            400,
            [{"errorCode": "INVALID_TYPE", "message": "sObject type 'X' is not supported"}],
            SalesforceSchemaError,
        ),
        (
            400,
            [{"errorCode": "MALFORMED_QUERY", "message": "unexpected token"}],
            SalesforceSchemaError,
        ),
        (400, [{"errorCode": "DUPLICATE_VALUE", "message": "duplicate"}], SalesforceRecordError),
        (400, [{"errorCode": "REQUIRED_FIELD_MISSING", "message": "x"}], SalesforceRecordError),
        (401, "error-invalid-session.json", SalesforceAuthError),
        (403, "error-request-limit-daily.json", SalesforceBudgetError),
        (403, "error-request-limit-concurrent.json", SalesforceTransientError),
        (400, "error-unable-to-lock-row.json", SalesforceTransientError),
        (500, "<html>oops</html>", SalesforceTransientError),
        (403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "x"}], SalesforceError),
    ],
)
def test_errors_are_classified_on_error_code(status: int, body: object, expected: type) -> None:
    content = fixture_json(body) if isinstance(body, str) and body.endswith(".json") else body
    error = classify("query", status, content)
    assert type(error) is expected
    assert error.status == status


def test_upstream_message_stays_out_of_the_error_text() -> None:
    error = classify(
        "collections.update",
        400,
        [
            {
                "errorCode": "DUPLICATE_VALUE",
                "message": "dup of ada@example.org",
                "fields": ["Email"],
            }
        ],
    )
    assert "ada@example.org" not in str(error)
    assert "DUPLICATE_VALUE" in str(error) and "Email" in str(error)
    assert error.upstream_message == "dup of ada@example.org"


@responses.activate
def test_limit_info_is_tracked_from_every_response() -> None:
    responses.get(QUERY, json=EMPTY, headers={"Sforce-Limit-Info": "api-usage=18/15000"})
    responses.get(
        QUERY,
        json=fixture_json("error-invalid-field.json"),
        status=400,
        headers={"Sforce-Limit-Info": "api-usage=19/15000"},
    )
    client, _ = make_client()
    list(client.query("SELECT Id FROM Contact"))
    assert client.budget == ApiBudget(used=18, limit=15000)
    with pytest.raises(SalesforceSchemaError):
        list(client.query("SELECT Id, Nope__c FROM Contact"))
    assert client.budget == ApiBudget(used=19, limit=15000)  # error answers count too
    assert client.check_budget() == ApiBudget(used=19, limit=15000)
    assert client.calls["limits"] == 0  # the header reading was enough


@responses.activate
def test_check_budget_refuses_above_the_configured_share() -> None:
    responses.get(QUERY, json=EMPTY, headers={"Sforce-Limit-Info": "api-usage=12001/15000"})
    client, _ = make_client(settings(max_budget_share=0.8))
    list(client.query("SELECT Id FROM Contact"))
    with pytest.raises(SalesforceBudgetError, match="12001/15000"):
        client.check_budget()


@responses.activate
def test_check_budget_reads_limits_when_nothing_was_seen_yet() -> None:
    responses.get(LIMITS, json={"DailyApiRequests": {"Max": 15000, "Remaining": 1000}})
    client, _ = make_client(settings(max_budget_share=0.8))
    with pytest.raises(SalesforceBudgetError):
        client.check_budget()
    assert client.budget == ApiBudget(used=14000, limit=15000)
    assert client.calls["limits"] == 1


@responses.activate
def test_check_budget_allows_below_the_share() -> None:
    responses.get(LIMITS, json=fixture_json("limits.json"))
    client, _ = make_client()
    budget = client.check_budget()
    assert budget.used == 18 and budget.limit == 15000
    assert budget.share == pytest.approx(18 / 15000)


@responses.activate
def test_secrets_stay_out_of_logs_and_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.post(TOKEN_URL, json=fixture_json("oauth-token.json"))
    responses.get(QUERY, json=fixture_json("error-invalid-session.json"), status=401)
    responses.get(QUERY, json=fixture_json("query-page1.json"))
    responses.get(DATA + "/query/01gD0000002HU6KIAW-2000", json=fixture_json("query-page2.json"))
    responses.patch(
        f"{DATA}/composite/sobjects", json=fixture_json("collections-create-mixed.json")
    )
    sf_settings = oauth_password_settings()
    client, _ = make_client(sf_settings)
    records = list(client.query("SELECT Id, Email FROM Contact WHERE Email = 'ada@example.org'"))
    results = client.collection_update(
        "Contact", [{"Id": r["Id"], "Email": "ada@example.org"} for r in records[:2]]
    )
    with pytest.raises(SalesforceError) as info:
        classify_and_raise()

    secrets = [PASSWORD, SECURITY_TOKEN, CONSUMER_SECRET, OAUTH_TOKEN, SESSION_ID]
    private_data = ["ada@example.org", "Ada", "North Clinic", "Required fields are missing"]
    texts = [
        caplog.text,
        repr(client),
        repr(sf_settings),
        repr(results),
        str(info.value),
    ]
    for text in texts:
        for value in secrets + private_data:
            assert value not in text, f"{value!r} leaked"
    # The log does say what happened, by operation and code.
    assert "INVALID_SESSION_ID" in caplog.text
    assert "collections.update" in caplog.text


def classify_and_raise() -> None:
    raise classify("login", 400, [{"errorCode": "INVALID_LOGIN", "message": PASSWORD}])
