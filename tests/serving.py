"""Helpers for end-to-end tests: the webhook app and the worker running for real, and polling.

``serving`` runs the webhook app on a loopback port and Huey's consumer threads (no signal
handlers), as ``mentorsync run`` would; ``wait_for`` polls with a deadline instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from werkzeug.serving import make_server

from connector.config import Settings
from connector.service.worker import Worker
from webhooks import create_app


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[str, Worker]]:
    """The webhook app on a loopback port, and Huey consumer threads (no signal handlers)."""
    worker = Worker(settings)
    app = create_app(settings, worker=worker)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    web = threading.Thread(target=server.serve_forever, name="webhooks", daemon=True)
    web.start()
    consumer = worker.consumer(workers=2, periodic=False)
    consumer.scheduler.start()
    for _, thread in consumer.worker_threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", worker
    finally:
        consumer.stop(graceful=True)
        server.shutdown()
        web.join(10)
        server.server_close()
        worker.close()
        worker.db.dispose()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
