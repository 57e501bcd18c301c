"""CPU accounting for the benchmarks: who used the machine's cores while a phase ran.

Linux only (reads ``/proc``). A :class:`CpuMeter` takes snapshots of the CPU seconds (user +
system) of named process trees (the web server and its workers, the database server and its
backends), of this process (the load generator), and of the whole machine; the difference of two
snapshots says, per request, where the CPU went, and how much of it was used by processes that are
not part of the benchmark at all (other work on a shared machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _processes() -> dict[int, tuple[int, float]]:
    """``{pid: (ppid, cpu seconds)}`` of every process we may read."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The command name is in parentheses and may hold spaces: split after its last ")".
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        out[int(entry.name)] = (ppid, (utime + stime) / _TICK)
    return out


def tree_seconds(root: int, processes: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of ``root`` and its living descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            total += processes[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def machine_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def self_seconds() -> float:
    """CPU seconds of this process (every thread)."""
    times = os.times()
    return times.user + times.system


@dataclass
class CpuUse:
    """CPU seconds used during one or more phases, by group, and the wall time."""

    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def add(self, other: CpuUse) -> None:
        """Add another phase's figures to these."""
        for key, value in other.seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value
        self.wall += other.wall

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """Milliseconds of CPU per request, by group (``other``: the rest of the machine)."""
        return {k: v * 1000 / requests for k, v in self.seconds.items()} if requests else {}

    def machine_busy(self) -> float:
        """Share of all cores that were busy (1.0: the machine was saturated)."""
        return self.seconds.get("machine", 0.0) / (self.wall * CORES) if self.wall else 0.0


class CpuMeter:
    """Snapshots of named process trees, this process (``client``) and the machine."""

    def __init__(self, trees: dict[str, int]) -> None:
        self.trees = trees

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far, by group."""
        processes = _processes()
        out = {name: tree_seconds(pid, processes) for name, pid in self.trees.items()}
        out["client"] = self_seconds()
        out["machine"] = machine_seconds()
        return out

    @staticmethod
    def used(before: dict[str, float], after: dict[str, float], wall: float) -> CpuUse:
        """What was used between two snapshots; ``other`` is the machine minus our groups."""
        seconds = {k: after[k] - before[k] for k in before}
        ours = sum(v for k, v in seconds.items() if k != "machine")
        seconds["other"] = max(seconds["machine"] - ours, 0.0)
        return CpuUse(seconds, wall)
