"""``mentorsync sync <kind>``: help, ids, words, JSON, progress, Ctrl-C, credentials, dry runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from connector.engine.kind import RunResult, SyncRequest
from tests.cli.conftest import CONTACT_A, CONTACT_B, Cli, WordyKind, write_config


def test_help_is_the_kinds_whole_first_paragraph(cli: Cli) -> None:
    # Defect 5: only the docstring's first line was used, cutting the sentence.
    result = cli("sync", "people", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert (
        "People, CRM -> LMS: a fake kind whose first paragraph spans two lines of its "
        "docstring, so the help must not stop at the first line." in text
    )
    assert "Second paragraph" not in text
    assert "Usage: main sync people [OPTIONS] [ID]..." in result.output


def test_record_ids_are_positional_like_retry(cli: Cli) -> None:
    # Defect 8: the usage line showed [ID]... yet positional ids were refused.
    result = cli("sync", "people", CONTACT_A, f"{CONTACT_B},{CONTACT_A}")
    assert result.exit_code == 0, result.output
    assert cli.kind.calls == [SyncRequest(mode="ids", ids=(CONTACT_A, CONTACT_B))]


def test_summary_in_words_from_the_kinds_labels(cli: Cli) -> None:
    cli.kind.behaviour = lambda ctx, request, progress: RunResult(
        kind="people",
        run_id=7,
        status="ok",
        counts={
            "created": 88, "conflicts": 1, "skipped": 23, "linked_active": 400,
            "written_back": 88, "planned": 112, "retired": 2,
        },
    )
    result = cli("sync", "people")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "people run 7: created 88 accounts, 1 conflict (shared email), 23 skipped (no email), "
        "retired: 2"
    )
    assert lines[1] == "status: ok"
    for internal in ("linked_active", "written_back", "planned"):
        assert internal not in result.output


def test_json_keeps_every_counter(cli: Cli) -> None:
    counts = {"created": 2, "linked_active": 40, "written_back": 2}
    cli.kind.behaviour = lambda ctx, request, progress: RunResult(
        kind="people", run_id=3, status="ok", counts=counts
    )
    result = cli("sync", "people", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "kind": "people",
        "run_id": 3,
        "status": "ok",
        "reason": None,
        "counts": {"created": 2, "linked_active": 40, "written_back": 2},
        "summary": ["created 2 accounts"],
        "plan_counts": {},
        "plan": [],
    }


def _dry_run(ctx: Any, request: SyncRequest, progress: Any) -> RunResult:
    return RunResult(
        kind="people",
        status="dry_run",
        counts={"planned": 4},
        plan=[
            ("create", CONTACT_A, "new account"),
            ("suspend", "0035e00000AbCdGAAV", "Lapsed"),
            ("create", CONTACT_B, "new account"),
            ("update", "0035e00000AbCdHAAV", "email"),
        ],
    )


def test_dry_run_counts_per_action_and_filters_with_only(cli: Cli) -> None:
    cli.kind.behaviour = _dry_run
    result = cli("sync", "people", "--dry-run", "--only", "create")
    assert result.exit_code == 0, result.output
    assert "Plan (people): create 2, suspend 1, update 1; showing create" in result.output
    assert CONTACT_A in result.output and CONTACT_B in result.output
    assert "0035e00000AbCdGAAV" not in result.output  # a suspend: filtered out

    data = json.loads(cli("sync", "people", "--dry-run", "--json", "--only", "suspend").output)
    assert data["plan_counts"] == {"create": 2, "suspend": 1, "update": 1}
    assert data["plan"] == [
        {"action": "suspend", "record": "0035e00000AbCdGAAV", "details": "Lapsed"}
    ]


def test_dry_run_on_a_fresh_install_leaves_no_trace(cli: Cli, tmp_path: Path) -> None:
    # Defect 10: a dry run created the state database and recorded a run.
    cli.kind.behaviour = _dry_run
    result = cli("sync", "people", "--dry-run")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "data").exists()


def test_show_names_reads_names_at_print_time(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.kind.behaviour = _dry_run
    asked: list[str] = []

    class FakeSalesforce:
        def query(self, soql: str) -> list[dict[str, str]]:
            asked.append(soql)
            return [{"Id": CONTACT_A, "FirstName": "Ada", "LastName": "Lovelace"}]

    monkeypatch.setattr("connector.context.Context.salesforce", FakeSalesforce(), raising=False)
    result = cli("sync", "people", "--dry-run", "--show-names", "--only", "create")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if CONTACT_A in line)
    assert "Ada Lovelace" in row
    assert len(asked) == 1
    assert asked[0].startswith("SELECT Id, FirstName, LastName FROM Contact WHERE Id IN (")
    # Without the flag, no names and no Salesforce query.
    asked.clear()
    assert "Ada" not in cli("sync", "people", "--dry-run").output
    assert asked == []


def test_ctrl_c_exits_130_with_one_line(cli: Cli) -> None:
    # Defect 7: "Aborted!" and exit 1, the same as "records failed".
    def interrupted(ctx: Any, request: SyncRequest, progress: Any) -> RunResult:
        raise KeyboardInterrupt

    cli.kind.behaviour = interrupted
    result = cli("sync", "people")
    assert result.exit_code == 130
    assert "Aborted" not in result.output
    assert result.output.strip().splitlines() == [
        "people: interrupted (Ctrl-C); a run that had started is recorded as "
        "interrupted, and the next one starts from the last saved cursor"
    ]


@pytest.mark.parametrize(
    ("extra", "credentials", "message"),
    [
        ("", False, "configuration: moodle.token: required (the web-service token)"),
        (
            '[salesforce]\nauth = "jwt"\n',
            True,
            "configuration: salesforce.consumer_key: required for auth = jwt",
        ),
    ],
)
def test_missing_credentials_stop_before_any_call(
    tmp_path: Path, people: WordyKind, extra: str, credentials: bool, message: str
) -> None:
    # Defect 3: a missing moodle.token reached Moodle and came back as invalidtoken.
    config = write_config(tmp_path, credentials=credentials)
    if extra:  # a second [salesforce] table is not TOML: merge by hand
        text = config.read_text().replace("[salesforce]\n", extra)
        config.write_text(text)
    result = Cli(config, people)("sync", "people")
    assert result.exit_code == 1
    assert message in result.output
    assert people.calls == []


def test_unusable_data_dir_names_the_key(tmp_path: Path, people: WordyKind) -> None:
    # Defect 2: a traceback from the state module.
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(str(tmp_path / "data"), "/proc/nope"))
    for args in (("sync", "people"), ("sync", "people", "--dry-run"), ("status",)):
        result = Cli(config, people)(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "configuration: service.data_dir: cannot create /proc/nope (" in result.output
        assert "Traceback" not in result.output
    assert people.calls == []


def test_permission_denied_is_said_so(
    tmp_path: Path, people: WordyKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = Cli(config, people)("sync", "people")
    assert result.exit_code == 1
    assert (
        f"configuration: service.data_dir: cannot create {tmp_path / 'data'} (permission denied)"
        in result.output
    )


def test_plain_progress_lines_when_not_a_terminal() -> None:
    from rich.console import Console

    from connector.cli.progress import ProgressReport

    stream = io.StringIO()
    clock = iter([0.0, 1.0, 2.0, 3.0, 15.0, 16.0])
    console = Console(file=io.StringIO(), force_terminal=False)
    with ProgressReport(console, "people", plain_stream=stream, clock=lambda: next(clock)) as hook:
        hook(0, None)
        hook(2000, None)  # same phase, 1 s later: not repeated
        hook(0, 10)
        hook(5, 10)  # 1 s later: not repeated
        hook(9, 10)  # 12 s after the last line
        hook(10, 10)
    assert stream.getvalue().splitlines() == [
        "people: reading 0",
        "people: applying 0 of 10",
        "people: applying 9 of 10",
    ]


def test_phrases_and_singulars() -> None:
    from connector.cli.report import phrase, summary_words

    assert phrase("{n} conflicts (shared email)", 1) == "1 conflict (shared email)"
    assert phrase("created {n} accounts", 1) == "created 1 account"
    assert phrase("linked {n} existing accounts", 1) == "linked 1 existing account"
    assert phrase("{n} status changes", 1) == "1 status change"
    assert phrase("created {n} accounts", 1200) == "created 1,200 accounts"
    assert phrase("{n} skipped (no email)", 1) == "1 skipped (no email)"
    # A kind without labels: plain words for every counter, internal ones still hidden.
    assert summary_words(object(), {"created": 3, "planned": 3, "moodle_failed": 0}) == [
        "created: 3"
    ]
