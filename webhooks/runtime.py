"""What the views share, built once per app: settings, state database, queue, signing keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app, request

from connector.config import Settings
from connector.registry import kinds
from connector.service.worker import Worker
from connector.state.database import StateDB

EXTENSION = "mentorsync"


@dataclass
class Runtime:
    """The app's settings, state database, queue handle and event signing keys."""

    settings: Settings
    db: StateDB
    worker: Worker
    salesforce_event_keys: list[bytes]
    moodle_event_keys: list[bytes]
    # Objects of the kinds whose source object is configured (see kind_for), read at start.
    configured_objects: dict[str, tuple[str, ...]] = field(default_factory=dict)


def configured_objects(settings: Settings) -> dict[str, tuple[str, ...]]:
    """``{kind: objects}`` for the kinds that offer ``objects_for(settings)``.

    Called when the app is built, so that a bad field map stops the start with its error
    instead of failing every webhook.
    """
    out = {}
    for name, kind in kinds().items():
        objects_for = getattr(kind, "objects_for", None)
        if objects_for is not None:
            out[name] = tuple(objects_for(settings))
    return out


def kinds_for(obj: str) -> list[str]:
    """Every sync kind that events about ``obj`` wake, in the registry's order.

    One object may wake several kinds: a Contact change matters to members and to pairs.
    A kind names its objects in ``objects``; a kind whose source object is configurable (the
    member field map's ``[source] object``, e.g. ``Account`` with Person Accounts) may offer
    ``objects_for(settings)`` instead, which then wins.
    """
    rt = runtime()
    return [
        name
        for name, kind in kinds().items()
        if obj in rt.configured_objects.get(name, kind.objects)
    ]


def kind_for(obj: str) -> str | None:
    """The first sync kind that handles events about ``obj``, or None."""
    found = kinds_for(obj)
    return found[0] if found else None


def routed(key: str, kinds_woken: list[str]) -> list[tuple[str, str, bool]]:
    """``(dedup key, kind, first)`` for one notification woken kinds: the first kind keeps the
    notification's own key; the others get ``key#kind``. Only the first is checked for the
    same change arriving in two messages (record Id + SystemModstamp), so the others may do a
    repeated, idempotent reconcile at worst."""
    return [
        (key if n == 0 else f"{key}#{kind}", kind, n == 0) for n, kind in enumerate(kinds_woken)
    ]


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
