"""Benchmark of the progress sync against the loopback sandboxes (not a test).

It starts both sandboxes with a per-call latency (default 10 ms), makes ``--pairs`` matches
(default 5,000: 10,000 people with Moodle accounts in both courses) with a realistic spread of
completions (mentees ticking 0-6 meetings, most 2-4; 90% of mentees and 85% of mentors through
orientation; a fifth of the mentors ticking too), and runs, each in a fresh child process (so
peak memory is the connector's own, not the sandboxes'):

1. ``first sync, per user``: the full run that writes every meeting record and match, without
   the plugin;
2. ``full sweep, per user``: the same again with nothing changed (the per-user baseline: two
   calls per mentee, one per mentor);
3. ``full sweep, plugin``: the same with the plugin's bulk read;
4. ``event``: one mentee ticks a meeting; the run an event makes (ids mode, that Moodle user);
5. ``incremental, plugin``: the periodic sweep after one more tick (changes since the cursor).

For every run it prints the Moodle and Salesforce calls by function, wall seconds, and the peak
RSS of the child (``--tracemalloc`` adds Python's traced peak).

    .venv/bin/python bench/progress.py --pairs 5000 --latency 0.01
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.members import cpu_seconds, peak_rss_mb  # noqa: E402
from bench.members import write_config as members_config  # noqa: E402

NOW = dt.datetime(2026, 12, 10, 15, 0, tzinfo=dt.UTC)
# How many meetings a mentee has ticked by 10 December, and how often.
SPREAD = ((0, 0.10), (1, 0.15), (2, 0.20), (3, 0.25), (4, 0.20), (5, 0.07), (6, 0.03))
ORIENTATION, PROGRAMME, ORIENTATION_CMID = 2, 3, 2


def child(config: str, mode: str, ids: str, trace: bool) -> None:
    """Run one progress sync and print its measurements as JSON."""
    from connector.config import load_settings
    from connector.context import Context
    from connector.engine.kind import SyncRequest
    from connector.kinds.progress.run import ProgressRun

    if trace:
        tracemalloc.start()
    settings = load_settings(config, env={})
    ctx = Context(settings)
    request = SyncRequest(mode=mode, ids=tuple(i for i in ids.split(",") if i))  # type: ignore[arg-type]
    started = time.perf_counter()
    result = ProgressRun(ctx, request, now=NOW).execute()
    out = {
        "status": result.status.value,
        "wall": time.perf_counter() - started,
        "counts": result.counts,
        "moodle": dict(ctx.moodle.calls),
        "salesforce": dict(ctx.salesforce.calls),
        "maxrss_mb": peak_rss_mb(),
        "cpu": cpu_seconds(),
        "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20 if trace else None,
    }
    ctx.close()
    print(json.dumps(out))


# The bench's own settings: a fixed window, no guard in the way.
SECTIONS = """[programme]
window_year = 2026
completion_concurrency = 4
mass_change_share = 1.0
"""


def write_config(path: Path, sf: Any, moodle: Any, data_dir: Path) -> None:
    """A mentorsync config for the child processes (the members bench's, with this bench's
    sections)."""
    members_config(path, sf, moodle, data_dir, SECTIONS, moodle_read_timeout=120.0)


def run_child(config: Path, mode: str, ids: str = "", trace: bool = False) -> dict[str, Any]:
    """Run one measured child process and return what it printed."""
    command = [sys.executable, __file__, "--child", "--config", str(config), "--mode", mode,
               "--ids", ids]
    if trace:
        command.append("--tracemalloc")
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"child run {mode} failed with exit status {done.returncode}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _unix(day: dt.date, rng: random.Random) -> int:
    moment = dt.datetime(day.year, day.month, day.day, 14, tzinfo=dt.UTC)
    # Never later than a day ago by this machine's clock: the incremental phase reads changes
    # since the last run's start, and a completion "in the future" would look new.
    latest = int(time.time()) - 86400
    return min(int(moment.timestamp()) + rng.randint(-3 * 3600, 6 * 3600), latest)


def populate(sf: Any, moodle: Any, pairs: int, seed: int = 7) -> list[tuple[int, int]]:
    """``pairs`` active matches with completions; returns (mentor uid, mentee uid) per match."""
    from sandbox.moodle import catalog

    rng = random.Random(seed)
    site = moodle.site
    people: list[tuple[int, int]] = []
    with site.lock:
        for n in range(pairs):
            ids = []
            for role in ("mentor", "mentee"):
                uid = site.add_user(
                    {"username": f"{role}{n}", "email": f"{role}{n}@example.org", "idnumber": ""}
                )
                site.enrolments_by_course[ORIENTATION][uid] = {"status": 0, "timestart": 0,
                                                               "timeend": 0, "timecreated": 0}
                site.enrolments_by_course[PROGRAMME][uid] = {"status": 0, "timestart": 0,
                                                             "timeend": 0, "timecreated": 0}
                site.roles_by_context.setdefault(("course", ORIENTATION), {})[uid] = [5]
                site.roles_by_context.setdefault(("course", PROGRAMME), {})[uid] = [
                    4 if role == "mentor" else 5
                ]
                ids.append(uid)
            people.append((ids[0], ids[1]))
        months = [dt.date(2026, m, 1) for m in (10, 11, 12)] + [dt.date(2027, 1, 1)]
        for mentor, mentee in people:
            for uid, share in ((mentee, 0.90), (mentor, 0.85)):
                if rng.random() < share:
                    when = _unix(dt.date(2026, 9, rng.randint(1, 30)), rng)
                    site.completions[(uid, ORIENTATION_CMID)] = {
                        "state": 1, "timemodified": when, "overrideby": None, "viewed": 1}
                    site.criteria_done[(uid, ORIENTATION)] = {ORIENTATION_CMID: when}
                    site.course_completed[(uid, ORIENTATION)] = when
            roll, done = rng.random(), 0
            for count, share in SPREAD:
                roll -= share
                if roll <= 0:
                    done = count
                    break
            tickers = [mentee, mentor] if rng.random() < 0.2 else [mentee]
            for k in range(done):
                cmid = 4 + k
                first = months[min(k, 2)]
                day = first + dt.timedelta(days=rng.randint(0, 27 if k < 2 else 8))
                for uid in tickers:
                    site.completions[(uid, cmid)] = {
                        "state": 1, "timemodified": _unix(day, rng), "overrideby": None,
                        "viewed": 0}
        assert catalog.MODULES[4].idnumber == "GMP-2026-M1"
    contacts = sf.store.bulk_insert(
        "Contact",
        ({"LastName": f"P{uid}", "LMS_User_Id__c": str(uid)} for pair in people for uid in pair),
    )
    sf.store.bulk_insert(
        "Mentorship_Match__c",
        (
            {"Mentor__c": contacts[2 * n], "Mentee__c": contacts[2 * n + 1], "Status__c": "Active",
             "Program__c": "GMP-2026"}
            for n in range(pairs)
        ),
    )
    return people


def print_run(phase: str, result: dict[str, Any]) -> dict[str, Any]:
    """Print one run's figures and return them as a summary row."""
    moodle, sf = result["moodle"], result["salesforce"]
    traced = result.get("traced_peak_mb")
    print(
        f"\n{phase}: {result['status']}, {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, "
        f"peak RSS {result['maxrss_mb']:.0f} MB"
        + (f", traced peak {traced:.1f} MB" if traced is not None else "")
    )
    print(f"  counts: {json.dumps(result['counts'], sort_keys=True)}")
    print(f"  moodle: {sum(moodle.values())} calls {json.dumps(moodle, sort_keys=True)}")
    print(f"  salesforce: {sum(sf.values())} calls {json.dumps(sf, sort_keys=True)}")
    return {
        "phase": phase,
        "moodle_calls": sum(moodle.values()),
        "salesforce_calls": sum(sf.values()),
        "seconds": round(result["wall"], 2),
        "peak_rss_mb": round(result["maxrss_mb"]),
    }


def bench(pairs: int, latency: float, workdir: Path, trace: bool) -> list[dict[str, Any]]:
    """Every phase for one number of pairs."""
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox

    sf = SalesforceSandbox(workdir / "salesforce", latency=latency)
    moodle = MoodleSandbox(workdir / "moodle", latency=latency)
    rows = []
    try:
        sf.start()
        moodle.start()
        started = time.perf_counter()
        people = populate(sf, moodle, pairs)
        print(
            f"=== {pairs:,} pairs, {len(moodle.site.completions):,} completion rows (made in "
            f"{time.perf_counter() - started:.1f} s; latency {latency * 1000:.0f} ms per call) ==="
        )
        config = workdir / "mentorsync.toml"
        write_config(config, sf, moodle, workdir / "state")
        rows.append(print_run("first sync, per user", run_child(config, "full", trace=trace)))
        rows.append(print_run("full sweep, per user", run_child(config, "full", trace=trace)))
        moodle.site.plugin_installed = True
        rows.append(print_run("full sweep, plugin", run_child(config, "full", trace=trace)))
        _, mentee = people[len(people) // 2]
        moodle.site.set_activity_state(mentee, 9, 1)  # GMP-2026-M6
        rows.append(print_run("event (one tick)", run_child(config, "ids", str(mentee))))
        _, other = people[len(people) // 3]
        time.sleep(1.0)
        moodle.site.set_activity_state(other, 9, 1)
        rows.append(print_run("incremental, plugin", run_child(config, "incremental")))
    finally:
        moodle.stop()
        sf.stop()
    return rows


def main() -> None:
    """Parse the arguments and run the benchmark (or one child run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=5000, help="number of matches")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds added per call")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python's peak")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--ids", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.mode, args.ids, args.tracemalloc)
        return
    with tempfile.TemporaryDirectory(prefix="mentorsync-bench-progress-") as tmp:
        rows = bench(args.pairs, args.latency, Path(tmp), args.tracemalloc)
    print("\nsummary:")
    for row in rows:
        print("  " + json.dumps(row))


if __name__ == "__main__":
    main()
