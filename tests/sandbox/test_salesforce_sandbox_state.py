"""The Salesforce sandbox keeps its state in data_dir and starts again where it was."""

from __future__ import annotations

import json
import stat

import pytest

from sandbox.salesforce import SalesforceSandbox
from sandbox.testing import RestSession


def test_a_restarted_sandbox_resumes_records_credentials_and_sessions(tmp_path):
    first = SalesforceSandbox(tmp_path / "sf", daily_api_limit=100)
    assert first.has_state is False
    first.start()
    rest = RestSession(first)
    token = rest.login()
    kept = rest.post("sobjects/Contact", json={"LastName": "Kept"}).json()["id"]
    gone = first.store.create("Contact", {"LastName": "Gone"})
    first.store.delete("Contact", gone)
    match = first.store.create("Mentorship_Match__c", {"Mentee__c": kept})
    credentials = (first.org_id, first.username, first.password, first.consumer_key)
    ca_pem = open(first.ca_file, encoding="utf-8").read()
    port, used = first.port, first.api_used
    first.stop()
    rest.close()

    second = SalesforceSandbox(tmp_path / "sf", daily_api_limit=100)
    assert second.has_state is True
    second.start()
    try:
        assert (second.org_id, second.username, second.password, second.consumer_key) == (
            credentials
        )
        assert second.port == port  # the last port, free again
        assert open(second.ca_file, encoding="utf-8").read() == ca_pem
        assert second.api_used == used

        again = RestSession(second)
        again.token = token  # the session survived the restart
        assert again.get(f"sobjects/Contact/{kept}").json()["LastName"] == "Kept"
        every = again.query("SELECT Id, IsDeleted FROM Contact", all_rows=True).json()
        assert {r["Id"]: r["IsDeleted"] for r in every["records"]} == {kept: False, gone: True}
        assert second.store.get("Mentorship_Match__c", match)["Name"] == "MM-000001"

        # Counters carried on: new Ids and auto-numbers do not repeat old ones.
        new = second.store.create("Contact", {"LastName": "New"})
        assert new not in (kept, gone)
        assert second.store.create("Mentorship_Match__c", {}) != match
        assert second.store.find("Mentorship_Match__c")[-1]["Name"] == "MM-000002"
        again.close()
    finally:
        second.stop()


def test_state_file_holds_secrets_for_its_owner_only(tmp_path):
    sandbox = SalesforceSandbox(tmp_path / "sf")
    sandbox.start()
    sandbox.stop()
    state = tmp_path / "sf" / "salesforce.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sf" / "salesforce-jwt-key.pem").stat().st_mode) == 0o600
    assert json.loads(state.read_text())["version"] == 1


def test_a_broken_state_file_is_reported_not_ignored(tmp_path):
    (tmp_path / "sf").mkdir()
    (tmp_path / "sf" / "salesforce.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable sandbox state"):
        SalesforceSandbox(tmp_path / "sf")


def test_without_data_dir_the_ca_file_lives_in_a_temporary_directory(tmp_path):
    sandbox = SalesforceSandbox()
    sandbox.start()
    ca_file = sandbox.ca_file
    try:
        assert open(ca_file, encoding="utf-8").read().startswith("-----BEGIN CERTIFICATE-----")
    finally:
        sandbox.stop()
    with pytest.raises(FileNotFoundError):
        open(ca_file, encoding="utf-8")
