"""A Worker over each backend (tests/backends.py: sqlite, postgresql, redis), fake sync kinds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from huey import Huey

from connector.config import Settings
from connector.service.worker import Worker
from tests.backends import Backend
from tests.webhooks.fakes import FakeKinds, fake_kinds, make_settings  # noqa: F401


@pytest.fixture
def settings(tmp_path: Path, backend: Backend) -> Settings:
    """Settings over the test's backend (sqlite, postgresql or redis: each test runs on all)."""
    return make_settings(tmp_path, **backend.overrides())


@pytest.fixture
def worker(
    settings: Settings,
    backend: Backend,
    fake_kinds: FakeKinds,  # noqa: F811
) -> Iterator[Worker]:
    work = Worker(settings, huey=backend.huey())
    yield work
    work.close()
    work.db.dispose()


def run_queued(huey: Huey, limit: int = 50) -> list[tuple[str, tuple]]:
    """Execute every queued task now, scheduled ones too (as if their delay had passed).

    Returns (task name, args) in execution order; tasks enqueued while running are run too.
    """
    ran: list[tuple[str, tuple]] = []
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    while len(ran) < limit:
        task = huey.dequeue()
        tasks = [task] if task is not None else huey.read_schedule(later)
        if not tasks:
            return ran
        for item in tasks:
            ran.append((item.name, item.args))
            huey.execute(item, timestamp=later)
    raise AssertionError(f"more than {limit} tasks: {ran}")
