"""Benchmark: the Outbound Message endpoint under gunicorn, next to a bare Flask endpoint.

Starts ``mentorsync serve``'s gunicorn setup (same options, same app factory) on a loopback port,
with one extra route, ``POST /bench/bare``, that reads the body and answers the same Ack without
parsing or storing anything. A local load generator (threads, one ``requests.Session`` each)
sends a bounded number of requests to each endpoint, and reports acknowledgements per second and
p50/p99 latency for both, and the ratio: the cost of parsing, checking and the durable inbox write
(one SQLite transaction per message, committed before the Ack).

Every Outbound Message is distinct (new notification and record Ids), so each one is a real
insert, not a duplicate. Nothing leaves 127.0.0.1; the state lives in a temporary directory.

    .venv/bin/python bench/webhooks.py                  # 2000 requests each, 8 client threads
    .venv/bin/python bench/webhooks.py --requests 5000 --concurrency 16 --synchronous FULL

The load generator runs on the same machine as the server and competes with it for CPU: the
figures are a floor for a dedicated machine, and comparable only within one run.
"""

from __future__ import annotations

import argparse
import json
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

    def bare() -> Response:
        request.get_data()
        return Response(ACK, 200, content_type=SOAP_CONTENT_TYPE)

    app.add_url_rule(BARE, "bench_bare", bare, methods=["POST"])
    return app


def serve(workers: int, threads: int) -> None:
    """Run gunicorn exactly as ``mentorsync serve`` configures it, with :func:`bench_app`."""
    from connector.cli.service import gunicorn_options, prepare_storage, run_gunicorn
    from connector.config import load_settings

    settings = load_settings()
    options = gunicorn_options(settings, None, workers, threads, None)
    options["loglevel"] = "warning"
    prepare_storage(settings)
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
    }


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if requests.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready in time")


def inbox_rows(data_dir: Path) -> int:
    import sqlite3

    with sqlite3.connect(data_dir / "mentorsync.db") as conn:
        return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--notifications", type=int, default=2, help="per Outbound Message")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--max-seconds", type=float, default=120, help="cap per phase")
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

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mentorsync-bench-") as tmp:
        data_dir = Path(tmp)
        env = {
            **os.environ,
            "MENTORSYNC_SERVICE_DATA_DIR": str(data_dir),
            "MENTORSYNC_SERVICE_BIND": f"127.0.0.1:{port}",
            "MENTORSYNC_SALESFORCE_ORG_IDS": ORG_ID,
            "BENCH_SQLITE_SYNCHRONOUS": args.synchronous,
        }
        env.pop("MENTORSYNC_CONFIG", None)
        command = [
            sys.executable,
            __file__,
            "--serve",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.Popen(command, env=env)
        try:
            wait_ready(base, proc)
            bodies = [message(n, args.notifications) for n in range(args.requests + 200)]
            # Warm up both (connections, imports, SQLite pages), then measure.
            load(base + BARE, lambda n: bodies[n], 200, args.concurrency, args.max_seconds)
            load(base + OUTBOUND, lambda n: bodies[n], 200, args.concurrency, args.max_seconds)
            bare = load(
                base + BARE, lambda n: bodies[n], args.requests, args.concurrency, args.max_seconds
            )
            durable = load(
                base + OUTBOUND,
                lambda n: bodies[200 + n],
                args.requests,
                args.concurrency,
                args.max_seconds,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stored = inbox_rows(data_dir)

    expected = (200 + durable["acks"]) * args.notifications
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, {args.concurrency} client "
        f"threads, {args.requests} requests per endpoint, {args.notifications} notifications "
        f"per message, SQLite synchronous={args.synchronous or 'FULL (state DB default)'}"
    )
    print(f"{'endpoint':<44}{'acks/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failed':>8}")
    for name, result in ((f"POST {BARE} (no work)", bare), (f"POST {OUTBOUND} (durable)", durable)):
        print(
            f"{name:<44}{result['acks_per_second']:>10.0f}{result['p50_ms']:>10.2f}"
            f"{result['p99_ms']:>10.2f}{result['failures']:>8.0f}"
        )
    ratio = durable["acks_per_second"] / bare["acks_per_second"] if bare["acks_per_second"] else 0
    print(f"durable / bare throughput: {ratio:.2f}")
    print(f"inbox rows stored: {stored} (expected {expected})")
    print(
        json.dumps(
            {
                "bare": bare,
                "outbound": durable,
                "ratio": ratio,
                "stored": stored,
                "expected": expected,
            }
        )
    )
    if stored != expected or durable["failures"] or bare["failures"]:
        raise SystemExit("some requests were not acknowledged or not stored")


if __name__ == "__main__":
    main()
