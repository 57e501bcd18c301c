"""The pure member planner: desired user vs actual account -> one action."""

from __future__ import annotations

from typing import Any

import pytest

from connector.kinds.members.plan import (
    ADOPT,
    CONFLICT,
    CREATE,
    NOTHING,
    REACTIVATE,
    REJECT,
    SKIP,
    SUSPEND,
    UPDATE,
    Action,
    Member,
    Policy,
    account_key,
    email_key,
    plan_gone,
    plan_linked,
    plan_relink,
    plan_unlinked,
    username_key,
)
from mappings.members import Account, DesiredUser

CID = "003TEST00000001AAA"
OTHER = "003TEST00000002AAA"
POLICY = Policy(
    status_policy={"Active": "reactivate", "Grace": "keep", "Lapsed": "suspend"},
    out_of_scope="suspend",
    auth="manual",
)
CUSTOM = {"memberstatus": "Active", "practicesetting": "Hospital", "region": "West"}


def desired(**fields: str) -> DesiredUser:
    values = {"firstname": "Ann", "lastname": "Lee", "email": "ann@example.org", **fields}
    return DesiredUser(CID, "ann@example.org", values, dict(CUSTOM))


def member(status: str = "Active", in_scope: bool = True, **fields: str) -> Member:
    return Member(CID, in_scope, status, desired(**fields) if in_scope else None, "", {})


def account(uid: int = 7, idnumber: str = CID, suspended: bool = False, **over: Any) -> Account:
    fields = {"firstname": "Ann", "lastname": "Lee", "email": "ann@example.org"}
    fields.update({k: v for k, v in over.items() if k in fields})
    custom = dict(CUSTOM, **over.get("custom", {}))
    return Account(
        id=uid,
        username=over.get("username", "ann@example.org"),
        idnumber=idnumber,
        email=fields["email"],
        suspended=suspended,
        fields=fields,
        customfields=custom,
    )


def no_claims(key: str) -> str | None:
    return None


def no_accounts(email: str) -> list[Account]:
    return []


def linked(m: Member, *accounts: Account, **kw: Any) -> Action:
    return plan_linked(
        m, list(accounts), POLICY, kw.get("by_email", no_accounts), kw.get("claimed", no_claims)
    )


def test_in_step_is_nothing() -> None:
    action = linked(member(), account())
    assert action.kind == NOTHING
    assert action.payload == {}


def test_update_carries_only_changed_fields() -> None:
    action = linked(member(lastname="Lee-Smith"), account(custom={"region": "East"}))
    assert action.kind == UPDATE
    assert action.payload == {
        "lastname": "Lee-Smith",
        "customfields": [{"type": "region", "value": "West"}],
    }
    assert action.moodle_id == 7


def test_email_case_only_difference_is_not_a_change() -> None:
    assert linked(member(email="Ann@Example.org"), account()).kind == NOTHING


def test_email_change_onto_another_accounts_address_is_a_conflict() -> None:
    other = account(uid=9, idnumber=OTHER, email="new@example.org")
    action = linked(
        member(email="new@example.org"),
        account(),
        by_email=lambda e: [other] if e == "new@example.org" else [],
    )
    assert action.kind == CONFLICT
    assert action.code == "conflict:email_taken"
    assert action.payload == {}


def test_email_change_claims_the_new_address() -> None:
    action = linked(member(email="new@example.org"), account())
    assert action.kind == UPDATE
    assert email_key("new@example.org") in action.claims


@pytest.mark.parametrize(
    ("status", "suspended", "kind", "after"),
    [
        ("Lapsed", False, SUSPEND, True),
        ("Lapsed", True, NOTHING, True),
        ("Grace", True, NOTHING, True),
        ("Grace", False, NOTHING, False),
        ("Active", True, REACTIVATE, False),
        (None, True, NOTHING, True),  # no status: keep as is
    ],
)
def test_status_policy(status: str | None, suspended: bool, kind: str, after: bool) -> None:
    action = linked(member(status=status), account(suspended=suspended))  # type: ignore[arg-type]
    assert action.kind == kind
    assert action.suspended is after
    if kind in (SUSPEND, REACTIVATE):
        assert action.payload == {"suspended": after}


def test_out_of_scope_suspends_per_policy() -> None:
    action = linked(member(in_scope=False), account())
    assert action.kind == SUSPEND
    assert action.payload == {"suspended": True}
    keep = Policy(POLICY.status_policy, out_of_scope="keep")
    kept = plan_linked(member(in_scope=False), [account()], keep, no_accounts, no_claims)
    assert kept.kind == NOTHING


def test_two_accounts_with_one_idnumber_is_a_conflict() -> None:
    action = linked(member(), account(7), account(8))
    assert action.kind == CONFLICT
    assert action.code == "conflict:duplicate_idnumber"


def test_rejected_linked_member_keeps_its_account_untouched() -> None:
    m = Member(CID, True, "Active", None, "mapping:email_missing", {})
    action = linked(m, account())
    assert action.kind == REJECT
    assert action.payload == {}
    assert action.code == "mapping:email_missing"
    assert action.moodle_id == 7


def test_unlinked_without_match_is_created() -> None:
    action = plan_unlinked(member(), [], POLICY, no_claims)
    assert action.kind == CREATE
    assert action.payload["idnumber"] == CID
    assert action.payload["username"] == "ann@example.org"
    assert action.payload["auth"] == "manual"
    assert action.payload["createpassword"] is True
    assert set(action.claims) == {username_key("ann@example.org"), email_key("ann@example.org")}


def test_sso_auth_sends_no_password_request() -> None:
    sso = Policy(POLICY.status_policy, auth="oauth2")
    action = plan_unlinked(member(), [], sso, no_claims)
    assert action.payload["auth"] == "oauth2"
    assert "createpassword" not in action.payload


def test_unlinked_single_unlinked_match_is_adopted() -> None:
    match = account(uid=12, idnumber="", username="annlee", firstname="Annie")
    action = plan_unlinked(member(), [match], POLICY, no_claims)
    assert action.kind == ADOPT
    assert action.moodle_id == 12
    assert action.payload == {"idnumber": CID, "firstname": "Ann"}
    assert account_key(12) in action.claims


def test_adopting_a_suspended_account_of_an_active_member_reactivates_it() -> None:
    match = account(uid=12, idnumber="", suspended=True)
    action = plan_unlinked(member(), [match], POLICY, no_claims)
    assert action.kind == ADOPT
    assert action.payload["suspended"] is False


def test_match_linked_to_another_person_is_a_conflict() -> None:
    by_username = account(uid=12, idnumber=OTHER, email="x@example.org")
    action = plan_unlinked(member(), [by_username], POLICY, no_claims)
    assert action.kind == CONFLICT
    assert action.code == "conflict:username_taken"
    by_email = account(uid=13, idnumber=OTHER, username="someone")
    assert plan_unlinked(member(), [by_email], POLICY, no_claims).code == "conflict:email_taken"


def test_several_matches_are_ambiguous() -> None:
    matches = [account(uid=12, idnumber=""), account(uid=13, idnumber="")]
    action = plan_unlinked(member(), matches, POLICY, no_claims)
    assert action.kind == CONFLICT
    assert action.code == "conflict:ambiguous_match"


def test_claims_of_earlier_contacts_in_the_run_make_a_conflict() -> None:
    claims = {email_key("ann@example.org"): OTHER}
    action = plan_unlinked(member(), [], POLICY, claims.get)
    assert action.kind == CONFLICT
    assert action.code == "conflict:email_taken"
    adopted = {account_key(12): OTHER}
    match = account(uid=12, idnumber="")
    assert plan_unlinked(member(), [match], POLICY, adopted.get).kind == CONFLICT


def test_own_claims_are_not_a_conflict() -> None:
    claims = {email_key("ann@example.org"): CID, username_key("ann@example.org"): CID}
    assert plan_unlinked(member(), [], POLICY, claims.get).kind == CREATE


def test_lapsed_member_without_account_is_skipped() -> None:
    assert plan_unlinked(member(status="Lapsed"), [], POLICY, no_claims).kind == SKIP


def test_out_of_scope_without_account_is_nothing() -> None:
    assert plan_unlinked(member(in_scope=False), [], POLICY, no_claims).kind == NOTHING


def test_gone_contact_is_suspended_without_writeback() -> None:
    action = plan_gone(CID, account(), POLICY, note="deleted")
    assert action.kind == SUSPEND
    assert action.writeback is None
    assert plan_gone(CID, account(suspended=True), POLICY).kind == NOTHING


def test_relink_points_the_account_at_the_survivor() -> None:
    loser_account = account(uid=5, idnumber=OTHER, custom={"region": "East"})
    action = plan_relink(member(), loser_account, POLICY, OTHER)
    assert action.kind == ADOPT
    assert action.payload == {
        "idnumber": CID,
        "customfields": [{"type": "region", "value": "West"}],
    }
    assert OTHER in action.note


def test_plan_details_hold_no_values() -> None:
    action = linked(member(email="secret@example.org", lastname="Private"), account())
    details = action.details()
    assert "email" in details and "lastname" in details
    assert "secret" not in details and "Private" not in details
