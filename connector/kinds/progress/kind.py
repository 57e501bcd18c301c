"""Progress, LMS -> CRM: the declaration of sync kind ``"progress"``.

Moodle completions of the programme's meeting activities and orientation course become
``Mentoring_Meeting__c`` records and totals and health on each match. How a run goes:
:mod:`connector.kinds.progress.run`; the rules: the README's "Pair health".
"""

from __future__ import annotations

from connector.clients.moodle.client import MoodleClient
from connector.config import Settings
from connector.context import Context
from connector.engine.checks import Check, Seen
from connector.engine.kind import IdType, ProgressHook, RunResult, Schedule, SyncRequest
from connector.kinds.progress.checks import doctor_checks as _doctor_checks
from connector.kinds.progress.run import KIND, ProgressRun

COMPLETION_UPDATED = "moodle:\\core\\event\\course_module_completion_updated"
COURSE_COMPLETED = "moodle:\\core\\event\\course_completed"

# A match's Salesforce Id (its records and failures), or a Moodle user id (events carry those:
# that user's matches are reconciled). All digits is a Moodle user id.
MATCH_OR_MOODLE_USER = IdType(
    "a match's Salesforce Id (18 letters and digits) or a Moodle user id (digits)",
    r"[1-9][0-9]{0,18}|[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?",
)


class ProgressSync:
    """Progress, LMS -> CRM: meeting records, orientation dates, totals and pair health."""

    name = KIND
    objects = (COMPLETION_UPDATED, COURSE_COMPLETED)
    id_type = MATCH_OR_MOODLE_USER
    settings_section = "programme"
    schedule = Schedule(incremental=True, nightly_order=30)
    summary_labels = {
        "meetings_written": "wrote {n} meeting records",
        "meetings_deleted": "deleted {n} undone meeting records",
        "matches_updated": "updated {n} matches",
        "unchanged": "{n} matches already in step",
        "unlinked": "{n} matches without Moodle accounts",
        "failed": "{n} failed",
    }

    def doctor_checks(
        self, settings: Settings, moodle: MoodleClient, seen: Seen
    ) -> list[Check]:
        """What ``mentorsync doctor`` checks for this kind (see its ``checks`` module)."""
        return _doctor_checks(settings, moodle, seen)

    def run(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> RunResult:
        """Reconcile the matches (or the Moodle users' matches) ``request`` names."""
        return ProgressRun(ctx, request, progress).execute()
