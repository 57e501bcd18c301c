"""The member sync against the real Moodle 4.5 site and the sandbox Salesforce.

Results are checked through Moodle's own web-service functions (and its event log for "no
writes"), not through mentorsync's view of them. The tests of this module build on each
other in order: one first sync, then changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from connector.clients.moodle.client import MoodleClient
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import SeedReport, seed
from tests.real_moodle.conftest import RealMoodle

MEMBERS = 400
EXTRA_PARTICIPANTS = 220  # the seed gives about 90 participants; the tier wants a few hundred
# An address mentorsync's validation accepts and Moodle's (PHPMailer's) refuses: the one row
# of a create batch Moodle says no to, found by bisection.
REFUSED_EMAIL = "refused.row@example.org-"


class _HandMadeAccounts:
    """What ``seed`` needs of a Moodle (``site.create_user``), made on the real site."""

    def __init__(self, client: MoodleClient) -> None:
        self.site = self
        self.client = client

    def create_user(self, username: str, email: str, *, firstname: str, lastname: str) -> int:
        """An account made by hand before mentorsync: no idnumber."""
        made = self.client.create_users([{
            "username": username, "email": email, "firstname": firstname,
            "lastname": lastname, "auth": "manual", "password": "Hand#Made2026",
        }])
        return int(made[0]["id"])


@dataclass
class World:
    """The real site, the sandbox org and a mentorsync context for both."""

    moodle: RealMoodle
    sf: SalesforceSandbox
    report: SeedReport
    ctx: Context
    admin: MoodleClient  # Moodle's own view, independent of the context's client

    def run(self) -> RunResult:
        return MembersSync().run(self.ctx, SyncRequest(mode="incremental"))

    def users(self, field: str, values: list[str]) -> dict[str, dict[str, Any]]:
        """Moodle's users by ``field`` (id, idnumber, username, email), keyed by that field."""
        found = self.admin.get_users_by_field(field, values)
        return {str(user[field]): user for user in found}

    def account(self, cid: str) -> dict[str, Any]:
        found = self.users("idnumber", [cid])
        assert list(found) == [cid], f"no single account for {cid}"
        return found[cid]

    def contact(self, cid: str) -> dict[str, Any]:
        record = self.sf.store.get("Contact", cid)
        assert record is not None
        return record

    def user_writes(self) -> int:
        """user_created + user_updated events in Moodle's own log."""
        return int(self.moodle.site.sql(
            "SELECT count(*) FROM mdl_logstore_standard_log WHERE eventname IN "
            "('\\core\\event\\user_created', '\\core\\event\\user_updated')", "moodle"))


@pytest.fixture(scope="module")
def world(real_moodle: RealMoodle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("members")
    admin = real_moodle.client(tmp)
    sf = SalesforceSandbox(tmp / "salesforce")
    sf.start()
    try:
        report = seed(sf, _HandMadeAccounts(admin), members=MEMBERS, seed=7)  # type: ignore[arg-type]
        special = {report.joiner, *report.shared_email_contacts}
        extra = [
            cid for cid in report.contact_ids
            if cid not in report.participants and cid not in special
            and sf.store.get("Contact", cid)["Member_Status__c"] == "Active"
            and sf.store.get("Contact", cid)["Email"]
        ][:EXTRA_PARTICIPANTS]
        for cid in extra:
            sf.store.update("Contact", cid, {"Mentorship_Role__c": "Mentee"})
        report.participants.extend(extra)
        settings = real_moodle.settings(
            tmp / "mentorsync",
            salesforce={
                "auth": "password", "username": sf.username, "password": sf.password,
                "security_token": sf.security_token, "domain": f"{sf.host}:{sf.port}",
                "ca_bundle": sf.ca_file, "org_ids": [sf.org_id],
            },
            members={"mass_change_share": 0.2},
            # Several look-ups in flight from the first call: the sync starts inside the race.
            moodle={"max_batch_items": 50},
        )
        # Seeding called Moodle; re-arm the enrolment-check race for the first sync.
        real_moodle.site.forget_enrolment_check(real_moodle.userid)
        ctx = Context(settings)
        try:
            yield World(real_moodle, sf, report, ctx, admin)
        finally:
            ctx.close()
    finally:
        sf.stop()


def in_scope(world: World) -> list[str]:
    return [c for c in world.report.participants
            if world.contact(c)["Member_Status__c"] != "Lapsed"]


def test_first_sync_creates_and_adopts(world: World) -> None:
    result = world.run()

    assert result.status == "failed_records"
    assert result.counts["adopted"] == 1
    assert result.counts["conflicts"] == 1  # the seed's shared email
    participants = in_scope(world)
    # Everyone but the conflict and the adopted account was created.
    assert result.counts["created"] == len(participants) - 2
    accounts = world.users("idnumber", participants)
    assert len(accounts) == len(participants) - 1
    # Moodle's own answer: names (moodle/site:viewfullnames), email, profile fields.
    for cid, account in accounts.items():
        contact = world.contact(cid)
        assert account["firstname"] == contact["FirstName"]
        assert account["email"] == contact["Email"]
        assert account["suspended"] is False
        fields = {f["shortname"]: f["value"] for f in account.get("customfields", [])}
        assert fields["memberstatus"] == contact["Member_Status__c"]
        assert contact["LMS_User_Id__c"] == str(account["id"])
    uid, adoptee = world.report.adoptable[0]
    assert world.account(adoptee)["id"] == uid


def test_a_rerun_writes_nothing_to_moodle(world: World) -> None:
    writes = world.user_writes()
    calls = dict(world.ctx.moodle.calls)
    world.run()
    assert world.user_writes() == writes
    for function in ("core_user_create_users", "core_user_update_users"):
        assert world.ctx.moodle.calls[function] == calls.get(function, 0), function


def test_email_change_lapse_and_return(world: World) -> None:
    report, store = world.report, world.sf.store
    before = world.account(report.email_changer)
    store.update("Contact", report.email_changer, {"Email": report.email_changer_new})
    store.update("Contact", report.lapser, {"Member_Status__c": "Lapsed"})

    result = world.run()

    assert result.counts["suspended"] == 1
    moved = world.account(report.email_changer)
    assert (moved["id"], moved["username"]) == (before["id"], before["username"])
    assert moved["email"] == report.email_changer_new
    assert world.account(report.lapser)["suspended"] is True
    assert world.contact(report.lapser)["LMS_Sync_Status__c"] == "Suspended"

    store.update("Contact", report.lapser, {"Member_Status__c": "Active"})
    back = world.run()
    assert back.counts["reactivated"] == 1
    assert world.account(report.lapser)["suspended"] is False


def test_a_batch_with_a_row_moodle_refuses_is_bisected(world: World) -> None:
    store = world.sf.store
    joiners = [
        store.create("Contact", {
            "FirstName": f"Joiner{n}", "LastName": "New", "Email": f"joiner{n}@example.org",
            "Member_Status__c": "Active", "Mentorship_Role__c": "Mentee",
            "Practice_Setting__c": "Hospital pharmacy", "Region__c": "West",
        })
        for n in range(7)
    ]
    refused = joiners[4]
    store.update("Contact", refused, {"Email": REFUSED_EMAIL})
    creates = world.ctx.moodle.calls["core_user_create_users"]

    result = world.run()

    assert result.counts["created"] == 6
    # One refused call of seven, then halves down to the bad row: more than one call, far
    # fewer than one per row and bisection level.
    assert 3 <= world.ctx.moodle.calls["core_user_create_users"] - creates <= 8
    accounts = world.users("idnumber", joiners)
    assert sorted(accounts) == sorted(set(joiners) - {refused})
    contact = world.contact(refused)
    assert contact["LMS_Sync_Status__c"] == "Failed"
    assert contact["LMS_Sync_Error__c"] == "moodle:invalidparameter"

    store.update("Contact", refused, {"Email": "refused.row@example.org"})
    fixed = world.run()
    assert fixed.counts["created"] == 1
    assert world.account(refused)["email"] == "refused.row@example.org"
