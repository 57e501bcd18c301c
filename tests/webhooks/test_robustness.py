"""Whatever a sender sends, the answer is a 4xx (or the Ack), never a 500."""

from __future__ import annotations

import json
import random

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


def test_garbage_signed_json_never_500(client: FlaskClient) -> None:
    rng = random.Random(11)
    values = [
        None,
        True,
        0,
        -1,
        2**70,
        1.5,
        "",
        "x" * 300,
        [],
        {},
        [None],
        {"a": []},
        "0035e00000AbCdEAAV",
    ]
    for _ in range(300):
        payload = {
            key: rng.choice(values)
            for key in rng.sample(
                [
                    "object",
                    "ids",
                    "changeType",
                    "eventname",
                    "userid",
                    "relateduserid",
                    "courseid",
                    "contextinstanceid",
                    "timecreated",
                ],
                rng.randint(0, 6),
            )
        }
        body = json.dumps(rng.choice([payload, [payload], payload.get("ids")])).encode()
        for url, key in (
            ("/hooks/salesforce/events", SF_KEY),
            ("/hooks/moodle/events", MOODLE_KEY),
        ):
            import time

            ts = int(time.time())
            msg_id = f"msg_{rng.randrange(10**9)}"
            response = client.post(
                url,
                data=body,
                content_type="application/json",
                headers={
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(ts),
                    "webhook-signature": sign(key, msg_id, ts, body),
                },
            )
            assert response.status_code < 500, (url, body)


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
