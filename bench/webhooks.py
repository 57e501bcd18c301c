"""Benchmark: the Outbound Message endpoint under gunicorn, next to a bare Flask endpoint.

Starts ``mentorsync serve``'s gunicorn setup (same options, same app factory) on a loopback port,
with one extra route, ``POST /bench/bare``, that reads the body and answers the same Ack without
parsing or storing anything. A local load generator (threads, one ``requests.Session`` each)
sends a bounded number of requests to each endpoint, and reports acknowledgements per second and
p50/p99 latency for both, and the ratio: the cost of parsing, checking and the durable inbox write
(committed before the Ack).

Seven servers are measured in one run, each on a fresh state database, one per way of writing
the inbox (``--modes``; see ``bench/inbox_baselines.py``): ``one-by-one`` (a transaction per
delivery, committed by the request's thread: the inbox before group commit), ``group-v1`` (the
first group commit: a writer thread per process batching concurrent deliveries, each batch a
SELECT + INSERT transaction through SQLAlchemy), ``group-v2`` (each batch one INSERT ... ON CONFLICT
DO NOTHING RETURNING that looks each change up, in autocommit on PostgreSQL, sent through
SQLAlchemy), ``group-v3`` (that statement on the driver's own cursor), ``group-v4`` (a plain
insert, the unique indexes deciding what is new, on PostgreSQL as column arrays through psycopg's
cursor), ``group-v5`` (the batch as one JSON parameter, on PostgreSQL run with libpq's
prepared-statement call, written by a writer thread) and ``group`` (the inbox as shipped: that
statement, written by the first request in line; see ``connector/state/inbox_writer.py``).
Each server reports its writer's batches, lock waits and transaction time, and where the CPU
went per request (``bench/cputime.py``): the web processes, the database server (PostgreSQL),
the load generator, and the rest of the machine (other work on a shared host). Then
``bench/webhook_costs.py`` says, on the same database, where one request's CPU goes (parsing,
checks and routing, the durable store, and the store by ``group-v5``'s thread). ``--database
postgresql`` runs all of it on a PostgreSQL 15 cluster the bench starts (fsync on) instead of
SQLite.

Every Outbound Message is distinct (new notification and record Ids), so each one is a real
insert, not a duplicate. Nothing leaves 127.0.0.1; the state lives in a temporary directory.

    .venv/bin/python bench/webhooks.py                  # 2000 requests each, 8 client threads
    .venv/bin/python bench/webhooks.py --database postgresql
    .venv/bin/python bench/webhooks.py --requests 5000 --concurrency 16 --synchronous NORMAL
    .venv/bin/python bench/webhooks.py --database postgresql --modes no-store,group

The load generator runs on the same machine as the server and competes with it for CPU: the
figures are a floor for a dedicated machine, and comparable only within one run. When all cores
are busy (the CPU lines say so), throughput follows CPU per request, and the durable/bare ratio
is bounded by the CPU the durable request adds (parsing, the insert, the database server).
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

# Run as a script, this file's directory comes first on sys.path, and the file's own name
# would shadow the ``webhooks`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench.* and tests.backends

from bench.cputime import CORES, CpuMeter, CpuUse  # noqa: E402
from bench.inbox_baselines import MODES, NO_STORE, install, prepare_database  # noqa: E402

ORG_ID = "00D5e000000KQ2eEAG"
OUTBOUND = "/hooks/salesforce/outbound"
BARE = "/bench/bare"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def message(n: int, notifications: int) -> bytes:
    """A distinct Outbound Message (Contact notifications), shaped like Salesforce's."""
    items = []
    for i in range(notifications):
        k = n * notifications + i
        items.append(
            f"<Notification><Id>04l{k:015d}</Id>"
            '<sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>003{k:015d}</sf:Id><sf:Email>member{k}@example.org</sf:Email>"
            f"<sf:FirstName>First</sf:FirstName><sf:LastName>Last</sf:LastName>"
            "<sf:Member_Status__c>Active</sf:Member_Status__c>"
            "<sf:SystemModstamp>2026-03-02T14:05:11.000Z</sf:SystemModstamp>"
            "</sObject></Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{ORG_ID}</OrganizationId><ActionId>04k5e000000CaRkAAK</ActionId>"
        '<SessionId xsi:nil="true"/>' + "".join(items) + "</notifications></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


# --- the server side (runs in the child process) ----------------------------------------------


def bench_app() -> Any:
    """The production app plus ``POST /bench/bare`` (same server, same settings)."""
    from flask import Response, request

    from webhooks import create_app
    from webhooks.outbound import ACK, SOAP_CONTENT_TYPE

    app = create_app()
    synchronous = os.environ.get("BENCH_SQLITE_SYNCHRONOUS", "")
    if synchronous:
        from sqlalchemy import event

        def pragma(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.close()

        db = app.extensions["mentorsync"].db
        event.listen(db.engine, "connect", pragma)
        db.engine.dispose()  # connections made from now on get the pragma

    db = app.extensions["mentorsync"].db
    install(os.environ.get("BENCH_INBOX_MODE", "group"))
    stats_dir = Path(os.environ["MENTORSYNC_SERVICE_DATA_DIR"])
    atexit.register(dump_stats, stats_dir, db)

    def bare() -> Response:
        request.get_data()
        return Response(ACK, 200, content_type=SOAP_CONTENT_TYPE)

    app.add_url_rule(BARE, "bench_bare", bare, methods=["POST"])
    return app


def dump_stats(directory: Path, db: Any) -> None:
    """At a gunicorn worker's exit: its inbox writer's figures, as JSON in ``directory``."""
    from dataclasses import asdict

    from connector.state.inbox_writer import writer_for

    stats = asdict(writer_for(db).stats)
    (directory / f"writer-{os.getpid()}.json").write_text(json.dumps(stats))


def serve(workers: int, threads: int) -> None:
    """Run gunicorn exactly as ``mentorsync serve`` configures it, with :func:`bench_app`."""
    from connector.cli import configure_logging
    from connector.cli.service import gunicorn_options, prepare_storage, run_gunicorn
    from connector.config import load_settings

    # Logging as under `mentorsync serve` (a line per stored message); the lines go to a file.
    configure_logging(logging.INFO)
    settings = load_settings()
    options = gunicorn_options(settings, None, workers, threads, None)
    options["loglevel"] = "warning"
    prepare_storage(settings)
    prepare_database(os.environ.get("BENCH_INBOX_MODE", "group"), settings.database_url)
    run_gunicorn(bench_app, options)


# --- the client side --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load(
    url: str, bodies: Callable[[int], bytes], count: int, concurrency: int, max_seconds: float
) -> dict[str, float]:
    """Send ``count`` POSTs from ``concurrency`` threads; latencies of the acknowledged ones."""
    latencies: list[float] = []
    failures = [0]
    errors: list[str] = []
    lock = threading.Lock()
    next_index = [0]
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        try:
            send()
        except Exception as exc:  # noqa: BLE001  (reported below; a bench must not hang)
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    def send() -> None:
        with requests.Session() as session:
            session.trust_env = False  # loopback only: no proxy from the environment
            while time.monotonic() < deadline:
                with lock:
                    n = next_index[0]
                    if n >= count:
                        return
                    next_index[0] += 1
                body = bodies(n)
                start = time.perf_counter()
                response = session.post(url, data=body, headers=HEADERS, timeout=30)
                elapsed = time.perf_counter() - start
                ok = response.status_code == 200 and b"<Ack>true</Ack>" in response.content
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"client errors against {url}: {errors[0]}")
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "acks": len(latencies),
        "failures": failures[0],
        "seconds": wall,
        "acks_per_second": len(latencies) / wall if wall else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "latencies": latencies,
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """The rounds of one endpoint together: total acks over total time, pooled percentiles."""
    latencies = sorted(x for r in rounds for x in r["latencies"])
    seconds = sum(r["seconds"] for r in rounds)

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "acks": len(latencies),
        "failures": sum(r["failures"] for r in rounds),
        "seconds": seconds,
        "acks_per_second": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
    }


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if requests.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # refused, or too slow to answer yet
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready in time")


def reset_wal_counters(database_url: str) -> None:
    """Zero the cluster's WAL counters (pg_stat_wal), before a mode is measured."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_reset_shared('wal')")


def server_statements(database_url: str, requests: float) -> dict[str, float]:
    """What PostgreSQL spent on the inbox's statements of this database, per durable request.

    From pg_stat_statements (the bench's cluster loads it): statements run, and milliseconds
    executing and planning them. Planning is where a statement whose plan depends on the data
    shows: each execution of such a statement may be planned anew. From pg_stat_wal (with
    ``track_wal_io_timing``): the WAL flushes since :func:`reset_wal_counters` and how long
    each took, the wait a commit makes for the disk.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        flushes, flushing = conn.execute(
            "SELECT wal_sync, wal_sync_time FROM pg_stat_wal"
        ).fetchone() or (0, 0)
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        calls, executing, planning = conn.execute(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0), "
            "coalesce(sum(total_plan_time), 0) FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query ILIKE '%inbox%'"
        ).fetchone() or (0, 0, 0)
    per = max(requests, 1)
    return {
        "statements": float(calls) / per,
        "executing_ms": float(executing) / per,
        "planning_ms": float(planning) / per,
        "wal_flushes": float(flushes) / per,
        "ms_per_wal_flush": float(flushing) / flushes if flushes else 0.0,
    }


def stored_notifications(database_url: str) -> tuple[int, int]:
    """``(notifications, rows)`` in the inbox.

    A notification that wakes several sync kinds (a Contact wakes members and pairs) is one
    row per kind: the first keeps the notification's own key, the others' keys end in ``#kind``.
    """
    from sqlalchemy import func, select

    from connector.state.database import InboxEvent, StateDB

    db = StateDB(database_url)
    try:
        with db.session() as session:
            rows = int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)
            firsts = session.scalar(
                select(func.count())
                .select_from(InboxEvent)
                .where(InboxEvent.dedup_key.not_like("%#%"))
            )
            return int(firsts or 0), rows
    finally:
        db.dispose()


def writer_stats(data_dir: Path) -> dict[str, float]:
    """The gunicorn workers' inbox writer figures, summed."""
    total: dict[str, float] = {}
    for path in data_dir.glob("writer-*.json"):
        for key, value in json.loads(path.read_text()).items():
            total[key] = max(total.get(key, 0), value) if key == "largest_batch" else (
                total.get(key, 0) + value
            )
    return total


def measure(
    args: argparse.Namespace, mode: str, database_url: str | None, db_pid: int | None
) -> dict[str, Any]:
    """Start a server writing the inbox the ``mode`` way, load both endpoints, stop it.

    ``db_pid`` is the database server's process (its backends are its children), whose CPU is
    counted apart; without it (SQLite) the database's work is the web processes' own.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mentorsync-bench-") as tmp:
        data_dir = Path(tmp)
        database_url = database_url or f"sqlite:///{data_dir / 'mentorsync.db'}"
        env = {
            **os.environ,
            "MENTORSYNC_SERVICE_DATA_DIR": str(data_dir),
            "MENTORSYNC_SERVICE_DATABASE_URL": database_url,
            "MENTORSYNC_SERVICE_BIND": f"127.0.0.1:{port}",
            "MENTORSYNC_SALESFORCE_ORG_IDS": ORG_ID,
            "BENCH_SQLITE_SYNCHRONOUS": args.synchronous,
            "BENCH_INBOX_MODE": mode,
        }
        env.pop("MENTORSYNC_CONFIG", None)
        command = [sys.executable, __file__, "--serve"]
        command += ["--workers", str(args.workers), "--threads", str(args.threads)]
        server_log = (data_dir / "server.log").open("wb")
        proc = subprocess.Popen(command, env=env, stderr=server_log)
        trees = {"web": proc.pid} | ({"db": db_pid} if db_pid else {})
        meter = CpuMeter(trees)
        cpu = {"bare": CpuUse(), "outbound": CpuUse()}

        def metered(endpoint: str, bodies: Callable[[int], bytes], count: int) -> dict[str, Any]:
            before, started = meter.snapshot(), time.perf_counter()
            figures = load(base + endpoint, bodies, count, args.concurrency, args.max_seconds)
            used = meter.used(before, meter.snapshot(), time.perf_counter() - started)
            cpu["bare" if endpoint == BARE else "outbound"].add(used)
            return figures

        try:
            wait_ready(base, proc)
            bodies = [message(n, args.notifications) for n in range(args.requests + 200)]
            # Warm up both (connections, imports, SQLite pages), then measure.
            load(base + BARE, lambda n: bodies[n], 200, args.concurrency, args.max_seconds)
            load(base + OUTBOUND, lambda n: bodies[n], 200, args.concurrency, args.max_seconds)
            # Alternate the endpoints in rounds, so that a change in the machine's load (other
            # processes) weighs on both alike.
            per_round = max(1, args.requests // args.rounds)
            bare_rounds, durable_rounds = [], []
            for index in range(args.rounds):
                offset = 200 + index * per_round
                bare_rounds.append(metered(BARE, lambda n: bodies[n], per_round))
                durable_rounds.append(
                    metered(OUTBOUND, lambda n, o=offset: bodies[o + n], per_round)
                )
            bare, durable = summary(bare_rounds), summary(durable_rounds)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            server_log.close()
            if proc.returncode not in (0, -signal.SIGTERM):  # say why the server died
                log_lines = (data_dir / "server.log").read_text(errors="replace").splitlines()
                print("\n".join(log_lines[-20:]), file=sys.stderr)
        stored, rows = stored_notifications(database_url)
        stats = writer_stats(data_dir)
    ratio = durable["acks_per_second"] / bare["acks_per_second"] if bare["acks_per_second"] else 0
    expected = 0 if mode == NO_STORE else (200 + durable["acks"]) * args.notifications
    return {
        "mode": mode,
        "bare": bare,
        "outbound": durable,
        "ratio": ratio,
        "stored": stored,
        "expected": expected,
        "rows": rows,
        "writer": stats,
        "cpu": {
            endpoint: {
                "ms_per_request": use.per_request_ms(int(figures["acks"])),
                "machine_busy": use.machine_busy(),
            }
            for endpoint, use, figures in (
                ("bare", cpu["bare"], bare),
                ("outbound", cpu["outbound"], durable),
            )
        },
    }


def step_costs(args: argparse.Namespace, database_url: str | None) -> str:
    """``bench/webhook_costs.py``'s table (CPU per step of one request) on the same database."""
    env = {**os.environ, "MENTORSYNC_SALESFORCE_ORG_IDS": ORG_ID}
    env.pop("MENTORSYNC_CONFIG", None)
    if database_url is not None:
        env["MENTORSYNC_SERVICE_DATABASE_URL"] = database_url
    script = Path(__file__).resolve().parent / "webhook_costs.py"
    command = [sys.executable, str(script), "--notifications", str(args.notifications)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench/webhook_costs.py failed:\n{done.stderr[-2000:]}")
    return "".join(done.stdout.splitlines(keepends=True)[:-1])  # the table, not its JSON


def report(args: argparse.Namespace, store: str, results: list[dict[str, Any]]) -> bool:
    """Print the table, the CPU accounting and the goal; return whether all was stored."""
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, {args.concurrency} client "
        f"threads, {args.requests} requests per endpoint, {args.notifications} notifications "
        f"per message, {store}, {CORES} cores"
    )
    print(f"{'mode':<12}{'endpoint':<44}{'acks/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'failed':>7}")
    ok = True
    for result in results:
        stored_how = "not stored" if result["mode"] == NO_STORE else "durable"
        for name, figures in (
            (f"POST {BARE} (no work)", result["bare"]),
            (f"POST {OUTBOUND} ({stored_how})", result["outbound"]),
        ):
            print(
                f"{result['mode']:<12}{name:<44}{figures['acks_per_second']:>8.0f}"
                f"{figures['p50_ms']:>9.2f}{figures['p99_ms']:>9.2f}{figures['failures']:>7.0f}"
            )
        writer = result["writer"]
        line = f"{result['mode']:<12}durable / bare throughput: {result['ratio']:.2f}"
        line += (
            f"; notifications stored: {result['stored']} (expected {result['expected']}), "
            f"in {result['rows']} inbox rows"
        )
        if writer.get("batches"):
            busy = writer["lock_wait_seconds"] + writer["transaction_seconds"]
            line += (
                f"; writer: {writer['deliveries'] / writer['batches']:.1f} deliveries per "
                f"transaction (max {writer['largest_batch']:.0f}), "
                f"{writer['transaction_seconds'] * 1000 / writer['batches']:.1f} ms per "
                f"transaction, {writer['lock_wait_seconds'] / busy:.0%} of writer time waiting "
                "for the other process"
            )
        print(line)
        if "server" in result:
            server = result["server"]
            print(
                f"{result['mode']:<12}  PostgreSQL per outbound request: "
                f"{server['statements']:.2f} inbox statements, {server['executing_ms']:.3f} ms "
                f"executing them, {server['planning_ms']:.3f} ms planning them; "
                f"{server['wal_flushes']:.2f} WAL flushes of {server['ms_per_wal_flush']:.2f} ms"
            )
        for endpoint in ("bare", "outbound"):
            use = result["cpu"][endpoint]
            parts = ", ".join(
                f"{group} {ms:.2f}"
                for group, ms in use["ms_per_request"].items()
                if group != "machine"
            )
            print(
                f"{result['mode']:<12}  CPU ms per {endpoint} request: {parts}; all cores busy "
                f"{use['machine_busy']:.0%}"
            )
        durable = result["outbound"]
        met = result["ratio"] >= 0.7 and durable["p99_ms"] < 50
        verdict = "met" if met else "not met"
        if result["mode"] == NO_STORE:
            verdict = "does not apply (nothing stored: the endpoint without its durable store)"
        print(f"{result['mode']:<12}goal (>= 0.70x of bare, p99 < 50 ms): {verdict}")
        ok = ok and result["stored"] == result["expected"]
        ok = ok and not (durable["failures"] or result["bare"]["failures"])
    return ok


def main() -> None:
    """Measure the modes asked for, print the figures (and the JSON of them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--notifications", type=int, default=2, help="per Outbound Message")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--max-seconds", type=float, default=120, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=4, help="alternations bare/durable")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"inbox write modes to measure, in order (of {', '.join(MODES)}; or {NO_STORE}: "
        "the endpoint storing nothing, to see what the store costs)",
    )
    parser.add_argument(
        "--synchronous",
        choices=["", "NORMAL", "FULL"],
        default="",
        help="override SQLite's synchronous pragma (default: the state DB's)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.workers, args.threads)
        return

    server = None
    if args.database == "postgresql":
        from tests.backends import create_database, drop_database, start_postgres

        server = start_postgres(durable=True, statements=True)
    try:
        results = []
        for mode in args.modes.split(","):
            url = create_database(server.url) if server is not None else None
            db_pid = server.proc.pid if server is not None and server.proc else None
            if url is not None:
                reset_wal_counters(url)
            results.append(measure(args, mode, url, db_pid))
            if url is not None:
                results[-1]["server"] = server_statements(url, results[-1]["outbound"]["acks"])
            if url is not None:
                # Else autovacuum works on this mode's rows while the next mode is measured.
                drop_database(url)
        url = create_database(server.url) if server is not None else None
        costs = step_costs(args, url)
    finally:
        if server is not None:
            server.stop()

    store = (
        "PostgreSQL 15 (fsync on)"
        if server is not None
        else f"SQLite synchronous={args.synchronous or 'FULL (state DB default)'}"
    )
    ok = report(args, store, results)
    print(costs, end="")
    print(json.dumps(results))
    if not ok:
        raise SystemExit("some requests were not acknowledged or not stored")


if __name__ == "__main__":
    main()
