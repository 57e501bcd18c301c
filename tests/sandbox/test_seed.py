"""The seed generator: deterministic, realistic, with its special cases where the report says."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import seed

FIELDS = (
    "Id, FirstName, LastName, Email, Member_Status__c, Mentorship_Role__c, "
    "Practice_Setting__c, Region__c"
)


def contacts(sf: SalesforceSandbox) -> list[dict]:
    return sf.store.select(f"SELECT {FIELDS} FROM Contact ORDER BY Id")


def matches(sf: SalesforceSandbox) -> list[dict]:
    return sf.store.select(
        "SELECT Id, Mentor__c, Mentee__c, Status__c, Program__c, Start_Date__c, End_Date__c "
        "FROM Mentorship_Match__c ORDER BY Id"
    )


@pytest.fixture(scope="module")
def seeded():
    sf = SalesforceSandbox()
    moodle = MoodleSandbox()
    report = seed(sf, moodle, moodle_accounts=2)
    return sf, moodle, report


def test_the_same_seed_gives_the_same_association():
    one, two, other = SalesforceSandbox(), SalesforceSandbox(), SalesforceSandbox()
    report_one = seed(one, members=120, seed=7)
    report_two = seed(two, members=120, seed=7)
    seed(other, members=120, seed=8)
    assert contacts(one) == contacts(two)
    assert matches(one) == matches(two)
    assert dataclasses.asdict(report_one) == dataclasses.asdict(report_two)
    assert contacts(one) != contacts(other)


def test_counts_and_distributions(seeded):
    sf, _, report = seeded
    people = contacts(sf)
    assert len(people) == 300 == len(report.contact_ids)
    statuses = Counter(p["Member_Status__c"] for p in people)
    assert set(statuses) == {"Active", "Grace", "Lapsed"}
    assert statuses["Active"] > statuses["Grace"] + statuses["Lapsed"]
    roles = Counter(p["Mentorship_Role__c"] for p in people)
    assert set(roles) == {"Mentor", "Mentee", "Both", None}
    assert roles[None] > len(people) / 2  # most members are not in the programme
    assert {p["Id"] for p in people if p["Mentorship_Role__c"]} == set(report.participants)
    assert len({p["Practice_Setting__c"] for p in people}) > 3
    assert len({p["Region__c"] for p in people}) > 3
    assert any(not p["FirstName"].isascii() or not p["LastName"].isascii() for p in people)


def test_about_forty_active_matches_between_active_participants(seeded):
    sf, _, report = seeded
    by_id = {p["Id"]: p for p in contacts(sf)}
    all_matches = {m["Id"]: m for m in matches(sf)}
    active = [m for m in all_matches.values() if m["Status__c"] == "Active"]
    assert len(active) == 40 == len(report.active_matches)
    assert {m["Id"] for m in active} == set(report.active_matches)
    for m in active:
        assert m["Program__c"] == "GMP-2026"
        assert m["Start_Date__c"] < "2026-10-01" <= m["End_Date__c"]
        assert by_id[m["Mentor__c"]]["Mentorship_Role__c"] in ("Mentor", "Both")
        assert by_id[m["Mentee__c"]]["Mentorship_Role__c"] in ("Mentee", "Both")
        assert by_id[m["Mentor__c"]]["Member_Status__c"] == "Active"
        assert by_id[m["Mentee__c"]]["Member_Status__c"] == "Active"
    assert all_matches[report.cancelled_match]["Status__c"] == "Cancelled"
    assert all_matches[report.completed_match]["Status__c"] == "Completed"
    assert len(all_matches) == 43


def test_one_mentee_has_two_mentors(seeded):
    sf, _, report = seeded
    active = [m for m in matches(sf) if m["Status__c"] == "Active"]
    per_mentee = Counter(m["Mentee__c"] for m in active)
    assert [mentee for mentee, n in per_mentee.items() if n > 1] == [report.two_mentor_mentee]
    theirs = [m for m in active if m["Mentee__c"] == report.two_mentor_mentee]
    assert sorted(m["Id"] for m in theirs) == sorted(report.two_mentor_matches)
    assert len({m["Mentor__c"] for m in theirs}) == 2
    assert sorted(set(report.mentees)) == sorted(per_mentee)


def test_two_people_share_one_email_and_everyone_else_is_unique(seeded):
    sf, _, report = seeded
    emails = Counter(p["Email"] for p in contacts(sf) if p["Email"])
    assert [e for e, n in emails.items() if n > 1] == [report.shared_email]
    holders = sf.store.find("Contact", Email=report.shared_email)
    assert sorted(h["Id"] for h in holders) == sorted(report.shared_email_contacts)
    assert all(h["Mentorship_Role__c"] for h in holders)  # both need a Moodle account
    assert any(p["Email"] is None for p in contacts(sf))  # a few members gave no email


def test_the_email_changer_and_the_demo_people(seeded):
    sf, _, report = seeded
    changer = sf.store.get("Contact", report.email_changer)
    assert changer["Email"] == report.email_changer_old != report.email_changer_new
    assert not sf.store.find("Contact", Email=report.email_changer_new)  # not changed yet
    assert report.email_changer in report.mentees

    joiner = sf.store.get("Contact", report.joiner)
    assert joiner["Member_Status__c"] == "Active" and joiner["Mentorship_Role__c"] is None
    lapser = sf.store.get("Contact", report.lapser)
    assert lapser["Member_Status__c"] == "Active" and report.lapser in report.mentors
    special = [report.email_changer, report.joiner, report.lapser, report.two_mentor_mentee]
    assert len(set(special + report.shared_email_contacts)) == 6


def test_hand_made_moodle_accounts(seeded):
    sf, moodle, report = seeded
    [(uid, contact_id)] = report.adoptable
    user = moodle.site.users[uid]
    contact = sf.store.get("Contact", contact_id)
    assert user["email"] == contact["Email"] and user["idnumber"] == ""
    assert len(sf.store.find("Contact", Email=contact["Email"])) == 1  # unambiguous
    [(ambiguous_uid, email)] = report.ambiguous
    assert email == report.shared_email
    assert moodle.site.users[ambiguous_uid]["idnumber"] == ""


def test_seeding_sends_no_outbound_messages_and_keeps_the_report():
    sf = SalesforceSandbox(outbound_url="http://127.0.0.1:9/never")
    report = seed(sf, members=60)
    assert sf.outbound.pending == 0
    assert sf.seed_report is report
    assert report.summary()["members"] == 60


def test_larger_associations_keep_about_forty_matches():
    sf = SalesforceSandbox()
    report = seed(sf, members=3000, seed=1)
    assert len(report.active_matches) == 40
    assert sf.store.count("Contact") == 3000
    assert len(report.participants) > 80


def test_too_small_an_association_is_refused():
    with pytest.raises(ValueError, match="at least 30"):
        seed(SalesforceSandbox(), members=10)
    with pytest.raises(ValueError, match="moodle_accounts"):
        seed(SalesforceSandbox(), members=50, moodle_accounts=3)


def test_matches_in_every_status_with_exact_counts(seeded):
    sf, _, report = seeded
    all_matches = matches(sf)
    assert Counter(m["Status__c"] for m in all_matches) == {
        "Active": 40,
        "Cancelled": 1,
        "Completed": 1,
        "Proposed": 1,
    }
    assert {m["Program__c"] for m in all_matches} == {"GMP-2026"}
    proposed = sf.store.get("Mentorship_Match__c", report.proposed_match)
    assert proposed["Status__c"] == "Proposed"
    by_id = {p["Id"]: p for p in contacts(sf)}
    assert by_id[proposed["Mentee__c"]]["Member_Status__c"] == "Active"
    assert by_id[proposed["Mentee__c"]]["Mentorship_Role__c"] == "Mentee"
    # Neither person of the proposal is in an active match.
    active_people = {
        m[k] for m in all_matches if m["Status__c"] == "Active" for k in ("Mentor__c", "Mentee__c")
    }
    assert {proposed["Mentor__c"], proposed["Mentee__c"]}.isdisjoint(active_people)


def test_a_person_is_mentee_in_one_pair_and_mentor_in_another(seeded):
    sf, _, report = seeded
    active = [m for m in matches(sf) if m["Status__c"] == "Active"]
    as_mentee = [m["Id"] for m in active if m["Mentee__c"] == report.dual_role]
    as_mentor = [m["Id"] for m in active if m["Mentor__c"] == report.dual_role]
    assert [*as_mentee, *as_mentor] == report.dual_role_matches
    assert len(as_mentee) == len(as_mentor) == 1
    assert sf.store.get("Contact", report.dual_role)["Mentorship_Role__c"] == "Both"
    assert report.dual_role in report.mentors and report.dual_role in report.mentees
    # Exactly one such person; the two-mentor mentee is someone else.
    both_ways = {m["Mentee__c"] for m in active} & {m["Mentor__c"] for m in active}
    assert both_ways == {report.dual_role} != {report.two_mentor_mentee}


def test_the_smallest_association_still_has_every_case():
    sf = SalesforceSandbox()
    report = seed(sf, members=30, seed=3)
    assert len(report.active_matches) == 9
    assert report.proposed_match and report.cancelled_match and report.completed_match
    assert len(report.dual_role_matches) == 2 and len(report.two_mentor_matches) == 2
    assert sf.store.count("Mentorship_Match__c") == 12
