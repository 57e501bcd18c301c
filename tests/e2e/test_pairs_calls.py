"""Moodle calls of a pairs run grow with batches, not with pairs.

A full run of 250 and of 500 active pairs (after the member sync gave everyone an account)
against the loopback sandboxes: for every Moodle function the number of calls is exactly what
the batch limits allow (``moodle.max_batch_items`` and the form-field limit, as the client's own
:meth:`~connector.clients.moodle.client.MoodleClient.split` computes them), and going from 250
to 500 pairs adds only the extra batches. The incremental run that reads the write-back echo
writes nothing to Moodle; a full re-run only re-asserts the mentor roles (Moodle cannot list
them), in full batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.clients.salesforce import soql
from connector.context import Context
from connector.engine.kind import RunResult, SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.pairs.kind import PairsSync
from connector.kinds.pairs.read import IDS_PER_QUERY, url_chunks
from mappings.pairs import load_pairs_field_map
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import SeedReport, seed
from sandbox.testing import running_sandboxes

pytestmark = pytest.mark.e2e

WRITES = (
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_group_create_groups",
    "core_group_delete_groups",
    "core_group_add_group_members",
    "core_group_delete_group_members",
    "core_role_assign_roles",
    "core_role_unassign_roles",
)
# One item of each write, shaped as the applier sends it (the field count is what matters).
ENROL = {"roleid": 5, "userid": 1, "courseid": 2}
GROUP = {"courseid": 3, "name": "A & B (GMP-2026)", "idnumber": "a0X", "description": "d"}
MEMBER = {"groupid": 1, "userid": 1}
ROLE = {"roleid": 9, "userid": 1, "contextlevel": "user", "instanceid": 2}
SOQL_PAGE = 2000
PROGRAM = "GMP-2026"
COLLECTION = 200


@dataclass
class Pairs:
    """A seeded programme of ``n`` active pairs whose people all have accounts."""

    n: int
    sf: SalesforceSandbox
    moodle: MoodleSandbox
    ctx: Context
    report: SeedReport

    def run(self, mode: str) -> tuple[RunResult, dict[str, int], dict[str, int]]:
        """A pairs run; its result and the Moodle and Salesforce calls it made."""
        moodle_before = dict(self.moodle.calls)
        sf_before = dict(self.ctx.salesforce.calls)
        result = PairsSync().run(self.ctx, SyncRequest(mode=mode))  # type: ignore[arg-type]
        return (
            result,
            delta(self.moodle.calls, moodle_before),
            delta(self.ctx.salesforce.calls, sf_before),
        )

    def matches(self) -> list[dict[str, Any]]:
        """Every match record of the programme (all statuses)."""
        return list(self.sf.store.find("Mentorship_Match__c"))

    def people(self) -> set[str]:
        """Contacts of every match: each is looked up in Moodle once per run."""
        return {m[f] for m in self.matches() for f in ("Mentor__c", "Mentee__c")}

    def enrolments(self) -> int:
        """Distinct (course, user, role): both courses for everyone, the programme by role."""
        mentors, mentees = set(self.report.mentors), set(self.report.mentees)
        return len(mentors | mentees) + len(mentors) + len(mentees)

    def batches(self, list_key: str, item: Mapping[str, Any], count: int, **extra: Any) -> int:
        """Calls the client's batch limits allow for ``count`` such items (0 for none)."""
        return len(self.ctx.moodle.split(list_key, [item] * count, extra)) if count else 0


def delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """Calls made since ``before``, per function (non-zero only)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


Programme = Callable[[int], contextlib.AbstractContextManager["Pairs"]]


@pytest.fixture
def programme(tmp_path: Path) -> Programme:
    """``programme(n)``: a context manager giving :class:`Pairs` with n active pairs."""

    @contextlib.contextmanager
    def make(n: int) -> Iterator[Pairs]:
        overrides = {"members": {"mass_change_share": 1.0, "mass_change_count": 100_000}}
        with running_sandboxes(tmp_path / f"n{n}", members=0, overrides=overrides) as (
            sf,
            moodle,
            settings,
        ):
            report = seed(sf, moodle, members=2 * n + 40, active_matches=n, moodle_accounts=0)
            # The seeded couple sharing one address cannot both get an account; here everyone
            # must, so every active pair is applied and the counts are the clean ones.
            second = report.shared_email_contacts[1]
            sf.store.update("Contact", second, {"Email": "second.household@example.org"})
            ctx = Context(settings)
            try:
                members = MembersSync().run(ctx, SyncRequest(mode="full"))
                assert members.status == "ok", members.reason
                yield Pairs(n, sf, moodle, ctx, report)
            finally:
                ctx.close()

    return make


def expected_first(w: Pairs) -> dict[str, int]:
    """The Moodle calls of the first full run, per function, from the batch limits."""
    people = len(w.people())
    return {
        "core_user_get_users_by_field": w.batches("values", {"v": "x"}, people, field="idnumber"),
        "core_course_get_courses_by_field": 2,  # one shortname per call: the two courses
        "core_group_get_course_groups": 1,
        "core_enrol_get_enrolled_users": 2,  # one course per call
        # No group exists yet: no members to read.
        "enrol_manual_enrol_users": w.batches("enrolments", ENROL, w.enrolments()),
        "core_group_create_groups": w.batches("groups", GROUP, w.n),
        "core_group_add_group_members": w.batches("members", MEMBER, 2 * w.n),
        "core_role_assign_roles": w.batches("assignments", ROLE, w.n),
    }


def expected_reread(w: Pairs) -> dict[str, int]:
    """The Moodle reads of a run that re-reads every match once the groups exist."""
    reads = expected_first(w)
    for function in WRITES:
        reads.pop(function, None)
    reads["core_group_get_group_members"] = w.batches("groupids", {"id": 1}, w.n)
    return reads


def first_run(w: Pairs) -> dict[str, int]:
    """The first full run: exact counts, exact Moodle and Salesforce calls."""
    result, moodle, sf = w.run("full")
    assert (result.status, result.failed) == ("ok", 0), result.reason
    assert result.counts["matches_read"] == len(w.matches())
    assert result.counts["enrolled"] == w.enrolments()
    assert result.counts["groups_created"] == w.n
    assert result.counts["members_added"] == 2 * w.n
    assert result.counts["roles_assigned"] == w.n
    assert moodle == expected_first(w)
    assert sf == {
        **expected_salesforce_reads(w, full=True),
        "collections.update": math.ceil(result.counts["written_back"] / COLLECTION),
    }
    return moodle


def expected_salesforce_reads(w: Pairs, *, full: bool) -> dict[str, int]:
    """The Salesforce reads of a run that reads every match: the matches (pages of 2,000),
    the people's other matches, and their Contacts (deleted ones too, 300 Ids a query).

    A full scan has read every match up to its start: one query finds those changed since.
    Otherwise the other matches are read by people, as many per query as fit the 16,384-byte
    request URI Salesforce accepts (``url_chunks``).
    """
    contacts = math.ceil(len(w.people()) / IDS_PER_QUERY)
    if full:
        others = 1
    else:
        fm = load_pairs_field_map()
        head = f"{soql.select(fm.sobject, fm.read_fields())} WHERE ({fm.program_soql(PROGRAM)})"
        people = sorted(w.people())
        others = len(list(url_chunks(people, lambda c: f"{head} AND {fm.people_soql(c)}")))
    return {"query": math.ceil(len(w.matches()) / SOQL_PAGE) + others, "queryAll": contacts}


def items(w: Pairs) -> dict[str, int]:
    """Items each write function of the first run sends."""
    return {
        "enrol_manual_enrol_users": w.enrolments(),
        "core_group_create_groups": w.n,
        "core_group_add_group_members": 2 * w.n,
        "core_role_assign_roles": w.n,
    }


def test_calls_grow_with_batches_not_pairs(programme: Programme) -> None:
    with programme(250) as small:
        calls_250, items_250 = first_run(small), items(small)
    with programme(500) as w:
        calls_500, items_500 = first_run(w), items(w)
        batch = int(w.ctx.settings.moodle.max_batch_items)
        # Twice the pairs: per write function, only the batches the extra items fill.
        for function, count in items_500.items():
            extra = math.ceil((count - items_250[function]) / batch)
            assert calls_500[function] <= calls_250[function] + extra, function
            assert calls_500[function] == math.ceil(count / batch), function
        # The reads do not grow with pairs at all, but for the per-200 account lookups.
        for function in set(calls_500) - set(items_500) - {"core_user_get_users_by_field"}:
            assert calls_500[function] == calls_250[function], function
        # Pair by pair would be a call per item; batched, it is one per (nearly) full batch.
        assert sum(calls_500.values()) < sum(items_500.values()) / (batch / 4)

        # The echo of the write-back (every match changed in Salesforce): read, nothing written.
        echo, moodle, sf = w.run("incremental")
        assert (echo.status, echo.failed) == ("ok", 0), echo.reason
        assert echo.counts["matches_read"] == len(w.matches())
        assert "planned" not in echo.counts and "written_back" not in echo.counts
        assert moodle == expected_reread(w)
        assert not set(moodle) & set(WRITES)
        assert sf == expected_salesforce_reads(w, full=False)

        # The nightly full run re-asserts the mentor roles it owns, in full batches, only that.
        again, moodle, _ = w.run("full")
        assert (again.status, again.counts["roles_assigned"]) == ("ok", w.n)
        assert moodle == {
            **expected_reread(w),
            "core_role_assign_roles": w.batches("assignments", ROLE, w.n),
        }
