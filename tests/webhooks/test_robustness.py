"""Whatever a sender sends, the answer is a 4xx (or the Ack), never a 500."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.webhooks.fakes import MOODLE_KEY, SF_KEY, fixture_bytes
from webhooks.signing import sign

CONTACT = fixture_bytes("outbound-message-contact.xml")


def mutations(seed: int, count: int) -> list[bytes]:
    """Truncations, byte flips, insertions and deletions of a real Outbound Message."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        body = bytearray(CONTACT)
        for _ in range(rng.randint(1, 6)):
            if not body:
                break
            where = rng.randrange(len(body))
            action = rng.choice(("flip", "cut", "insert", "truncate"))
            if action == "flip":
                body[where] = rng.randrange(256)
            elif action == "cut":
                del body[where : where + rng.randint(1, 40)]
            elif action == "insert":
                body[where:where] = rng.choice([b"<", b">", b"&", b"<!DOCTYPE x>", b"\x00", b"]]>"])
            else:
                del body[where:]
        out.append(bytes(body))
    return out


def test_mutated_outbound_messages_never_500(client: FlaskClient) -> None:
    statuses = set()
    for body in mutations(seed=7, count=300):
        response = client.post("/hooks/salesforce/outbound", data=body, content_type="text/xml")
        assert response.status_code < 500, body
        statuses.add(response.status_code)
    assert 400 in statuses


# Stands for a number of more than 4,300 digits, which json.dumps cannot write (and int()
# cannot read: Python's integer-string limit); put into the body text by hand.
HUGE = "__huge_number__"
HUGE_DIGITS = "9" * 5000


def _expected_status(app: Flask, url: str, data: object) -> tuple[int, str]:
    """The exact answer the endpoint owes a well-signed body: its own parser is the oracle."""
    from webhooks import events
    from webhooks.runtime import kind_for

    with app.app_context():
        return _expected(events, kind_for, url, data)


def _expected(events: Any, kind_for: Any, url: str, data: object) -> tuple[int, str]:
    try:
        if url.endswith("salesforce/events"):
            obj, _ = events.parse_salesforce_event(data)
            routed = kind_for(obj) is not None
        else:
            routed = all(events.moodle_kinds(name) for name, _ in events.parse_moodle_events(data))
    except events.PayloadError:
        return 400, "bad_payload"
    return (202, "") if routed else (422, "unroutable")


def _signed(client: FlaskClient, url: str, key: bytes, body: bytes, msg_id: str) -> object:
    import time

    ts = int(time.time())
    return client.post(
        url,
        data=body,
        content_type="application/json",
        headers={
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(key, msg_id, ts, body),
        },
    )


def test_garbage_signed_json_gets_the_exact_status(app: Flask, client: FlaskClient) -> None:
    rng = random.Random(11)
    values = [
        None, True, 0, -1, 2**70, 2**63, 2**63 - 1, 1.5, "", "x" * 300, "1" * 30, [], {},
        [None], {"a": []}, "0035e00000AbCdEAAV", "3", "\\core\\event\\user_updated", HUGE,
    ]
    fields = [
        "object", "ids", "changeType", "eventname", "userid", "relateduserid", "courseid",
        "contextinstanceid", "timecreated",
    ]
    # Half the bodies start from a valid event (routed or not) and have some fields spoiled,
    # so the fuzz reaches every answer, not only refusals.
    valid: list[dict[str, object]] = [
        {"object": "Contact", "ids": ["0035e00000AbCdEAAV"], "changeType": "UPDATE"},
        {"object": "Nothing__c", "ids": ["0035e00000AbCdEAAV"]},
        {"eventname": "\\core\\event\\user_updated", "userid": 3, "courseid": "4"},
    ]
    seen: dict[int, int] = {}
    for n in range(300):
        if rng.random() < 0.5:
            payload = dict(rng.choice(valid))
            for key in rng.sample(fields, rng.randint(0, 2)):
                payload[key] = rng.choice(values)
        else:
            payload = {key: rng.choice(values) for key in rng.sample(fields, rng.randint(0, 6))}
        data = rng.choice([payload, [payload], payload.get("ids")])
        text = json.dumps(data)
        huge = HUGE in text
        body = text.replace(f'"{HUGE}"', HUGE_DIGITS).encode()
        for url, key in (
            ("/hooks/salesforce/events", SF_KEY),
            ("/hooks/moodle/events", MOODLE_KEY),
        ):
            response = _signed(client, url, key, body, f"msg_{n}_{url[7:9]}")
            status, error = (400, "bad_json") if huge else _expected_status(app, url, data)
            assert response.status_code == status, (url, body[:200])
            if error:
                assert response.get_json()["error"] == error, (url, body[:200])
            seen[status] = seen.get(status, 0) + 1
    # The fuzz reaches every kind of answer, not only refusals.
    assert {400, 202, 422} <= set(seen), seen


@pytest.mark.parametrize("url", ["/hooks/salesforce/events", "/hooks/moodle/events"])
@pytest.mark.parametrize(
    "body",
    [
        b'{"object": "Contact", "ids": ' + HUGE_DIGITS.encode() + b"}",
        b'{"eventname": "\\\\core\\\\event\\\\user_updated", "userid": '
        + HUGE_DIGITS.encode() + b"}",
        b'[' + HUGE_DIGITS.encode() + b"]",
    ],
)
def test_a_number_of_over_4300_digits_is_400(client: FlaskClient, url: str, body: bytes) -> None:
    key = SF_KEY if "salesforce" in url else MOODLE_KEY
    response = _signed(client, url, key, body, "msg_huge")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "bad_json", "detail": "body holds a number too long to be a value"
    }


@pytest.mark.parametrize(
    ("value", "status"),
    [("9" * 5000, 400), ("9" * 20, 400), (str(2**63), 400), (str(2**63 - 1), 202), ("7", 202)],
)
def test_a_long_digit_string_as_moodle_id_is_400(
    client: FlaskClient, value: str, status: int
) -> None:
    body = json.dumps({"eventname": "\\core\\event\\user_updated", "userid": value}).encode()
    response = _signed(client, "/hooks/moodle/events", MOODLE_KEY, body, f"msg_{len(value)}")
    assert response.status_code == status
    if status == 400:
        assert response.get_json()["detail"] == "event.userid must be a whole number (0 to 2^63-1)"


def test_garbage_signature_headers_never_500(client: FlaskClient) -> None:
    rng = random.Random(3)
    pieces = ["v1,", "v1", ",", " ", "=", "\t", "v2,abc", "v1,AAAA", "é", "%", "\\", "msg_1", "99"]
    for _ in range(300):
        headers = {
            name: "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
            if rng.random() < 0.8
        }
        response = client.post(
            "/hooks/salesforce/events", data=b"{}", content_type="application/json", headers=headers
        )
        assert response.status_code in (400, 401), headers
