"""The scale-out layout for tests: the web service and worker processes on one PostgreSQL state
database and one Redis queue, against the loopback sandboxes.

Every process is a real ``mentorsync`` command (``serve``, ``worker``) started from a TOML file,
as systemd would start them; the sandboxes run in the test process, so the test reads Moodle's
and Salesforce's data directly. :class:`Cluster` starts and stops the processes; the fixture
``cluster`` builds the whole world and takes it down again, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from connector.config import Settings, load_settings
from connector.service.queue import make_huey
from connector.state.database import StateDB
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.testing import running_sandboxes
from tests.backends import Server, _require, create_database, drop_database, free_port

MEMBERS = 5000
# Seconds added to every sandbox call: a full run of 5,000 then lasts long enough (about 15 s)
# to be caught, and killed, halfway.
LATENCY = 0.1
# Small, so that a survivor takes over a dead worker's lock and leases within seconds.
LOCK_TTL_SECONDS = 5
INBOX_LEASE_SECONDS = 5
START_SECONDS = 60.0
STOP_SECONDS = 30.0
CLI = [sys.executable, "-c", "from connector.cli import main; main(prog_name='mentorsync')"]


def poll(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    every: float = 0.1,
    describe: Callable[[], str] | None = None,
) -> Any:
    """``check()``'s first truthy value; fail naming ``what`` (and ``describe()``: the state it
    was in) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            state = f"\n{describe()}" if describe is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{state}")
        time.sleep(every)


@dataclass
class Proc:
    """One ``mentorsync`` child process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id (what lock owners name)."""
        return self.popen.pid

    def log_text(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Cluster:
    """Sandboxes, settings, the shared state database and queue, and the processes."""

    sf: SalesforceSandbox
    moodle: MoodleSandbox
    settings: Settings
    config: Path
    db: StateDB
    root: Path
    web_url: str = ""
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> Proc:
        """Start ``mentorsync --config <file> <args>`` as ``name``."""
        log = self.root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MENTORSYNC_")}
        env["PYTHONUNBUFFERED"] = "1"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [*CLI, "--config", str(self.config), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str, *, scheduler: bool) -> Proc:
        """A worker (two task threads), with or without the schedules; returns once consuming."""
        proc = self.start(
            name, "worker", "--workers", "2", "--scheduler" if scheduler else "--no-scheduler"
        )
        self.wait_for_log(proc, "Huey consumer started")
        return proc

    def start_web(self) -> Proc:
        """The webhook service (one gunicorn process, four threads); returns once it answers."""
        port = free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        proc = self.start("web", "serve", "--bind", f"127.0.0.1:{port}", "--processes", "1")

        def ready() -> bool:
            self.check_alive(proc)
            try:
                return requests.get(self.web_url + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet
                return False

        poll("the web service to be ready", ready, START_SECONDS)
        return proc

    def wait_for_log(self, proc: Proc, text: str, timeout: float = START_SECONDS) -> None:
        """Wait until ``proc`` has logged ``text`` (and is still alive)."""

        def logged() -> bool:
            self.check_alive(proc)
            return text in proc.log_text()

        poll(f"{proc.name} to log {text!r}", logged, timeout)

    def check_alive(self, proc: Proc) -> None:
        """Fail with the log's tail if ``proc`` exited."""
        if proc.popen.poll() is not None:
            tail = proc.log_text()[-3000:]
            pytest.fail(f"{proc.name} exited with {proc.popen.returncode}:\n{tail}")

    def logs(self, tail: int = 1500) -> str:
        """The end of every process's log."""
        return "\n".join(f"--- {p.name} ---\n{p.log_text()[-tail:]}" for p in self.procs.values())

    def stop(self) -> None:
        """Stop every process still running."""
        for proc in self.procs.values():
            proc.stop()


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    # JSON strings, numbers, booleans and arrays of strings are valid TOML values.
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _sections(
    sf: SalesforceSandbox, moodle: MoodleSandbox, root: Path, database_url: str, queue_url: str
) -> dict[str, dict[str, Any]]:
    return {
        "moodle": {
            "url": moodle.url,
            "token": moodle.token,
            "max_input_vars": moodle.max_input_vars,
        },
        "salesforce": {
            "auth": "password",
            "username": sf.username,
            "password": sf.password,
            "security_token": sf.security_token,
            "domain": f"{sf.host}:{sf.port}",
            "ca_bundle": sf.ca_file,
            "org_ids": [sf.org_id],
        },
        # The first full run creates thousands of accounts: not a mass change to hold back.
        "members": {"mass_change_share": 1.0},
        "service": {
            "data_dir": str(root / "mentorsync"),
            "database_url": database_url,
            "queue_url": queue_url,
            "lock_ttl_seconds": LOCK_TTL_SECONDS,
            "inbox_lease_seconds": INBOX_LEASE_SECONDS,
            "coalesce_seconds": 0.5,
            "incremental_minutes": 1,
            "scheduler": False,
        },
    }


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_server: Server | None, redis_server: Server | None
) -> Iterator[Cluster]:
    """5,000 members in the sandboxes, all of them in the programme; a fresh PostgreSQL state
    database; the Redis queue emptied. No process is started yet."""
    database_url = create_database(_require(postgres_server))
    queue_url = _require(redis_server)
    huey = make_huey(queue_url, blocking=False)
    huey.flush()
    try:
        with running_sandboxes(tmp_path, members=MEMBERS, latency=LATENCY) as (sf, moodle, _):
            # The seed puts a few hundred members in the programme; a full sync of 5,000 wants
            # all of them (the seed's special cases keep their roles).
            for cid in sf.seed_report.contact_ids:
                contact = sf.store.get("Contact", cid)
                if contact is not None and not contact.get("Mentorship_Role__c"):
                    sf.store.update("Contact", cid, {"Mentorship_Role__c": "Mentee"}, notify=False)
            sections = _sections(sf, moodle, tmp_path, database_url, queue_url)
            config = tmp_path / "mentorsync.toml"
            config.write_text(_toml(sections), encoding="utf-8")
            settings = load_settings(None, env={}, overrides=sections)
            db = StateDB(database_url)  # the schema, before any process starts
            world = Cluster(sf, moodle, settings, config, db, tmp_path)
            try:
                yield world
            finally:
                world.stop()
                sf.outbound.url = None
                db.dispose()
    finally:
        huey.flush()
        huey.storage.close()
        drop_database(database_url)
