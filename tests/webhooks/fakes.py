"""Test doubles shared by the webhook and worker tests: fake sync kinds, settings, messages."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import connector.registry
from connector.config import Settings, load_settings
from connector.engine.kind import RunResult, SyncRequest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "salesforce"
ORG_ID = "00D5e000000KQ2eEAG"
SF_KEY = b"salesforce-events-key-0123456789"
MOODLE_KEY = b"moodle-events-key-0123456789abcd"
SF_SECRET = "whsec_" + base64.b64encode(SF_KEY).decode()
MOODLE_SECRET = "whsec_" + base64.b64encode(MOODLE_KEY).decode()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def section_overrides(data_dir: Path, **service: Any) -> dict[str, dict[str, Any]]:
    """Settings sections for tests: everything in ``data_dir``, an in-memory queue."""
    return {
        "service": {
            "data_dir": str(data_dir),
            "queue_url": "memory://",
            "events_secret": SF_SECRET,
            "moodle_events_secret": MOODLE_SECRET,
            **service,
        },
        "salesforce": {"org_ids": [ORG_ID]},
    }


def make_settings(data_dir: Path, **service: Any) -> Settings:
    return load_settings(env={}, overrides=section_overrides(data_dir, **service))


@dataclass
class FakeKind:
    """A sync kind that records its requests; ``behaviour`` may raise or return a result."""

    name: str
    objects: tuple[str, ...]
    calls: list[SyncRequest] = field(default_factory=list)
    behaviour: Callable[[Any, SyncRequest, Any], RunResult] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    max_running: int = 0

    def run(self, ctx: Any, request: SyncRequest, progress: Any = None) -> RunResult:
        with self.lock:
            self.calls.append(request)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if progress is not None:
                progress(0, len(request.ids) or None)
            if self.behaviour is not None:
                return self.behaviour(ctx, request, progress)
            return RunResult(kind=self.name, status="ok", counts={"seen": len(request.ids)})
        finally:
            with self.lock:
                self.running -= 1


@dataclass
class FakeKinds:
    contacts: FakeKind
    matches: FakeKind
    moodle: FakeKind
    completions: FakeKind


@pytest.fixture
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> FakeKinds:
    """A registry holding only fake kinds (the real built-in kinds are imported, then hidden)."""
    connector.registry.kinds()  # load the built-in kinds now, then hide them
    registry: dict[str, Any] = {}
    monkeypatch.setattr(connector.registry, "REGISTRY", registry)
    kinds = FakeKinds(
        contacts=FakeKind("fake_contacts", ("Contact",)),
        matches=FakeKind("fake_matches", ("Mentorship_Match__c",)),
        moodle=FakeKind("fake_moodle", ("moodle",)),
        completions=FakeKind(
            "fake_completions", ("moodle:\\core\\event\\course_module_completion_updated",)
        ),
    )
    for kind in (kinds.contacts, kinds.matches, kinds.moodle, kinds.completions):
        connector.registry.register(kind)
    return kinds


def outbound_message(
    notifications: list[tuple[str, str, str, str | None]], org_id: str = ORG_ID
) -> bytes:
    """An Outbound Message like the fixture's: (notification Id, object, record Id, modstamp)."""
    items = []
    for notification_id, obj, record_id, modstamp in notifications:
        stamp = f"<sf:SystemModstamp>{modstamp}</sf:SystemModstamp>" if modstamp else ""
        items.append(
            f"<Notification><Id>{notification_id}</Id>"
            f'<sObject xsi:type="sf:{obj}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{record_id}</sf:Id>{stamp}</sObject></Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId><ActionId>04k5e000000CaRkAAK</ActionId>"
        + "".join(items)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def hold_first_batch(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make the inbox writer's first batch wait for ``release`` before it is stored.

    Returns ``(held, release)``: ``held`` is set once the first batch is waiting (a database that
    hangs, or a commit slow enough for other deliveries to queue up behind it).
    """
    from connector.state import inbox_writer

    held, release = threading.Event(), threading.Event()
    real = inbox_writer.store_batch

    def first_waits(conn, batch):  # type: ignore[no-untyped-def]
        if not held.is_set():
            held.set()
            assert release.wait(30)
        return real(conn, batch)

    monkeypatch.setattr(inbox_writer, "store_batch", first_waits)
    return held, release


# The record of the other request's delivery in :func:`hang_a_write`.
HUNG_RECORD = "003000000000000999"


def hang_a_write(
    monkeypatch: pytest.MonkeyPatch, db: Any
) -> tuple[threading.Event, threading.Thread]:
    """Start another request's delivery (one inbox row, of :data:`HUNG_RECORD`) whose batch
    hangs, as on a database that does not answer, until ``release`` is set.

    Returns ``(release, thread)`` once the batch is hanging: deliveries stored from now on wait
    in line behind it. Join the thread after ``release``.
    """
    from connector.state import inbox

    held, release = hold_first_batch(monkeypatch)
    other = inbox.Notice("hung-write", "salesforce-outbound", "members", "Contact", HUNG_RECORD)
    thread = threading.Thread(target=inbox.store, args=(db, [other]), daemon=True)
    thread.start()
    assert held.wait(10), "the other delivery's batch never started"
    return release, thread


def sf_id(prefix: str, n: int) -> str:
    """An 18-character Id-shaped string (prefix + zero-padded number)."""
    return f"{prefix}{n:0{18 - len(prefix)}d}"


def queued(rt: Any) -> list[tuple]:
    """Args of the tasks waiting in an app's or worker's queue (scheduled ones included)."""
    huey = rt.worker.huey if hasattr(rt, "worker") else rt.huey
    return [task.args for task in huey.pending() + huey.scheduled()]
