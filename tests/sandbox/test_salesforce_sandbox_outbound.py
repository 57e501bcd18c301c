"""The Salesforce sandbox's Outbound Messages: shape, batching, retries until Ack, duplicates."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.salesforce import SalesforceSandbox

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
ACK = (FIXTURES / "outbound-message-ack.xml").read_bytes()
NS = {
    "soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
    "om": "http://soap.sforce.com/2005/09/outbound",
    "sf": "urn:sobject.enterprise.soap.sforce.com",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
NACK = ACK.replace(b"<Ack>true</Ack>", b"<Ack>false</Ack>")


class Receiver:
    """A tiny webhook on 127.0.0.1 that records messages and answers from a script.

    ``answers`` are consumed one per request: an HTTP status, or "nack" (200 with Ack false);
    when empty it acknowledges.
    """

    def __init__(self, answers: list[int | str] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/outbound"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _app(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self.received.append((dict(request.headers), request.get_data()))
            answer = self.answers.pop(0) if self.answers else 200
        if answer == "nack":
            response = Response(NACK, 200, content_type="text/xml")
        elif answer == 200:
            response = Response(ACK, 200, content_type="text/xml")
        else:
            response = Response(b"busy", int(answer))
        return response(environ, start_response)

    def notification_ids(self) -> list[str]:
        with self._lock:
            bodies = [body for _, body in self.received]
        return [
            n.findtext("om:Id", namespaces=NS)
            for body in bodies
            for n in ElementTree.fromstring(body).iterfind(".//om:Notification", NS)
        ]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def sf(tmp_path, receiver):
    sandbox = SalesforceSandbox(tmp_path / "sf", outbound_url=receiver.url)
    sandbox.outbound.first_retry = 0.05
    sandbox.outbound.max_retry = 0.2
    sandbox.start()
    yield sandbox
    sandbox.stop()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.01)


def shape(element: ElementTree.Element) -> list:
    """Tag names (and xsi:type / xsi:nil) of a tree, without text: the message's structure."""
    attrs = {k: v for k, v in element.attrib.items() if k.startswith(f"{{{NS['xsi']}}}")}
    return [element.tag, attrs, [shape(child) for child in element]]


def test_a_change_is_posted_in_the_shape_of_the_fixture(sf, receiver):
    contact = sf.store.create(
        "Contact",
        {
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": "ada@example.org",
            "Member_Status__c": "Active",
            "Mentorship_Role__c": None,  # empty fields are left out
        },
    )
    assert sf.outbound.wait_idle(timeout=10)
    [(headers, body)] = receiver.received
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert headers["Soapaction"] == '""'

    sent = ElementTree.fromstring(body)
    fixture = ElementTree.fromstring((FIXTURES / "outbound-message-contact.xml").read_bytes())
    # The fixture carries two notifications with the same fields; the sandbox sent one.
    fixture_notifications = fixture.find(".//om:notifications", NS)
    fixture_notifications.remove(fixture_notifications.findall("om:Notification", NS)[1])
    assert shape(sent) == shape(fixture)

    notification = sent.find(".//om:Notification", NS)
    assert notification.findtext("om:Id", namespaces=NS).startswith("04l")
    assert sent.findtext(".//om:OrganizationId", namespaces=NS) == sf.org_id
    assert sent.findtext(".//om:ActionId", namespaces=NS).startswith("04k")
    assert sent.findtext(".//om:EnterpriseUrl", namespaces=NS).startswith(
        f"{sf.url}/services/Soap/c/59.0/"
    )
    values = [
        (child.tag.split("}")[1], child.text) for child in notification.find("om:sObject", NS)
    ]
    stamp = sf.store.get("Contact", contact)["SystemModstamp"].replace("+0000", "Z")
    assert values == [
        ("Id", contact),
        ("Email", "ada@example.org"),
        ("FirstName", "Ada"),
        ("LastName", "Lovelace"),
        ("Member_Status__c", "Active"),
        ("SystemModstamp", stamp),
    ]
    assert sf.outbound.delivered == 1 and sf.outbound.attempts == 1


def test_match_messages_use_the_match_type(sf, receiver):
    mentor = sf.store.create("Contact", {"LastName": "Mentor"}, notify=False)
    match = sf.store.create(
        "Mentorship_Match__c",
        {"Mentor__c": mentor, "Status__c": "Active", "Program__c": "GMP-2026"},
    )
    assert sf.outbound.wait_idle(timeout=10)
    body = ElementTree.fromstring(receiver.received[0][1])
    sobject = body.find(".//om:sObject", NS)
    assert sobject.get(f"{{{NS['xsi']}}}type") == "sf:Mentorship_Match__c"
    assert sobject.findtext("sf:Id", namespaces=NS) == match
    assert sobject.findtext("sf:Mentor__c", namespaces=NS) == mentor
    assert sobject.find("sf:Mentee__c", NS) is None


def test_retries_with_growing_gaps_until_ack(sf, receiver):
    receiver.answers = [500, "nack", 503]
    sf.store.create("Contact", {"LastName": "Hopper"})
    wait_for(lambda: sf.outbound.delivered == 1)
    assert sf.outbound.attempts == 4
    assert sf.outbound.stats.failures == 3
    # Every attempt carried the same notification (the receiver's dedup key).
    ids = receiver.notification_ids()
    assert len(ids) == 4 and len(set(ids)) == 1
    assert sf.outbound.pending == 0


def test_up_to_100_notifications_per_message(sf, receiver):
    sf.outbound.pause()
    for i in range(150):
        sf.store.create("Contact", {"LastName": f"M{i}"})
    sf.store.create("Mentorship_Match__c", {"Status__c": "Proposed"})
    assert sf.outbound.pending == 151
    sf.outbound.resume()
    assert sf.outbound.wait_idle(timeout=10)
    sizes = sorted(
        len(ElementTree.fromstring(body).findall(".//om:Notification", NS))
        for _, body in receiver.received
    )
    assert sizes == [1, 50, 100]
    assert sf.outbound.delivered == 151 and sf.outbound.stats.messages == 3


def test_duplicate_next_delivers_the_same_notification_twice(sf, receiver):
    sf.outbound.duplicate_next = True
    sf.store.create("Contact", {"LastName": "Twice"})
    wait_for(lambda: sf.outbound.delivered == 2)
    assert sf.outbound.wait_idle(timeout=10)
    first, second = receiver.notification_ids()
    assert first == second
    assert sf.outbound.stats.duplicates == 1
    assert sf.outbound.duplicate_next is False


def test_duplicate_probability_one_always_redelivers_once(sf, receiver):
    sf.outbound.duplicate_probability = 1.0
    sf.store.create("Contact", {"LastName": "Again"})
    # Each delivery is duplicated: stop the echo after the second.
    wait_for(lambda: sf.outbound.delivered >= 2)
    sf.outbound.duplicate_probability = 0.0
    assert sf.outbound.wait_idle(timeout=10)
    assert len(set(receiver.notification_ids())) == 1


def test_gives_up_after_the_configured_time(sf, receiver):
    sf.outbound.give_up_after = 0.3
    receiver.answers = [500] * 1000
    sf.store.create("Contact", {"LastName": "Lost"})
    wait_for(lambda: sf.outbound.stats.dropped == 1)
    assert sf.outbound.pending == 0 and sf.outbound.delivered == 0
    assert sf.outbound.attempts >= 2


def test_write_backs_and_deletes_send_nothing(sf, receiver):
    contact = sf.store.create("Contact", {"LastName": "Quiet"}, notify=False)
    sf.store.update("Contact", contact, {"LMS_Sync_Status__c": "Synced", "LMS_User_Id__c": "7"})
    sf.store.update("Contact", contact, {"LastName": "Quiet"})  # same value: no change
    sf.store.delete("Contact", contact)
    sf.store.create(
        "Mentoring_Meeting__c",
        {"Match__c": sf.store.create("Mentorship_Match__c", {}, notify=False)},
    )  # not a watched object
    assert sf.outbound.pending == 0 and sf.outbound.attempts == 0

    other = sf.store.create("Contact", {"LastName": "Loud"}, notify=False)
    sf.store.update("Contact", other, {"Email": "loud@example.org"})
    assert sf.outbound.pending == 1


def test_no_outbound_url_queues_nothing(tmp_path):
    sandbox = SalesforceSandbox(tmp_path / "sf")
    sandbox.store.create("Contact", {"LastName": "Nobody listens"})
    assert sandbox.outbound.pending == 0


def test_stop_keeps_pending_notifications_for_the_next_start(tmp_path, receiver):
    first = SalesforceSandbox(tmp_path / "sf", outbound_url=receiver.url)
    first.start()
    first.outbound.pause()
    first.store.create("Contact", {"LastName": "Later"})
    first.stop()
    assert receiver.received == []

    second = SalesforceSandbox(tmp_path / "sf", outbound_url=receiver.url)
    second.start()
    try:
        assert second.outbound.wait_idle(timeout=10)
        assert len(receiver.notification_ids()) == 1
    finally:
        second.stop()
