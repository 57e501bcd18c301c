"""A failure is said once: a conflict is a conflict, not also "1 failed"."""

from __future__ import annotations

from connector.cli.report import summary_words
from connector.engine.kind import SyncRequest
from connector.kinds.members.kind import MembersSync
from connector.kinds.members.run import MembersRun


def test_members_summary_counts_a_conflict_once() -> None:
    import collections

    run = MembersRun.__new__(MembersRun)  # only the counting part of a run
    run.request = SyncRequest()
    run.full_scan = False
    run.counts = collections.Counter()
    run.counts.update({"created": 88, "conflicts": 1, "rejected": 23, "failed": 25})

    counts = run.final_counts()

    assert counts["other_failures"] == 1  # 25 failed = 1 conflict + 23 rejected + 1 other
    assert summary_words(MembersSync(), counts) == [
        "created 88 accounts",
        "1 conflict (shared email or username)",
        "23 rejected (data missing or invalid)",
        "1 failed",
    ]
