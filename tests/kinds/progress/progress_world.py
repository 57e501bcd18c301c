"""A small programme in the loopback sandboxes for the progress tests and the benchmark.

Pairs are made directly (Contacts with their Moodle user id, Moodle users enrolled in both
courses, matches), without running the members or pairs sync; completions are set on the
sandbox site with fixed times, so records and dates are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector.clients.salesforce.client import SalesforceClient
from connector.clients.salesforce.sobject_collections import RecordResult
from sandbox.moodle.site import Site
from sandbox.salesforce import SalesforceSandbox

ORIENTATION, PROGRAMME = 2, 3
ORIENTATION_CMID = 2
# cmid of GMP-2026-M1 ... M6.
MEETING_CMIDS = {f"GMP-2026-M{n}": 3 + n for n in range(1, 7)}
STUDENT, TEACHER = 5, 4


def unix(day: str, hour: int = 12) -> int:
    """Unix seconds of ``day`` (YYYY-MM-DD) at ``hour`` UTC."""
    return int(dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt.UTC).timestamp())


@dataclass(frozen=True)
class Pair:
    """One match and its people."""

    match_id: str
    mentor_uid: int
    mentee_uid: int


def add_person(sf: SalesforceSandbox, site: Site, label: str, mentor: bool) -> tuple[str, int]:
    """A Contact and its Moodle account, enrolled in both courses; ``(Contact Id, user id)``."""
    uid = site.create_user(label, f"{label}@example.org", idnumber="")
    (contact,) = sf.store.bulk_insert(
        "Contact", [{"LastName": label, "LMS_User_Id__c": str(uid)}]
    )
    site.update_user(uid, {"idnumber": contact})
    site.enrol(ORIENTATION, uid, STUDENT)
    site.enrol(PROGRAMME, uid, TEACHER if mentor else STUDENT)
    return contact, uid


def add_pairs(
    sf: SalesforceSandbox,
    site: Site,
    count: int,
    *,
    status: str = "Active",
    mentee: tuple[str, int] | None = None,
    prefix: str = "p",
) -> list[Pair]:
    """``count`` matches, each with a new mentor and a new mentee (or the given mentee)."""
    people = []
    for n in range(count):
        mentor = add_person(sf, site, f"{prefix}{n}-mentor", True)
        people.append((mentor, mentee or add_person(sf, site, f"{prefix}{n}-mentee", False)))
    ids = sf.store.bulk_insert(
        "Mentorship_Match__c",
        [
            {"Mentor__c": m[0], "Mentee__c": e[0], "Status__c": status, "Program__c": "GMP-2026"}
            for m, e in people
        ],
    )
    return [Pair(i, m[1], e[1]) for i, (m, e) in zip(ids, people, strict=True)]


def tick(site: Site, uid: int, cmid: int, when: int, state: int = 1) -> None:
    """Set a completion state with a fixed time (course completion follows, at that time)."""
    with site.lock:
        site.set_activity_state(uid, cmid, state)
        site.completions[(uid, cmid)]["timemodified"] = when
        for key, done in site.criteria_done.items():
            if key[0] == uid and cmid in done:
                done[cmid] = when
                if key in site.course_completed:
                    site.course_completed[key] = max(done.values())


def orient(site: Site, uid: int, when: int) -> None:
    """The user completes the orientation course at ``when``."""
    tick(site, uid, ORIENTATION_CMID, when)


@dataclass
class Writes:
    """The Salesforce writes a run made, as sent to the client."""

    upserts: list[tuple[str, str, list[dict[str, Any]]]] = field(default_factory=list)
    updates: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    deletes: list[list[str]] = field(default_factory=list)

    def clear(self) -> None:
        """Forget what was recorded."""
        self.upserts.clear()
        self.updates.clear()
        self.deletes.clear()

    @property
    def calls(self) -> int:
        """Collections calls made (each list was one call of at most 200)."""
        return len(self.upserts) + len(self.updates) + len(self.deletes)


def spy_writes(sf: SalesforceClient) -> Writes:
    """Record every Collections write of ``sf`` (the calls still go to Salesforce)."""
    writes = Writes()
    upsert, update, delete = sf.collection_upsert, sf.collection_update, sf.collection_delete

    def on_upsert(sobject: str, ext: str, records: Any) -> list[RecordResult]:
        writes.upserts.append((sobject, ext, [dict(r) for r in records]))
        return upsert(sobject, ext, records)

    def on_update(sobject: str, records: Any) -> list[RecordResult]:
        writes.updates.append((sobject, [dict(r) for r in records]))
        return update(sobject, records)

    def on_delete(ids: Any) -> list[RecordResult]:
        writes.deletes.append(list(ids))
        return delete(ids)

    wrappers: dict[str, Callable[..., list[RecordResult]]] = {
        "collection_upsert": on_upsert,
        "collection_update": on_update,
        "collection_delete": on_delete,
    }
    for name, wrapper in wrappers.items():
        setattr(sf, name, wrapper)
    return writes


def meetings_of(sf: SalesforceSandbox, match_id: str) -> dict[str, dict[str, Any]]:
    """The sandbox's meeting records of a match, by external id (the written fields only)."""
    keep = ("External_Id__c", "Match__c", "Meeting_Number__c", "Activity_Idnumber__c",
            "Completed_On__c", "Hours__c", "Source__c")
    out = {}
    for record in sf.store.find("Mentoring_Meeting__c", Match__c=match_id):
        out[record["External_Id__c"]] = {k: record.get(k) for k in keep}
    return out
