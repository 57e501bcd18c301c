"""The Huey instance is chosen by service.queue_url."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from huey import MemoryHuey, SqliteHuey

from connector.errors import ConfigError
from connector.service.queue import libpq_url, make_huey, ping
from tests.backends import Backend
from tests.webhooks.fakes import make_settings


def test_default_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", queue_url="")
    huey = make_huey(settings.queue_url)
    try:
        assert isinstance(huey, SqliteHuey)
        assert Path(huey.storage.filename) == (tmp_path / "data" / "queue.db").resolve()
        assert Path(huey.storage.filename).is_file()
        assert huey.results is False  # results would pile up unread
        assert ping(huey) == 0
    finally:
        huey.storage.close()


def test_memory_queue_for_tests() -> None:
    assert isinstance(make_huey("memory://"), MemoryHuey)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://queue", "unknown scheme 'ftp'"),
        ("queue.db", "unknown scheme '(none)'"),
        ("sqlite://", "looks like sqlite:///path"),
    ],
)
def test_bad_urls_name_the_setting(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_huey(url)
    assert info.value.key == "service.queue_url"
    assert message in str(info.value)


def test_postgres_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed: import fails
    with pytest.raises(ConfigError, match=r"mentorsync\[postgres\]"):
        make_huey("postgresql://mentorsync@127.0.0.1/mentorsync")


def test_redis_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigError, match=r"mentorsync\[redis\]"):
        make_huey("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("backend", ["postgresql", "redis"], indirect=True)
def test_a_real_server_queue_carries_tasks_and_schedules(backend: Backend) -> None:
    huey = backend.huey()
    ran: list[str] = []
    task = huey.task(name="drain")(ran.append)
    assert ping(huey) == 0
    task("members")
    task.schedule(("later",), delay=3600)
    assert ping(huey) == 2  # a scheduled task waits in the queue until a consumer reads it
    huey.execute(huey.dequeue())
    huey.execute(huey.dequeue())  # not due: moved to the schedule, not run
    assert ran == ["members"] and huey.dequeue() is None and huey.scheduled_count() == 1
    far = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    [scheduled] = huey.read_schedule(far)
    assert scheduled.args == ("later",)


def test_one_postgresql_url_serves_the_state_database_and_the_queue() -> None:
    # SQLAlchemy's spelling (with the driver) is accepted for the queue; libpq gets it plain.
    assert libpq_url("postgresql+psycopg://u@h:5/db") == "postgresql://u@h:5/db"
    assert libpq_url("postgres://u@h/db") == "postgresql://u@h/db"
    assert libpq_url("redis://h:6379/0") == "redis://h:6379/0"
