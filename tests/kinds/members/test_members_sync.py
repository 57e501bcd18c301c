"""The member sync end to end at HTTP level: real clients, ``responses`` fakes of both systems."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import responses
from members_fakes import (
    MOODLE_ENDPOINT,
    FakeMoodle,
    FakeSalesforce,
    contact_id,
    make_context,
    sf_time,
)
from sqlalchemy import select

from connector.clients.salesforce.client import ApiBudget
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.members.run import CURSOR
from connector.registry import kinds
from connector.state import bookkeeping
from connector.state.database import FailedRecord, Run

CREATE = "core_user_create_users"
UPDATE = "core_user_update_users"
LOOKUP = "core_user_get_users_by_field"


@dataclass
class Env:
    """The fakes, a context on them, and a way to run the member sync."""

    moodle: FakeMoodle
    sf: FakeSalesforce
    ctx: Context
    rsps: responses.RequestsMock

    def run(self, mode: str = "incremental", **kwargs: Any) -> RunResult:
        return MembersSync().run(self.ctx, SyncRequest(mode=mode, **kwargs))  # type: ignore[arg-type]

    def settle(self) -> RunResult:
        """Run once more to read the write-back echo; it must write nothing."""
        writes, updates = self.moodle.write_calls, len(self.sf.updates)
        result = self.run()
        assert self.moodle.write_calls == writes, (
            f"the echo run wrote to Moodle: {self.moodle.writes[writes:]}, {result.counts}"
        )
        assert len(self.sf.updates) == updates, "the echo run wrote to Salesforce"
        self.sf.time_passes()
        return result

    def contact(self, cid: str) -> dict[str, Any]:
        return self.sf.contacts[cid]

    def account(self, cid: str) -> dict[str, Any]:
        found = self.moodle.by_idnumber(cid)
        assert len(found) == 1, f"{len(found)} accounts for {cid}"
        return found[0]

    def failures(self) -> dict[str, FailedRecord]:
        with self.ctx.db.session() as session:
            rows = session.scalars(select(FailedRecord).where(FailedRecord.kind == "members"))
            return {r.record_id: r for r in rows}

    def cursor(self) -> dt.datetime | None:
        with self.ctx.db.session() as session:
            return bookkeeping.get_cursor(session, CURSOR)


def make_env(tmp_path: Path, **members: Any) -> Iterator[Env]:
    members.setdefault("lookback_seconds", 0)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        moodle, sf = FakeMoodle(), FakeSalesforce()
        moodle.install(rsps)
        sf.install(rsps)
        ctx = make_context(tmp_path, **members)
        try:
            yield Env(moodle, sf, ctx, rsps)
        finally:
            ctx.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


@pytest.fixture
def loose_env(tmp_path: Path) -> Iterator[Env]:
    """Guard limits that small scenarios do not trip."""
    yield from make_env(tmp_path, mass_change_share=1.0, mass_change_count=1000)


def test_registered_as_members_kind() -> None:
    # Contacts, and Moodle's own user events (the plugin's): a user changed by hand.
    assert kinds()["members"].objects == (
        "Contact",
        "moodle:\\core\\event\\user_updated",
        "moodle:\\core\\event\\user_deleted",
    )


def test_a_moodle_user_id_names_the_contact_of_that_account(env: Env) -> None:
    cid = env.sf.add(1)
    env.run()
    account = env.account(cid)
    env.moodle.users[account["id"]]["firstname"] = "Edited by hand"

    result = env.run("ids", ids=(str(account["id"]), "999999"))  # 999999: no such user

    assert result.counts["updated"] == 1
    assert env.account(cid)["firstname"] == env.contact(cid)["FirstName"]


def test_first_run_creates_accounts_in_one_call_and_writes_back(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(3)]
    env.sf.add(9, Mentorship_Role__c=None)  # not in the programme

    result = env.run()

    assert result.status == "ok"
    assert result.counts["created"] == 3
    assert env.moodle.calls[CREATE] == 1
    assert len(env.moodle.users) == 3
    user = env.account(ids[0])
    assert user["username"] == "member0@example.org"
    assert user["email"] == "member0@example.org"
    assert user["auth"] == "manual"
    assert user["custom"] == {
        "memberstatus": "Active",
        "practicesetting": "Hospital pharmacy",
        "region": "Midwest",
    }
    sent = env.moodle.writes_of(CREATE)[0]["users"][0]
    assert sent["createpassword"] == "1"
    assert "password" not in sent
    contact = env.contact(ids[0])
    assert contact["LMS_User_Id__c"] == str(user["id"])
    assert contact["LMS_Sync_Status__c"] == "Synced"
    assert contact["LMS_Sync_Error__c"] is None
    assert contact["LMS_Synced_At__c"]
    assert env.sf.calls["collections.update"] == 1
    assert env.cursor() is not None


def test_update_sends_only_the_changed_field(env: Env) -> None:
    cid = env.sf.add(1)
    env.run()
    env.settle()
    env.sf.edit(cid, Region__c="Northeast")

    result = env.run()

    assert result.counts["updated"] == 1
    (call,) = env.moodle.writes_of(UPDATE)
    assert call["users"] == [
        {
            "id": str(env.account(cid)["id"]),
            "customfields": [{"type": "region", "value": "Northeast"}],
        }
    ]
    assert env.account(cid)["custom"]["region"] == "Northeast"


def test_rerun_makes_no_moodle_writes_and_settles_to_no_calls(env: Env) -> None:
    for n in range(4):
        env.sf.add(n)
    env.run()
    writes = env.moodle.write_calls

    echo = env.settle()  # reads the Contacts the write-back touched
    assert echo.counts["unchanged"] == 4
    moodle_calls, sf_calls = sum(env.moodle.calls.values()), sum(env.sf.calls.values())

    quiet = env.run()

    assert quiet.status == "ok"
    assert env.moodle.write_calls == writes
    assert sum(env.moodle.calls.values()) == moodle_calls  # nothing to look up
    assert sum(env.sf.calls.values()) - sf_calls == 2  # the changed query and getDeleted


def test_email_change_updates_the_same_account(env: Env) -> None:
    cid = env.sf.add(1)
    env.run()
    env.settle()
    before = env.account(cid)
    env.sf.edit(cid, Email="new.address@example.org")

    result = env.run()

    assert result.counts["updated"] == 1
    assert env.moodle.calls[CREATE] == 1  # only the first run's
    after = env.account(cid)
    assert after["id"] == before["id"]
    assert after["email"] == "new.address@example.org"
    assert after["username"] == "member1@example.org"  # never renamed silently
    assert env.moodle.writes_of(UPDATE)[0]["users"][0] == {
        "id": str(after["id"]),
        "email": "new.address@example.org",
    }


def test_two_contacts_sharing_an_email_get_one_account_and_a_conflict(env: Env) -> None:
    first = env.sf.add(1, Email="family@example.org")
    second = env.sf.add(2, Email="family@example.org")

    result = env.run()

    assert result.status == "failed_records"
    assert result.counts["created"] == 1
    assert result.counts["conflicts"] == 1
    assert len(env.moodle.users) == 1
    assert env.account(first)["email"] == "family@example.org"
    assert env.moodle.by_idnumber(second) == []
    assert env.contact(second)["LMS_Sync_Status__c"] == "Conflict"
    assert env.contact(second)["LMS_Sync_Error__c"] in (
        "conflict:username_taken",
        "conflict:email_taken",
    )
    assert env.failures()[second].stage == "plan"

    # Next time the account exists and belongs to the first Contact: still a conflict.
    env.sf.edit(second, FirstName="Changed")
    again = env.run()
    assert again.counts["conflicts"] == 1
    assert env.moodle.calls[CREATE] == 1
    assert len(env.moodle.users) == 1


def test_adopts_the_one_unlinked_account_with_the_same_email(env: Env) -> None:
    existing = env.moodle.add_user(username="mary.k", email="member1@example.org")
    cid = env.sf.add(1)

    result = env.run()

    assert result.counts["adopted"] == 1
    assert env.moodle.calls[CREATE] == 0
    adopted = env.account(cid)
    assert adopted["id"] == existing["id"]
    assert adopted["username"] == "mary.k"  # kept
    sent = env.moodle.writes_of(UPDATE)[0]["users"][0]
    assert sent["idnumber"] == cid
    assert sent["firstname"] == "First1"
    assert env.contact(cid)["LMS_User_Id__c"] == str(existing["id"])


def test_conflict_when_the_username_belongs_to_another_linked_person(env: Env) -> None:
    env.moodle.add_user(
        username="member1@example.org", email="other@example.org", idnumber=contact_id(77)
    )
    cid = env.sf.add(1)

    result = env.run()

    assert result.counts["conflicts"] == 1
    assert env.moodle.write_calls == 0
    assert env.contact(cid)["LMS_Sync_Error__c"] == "conflict:username_taken"


def test_conflict_when_several_accounts_match(env: Env) -> None:
    env.moodle.add_user(username="member1@example.org", email="a@example.org")
    env.moodle.add_user(username="someone", email="member1@example.org")
    cid = env.sf.add(1)

    result = env.run()

    assert result.counts["conflicts"] == 1
    assert env.moodle.write_calls == 0
    assert env.contact(cid)["LMS_Sync_Error__c"] == "conflict:ambiguous_match"
    assert env.failures()[cid].error_code == "conflict:ambiguous_match"


def test_lapse_suspends_grace_keeps_and_return_reactivates(loose_env: Env) -> None:
    env = loose_env
    cid = env.sf.add(1)
    env.run()
    env.settle()

    env.sf.edit(cid, Member_Status__c="Lapsed")
    lapsed = env.run()
    assert lapsed.counts["suspended"] == 1
    assert env.account(cid)["suspended"] is True
    assert env.contact(cid)["LMS_Sync_Status__c"] == "Suspended"
    env.settle()

    env.sf.edit(cid, Member_Status__c="Grace")
    grace = env.run()
    assert grace.counts["updated"] == 1  # the memberstatus field, not the suspension
    assert env.account(cid)["suspended"] is True
    env.settle()

    env.sf.edit(cid, Member_Status__c="Active")
    back = env.run()
    assert back.counts["reactivated"] == 1
    assert env.account(cid)["suspended"] is False
    assert env.contact(cid)["LMS_Sync_Status__c"] == "Synced"
    assert env.moodle.calls[CREATE] == 1


def test_lapsed_member_without_account_is_not_created(env: Env) -> None:
    env.sf.add(1, Member_Status__c="Lapsed")

    result = env.run()

    assert result.counts["skipped"] == 1
    assert env.moodle.write_calls == 0


def test_leaving_the_programme_suspends_the_account(loose_env: Env) -> None:
    env = loose_env
    cid = env.sf.add(1)
    env.run()
    env.settle()
    env.sf.edit(cid, Mentorship_Role__c=None)

    result = env.run()

    assert result.counts["suspended"] == 1
    assert env.account(cid)["suspended"] is True


def test_deleted_contact_suspends_its_account(loose_env: Env) -> None:
    env = loose_env
    cid = env.sf.add(1)
    env.sf.add(2)
    env.run()
    env.settle()
    env.sf.delete(cid)

    result = env.run()

    assert result.counts["suspended"] == 1
    assert env.account(cid)["suspended"] is True
    assert env.sf.calls["getDeleted"] >= 1


def test_merge_repoints_the_account_to_a_survivor_without_one(loose_env: Env) -> None:
    env = loose_env
    loser = env.sf.add(1)
    env.run()
    env.settle()
    account_id = env.account(loser)["id"]
    survivor = env.sf.add(2)  # a duplicate Contact created later, never synced
    env.sf.contacts[survivor]["Mentorship_Role__c"] = None  # not yet synced: out of scope
    env.sf.edit(survivor, Mentorship_Role__c="Mentee")
    env.sf.delete(loser, master=survivor)

    result = env.run()

    assert result.counts["adopted"] == 1
    assert env.moodle.calls[CREATE] == 1  # the first run's only: the survivor took the account
    relinked = env.account(survivor)
    assert relinked["id"] == account_id
    assert env.moodle.by_idnumber(loser) == []
    assert env.contact(survivor)["LMS_User_Id__c"] == str(account_id)


def test_merge_suspends_the_losers_account_when_the_survivor_has_one(loose_env: Env) -> None:
    env = loose_env
    loser, survivor = env.sf.add(1), env.sf.add(2)
    env.run()
    env.settle()
    env.sf.delete(loser, master=survivor)

    result = env.run()

    assert result.counts["suspended"] == 1
    assert env.account(loser)["suspended"] is True
    assert env.account(survivor)["suspended"] is False


def test_validation_rejects_the_record_and_the_rest_go_on(env: Env) -> None:
    good = env.sf.add(1)
    no_email = env.sf.add(2, Email=None)
    long_name = env.sf.add(3, FirstName="A" * 101)
    bad_username = env.sf.add(4, Email="first+tag@example.org")

    result = env.run()

    assert result.status == "failed_records"
    assert result.counts["created"] == 1
    assert result.counts["rejected"] == 3
    assert env.account(good)
    assert len(env.moodle.users) == 1
    assert env.contact(no_email)["LMS_Sync_Error__c"] == "mapping:email_missing"
    assert env.contact(no_email)["LMS_Sync_Status__c"] == "Failed"
    assert env.contact(long_name)["LMS_Sync_Error__c"] == "mapping:firstname_too_long"
    assert env.contact(bad_username)["LMS_Sync_Error__c"] == "mapping:username_invalid"
    failures = env.failures()
    assert failures[no_email].error_code == "mapping:email_missing"
    assert failures[no_email].stage == "mapping"
    assert good not in failures

    # Fixed in Salesforce: the next run creates it and clears the failure.
    env.sf.edit(no_email, Email="found@example.org")
    fixed = env.run()
    assert fixed.counts["created"] == 1
    assert no_email not in env.failures()
    assert env.contact(no_email)["LMS_Sync_Status__c"] == "Synced"


def test_a_batch_with_one_bad_row_is_bisected_and_the_others_created(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(8)]
    env.moodle.refuse_usernames = {"member5@example.org"}

    result = env.run()

    assert result.status == "failed_records"
    assert result.counts["created"] == 7
    assert result.counts["failed"] == 1
    assert len(env.moodle.users) == 7
    assert env.moodle.by_idnumber(ids[5]) == []
    # 8 -> 4+4 -> the bad half 2+2 -> 1+1: 1 + 2 + 2 + 2 calls.
    assert env.moodle.calls[CREATE] == 7
    failure = env.failures()[ids[5]]
    assert failure.error_code == "moodle:invalidparameter"
    assert failure.stage == "moodle:core_user_create_users"
    assert env.contact(ids[5])["LMS_Sync_Error__c"] == "moodle:invalidparameter"


def test_read_timeout_on_create_is_resolved_by_rereading_without_duplicates(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(3)]
    env.moodle.timeout_create_calls = {1}  # created, but the answer never comes

    result = env.run()

    assert result.status == "ok"
    assert result.counts["created"] == 3
    assert env.moodle.calls[CREATE] == 1  # never sent again
    assert len(env.moodle.users) == 3
    for cid in ids:
        assert env.contact(cid)["LMS_User_Id__c"] == str(env.account(cid)["id"])
    # Re-running finds everything in place.
    env.settle()
    assert len(env.moodle.users) == 3


def test_read_timeout_then_only_the_missing_users_are_sent_again(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(4)]
    env.moodle.refuse_usernames = {"member3@example.org"}
    env.moodle.timeout_create_calls = {2}  # the first half after bisection times out

    result = env.run()

    assert result.counts["created"] == 3
    assert result.counts["failed"] == 1
    assert len(env.moodle.users) == 3
    assert all(len(env.moodle.by_idnumber(cid)) == 1 for cid in ids[:3])


def test_mass_change_guard_stops_before_applying(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(40)]
    env.run()
    env.settle()
    cursor = env.cursor()
    writes, updates = env.moodle.write_calls, len(env.sf.updates)
    for cid in ids[:3]:  # 3 of 40 = 7.5%, above 5%
        env.sf.edit(cid, Member_Status__c="Lapsed")

    stopped = env.run()

    assert stopped.status == "stopped"
    assert stopped.reason.startswith("mass_change: would suspend 3 of 40")
    assert env.moodle.write_calls == writes
    assert len(env.sf.updates) == updates
    assert env.cursor() == cursor

    allowed = env.run(allow_mass_change=True)
    assert allowed.status == "ok"
    assert allowed.counts["suspended"] == 3
    assert all(env.account(cid)["suspended"] for cid in ids[:3])


def test_guard_counts_the_number_limit_too(tmp_path: Path) -> None:
    for env in make_env(tmp_path, mass_change_share=1.0, mass_change_count=1):
        ids = [env.sf.add(n) for n in range(4)]
        env.run()
        env.settle()
        for cid in ids[:2]:
            env.sf.edit(cid, Member_Status__c="Lapsed")
        assert env.run().status == "stopped"


def test_full_run_with_an_empty_source_stops(env: Env) -> None:
    cid = env.sf.add(1)
    env.run()
    env.sf.contacts[cid]["Mentorship_Role__c"] = None  # an emptied field map scope, say

    result = env.run("full")

    assert result.status == "stopped"
    assert result.reason.startswith("source_empty")
    assert env.account(cid)["suspended"] is False


def test_cursor_overlap_rereads_records_sharing_the_cursor_timestamp(env: Env) -> None:
    first = env.sf.add(1)
    env.run()
    env.settle()
    cursor = env.cursor()
    assert cursor is not None
    # A record committed late with the very stamp the last run ended at, and one that the last
    # run already saw, sharing that stamp.
    stamp = sf_time(cursor)
    late = env.sf.add(2, SystemModstamp=stamp)
    env.sf.contacts[first]["SystemModstamp"] = stamp
    writes = env.moodle.write_calls

    result = env.run()

    assert result.counts["created"] == 1
    assert env.account(late)
    assert env.moodle.write_calls == writes + 1  # the create only; the first is in step
    assert result.counts["read"] == 2


def test_crash_between_apply_and_cursor_save_converges_without_duplicates(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [env.sf.add(n) for n in range(5)]

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(bookkeeping, "save_cursor", crash)
    with pytest.raises(RuntimeError):
        env.run()
    monkeypatch.undo()
    assert env.cursor() is None
    assert len(env.moodle.users) == 5

    result = env.run()

    assert result.status == "ok"
    assert result.counts.get("created", 0) == 0
    assert env.moodle.calls[CREATE] == 1
    assert len(env.moodle.users) == 5
    assert all(len(env.moodle.by_idnumber(cid)) == 1 for cid in ids)
    assert env.cursor() is not None


def test_update_warning_fails_only_that_member(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(3)]
    env.run()
    env.settle()
    for cid in ids:
        env.sf.edit(cid, Region__c="South")
    # The account disappears between the read and the write: Moodle warns for that user only.
    gone_id = env.account(ids[1])["id"]
    original = env.moodle._update

    def update_without(items: list[dict[str, Any]]) -> Any:
        env.moodle.users.pop(gone_id, None)
        return original(items)

    env.moodle._update = update_without  # type: ignore[method-assign]

    result = env.run()

    assert result.counts["updated"] == 2
    assert result.counts["failed"] == 1
    assert env.failures()[ids[1]].error_code == "moodle:invaliduserid"
    assert env.contact(ids[1])["LMS_Sync_Status__c"] == "Failed"
    assert env.contact(ids[0])["LMS_Sync_Status__c"] == "Synced"


def test_writeback_error_is_a_failed_record(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(2)]
    env.sf.refuse_updates = {ids[0]: "FIELD_CUSTOM_VALIDATION_EXCEPTION"}

    result = env.run()

    assert result.status == "failed_records"
    assert result.counts["created"] == 2
    assert result.counts["failed"] == 1
    failure = env.failures()[ids[0]]
    assert failure.error_code == "salesforce:FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert failure.stage == "salesforce:writeback"


def test_dry_run_prints_the_plan_and_changes_nothing(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(2)]
    env.sf.add(3, Email=None)

    result = env.run(dry_run=True)

    assert result.status == "dry_run"
    kinds_planned = sorted(line[0] for line in result.plan)
    assert kinds_planned == ["create", "create", "reject"]
    assert {line[1] for line in result.plan} >= set(ids)
    assert all("@" not in line[2] for line in result.plan)  # no emails in the plan
    assert env.moodle.write_calls == 0
    assert env.sf.updates == []
    assert env.cursor() is None
    assert env.failures() == {}


def test_dry_run_shows_a_writeback_only_line(env: Env) -> None:
    cid = env.sf.add(1)
    env.run()
    env.settle()
    env.sf.contacts[cid]["LMS_Sync_Status__c"] = None  # cleared by someone in Salesforce
    env.sf.edit(cid)

    result = env.run(dry_run=True)

    assert result.plan == [("writeback", cid, "fields: LMS_Sync_Status__c,LMS_Synced_At__c")]
    assert env.sf.contacts[cid]["LMS_Sync_Status__c"] is None

    env.run()
    assert env.sf.contacts[cid]["LMS_Sync_Status__c"] == "Synced"


def test_budget_above_the_share_stops_before_writing(env: Env) -> None:
    env.sf.add(1)
    # The fake sends no Sforce-Limit-Info; the reading the client would have from one:
    env.ctx.salesforce.budget = ApiBudget(used=14_900, limit=15_000)

    result = env.run()

    assert result.status == "stopped"
    assert result.reason.startswith("salesforce:API_BUDGET_SHARE_EXCEEDED")
    assert env.moodle.write_calls == 0
    assert env.cursor() is None


def test_a_run_stopped_midway_counts_everything_applied_before_the_stop(env: Env) -> None:
    # The daily API budget runs out after the first write-back call: the run stops, and its
    # counts still cover every account created and every Contact written back before that.
    for n in range(450):
        env.sf.add(n)
    env.sf.budget_spent_after = 1

    result = env.run()

    assert result.status == "stopped"
    assert result.reason.startswith("salesforce:REQUEST_LIMIT_EXCEEDED")
    assert result.counts["created"] == len(env.moodle.users)
    assert len(env.moodle.users) >= 200
    assert result.counts["written_back"] == 200
    assert env.cursor() is None
    with env.ctx.db.session() as session:
        run = session.get(Run, result.run_id)
        assert run is not None and run.counts == result.counts and run.status == "stopped"

    # The next run (budget back) writes back the rest without creating anyone twice.
    env.sf.budget_spent_after = None
    again = env.run()
    assert again.status == "ok", again.reason
    assert len(env.moodle.users) == 450
    assert again.counts.get("created", 0) == 450 - result.counts["created"]


def test_ctrl_c_records_the_run_as_interrupted(env: Env) -> None:
    env.sf.add(1)

    def interrupt(done: int, total: int | None) -> None:
        raise KeyboardInterrupt  # what SIGINT raises in the main thread, here mid-run

    with pytest.raises(KeyboardInterrupt):
        MembersSync().run(env.ctx, SyncRequest(mode="incremental"), interrupt)

    with env.ctx.db.session() as session:
        run = session.scalars(select(Run)).one()
    assert (run.status, run.error) == ("interrupted", "interrupted: stopped by the operator")
    assert run.finished_at is not None
    assert env.cursor() is None


def test_ids_mode_reconciles_only_those_and_keeps_the_cursor(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(3)]

    result = env.run("ids", ids=(ids[1],))

    assert result.counts["created"] == 1
    assert len(env.moodle.users) == 1
    assert env.account(ids[1])
    assert env.cursor() is None


def test_ids_mode_for_a_deleted_contact_suspends_its_account(loose_env: Env) -> None:
    env = loose_env
    cid = env.sf.add(1)
    env.run()
    env.sf.delete(cid)

    result = env.run("ids", ids=(cid,))

    assert result.counts["suspended"] == 1
    assert env.account(cid)["suspended"] is True


def test_moodle_outage_stops_the_run_without_moving_the_cursor(env: Env) -> None:
    env.sf.add(1)
    env.rsps.replace(responses.POST, MOODLE_ENDPOINT, status=503, body="busy")

    result = env.run()

    assert result.status == "error"
    assert result.reason.startswith("moodle:http503")
    assert env.cursor() is None


# --- review additions: stronger no-write guarantees, convergence, shared emails ----------------


def test_full_rerun_in_step_writes_nothing_anywhere(env: Env) -> None:
    for n in range(5):
        env.sf.add(n)
    env.run()
    env.settle()
    writes, updates = env.moodle.write_calls, len(env.sf.updates)

    full = env.run("full")

    assert full.status == "ok"
    assert full.counts["unchanged"] == 5
    assert env.moodle.write_calls == writes
    assert len(env.sf.updates) == updates


def test_update_writes_back_only_the_sync_time(env: Env) -> None:
    cid = env.sf.add(1)
    env.run()
    env.settle()
    before = len(env.sf.updates)
    env.sf.edit(cid, Region__c="Northeast")

    env.run()

    (record,) = env.sf.updates[before:]
    assert set(record) == {"Id", "LMS_Synced_At__c"}  # id, status and error are unchanged


def test_dry_run_with_changes_of_every_kind_writes_nothing_anywhere(loose_env: Env) -> None:
    env = loose_env
    ids = [env.sf.add(n) for n in range(5)]
    bad = env.sf.add(9, Email=None)
    env.run()
    env.settle()
    cursor, failures = env.cursor(), env.failures()
    assert set(failures) == {bad}
    attempts = failures[bad].attempts
    env.sf.edit(ids[0], Region__c="Northeast")
    env.sf.edit(ids[1], Member_Status__c="Lapsed")
    env.sf.edit(ids[2], Email="moved@example.org")
    env.sf.delete(ids[3])
    env.sf.add(7)
    env.sf.edit(bad, FirstName="Still no email")
    users = {uid: dict(u, custom=dict(u["custom"])) for uid, u in env.moodle.users.items()}
    writes, updates = env.moodle.write_calls, len(env.sf.updates)

    result = env.run(dry_run=True)

    assert result.status == "dry_run"
    planned = sorted(kind for kind, _, _ in result.plan)
    assert planned == ["create", "reject", "suspend", "suspend", "update", "update"]
    assert env.moodle.write_calls == writes
    assert env.moodle.users == users
    assert len(env.sf.updates) == updates
    assert env.cursor() == cursor
    assert env.failures()[bad].attempts == attempts


def test_outage_between_moodle_writes_and_writeback_converges(env: Env) -> None:
    ids = [env.sf.add(n) for n in range(4)]
    env.sf.updates_down = True

    broken = env.run()

    assert broken.status == "error"
    assert len(env.moodle.users) == 4  # Moodle was written before Salesforce went down
    assert env.cursor() is None
    assert all(env.contact(cid)["LMS_User_Id__c"] is None for cid in ids)
    env.sf.updates_down = False

    healed = env.run()

    assert healed.status == "ok"
    assert healed.counts.get("created", 0) == 0
    assert env.moodle.calls[CREATE] == 1
    assert len(env.moodle.users) == 4
    for cid in ids:
        assert env.contact(cid)["LMS_User_Id__c"] == str(env.account(cid)["id"])
        assert env.contact(cid)["LMS_Sync_Status__c"] == "Synced"
    assert env.cursor() is not None


@pytest.mark.parametrize("chunk_size", [2000, 2])
def test_existing_account_matching_an_email_two_contacts_share_is_adopted_by_neither(
    env: Env, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    import connector.kinds.members.read as members_module

    monkeypatch.setattr(members_module, "CHUNK_SIZE", chunk_size)  # also across chunks
    existing = env.moodle.add_user(username="family", email="family@example.org")
    first = env.sf.add(1, Email="family@example.org")
    others = [env.sf.add(n) for n in range(2, 6)]
    second = env.sf.add(6, Email="Family@Example.org")

    result = env.run()

    assert result.counts["conflicts"] == 2
    assert result.counts.get("adopted", 0) == 0
    assert result.counts["created"] == len(others)
    assert env.moodle.users[existing["id"]]["idnumber"] == ""  # linked to nobody
    assert not any(
        existing["id"] == int(u["id"]) for c in env.moodle.writes_of(UPDATE) for u in c["users"]
    )
    for cid in (first, second):
        assert env.contact(cid)["LMS_Sync_Status__c"] == "Conflict"
        assert env.contact(cid)["LMS_Sync_Error__c"] == "conflict:ambiguous_match"
        assert env.contact(cid)["LMS_User_Id__c"] is None
        assert env.failures()[cid].error_code == "conflict:ambiguous_match"


def test_a_stale_error_is_cleared_when_nothing_is_left_to_say(env: Env) -> None:
    cid = env.sf.add(1, Email=None)
    env.run()
    assert env.contact(cid)["LMS_Sync_Error__c"] == "mapping:email_missing"
    env.sf.edit(cid, Mentorship_Role__c=None)  # left the programme, never had an account

    result = env.run()

    assert result.status == "ok"
    assert env.contact(cid)["LMS_Sync_Status__c"] is None
    assert env.contact(cid)["LMS_Sync_Error__c"] is None
    assert cid not in env.failures()
    assert env.moodle.write_calls == 0


def test_concurrency_one_runs_without_helper_threads_and_makes_the_same_calls(
    tmp_path: Path,
) -> None:
    from connector.kinds.members.run import MembersRun

    for env in make_env(tmp_path, concurrency=1):
        for n in range(5):
            env.sf.add(n)
        run = MembersRun(env.ctx, SyncRequest(mode="incremental"))
        assert (run.lookup.threads, run.write_threads, run.background_writeback) == (1, 1, False)
        run.lookup.close()

        result = env.run()

        assert result.counts["created"] == 5
        assert env.moodle.calls[CREATE] == 1
        assert env.sf.calls["collections.update"] == 1


@pytest.mark.parametrize(
    ("key", "value"), [("concurrency", 0), ("concurrency", 17), ("mass_change_count", -1)]
)
def test_members_settings_are_checked(key: str, value: int) -> None:
    from connector.config import load_settings
    from connector.errors import ConfigError

    with pytest.raises(ConfigError, match=f"members.{key}"):
        load_settings(env={}, overrides={"members": {key: value}})


def test_a_number_type_user_id_field_reads_as_the_same_id() -> None:
    from connector.kinds.members.writeback import read_values

    fields = {"user_id": "LMS_User_Id__c", "status": "S", "error": "E"}
    assert read_values({"LMS_User_Id__c": 42.0}, fields)["user_id"] == "42"
    assert read_values({"LMS_User_Id__c": "42"}, fields)["user_id"] == "42"
