"""Pairs and orientation, CRM -> LMS: the declaration of sync kind ``"pairs"``.

An Active match gives both people the orientation course and the programme course, a private
group for the pair and the mentor a user-context role over the mentee; a completed or
cancelled match undoes exactly what mentorsync did. How a run goes:
:mod:`connector.kinds.pairs.run`; every decision: :mod:`connector.kinds.pairs.plan`.
"""

from __future__ import annotations

from connector.clients.moodle.client import MoodleClient
from connector.config import Settings
from connector.context import Context
from connector.engine.checks import Check, Seen
from connector.engine.kind import SALESFORCE_ID, ProgressHook, RunResult, Schedule, SyncRequest
from connector.kinds.pairs.checks import doctor_checks as _doctor_checks
from connector.kinds.pairs.run import KIND, PairsRun
from mappings.fieldmap import load_field_map
from mappings.pairs import load_pairs_field_map


class PairsSync:
    """Pairs, CRM -> LMS: matched pairs get both courses, a private group and the mentor's
    view of the mentee; a cancelled or completed match undoes exactly what mentorsync did."""

    name = KIND
    objects = ("Mentorship_Match__c", "Contact")
    id_type = SALESFORCE_ID
    settings_section = "pairs"
    schedule = Schedule(incremental=True, nightly_order=20)
    summary_labels = {
        "enrolled": "{n} enrolments",
        "unenrolled": "{n} enrolments removed",
        "groups_created": "created {n} pair groups",
        "members_added": "added {n} group members",
        "members_removed": "removed {n} group members",
        "groups_deleted": "deleted {n} pair groups",
        "roles_assigned": "gave {n} mentors their view of the mentee",
        "roles_removed": "removed {n} mentor views",
        "matches_gone": "undid {n} matches deleted in Salesforce or moved out of the programme",
        "reported": "{n} matches need attention",
        "accounts_made": "created {n} accounts first",
        "other_failures": "{n} failed",
    }
    internal_counters = ("failed", "matches_read", "forgotten")

    def objects_for(self, settings: Settings) -> tuple[str, ...]:
        """The match object of the pairs field map, and the people's object (a Contact change
        re-reads that person's matches)."""
        return (
            load_pairs_field_map(settings.pairs.field_map).sobject,
            load_field_map(settings.members.field_map).sobject,
        )

    def doctor_checks(
        self, settings: Settings, moodle: MoodleClient, seen: Seen
    ) -> list[Check]:
        """What ``mentorsync doctor`` checks for this kind (see its ``checks`` module)."""
        return _doctor_checks(settings, moodle, seen)

    def run(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> RunResult:
        """Reconcile the matches ``request`` names; see :mod:`connector.kinds.pairs.run`."""
        return PairsRun(ctx, request, progress).execute()
