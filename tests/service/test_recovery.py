"""A worker process killed in the middle of a run: its rows and its lock are recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import select

from connector.service.worker import Worker, lock_name
from connector.state import inbox, locks
from connector.state.database import InboxEvent, Lock
from tests.backends import Backend
from tests.service.conftest import run_queued
from tests.webhooks.fakes import FakeKinds, make_settings, sf_id

CHILD = textwrap.dedent(
    """
    import pathlib, sys, time, types
    import connector.registry as sync
    from connector.engine.kind import RunResult
    from connector.service.worker import Worker
    from connector.service.queue import make_huey
    from tests.webhooks.fakes import make_settings

    data_dir, marker = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    database_url, queue_url, queue_name = sys.argv[3:6]

    class Stuck:
        name, objects = "fake_contacts", ("Contact",)

        def run(self, ctx, request, progress=None):
            marker.write_text(",".join(request.ids))
            time.sleep(120)  # killed long before this ends
            return RunResult(kind=self.name)

    sync.kinds()
    sync.REGISTRY.clear()
    sync.register(Stuck())
    settings = make_settings(
        data_dir, inbox_lease_seconds=1, database_url=database_url, queue_url=queue_url)
    Worker(settings, huey=make_huey(queue_url, name=queue_name, blocking=False)).drain(
        "fake_contacts")
    """
)


def test_killed_worker_rows_and_lock_are_recovered(
    tmp_path: Path, backend: Backend, fake_kinds: FakeKinds
) -> None:
    settings = make_settings(tmp_path, inbox_lease_seconds=1, **backend.overrides())
    worker = Worker(settings, huey=backend.huey())
    try:
        ids = [sf_id("003", n) for n in range(3)]
        inbox.store(
            worker.db,
            [
                inbox.Notice(f"k{n}", "salesforce-outbound", "fake_contacts", "Contact", record)
                for n, record in enumerate(ids)
            ],
        )
        marker = tmp_path / "running"
        root = Path(__file__).resolve().parents[2]
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(marker), *backend.child_args()],
            cwd=root,
        )
        try:
            deadline = time.monotonic() + 30
            while not marker.exists():
                assert child.poll() is None, "the child worker ended early"
                assert time.monotonic() < deadline, "the child worker never started its run"
                time.sleep(0.02)
            assert marker.read_text() == ",".join(ids)
            os.kill(child.pid, signal.SIGKILL)  # killed mid-run: no finish, no release
        finally:
            child.kill()
            child.wait()

        with worker.db.session() as session:
            assert set(session.scalars(select(InboxEvent.status))) == {"leased"}
            lock = session.get(Lock, lock_name("fake_contacts"))
            assert lock is not None and f":{child.pid}:" in lock.owner
        # A restarted consumer clears locks of dead local processes at once...
        assert locks.clear_stale_local(worker.db) == [lock_name("fake_contacts")]
        # ...and the sweeper hands the rows out again when their lease ends.
        deadline = time.monotonic() + 10
        while not worker.tick()["drain"]:
            assert time.monotonic() < deadline, "the sweeper never recovered the rows"
            time.sleep(0.05)
        run_queued(worker.huey)
        drained = [c.ids for c in fake_kinds.contacts.calls if c.mode == "ids"]
        assert drained == [tuple(ids)]
        with worker.db.session() as session:
            assert set(session.scalars(select(InboxEvent.status))) == {"done"}
            assert session.scalar(select(InboxEvent.attempts).limit(1)) == 2
    finally:
        worker.close()
        worker.db.dispose()
