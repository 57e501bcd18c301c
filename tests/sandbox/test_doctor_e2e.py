"""`mentorsync doctor` end to end: the config `mentorsync sandbox` writes, on both sandboxes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.cli.sandbox import write_config
from sandbox.moodle import catalog
from sandbox.testing import running_sandboxes


def doctor(config: Path, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--config", str(config), "doctor"], env=env, terminal_width=200
    )
    return result.exit_code, result.output


def test_a_good_config_exits_zero(tmp_path: Path) -> None:
    with running_sandboxes(tmp_path, members=0) as (sf, moodle, _):
        code, output = doctor(write_config(tmp_path, sf, moodle))
        assert code == 0, output
        assert "Everything mentorsync needs is there." in output
        assert "FAIL" not in output
        # It really asked both systems.
        assert moodle.calls["core_webservice_get_site_info"] == 1
        assert moodle.calls["core_course_get_courses_by_field"] == 2
        assert sf.calls["login"] == 1 and sf.calls["describe"] >= 3
        assert moodle.token not in output and sf.password not in output


def test_a_missing_course_exits_non_zero_naming_it(tmp_path: Path) -> None:
    with running_sandboxes(tmp_path, members=0) as (sf, moodle, _):
        config = write_config(tmp_path, sf, moodle)
        code, output = doctor(config, MENTORSYNC_PROGRAMME_PROGRAMME_COURSE="GMP-2099")
        assert code != 0
        assert "no course with shortname GMP-2099" in output
        assert "programme.programme_course" in output
        assert "1 problem(s) found" in output


def test_a_function_missing_from_the_service_exits_non_zero_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = catalog.SERVICE_FUNCTIONS[catalog.INTEGRATION_SERVICE]
    monkeypatch.setitem(
        catalog.SERVICE_FUNCTIONS,
        catalog.INTEGRATION_SERVICE,
        tuple(name for name in service if name != "core_role_assign_roles"),
    )
    with running_sandboxes(tmp_path, members=0) as (sf, moodle, _):
        code, output = doctor(write_config(tmp_path, sf, moodle))
        assert code != 0
        assert "function core_role_assign_roles" in output
        assert "External services: add core_role_assign_roles" in output


def test_a_refused_salesforce_login_exits_non_zero(tmp_path: Path) -> None:
    with running_sandboxes(tmp_path, members=0) as (sf, moodle, _):
        config = write_config(tmp_path, sf, moodle)
        code, output = doctor(config, MENTORSYNC_SALESFORCE_PASSWORD="wrong-password-value")
        assert code != 0
        assert "salesforce" in output and "login refused" in output
        assert "wrong-password-value" not in output
