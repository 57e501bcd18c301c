"""``mentorsync sandbox``: starts both sandboxes, seeds once, writes a config, stops on SIGTERM."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

from connector.clients.salesforce.client import SalesforceClient
from connector.config import load_settings

START = "from connector.cli import main; main()"


class Running:
    """``mentorsync sandbox`` in a child process; its output read line by line with a deadline."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", START, "sandbox", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.output):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self.lines.empty()):
                raise AssertionError(f"no {text!r} in the output:\n" + "\n".join(self.output))
            try:
                self.output.append(self.lines.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self.reader.join(timeout=10)  # the output ends when the process does
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code


def test_sandbox_command_seeds_once_and_resumes(tmp_path):
    data = tmp_path / "data"
    first = Running("--data", str(data), "--members", "40", "--seed", "5")
    try:
        first.wait_for("Press Ctrl-C to stop.")
    finally:
        assert first.stop() == 0
    assert any("Seeded 40 members" in line for line in first.output)
    assert (data / "salesforce" / "salesforce.json").is_file()
    assert (data / "moodle" / "moodle.json").is_file()

    second = Running("--data", str(data))
    try:
        second.wait_for("Press Ctrl-C to stop.")
        assert any("Resumed" in line for line in second.output)
        assert not any("Seeded" in line for line in second.output)
        config = data / "mentorsync.toml"
        assert any(str(config) in line for line in second.output)

        # The written config is valid and logs in to the running sandbox.
        settings = load_settings(config, env={})
        client = SalesforceClient(settings.salesforce)
        contacts = list(client.query("SELECT Id FROM Contact"))
        assert len(contacts) == 40
        assert settings.service.data_dir == str(data / "mentorsync")
    finally:
        assert second.stop() == 0
    assert any("saving their state" in line for line in second.output)
