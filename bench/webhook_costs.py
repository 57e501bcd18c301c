"""Where one Outbound Message's CPU goes, in-process, one request at a time.

``bench/webhooks.py`` measures the endpoint under load, and says per process group where the
CPU went; this says where it goes inside one durable request. It drives the same app
(:func:`bench.webhooks.bench_app`, logging as ``mentorsync serve`` does) through Flask's test
client, without a network or a web server, and takes the CPU time of the whole process (the
threads that wait in line for the inbox included) over ``--requests`` requests of each of:

- the bare endpoint (Flask and the test client: what every request pays);
- the Outbound Message endpoint with its inbox store replaced by a no-op (parsing, checks,
  routing, the log line);
- the endpoint as shipped (the durable store: the line of deliveries, the INSERT, the commit
  and its fsync);
- the endpoint with the store of ``group-v5``, a writer thread of its own
  (``bench/thread_writer.py``), the baseline of how deliveries wait for the store;
- :func:`connector.state.inbox.store` alone (two rows, as for one notification), shipped and
  by ``group-v5``'s writer thread;
- :func:`webhooks.outbound.parse` alone.

The differences are the costs of each step; they are printed, and the JSON of them is the last
line of the output. The database is the one the environment names (``bench/webhooks.py``
runs this with its own), so a PostgreSQL server's own CPU is not in these figures.

    .venv/bin/python bench/webhook_costs.py             # a temporary SQLite state database
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # else this folder's webhooks.py would shadow the webhooks package
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.thread_writer import writing_by_thread  # noqa: E402
from bench.webhooks import BARE, HEADERS, ORG_ID, OUTBOUND, bench_app, message  # noqa: E402


def cpu_ms_per_call(count: int, call: Callable[[int], object]) -> float:
    """CPU milliseconds of this process (every thread) per ``call(n)``, n in range(count)."""
    started = time.process_time()
    for n in range(count):
        call(n)
    return (time.process_time() - started) * 1000 / count


def measure(requests: int, notifications: int, log_path: Path) -> dict[str, float]:
    """The CPU cost of each step of a durable request, in ms (see the module docstring).

    The app's log lines (one per stored message, as under ``mentorsync serve``) go to
    ``log_path``.
    """
    from connector.cli import configure_logging

    log_file = log_path.open("a")
    with contextlib.redirect_stderr(log_file):
        configure_logging(logging.INFO)  # its handler keeps the stream it was given
    try:
        return _measure(requests, notifications)
    finally:
        logging.getLogger().handlers.clear()
        log_file.close()


def _measure(requests: int, notifications: int) -> dict[str, float]:
    from connector.cli.service import prepare_storage
    from connector.config import load_settings
    from connector.state import inbox
    from webhooks import outbound

    prepare_storage(load_settings())
    app = bench_app()
    client = app.test_client()
    serial = iter(range(10**9))

    def post(path: str) -> Callable[[int], object]:
        def send(_: int) -> object:
            body = message(next(serial), notifications)  # every message new: a real insert
            response = client.post(path, data=body, headers=HEADERS)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}")
            return response

        return send

    for path in (BARE, OUTBOUND):  # warm up: imports, connections, pages, prepared plans
        cpu_ms_per_call(200, post(path))
    bare = cpu_ms_per_call(requests, post(BARE))
    durable = cpu_ms_per_call(requests, post(OUTBOUND))

    def no_store(_db: object, notices: list[inbox.Notice]) -> inbox.StoreResult:
        return inbox.StoreResult(stored=len(notices), kinds={n.kind for n in notices})

    db = app.extensions["mentorsync"].db

    def store_alone(_: int) -> object:
        n = next(serial)  # two rows, as the endpoint stores for a notification
        rows = [(f"costs:{n}", "members"), (f"costs:{n}#pairs", "pairs")]
        notices = [
            inbox.Notice(key, "salesforce-outbound", kind, "Contact", f"a{n}") for key, kind in rows
        ]
        return inbox.store(db, notices)

    alone = cpu_ms_per_call(requests, store_alone)
    with writing_by_thread(db):
        cpu_ms_per_call(200, post(OUTBOUND))  # its own connection, and statement prepared
        threaded = cpu_ms_per_call(requests, post(OUTBOUND))
        threaded_alone = cpu_ms_per_call(requests, store_alone)

    real_store = outbound.inbox.store
    outbound.inbox.store = no_store  # type: ignore[assignment]
    try:
        unstored = cpu_ms_per_call(requests, post(OUTBOUND))
    finally:
        outbound.inbox.store = real_store  # type: ignore[assignment]
    bodies = [message(next(serial), notifications) for _ in range(requests)]
    parse = cpu_ms_per_call(requests, lambda n: outbound.parse(bodies[n]))
    return {
        "request (Flask, test client)": bare,
        "parse (DOCTYPE check, ElementTree)": parse,
        "checks, routing, log line": max(unstored - bare - parse, 0.0),
        "inbox store (line, INSERT, commit)": durable - unstored,
        "  the same by a writer thread (group-v5)": threaded - unstored,
        "inbox.store() alone (two rows)": alone,
        "  alone, by a writer thread (group-v5)": threaded_alone,
        "durable request, in all": durable,
    }


def main() -> None:
    """Measure and print the costs, then their JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--notifications", type=int, default=2, help="per Outbound Message")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="mentorsync-costs-")
    # Registered first, so it runs last: after bench_app's own exit hook, which writes there.
    atexit.register(shutil.rmtree, tmp, True)
    os.environ.setdefault("MENTORSYNC_SERVICE_DATA_DIR", tmp)
    os.environ.setdefault("MENTORSYNC_SALESFORCE_ORG_IDS", ORG_ID)
    os.environ.pop("MENTORSYNC_CONFIG", None)
    costs = measure(args.requests, args.notifications, Path(tmp) / "app.log")
    print(f"CPU ms per Outbound Message ({args.notifications} notifications), in-process:")
    for step, ms in costs.items():
        print(f"  {step:<48}{ms:>7.3f}")
    print(json.dumps(costs))


if __name__ == "__main__":
    main()
