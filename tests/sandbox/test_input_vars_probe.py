"""The max_input_vars probe against the sandbox Moodle, which cuts fields like PHP.

PHP keeps one body field past its setting (the real-Moodle tier measures the same): the probe
finds ``php + 1``.
"""

from __future__ import annotations

import pytest

from connector.clients.moodle.client import MoodleClient
from connector.clients.moodle.site import (
    InputVarsLimit,
    check_max_input_vars,
    measure_max_input_vars,
)
from connector.config import MoodleSettings, Secret, Settings
from connector.errors import ConfigError
from connector.service.doctor import check_moodle
from sandbox.moodle import MoodleSandbox


@pytest.mark.parametrize(("php", "configured"), [(1000, 5000), (2500, 3000)])
def test_the_probe_measures_the_sandboxes_limit(php: int, configured: int) -> None:
    with MoodleSandbox(max_input_vars=php) as moodle:
        settings = MoodleSettings(url=moodle.url, token=Secret(moodle.token))
        settings.max_input_vars = configured
        client = MoodleClient(settings)
        userid = int(client.site_info()["userid"])
        assert measure_max_input_vars(client, configured, userid) == InputVarsLimit(php + 1, False)
        with pytest.raises(ConfigError, match=f"PHP keeps {php + 1} form fields"):
            check_max_input_vars(client)


def test_the_doctor_refuses_a_setting_above_phps_limit() -> None:
    with MoodleSandbox(max_input_vars=1000) as moodle:
        settings = Settings()
        settings.moodle = MoodleSettings(url=moodle.url, token=Secret(moodle.token))
        checks = {c.name: c for c in check_moodle(settings, MoodleClient(settings.moodle))}
        probe = checks["max_input_vars"]
        assert probe.status == "fail"
        assert "5000 is above the Moodle server's limit: PHP keeps 1001 form fields" in (
            probe.detail
        )
        settings.moodle.max_input_vars = 1000
        checks = {c.name: c for c in check_moodle(settings, MoodleClient(settings.moodle))}
        assert checks["max_input_vars"].status == "ok"


def test_the_worker_refuses_to_start_above_phps_limit_and_starts_at_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from huey import MemoryHuey

    from connector.service.worker import Worker
    from tests.webhooks.fakes import make_settings

    with MoodleSandbox(max_input_vars=1000) as moodle:
        settings = make_settings(tmp_path)
        settings.moodle = MoodleSettings(url=moodle.url, token=Secret(moodle.token))
        worker = Worker(settings, huey=MemoryHuey("probe"))
        try:
            with pytest.raises(ConfigError, match=r"moodle\.max_input_vars: 5000 is above"):
                worker.check_moodle_limit()
            settings.moodle.max_input_vars = 1000
            worker.check_moodle_limit()  # at the limit: starts
        finally:
            worker.close()


def test_the_worker_starts_when_moodle_is_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from huey import MemoryHuey

    from connector.service.worker import Worker
    from tests.webhooks.fakes import make_settings

    settings = make_settings(tmp_path)
    settings.moodle = MoodleSettings(url="http://127.0.0.1:9", token=Secret("t"))
    worker = Worker(settings, huey=MemoryHuey("probe-down"))
    try:
        worker.check_moodle_limit()  # logged, not raised: the runs find out later
    finally:
        worker.close()
