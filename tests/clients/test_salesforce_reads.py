"""Salesforce reads: streamed pages, the changed-since cursor, Id chunking, quoting."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

import pytest
import responses
from salesforce_helpers import DATA, INSTANCE, LIMIT_HEADER, fixture_json, make_client, soql_of

from connector.clients.salesforce import soql
from connector.errors import SalesforceSchemaError

QUERY = f"{DATA}/query/"
QUERY_ALL = f"{DATA}/queryAll/"
NEXT = INSTANCE + fixture_json("query-page1.json")["nextRecordsUrl"]
UTC = dt.UTC


@responses.activate
def test_query_streams_pages_following_the_relative_next_url() -> None:
    responses.get(QUERY, json=fixture_json("query-page1.json"), headers=LIMIT_HEADER)
    responses.get(NEXT, json=fixture_json("query-page2.json"), headers=LIMIT_HEADER)
    client, _ = make_client()

    records = client.query("SELECT Id FROM Contact")
    assert len(responses.calls) == 0  # nothing is sent before the first record is asked for
    first = next(records)
    second = next(records)
    # The whole first page is consumed, and the second page is still not fetched.
    assert len(responses.calls) == 1
    third = next(records)
    assert len(responses.calls) == 2
    assert list(records) == []

    assert [r["Id"] for r in (first, second, third)] == [
        "003D000000QV9n2IAD",
        "003D000000QV9n3IAD",
        "003D000000QV9n4IAD",
    ]
    assert "attributes" not in first
    assert first["Account"] == {"Name": "North Clinic"}  # nested attributes removed too
    assert soql_of(responses.calls[0].request.url) == "SELECT Id FROM Contact"
    assert responses.calls[1].request.url == NEXT
    assert client.calls == {"query": 1, "queryMore": 1}


@responses.activate
def test_include_deleted_uses_query_all() -> None:
    responses.get(QUERY_ALL, json={"totalSize": 0, "done": True, "records": []})
    client, _ = make_client()
    assert list(client.query("SELECT Id FROM Contact", include_deleted=True)) == []
    assert responses.calls[0].request.url.startswith(QUERY_ALL)
    assert client.calls["queryAll"] == 1


@responses.activate
def test_changed_since_soql_has_lookback_run_start_cap_and_order() -> None:
    responses.get(QUERY, json={"totalSize": 0, "done": True, "records": []})
    client, _ = make_client()
    since = dt.datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    run_start = dt.datetime(2026, 1, 10, 12, 30, 15, 500_000, tzinfo=UTC)
    region = "North 'East' \\ Region"
    list(
        client.changed_since(
            "Contact",
            ["Id", "Email"],
            since,
            lookback=dt.timedelta(minutes=5),
            run_start=run_start,
            where=f"Region__c = {soql.quote(region)}",
        )
    )
    assert soql_of(responses.calls[0].request.url) == (
        "SELECT Id, Email, SystemModstamp FROM Contact"
        " WHERE SystemModstamp >= 2026-01-10T08:55:00Z"
        " AND SystemModstamp <= 2026-01-10T12:30:15Z"
        " AND (Region__c = 'North \\'East\\' \\\\ Region')"
        " ORDER BY SystemModstamp, Id"
    )


@responses.activate
def test_changed_since_without_cursor_reads_everything_up_to_run_start() -> None:
    responses.get(QUERY, json={"totalSize": 0, "done": True, "records": []})
    client, _ = make_client()
    run_start = dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    list(
        client.changed_since("Contact", ["Id"], None, lookback=dt.timedelta(0), run_start=run_start)
    )
    assert soql_of(responses.calls[0].request.url) == (
        "SELECT Id, SystemModstamp FROM Contact"
        " WHERE SystemModstamp <= 2026-01-10T12:00:00Z ORDER BY SystemModstamp, Id"
    )


def test_changed_since_refuses_naive_datetimes() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError, match="naive"):
        client.changed_since(
            "Contact", ["Id"], None, lookback=dt.timedelta(0), run_start=dt.datetime(2026, 1, 1)
        )


class FakeContacts:
    """Answers a changed-since query from a record list, applying its SystemModstamp bounds."""

    def __init__(self, records: list[dict[str, str]]) -> None:
        self.records = records

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        text = soql_of(request.url)
        low = re.search(r"SystemModstamp >= (\S+)", text)
        high = re.search(r"SystemModstamp <= (\S+)", text)
        assert high and text.endswith("ORDER BY SystemModstamp, Id")

        def stamp(record: dict[str, str]) -> dt.datetime:
            # Salesforce compares at second precision.
            return soql.parse_datetime(record["SystemModstamp"]).replace(microsecond=0)

        hits = [
            r
            for r in self.records
            if (low is None or stamp(r) >= soql.parse_datetime(low.group(1)))
            and stamp(r) <= soql.parse_datetime(high.group(1))
        ]
        hits.sort(key=lambda r: (stamp(r), r["Id"]))
        body = {"totalSize": len(hits), "done": True, "records": hits}
        return 200, {}, json.dumps(body)


@pytest.mark.parametrize("lookback", [dt.timedelta(0), dt.timedelta(minutes=5)])
@responses.activate
def test_cursor_overlap_keeps_records_sharing_one_stamp(lookback: dt.timedelta) -> None:
    stamp = "2026-01-10T09:00:00.000+0000"
    fake = FakeContacts(
        [
            {"Id": "003D000000QV9n1IAD", "SystemModstamp": "2026-01-10T08:40:00.000+0000"},
            {"Id": "003D000000QV9n3IAD", "SystemModstamp": stamp},
            {"Id": "003D000000QV9n2IAD", "SystemModstamp": stamp},
        ]
    )
    responses.add_callback(responses.GET, QUERY, callback=fake)
    client, _ = make_client()
    run_start = dt.datetime(2026, 1, 10, 9, 30, tzinfo=UTC)

    first = list(
        client.changed_since("Contact", ["Id"], None, lookback=lookback, run_start=run_start)
    )
    assert [r["Id"] for r in first] == [
        "003D000000QV9n1IAD",
        "003D000000QV9n2IAD",  # same stamp: ordered by Id
        "003D000000QV9n3IAD",
    ]
    # The caller's new cursor: the last stamp seen (capped at run_start).
    cursor = min(soql.parse_datetime(first[-1]["SystemModstamp"]), run_start)

    # A third record lands on the very same stamp after the first run read.
    fake.records.append({"Id": "003D000000QV9n4IAD", "SystemModstamp": stamp})
    again = list(
        client.changed_since("Contact", ["Id"], cursor, lookback=lookback, run_start=run_start)
    )
    ids = [r["Id"] for r in again]
    # Nothing at the cursor's stamp is skipped, the late one included.
    assert ids == ["003D000000QV9n2IAD", "003D000000QV9n3IAD", "003D000000QV9n4IAD"]


def ids_in(url: str) -> list[str]:
    return re.findall(r"'([A-Za-z0-9]{18})'", soql_of(url))


@responses.activate
def test_get_by_ids_chunks_and_deduplicates() -> None:
    responses.get(QUERY, json={"totalSize": 0, "done": True, "records": []})
    client, _ = make_client()
    ids = [f"003D0000{n:06d}AAAA" for n in range(700)]
    assert list(client.get_by_ids("Contact", ["Id", "Email"], ids + ids[:5])) == []
    chunks = [ids_in(c.request.url) for c in responses.calls]
    assert [len(c) for c in chunks] == [300, 300, 100]
    assert [i for c in chunks for i in c] == ids
    for call in responses.calls:
        assert soql_of(call.request.url).startswith("SELECT Id, Email FROM Contact WHERE Id IN (")


@responses.activate
def test_get_by_ids_keeps_each_query_url_within_the_limit() -> None:
    responses.get(QUERY, json={"totalSize": 0, "done": True, "records": []})
    client, _ = make_client()
    fields = [f"Some_Rather_Long_Custom_Field_Name_{n:03d}__c" for n in range(200)]
    ids = [f"003D0000{n:06d}AAAA" for n in range(300)]
    list(client.get_by_ids("Contact", fields, ids))
    assert len(responses.calls) > 1  # the field list alone forces smaller chunks
    for call in responses.calls:
        assert len(quote_plus(soql_of(call.request.url))) <= 15_000
        assert len(call.request.url) < 16_000
    assert [i for c in responses.calls for i in ids_in(c.request.url)] == ids


@responses.activate
def test_get_by_ids_include_deleted_uses_query_all() -> None:
    responses.get(QUERY_ALL, json={"totalSize": 0, "done": True, "records": []})
    client, _ = make_client()
    list(client.get_by_ids("Contact", ["Id"], ["003D000000QV9n2IAD"], include_deleted=True))
    assert responses.calls[0].request.url.startswith(QUERY_ALL)


def test_get_by_ids_refuses_an_injected_id_before_sending() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError, match=r"id #1"):
        client.get_by_ids("Contact", ["Id"], ["003D000000QV9n2IAD", "003' OR Id != '"])
    assert client.calls == {}


@responses.activate
def test_get_deleted_sends_the_window_and_returns_deleted_records() -> None:
    responses.get(f"{DATA}/sobjects/Contact/deleted/", json=fixture_json("deleted.json"))
    client, _ = make_client()
    start = dt.datetime(2026, 1, 11, tzinfo=UTC)
    end = dt.datetime(2026, 1, 12, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    deleted = client.get_deleted("Contact", start, end)
    assert deleted == fixture_json("deleted.json")["deletedRecords"]
    query = parse_qs(urlparse(responses.calls[0].request.url).query)
    assert query == {"start": ["2026-01-11T00:00:00+00:00"], "end": ["2026-01-12T00:00:00+00:00"]}
    assert client.calls["getDeleted"] == 1


@responses.activate
def test_describe_returns_the_object_description() -> None:
    responses.get(f"{DATA}/sobjects/Contact/describe", json=fixture_json("describe-contact.json"))
    client, _ = make_client()
    described = client.describe("Contact")
    assert [f["name"] for f in described["fields"]] == ["Id", "Email", "Member_Status__c"]
    assert client.calls["describe"] == 1


@responses.activate
def test_unknown_field_is_a_schema_error_and_not_retried() -> None:
    responses.get(QUERY, json=fixture_json("error-invalid-field.json"), status=400)
    client, sleeps = make_client()
    with pytest.raises(SalesforceSchemaError) as info:
        list(client.query("SELECT Id, Nickname__c FROM Contact"))
    assert info.value.error_code == "INVALID_FIELD"
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_describe_of_an_unknown_object_is_a_schema_error() -> None:
    responses.get(
        f"{DATA}/sobjects/Mentorship_Match__c/describe",
        json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
        status=404,
    )
    client, sleeps = make_client()
    with pytest.raises(SalesforceSchemaError) as info:
        client.describe("Mentorship_Match__c")
    assert info.value.error_code == "NOT_FOUND"
    assert sleeps == []
