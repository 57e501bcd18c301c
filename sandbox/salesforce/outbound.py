"""Outbound Messages: the SOAP notifications Salesforce POSTs when a watched record changes.

Like Salesforce, the deliverer queues one notification per change (create, or an update that
changes one of the chosen fields; deletes send nothing), sends up to 100 notifications of one
object per message from a background thread, and retries everything not acknowledged with
growing gaps until the receiver answers HTTP 200 with ``<Ack>true</Ack>``. Notifications older
than ``give_up_after`` are dropped. A delivered message may come again (``duplicate_next`` or
``duplicate_probability``), as Salesforce's at-least-once delivery allows.

The gaps are scaled down for tests (Salesforce: up to 2 hours, for 24 hours).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import requests
from defusedxml import DefusedXmlException

from sandbox.salesforce.ids import make_id
from sandbox.salesforce.schema import OBJECTS
from sandbox.salesforce.values import outbound_datetime

log = logging.getLogger(__name__)

# The fields each watched object's Outbound Message carries (Id always comes first).
DEFAULT_WATCH: dict[str, tuple[str, ...]] = {
    "Contact": (
        "Email",
        "FirstName",
        "LastName",
        "Member_Status__c",
        "Mentorship_Role__c",
        "Practice_Setting__c",
        "Region__c",
        "SystemModstamp",
    ),
    "Mentorship_Match__c": (
        "End_Date__c",
        "Mentee__c",
        "Mentor__c",
        "Name",
        "Program__c",
        "Start_Date__c",
        "Status__c",
        "SystemModstamp",
    ),
}
MAX_PER_MESSAGE = 100
API_VERSION = "59.0"


@dataclass
class Notification:
    """One queued notification: its 04l Id (the receiver's dedup key) and the field values."""

    id: str
    sobject: str
    values: list[tuple[str, str]]  # (field, text), Id first, empty fields left out
    queued_at: float  # time.monotonic() when queued
    attempts: int = 0
    due: float = 0.0

    @property
    def record_id(self) -> str:
        """The Id of the record the notification is about."""
        return self.values[0][1]


@dataclass
class OutboundStats:
    """Counters tests read."""

    delivered: int = 0  # notifications acknowledged (a duplicate counts again)
    messages: int = 0  # messages acknowledged
    attempts: int = 0  # POSTs made
    failures: int = 0  # POSTs not acknowledged
    dropped: int = 0  # notifications given up after give_up_after
    duplicates: int = 0  # notifications sent again on purpose
    delivered_ids: list[str] = field(default_factory=list)  # notification ids, in order


class OutboundMessenger:
    """Queues notifications on record changes and delivers them from a background thread."""

    def __init__(
        self,
        url: str | None = None,
        *,
        watch: Mapping[str, Sequence[str]] | None = None,
        first_retry: float = 0.2,
        max_retry: float = 5.0,
        give_up_after: float = 300.0,
        timeout: float = 5.0,
        verify: bool | str = True,
        duplicate_probability: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.watch: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in (watch if watch is not None else DEFAULT_WATCH).items()
        }
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.give_up_after = give_up_after
        self.timeout = timeout
        self.verify = verify
        self.duplicate_probability = duplicate_probability
        self.duplicate_next = False
        # While paused nothing is sent (changes still queue): lets a test batch changes.
        self._paused = False
        self.org_id = ""
        self.instance_url = ""
        self.stats = OutboundStats()
        self._url = url
        self._rng = random.Random(seed)  # delivery jitter for tests, not security
        self._cond = threading.Condition()
        self._queue: list[Notification] = []
        self._inflight = 0
        self._counter = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- configuration and counters ------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """Where messages go; None stops queueing new ones (queued ones wait for a URL)."""
        return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        with self._cond:
            self._url = value
            self._cond.notify_all()

    def pause(self) -> None:
        """Hold delivery; changes keep queueing."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        """Deliver again (everything due goes out, up to 100 notifications per message)."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Notifications not yet acknowledged (queued, waiting to retry, or being sent)."""
        with self._cond:
            return len(self._queue) + self._inflight

    @property
    def delivered(self) -> int:
        """Notifications acknowledged so far."""
        return self.stats.delivered

    @property
    def attempts(self) -> int:
        """POSTs made so far."""
        return self.stats.attempts

    # -- queueing ----------------------------------------------------------------------------

    def on_change(
        self, sobject: str, record: Mapping[str, Any], changed: frozenset[str], created: bool
    ) -> None:
        """Store listener: queue a notification if the change matches the watch rule."""
        fields = self.watch.get(sobject)
        if fields is None or self._url is None:
            return
        if not created and not (changed & set(fields)):
            return  # like a rule on ISCHANGED(chosen fields): write-backs do not echo
        values = [("Id", str(record["Id"]))]
        for name in sorted(f for f in fields if f != "Id"):
            text = _text(record.get(name))
            if text:
                values.append((name, text))
        with self._cond:
            self._counter += 1
            now = time.monotonic()
            self._queue.append(
                Notification(make_id("04l", self._counter), sobject, values, now, due=now)
            )
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and self._inflight == 0, timeout=timeout
            )

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="sf-outbound", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the delivery thread (pending notifications stay queued)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.timeout + 5)

    def _run(self) -> None:
        with requests.Session() as session:
            while True:
                with self._cond:
                    batch = self._next_batch()
                    if batch is None:
                        return
                    url = self._url
                    self._inflight = len(batch)
                acked = self._post(session, url or "", batch)
                with self._cond:
                    self._finish(batch, acked)

    def _next_batch(self) -> list[Notification] | None:
        """Wait (holding the condition) for due notifications; None when stopping."""
        while not self._stopping:
            now = time.monotonic()
            self._drop_expired(now)
            if self._url is not None and self._queue and not self._paused:
                due = [n for n in self._queue if n.due <= now]
                if due:
                    sobject = due[0].sobject
                    batch = [n for n in due if n.sobject == sobject][:MAX_PER_MESSAGE]
                    taken = {id(n) for n in batch}
                    self._queue = [n for n in self._queue if id(n) not in taken]
                    return batch
                wait: float | None = min(n.due for n in self._queue) - now
            else:
                wait = None
            self._cond.wait(timeout=wait)
        return None

    def _drop_expired(self, now: float) -> None:
        keep = [n for n in self._queue if now - n.queued_at <= self.give_up_after]
        dropped = len(self._queue) - len(keep)
        if dropped:
            self.stats.dropped += dropped
            log.warning("outbound messages: gave up on %d notifications", dropped)
            self._queue = keep
            self._cond.notify_all()

    def _finish(self, batch: list[Notification], acked: bool) -> None:
        now = time.monotonic()
        self._inflight = 0
        self.stats.attempts += 1
        if acked:
            self.stats.delivered += len(batch)
            self.stats.messages += 1
            self.stats.delivered_ids.extend(n.id for n in batch)
            if self.duplicate_next or (
                self.duplicate_probability and self._rng.random() < self.duplicate_probability
            ):
                self.duplicate_next = False
                self.stats.duplicates += len(batch)
                for n in batch:
                    self._queue.append(
                        Notification(n.id, n.sobject, n.values, n.queued_at, due=now)
                    )
        else:
            self.stats.failures += 1
            for n in batch:
                n.attempts += 1
                n.due = now + min(self.max_retry, self.first_retry * 2 ** (n.attempts - 1))
                self._queue.append(n)
        self._cond.notify_all()

    def _post(self, session: requests.Session, url: str, batch: list[Notification]) -> bool:
        body = build_message(self.org_id, self.instance_url, batch)
        try:
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            log.info(
                "outbound message (%d notifications): not delivered (%s)",
                len(batch),
                type(exc).__name__,
            )
            return False
        if response.status_code == 200 and is_ack(response.content):
            return True
        log.info(
            "outbound message (%d notifications): no Ack (HTTP %d)",
            len(batch),
            response.status_code,
        )
        return False

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Queued notifications and the Id counter, JSON-ready."""
        with self._cond:
            now = time.monotonic()
            return {
                "counter": self._counter,
                "pending": [
                    {
                        "id": n.id,
                        "sobject": n.sobject,
                        "values": n.values,
                        "age": now - n.queued_at,
                        "attempts": n.attempts,
                    }
                    for n in self._queue
                ],
            }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take back the queue of :meth:`to_state`; everything is due at once."""
        with self._cond:
            now = time.monotonic()
            self._counter = int(state.get("counter", 0))
            self._queue = [
                Notification(
                    p["id"],
                    p["sobject"],
                    [(k, v) for k, v in p["values"]],
                    now - float(p.get("age", 0.0)),
                    int(p.get("attempts", 0)),
                    due=now,
                )
                for p in state.get("pending", [])
            ]
            self._cond.notify_all()


def _text(value: Any) -> str:
    """A field value as Outbound Messages write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.endswith("+0000") and "T" in value:
        return outbound_datetime(value)
    return str(value)


def action_id(sobject: str) -> str:
    """The Id (04k...) of the Outbound Message action of ``sobject``: stable per object."""
    names = list(OBJECTS)
    return make_id("04k", names.index(sobject) + 1 if sobject in names else len(names) + 1)


def build_message(org_id: str, instance_url: str, batch: Sequence[Notification]) -> bytes:
    """The SOAP envelope of one Outbound Message (the shape of the recorded fixtures)."""
    sobject = batch[0].sobject
    org15 = org_id[:15]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        " <soapenv:Body>",
        '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">',
        f"   <OrganizationId>{org_id}</OrganizationId>",
        f"   <ActionId>{action_id(sobject)}</ActionId>",
        '   <SessionId xsi:nil="true"/>',
        f"   <EnterpriseUrl>{escape(instance_url)}/services/Soap/c/{API_VERSION}/{org15}"
        "</EnterpriseUrl>",
        f"   <PartnerUrl>{escape(instance_url)}/services/Soap/u/{API_VERSION}/{org15}</PartnerUrl>",
    ]
    for n in batch:
        lines.append("   <Notification>")
        lines.append(f"    <Id>{n.id}</Id>")
        lines.append(
            f'    <sObject xsi:type="sf:{n.sobject}"'
            ' xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        )
        for name, text in n.values:
            lines.append(f"     <sf:{name}>{escape(text)}</sf:{name}>")
        lines.append("    </sObject>")
        lines.append("   </Notification>")
    lines += ["  </notifications>", " </soapenv:Body>", "</soapenv:Envelope>"]
    return "\n".join(lines).encode("utf-8")


def is_ack(body: bytes) -> bool:
    """True if ``body`` is a SOAP notificationsResponse with ``Ack`` true."""
    try:
        doc = SafeET.fromstring(body)
    except (SafeET.ParseError, DefusedXmlException):
        return False
    for element in doc.iter():
        if element.tag == "Ack" or element.tag.endswith("}Ack"):
            return (element.text or "").strip().lower() == "true"
    return False
