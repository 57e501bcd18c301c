"""The member sync against the loopback sandboxes: real wire protocols end to end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import SeedReport
from sandbox.testing import running_sandboxes

pytestmark = pytest.mark.e2e

CREATE = "core_user_create_users"
UPDATE = "core_user_update_users"
MEMBERS = 60


@dataclass
class World:
    """Both sandboxes, seeded, and a context pointing at them."""

    sf: SalesforceSandbox
    moodle: MoodleSandbox
    ctx: Context
    report: SeedReport
    settings: Any

    def run(self, mode: str = "incremental", **kwargs: Any) -> RunResult:
        return MembersSync().run(self.ctx, SyncRequest(mode=mode, **kwargs))  # type: ignore[arg-type]

    def contact(self, cid: str) -> dict[str, Any]:
        record = self.sf.store.get("Contact", cid)
        assert record is not None
        return record

    def account(self, cid: str) -> dict[str, Any]:
        ids = self.moodle.site.user_ids_by_idnumber(cid)
        assert len(ids) == 1, f"{len(ids)} accounts for {cid}"
        return self.moodle.site.users[ids[0]]

    def moodle_writes(self) -> int:
        return self.moodle.calls[CREATE] + self.moodle.calls[UPDATE]

    def participants_in_scope(self) -> list[str]:
        return [
            cid
            for cid in self.report.participants
            if self.contact(cid)["Member_Status__c"] != "Lapsed"
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running_sandboxes(tmp_path, members=MEMBERS) as (sf, moodle, settings):
        # settings_for's own parameters are named members and moodle, so these sections cannot
        # be overridden through it: set them on the (validated) settings directly.
        settings.moodle.read_timeout = 1.0
        settings.moodle.retry_attempts = 2
        settings.moodle.retry_max_seconds = 5.0
        settings.members.mass_change_share = 0.2
        moodle.timeout_seconds = 1.5
        ctx = Context(settings)
        try:
            yield World(sf, moodle, ctx, sf.seed_report, settings)
        finally:
            ctx.close()


def test_first_sync_creates_adopts_reports_conflicts_then_settles(world: World) -> None:
    report = world.report
    first = world.run()

    assert first.status == "failed_records"  # the shared email is a conflict
    assert first.counts["conflicts"] == 1
    assert first.counts["adopted"] == 1
    expected = len(world.participants_in_scope()) - 2  # one conflict, one adopted
    assert first.counts["created"] == expected
    assert world.moodle.calls[CREATE] == 1  # all in one call at this size

    # The adoptable hand-made account is now linked, not duplicated.
    uid, adoptee = report.adoptable[0]
    assert world.account(adoptee)["id"] == uid
    assert world.contact(adoptee)["LMS_User_Id__c"] == str(uid)
    # One of the two Contacts sharing an email has the account, the other is a conflict.
    sharing = report.shared_email_contacts
    statuses = sorted(world.contact(c)["LMS_Sync_Status__c"] for c in sharing)
    assert statuses == ["Conflict", "Synced"]
    # Every synced Contact says where its account is.
    for cid in world.participants_in_scope():
        contact = world.contact(cid)
        if contact["LMS_Sync_Status__c"] == "Synced":
            assert contact["LMS_User_Id__c"] == str(world.account(cid)["id"])
            assert world.account(cid)["username"] == contact["Email"].lower()

    # The write-back echo comes back once: read, nothing written anywhere.
    writes, updates = world.moodle_writes(), world.sf.calls["collections.update"]
    echo = world.run()
    assert world.moodle_writes() == writes
    assert world.sf.calls["collections.update"] == updates
    assert echo.counts["conflicts"] == 1


def test_email_change_lapse_return_and_joiner(world: World) -> None:
    report = world.report
    world.run()
    store = world.sf.store

    changer = world.account(report.email_changer)
    store.update("Contact", report.email_changer, {"Email": report.email_changer_new})
    store.update("Contact", report.lapser, {"Member_Status__c": "Lapsed"})
    store.update("Contact", report.joiner, {"Mentorship_Role__c": "Mentee"})
    creates = world.moodle.calls[CREATE]

    result = world.run()

    assert result.counts["updated"] >= 1
    assert result.counts["suspended"] == 1
    assert result.counts["created"] == 1
    assert world.moodle.calls[CREATE] == creates + 1  # the joiner only
    moved = world.account(report.email_changer)
    assert moved["id"] == changer["id"]
    assert moved["email"] == report.email_changer_new
    assert moved["username"] == changer["username"]
    assert world.account(report.lapser)["suspended"] in (1, True)
    assert world.contact(report.lapser)["LMS_Sync_Status__c"] == "Suspended"
    assert world.account(report.joiner)

    store.update("Contact", report.lapser, {"Member_Status__c": "Active"})
    back = world.run()
    assert back.counts["reactivated"] == 1
    assert world.account(report.lapser)["suspended"] in (0, False)


def test_deletion_and_merge(world: World) -> None:
    report = world.report
    world.run()
    store = world.sf.store
    deleted, loser, survivor = report.mentees[1], report.mentees[2], report.mentees[3]
    loser_account = world.account(loser)

    store.delete("Contact", deleted)
    store.merge(survivor, loser)
    result = world.run()

    assert result.status in ("ok", "failed_records")
    assert world.account(deleted)["suspended"] in (1, True)
    # The survivor had its own account: the loser's is suspended, not re-pointed.
    assert world.account(loser)["id"] == loser_account["id"]
    assert world.account(loser)["suspended"] in (1, True)
    assert world.account(survivor)["suspended"] in (0, False)


def test_merge_into_a_contact_without_account_repoints_it(world: World) -> None:
    report = world.report
    world.run()
    store = world.sf.store
    loser = report.mentees[4]
    account_id = world.account(loser)["id"]
    survivor = store.create(
        "Contact",
        {"FirstName": "Dup", "LastName": "Licate", "Email": "dup.licate@example.org"},
    )

    store.merge(survivor, loser)
    store.update("Contact", survivor, {"Mentorship_Role__c": "Mentee"})
    creates = world.moodle.calls[CREATE]
    result = world.run()

    assert result.counts["adopted"] == 1
    assert world.moodle.calls[CREATE] == creates
    assert world.account(survivor)["id"] == account_id
    assert world.moodle.site.user_ids_by_idnumber(loser) == []
    assert world.contact(survivor)["LMS_User_Id__c"] == str(account_id)


def test_read_timeout_on_create_creates_nothing_twice(world: World) -> None:
    world.moodle.faults.add(CREATE, "timeout")

    result = world.run()

    assert result.counts["created"] >= 1
    assert world.moodle.calls[CREATE] == 1  # the timed-out call did the work; no resend
    for cid in world.participants_in_scope():
        assert len(world.moodle.site.user_ids_by_idnumber(cid)) <= 1
    world.run()
    assert world.moodle.calls[CREATE] == 1


def test_mass_change_guard_stops_and_admin_can_proceed(world: World) -> None:
    world.run()
    store = world.sf.store
    linked = [c for c in world.participants_in_scope() if world.moodle.site.user_ids_by_idnumber(c)]
    lapsing = linked[: len(linked) // 2]  # well above 20% of the linked accounts
    for cid in lapsing:
        store.update("Contact", cid, {"Member_Status__c": "Lapsed"})
    writes = world.moodle_writes()

    stopped = world.run()

    assert stopped.status == "stopped"
    assert stopped.reason.startswith("mass_change")
    assert world.moodle_writes() == writes
    assert all(world.account(c)["suspended"] in (0, False) for c in lapsing)

    allowed = world.run(allow_mass_change=True)
    assert allowed.counts["suspended"] == len(lapsing)
    assert all(world.account(c)["suspended"] in (1, True) for c in lapsing)


def test_cli_sync_dry_run_then_real_run_then_status(world: World, tmp_path: Path) -> None:
    config = tmp_path / "mentorsync.toml"
    s = world.settings
    config.write_text(
        f"""
[moodle]
url = "{s.moodle.url}"
token = "{s.moodle.token.get()}"
[salesforce]
auth = "password"
username = "{s.salesforce.username}"
password = "{s.salesforce.password.get()}"
security_token = "{s.salesforce.security_token.get()}"
domain = "{s.salesforce.domain}"
ca_bundle = "{s.salesforce.ca_bundle}"
[service]
data_dir = "{tmp_path / "cli-state"}"
""",
        encoding="utf-8",
    )
    runner = CliRunner()

    dry = runner.invoke(main, ["--config", str(config), "sync", "members", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "create" in dry.output and "conflict" in dry.output
    assert world.moodle_writes() == 0

    real = runner.invoke(main, ["--config", str(config), "sync", "members", "--full"])
    assert real.exit_code == 1, real.output  # the shared-email conflict is a failed record
    assert "created" in real.output
    assert world.moodle_writes() > 0

    status = runner.invoke(main, ["--config", str(config), "status"])
    assert status.exit_code == 0, status.output
    assert "members:Contact" in status.output
    assert "conflict:" in status.output
    assert world.report.shared_email not in status.output  # ids and codes only


def test_existing_account_with_an_email_two_contacts_share_is_linked_to_neither(
    tmp_path: Path,
) -> None:
    with running_sandboxes(tmp_path, members=MEMBERS, moodle_accounts=2) as (sf, moodle, settings):
        report = sf.seed_report
        ((uid, _),) = report.ambiguous
        ctx = Context(settings)
        try:
            result = MembersSync().run(ctx, SyncRequest(mode="full", allow_mass_change=True))
        finally:
            ctx.close()

        assert result.counts["adopted"] == 1  # the unambiguous one only
        assert moodle.site.users[uid]["idnumber"] == ""  # the shared-email account: nobody's
        for cid in report.shared_email_contacts:
            contact = sf.store.get("Contact", cid)
            assert contact is not None
            assert contact["LMS_Sync_Status__c"] == "Conflict"
            assert contact["LMS_Sync_Error__c"] == "conflict:ambiguous_match"
            assert moodle.site.user_ids_by_idnumber(cid) == []
