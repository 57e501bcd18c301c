"""Run ``mentorsync`` with a fake ``people`` kind, for the scripted terminal tests.

``python -m tests.cli.terminal_driver slow|block -- <mentorsync arguments>``: ``slow`` applies
100 changes over about a second and a half (long enough for the bar to be drawn), ``block``
reads, then waits until interrupted.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import connector.registry
from connector.cli import main
from connector.engine.kind import RunResult, SyncRequest


class TerminalKind:
    """People, CRM -> LMS (a fake for terminal tests)."""

    name = "people"
    objects = ("Contact",)
    summary_labels = {"created": "created {n} accounts"}

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def run(self, ctx: Any, request: SyncRequest, progress: Any = None) -> RunResult:
        """Report progress like a real run; ``block`` never ends by itself."""
        progress(0, None)
        if self.behaviour == "block":
            print("people: waiting for Ctrl-C", file=sys.stderr, flush=True)
            while True:
                time.sleep(0.05)  # stands for a long Moodle call
        for done in range(101):
            progress(done, 100)
            time.sleep(0.015)  # stands for the work of one change
        return RunResult(kind="people", run_id=1, status="ok", counts={"created": 100})


if __name__ == "__main__":
    behaviour, separator, *args = sys.argv[1:]
    assert separator == "--"
    connector.registry.kinds()
    connector.registry.REGISTRY.clear()
    connector.registry.register(TerminalKind(behaviour))
    main(args, prog_name="mentorsync")
