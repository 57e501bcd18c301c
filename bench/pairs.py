"""Benchmark of the pairs sync against the loopback sandboxes (not a test).

For each size (default 5,000 active pairs; ``--sizes 500,5000``) it starts both sandboxes with a
per-call latency (default 20 ms), seeds a programme of that many active matches (plus one
cancelled, one completed and one proposed; about ``2 * size`` people), gives everyone an account
with the member sync (setup, shown but not part of the table), then runs the pairs sync, each
run in a fresh child process (so peak memory is the connector's own, not the sandboxes'):

1. ``full``: the first sync: enrolments, a group per pair, members, mentor roles;
2. ``echo``: an incremental run right after it, which reads the matches the write-back touched
   (and must write nothing);
3. ``quiet``: an incremental run with nothing changed;
4. ``full again``: the nightly full run with nothing changed (it re-asserts the mentor roles it
   owns, as Moodle cannot list user-context roles).

For every run it prints, per system and function, the calls made, the fewest calls the limits
allow for that work, their ratio, wall seconds and the child's peak RSS. The limits: Moodle
``max_batch_items`` items and the form-field limit per call (the client's own ``split``), one
course per ``core_enrol_get_enrolled_users`` and per ``core_course_get_courses_by_field``;
Salesforce query pages of 2,000 records, 300 Ids per ``Id IN`` query, Collections of 200, and
for the "matches of these people" query as many Contacts as fit in the 15,000 URL-encoded
characters the client allows a GET's SOQL (computed below). A full scan reads every match of the
programme, so it needs no "other matches" query at all; an incremental run that did not read every
match mentorsync made something for asks once which were deleted (``getDeleted``) and once which
were changed into another programme (a query); a run that reads no match needs no Moodle read.

Then the same first sync done pair by pair (per active match: the two Contacts, two account
lookups, four enrolments, one group, two members, one role, one write-back) on a small sample
(``--naive-sample`` pairs, default 100), extrapolated linearly to each size and labelled so.

    .venv/bin/python bench/pairs.py --sizes 5000 --latency 0.02
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.members import cpu_seconds, observed, peak_rss_mb  # noqa: E402
from bench.members import write_config as members_config  # noqa: E402

SOQL_PAGE = 2000
COLLECTION = 200
IDS_PER_QUERY = 300  # the Salesforce client's cap for one "Id IN (...)" query
MAX_ENCODED_SOQL = 15_000  # the client's cap on a GET's URL-encoded SOQL
WRITE_ITEMS = {
    # function: (list key, one item as the applier sends it, the run's counter)
    "enrol_manual_enrol_users": (
        "enrolments",
        {"roleid": 5, "userid": 1, "courseid": 2},
        "enrolled",
    ),
    "core_group_create_groups": (
        "groups",
        {"courseid": 3, "name": "A & B (GMP-2026)", "idnumber": "a0X", "description": "d"},
        "groups_created",
    ),
    "core_group_add_group_members": ("members", {"groupid": 1, "userid": 1}, "members_added"),
    "core_role_assign_roles": (
        "assignments",
        {"roleid": 9, "userid": 1, "contextlevel": "user", "instanceid": 2},
        "roles_assigned",
    ),
}


# --- the child: one run, measured ---------------------------------------------------------------


def child(config: str, mode: str) -> None:
    """Run one sync (``members``, a pairs mode, or ``naive``) and print its measurements."""
    from connector.config import load_settings
    from connector.context import Context
    from connector.engine.kind import SyncRequest
    from connector.kinds.members.run import MembersRun
    from connector.kinds.pairs.run import PairsRun

    settings = load_settings(config, env={})
    ctx = Context(settings)
    started = time.perf_counter()
    if mode == "naive":
        counts, status = naive_sync(ctx), "ok"
    else:
        request = SyncRequest(mode=mode.removeprefix("members-"), allow_mass_change=True)  # type: ignore[arg-type]
        run_class = MembersRun if mode.startswith("members-") else PairsRun
        result = run_class(ctx, request).execute()
        counts, status = dict(result.counts), str(result.status)
    wall = time.perf_counter() - started
    out = {
        "status": status,
        "wall": wall,
        "counts": counts,
        "moodle": dict(ctx.moodle.calls),
        "salesforce": dict(ctx.salesforce.calls),
        "maxrss_mb": peak_rss_mb(),
        "cpu": cpu_seconds(),
    }
    ctx.close()
    print(json.dumps(out))


def naive_sync(ctx: Any) -> dict[str, int]:
    """The same first sync, pair by pair: what a straightforward integration would do."""
    from connector.clients.salesforce import soql
    from mappings.pairs import ACTIVE, Match, MatchMapper, load_pairs_field_map

    p = ctx.settings.programme
    fm = load_pairs_field_map(ctx.settings.pairs.field_map)
    mapper = MatchMapper(fm)
    moodle, sf = ctx.moodle, ctx.salesforce
    orientation = int(moodle.get_courses_by_field("shortname", p.orientation_course)[0]["id"])
    programme = int(moodle.get_courses_by_field("shortname", p.programme_course)[0]["id"])
    student, teacher, mentor_role = (
        p.student_role_id,
        p.mentor_course_role_id,
        p.mentor_user_role_id,
    )
    counts = {"read": 0, "paired": 0}
    statement = (
        f"{soql.select(fm.sobject, fm.read_fields())} WHERE {fm.program_soql(p.programme_code)}"
    )
    for row in sf.query(statement):
        counts["read"] += 1
        m = mapper.load(row)
        if not isinstance(m, Match) or m.status != ACTIVE:
            continue
        names = {
            r["Id"]: r.get("LastName") or ""
            for r in sf.get_by_ids("Contact", ["Id", "LastName"], [m.mentor_id, m.mentee_id])
        }
        found = [moodle.get_users_by_field("idnumber", [c]) for c in (m.mentor_id, m.mentee_id)]
        if not all(found):
            continue
        mentor, mentee = int(found[0][0]["id"]), int(found[1][0]["id"])
        for course, user, role in (
            (orientation, mentor, student),
            (orientation, mentee, student),
            (programme, mentor, teacher),
            (programme, mentee, student),
        ):
            moodle.enrol_users([{"roleid": role, "userid": user, "courseid": course}])
        name = f"{names.get(m.mentor_id, '')} & {names.get(m.mentee_id, '')} ({m.program}) {m.id}"
        group = moodle.create_groups(
            [{"courseid": programme, "name": name, "idnumber": m.id, "description": ""}]
        )
        for user in (mentor, mentee):
            moodle.add_group_members([{"groupid": int(group[0]["id"]), "userid": user}])
        moodle.assign_roles(
            [
                {
                    "roleid": mentor_role,
                    "userid": mentor,
                    "contextlevel": "user",
                    "instanceid": mentee,
                }
            ]
        )
        record = {"Id": m.id, fm.writeback["group_id"]: str(group[0]["id"])}
        record[fm.writeback["status"]] = "Synced"
        sf.collection_update(fm.sobject, [record])
        counts["paired"] += 1
    return counts


# The bench's own settings: no look-back (each run reads anew), no guard in the way.
SECTIONS = """[members]
lookback_seconds = 0
mass_change_share = 1.0
mass_change_count = 1000000

[pairs]
lookback_seconds = 0
mass_change_share = 1.0
mass_change_count = 1000000
"""


# --- the parent: sandboxes, phases, report ---------------------------------------------------


def write_config(path: Path, sf: Any, moodle: Any, data_dir: Path) -> None:
    """A mentorsync config for the child processes (the members bench's, with this bench's
    sections)."""
    members_config(path, sf, moodle, data_dir, SECTIONS, moodle_read_timeout=300.0)


def run_child(config: Path, mode: str) -> dict:
    """Run one measured child process and return what it printed."""
    # Start on a fresh second: Salesforce compares times at second precision, so a run starting
    # in the second the last write happened re-reads that write.
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)
    command = [sys.executable, __file__, "--child", "--config", str(config), "--mode", mode]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"child run {mode} failed with exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def seed_programme(sf: Any, moodle: Any, pairs: int) -> Any:
    """Seed ``pairs`` active matches; every person can get an account (no shared address)."""
    from sandbox.seed import seed

    # A waiting list of 2% without a match: the seed needs that many people left over.
    members = 2 * pairs + 40 + pairs // 20
    report = seed(sf, moodle, members=members, active_matches=pairs, moodle_accounts=0)
    second = report.shared_email_contacts[1]
    sf.store.update("Contact", second, {"Email": "second.household@example.org"}, notify=False)
    return report


def others_capacity() -> int:
    """Contacts whose "matches of these people" query fits the client's URL budget."""
    from connector.clients.salesforce import soql
    from mappings.pairs import load_pairs_field_map

    fm = load_pairs_field_map("")
    ids = [f"003{n:015d}" for n in range(IDS_PER_QUERY)]
    for n in range(len(ids), 0, -1):
        statement = (
            f"{soql.select(fm.sobject, fm.read_fields())} WHERE ({fm.program_soql('GMP-2026')})"
            f" AND {fm.people_soql(ids[:n])}"
        )
        if len(quote_plus(statement)) <= MAX_ENCODED_SOQL:
            return n
    return 1


def minimum(
    result: dict, world: dict[str, int], full_scan: bool, client: Any
) -> dict[tuple[str, str], int]:
    """The fewest calls the limits allow for the work this run did (see the module doc);
    ``client`` is a Moodle client with the children's settings (only its ``split`` is used)."""
    counts = result["counts"]

    def batches(list_key: str, item: dict[str, Any], n: int, **extra: Any) -> int:
        return len(client.split(list_key, [item] * n, extra)) if n else 0

    read = counts.get("matches_read", 0)
    people = world["people"] if read else 0
    mins: dict[tuple[str, str], int] = {("salesforce", "login"): 1}
    matches_pages = max(1, math.ceil(read / SOQL_PAGE))
    others = 0 if full_scan or not read else math.ceil(people / world["others_capacity"])
    # Were the matches mentorsync made something for, and this run did not read, deleted
    # (getDeleted) or moved to another programme (one query for those changed into one)?
    gone_check = not full_scan and world["groups_before"] > read
    mins[("salesforce", "query+queryMore")] = matches_pages + others + int(gone_check)
    mins[("salesforce", "queryAll")] = math.ceil(people / IDS_PER_QUERY)
    mins[("salesforce", "collections.update")] = math.ceil(
        counts.get("written_back", 0) / COLLECTION
    )
    if gone_check:
        mins[("salesforce", "getDeleted")] = 1
    if read:
        mins[("moodle", "core_user_get_users_by_field")] = batches(
            "values", {"v": "x"}, people, field="idnumber"
        )
        mins[("moodle", "core_course_get_courses_by_field")] = 2
        mins[("moodle", "core_group_get_course_groups")] = 1
        mins[("moodle", "core_enrol_get_enrolled_users")] = 2
        mins[("moodle", "core_group_get_group_members")] = batches(
            "groupids", {"id": 1}, world["groups_before"]
        )
    for function, (list_key, item, counter) in WRITE_ITEMS.items():
        mins[("moodle", function)] = batches(list_key, item, counts.get(counter, 0))
    return mins


def print_run(size: int, phase: str, result: dict, mins: dict[tuple[str, str], int]) -> dict:
    """Print one run's table; return its summary line."""
    calls = observed(result)
    print(
        f"\n{size:,} pairs, {phase}: {result['wall']:.1f} s (connector CPU "
        f"{result['cpu']:.1f} s), peak RSS {result['maxrss_mb']:.0f} MB, status {result['status']}"
    )
    print(f"  counts: { ({k: v for k, v in result['counts'].items() if v}) }")
    print(f"  {'system':<11}{'function':<36}{'calls':>7}{'minimum':>9}{'ratio':>7}")
    total_calls = total_min = 0
    for system, function in sorted(set(mins) | set(calls)):
        n, m = calls.get((system, function), 0), mins.get((system, function), 0)
        if n == 0 and m == 0:
            continue
        ratio = f"{n / m:.2f}" if m else "-"
        print(f"  {system:<11}{function:<36}{n:>7}{m:>9}{ratio:>7}")
        total_calls, total_min = total_calls + n, total_min + m
    print(
        f"  {'total':<47}{total_calls:>7}{total_min:>9}"
        f"{(total_calls / total_min if total_min else 0):>7.2f}"
    )
    return {
        "size": size,
        "phase": phase,
        "calls": total_calls,
        "minimum": total_min,
        "wall": result["wall"],
        "rss": result["maxrss_mb"],
    }


def groups_of(moodle: Any, match_ids: list[str], course: int = 3) -> int:
    """How many of these matches have their group in the programme course now."""
    return sum(1 for m in match_ids if moodle.site.group_by_idnumber(m, course) is not None)


def bench_size(size: int, latency: float, workdir: Path) -> list[dict[str, Any]]:
    """All phases for one number of pairs."""
    from connector.clients.moodle.client import MoodleClient
    from connector.config import load_settings
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox

    base = workdir / f"n{size}"
    sf = SalesforceSandbox(base / "salesforce", latency=latency)
    moodle = MoodleSandbox(base / "moodle", latency=latency)
    lines = []
    try:
        sf.start()
        moodle.start()
        t = time.perf_counter()
        seed_programme(sf, moodle, size)
        matches = [m["Id"] for m in sf.store.find("Mentorship_Match__c")]
        people = {
            m[f] for m in sf.store.find("Mentorship_Match__c") for f in ("Mentor__c", "Mentee__c")
        }
        world = {"people": len(people), "others_capacity": others_capacity()}
        print(
            f"\n=== {size:,} active pairs, {len(matches):,} matches, {len(people):,} people "
            f"(seeded in {time.perf_counter() - t:.1f} s; latency {latency * 1000:.0f} ms per "
            "call) ==="
        )
        config = base / "mentorsync.toml"
        write_config(config, sf, moodle, base / "state")
        client = MoodleClient(load_settings(str(config), env={}).moodle)
        members = run_child(config, "members-full")
        print(
            f"  setup: member sync gave {members['counts'].get('created', 0):,} accounts in "
            f"{members['wall']:.1f} s ({sum(observed(members).values())} calls)"
        )
        phases = (
            ("full (first sync)", "full", True),
            ("echo (reads the write-back)", "incremental", False),
            ("quiet (nothing changed)", "incremental", False),
            ("full again (nothing changed)", "full", True),
        )
        for label, mode, full_scan in phases:
            world["groups_before"] = groups_of(moodle, matches)
            result = run_child(config, mode)
            lines.append(print_run(size, label, result, minimum(result, world, full_scan, client)))
    finally:
        moodle.stop()
        sf.stop()
    return lines


def bench_naive(sample: int, latency: float, workdir: Path) -> dict[str, Any]:
    """The pair-by-pair first sync on a small sample (after the member sync)."""
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox

    base = workdir / "naive"
    sf = SalesforceSandbox(base / "salesforce", latency=latency)
    moodle = MoodleSandbox(base / "moodle", latency=latency)
    try:
        sf.start()
        moodle.start()
        seed_programme(sf, moodle, sample)
        config = base / "mentorsync.toml"
        write_config(config, sf, moodle, base / "state")
        run_child(config, "members-full")
        result = run_child(config, "naive")
    finally:
        moodle.stop()
        sf.stop()
    calls = observed(result)
    total = sum(calls.values())
    print(f"\n=== naive baseline, measured on {sample} active pairs (pair by pair) ===")
    print(f"  {total} calls, {result['wall']:.1f} s, counts {result['counts']}")
    for (system, function), n in sorted(calls.items()):
        print(f"  {system:<11}{function:<36}{n:>7}")
    return {"sample": result["counts"]["paired"], "calls": total, "wall": result["wall"]}


def main() -> None:
    """Parse arguments and run the benchmark (or, with --child, one measured run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000", help="active pairs, comma-separated")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per call")
    parser.add_argument("--naive-sample", type=int, default=100, help="pairs for the baseline")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.mode)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"pairs sync benchmark: sizes {sizes}, latency {args.latency * 1000:.0f} ms, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="mentorsync-bench-") as tmp:
        workdir = Path(tmp)
        lines = [line for size in sizes for line in bench_size(size, args.latency, workdir)]
        naive = bench_naive(args.naive_sample, args.latency, workdir)
    print("\n=== summary ===")
    print(
        f"  {'pairs':>8}  {'run':<30}{'calls':>7}{'minimum':>9}{'ratio':>7}"
        f"{'seconds':>9}{'peak MB':>9}"
    )
    for line in lines:
        ratio = line["calls"] / line["minimum"] if line["minimum"] else 0
        print(
            f"  {line['size']:>8,}  {line['phase']:<30}{line['calls']:>7}{line['minimum']:>9}"
            f"{ratio:>7.2f}{line['wall']:>9.1f}{line['rss']:>9.0f}"
        )
    per_pair_calls = naive["calls"] / max(1, naive["sample"])
    per_pair_seconds = naive["wall"] / max(1, naive["sample"])
    print(f"\n  naive baseline (EXTRAPOLATED from {naive['sample']} pairs, pair by pair):")
    for size in sizes:
        print(
            f"  {size:>8,}  first sync, pair by pair      ~{per_pair_calls * size:>9,.0f} "
            f"calls  ~{per_pair_seconds * size:>8,.0f} s"
        )


if __name__ == "__main__":
    main()
