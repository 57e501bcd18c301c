"""The other commands as a newcomer meets them: version, config, status, retry, doctor, demo."""

from __future__ import annotations

import datetime as dt
import json
import socket
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from connector.cli import main
from connector.config import load_settings
from connector.engine.kind import SyncRequest
from connector.state import bookkeeping
from connector.state.database import Run, StateDB
from tests.cli.conftest import CONTACT_A, Cli, WordyKind, write_config


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("mentorsync, version ")


def test_without_a_config_file_it_says_which_files_it_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, people: WordyKind
) -> None:
    # Defect 10: commands ran silently on built-in defaults (a Moodle on 127.0.0.1:8081).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("connector.cli.preflight.SEARCH_PATH", (
        Path("mentorsync.toml"), tmp_path / "etc" / "mentorsync.toml"
    ))
    for name in [n for n in __import__("os").environ if n.startswith("MENTORSYNC_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1
    assert (
        f"configuration: config: no configuration file; looked for {tmp_path}/mentorsync.toml "
        f"and {tmp_path}/etc/mentorsync.toml. Give --config FILE or set MENTORSYNC_CONFIG"
    ) in " ".join(result.output.split())
    assert not (tmp_path / "var").exists()
    # ./mentorsync.toml is found without --config.
    write_config(tmp_path)
    assert CliRunner().invoke(main, ["status"]).exit_code == 0


def test_kind_choices_are_validated(cli: Cli) -> None:
    for args in (["status", "--kind", "pepole"], ["retry", "--kind", "pepole", "--all"]):
        result = cli(*args)
        assert result.exit_code == 2
        assert "'pepole' is not a sync kind (choose from people)" in result.output


def _seed_run(config: Path, status: str, finished_ago: dt.timedelta) -> None:
    db = StateDB(load_settings(config, env={}).database_url)
    try:
        with db.session() as session:
            run = bookkeeping.start_run(session, "people", "incremental")
            bookkeeping.finish_run(session, run.id, status, {"created": 2})
            session.execute(
                update(Run)
                .where(Run.id == run.id)
                .values(
                    started_at=dt.datetime(2025, 1, 15, 14, 0, 0, tzinfo=dt.UTC),
                    finished_at=dt.datetime.now(dt.UTC) - finished_ago,
                )
            )
    finally:
        db.dispose()


def test_status_times_in_the_programme_zone_and_the_stalled_feed(cli: Cli) -> None:
    cli.config.write_text(
        cli.config.read_text() + '[programme]\ntimezone = "Europe/Paris"\n', encoding="utf-8"
    )
    _seed_run(cli.config, "ok", dt.timedelta(hours=3))  # longer than the default 120 min
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "Last runs (times in Europe/Paris)" in result.output
    assert "2025-01-15 15:00" in result.output  # 14:00 UTC is 15:00 in Paris in winter
    assert "stalled: no event and no successful run for over 120 min" in result.output

    data = json.loads(cli("status", "--json").output)
    assert data["runs"][0]["started"] == "2025-01-15T14:00:00+00:00"
    assert data["feeds"][0]["kind"] == "people"
    assert data["feeds"][0]["stalled"] is True
    assert data["feeds"][0]["limit_minutes"] == 120


def test_status_with_a_recent_run_is_not_stalled(cli: Cli) -> None:
    _seed_run(cli.config, "ok", dt.timedelta(minutes=5))
    data = json.loads(cli("status", "--json").output)
    assert [f["stalled"] for f in data["feeds"]] == [False]


def test_status_reads_only(cli: Cli, tmp_path: Path) -> None:
    result = cli("status")
    assert result.exit_code == 0
    assert "No state database yet" in result.output
    assert not (tmp_path / "data").exists()


def _seed_failure(config: Path, record: str) -> None:
    settings = load_settings(config, env={})
    db = StateDB(settings.database_url)
    try:
        with db.session() as session:
            bookkeeping.record_failure(session, "people", record, "x", "moodle", settings.service)
    finally:
        db.dispose()


def test_retry_says_a_worker_must_run(cli: Cli) -> None:
    # Defect 9: "requeued" and nothing happened without a running worker.
    cli.config.write_text(
        cli.config.read_text() + f'queue_url = "sqlite:///{cli.config.parent}/data/queue.db"\n'
    )
    _seed_failure(cli.config, CONTACT_A)
    result = cli("retry", CONTACT_A)
    assert result.exit_code == 0, result.output
    assert "requeued 1 failed record(s) of people: a running worker" in result.output
    assert "while none runs nothing happens" in " ".join(result.output.split())
    assert cli.kind.calls == []


def test_retry_now_runs_them_here(cli: Cli) -> None:
    _seed_failure(cli.config, CONTACT_A)
    result = cli("retry", "--now", "--json", CONTACT_A)
    assert result.exit_code == 0, result.output
    assert cli.kind.calls == [SyncRequest(mode="ids", ids=(CONTACT_A,))]
    data = json.loads(result.output)
    assert (data["requeued"], data["kinds"], data["queued_for_worker"]) == (1, ["people"], False)
    assert data["runs"][0]["counts"] == {"created": 1}


def test_doctor_names_a_missing_credential_not_the_network(tmp_path: Path) -> None:
    # Defect 4: a configuration mistake got a network hint.
    config = write_config(tmp_path, credentials=False)
    result = CliRunner().invoke(main, ["--config", str(config), "doctor"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "salesforce configuration: salesforce.username: required for auth = password" in text
    assert (
        "-> set salesforce.username in the config file (or MENTORSYNC_SALESFORCE_USERNAME" in text
    )
    assert "moodle.token: required" in text
    assert "network" not in text

    result = CliRunner().invoke(main, ["--config", str(config), "doctor", "--json"])
    data = json.loads(result.output)
    assert data["healthy"] is False
    assert [(c["system"], c["detail"]) for c in data["checks"] if c["status"] == "fail"] == [
        ("moodle", "moodle.token: required (the web-service token)"),
        ("salesforce", "salesforce.username: required for auth = password"),
        ("salesforce", "salesforce.password: required for auth = password"),
    ]


def test_doctor_check_of_a_login_config_error() -> None:
    from connector.errors import ConfigError
    from connector.service.doctor import check_salesforce

    class Refuses:
        def login(self) -> None:
            raise ConfigError("salesforce.username", "required for auth = password")

    [check] = check_salesforce(load_settings(env={}), Refuses())
    assert (check.name, check.status) == ("configuration", "fail")
    assert check.fix.startswith("set salesforce.username in the config file")


def test_demo_refuses_too_few_members_and_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defect 1: a traceback (ValueError from the seed) and a mentorsync-demo-* folder left.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for command in (["demo", "--members", "5"], ["sandbox", "--members", "5"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--members': 5 is not in the range x>=30." in result.output
    assert list(tmp_path.iterdir()) == []


def test_sandbox_on_a_busy_port_saves_nothing(tmp_path: Path) -> None:
    # Defect 6: werkzeug's message, exit 1, and an empty state that the next start resumed.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main, ["sandbox", "--data", str(tmp_path / "sb"), "--moodle-port", str(port)]
        )
    assert result.exit_code == 1
    assert (
        f"Error: cannot listen on 127.0.0.1:{port}: the port is already in use; choose another "
        "--moodle-port (0 = any free port)"
    ) in result.output
    saved = [p for p in (tmp_path / "sb").rglob("*") if p.is_file()]
    assert saved == []


@pytest.mark.parametrize(
    ("command", "option", "meaning"),
    [
        ("worker", "--workers", "Worker threads executing tasks."),
        ("run", "--workers", "Worker threads executing tasks."),
        ("serve", "--processes", "Web service processes (gunicorn workers)."),
        ("run", "--web-processes", "Web service processes (gunicorn workers)."),
    ],
)
def test_workers_means_one_thing(command: str, option: str, meaning: str) -> None:
    text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
    assert f"{option} INTEGER RANGE {meaning}" in text
    if command == "serve":
        assert "--workers" not in text


def test_settings_from_the_environment_alone_are_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, people: WordyKind
) -> None:
    # Containers hand in MENTORSYNC_* variables and no file: that is a configuration too.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("connector.cli.preflight.SEARCH_PATH", (Path("mentorsync.toml"),))
    for name in [n for n in __import__("os").environ if n.startswith("MENTORSYNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MENTORSYNC_SERVICE_DATA_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 0, result.output
    assert f"No state database yet ({tmp_path / 'state' / 'mentorsync.db'})" in result.output


def test_the_stalled_feed_alarm_can_be_off(cli: Cli) -> None:
    cli.config.write_text(cli.config.read_text() + "stalled_feed_minutes = 0\n", encoding="utf-8")
    _seed_run(cli.config, "ok", dt.timedelta(days=30))
    result = cli("status")
    assert result.exit_code == 0, result.output
    feed = next(line.split() for line in result.output.splitlines() if line.startswith(" people"))
    assert feed[-1] == "off"
    assert json.loads(cli("status", "--json").output)["feeds"][0]["stalled"] is False
