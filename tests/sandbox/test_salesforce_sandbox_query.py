"""The Salesforce sandbox's query, queryMore and queryAll, and its SOQL subset."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from sandbox.salesforce import SalesforceSandbox
from sandbox.testing import RestSession

T0 = dt.datetime(2026, 3, 2, 14, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def sf(tmp_path):
    sandbox = SalesforceSandbox(tmp_path / "sf")
    sandbox.clock = lambda: T0
    sandbox.start()
    yield sandbox
    sandbox.stop()


def add_contacts(sf: SalesforceSandbox, count: int, **fields) -> list[str]:
    return sf.store.bulk_insert(
        "Contact", ({"LastName": f"Member {i:05d}", **fields} for i in range(count))
    )


def test_query_pages_of_2000_with_a_relative_next_records_url(sf, rest):
    ids = add_contacts(sf, 4500)
    first = rest.query("SELECT Id, LastName FROM Contact ORDER BY LastName DESC")
    body = first.json()
    assert first.status_code == 200
    assert body["totalSize"] == 4500 and body["done"] is False
    assert len(body["records"]) == 2000
    assert re.fullmatch(r"/services/data/v59\.0/query/01g[0-9a-f]{15}-2000", body["nextRecordsUrl"])
    assert body["records"][0]["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v59.0/sobjects/Contact/{ids[-1]}",
    }
    assert list(body["records"][0]) == ["attributes", "Id", "LastName"]

    seen = [r["Id"] for r in body["records"]]
    pages = [body]
    while not pages[-1]["done"]:
        page = rest.get(pages[-1]["nextRecordsUrl"]).json()
        seen += [r["Id"] for r in page["records"]]
        pages.append(page)
    assert [len(p["records"]) for p in pages] == [2000, 2000, 500]
    assert pages[1]["nextRecordsUrl"].endswith("-4000")
    assert "nextRecordsUrl" not in pages[-1]
    assert seen == list(reversed(ids))  # Member 04499 first
    assert sf.calls["query"] == 1 and sf.calls["queryMore"] == 2


def test_later_pages_come_from_the_first_result_not_a_rerun(sf, rest):
    add_contacts(sf, 2500, Region__c="West")
    body = rest.query("SELECT Id FROM Contact WHERE Region__c = 'West'").json()
    # Records written after the first page change neither membership nor totals.
    late = add_contacts(sf, 10, Region__c="West")
    sf.store.update("Contact", body["records"][0]["Id"], {"Region__c": "East"})
    page2 = rest.get(body["nextRecordsUrl"]).json()
    assert page2["totalSize"] == 2500 and len(page2["records"]) == 500
    assert not set(late) & {r["Id"] for r in page2["records"]}


def test_batch_size_header_makes_smaller_pages(sf, rest):
    add_contacts(sf, 450)
    response = rest.get(
        "query",
        params={"q": "SELECT Id FROM Contact"},
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert len(response.json()["records"]) == 200
    assert response.json()["nextRecordsUrl"].endswith("-200")


def test_unknown_query_locator_is_refused(shared_rest):
    response = shared_rest.get("query/01gffffffffffffff-2000")
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_all_returns_deleted_and_merged_records_query_does_not(sf, rest):
    keep, gone, master, loser = add_contacts(sf, 4)
    sf.store.delete("Contact", gone)
    sf.store.merge(master, loser)
    soql = "SELECT Id, IsDeleted, MasterRecordId FROM Contact ORDER BY Id"

    live = rest.query(soql).json()["records"]
    everything = {r["Id"]: r for r in rest.query(soql, all_rows=True).json()["records"]}

    assert [r["Id"] for r in live] == [keep, master]
    assert everything[gone]["IsDeleted"] is True and everything[gone]["MasterRecordId"] is None
    assert everything[loser]["IsDeleted"] is True
    assert everything[loser]["MasterRecordId"] == master
    assert sf.calls["query"] == 2


def test_count_query(sf, rest):
    add_contacts(sf, 7, Member_Status__c="Active")
    add_contacts(sf, 3, Member_Status__c="Lapsed")
    body = rest.query("SELECT COUNT() FROM Contact WHERE Member_Status__c = 'Active'").json()
    assert body == {"totalSize": 7, "done": True, "records": []}


# -- the SOQL subset, checked against the same filter written in Python ----------------------

PEOPLE = [
    # LastName, FirstName, Email, Member_Status__c, Mentorship_Role__c, LMS_Synced_At__c
    ("Lovelace", "Ada", "ada@example.org", "Active", "Mentor", "2026-03-01T10:00:00Z"),
    ("Hopper", "Grace", "GRACE@example.org", "Lapsed", "Mentee", None),
    ("O'Connor", "Siobhán", "siobhan@example.net", "Grace", None, "2026-03-01T12:30:00+02:00"),
    ("Okafor", None, None, "Active", "Both", "2026-02-28T23:59:59Z"),
    ("100% Smith", "Li", "li_smith@example.com", "Active", None, None),
]


@pytest.fixture(scope="module")
def people_sf():
    # Read-only tests share one sandbox; the store answers SOQL without the HTTP server.
    sandbox = SalesforceSandbox()
    sandbox.clock = lambda: T0
    add_people(sandbox)
    return sandbox


@pytest.fixture(scope="module")
def shared_rest(people_sf):
    people_sf.start()
    client = RestSession(people_sf)
    client.login()
    yield client
    client.close()
    people_sf.stop()


def add_people(sf: SalesforceSandbox) -> dict[str, str]:
    ids = {}
    for last, first, email, status, role, synced in PEOPLE:
        ids[last] = sf.store.create(
            "Contact",
            {
                "LastName": last,
                "FirstName": first,
                "Email": email,
                "Member_Status__c": status,
                "Mentorship_Role__c": role,
                "LMS_Synced_At__c": synced,
            },
        )
    match = sf.store.create(
        "Mentorship_Match__c",
        {
            "Mentor__c": ids["Lovelace"],
            "Mentee__c": ids["Hopper"],
            "Status__c": "Active",
            "Start_Date__c": "2026-09-15",
            "Meetings_Completed__c": 2,
        },
    )
    sf.store.create(
        "Mentorship_Match__c",
        {"Mentor__c": ids["Okafor"], "Status__c": "Cancelled", "Meetings_Completed__c": 0},
    )
    return ids | {"match": match}


def names(sf, where: str, order: str = "ORDER BY LastName") -> list[str]:
    rows = sf.store.select(f"SELECT LastName FROM Contact WHERE {where} {order}")
    return [r["LastName"] for r in rows]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Email = 'grace@EXAMPLE.org'", ["Hopper"]),  # text compares case-insensitively
        ("Email != 'grace@example.org'", ["100% Smith", "Lovelace", "O'Connor", "Okafor"]),
        ("Email = null", ["Okafor"]),
        ("Email != null AND FirstName != null", ["100% Smith", "Hopper", "Lovelace", "O'Connor"]),
        (
            "Member_Status__c IN ('Active', 'grace')",
            ["100% Smith", "Lovelace", "O'Connor", "Okafor"],
        ),
        ("Mentorship_Role__c NOT IN ('Mentor', 'Mentee')", ["100% Smith", "O'Connor", "Okafor"]),
        ("Mentorship_Role__c IN ('Mentor', null)", ["100% Smith", "Lovelace", "O'Connor"]),
        ("LastName < 'Lz'", ["100% Smith", "Hopper", "Lovelace"]),
        ("LastName >= 'o'", ["O'Connor", "Okafor"]),
        ("LastName = 'O\\'Connor'", ["O'Connor"]),
        ("FirstName = 'Siobhán'", ["O'Connor"]),
        ("LMS_Synced_At__c > 2026-03-01T10:00:00Z", ["O'Connor"]),  # 12:30+02:00 is 10:30Z
        ("LMS_Synced_At__c >= 2026-03-01T10:00:00Z", ["Lovelace", "O'Connor"]),
        ("LMS_Synced_At__c <= 2026-03-01T10:00:00.000+00:00", ["Lovelace", "Okafor"]),
        ("LMS_Synced_At__c < 2026-03-01T00:00:00-05:00", ["Okafor"]),
        (
            "(Member_Status__c = 'Active' OR Member_Status__c = 'Grace') AND Email != null",
            ["100% Smith", "Lovelace", "O'Connor"],
        ),
        (
            "Member_Status__c = 'Lapsed' OR (Mentorship_Role__c = 'Both' AND FirstName = null)",
            ["Hopper", "Okafor"],
        ),
        ("NOT (Member_Status__c = 'Active')", ["Hopper", "O'Connor"]),
        ("IsDeleted = false AND LastName LIKE 'o%'", ["O'Connor", "Okafor"]),
        ("Email LIKE '%\\_smith@%'", ["100% Smith"]),
        ("LastName LIKE '100\\%%'", ["100% Smith"]),
        ("Email LIKE 'li_smith@%'", ["100% Smith"]),
    ],
)
def test_where_clauses(people_sf, where, expected):
    assert names(people_sf, where) == expected


def test_dates_numbers_ids_and_relationships(sf):
    people = add_people(sf)

    def match_names(where: str) -> list[str]:
        rows = sf.store.select(f"SELECT Id FROM Mentorship_Match__c WHERE {where} ORDER BY Name")
        return [r["Id"] for r in rows]

    assert match_names("Start_Date__c >= 2026-09-01 AND Start_Date__c < 2026-10-01") == [
        people["match"]
    ]
    assert match_names("Meetings_Completed__c > 1.5") == [people["match"]]
    assert len(match_names("Meetings_Completed__c >= 0")) == 2
    assert match_names("Mentee__r.Email = 'grace@example.org'") == [people["match"]]
    # A 15-character Id matches its 18-character form.
    assert match_names(f"Mentor__c = '{people['Lovelace'][:15]}'") == [people["match"]]
    assert match_names(f"Id IN ('{people['match']}')") == [people["match"]]

    rows = sf.store.select(
        "SELECT Name, Mentor__r.LastName, Mentee__r.LastName FROM Mentorship_Match__c ORDER BY Name"
    )
    assert rows[0]["Mentor__r"]["LastName"] == "Lovelace"
    assert rows[0]["Mentee__r"]["LastName"] == "Hopper"
    assert rows[0]["Mentee__r"]["attributes"]["type"] == "Contact"
    assert rows[1]["Mentee__r"] is None  # no mentee: a null relationship


def test_order_by_several_fields_directions_and_nulls(people_sf):
    sf = people_sf
    rows = sf.store.select(
        "SELECT LastName FROM Contact ORDER BY Member_Status__c DESC, FirstName ASC NULLS LAST"
    )
    assert [r["LastName"] for r in rows] == [
        "Hopper",
        "O'Connor",
        "Lovelace",
        "100% Smith",
        "Okafor",
    ]
    rows = sf.store.select("SELECT LastName FROM Contact ORDER BY Email NULLS FIRST LIMIT 2")
    assert [r["LastName"] for r in rows] == ["Okafor", "Lovelace"]
    rows = sf.store.select("SELECT LastName FROM Contact ORDER BY Email DESC LIMIT 1")
    assert [r["LastName"] for r in rows] == ["O'Connor"]


def test_query_over_http_returns_typed_values(sf, rest):
    add_people(sf)
    body = rest.query(
        "SELECT Id, Name, Start_Date__c, Meetings_Completed__c, SystemModstamp, IsDeleted "
        "FROM Mentorship_Match__c WHERE Status__c = 'Active'"
    ).json()
    record = body["records"][0]
    assert record["Name"] == "MM-000001"
    assert record["Start_Date__c"] == "2026-09-15"
    assert record["Meetings_Completed__c"] == 2.0
    assert record["SystemModstamp"] == "2026-03-02T14:00:00.000+0000"
    assert record["IsDeleted"] is False


@pytest.mark.parametrize(
    ("soql", "code", "says"),
    [
        ("SELECT Id FROM Contact GROUP BY Id", "MALFORMED_QUERY", "unexpected token: 'GROUP'"),
        ("SELECT Id FROM Contact LIMIT 10 OFFSET 5", "MALFORMED_QUERY", "'OFFSET'"),
        ("SELECT COUNT(Id) FROM Contact", "MALFORMED_QUERY", "unexpected token"),
        (
            "SELECT Id FROM Contact WHERE Email = 'a' AND LastName = 'b' OR Id = null",
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
        ),
        (
            "SELECT Id FROM Contact WHERE Id IN (SELECT Mentee__c FROM Mentorship_Match__c)",
            "MALFORMED_QUERY",
            "SELECT",
        ),
        ("SELECT Id FROM Contact WHERE LastName = 'open", "MALFORMED_QUERY", "unterminated"),
        ("SELECT Id FROM Contact WHERE CreatedDate > LAST_N_DAYS:3", "MALFORMED_QUERY", ""),
        ("SELECT Id FROM Contact WHERE LastName = :name", "MALFORMED_QUERY", "':'"),
        ("SELECT Id, Id FROM Contact", "MALFORMED_QUERY", "duplicate field"),
        ("SELECT Id FROM Contact WHERE LastName = 'a\\qb'", "MALFORMED_QUERY", "escape"),
        ("SELECT Id FROM Contact ORDER", "MALFORMED_QUERY", "end of query"),
        ("SELECT Id, Nickname__c FROM Contact", "INVALID_FIELD", "No such column 'Nickname__c'"),
        ("SELECT Id FROM Contact WHERE Foo = 1", "INVALID_FIELD", "No such column 'Foo'"),
        ("SELECT Id FROM Contact ORDER BY Foo", "INVALID_FIELD", "No such column 'Foo'"),
        ("SELECT Mentor__x.Email FROM Mentorship_Match__c", "INVALID_FIELD", "relationship"),
        ("SELECT Id FROM Account", "INVALID_TYPE", "sObject type 'Account' is not supported"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > '2026-01-01'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "dateTime",
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > 2026-01-01",
            "INVALID_QUERY_FILTER_OPERATOR",
            "dateTime",
        ),
        ("SELECT Id FROM Contact WHERE Email = 5", "INVALID_QUERY_FILTER_OPERATOR", "string"),
        ("SELECT Id FROM Contact WHERE Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR", "ID"),
        ("SELECT Id FROM Contact WHERE IsDeleted > false", "INVALID_QUERY_FILTER_OPERATOR", ""),
        ("SELECT Id FROM Contact WHERE Email > null", "INVALID_QUERY_FILTER_OPERATOR", "null"),
    ],
)
def test_refused_queries_say_why(shared_rest, soql, code, says):
    response = shared_rest.query(soql)
    assert response.status_code == 400
    [error] = response.json()
    assert error["errorCode"] == code
    assert says in error["message"]
    assert set(error) == {"message", "errorCode", "fields"}


def test_malformed_query_message_points_at_the_column(shared_rest):
    [error] = shared_rest.query("SELECT Id FROM Contact GROUP BY Id").json()
    assert error["message"] == (
        "\nSELECT Id FROM Contact GROUP BY Id\n                       ^\n"
        "ERROR at Row:1:Column:24\nunexpected token: 'GROUP'"
    )


def test_query_without_q_is_malformed(shared_rest):
    response = shared_rest.get("query")
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_a_request_uri_over_16384_bytes_is_refused_like_salesforce(sf, rest):
    ids = ", ".join(f"'{n:018d}'" for n in range(800))  # about 17,600 bytes once encoded
    too_long = rest.query(f"SELECT Id FROM Contact WHERE Id IN ({ids})")
    assert too_long.status_code == 414
    (one,) = add_contacts(sf, 1)
    fits = rest.query(f"SELECT Id FROM Contact WHERE Id IN ('{one}')")
    assert (fits.status_code, fits.json()["totalSize"]) == (200, 1)
