"""POST /hooks/salesforce/events and /hooks/moodle/events: signed JSON into the inbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy.exc
from flask.testing import FlaskClient
from sqlalchemy import event, select

from connector.state import inbox_writer
from connector.state.database import InboxEvent
from tests.webhooks.fakes import (
    HUNG_RECORD,
    MOODLE_KEY,
    SF_KEY,
    FakeKinds,
    hang_a_write,
    queued,
    section_overrides,
    sf_id,
)
from webhooks import create_app
from webhooks.runtime import Runtime
from webhooks.signing import sign

SF_URL = "/hooks/salesforce/events"
MOODLE_URL = "/hooks/moodle/events"
COMPLETION = "\\core\\event\\course_module_completion_updated"


def signed_post(
    client: FlaskClient,
    url: str,
    payload: object,
    *,
    key: bytes = SF_KEY,
    msg_id: str = "msg_1",
    ts: int | None = None,
    signature: str | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
):  # type: ignore[no-untyped-def]
    body = json.dumps(payload).encode() if body is None else body
    ts = int(time.time()) if ts is None else ts
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature or sign(key, msg_id, ts, body),
    }
    return client.post(url, data=body, headers=headers, content_type=content_type)


def rows(rt: Runtime) -> list[InboxEvent]:
    with rt.db.session() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


IDS = [sf_id("003", 1), sf_id("003", 2)]
PAYLOAD = {"object": "Contact", "ids": IDS, "changeType": "UPDATE"}


def test_signed_salesforce_event_is_stored(client: FlaskClient, rt: Runtime) -> None:
    response = signed_post(client, SF_URL, PAYLOAD)
    assert response.status_code == 202
    assert response.get_json() == {"stored": 2, "duplicates": 0}
    assert [(r.kind, r.object, r.record_id, r.source) for r in rows(rt)] == [
        ("fake_contacts", "Contact", IDS[0], "salesforce-events"),
        ("fake_contacts", "Contact", IDS[1], "salesforce-events"),
    ]
    assert queued(rt) == [("fake_contacts",)]


def test_replay_of_the_same_webhook_id_is_a_no_op(client: FlaskClient, rt: Runtime) -> None:
    assert signed_post(client, SF_URL, PAYLOAD).status_code == 202
    replay = signed_post(client, SF_URL, PAYLOAD)
    assert replay.status_code == 202
    assert replay.get_json() == {"stored": 0, "duplicates": 2}
    assert len(rows(rt)) == 2
    # The same ids under a new webhook-id is a new event.
    assert signed_post(client, SF_URL, PAYLOAD, msg_id="msg_2").get_json()["stored"] == 2


def test_replay_outside_the_window_is_refused(client: FlaskClient, rt: Runtime) -> None:
    old = int(time.time()) - 600
    response = signed_post(client, SF_URL, PAYLOAD, ts=old)
    assert response.status_code == 401
    assert "too old" in response.get_json()["detail"]
    assert rows(rt) == []


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"key": MOODLE_KEY}, 401),  # forged: signed with another key
        ({"ts": int(time.time()) + 3600}, 401),  # future-dated
        ({"ts": int(time.time()) - 3600}, 401),  # expired
        ({"signature": "v1,Zm9yZ2Vk"}, 401),
        ({"signature": "garbage"}, 400),
        ({"msg_id": "bad id"}, 400),
    ],
    ids=["forged", "future", "expired", "wrong-digest", "malformed-signature", "malformed-id"],
)
def test_bad_signatures_store_nothing(
    client: FlaskClient, rt: Runtime, kwargs: dict, status: int
) -> None:
    response = signed_post(client, SF_URL, PAYLOAD, **kwargs)
    assert response.status_code == status
    assert response.is_json
    assert rows(rt) == []


def test_missing_headers_are_400(client: FlaskClient, rt: Runtime) -> None:
    response = client.post(SF_URL, json=PAYLOAD)
    assert response.status_code == 400
    assert response.get_json()["detail"] == "missing webhook-id header"
    assert rows(rt) == []


def test_signature_is_checked_before_the_body_is_parsed(client: FlaskClient, rt: Runtime) -> None:
    response = signed_post(client, SF_URL, None, body=b"{not json", signature="v1,Zm9yZ2Vk")
    assert response.status_code == 401
    response = signed_post(client, SF_URL, None, body=b"{not json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_json"


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ([1, 2], "body must be a JSON object"),
        ({"ids": IDS}, "object must be"),
        ({"object": "Contact; DROP", "ids": IDS}, "object must be"),
        ({"object": "Contact", "ids": []}, "ids must be a non-empty list"),
        ({"object": "Contact", "ids": "003"}, "ids must be a non-empty list"),
        ({"object": "Contact", "ids": [IDS[0], "nope"]}, "ids[1] is not"),
        ({"object": "Contact", "ids": IDS, "changeType": 5}, "changeType"),
        ({"object": "Contact", "ids": [IDS[0] + "\n"]}, "ids[0] is not"),
        ({"object": "Contact\n", "ids": IDS}, "object must be"),
    ],
)
def test_bad_salesforce_payloads_are_400(
    client: FlaskClient, rt: Runtime, payload: object, detail: str
) -> None:
    response = signed_post(client, SF_URL, payload)
    assert response.status_code == 400
    assert detail in response.get_json()["detail"]
    assert rows(rt) == []


def test_unroutable_object_is_422(client: FlaskClient, rt: Runtime) -> None:
    response = signed_post(client, SF_URL, {"object": "Account", "ids": [sf_id("001", 1)]})
    assert response.status_code == 422
    assert "Account" in response.get_json()["detail"]
    assert rows(rt) == []


def test_wrong_media_type_is_415(client: FlaskClient, rt: Runtime) -> None:
    response = signed_post(client, SF_URL, PAYLOAD, content_type="text/plain")
    assert response.status_code == 415
    assert rows(rt) == []


def test_disabled_when_no_secret(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    sections = section_overrides(tmp_path, events_secret="", moodle_events_secret="")
    app = create_app(sections)
    try:
        client = app.test_client()
        assert signed_post(client, SF_URL, PAYLOAD).status_code == 404
        assert signed_post(client, MOODLE_URL, {}, key=MOODLE_KEY).status_code == 404
    finally:
        app.extensions["mentorsync"].db.dispose()


def test_database_failure_is_503(client: FlaskClient, rt: Runtime) -> None:
    def fail_commit(conn) -> None:  # type: ignore[no-untyped-def]
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("database is locked"))

    event.listen(rt.db.engine, "commit", fail_commit)
    try:
        response = signed_post(client, SF_URL, PAYLOAD)
    finally:
        event.remove(rt.db.engine, "commit", fail_commit)
    assert response.status_code == 503
    assert rows(rt) == []
    # The sender retries with the same webhook-id: stored now.
    assert signed_post(client, SF_URL, PAYLOAD).get_json() == {"stored": 2, "duplicates": 0}


def test_a_delivery_waiting_too_long_behind_a_hung_write_is_503(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, other = hang_a_write(monkeypatch, rt.db)
    monkeypatch.setattr(inbox_writer, "WAIT_SECONDS", 0.5)
    response = signed_post(client, SF_URL, PAYLOAD)
    release.set()
    other.join(10)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "30")
    assert response.get_json()["error"] == "unavailable"
    assert [r.record_id for r in rows(rt)] == [HUNG_RECORD]  # nothing of the delivery
    # The sender retries with the same webhook-id: stored now.
    assert signed_post(client, SF_URL, PAYLOAD).get_json() == {"stored": 2, "duplicates": 0}


MOODLE_EVENT = {
    "eventname": COMPLETION,
    "userid": 3,
    "relateduserid": 7,
    "courseid": 3,
    "contextinstanceid": 4,
    "timecreated": 1790000000,
}


def test_moodle_event_routes_by_exact_event_name(client: FlaskClient, rt: Runtime) -> None:
    response = signed_post(client, MOODLE_URL, MOODLE_EVENT, key=MOODLE_KEY, msg_id="m1")
    assert response.status_code == 202
    assert [(r.kind, r.object, r.record_id, r.source) for r in rows(rt)] == [
        ("fake_completions", f"moodle:{COMPLETION}", "7", "moodle")
    ]


def test_moodle_events_fall_back_to_the_moodle_object(client: FlaskClient, rt: Runtime) -> None:
    batch = [
        {
            "eventname": "\\core\\event\\course_completed",
            "userid": "2",
            "relateduserid": "9",
            "courseid": "2",
        },
        {"eventname": "core\\event\\user_updated", "userid": 5, "relateduserid": None},
        {**MOODLE_EVENT, "relateduserid": 0},
    ]
    response = signed_post(client, MOODLE_URL, batch, key=MOODLE_KEY, msg_id="m2")
    assert response.get_json() == {"stored": 3, "duplicates": 0}
    assert [(r.kind, r.object, r.record_id) for r in rows(rt)] == [
        ("fake_moodle", "moodle:\\core\\event\\course_completed", "9"),
        ("fake_moodle", "moodle:\\core\\event\\user_updated", "5"),
        ("fake_completions", f"moodle:{COMPLETION}", "3"),
    ]
    replay = signed_post(client, MOODLE_URL, batch, key=MOODLE_KEY, msg_id="m2")
    assert replay.get_json() == {"stored": 0, "duplicates": 3}


def test_moodle_events_need_their_own_key(client: FlaskClient, rt: Runtime) -> None:
    response = signed_post(client, MOODLE_URL, MOODLE_EVENT, key=SF_KEY)
    assert response.status_code == 401
    assert rows(rt) == []


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"userid": 3}, "event.eventname"),
        ({"eventname": "not an event!", "userid": 3}, "event.eventname"),
        ({"eventname": COMPLETION}, "event.userid is required"),
        ({"eventname": COMPLETION, "userid": -1}, "event.userid must be a whole number"),
        ({"eventname": COMPLETION, "userid": True}, "event.userid must be a whole number"),
        ({"eventname": COMPLETION, "userid": 0}, "names no user"),
        ({**MOODLE_EVENT, "courseid": "three"}, "event.courseid"),
        # str.isdigit() holds for these, and int() refuses or misreads them: not a 500.
        ({**MOODLE_EVENT, "userid": "\u00b2"}, "event.userid must be a whole number"),
        ({**MOODLE_EVENT, "courseid": "\u0663"}, "event.courseid must be a whole number"),
        ({"eventname": COMPLETION + "\n", "userid": 3}, "event.eventname"),
        ([MOODLE_EVENT, "x"], "event[1] must be a JSON object"),
        ([], "no event"),
    ],
)
def test_bad_moodle_payloads_are_400(
    client: FlaskClient, rt: Runtime, payload: object, detail: str
) -> None:
    response = signed_post(client, MOODLE_URL, payload, key=MOODLE_KEY)
    assert response.status_code == 400
    assert detail in response.get_json()["detail"]
    assert rows(rt) == []


def test_unroutable_moodle_event_is_422(
    client: FlaskClient, rt: Runtime, fake_kinds: FakeKinds
) -> None:
    fake_kinds.moodle.objects = ()  # nothing claims "moodle" any more
    response = signed_post(
        client,
        MOODLE_URL,
        {"eventname": "\\core\\event\\user_loggedin", "userid": 3},
        key=MOODLE_KEY,
    )
    assert response.status_code == 422
    assert rows(rt) == []


def test_deeply_nested_json_is_400(client: FlaskClient, rt: Runtime) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = signed_post(client, SF_URL, None, body=body)
    assert response.status_code == 400
    assert rows(rt) == []


def test_an_undecodable_secret_is_a_config_error_naming_it(
    tmp_path: Path, fake_kinds: FakeKinds
) -> None:
    from connector.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^service\.events_secret: the part after whsec_"):
        create_app(section_overrides(tmp_path, events_secret="whsec_not*base64"))


def test_several_secrets_during_key_rotation(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    import base64

    old, new = b"o" * 32, b"n" * 32
    secrets = " ".join("whsec_" + base64.b64encode(k).decode() for k in (old, new))
    app = create_app(section_overrides(tmp_path, events_secret=secrets))
    try:
        client = app.test_client()
        assert signed_post(client, SF_URL, PAYLOAD, key=old, msg_id="a").status_code == 202
        assert signed_post(client, SF_URL, PAYLOAD, key=new, msg_id="b").status_code == 202
        assert signed_post(client, SF_URL, PAYLOAD, key=SF_KEY, msg_id="c").status_code == 401
    finally:
        app.extensions["mentorsync"].db.dispose()


def test_oversized_event_is_413_and_nothing_stored(tmp_path: Path, fake_kinds: FakeKinds) -> None:
    app = create_app(section_overrides(tmp_path, max_body_bytes=1024))
    try:
        client = app.test_client()
        payload = {"object": "Contact", "ids": [sf_id("003", n) for n in range(100)]}
        response = signed_post(client, SF_URL, payload)
        assert response.status_code == 413
        assert "service.max_body_bytes (1024)" in response.get_json()["detail"]
        with app.extensions["mentorsync"].db.session() as session:
            assert session.scalars(select(InboxEvent)).all() == []
        assert signed_post(client, SF_URL, PAYLOAD, msg_id="small").status_code == 202
    finally:
        app.extensions["mentorsync"].db.dispose()
