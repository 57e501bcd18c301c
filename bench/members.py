"""Benchmark of the member sync against the loopback sandboxes (not a test).

For each size (default 1,000 and 10,000 members; ``--sizes 1000,10000,50000``) it starts both
sandboxes with a per-call latency (default 20 ms), seeds an association in which every member is
a programme participant, and runs, each in a fresh child process (so peak memory is the
connector's own, not the sandboxes'):

1. ``full``: the first sync of everyone;
2. ``echo``: an incremental run right after it, which reads the Contacts the write-back touched
   (and must write nothing);
3. ``quiet``: an incremental run with nothing changed;
4. ``1% changed``: an incremental run after 1% of the members changed their region.

For every run it prints, per system and function, the calls made, the minimal number of calls the
batch limits allow for that work (Moodle: ``max_batch_items`` per call; Salesforce: query pages
of 2,000, Collections of 200), their ratio, wall seconds and the peak RSS of the child. Then the
same first sync done record by record (one lookup, one create, one write-back per member) on a
small sample (``--naive-sample``, default 200), extrapolated linearly to each size and labelled
as such.

Runs use ``members.lookback_seconds = 0`` and start on a fresh second, so a run does not re-read
what the one before it read (the look-back overlap would, by design, for five minutes).

    .venv/bin/python bench/members.py --sizes 1000,10000,50000 --latency 0.02
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
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

SOQL_PAGE = 2000
COLLECTION = 200


# --- the child: one run, measured ---------------------------------------------------------------


def child(config: str, mode: str, naive: bool, trace: bool) -> None:
    """Run one member sync (or the naive baseline) and print its measurements as JSON."""
    from connector.config import load_settings
    from connector.context import Context
    from connector.engine.kind import SyncRequest
    from connector.kinds.members.run import MembersRun

    if trace:
        tracemalloc.start()
    settings = load_settings(config, env={})
    ctx = Context(settings)
    started = time.perf_counter()
    if naive:
        counts, lookups = naive_sync(ctx), {}
        status = "ok"
    else:
        run = MembersRun(ctx, SyncRequest(mode=mode, allow_mass_change=True))  # type: ignore[arg-type]
        result = run.execute()
        counts, lookups, status = result.counts, dict(run.lookups), result.status
    wall = time.perf_counter() - started
    out = {
        "status": status,
        "wall": wall,
        "counts": counts,
        "lookups": lookups,
        "moodle": dict(ctx.moodle.calls),
        "salesforce": dict(ctx.salesforce.calls),
        "max_batch_items": settings.moodle.max_batch_items,
        "maxrss_mb": peak_rss_mb(),
        "cpu": cpu_seconds(),
        "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20 if trace else None,
    }
    ctx.close()
    print(json.dumps(out))


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB.

    ``VmHWM`` of the process's own address space where Linux has it: ``ru_maxrss`` survives
    ``exec`` and so can report the (large) sandbox parent this child was forked from.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU seconds this process used (user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def naive_sync(ctx: Any) -> dict[str, int]:
    """The same first sync, record by record: what a straightforward integration would do."""
    from connector.kinds.members.plan import Policy
    from mappings.fieldmap import load_field_map
    from mappings.members import ContactMapper, MappingRejected, create_payload

    fm = load_field_map(ctx.settings.members.field_map)
    mapper = ContactMapper(fm)
    policy = Policy(dict(ctx.settings.members.status_policy), auth=ctx.settings.members.auth)
    counts = {"read": 0, "created": 0}
    soql = f"SELECT {', '.join(fm.read_fields())} FROM Contact WHERE {fm.scope_soql()}"
    for record in ctx.salesforce.query(soql):
        counts["read"] += 1
        try:
            desired = mapper.desired(record)
        except MappingRejected:
            continue
        if policy.target_suspended(record.get(fm.status_field), False):
            continue
        if ctx.moodle.get_users_by_field("idnumber", [desired.contact_id]):
            continue
        if ctx.moodle.get_users_by_field("email", [desired.email]):
            continue
        if ctx.moodle.get_users_by_field("username", [desired.username]):
            continue
        created = ctx.moodle.create_users([create_payload(desired, policy.auth)])
        ctx.salesforce.collection_update(
            "Contact", [{"Id": desired.contact_id, "LMS_User_Id__c": str(created[0]["id"])}]
        )
        counts["created"] += 1
    return counts


# --- the parent: sandboxes, phases, report ---------------------------------------------------


def write_config(
    path: Path,
    sf: Any,
    moodle: Any,
    data_dir: Path,
    sections: str = "[members]\nlookback_seconds = 0\n",
    *,
    moodle_read_timeout: float = 120.0,
) -> None:
    """A mentorsync config for the child processes, on both sandboxes; ``sections``: the
    bench's own settings (TOML), before ``[service]``. Shared by the pairs and progress benches."""
    path.write_text(
        f"""
[moodle]
url = "{moodle.url}"
token = "{moodle.token}"
max_input_vars = {moodle.max_input_vars}
read_timeout = {moodle_read_timeout}

[salesforce]
auth = "password"
username = "{sf.username}"
password = "{sf.password}"
security_token = "{sf.security_token}"
domain = "{sf.host}:{sf.port}"
ca_bundle = "{sf.ca_file}"
read_timeout = 300.0

{sections}
[service]
data_dir = "{data_dir}"
""",
        encoding="utf-8",
    )


def run_child(config: Path, mode: str, *, naive: bool = False, trace: bool = False) -> dict:
    """Run one measured child process and return what it printed."""
    # Start on a fresh second: Salesforce compares times at second precision, so a run starting
    # in the second the last write happened re-reads that write.
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)
    command = [sys.executable, __file__, "--child", "--config", str(config), "--mode", mode]
    if naive:
        command.append("--naive")
    if trace:
        command.append("--tracemalloc")
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"child run {mode} failed with exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_everyone_a_participant(sf: Any) -> None:
    """Give every seeded Contact a programme role, so N members means N to sync."""
    for record in sf.store.find("Contact"):
        if not record.get("Mentorship_Role__c"):
            sf.store.update("Contact", record["Id"], {"Mentorship_Role__c": "Mentee"}, notify=False)


def change_one_percent(sf: Any) -> int:
    """Change the region of 1% of the members (as staff would)."""
    records = sorted(sf.store.find("Contact"), key=lambda r: r["Id"])
    changed = records[::100]
    for record in changed:
        region = "Pacific" if record.get("Region__c") != "Pacific" else "Mountain"
        sf.store.update("Contact", record["Id"], {"Region__c": region}, notify=False)
    return len(changed)


def minimum(result: dict) -> dict[tuple[str, str], int]:
    """The fewest calls the batch limits allow for the work this run did."""
    counts, lookups = result["counts"], result["lookups"]
    batch = result["max_batch_items"]
    read = counts.get("read", 0)
    # A fresh process logs in once (a worker keeps its session across runs).
    mins: dict[tuple[str, str], int] = {("salesforce", "login"): 1}
    mins[("salesforce", "query+queryMore")] = max(1, math.ceil(read / SOQL_PAGE))
    written = counts.get("written_back", 0)
    mins[("salesforce", "collections.update")] = math.ceil(written / COLLECTION)
    # Asking for deletions is part of the work: one getDeleted (incremental) or one queryAll
    # page of the recycle bin (full).
    if "getDeleted" in result["salesforce"]:
        mins[("salesforce", "getDeleted")] = 1
    if "queryAll" in result["salesforce"]:
        mins[("salesforce", "queryAll")] = max(
            1, math.ceil(counts.get("deleted_read", 0) / SOQL_PAGE)
        )
    lookup_calls = sum(math.ceil(v / batch) for v in lookups.values())
    mins[("moodle", "core_user_get_users_by_field")] = lookup_calls
    mins[("moodle", "core_user_create_users")] = math.ceil(counts.get("created", 0) / batch)
    updates = sum(counts.get(k, 0) for k in ("updated", "suspended", "reactivated", "adopted"))
    mins[("moodle", "core_user_update_users")] = math.ceil(updates / batch)
    return mins


def observed(result: dict) -> dict[tuple[str, str], int]:
    """Calls made, per system and function (query pages folded together)."""
    calls: dict[tuple[str, str], int] = {}
    for function, n in result["moodle"].items():
        calls[("moodle", function)] = n
    sf = dict(result["salesforce"])
    pages = sf.pop("query", 0) + sf.pop("queryMore", 0)
    if pages:
        calls[("salesforce", "query+queryMore")] = pages
    for op, n in sf.items():
        calls[("salesforce", op)] = n
    return calls


def print_run(size: int, phase: str, result: dict) -> dict[str, Any]:
    """Print one run's table; return its summary line."""
    mins, calls = minimum(result), observed(result)
    keys = sorted(set(mins) | set(calls))
    print(
        f"\n{size:,} members, {phase}: {result['wall']:.1f} s (connector CPU "
        f"{result['cpu']:.1f} s), peak RSS "
        f"{result['maxrss_mb']:.0f} MB"
        + (f", traced peak {result['traced_peak_mb']:.1f} MB" if result["traced_peak_mb"] else "")
        + f", status {result['status']}"
    )
    counts = {k: v for k, v in result["counts"].items() if v}
    print(f"  counts: {counts}")
    print(f"  {'system':<11}{'function':<32}{'calls':>7}{'minimum':>9}{'ratio':>7}")
    total_calls = total_min = 0
    for system, function in keys:
        n, m = calls.get((system, function), 0), mins.get((system, function))
        if n == 0 and not m:
            continue
        ratio = f"{n / m:.2f}" if m else "-"
        shown_min = "-" if m is None else str(m)
        print(f"  {system:<11}{function:<32}{n:>7}{shown_min:>9}{ratio:>7}")
        total_calls += n
        total_min += m or 0
    # The login is per process (each run here is a fresh process; the worker keeps its session).
    api_calls = total_calls - calls.get(("salesforce", "login"), 0)
    print(
        f"  {'total':<43}{total_calls:>7}{total_min:>9}"
        f"{(total_calls / total_min if total_min else 0):>7.2f}"
        f"   (without the login: {api_calls})"
    )
    return {
        "size": size,
        "phase": phase,
        "calls": total_calls,
        "api_calls": api_calls,
        "minimum": total_min,
        "wall": result["wall"],
        "rss": result["maxrss_mb"],
    }


def bench_size(size: int, latency: float, workdir: Path, trace: bool) -> list[dict[str, Any]]:
    """All phases for one member count."""
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox
    from sandbox.seed import seed

    base = workdir / f"n{size}"
    sf = SalesforceSandbox(base / "salesforce", latency=latency)
    moodle = MoodleSandbox(base / "moodle", latency=latency)
    lines = []
    try:
        sf.start()
        moodle.start()
        t = time.perf_counter()
        seed(sf, moodle, members=size, moodle_accounts=1)
        make_everyone_a_participant(sf)
        print(
            f"\n=== {size:,} members (seeded in {time.perf_counter() - t:.1f} s; "
            f"latency {latency * 1000:.0f} ms per call) ==="
        )
        config = base / "mentorsync.toml"
        write_config(config, sf, moodle, base / "state")
        lines.append(print_run(size, "full (first sync)", run_child(config, "full", trace=trace)))
        lines.append(
            print_run(size, "echo (reads the write-back)", run_child(config, "incremental"))
        )
        lines.append(print_run(size, "quiet (nothing changed)", run_child(config, "incremental")))
        changed = change_one_percent(sf)
        lines.append(print_run(size, f"1% changed ({changed})", run_child(config, "incremental")))
    finally:
        moodle.stop()
        sf.stop()
    return lines


def bench_naive(sample: int, latency: float, workdir: Path) -> dict[str, Any]:
    """The record-by-record first sync on a small sample."""
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox
    from sandbox.seed import seed

    base = workdir / "naive"
    sf = SalesforceSandbox(base / "salesforce", latency=latency)
    moodle = MoodleSandbox(base / "moodle", latency=latency)
    try:
        sf.start()
        moodle.start()
        seed(sf, moodle, members=sample, moodle_accounts=1)
        make_everyone_a_participant(sf)
        config = base / "mentorsync.toml"
        write_config(config, sf, moodle, base / "state")
        result = run_child(config, "full", naive=True)
    finally:
        moodle.stop()
        sf.stop()
    calls = sum(observed(result).values())
    print(f"\n=== naive baseline, measured on {sample} members (record by record) ===")
    print(f"  {calls} calls, {result['wall']:.1f} s, counts {result['counts']}")
    for (system, function), n in sorted(observed(result).items()):
        print(f"  {system:<11}{function:<32}{n:>7}")
    return {"sample": sample, "calls": calls, "wall": result["wall"]}


def main() -> None:
    """Parse arguments and run the benchmark (or, with --child, one measured run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="member counts, comma-separated")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per call")
    parser.add_argument("--naive-sample", type=int, default=200, help="members for the baseline")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also trace Python allocations of the full run (slower)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.mode, args.naive, args.tracemalloc)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"member sync benchmark: sizes {sizes}, latency {args.latency * 1000:.0f} ms, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="mentorsync-bench-") as tmp:
        workdir = Path(tmp)
        lines = [
            line
            for size in sizes
            for line in bench_size(size, args.latency, workdir, args.tracemalloc)
        ]
        naive = bench_naive(args.naive_sample, args.latency, workdir)
    print("\n=== summary ===")
    print(
        f"  {'members':>8}  {'run':<30}{'calls':>7}{'minimum':>9}{'ratio':>7}"
        f"{'seconds':>9}{'peak MB':>9}"
    )
    for line in lines:
        ratio = line["calls"] / line["minimum"] if line["minimum"] else 0
        print(
            f"  {line['size']:>8,}  {line['phase']:<30}{line['calls']:>7}{line['minimum']:>9}"
            f"{ratio:>7.2f}{line['wall']:>9.1f}{line['rss']:>9.0f}"
        )
    per_member_calls = naive["calls"] / naive["sample"]
    per_member_seconds = naive["wall"] / naive["sample"]
    print(f"\n  naive baseline (EXTRAPOLATED from {naive['sample']} members, record by record):")
    for size in sizes:
        print(
            f"  {size:>8,}  first sync, record by record   ~{per_member_calls * size:>9,.0f} "
            f"calls  ~{per_member_seconds * size:>8,.0f} s"
        )


if __name__ == "__main__":
    main()
