"""Salesforce Outbound Messages: parse the SOAP 1.1 envelope safely, answer Ack or a fault.

An Outbound Message carries up to 100 ``Notification`` elements, each with its delivery Id
(``04l...``, the dedup key) and an ``sObject`` whose ``xsi:type`` names the object (``sf:Contact``)
and whose first field is the record ``sf:Id``. Salesforce retries anything but the exact
``Ack`` for 24 hours, so the endpoint acknowledges only after the notifications are stored.

A body with any ``<!DOCTYPE`` is refused before anything in it is read further (see
:func:`_document`): without a DTD, XML has no entities to expand ("billion laughs") and nothing
external to fetch (XXE), so the document is then built by ElementTree's C parser.
"""

from __future__ import annotations

import hmac
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.etree.ElementTree import Element
from xml.parsers import expat
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException, DTDForbidden
from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from connector.config import ServiceSettings
from connector.state import inbox
from webhooks.runtime import kinds_for, read_body, routed, runtime

log = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

# The exact acknowledgement Salesforce expects (fixtures/salesforce/outbound-message-ack.xml).
ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
    b" <soapenv:Body>\n"
    b'  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
    b"   <Ack>true</Ack>\n"
    b"  </notificationsResponse>\n"
    b" </soapenv:Body>\n"
    b"</soapenv:Envelope>\n"
)
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
# Media types accepted for the request body (Salesforce sends text/xml; charset=utf-8).
ACCEPTED_TYPES = frozenset({"text/xml", "application/xml", "application/soap+xml"})

# Used with fullmatch(): "$" would let a trailing newline through, and \d any Unicode digit.
_SF_ID = re.compile(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?")
_OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_MODSTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?")


class OutboundError(ValueError):
    """The message is not a well-formed Outbound Message; ``str()`` says what and where."""


@dataclass(frozen=True)
class Notification:
    """One notification: delivery Id, object name, record Id, and SystemModstamp if sent."""

    notification_id: str
    object: str
    record_id: str
    modstamp: str | None


@dataclass(frozen=True)
class OutboundMessage:
    """A parsed Outbound Message."""

    organization_id: str
    action_id: str
    notifications: tuple[Notification, ...]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(parent: Element, name: str) -> Element | None:
    """The first direct child with local name ``name``, whatever its namespace."""
    for child in parent:
        if isinstance(child.tag, str) and _local(child.tag) == name:
            return child
    return None


def _text(parent: Element, name: str) -> str:
    found = _child(parent, name)
    return (found.text or "").strip() if found is not None else ""


class _PrologEnded(Exception):
    """The root element starts: the prolog, where a DOCTYPE would be, had none."""


def _refuse_doctype(name: str, system_id: str | None, public_id: str | None, _subset: bool) -> None:
    raise DTDForbidden(name, system_id, public_id)


def _stop_at_root(_name: str, _attributes: object) -> None:
    raise _PrologEnded


def _document(body: bytes) -> Element:
    """The root element of ``body``; :class:`~defusedxml.DTDForbidden` if it has a DOCTYPE.

    The DOCTYPE is refused as defusedxml refuses it (``forbid_dtd``): expat's handler for the
    start of one raises, before its internal subset (the entity declarations) is read. Here that
    first pass reads only the prolog, up to the root element; a DOCTYPE can be nowhere else.
    Without one, the only entities are XML's five predefined ones (any other is an "undefined
    entity" error) and there is nothing external to resolve, so ElementTree's C parser builds
    the tree. defusedxml builds it with ElementTree's pure-Python parser, with which
    :func:`parse` of a two-notification message took 0.10-0.19 ms of CPU, against 0.06-0.12 ms
    now (``bench/webhook_costs.py``, 9 and 15 runs).

    Both passes are expat on the same bytes, so they read the same encoding and the same prolog.
    Raises ``ExpatError``/``ParseError`` for malformed XML and ``LookupError``/``ValueError``
    for an unknown or lying encoding.
    """
    prolog = expat.ParserCreate(namespace_separator="}")
    prolog.StartDoctypeDeclHandler = _refuse_doctype
    prolog.StartElementHandler = _stop_at_root
    try:
        prolog.Parse(body, True)
    except _PrologEnded:
        pass
    return ET.fromstring(body)  # noqa: S314  (no DTD, checked above: nothing to expand or fetch)


def parse(body: bytes) -> OutboundMessage:
    """Parse an Outbound Message body; raise :class:`OutboundError` naming the problem.

    Checks the structure only (envelope, notifications, Ids); the organization and object
    checks need settings and are the caller's.
    """
    if not body.strip():
        raise OutboundError("empty body")
    try:
        root = _document(body)
    except DefusedXmlException as exc:
        raise OutboundError(f"forbidden XML construct ({type(exc).__name__})") from None
    except expat.ExpatError as exc:
        raise OutboundError(f"malformed XML (line {exc.lineno}, column {exc.offset})") from None
    except ET.ParseError as exc:
        raise OutboundError(
            f"malformed XML (line {exc.position[0]}, column {exc.position[1]})"
        ) from None
    except (LookupError, ValueError) as exc:
        # An unknown or lying encoding in the XML declaration ("HTF-8", UTF-16 that is not).
        raise OutboundError(f"malformed XML ({type(exc).__name__}: bad encoding)") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise OutboundError("root element is not a SOAP 1.1 Envelope")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None:
        raise OutboundError("Envelope has no Body")
    notifications = soap_body.find(f"{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise OutboundError(f"Body has no notifications element in namespace {OUTBOUND_NS}")
    org_id = _text(notifications, "OrganizationId")
    if not _SF_ID.fullmatch(org_id):
        raise OutboundError("notifications/OrganizationId is missing or not a Salesforce Id")
    items: list[Notification] = []
    for index, element in enumerate(notifications.findall(f"{{{OUTBOUND_NS}}}Notification"), 1):
        items.append(_notification(element, index))
    if not items:
        raise OutboundError("notifications has no Notification element")
    return OutboundMessage(org_id, _text(notifications, "ActionId"), tuple(items))


def _notification(element: Element, index: int) -> Notification:
    where = f"Notification {index}"
    notification_id = _text(element, "Id")
    if not _SF_ID.fullmatch(notification_id):
        raise OutboundError(f"{where}: Id is missing or not a Salesforce Id")
    sobject = _child(element, "sObject")
    if sobject is None:
        raise OutboundError(f"{where}: no sObject")
    xsi_type = sobject.get(XSI_TYPE, "")
    object_name = xsi_type.rsplit(":", 1)[-1]
    if not _OBJECT_NAME.fullmatch(object_name):
        raise OutboundError(f"{where}: sObject has no valid xsi:type (sf:ObjectName)")
    record_id = _text(sobject, "Id")
    if not _SF_ID.fullmatch(record_id):
        raise OutboundError(f"{where}: sObject Id is missing or not a Salesforce Id")
    modstamp = _text(sobject, "SystemModstamp") or None
    if modstamp is not None and not _MODSTAMP.fullmatch(modstamp):
        raise OutboundError(f"{where}: SystemModstamp is not a dateTime")
    return Notification(notification_id, object_name, record_id, modstamp)


def org_matches(org_id: str, allowed: list[str]) -> bool:
    """Whether ``org_id`` is one of ``allowed``, comparing the case-sensitive 15-char form.

    The 18-character form adds a case-insensitive checksum, so ``00D5e000000KQ2e`` and
    ``00D5e000000KQ2eEAG`` are the same organization.
    """
    return any(org_id[:15] == candidate[:15] for candidate in allowed)


def fault(message: str, *, server: bool = False) -> bytes:
    """A SOAP 1.1 fault body: ``soapenv:Client`` for the sender's mistakes, else ``Server``."""
    code = "soapenv:Server" if server else "soapenv:Client"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}">\n'
        " <soapenv:Body>\n"
        "  <soapenv:Fault>\n"
        f"   <faultcode>{code}</faultcode>\n"
        f"   <faultstring>{escape(message)}</faultstring>\n"
        "  </soapenv:Fault>\n"
        " </soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    ).encode()


# --- the endpoint -------------------------------------------------------------------------------

PATH_PREFIX = "/hooks/salesforce/outbound"
blueprint = Blueprint("salesforce_outbound", __name__)


def _soap(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers=headers, content_type=SOAP_CONTENT_TYPE)


def _refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    log.info("outbound message refused: %s %s", status, reason)
    return _soap(fault(reason, server=status >= 500), status, headers)


def _path_secret_ok(given: str | None, settings: ServiceSettings) -> bool:
    expected = settings.outbound_path_secret.get()
    if not expected:
        return given is None
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _basic_auth_ok(settings: ServiceSettings) -> bool:
    if not settings.basic_auth_user:
        return True
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    # Both compared, always, in constant time.
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.basic_auth_user.encode())
    password_ok = hmac.compare_digest(
        (auth.password or "").encode(), settings.basic_auth_password.get().encode()
    )
    return user_ok and password_ok


@blueprint.post(PATH_PREFIX, defaults={"secret": None})
@blueprint.post(PATH_PREFIX + "/<secret>")
def receive(secret: str | None) -> Response:
    """Store an Outbound Message's notifications in the inbox, then acknowledge it."""
    rt = runtime()
    svc = rt.settings.service
    if not _path_secret_ok(secret, svc):
        # As if the URL did not exist: no hint that a secret path is in use.
        return _refuse(404, "not found")
    if not _basic_auth_ok(svc):
        return _refuse(
            401, "authentication required", {"WWW-Authenticate": 'Basic realm="mentorsync"'}
        )
    if request.mimetype not in ACCEPTED_TYPES:
        return _refuse(415, "expected Content-Type text/xml (SOAP 1.1)")
    body = read_body()  # over max_body_bytes: 413 from Werkzeug
    try:
        message = parse(body)
    except OutboundError as exc:
        return _refuse(400, str(exc))
    if not org_matches(message.organization_id, rt.settings.salesforce.org_ids):
        return _refuse(403, "OrganizationId is not one of salesforce.org_ids")
    notices = []
    for index, item in enumerate(message.notifications, 1):
        woken = kinds_for(item.object)
        if not woken:
            return _refuse(400, f"Notification {index}: no sync kind handles object {item.object}")
        for key, kind, first in routed(f"sf-outbound:{item.notification_id}", woken):
            notices.append(
                inbox.Notice(
                    dedup_key=key,
                    source="salesforce-outbound",
                    kind=kind,
                    object=item.object,
                    record_id=item.record_id,
                    modstamp=item.modstamp if first else None,
                )
            )
    try:
        stored = inbox.store(rt.db, notices)
    except (SQLAlchemyError, inbox.StoreTimeout) as exc:
        # Not acknowledged, so Salesforce delivers it again later.
        log.error("inbox write failed, outbound message not acknowledged: %s", type(exc).__name__)
        return _refuse(
            503, "cannot store the notifications now; retry later", {"Retry-After": "30"}
        )
    rt.worker.wake(stored.kinds)
    # A notification that wakes several sync kinds is one inbox row per kind.
    log.info(
        "outbound message %s: %d notifications, %d inbox rows stored, %d duplicates",
        message.action_id or "-",
        len(message.notifications),
        stored.stored,
        stored.duplicates,
    )
    return _soap(ACK, 200)
