"""Member sync, CRM -> LMS: the declaration of sync kind ``"members"``.

Contacts become Moodle users (create, update, suspend, reactivate, adopt), with the outcome
written back to each Contact. How a run goes: :mod:`connector.kinds.members.run`.
"""

from __future__ import annotations

from connector.config import Settings
from connector.context import Context
from connector.engine.kind import IdType, ProgressHook, RunResult, Schedule, SyncRequest
from connector.kinds.members.run import KIND, MembersRun
from mappings.fieldmap import load_field_map

USER_UPDATED = "\\core\\event\\user_updated"
USER_DELETED = "\\core\\event\\user_deleted"
CONTACT_OR_MOODLE_USER = IdType(
    "a Salesforce record Id (15 or 18 letters and digits) or a Moodle user id",
    r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?|[1-9][0-9]{0,9}",
)


class MembersSync:
    """Members, CRM -> LMS: programme Contacts become Moodle users (create, update, suspend,
    reactivate, adopt), with the outcome written back to each Contact."""

    name = KIND
    # A Moodle user changed by hand (the plugin's events) is reconciled too: the Contact's
    # values win. A deleted user can no longer be looked up by id, so its Contact is found
    # (and its account made again) by the next full run.
    objects = ("Contact", f"moodle:{USER_UPDATED}", f"moodle:{USER_DELETED}")
    id_type = CONTACT_OR_MOODLE_USER
    settings_section = "members"
    schedule = Schedule(incremental=True, nightly_order=10)
    # How the counters read on a terminal; the others are internal (--json, /metrics).
    summary_labels = {
        "created": "created {n} accounts",
        "updated": "updated {n} accounts",
        "suspended": "suspended {n} accounts",
        "reactivated": "reactivated {n} accounts",
        "adopted": "linked {n} existing accounts",
        "unchanged": "{n} already in step",
        "skipped": "{n} skipped (not in the programme)",
        "conflicts": "{n} conflicts (shared email or username)",
        "rejected": "{n} rejected (data missing or invalid)",
        "other_failures": "{n} failed",
    }
    # "failed" counts the conflicts and rejections too (the exit status and --json need the
    # total); the words say each failure once.
    internal_counters = ("failed",)

    def objects_for(self, settings: Settings) -> tuple[str, ...]:
        """The source object of the field map (``Contact``, or ``Account`` for Person Accounts),
        whose webhook events route to this kind."""
        return (load_field_map(settings.members.field_map).sobject, *self.objects[1:])

    def run(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> RunResult:
        """Reconcile the members ``request`` names; see the module docstring."""
        return MembersRun(ctx, request, progress).execute()
