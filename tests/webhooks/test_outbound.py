"""POST /hooks/salesforce/outbound: parse, check, store in one transaction, then Ack."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import sqlalchemy.exc
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text
from werkzeug.test import EnvironBuilder, run_wsgi_app

import connector.registry
from connector.state import inbox_writer
from connector.state.database import InboxEvent
from tests.webhooks.fakes import (
    HUNG_RECORD,
    ORG_ID,
    FakeKind,
    FakeKinds,
    fixture_bytes,
    hang_a_write,
    outbound_message,
    queued,
    section_overrides,
    sf_id,
)
from webhooks import create_app, outbound
from webhooks.runtime import Runtime

URL = "/hooks/salesforce/outbound"
XML = "text/xml; charset=utf-8"
ACK = fixture_bytes("outbound-message-ack.xml")


def post(client: FlaskClient, body: bytes, url: str = URL, **kwargs):  # type: ignore[no-untyped-def]
    headers = {"SOAPAction": '""', **kwargs.pop("headers", {})}
    return client.post(
        url, data=body, content_type=kwargs.pop("content_type", XML), headers=headers, **kwargs
    )


def inbox_rows(rt: Runtime) -> list[InboxEvent]:
    with rt.db.session() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def assert_fault(response, status: int, text: str, code: str = "soapenv:Client") -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response.mimetype == "text/xml"
    body = response.get_data(as_text=True)
    assert "<soapenv:Fault>" in body and f"<faultcode>{code}</faultcode>" in body
    assert text in body
    assert "<Ack>" not in body


def test_ack_is_the_exact_fixture_bytes() -> None:
    assert outbound.ACK == ACK


def test_parse_contact_fixture() -> None:
    message = outbound.parse(fixture_bytes("outbound-message-contact.xml"))
    assert message.organization_id == ORG_ID
    assert [
        (n.notification_id, n.object, n.record_id, n.modstamp) for n in message.notifications
    ] == [
        ("04l5e00000Gx7QzAAJ", "Contact", "0035e00000AbCdEAAV", "2026-03-02T14:05:11.000Z"),
        ("04l5e00000Gx7R0AAJ", "Contact", "0035e00000AbCdFAAV", "2026-03-02T14:05:12.000Z"),
    ]


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        (["00D5e000000KQ2eEAG"], True),
        (["00D5e000000KQ2e"], True),  # 15-character form of the same org
        (["00D5e000000KQ2E"], False),  # 15-character Ids are case-sensitive
        (["00D5e000000XXXXEAG"], False),
        ([], False),
    ],
)
def test_org_matches_15_and_18_forms(allowed: list[str], expected: bool) -> None:
    assert outbound.org_matches("00D5e000000KQ2eEAG", allowed) is expected
    assert outbound.org_matches("00D5e000000KQ2e", allowed) is expected


def test_contact_message_is_stored_then_acknowledged(
    client: FlaskClient, rt: Runtime, fake_kinds: FakeKinds
) -> None:
    response = post(client, fixture_bytes("outbound-message-contact.xml"))
    assert response.status_code == 200
    assert response.data == ACK
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    rows = inbox_rows(rt)
    assert [(r.kind, r.object, r.record_id, r.modstamp, r.status, r.source) for r in rows] == [
        (
            "fake_contacts",
            "Contact",
            "0035e00000AbCdEAAV",
            "2026-03-02T14:05:11.000Z",
            "pending",
            "salesforce-outbound",
        ),
        (
            "fake_contacts",
            "Contact",
            "0035e00000AbCdFAAV",
            "2026-03-02T14:05:12.000Z",
            "pending",
            "salesforce-outbound",
        ),
    ]
    assert queued(rt) == [("fake_contacts",)]


def test_match_message_routes_by_object(client: FlaskClient, rt: Runtime) -> None:
    response = post(client, fixture_bytes("outbound-message-match.xml"))
    assert response.data == ACK
    assert [(r.kind, r.record_id) for r in inbox_rows(rt)] == [
        ("fake_matches", "a0B5e00000XyZ12EAF")
    ]


def test_duplicate_delivery_is_acknowledged_and_processed_once(
    client: FlaskClient, rt: Runtime, fake_kinds: FakeKinds
) -> None:
    body = fixture_bytes("outbound-message-contact.xml")
    assert post(client, body).data == ACK
    assert post(client, body).data == ACK  # Salesforce delivered it twice
    assert len(inbox_rows(rt)) == 2
    rt.worker.drain("fake_contacts")
    assert post(client, body).data == ACK  # and once more after it was processed
    rt.worker.drain("fake_contacts")
    assert [c.ids for c in fake_kinds.contacts.calls] == [
        ("0035e00000AbCdEAAV", "0035e00000AbCdFAAV")
    ]
    assert {r.status for r in inbox_rows(rt)} == {"done"}


def test_same_change_from_another_message_is_a_duplicate(client: FlaskClient, rt: Runtime) -> None:
    record = sf_id("003", 1)
    first = outbound_message([(sf_id("04l", 1), "Contact", record, "2026-03-02T14:05:11.000Z")])
    same_change = outbound_message(
        [(sf_id("04l", 2), "Contact", record, "2026-03-02T14:05:11.000Z")]
    )
    later_change = outbound_message(
        [(sf_id("04l", 3), "Contact", record, "2026-03-02T15:00:00.000Z")]
    )
    for body in (first, same_change, later_change):
        assert post(client, body).data == ACK
    assert [r.modstamp for r in inbox_rows(rt)] == [
        "2026-03-02T14:05:11.000Z",
        "2026-03-02T15:00:00.000Z",
    ]


def test_unknown_org_is_403_and_nothing_stored(client: FlaskClient, rt: Runtime) -> None:
    body = fixture_bytes("outbound-message-contact.xml").replace(
        b"00D5e000000KQ2eEAG", b"00D5e000000ZZZZEAG"
    )
    assert_fault(post(client, body), 403, "OrganizationId")
    assert inbox_rows(rt) == []
    assert queued(rt) == []


def test_org_configured_in_15_character_form(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    sections = section_overrides(tmp_path)
    sections["salesforce"]["org_ids"] = ["00D5e000000KQ2e"]
    app = create_app(sections)
    try:
        response = post(app.test_client(), fixture_bytes("outbound-message-contact.xml"))
        assert response.data == ACK
    finally:
        app.extensions["mentorsync"].db.dispose()


def test_unroutable_object_refuses_the_whole_message(client: FlaskClient, rt: Runtime) -> None:
    body = outbound_message(
        [
            (sf_id("04l", 1), "Contact", sf_id("003", 1), None),
            (sf_id("04l", 2), "Account", sf_id("001", 1), None),
        ]
    )
    assert_fault(post(client, body), 400, "Notification 2: no sync kind handles object Account")
    assert inbox_rows(rt) == []


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&xxe;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&lol9;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>"""

CONTACT = fixture_bytes("outbound-message-contact.xml")
# A DOCTYPE is refused where it starts: this one's internal subset is not even well-formed.
DOCTYPE_SUBSET_UNREAD = CONTACT.replace(
    b"?>", b'?>\n<!DOCTYPE Envelope [ <!ENTITY half "unterminated >', 1
)
# Comments and processing instructions may come first in the prolog.
DOCTYPE_AFTER_MISC = CONTACT.replace(b"?>", b"?>\n<!-- x --><?pi y?>\n<!DOCTYPE Envelope>", 1)
# Without a DTD no entity but the five predefined ones exists: nothing to expand.
UNDECLARED_ENTITY = BILLION_LAUGHS.split(b"]>\n", 1)[1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (XXE, "forbidden XML construct (DTDForbidden)"),
        (BILLION_LAUGHS, "forbidden XML construct (DTDForbidden)"),
        (BILLION_LAUGHS.decode().encode("utf-16"), "forbidden XML construct (DTDForbidden)"),
        (DOCTYPE_SUBSET_UNREAD, "forbidden XML construct (DTDForbidden)"),
        (DOCTYPE_AFTER_MISC, "forbidden XML construct (DTDForbidden)"),
        (UNDECLARED_ENTITY, "malformed XML (line 3, column 16)"),
        (CONTACT.replace(b"<soapenv:Body>", b"<soapenv:Body><!DOCTYPE x>"), "malformed XML"),
        (CONTACT[:-40], "malformed XML"),
        (b"", "empty body"),
        (b"<notifications/>", "not a SOAP 1.1 Envelope"),
        (
            b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>',
            "Envelope has no Body",
        ),
        (CONTACT.replace(b"<Id>04l5e00000Gx7R0AAJ</Id>", b""), "Notification 2: Id is missing"),
        (
            CONTACT.replace(b"<sf:Id>0035e00000AbCdEAAV</sf:Id>", b""),
            "Notification 1: sObject Id is missing",
        ),
        (
            CONTACT.replace(b'xsi:type="sf:Contact"', b"", 1),
            "Notification 1: sObject has no valid xsi:type",
        ),
        (
            CONTACT.replace(b"2026-03-02T14:05:11.000Z", b"yesterday"),
            "SystemModstamp is not a dateTime",
        ),
        (
            CONTACT.replace(b"<OrganizationId>00D5e000000KQ2eEAG</OrganizationId>", b""),
            "OrganizationId is missing",
        ),
        (
            CONTACT.replace(
                b"2026-03-02T14:05:11", "\u0662\u0660\u0662\u0666-03-02T14:05:11".encode()
            ),
            "SystemModstamp is not a dateTime",
        ),
        (CONTACT.replace(b'encoding="UTF-8"', b'encoding="HTF-8"'), "bad encoding"),
        (CONTACT.replace(b'encoding="UTF-8"', b'encoding="UTF-16"'), "malformed XML"),
    ],
    ids=[
        "xxe",
        "billion-laughs",
        "billion-laughs-utf16",
        "doctype-refused-before-its-subset",
        "doctype-after-comment-and-pi",
        "entity-without-dtd",
        "doctype-inside-the-body",
        "truncated",
        "empty",
        "not-soap",
        "no-body",
        "no-notification-id",
        "no-record-id",
        "no-type",
        "bad-modstamp",
        "non-ascii-digits-in-modstamp",
        "no-org",
        "unknown-encoding",
        "lying-encoding",
    ],
)
def test_bad_bodies_are_400_faults_and_the_service_stays_up(
    client: FlaskClient, rt: Runtime, body: bytes, reason: str
) -> None:
    assert_fault(post(client, body), 400, reason)
    assert inbox_rows(rt) == []
    assert post(client, CONTACT).data == ACK  # still serving


def test_fault_text_never_echoes_entity_content(client: FlaskClient) -> None:
    response = post(client, XXE)
    assert b"root:" not in response.data


def test_oversized_body_is_413(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    app = create_app(section_overrides(tmp_path, max_body_bytes=2048))
    client = app.test_client()
    try:
        padding = b"<!-- " + b"x" * 4096 + b" -->"
        response = post(client, CONTACT.replace(b"<soapenv:Body>", b"<soapenv:Body>" + padding))
        assert_fault(response, 413, "service.max_body_bytes (2048)")
        # The same without Content-Length (chunked, as gunicorn passes it on): the limit
        # holds while reading.
        environ = EnvironBuilder(
            path=URL,
            method="POST",
            content_type=XML,
            input_stream=io.BytesIO(
                CONTACT.replace(b"<soapenv:Body>", b"<soapenv:Body>" + padding)
            ),
        ).get_environ()
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True
        _, status, _ = run_wsgi_app(app, environ, buffered=True)
        assert status.startswith("413")
        with app.extensions["mentorsync"].db.session() as session:
            assert session.scalar(select(func.count()).select_from(InboxEvent)) == 0
        assert post(client, CONTACT).data == ACK
    finally:
        app.extensions["mentorsync"].db.dispose()


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"]
)
def test_wrong_media_type_is_415(client: FlaskClient, rt: Runtime, content_type: str) -> None:
    assert_fault(post(client, CONTACT, content_type=content_type), 415, "text/xml")
    assert inbox_rows(rt) == []


def test_get_is_405_fault_not_500(client: FlaskClient) -> None:
    response = client.get(URL)
    assert_fault(response, 405, "method")


def test_database_failure_is_503_without_ack(client: FlaskClient, rt: Runtime) -> None:
    def fail_commit(conn) -> None:  # type: ignore[no-untyped-def]
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(rt.db.engine, "commit", fail_commit)
    try:
        response = post(client, CONTACT)
    finally:
        event.remove(rt.db.engine, "commit", fail_commit)
    assert_fault(response, 503, "retry later", code="soapenv:Server")
    assert response.headers["Retry-After"] == "30"
    assert inbox_rows(rt) == []
    assert queued(rt) == []
    # Salesforce retries; now the database is back.
    assert post(client, CONTACT).data == ACK
    assert len(inbox_rows(rt)) == 2


def test_a_delivery_waiting_too_long_behind_a_hung_write_is_503_and_not_stored(
    client: FlaskClient,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The database hangs on another request's write: this delivery waits in line behind it.
    release, other = hang_a_write(monkeypatch, rt.db)
    monkeypatch.setattr(inbox_writer, "WAIT_SECONDS", 0.5)
    response = post(client, CONTACT)
    assert_fault(response, 503, "retry later", code="soapenv:Server")
    assert response.headers["Retry-After"] == "30"
    assert "inbox write failed, outbound message not acknowledged: StoreTimeout" in caplog.text
    assert "unhandled" not in caplog.text
    assert queued(rt) == []
    # The database comes back: the other write commits, and nothing of this delivery...
    release.set()
    other.join(10)
    assert [r.record_id for r in inbox_rows(rt)] == [HUNG_RECORD]
    # ...so Salesforce's redelivery is stored, once.
    assert post(client, CONTACT).data == ACK
    assert [r.record_id for r in inbox_rows(rt)] == [
        HUNG_RECORD,
        "0035e00000AbCdEAAV",
        "0035e00000AbCdFAAV",
    ]


def test_a_failure_on_one_notification_stores_none_of_the_message(
    client: FlaskClient, rt: Runtime
) -> None:
    """All notifications of a message in one transaction: the second one's failure leaves the
    first unstored too (else the retried message would be half new, half duplicate)."""
    second = "0035e00000AbCdFAAV"
    with rt.db.engine.begin() as conn:
        # The database itself refuses the second notification's row, as a full disk would.
        conn.execute(
            text(
                "CREATE TRIGGER fail_second BEFORE INSERT ON inbox "
                f"WHEN NEW.record_id = '{second}' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        )
    response = post(client, CONTACT)
    with rt.db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER fail_second"))
    assert_fault(response, 503, "retry later", code="soapenv:Server")
    assert inbox_rows(rt) == []
    assert queued(rt) == []
    assert post(client, CONTACT).data == ACK
    assert [r.record_id for r in inbox_rows(rt)] == ["0035e00000AbCdEAAV", second]


def _app(tmp_path: Path, **service: object) -> Flask:
    return create_app(section_overrides(tmp_path, **service))


def test_secret_path_segment(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    app = _app(tmp_path, outbound_path_secret="s3cret-Path")
    client = app.test_client()
    try:
        assert_fault(post(client, CONTACT), 404, "not found")
        assert_fault(post(client, CONTACT, url=URL + "/wrong"), 404, "not found")
        assert post(client, CONTACT, url=URL + "/s3cret-Path").data == ACK
    finally:
        app.extensions["mentorsync"].db.dispose()


def test_no_secret_configured_means_no_secret_path(client: FlaskClient) -> None:
    assert_fault(post(client, CONTACT, url=URL + "/anything"), 404, "not found")


def test_basic_auth(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    app = _app(tmp_path, basic_auth_user="salesforce", basic_auth_password="pa55word")
    client = app.test_client()

    def auth(user: str, password: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    try:
        response = post(client, CONTACT)
        assert_fault(response, 401, "authentication required")
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert_fault(
            post(client, CONTACT, headers=auth("salesforce", "wrong")), 401, "authentication"
        )
        assert post(client, CONTACT, headers=auth("salesforce", "pa55word")).data == ACK
    finally:
        app.extensions["mentorsync"].db.dispose()


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_a_kind_with_a_configured_source_object_gets_its_events(
    tmp_path: Path, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Person Accounts: the field map's source object is Account, and its messages route."""
    asked: list[object] = []

    def objects_for(settings: object) -> tuple[str, ...]:
        asked.append(settings)
        return ("Account",)

    monkeypatch.setattr(fake_kinds.contacts, "objects_for", objects_for, raising=False)
    app = _app(tmp_path)
    try:
        client = app.test_client()
        account = outbound_message([(sf_id("04l", 1), "Account", sf_id("001", 1), None)])
        assert post(client, account).data == ACK
        rt = app.extensions["mentorsync"]
        assert [(r.kind, r.object) for r in inbox_rows(rt)] == [("fake_contacts", "Account")]
        # Contact is no longer what that kind reads: refused, not routed by the default.
        assert_fault(post(client, CONTACT), 400, "no sync kind handles object Contact")
        assert asked == [rt.settings]  # asked once, when the app was built
    finally:
        app.extensions["mentorsync"].db.dispose()


def test_a_bad_configured_source_object_stops_the_start(
    tmp_path: Path, fake_kinds: FakeKinds, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.errors import ConfigError

    def objects_for(settings: object) -> tuple[str, ...]:
        raise ConfigError("members.field_map", "[source] object: not a valid Salesforce API name")

    monkeypatch.setattr(fake_kinds.contacts, "objects_for", objects_for, raising=False)
    with pytest.raises(ConfigError, match=r"members\.field_map"):
        _app(tmp_path)


def test_our_own_bug_is_a_500_fault_logged_without_its_message(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    email = "@".join(["jane.doe", "example.org"])  # data, not a source line of the traceback

    def broken(db: object, notices: object) -> None:
        raise RuntimeError(email)

    monkeypatch.setattr(outbound.inbox, "store", broken)
    response = post(client, CONTACT, url=URL)
    assert_fault(response, 500, "internal error", code="soapenv:Server")
    assert "unhandled RuntimeError on POST /hooks/salesforce/outbound" in caplog.text
    assert "in broken" in caplog.text  # the frames say where
    assert email not in caplog.text


def test_one_object_wakes_every_kind_that_declares_it(
    client: FlaskClient, rt: Runtime, fake_kinds: FakeKinds
) -> None:
    # A Contact change matters to members and to pairs: one row per kind, each deduplicated.
    connector.registry.register(FakeKind("fake_pairs", ("Mentorship_Match__c", "Contact")))
    contact = sf_id("003", 7)
    body = outbound_message([(sf_id("04l", 1), "Contact", contact, "2026-11-01T09:00:00.000Z")])

    assert post(client, body).status_code == 200
    assert post(client, body).status_code == 200  # Salesforce delivers it again

    rows = inbox_rows(rt)
    assert [(r.kind, r.dedup_key, r.record_id, r.modstamp) for r in rows] == [
        ("fake_contacts", f"sf-outbound:{sf_id('04l', 1)}", contact, "2026-11-01T09:00:00.000Z"),
        ("fake_pairs", f"sf-outbound:{sf_id('04l', 1)}#fake_pairs", contact, None),
    ]
    assert sorted(args[0] for args in queued(rt)) == ["fake_contacts", "fake_pairs"]
