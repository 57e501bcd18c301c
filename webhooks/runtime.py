"""What the views share, built once per app: settings, state database, queue, signing keys."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

from connector.config import Settings
from connector.state import StateDB
from connector.worker import Worker

EXTENSION = "mentorsync"


@dataclass
class Runtime:
    """The app's settings, state database, queue handle and event signing keys."""

    settings: Settings
    db: StateDB
    worker: Worker
    salesforce_event_keys: list[bytes]
    moodle_event_keys: list[bytes]


def runtime() -> Runtime:
    """The current app's :class:`Runtime`."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def read_body() -> bytes:
    """The raw request body, or 413 when it is larger than ``service.max_body_bytes``.

    Read in chunks rather than with ``request.get_data()``: for a body without Content-Length
    (chunked), Werkzeug's ``get_data`` would silently stop at the limit and hand back a
    truncated body; reading on past the limit raises the 413 instead.
    """
    stream = request.stream
    chunks = []
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
