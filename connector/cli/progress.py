"""Progress of a run: a rich bar on a terminal, plain lines elsewhere (systemd, a pipe, a log).

The run calls ``hook(done, total)``: total is None while the source is read (its size is not
known), then the number of planned changes while they are applied.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

ProgressHook = Callable[[int, int | None], None]

# Plain lines come at most this often (and at each change of phase), so a log stays readable.
PLAIN_EVERY_SECONDS = 10.0


def _phase(total: int | None) -> str:
    return "applying" if total else "reading"


class ProgressReport:
    """A context manager yielding the progress hook of one run of ``kind``."""

    def __init__(
        self,
        console: Console,
        kind: str,
        *,
        plain_stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.kind = kind
        self.plain_stream = plain_stream
        self.clock = clock
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.total: int | None = None
        self._phase_shown = ""
        self._last_line = 0.0

    def __enter__(self) -> ProgressHook:
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(f"{self.kind}: reading", total=None)
        return self.update

    def update(self, done: int, total: int | None) -> None:
        """Show ``done`` of ``total`` (None: not known yet)."""
        if self.bar is not None and self.task is not None:
            if total != self.total:
                self.total = total
                self.bar.update(self.task, description=f"{self.kind}: {_phase(total)}")
            self.bar.update(self.task, completed=done, total=total)
            return
        phase = _phase(total)
        now = self.clock()
        if phase == self._phase_shown and now - self._last_line < PLAIN_EVERY_SECONDS:
            return
        self._phase_shown, self._last_line = phase, now
        of = f" of {total}" if total else ""
        stream = self.plain_stream or sys.stderr
        print(f"{self.kind}: {phase} {done}{of}", file=stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
