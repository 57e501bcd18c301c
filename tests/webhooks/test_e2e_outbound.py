"""End to end against the sandboxes: an Outbound Message for a changed Contact changes Moodle.

The sandbox org delivers real Outbound Messages (SOAP over HTTP, retried until acknowledged,
sometimes twice) to the webhook app served on loopback; Huey's consumer threads run the drain;
the member sync reads the Contact from the sandbox org and updates the Moodle sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from connector.state.database import InboxEvent, Run
from tests.serving import serving, wait_for

pytestmark = pytest.mark.e2e

sandbox_testing = pytest.importorskip("sandbox.testing")
pytest.importorskip("connector.kinds.members.kind")


def test_outbound_message_for_a_changed_contact_changes_the_moodle_user(tmp_path: Path) -> None:
    with sandbox_testing.running_sandboxes(tmp_path, members=30) as (sf, moodle, settings):
        settings.service.coalesce_seconds = 0.2
        with serving(settings) as (base_url, worker):
            # Every participant gets an account first (what the scheduler's first run does).
            first = worker.run_kind("members", "full")
            assert first is not None and first.status in {"ok", "failed_records"}
            contact_id = next(
                cid
                for cid in sf.seed_report.participants
                if sf.store.get("Contact", cid).get("LMS_Sync_Status__c") == "Synced"
            )
            user_id = int(sf.store.get("Contact", contact_id)["LMS_User_Id__c"])
            assert moodle.site.users[user_id]["firstname"] != "Adaline"

            sf.outbound.url = f"{base_url}/hooks/salesforce/outbound"
            sf.outbound.duplicate_next = True  # Salesforce may deliver a message twice
            sf.store.update("Contact", contact_id, {"FirstName": "Adaline"})

            wait_for(
                lambda: moodle.site.users[user_id]["firstname"] == "Adaline",
                "the Moodle user to change",
            )
            assert sf.outbound.wait_idle(timeout=30)
            wait_for(lambda: sf.outbound.stats.duplicates >= 1, "the duplicate delivery")

            def rows() -> list[InboxEvent]:
                with worker.db.session() as session:
                    return list(session.scalars(select(InboxEvent)))

            # The run goes on after Moodle (write-back to the Contact), then marks the row done.
            wait_for(lambda: all(r.status == "done" for r in rows()), "the inbox row to be done")
            with worker.db.session() as session:
                id_runs = session.scalars(
                    select(Run).where(Run.mode == "ids", Run.kind == "members")
                ).all()
            contact = sf.store.get("Contact", contact_id)
            assert contact["LMS_Sync_Status__c"] == "Synced"
            # Delivered twice, stored and processed once, for each kind a Contact wakes
            # (members, and pairs: the person's matches are re-read too).
            assert sorted((r.kind, r.record_id, r.status) for r in rows()) == [
                ("members", contact_id, "done"),
                ("pairs", contact_id, "done"),
            ]
            assert len(id_runs) == 1 and id_runs[0].status == "ok"
