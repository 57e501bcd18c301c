"""Deterministic seed data: an association's members, its mentorship matches, and the awkward cases.

``seed(sf, moodle, members=300, seed=42)`` fills a fresh Salesforce sandbox with ``members``
Contacts (names, emails, status, practice setting, region, programme role) and about 40 active
``GMP-2026`` matches, plus the cases a real programme has and the demo and tests look for by
name in the :class:`SeedReport`:

- two people sharing one email (a couple's household address),
- one mentee who will change her email (the new address is in the report; nothing changes yet),
- one mentee with two mentors, one cancelled match, one completed match and one proposed match
  (``Status__c`` in every value: Proposed, Active, Completed, Cancelled),
- one person in two active pairs, mentee in one and mentor in the other (``dual_role``),
- one Active member not in the programme yet (``joiner``) and one participant about to lapse
  (``lapser``),
- on the Moodle side (if given) accounts made by hand before mentorsync, without ``idnumber``:
  one whose email matches exactly one Contact (``adoptable``), and with ``moodle_accounts=2`` one
  whose email is the shared one (``ambiguous``: must not be adopted).

The same ``seed`` gives the same data (names, emails, statuses, roles, matches and, on a fresh
sandbox, the same Ids). Records are bulk-inserted without Outbound Messages, fast enough for
50,000 members.
"""

from __future__ import annotations

import functools
import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox

PROGRAM = "GMP-2026"
MIN_MEMBERS = 30
# The special cases use the first eight pairs (and the last: the second mentor).
MIN_ACTIVE_MATCHES = 9
# The programme year: matches start before the October-March meeting window.
ACTIVE_START = "2026-09-15"
ACTIVE_END = "2027-03-31"

# fmt: off
FEMALE_NAMES = (
    "Ada", "Grace", "Mary", "Amara", "Sofia", "Chen", "Priya", "Fatima", "Olivia", "Emma",
    "Aisha", "Hannah", "Isabel", "Mei", "Zoë", "Siobhán", "Ingrid", "Lucia", "Nadia", "Yuki",
    "Chiara", "Beatriz", "Leila", "Anika", "Rosa", "Thandiwe", "Elena", "Marta", "Noor", "Julia",
    "Camille", "Freya", "Ayesha", "Lena", "Catalina", "Imani", "Sakura", "Agnieszka", "Renée",
    "Dolores",
)
MALE_NAMES = (
    "James", "Mohammed", "Wei", "Carlos", "Liam", "Noah", "Arjun", "Kwame", "Luca", "Mateo",
    "Omar", "Hiroshi", "Jonas", "Samuel", "Diego", "Ravi", "Tomasz", "Emeka", "Felix", "Ivan",
    "José", "André", "Malik", "Henrik", "Daniel", "Kofi", "Rafael", "Yusuf", "Pierre", "Sean",
    "Björn", "Tariq", "Mikhail", "Ahmed", "Paulo", "Kenji", "Lars", "Nikolai", "Ethan", "Hugo",
)
LAST_NAMES = (
    "Lovelace", "Hopper", "Okafor", "García", "Nguyen", "Smith", "Johnson", "Patel", "Kim",
    "Müller", "Rossi", "Kowalski", "O'Connor", "Silva", "Haddad", "Tanaka", "Andersen", "Mensah",
    "Dubois", "Fernández", "Ivanova", "Chen", "Singh", "Brown", "Williams", "Jones", "Martin",
    "Schmidt", "Novak", "Costa", "Yilmaz", "Abubakar", "Cohen", "Murphy", "Hernández", "Lee",
    "Park", "Nakamura", "Osei", "Lindqvist", "Van der Berg", "MacDonald", "Santos", "Ahmed",
    "Kaur", "Petrov", "Horvat", "Moreau", "Bianchi", "Wójcik", "Eriksson", "Nielsen", "Adeyemi",
    "Banerjee", "Takahashi", "Lopez", "Walker", "Young", "King", "Wright", "Scott", "Green",
    "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter", "Phillips",
    "Evans", "Turner", "Torres", "Parker", "Collins", "Edwards", "Stewart", "Flores", "Morris",
)
DOMAINS = ("example.org", "example.com", "example.net", "mail.example.org", "pharm.example.edu")
PRACTICE_SETTINGS = (
    "Community pharmacy", "Hospital pharmacy", "Primary care", "Long-term care", "Industry",
    "Academia", "Government",
)
REGIONS = ("Northeast", "Mid-Atlantic", "Southeast", "Midwest", "Southwest", "West")
# fmt: on


@dataclass
class SeedReport:
    """What was seeded, and where the special cases are (Contact and match Ids)."""

    seed: int
    members: int
    contact_ids: list[str] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)  # Contacts with a programme role
    mentors: list[str] = field(default_factory=list)  # mentors of active matches
    mentees: list[str] = field(default_factory=list)  # mentees of active matches
    active_matches: list[str] = field(default_factory=list)
    cancelled_match: str = ""
    completed_match: str = ""
    proposed_match: str = ""  # nothing of it belongs in Moodle
    # Mentee of one active match and mentor of another, and those two matches (mentee's first)
    dual_role: str = ""
    dual_role_matches: list[str] = field(default_factory=list)
    two_mentor_mentee: str = ""
    two_mentor_matches: list[str] = field(default_factory=list)
    shared_email: str = ""
    shared_email_contacts: list[str] = field(default_factory=list)
    email_changer: str = ""
    email_changer_old: str = ""
    email_changer_new: str = ""
    joiner: str = ""  # Active member without a role: the demo puts her in the programme
    lapser: str = ""  # Active participant of an active match: the demo lapses him
    # (Moodle user id, Contact Id) of hand-made accounts matching exactly one Contact by email
    adoptable: list[tuple[int, str]] = field(default_factory=list)
    # (Moodle user id, email) of hand-made accounts whose email two Contacts share
    ambiguous: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Counts for printing."""
        return {
            "members": len(self.contact_ids),
            "participants": len(self.participants),
            "active_matches": len(self.active_matches),
            "moodle_accounts": len(self.adoptable) + len(self.ambiguous),
        }


@dataclass
class _Person:
    first: str
    last: str
    email: str | None
    status: str
    setting: str
    region: str
    role: str | None = None

    def contact(self) -> dict[str, Any]:
        return {
            "FirstName": self.first,
            "LastName": self.last,
            "Email": self.email,
            "Member_Status__c": self.status,
            "Mentorship_Role__c": self.role,
            "Practice_Setting__c": self.setting,
            "Region__c": self.region,
        }


def seed(
    sf: SalesforceSandbox,
    moodle: MoodleSandbox | None = None,
    members: int = 300,
    seed: int = 42,
    *,
    active_matches: int | None = None,
    moodle_accounts: int = 1,
) -> SeedReport:
    """Fill ``sf`` (and ``moodle``) with a deterministic association; return the report.

    ``active_matches`` defaults to 40 (fewer for small associations, at least 8).
    ``moodle_accounts``: how many hand-made Moodle accounts to add when ``moodle`` is given
    (0, 1 adoptable, 2 also an ambiguous one). The report is also kept as ``sf.seed_report``.
    """
    if members < MIN_MEMBERS:
        raise ValueError(f"seed: members must be at least {MIN_MEMBERS}, got {members}")
    if moodle_accounts not in (0, 1, 2):
        raise ValueError(f"seed: moodle_accounts must be 0, 1 or 2, got {moodle_accounts}")
    rng = random.Random(seed)
    n_active = active_matches if active_matches is not None else min(40, members * 40 // 300)
    n_active = max(MIN_ACTIVE_MATCHES, n_active)
    needed = 2 * n_active + 4  # mentors, mentees (one twice), cancelled/completed pairs, joiner
    if needed > members:
        raise ValueError(f"seed: {n_active} active matches need at least {needed} members")

    taken: set[str] = set()
    people = [_person(rng, taken) for _ in range(members)]
    order = rng.sample(range(members), needed)
    mentor_ix = order[:n_active]
    mentee_ix = order[n_active : 2 * n_active - 1]
    cancelled_ix, completed_ix = (
        order[2 * n_active - 1 : 2 * n_active + 1],
        order[2 * n_active + 1 : 2 * n_active + 3],
    )
    joiner_ix = order[2 * n_active + 3]
    for i in [*mentor_ix, cancelled_ix[0], completed_ix[0]]:
        people[i].role = "Mentor"
    for i in [*mentee_ix, cancelled_ix[1], completed_ix[1]]:
        people[i].role = "Mentee"
    # Two "Both": each serves in one role this year.
    people[mentor_ix[1]].role = "Both"
    people[mentee_ix[1]].role = "Both"
    for i in order[: 2 * n_active + 4]:
        people[i].status = "Active"
        people[i].email = people[i].email or _email(rng, people[i].first, people[i].last, taken)
    people[joiner_ix].status, people[joiner_ix].role = "Active", None
    # A waiting list: people with a role and no match yet, whatever their status.
    chosen = set(order)
    waiting = rng.sample([i for i in range(members) if i not in chosen], max(1, members // 50))
    for i in waiting:
        people[i].role = rng.choice(("Mentor", "Mentee"))

    # Mentee 0 has two mentors: pairs are (mentor k, mentee k) and (mentor last, mentee 0).
    pairs = list(zip(mentor_ix[:-1], mentee_ix, strict=True))
    pairs.append((mentor_ix[-1], mentee_ix[0]))
    # Mentee 1 ("Both") also mentors pair 7's mentee; pair 7's own mentor waits, proposed below
    # with a waiting mentee.
    proposed_mentor = pairs[7][0]
    pairs[7] = (mentee_ix[1], pairs[7][1])
    proposed_mentee = next((i for i in waiting if people[i].email), waiting[0])
    people[proposed_mentee].role, people[proposed_mentee].status = "Mentee", "Active"

    # The shared email: mentor of pair 2 and mentee of pair 3, a couple with one address.
    a, b = people[pairs[2][0]], people[pairs[3][1]]
    b.last = a.last
    shared = _email_text(f"{a.last}.household") + "@example.net"
    a.email = b.email = shared
    # The one who will change her email: mentee of pair 4, a woman's name.
    changer = people[pairs[4][1]]
    changer.first = rng.choice(FEMALE_NAMES)
    changer.email = _email(rng, changer.first, changer.last, taken)
    new_email = _email(rng, changer.first, changer.last + "-new", taken)

    contact_ids = sf.store.bulk_insert("Contact", (p.contact() for p in people))
    report = SeedReport(seed=seed, members=members, contact_ids=contact_ids)
    report.participants = [cid for cid, p in zip(contact_ids, people, strict=True) if p.role]

    matches = []
    for mentor, mentee in pairs:
        matches.append(_match(contact_ids[mentor], contact_ids[mentee], "Active", rng))
    matches.append(
        _match(
            contact_ids[cancelled_ix[0]],
            contact_ids[cancelled_ix[1]],
            "Cancelled",
            rng,
            end="2026-10-20",
        )
    )
    matches.append(
        _match(
            contact_ids[completed_ix[0]],
            contact_ids[completed_ix[1]],
            "Completed",
            rng,
            end="2026-11-15",
        )
    )
    matches.append(
        _match(contact_ids[proposed_mentor], contact_ids[proposed_mentee], "Proposed", rng)
    )
    match_ids = sf.store.bulk_insert("Mentorship_Match__c", matches)
    report.active_matches = match_ids[: len(pairs)]
    report.cancelled_match, report.completed_match = match_ids[-3], match_ids[-2]
    report.proposed_match = match_ids[-1]
    report.dual_role = contact_ids[mentee_ix[1]]
    report.dual_role_matches = [match_ids[1], match_ids[7]]
    report.mentors = sorted({contact_ids[m] for m, _ in pairs})
    report.mentees = sorted({contact_ids[m] for _, m in pairs})
    report.two_mentor_mentee = contact_ids[mentee_ix[0]]
    report.two_mentor_matches = [match_ids[0], match_ids[len(pairs) - 1]]
    report.shared_email = shared
    report.shared_email_contacts = [contact_ids[pairs[2][0]], contact_ids[pairs[3][1]]]
    report.email_changer = contact_ids[pairs[4][1]]
    report.email_changer_old = changer.email or ""
    report.email_changer_new = new_email
    report.joiner = contact_ids[joiner_ix]
    report.lapser = contact_ids[pairs[5][0]]

    if moodle is not None and moodle_accounts:
        # Pair 6's mentee had a Moodle account before mentorsync: same email, no idnumber.
        adoptee = people[pairs[6][1]]
        uid = moodle.site.create_user(
            (adoptee.email or "").lower(),
            adoptee.email or "",
            firstname=adoptee.first,
            lastname=adoptee.last,
        )
        report.adoptable.append((uid, contact_ids[pairs[6][1]]))
        if moodle_accounts == 2:
            uid = moodle.site.create_user(shared, shared, firstname=a.first, lastname=a.last)
            report.ambiguous.append((uid, shared))
    sf.seed_report = report
    return report


def _person(rng: random.Random, taken: set[str]) -> _Person:
    first = rng.choice(FEMALE_NAMES if rng.random() < 0.55 else MALE_NAMES)
    last = rng.choice(LAST_NAMES)
    roll = rng.random()
    status = "Active" if roll < 0.8 else "Grace" if roll < 0.88 else "Lapsed"
    # A few members never gave an email address.
    email = _email(rng, first, last, taken) if rng.random() > 0.02 else None
    return _Person(first, last, email, status, rng.choice(PRACTICE_SETTINGS), rng.choice(REGIONS))


def _email(rng: random.Random, first: str, last: str, taken: set[str]) -> str:
    """A unique address from the name: ``ada.lovelace@example.org``, then ``ada.lovelace2@...``."""
    local = f"{_email_text(first)}.{_email_text(last)}"
    domain = rng.choice(DOMAINS)
    candidate, number = f"{local}@{domain}", 1
    while candidate in taken:
        number += 1
        candidate = f"{local}{number}@{domain}"
    taken.add(candidate)
    return candidate


@functools.cache
def _email_text(name: str) -> str:
    """``Siobhán O'Connor`` -> ``siobhan``, ``oconnor``: ASCII letters, digits and dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9.-]+", "", ascii_name.lower().replace(" ", "-"))


def _match(
    mentor: str, mentee: str, status: str, rng: random.Random, end: str = ACTIVE_END
) -> dict[str, Any]:
    return {
        "Mentor__c": mentor,
        "Mentee__c": mentee,
        "Status__c": status,
        "Program__c": PROGRAM,
        "Start_Date__c": f"2026-09-{rng.randint(1, 30):02d}",
        "End_Date__c": end,
    }
