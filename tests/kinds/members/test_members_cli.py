"""``mentorsync sync members`` and ``mentorsync status`` on the ``responses`` fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner
from members_fakes import INSTANCE, MOODLE_URL, FakeMoodle, FakeSalesforce

from connector.cli import main
from connector.cli.sync import exit_status
from connector.engine.kind import RunResult


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mentorsync.toml"
    path.write_text(
        f"""
[moodle]
url = "{MOODLE_URL}"
token = "moodle-token"
retry_attempts = 1
[salesforce]
auth = "session"
session_id = "session-id"
instance_url = "{INSTANCE}"
domain = "acme.my.salesforce.com"
[members]
lookback_seconds = 0
[service]
data_dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def fakes() -> Iterator[tuple[FakeMoodle, FakeSalesforce]]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        moodle, sf = FakeMoodle(), FakeSalesforce()
        moodle.install(rsps)
        sf.install(rsps)
        yield moodle, sf


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_sync_subcommands_come_from_the_registry(config: Path) -> None:
    code, output = invoke(config, "sync", "--help")
    assert code == 0
    assert "members" in output
    code, output = invoke(config, "sync", "members", "--help")
    assert code == 0
    for option in ("[ID]...", "--full", "--dry-run", "--only", "--show-names", "--json"):
        assert option in output
    assert "--ids" not in output  # one convention: record Ids are positional, as in retry


def test_dry_run_prints_the_plan_and_exits_zero(
    config: Path, fakes: tuple[FakeMoodle, FakeSalesforce]
) -> None:
    moodle, sf = fakes
    cid = sf.add(1)

    code, output = invoke(config, "sync", "members", "--dry-run")

    assert code == 0, output
    assert "create" in output and cid in output
    assert "member1@example.org" not in output  # no emails in the plan
    assert moodle.write_calls == 0


def test_failed_records_exit_1_and_show_in_status(
    config: Path, fakes: tuple[FakeMoodle, FakeSalesforce]
) -> None:
    _, sf = fakes
    sf.add(1)
    bad = sf.add(2, Email=None)

    code, output = invoke(config, "sync", "members")
    assert code == 1, output
    assert "created" in output

    code, output = invoke(config, "status")
    assert code == 0, output
    assert bad in output
    assert "mapping:email_missing" in output
    assert "members:Contact" in output  # the cursor
    assert "failed_records" in output


def test_ids_accept_spaces_commas_and_repeats(
    config: Path, fakes: tuple[FakeMoodle, FakeSalesforce]
) -> None:
    moodle, sf = fakes
    ids = [sf.add(n) for n in range(4)]

    code, output = invoke(config, "sync", "members", ids[0], f"{ids[1]},{ids[2]}", ids[0])

    assert code == 0, output
    assert {u["idnumber"] for u in moodle.users.values()} == set(ids[:3])


def test_usage_errors(config: Path) -> None:
    code, output = invoke(config, "sync", "members", "--full", "003TEST00000001AAA")
    assert code == 2
    assert "--full and record Ids exclude each other" in output
    code, output = invoke(config, "sync", "members", "--ids", "003TEST00000001AAA")
    assert code == 2
    assert "No such option '--ids'" in output
    code, output = invoke(config, "sync", "members", "--only", "create")
    assert code == 2
    assert "use it with --dry-run" in output
    code, output = invoke(config, "sync", "members", "003'; DELETE")
    assert code == 2
    assert "not a Salesforce record Id" in output


def test_stopped_run_exits_2(config: Path, fakes: tuple[FakeMoodle, FakeSalesforce]) -> None:
    code, output = invoke(config, "sync", "members", "--full")  # an empty source

    assert code == 2
    assert "source_empty" in output


def test_a_dry_run_the_guard_would_stop_exits_2(
    config: Path, fakes: tuple[FakeMoodle, FakeSalesforce]
) -> None:
    code, output = invoke(config, "sync", "members", "--full", "--dry-run")  # an empty source

    assert code == 2
    assert "would stop: source_empty" in output


@pytest.mark.parametrize(
    ("status", "failed", "expected"),
    [("ok", 0, 0), ("dry_run", 0, 0), ("failed_records", 3, 1), ("stopped", 0, 2), ("error", 0, 2)],
)
def test_exit_status(status: str, failed: int, expected: int) -> None:
    result = RunResult(kind="members", status=status, counts={"failed": failed})
    assert exit_status(result) == expected


def _failed(config: Path, record_id: str) -> dict:
    code, output = invoke(config, "status", "--json")
    assert code == 0, output
    return next(row for row in json.loads(output)["failed"] if row["record"] == record_id)


def test_status_numbers_failed_records_for_retry_and_shows_no_pii(
    config: Path, fakes: tuple[FakeMoodle, FakeSalesforce]
) -> None:
    _, sf = fakes
    config.write_text(config.read_text() + "retry_max_attempts = 1\n", encoding="utf-8")
    bad = sf.add(2, Email=None, FirstName="Zelda", LastName="Quux")
    sf.add(3, Email="kept.private@example.org")
    assert invoke(config, "sync", "members")[0] == 1

    code, output = invoke(config, "status")

    assert code == 0, output
    row = next(line.split() for line in output.splitlines() if bad in line)
    assert row[:4] == [row[0], "members", bad, "mapping:email_missing"]
    assert row[0].isdigit()
    assert "mentorsync retry #" in output
    for private in ("Zelda", "Quux", "kept.private", "@example.org"):
        assert private not in output
    failed = _failed(config, bad)
    assert failed["number"] == int(row[0])
    assert (failed["kind"], failed["error"], failed["stage"], failed["attempts"]) == (
        "members",
        "mapping:email_missing",
        "mapping",
        1,
    )
    assert failed["parked"] is True  # retry_max_attempts = 1
    assert failed["next_retry"] is None

    code, retried = invoke(config, "retry", row[0])
    assert code == 0, retried
    assert "requeued 1 failed record" in retried

    failed = _failed(config, bad)
    assert failed["attempts"] == 0
    assert failed["parked"] is False
