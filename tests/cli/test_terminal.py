"""Scripted terminal runs (pexpect, a real pseudo-terminal): the progress bar, Ctrl-C, the demo.

CliRunner is not a terminal; these run ``mentorsync`` as a child on a pty of a given size, as
an administrator's terminal is.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pexpect
import pytest

from tests.cli.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _as_on_a_terminal() -> None:
    # A terminal's foreground program gets Ctrl-C. A runner that started these tests in the
    # background of a non-interactive shell may have left SIGINT ignored, and an ignored signal
    # stays ignored across exec: put back the default, as a login shell would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args: list[str], *, columns: int = 100, timeout: float = 30) -> pexpect.spawn:
    env = {
        "PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT), "HOME": str(ROOT),
    }
    return pexpect.spawn(
        sys.executable, args, cwd=str(ROOT), env=env, dimensions=(40, columns),
        timeout=timeout, encoding="utf-8", codec_errors="replace", preexec_fn=_as_on_a_terminal,
    )


def driver(tmp_path: Path, behaviour: str, *args: str) -> pexpect.spawn:
    config = write_config(tmp_path)
    return spawn(
        ["-m", "tests.cli.terminal_driver", behaviour, "--", "--config", str(config), *args]
    )


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    child = driver(tmp_path, "slow", "sync", "people")
    # rich draws the bar in place: the phase, the bar itself and done/total.
    child.expect(r"people: applying")
    child.expect(r"━+")
    child.expect(r"\d+/100")
    child.expect(r"people run 1: created 100 accounts")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_ends_with_130_and_one_line(tmp_path: Path) -> None:
    child = driver(tmp_path, "block", "sync", "people")
    child.expect("people: waiting for Ctrl-C")
    child.sendintr()  # the terminal's Ctrl-C: SIGINT to the foreground process group
    child.expect(pexpect.EOF)
    output = ANSI.sub("", child.before)
    child.close()
    assert child.exitstatus == 130
    assert "Aborted" not in output
    assert "Traceback" not in output
    assert "people: interrupted (Ctrl-C); a run that had started is recorded" in " ".join(
        output.split()
    )


@pytest.mark.e2e
def test_demo_fits_80_columns_and_speaks_plainly() -> None:
    # A wide terminal too: the demo keeps to 80 columns whatever the width.
    child = spawn(["-m", "connector.cli", "demo", "--members", "30"], columns=120, timeout=180)
    child.expect(pexpect.EOF)
    output = ANSI.sub("", child.before)
    child.close()
    assert child.exitstatus == 0, output
    lines = output.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert too_wide == [], too_wide
    for words in (
        "Member sync: what happened", "new Moodle accounts", "changed their email",
        "membership lapsed", "joined the programme as a mentee", "Demo finished in",
    ):
        assert words in output, words
    assert "{" not in output  # no raw dicts


@pytest.mark.e2e
def test_ctrl_c_during_a_real_member_sync_records_it_as_interrupted(tmp_path: Path) -> None:
    import json

    # Slow sandboxes (0.3 s a call): the run is still going when Ctrl-C comes.
    sandbox = spawn(
        ["-m", "connector.cli", "sandbox", "--data", str(tmp_path / "sb"), "--latency", "0.3"],
        timeout=60,
    )
    try:
        sandbox.expect("Press Ctrl-C to stop.")
        config = str(tmp_path / "sb" / "mentorsync.toml")
        child = spawn(["-m", "connector.cli", "--config", config, "sync", "members", "--full"])
        child.expect(r"members: reading")
        _wait_until_running(config)  # the bar shows before the run is recorded
        child.sendintr()
        child.expect(pexpect.EOF)
        output = ANSI.sub("", child.before)
        child.close()
        assert child.exitstatus == 130, output
        assert "Aborted" not in output and "Traceback" not in output
        status = spawn(["-m", "connector.cli", "--config", config, "status", "--json"])
        status.expect(pexpect.EOF)
        runs = json.loads(ANSI.sub("", status.before))["runs"]
        assert [(r["mode"], r["status"]) for r in runs] == [("full", "interrupted")]
    finally:
        sandbox.sendintr()
        sandbox.expect(pexpect.EOF)
        sandbox.close()


def _wait_until_running(config: str, deadline_s: float = 30) -> None:
    import time

    from sqlalchemy import select

    from connector.config import load_settings
    from connector.state.database import Run, StateDB

    db = StateDB(load_settings(config, env={}).database_url)
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            with db.session() as session:
                if session.scalars(select(Run.status).where(Run.status == "running")).first():
                    return
            time.sleep(0.05)
        raise AssertionError("the run was never recorded as running")
    finally:
        db.dispose()
