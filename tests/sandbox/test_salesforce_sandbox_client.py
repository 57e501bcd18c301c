"""Smoke test: mentorsync's own SalesforceClient against the sandbox org, through
``sandbox.testing`` (settings_for and running_sandboxes)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import requests

from connector.clients.salesforce.client import SalesforceClient
from connector.errors import SalesforceBudgetError, SalesforceTransientError, UnknownOutcomeError
from sandbox.testing import running_sandboxes, settings_for


def test_the_real_client_logs_in_queries_and_writes(tmp_path):
    with running_sandboxes(tmp_path, members=40) as (sf, moodle, settings):
        assert settings.salesforce.domain == f"127.0.0.1:{sf.port}"
        assert settings.salesforce.org_ids == [sf.org_id]
        assert settings.moodle.url == moodle.url
        report = sf.seed_report
        client = SalesforceClient(settings.salesforce)

        contacts = list(client.query("SELECT Id, Email FROM Contact ORDER BY Id"))
        assert [c["Id"] for c in contacts] == sorted(report.contact_ids)
        assert "attributes" not in contacts[0]
        assert sf.calls["login"] == 1 and sf.calls["query"] == 1

        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        changed = list(
            client.changed_since(
                "Mentorship_Match__c",
                ["Id", "Status__c"],
                None,
                lookback=dt.timedelta(minutes=5),
                run_start=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5),
            )
        )
        assert {m["Id"] for m in changed} >= set(report.active_matches)

        match = report.active_matches[0]
        results = client.collection_upsert(
            "Mentoring_Meeting__c",
            "External_Id__c",
            [{"External_Id__c": f"{match}-M1", "Match__c": match, "Meeting_Number__c": 1}],
        )
        assert results[0].success and results[0].created
        assert client.budget is not None and client.budget.used == sf.api_used

        sf.store.delete("Contact", report.joiner)
        deleted = client.get_deleted("Contact", start, dt.datetime.now(dt.UTC))
        assert [d["id"] for d in deleted] == [report.joiner]
        assert sf.calls["getDeleted"] == 1


@pytest.mark.parametrize("grant", ["password-oauth", "jwt", "client_credentials"])
def test_the_real_client_logs_in_with_every_grant(tmp_path, grant):
    with running_sandboxes(tmp_path, members=0) as (sf, moodle, _):
        overrides = {
            "password-oauth": {
                "consumer_key": sf.consumer_key,
                "consumer_secret": sf.consumer_secret,
            },
            "jwt": {
                "auth": "jwt",
                "consumer_key": sf.consumer_key,
                "private_key": sf.jwt_private_key_pem,
            },
            "client_credentials": {
                "auth": "client_credentials",
                "consumer_key": sf.consumer_key,
                "consumer_secret": sf.consumer_secret,
            },
        }[grant]
        settings = settings_for(sf, moodle, tmp_path / "ms", salesforce=overrides)
        assert settings.salesforce.auth == overrides.get("auth", "password")
        client = SalesforceClient(settings.salesforce)
        assert client.describe("Contact")["keyPrefix"] == "003"
        assert sf.calls["login"] == 1 and sf.calls["describe"] == 1


def test_running_sandboxes_overrides_every_section(tmp_path):
    overrides = {"moodle": {"read_timeout": 1.5}, "members": {"mass_change_share": 0.2}}
    with running_sandboxes(tmp_path, members=0, overrides=overrides) as (sf, moodle, settings):
        assert settings.moodle.read_timeout == 1.5 and settings.moodle.url == moodle.url
        assert settings.members.mass_change_share == 0.2
        again = settings_for(sf, moodle, tmp_path / "x", moodle={"retry_attempts": 2})
        assert again.moodle.retry_attempts == 2 and again.moodle.token.get() == moodle.token
        assert sf.seed_report is None


def test_the_write_rule_on_the_real_wire(tmp_path):
    """A create that timed out happened but is not repeated; an update is simply repeated."""
    overrides = {"salesforce": {"read_timeout": 0.3, "retry_attempts": 3}}
    with running_sandboxes(tmp_path, members=0, overrides=overrides) as (sf, _, settings):
        sf.timeout_seconds = 1.0
        client = SalesforceClient(settings.salesforce, sleep=lambda seconds: None)

        sf.faults.add("collections.create", "timeout")
        with pytest.raises(UnknownOutcomeError) as info:
            client.collection_create("Contact", [{"LastName": "Once"}])
        assert info.value.operation == "collections.create"
        assert sf.calls["collections.create"] == 1
        [created] = sf.store.find("Contact")  # it did happen: the caller must re-read
        assert created["LastName"] == "Once"

        sf.faults.add("collections.update", "timeout")
        sf.faults.add("collections.update", "drop_after")
        results = client.collection_update("Contact", [{"Id": created["Id"], "LastName": "Twice"}])
        assert results[0].success
        assert sf.calls["collections.update"] == 3
        assert sf.store.get("Contact", created["Id"])["LastName"] == "Twice"
        assert sf.store.count("Contact") == 1


def test_the_real_client_rides_through_scripted_faults(tmp_path):
    with running_sandboxes(tmp_path, members=0) as (sf, _, settings):
        client = SalesforceClient(settings.salesforce, sleep=lambda seconds: None)
        contact = sf.store.create("Contact", {"LastName": "X"})
        sf.faults.add("query", "http503")
        sf.faults.add("query", "lock_row")
        assert [r["Id"] for r in client.query("SELECT Id FROM Contact")] == [contact]
        assert sf.calls["query"] == 3 and sf.calls["login"] == 1

        sf.faults.add("query", "invalid_session")  # ends the session: one re-login helps
        assert len(list(client.query("SELECT Id FROM Contact"))) == 1
        assert sf.calls["query"] == 5 and sf.calls["login"] == 2

        sf.faults.add("query", "budget_exhausted")
        with pytest.raises(SalesforceBudgetError):
            list(client.query("SELECT Id FROM Contact"))
        assert sf.calls["query"] == 6  # the daily limit is not retried
        assert sf.faults.pending() == 0


def test_latency_holds_every_answer(tmp_path):
    """Latency is added to every call: a client that waits less than it gives up."""
    with running_sandboxes(tmp_path, members=0, latency=0.0) as (sf, moodle, settings):
        client = SalesforceClient(settings.salesforce, sleep=lambda seconds: None)
        client.login()
        sf.latency = moodle.latency = 1.0
        slow = dataclasses.replace(settings.salesforce, read_timeout=0.05, retry_attempts=1)
        impatient = SalesforceClient(slow, sleep=lambda seconds: None)
        with pytest.raises(SalesforceTransientError, match="ReadTimeout"):
            impatient.describe("Contact")
        with pytest.raises(requests.ReadTimeout):
            requests.post(moodle.url + "/webservice/rest/server.php", timeout=0.05)
        sf.latency = moodle.latency = 0.0
        assert client.describe("Contact")["name"] == "Contact"
