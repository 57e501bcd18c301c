"""The Huey instance is chosen by service.queue_url."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from huey import MemoryHuey, SqliteHuey

from connector.errors import ConfigError
from connector.service.queue import make_huey, ping
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


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg installed")
def test_postgres_without_the_extra_says_how_to_install_it() -> None:
    with pytest.raises(ConfigError, match=r"mentorsync\[postgres\]"):
        make_huey("postgresql://mentorsync@127.0.0.1/mentorsync")


@pytest.mark.skipif(importlib.util.find_spec("redis") is not None, reason="redis installed")
def test_redis_without_the_extra_says_how_to_install_it() -> None:
    with pytest.raises(ConfigError, match=r"mentorsync\[redis\]"):
        make_huey("redis://127.0.0.1:6379/0")
