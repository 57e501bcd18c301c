"""sObject Collections writes: at most 200 per call, allOrNone false, one result per record."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import requests
import responses
from salesforce_helpers import DATA, fixture_json, make_client

from connector.errors import SalesforceError, SalesforceTransientError, UnknownOutcomeError

COLLECTIONS = f"{DATA}/composite/sobjects"
UPSERT_MEETINGS = f"{COLLECTIONS}/Mentoring_Meeting__c/External_Id__c"


def body_of(call: responses.Call) -> dict[str, Any]:
    return json.loads(call.request.body)


@responses.activate
def test_upsert_maps_mixed_results_in_order() -> None:
    responses.patch(UPSERT_MEETINGS, json=fixture_json("collections-upsert-mixed.json"))
    client, _ = make_client()
    records = [
        {
            "External_Id__c": f"a02D000000Mtch1IAC:GMP-2026-M{n}",
            "Meeting_Number__c": n,
            "Completed_On__c": dt.date(2026, 1, n),
        }
        for n in (1, 2, 3)
    ]
    results = client.collection_upsert("Mentoring_Meeting__c", "External_Id__c", records)

    assert [(r.id, r.success, r.created, r.error_code) for r in results] == [
        ("a03D000000AbCdEIAV", True, True, ""),
        (None, False, None, "DUPLICATE_VALUE"),
        ("a03D000000AbCdGIAV", True, False, ""),
    ]
    assert results[1].errors[0]["fields"] == ["External_Id__c"]
    # The upstream message may quote data: it stays out of the repr.
    assert "duplicate value found" not in repr(results[1])
    assert "DUPLICATE_VALUE" in repr(results[1])

    sent = body_of(responses.calls[0])
    assert sent["allOrNone"] is False
    assert sent["records"][0] == {
        "attributes": {"type": "Mentoring_Meeting__c"},
        "External_Id__c": "a02D000000Mtch1IAC:GMP-2026-M1",
        "Meeting_Number__c": 1,
        "Completed_On__c": "2026-01-01",
    }
    assert responses.calls[0].request.method == "PATCH"
    assert client.calls == {"collections.upsert": 1}


@responses.activate
def test_create_posts_and_reports_per_record_errors() -> None:
    responses.post(COLLECTIONS, json=fixture_json("collections-create-mixed.json"))
    client, _ = make_client()
    results = client.collection_create("Contact", [{"LastName": "A"}, {"FirstName": "B"}])
    assert [(r.success, r.created, r.error_code) for r in results] == [
        (True, True, ""),
        (False, None, "REQUIRED_FIELD_MISSING"),
    ]
    assert body_of(responses.calls[0])["records"][1] == {
        "attributes": {"type": "Contact"},
        "FirstName": "B",
    }


def echo_update(request: Any) -> tuple[int, dict[str, str], str]:
    """Answer an update collection with one success per record, echoing the Ids."""
    records = json.loads(request.body)["records"]
    answer = [{"id": r["Id"], "success": True, "errors": []} for r in records]
    return 200, {"Sforce-Limit-Info": "api-usage=40/15000"}, json.dumps(answer)


@responses.activate
def test_450_records_go_in_calls_of_200_200_50_with_results_in_order() -> None:
    responses.add_callback(responses.PATCH, COLLECTIONS, callback=echo_update)
    client, _ = make_client()
    ids = [f"003D0000{n:06d}AAAA" for n in range(450)]
    results = client.collection_update("Contact", [{"Id": i, "LMS_User_Id__c": 7} for i in ids])
    assert [len(body_of(c)["records"]) for c in responses.calls] == [200, 200, 50]
    assert all(body_of(c)["allOrNone"] is False for c in responses.calls)
    assert [r.id for r in results] == ids
    assert client.calls["collections.update"] == 3
    assert client.budget is not None and client.budget.used == 40


def test_update_without_a_valid_id_is_refused_before_sending() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError, match=r"record #1"):
        client.collection_update("Contact", [{"Id": "003D000000QV9n2IAD"}, {"LastName": "x"}])
    assert client.calls == {}


def test_upsert_without_the_external_id_is_refused() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError, match=r"record #0: no External_Id__c"):
        client.collection_upsert("Mentoring_Meeting__c", "External_Id__c", [{"Hours__c": 1}])


def test_empty_write_sends_nothing() -> None:
    client, _ = make_client()
    assert client.collection_update("Contact", []) == []
    assert client.calls == {}


def echo_create(request: Any) -> tuple[int, dict[str, str], str]:
    """Answer a create collection with one created record per input record."""
    records = json.loads(request.body)["records"]
    answer = [
        {"id": f"003D0000{n:06d}ZZZZ", "success": True, "errors": []} for n in range(len(records))
    ]
    return 200, {}, json.dumps(answer)


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError("Connection aborted."),
    ],
    ids=["read-timeout", "connection-lost"],
)
@responses.activate
def test_create_that_may_have_happened_is_unknown_outcome_and_not_retried(
    failure: Exception,
) -> None:
    responses.post(COLLECTIONS, body=failure)
    responses.add_callback(responses.POST, COLLECTIONS, callback=echo_create)
    client, sleeps = make_client()
    with pytest.raises(UnknownOutcomeError) as info:
        client.collection_create("Contact", [{"LastName": "A"}])
    assert info.value.operation == "collections.create"
    assert len(responses.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [502, 504])
@responses.activate
def test_gateway_error_on_a_create_is_unknown_outcome_and_not_retried(status: int) -> None:
    # The gateway may have passed the create on before failing: sending it again could
    # create every record twice.
    responses.post(COLLECTIONS, body="<html>Bad Gateway</html>", status=status)
    responses.add_callback(responses.POST, COLLECTIONS, callback=echo_create)
    client, sleeps = make_client()
    with pytest.raises(UnknownOutcomeError, match=f"HTTP {status}") as info:
        client.collection_create("Contact", [{"LastName": "A"}])
    assert info.value.operation == "collections.create"
    assert client.calls["collections.create"] == 1
    assert sleeps == []


@responses.activate
def test_non_json_answer_to_a_create_is_unknown_outcome() -> None:
    responses.post(COLLECTIONS, body="<html>proxy</html>", status=200, content_type="text/html")
    client, sleeps = make_client()
    with pytest.raises(UnknownOutcomeError):
        client.collection_create("Contact", [{"LastName": "A"}])
    assert len(responses.calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, "error-server-unavailable.json"),
        (500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "couldn't be completed"}]),
        (400, "error-unable-to-lock-row.json"),
    ],
)
@responses.activate
def test_create_refused_before_processing_is_retried(status: int, body: object) -> None:
    # Salesforce did not do the work (unavailable, rolled back, row locked): safe to repeat.
    content = fixture_json(body) if isinstance(body, str) else body
    responses.post(COLLECTIONS, json=content, status=status)
    responses.add_callback(responses.POST, COLLECTIONS, callback=echo_create)
    client, sleeps = make_client()
    results = client.collection_create("Contact", [{"LastName": "A"}])
    assert results[0].success and results[0].created
    assert client.calls["collections.create"] == 2
    assert len(sleeps) == 1


@responses.activate
def test_update_is_idempotent_so_timeouts_and_gateway_errors_are_retried() -> None:
    responses.patch(COLLECTIONS, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.patch(COLLECTIONS, body="<html>Gateway Timeout</html>", status=504)
    responses.patch(COLLECTIONS, body=requests.exceptions.ConnectionError("Connection aborted."))
    responses.add_callback(responses.PATCH, COLLECTIONS, callback=echo_update)
    client, sleeps = make_client()  # 4 attempts
    results = client.collection_update("Contact", [{"Id": "003D000000QV9n2IAD"}])
    assert [r.id for r in results] == ["003D000000QV9n2IAD"]
    assert client.calls["collections.update"] == 4
    assert len(sleeps) == 3


@responses.activate
def test_upsert_by_external_id_is_retried_after_a_read_timeout() -> None:
    responses.patch(UPSERT_MEETINGS, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.patch(UPSERT_MEETINGS, json=fixture_json("collections-upsert-mixed.json"))
    client, sleeps = make_client()
    records = [{"External_Id__c": f"a02D000000Mtch1IAC:GMP-2026-M{n}"} for n in (1, 2, 3)]
    results = client.collection_upsert("Mentoring_Meeting__c", "External_Id__c", records)
    assert len(results) == 3
    assert client.calls["collections.upsert"] == 2
    assert len(sleeps) == 1


@responses.activate
def test_write_that_never_connected_is_retried() -> None:
    responses.patch(COLLECTIONS, body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.add_callback(responses.PATCH, COLLECTIONS, callback=echo_update)
    client, sleeps = make_client()
    results = client.collection_update("Contact", [{"Id": "003D000000QV9n2IAD"}])
    assert results[0].success
    assert len(responses.calls) == 2
    assert len(sleeps) == 1


@responses.activate
def test_create_failure_mid_batch_reports_the_completed_results() -> None:
    responses.add_callback(responses.POST, COLLECTIONS, callback=echo_create)
    responses.post(COLLECTIONS, body="<html>Gateway Timeout</html>", status=504)
    client, _ = make_client()
    with pytest.raises(UnknownOutcomeError) as info:
        client.collection_create("Contact", [{"LastName": f"L{n}"} for n in range(250)])
    completed = info.value.completed_results  # type: ignore[attr-defined]
    assert len(completed) == 200 and all(r.success for r in completed)
    assert client.calls["collections.create"] == 2


@responses.activate
def test_update_failure_mid_batch_reports_the_completed_results() -> None:
    responses.add_callback(responses.PATCH, COLLECTIONS, callback=echo_update)
    responses.patch(
        COLLECTIONS, json=[{"errorCode": "INSUFFICIENT_ACCESS", "message": "x"}], status=403
    )
    client, _ = make_client()
    ids = [f"003D0000{n:06d}AAAA" for n in range(250)]
    with pytest.raises(SalesforceError) as info:
        client.collection_update("Contact", [{"Id": i} for i in ids])
    completed = info.value.completed_results  # type: ignore[attr-defined]
    assert [r.id for r in completed] == ids[:200]


@responses.activate
def test_server_error_on_a_write_is_retried_then_raised() -> None:
    responses.patch(UPSERT_MEETINGS, json=fixture_json("error-server-unavailable.json"), status=503)
    client, sleeps = make_client()
    with pytest.raises(SalesforceTransientError):
        client.collection_upsert(
            "Mentoring_Meeting__c", "External_Id__c", [{"External_Id__c": "x"}]
        )
    assert client.calls["collections.upsert"] == client.settings.retry_attempts
    assert len(sleeps) == client.settings.retry_attempts - 1
