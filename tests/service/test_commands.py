"""`mentorsync retry`, and `mentorsync run` starting and stopping cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select

from connector.cli import main
from connector.state import bookkeeping, inbox
from connector.state.database import FailedRecord, InboxEvent, StateDB
from tests.webhooks.fakes import ORG_ID, FakeKinds


def write_config(tmp_path: Path, **service: object) -> Path:
    lines = ["[service]", f'data_dir = "{tmp_path / "data"}"']
    lines += [
        f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {str(v).lower()}"
        for k, v in service.items()
    ]
    # Dead loopback ports: nothing here may reach a real service.
    lines += [
        "[moodle]",
        'url = "http://127.0.0.1:9"',
        'token = "unused-token"',
        "[salesforce]",
        'domain = "127.0.0.1:9"',
        'username = "unused@example.org"',
        'password = "unused"',
        f'org_ids = ["{ORG_ID}"]',
    ]
    path = tmp_path / "mentorsync.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, fake_kinds: FakeKinds) -> Path:
    return write_config(tmp_path, queue_url=f"sqlite:///{tmp_path / 'data' / 'queue.db'}")


def failures(db: StateDB) -> dict[str, tuple[int, bool]]:
    with db.session() as session:
        return {r.record_id: (r.attempts, r.parked) for r in session.scalars(select(FailedRecord))}


def seed_failures(tmp_path: Path) -> StateDB:
    from tests.webhooks.fakes import make_settings

    settings = make_settings(tmp_path / "data")
    db = StateDB(settings.database_url)
    svc = settings.service
    with db.session() as session:
        for record, attempts in (("003A", 8), ("003B", 8), ("003C", 2)):
            for _ in range(attempts):
                bookkeeping.record_failure(session, "fake_contacts", record, "x", "moodle", svc)
    return db


def test_retry_by_record_id_and_number(tmp_path: Path, config: Path) -> None:
    db = seed_failures(tmp_path)
    try:
        assert failures(db) == {"003A": (8, True), "003B": (8, True), "003C": (2, False)}
        with db.session() as session:
            number_b = session.scalar(
                select(FailedRecord.id).where(FailedRecord.record_id == "003B")
            )
        result = CliRunner().invoke(main, ["--config", str(config), "retry", "003A", str(number_b)])
        assert result.exit_code == 0, result.output
        assert "requeued 2 failed record(s) of fake_contacts" in result.output
        assert failures(db) == {"003A": (0, False), "003B": (0, False), "003C": (2, False)}
        with db.session() as session:
            assert set(bookkeeping.due_failures(session, "fake_contacts")) == {"003A", "003B"}
    finally:
        db.dispose()


def test_retry_all_also_requeues_given_up_inbox_rows(tmp_path: Path, config: Path) -> None:
    db = seed_failures(tmp_path)
    try:
        inbox.store(
            db, [inbox.Notice("k1", "salesforce-outbound", "fake_contacts", "Contact", "003A")]
        )
        inbox.lease(db, "fake_contacts", 10, 60)
        import datetime as dt

        inbox.back_off(db, [1], "MoodleTransientError", dt.timedelta(seconds=60), max_attempts=1)
        result = CliRunner().invoke(main, ["--config", str(config), "retry", "--all"])
        assert result.exit_code == 0, result.output
        assert "requeued 3 failed record(s)" in result.output
        assert all(not parked for _, parked in failures(db).values())
        with db.session() as session:
            assert session.scalars(select(InboxEvent.status)).all() == ["pending"]
    finally:
        db.dispose()


def test_retry_unknown_id_fails(tmp_path: Path, config: Path) -> None:
    db = seed_failures(tmp_path)
    db.dispose()
    result = CliRunner().invoke(main, ["--config", str(config), "retry", "003Z"])
    assert result.exit_code == 1
    assert "not a failed record: 003Z" in result.output


@pytest.mark.parametrize("args", [[], ["--all", "003A"]])
def test_retry_needs_all_or_ids(config: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, ["--config", str(config), "retry", *args])
    assert result.exit_code == 2
    assert "give either --all or one or more IDS" in result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_run_serves_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port = free_port()
    config = write_config(tmp_path, bind=f"127.0.0.1:{port}", scheduler=False)
    command = [
        sys.executable,
        "-c",
        "from connector.cli import main; main(prog_name='mentorsync')",
        "--config",
        str(config),
        "run",
        "--web-processes",
        "1",
        "--workers",
        "1",
    ]
    # Its own process group, so that SIGINT can go to the whole group as Ctrl-C does.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # still starting: gunicorn's worker builds the app on its first request
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.1)
        assert ready.json()["checks"] == {"database": "ok", "queue": "ok"}
        # A bad body against the real server: a 4xx, and the server still answers.
        bad = requests.post(
            f"http://127.0.0.1:{port}/hooks/salesforce/outbound",
            data=b"<not xml",
            headers={"Content-Type": "text/xml"},
            timeout=5,
        )
        assert bad.status_code == 400
        # A request line gunicorn cannot parse is logged by gunicorn itself: never the path
        # segment (it may be service.outbound_path_secret).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"POST /hooks/salesforce/outbound/s3cret-Segment\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        family = descendants(proc.pid)
        assert len(family) >= 3  # web master, its worker, the Huey consumer
        if stop_signal == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: everyone gets it
        else:
            # SIGTERM: systemd, docker stop. SIGKILL: the OOM killer; `run` cannot pass it on,
            # the kernel tells the children (their parent-death signal).
            proc.send_signal(stop_signal)
        assert proc.wait(timeout=60) == (0 if stop_signal != signal.SIGKILL else -signal.SIGKILL)
        if stop_signal != signal.SIGKILL:
            assert [pid for pid in family if alive(pid)] == []  # `run` waited for them
        deadline = time.monotonic() + 60
        while leftover := [pid for pid in family if alive(pid)]:
            assert time.monotonic() < deadline, f"still running: {leftover}"
            time.sleep(0.1)
        output = proc.stdout.read().decode()  # type: ignore[union-attr]
        assert "/hooks/salesforce/outbound/<redacted>" in output
        assert "s3cret-Segment" not in output
    finally:
        # The whole process group (its own session): `run` and anything it left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("command", ["serve", "run"])
def test_a_taken_port_is_a_clear_error_before_anything_starts(
    tmp_path: Path, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from connector.cli import service

    started: list[object] = []
    monkeypatch.setattr(service, "run_gunicorn", lambda *args: started.append(args))
    monkeypatch.setattr(service.subprocess, "Popen", lambda *args, **kw: started.append(args))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = write_config(tmp_path, bind=address, scheduler=False)
        result = CliRunner().invoke(main, ["--config", str(config), command])
    assert result.exit_code == 1
    assert f"cannot listen on {address}: the port is already in use" in result.output
    assert started == []


def test_serve_starts_gunicorn_on_a_free_port(
    tmp_path: Path, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.cli import service

    started: list[dict[str, object]] = []
    monkeypatch.setattr(service, "run_gunicorn", lambda factory, options: started.append(options))
    address = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path, scheduler=False)
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--bind", address])
    assert result.exit_code == 0, result.output
    assert [options["bind"] for options in started] == [address]
    # Privacy: no access log (the Outbound Message path may carry a secret).
    assert started[0]["accesslog"] is None


@pytest.mark.parametrize(
    ("flag", "periodic"), [([], None), (["--scheduler"], True), (["--no-scheduler"], False)]
)
def test_worker_scheduler_flag_reaches_the_consumer(
    config: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str], periodic: bool | None
) -> None:
    from connector.service.worker import Worker

    seen: list[tuple[int, bool | None]] = []

    def run_consumer(self: Worker, workers: int = 2, periodic: bool | None = None) -> None:
        seen.append((workers, periodic))
        self.close()
        self.db.dispose()

    monkeypatch.setattr(Worker, "run_consumer", run_consumer)
    result = CliRunner().invoke(main, ["--config", str(config), "worker", "--workers", "3", *flag])
    assert result.exit_code == 0, result.output
    # None: the consumer follows service.scheduler (test_worker checks that rule).
    assert seen == [(3, periodic)]
