"""The Salesforce sandbox's writes, collections, describe, getDeleted, budget and faults."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from sandbox.salesforce import SalesforceSandbox

T0 = dt.datetime(2026, 3, 2, 14, 0, 0, tzinfo=dt.UTC)


class Clock:
    """A settable clock, so timestamps are asserted without waiting."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sf(tmp_path, clock):
    sandbox = SalesforceSandbox(tmp_path / "sf", timeout_seconds=1.0)
    sandbox.clock = clock
    sandbox.start()
    yield sandbox
    sandbox.stop()


def stamp(clock: Clock) -> str:
    return clock.now.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


# -- single records -------------------------------------------------------------------------


def test_create_get_update_delete_maintain_system_fields(sf, rest, clock):
    created = rest.post("sobjects/Contact", json={"LastName": "Lovelace", "Email": "a@x.org"})
    assert created.status_code == 201
    body = created.json()
    assert body == {"id": body["id"], "success": True, "errors": []}
    contact_id = body["id"]
    assert contact_id.startswith("003") and len(contact_id) == 18

    record = rest.get(f"sobjects/Contact/{contact_id}").json()
    assert record["SystemModstamp"] == record["CreatedDate"] == stamp(clock)
    assert record["IsDeleted"] is False and record["FirstName"] is None

    clock.advance(minutes=5)
    updated = rest.patch(f"sobjects/Contact/{contact_id}", json={"Member_Status__c": "Grace"})
    assert updated.status_code == 204 and updated.content == b""
    record = rest.get(f"sobjects/Contact/{contact_id}", params={"fields": "Member_Status__c"})
    assert record.json()["Member_Status__c"] == "Grace"
    assert set(record.json()) == {"attributes", "Member_Status__c"}
    stored = sf.store.get("Contact", contact_id)
    assert stored["SystemModstamp"] == stored["LastModifiedDate"] == stamp(clock)
    assert stored["CreatedDate"] == "2026-03-02T14:00:00.000+0000"

    clock.advance(minutes=1)
    assert rest.delete(f"sobjects/Contact/{contact_id}").status_code == 204
    gone = rest.get(f"sobjects/Contact/{contact_id}")
    assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert sf.store.get("Contact", contact_id)["SystemModstamp"] == stamp(clock)
    assert rest.get("sobjects/Contact/0035e0000000zzzAAA").status_code == 404
    assert sf.calls["sobject.create"] == 1 and sf.calls["sobject.delete"] == 1


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"LastName": "X", "Nickname__c": "x"}, "INVALID_FIELD", ["Nickname__c"]),
        ({"FirstName": "Ada"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
        ({"LastName": "X" * 81}, "STRING_TOO_LONG", ["LastName"]),
        ({"LastName": "X", "Email": "not an email"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        (
            {"LastName": "X", "SystemModstamp": "2026-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["SystemModstamp"],
        ),
        (
            {"LastName": "X", "LMS_Synced_At__c": "yesterday"},
            "JSON_PARSER_ERROR",
            ["LMS_Synced_At__c"],
        ),
        ({"LastName": "X", "Id": "0035e0000000001AAA"}, "INVALID_FIELD", []),
    ],
)
def test_create_validates_fields(rest, body, code, fields):
    response = rest.post("sobjects/Contact", json=body)
    assert response.status_code == 400
    error = response.json()[0]
    assert error["errorCode"] == code
    assert error["fields"] == fields


def test_lookups_must_point_at_live_records_of_the_right_object(sf, rest):
    contact = sf.store.create("Contact", {"LastName": "Mentor"})
    ok = rest.post("sobjects/Mentorship_Match__c", json={"Mentor__c": contact})
    assert ok.status_code == 201
    wrong_type = rest.post("sobjects/Mentorship_Match__c", json={"Mentor__c": ok.json()["id"]})
    assert wrong_type.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    sf.store.delete("Contact", contact)
    deleted = rest.post("sobjects/Mentorship_Match__c", json={"Mentee__c": contact})
    assert deleted.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    malformed = rest.post("sobjects/Mentorship_Match__c", json={"Mentee__c": "nope"})
    assert malformed.json()[0]["errorCode"] == "MALFORMED_ID"


def test_empty_text_is_stored_as_null(sf, rest):
    contact = rest.post("sobjects/Contact", json={"LastName": "X", "FirstName": ""}).json()["id"]
    assert sf.store.get("Contact", contact)["FirstName"] is None


def test_upsert_by_external_id_created_updated_and_several_matches(sf, rest):
    match = sf.store.create("Mentorship_Match__c", {"Status__c": "Active"})
    path = "sobjects/Mentoring_Meeting__c/External_Id__c/M-1"
    created = rest.patch(path, json={"Match__c": match, "Hours__c": 1})
    assert created.status_code == 201
    assert created.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": True,
    }
    updated = rest.patch(path, json={"Hours__c": 1.5})
    assert updated.status_code == 200
    assert updated.json()["created"] is False and updated.json()["id"] == created.json()["id"]
    assert sf.store.get("Mentoring_Meeting__c", created.json()["id"])["Hours__c"] == 1.5

    # LMS_User_Id__c is a non-unique external id: two Contacts may hold the same value.
    first = sf.store.create("Contact", {"LastName": "A", "LMS_User_Id__c": "42"})
    second = sf.store.create("Contact", {"LastName": "B", "LMS_User_Id__c": "42"})
    several = rest.patch("sobjects/Contact/LMS_User_Id__c/42", json={"Region__c": "West"})
    assert several.status_code == 300
    assert sorted(several.json()) == sorted(
        f"/services/data/v59.0/sobjects/Contact/{i}" for i in (first, second)
    )
    not_external = rest.patch("sobjects/Contact/Email/a@x.org", json={"LastName": "C"})
    assert not_external.status_code == 404
    assert sf.calls["sobject.upsert"] == 4


def test_unique_external_id_refuses_a_duplicate(sf, rest):
    match = sf.store.create("Mentorship_Match__c", {})
    sf.store.create("Mentoring_Meeting__c", {"Match__c": match, "External_Id__c": "K"})
    response = rest.post(
        "sobjects/Mentoring_Meeting__c", json={"Match__c": match, "External_Id__c": "K"}
    )
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    # The metadata makes External_Id__c case-sensitive (deploy/salesforce): "k" is another key.
    other = rest.post(
        "sobjects/Mentoring_Meeting__c", json={"Match__c": match, "External_Id__c": "k"}
    )
    assert other.status_code == 201


# -- collections ----------------------------------------------------------------------------


def test_collection_create_reports_each_record_in_order(sf, rest):
    response = rest.post(
        "composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "LastName": "One"},
                {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
                {"attributes": {"type": "Contact"}, "LastName": "Three"},
            ],
        },
    )
    assert response.status_code == 200
    first, second, third = response.json()
    assert first["success"] and third["success"] and "created" not in first
    assert second == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    assert sf.store.get("Contact", third["id"])["LastName"] == "Three"
    assert sf.store.count("Contact") == 2


def test_collection_update_with_unknown_and_bad_records(sf, rest, clock):
    a = sf.store.create("Contact", {"LastName": "A"})
    b = sf.store.create("Contact", {"LastName": "B"})
    clock.advance(seconds=30)
    response = rest.patch(
        "composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "id": a, "LMS_Sync_Status__c": "Synced"},
                {"attributes": {"type": "Contact"}, "id": b, "LMS_Sync_Error__c": "E" * 300},
                {"attributes": {"type": "Contact"}, "Id": "0035e000000ZZZZAAA", "Region__c": "X"},
                {"attributes": {"type": "Contact"}, "Region__c": "no id"},
            ],
        },
    )
    results = response.json()
    assert [r["success"] for r in results] == [True, False, False, False]
    assert results[1]["id"] == b and results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert results[3]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert sf.store.get("Contact", a)["LMS_Sync_Status__c"] == "Synced"
    assert sf.store.get("Contact", a)["SystemModstamp"] == stamp(clock)
    assert sf.store.get("Contact", b)["SystemModstamp"] == "2026-03-02T14:00:00.000+0000"


def test_collection_upsert_mixed_results(sf, rest):
    match = sf.store.create("Mentorship_Match__c", {"Status__c": "Active"})
    existing = sf.store.create(
        "Mentoring_Meeting__c", {"Match__c": match, "External_Id__c": "M-2", "Hours__c": 1}
    )
    records = [
        {
            "attributes": {"type": "Mentoring_Meeting__c"},
            "External_Id__c": "M-1",
            "Match__c": match,
            "Meeting_Number__c": 1,
        },
        {"attributes": {"type": "Mentoring_Meeting__c"}, "External_Id__c": "M-2", "Hours__c": 2},
        {"attributes": {"type": "Mentoring_Meeting__c"}, "External_Id__c": "M-3"},  # no Match__c
        {"attributes": {"type": "Mentoring_Meeting__c"}, "Hours__c": 1},  # no external id
    ]
    response = rest.patch(
        "composite/sobjects/Mentoring_Meeting__c/External_Id__c",
        json={"allOrNone": False, "records": records},
    )
    created, updated, missing, no_key = response.json()
    assert created["success"] and created["created"] is True
    assert updated == {"id": existing, "success": True, "errors": [], "created": False}
    assert missing["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert no_key["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert sf.store.get("Mentoring_Meeting__c", existing)["Hours__c"] == 2.0
    assert sf.calls["collections.upsert"] == 1


def test_collection_upsert_refuses_the_same_key_twice_in_one_call(sf, rest):
    match = sf.store.create("Mentorship_Match__c", {})
    records = [
        {"attributes": {"type": "Mentoring_Meeting__c"}, "External_Id__c": key, "Match__c": match}
        for key in ("D-1", "d-1", "D-2")
    ]
    response = rest.patch(
        "composite/sobjects/Mentoring_Meeting__c/External_Id__c",
        json={"allOrNone": False, "records": records},
    )
    codes = [r["errors"][0]["statusCode"] if r["errors"] else "" for r in response.json()]
    assert codes == ["DUPLICATE_EXTERNAL_ID", "DUPLICATE_EXTERNAL_ID", ""]


def test_all_or_none_rolls_everything_back(sf, rest):
    sf.outbound.url = "http://127.0.0.1:9/unused"
    sf.outbound.pause()
    a = sf.store.create("Contact", {"LastName": "A", "Email": "a@x.org"}, notify=False)
    response = rest.patch(
        "composite/sobjects",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Contact"}, "id": a, "Email": "new@x.org"},
                {"attributes": {"type": "Contact"}, "id": a, "Bogus__c": 1},
            ],
        },
    )
    first, second = response.json()
    assert response.status_code == 200
    assert first["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert second["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert sf.store.get("Contact", a)["Email"] == "a@x.org"
    assert sf.outbound.pending == 0  # a rolled-back change sends no Outbound Message

    ok = rest.post(
        "composite/sobjects",
        json={"allOrNone": True, "records": [{"attributes": {"type": "Contact"}, "LastName": "B"}]},
    )
    assert ok.json()[0]["success"] is True
    assert sf.store.count("Contact") == 2


def test_collections_take_at_most_200_records(rest):
    records = [{"attributes": {"type": "Contact"}, "LastName": str(i)} for i in range(201)]
    response = rest.post("composite/sobjects", json={"allOrNone": False, "records": records})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_collection_without_a_record_type_is_refused(rest):
    response = rest.post("composite/sobjects", json={"records": [{"LastName": "X"}]})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_TYPE"


# -- describe, getDeleted, limits -----------------------------------------------------------


def test_describe_lists_the_fields_with_their_attributes(rest):
    body = rest.get("sobjects/Mentoring_Meeting__c/describe").json()
    fields = {f["name"]: f for f in body["fields"]}
    assert body["keyPrefix"] == "a02"
    assert fields["External_Id__c"]["externalId"] is True
    assert fields["External_Id__c"]["unique"] is True
    assert fields["External_Id__c"]["length"] == 80
    assert fields["Match__c"]["type"] == "reference"
    assert fields["Match__c"]["referenceTo"] == ["Mentorship_Match__c"]
    assert fields["SystemModstamp"]["updateable"] is False
    assert fields["Hours__c"]["nillable"] is True
    contact = rest.get("sobjects/Contact/describe").json()
    assert {"Member_Status__c", "Mentorship_Role__c", "LMS_Synced_At__c", "MasterRecordId"} <= {
        f["name"] for f in contact["fields"]
    }
    assert rest.get("sobjects/Account/describe").status_code == 404


def test_get_deleted_lists_deletions_in_the_window(sf, rest, clock):
    early, late, _alive = (sf.store.create("Contact", {"LastName": n}) for n in "ELA")
    clock.advance(minutes=10)
    sf.store.delete("Contact", early)
    clock.advance(minutes=10)
    sf.store.delete("Contact", late)
    clock.advance(minutes=1)

    def deleted(start: dt.datetime, end: dt.datetime) -> requests.Response:
        return rest.get(
            "sobjects/Contact/deleted/",
            params={"start": start.isoformat(), "end": end.isoformat()},
        )

    body = deleted(T0, clock.now).json()
    assert body["deletedRecords"] == [
        {"id": early, "deletedDate": "2026-03-02T14:10:00.000+0000"},
        {"id": late, "deletedDate": "2026-03-02T14:20:00.000+0000"},
    ]
    assert body["latestDateCovered"] == stamp(clock)
    assert body["earliestDateAvailable"] < "2026-03-02"
    window = deleted(T0 + dt.timedelta(minutes=15), clock.now).json()
    assert [r["id"] for r in window["deletedRecords"]] == [late]
    # An end in the future is covered only up to now.
    future = deleted(T0, clock.now + dt.timedelta(days=1)).json()
    assert future["latestDateCovered"] == stamp(clock)
    too_early = deleted(T0 - dt.timedelta(days=40), clock.now)
    assert too_early.status_code == 400
    assert too_early.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert sf.calls["getDeleted"] == 4


def test_daily_budget_runs_out(sf, rest):
    sf.daily_api_limit = 3
    first = rest.get("limits")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/3"
    assert first.json()["DailyApiRequests"] == {"Max": 3, "Remaining": 2}
    rest.get("limits")
    third = rest.query("SELECT Id FROM Contact")
    assert third.status_code == 200 and third.headers["Sforce-Limit-Info"] == "api-usage=3/3"
    refused = rest.query("SELECT Id FROM Contact")
    assert refused.status_code == 403
    assert refused.json() == [
        {
            "message": "TotalRequests Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
            "fields": [],
        }
    ]
    assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"


def test_budget_resets_the_next_day(sf, rest, clock):
    sf.daily_api_limit = 1
    rest.get("limits")
    assert rest.get("limits").status_code == 403
    clock.advance(days=1)
    assert rest.get("limits").headers["Sforce-Limit-Info"] == "api-usage=1/1"


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("http503", 503, "SERVER_UNAVAILABLE"),
        ("lock_row", 400, "UNABLE_TO_LOCK_ROW"),
        ("invalid_session", 401, "INVALID_SESSION_ID"),
        ("budget_exhausted", 403, "REQUEST_LIMIT_EXCEEDED"),
    ],
)
def test_scripted_faults_answer_like_salesforce(sf, rest, fault, status, code):
    contact = sf.store.create("Contact", {"LastName": "X"})
    sf.faults.add("collections.update", fault)
    records = [{"attributes": {"type": "Contact"}, "id": contact, "Region__c": "West"}]
    failed = rest.patch("composite/sobjects", json={"allOrNone": False, "records": records})
    assert failed.status_code == status
    assert failed.json()[0]["errorCode"] == code
    assert sf.store.get("Contact", contact)["Region__c"] is None  # nothing happened
    if fault == "invalid_session":
        rest.login()  # the session was ended: only a new login helps
    again = rest.patch("composite/sobjects", json={"allOrNone": False, "records": records})
    assert again.status_code == 200
    assert sf.store.get("Contact", contact)["Region__c"] == "West"
    assert sf.calls["collections.update"] == 2


def test_drop_closes_the_connection_without_doing_anything(sf, rest):
    sf.faults.add("sobject.create", "drop")
    with pytest.raises(requests.ConnectionError):
        rest.post("sobjects/Contact", json={"LastName": "X"})
    assert sf.store.count("Contact") == 0
    assert rest.post("sobjects/Contact", json={"LastName": "X"}).status_code == 201


def test_timeout_and_drop_after_take_effect_without_an_answer(sf, rest):
    sf.faults.add("sobject.create", "timeout")
    with pytest.raises(requests.ReadTimeout):
        rest.post("sobjects/Contact", json={"LastName": "Timed out"}, timeout=0.3)
    sf.faults.add("*", "drop_after")
    with pytest.raises(requests.ConnectionError):
        rest.post("sobjects/Contact", json={"LastName": "Dropped after"})
    # Both writes happened: the client cannot know it from the answer.
    assert {c["LastName"] for c in sf.store.find("Contact")} == {"Timed out", "Dropped after"}
    assert sf.faults.fired == [("sobject.create", "timeout"), ("sobject.create", "drop_after")]


def test_unknown_paths_and_methods(rest):
    assert rest.get("sobjects/Contact/a/b/c").status_code == 404
    assert rest.get("/services/apexrest/foo").status_code == 404
    wrong_method = rest.request("PUT", "sobjects/Contact/0035e0000000001AAA", json={})
    assert wrong_method.status_code == 405
    assert wrong_method.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_a_value_outside_a_restricted_picklist_is_refused(sf, rest):
    cid = sf.store.create("Contact", {"LastName": "P"})
    refused = rest.patch(f"sobjects/Contact/{cid}", json={"LMS_Sync_Status__c": "Synched"})
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert refused.json()[0]["fields"] == ["LMS_Sync_Status__c"]
    accepted = rest.patch(f"sobjects/Contact/{cid}", json={"LMS_Sync_Status__c": "Synced"})
    assert accepted.status_code == 204
