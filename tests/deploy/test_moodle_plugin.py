"""The Moodle plugin ``deploy/moodle/local_mentorsync``: lint, payload, and the webhook taking it.

The plugin's PHP builds its body and headers in ``classes/payload.php`` (plain PHP, no Moodle);
:mod:`tests.deploy.moodle_plugin_payload` mirrors it in Python. Here the PHP class is run with the
PHP CLI and compared byte for byte with the mirror, and the mirror's payloads are posted to the
webhook app, which must store them. ``php -l`` checks every PHP file of the plugin; without PHP
these tests skip, except under ``CI=true``, where PHP is a prerequisite and they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from connector.state.database import InboxEvent
from tests.deploy import moodle_plugin_payload as mirror
from tests.webhooks.conftest import app, client, rt  # noqa: F401
from tests.webhooks.fakes import MOODLE_KEY, MOODLE_SECRET, fake_kinds  # noqa: F401
from webhooks.runtime import Runtime

PLUGIN = Path(__file__).resolve().parents[2] / "deploy" / "moodle" / "local_mentorsync"
PAYLOAD_PHP = PLUGIN / "classes" / "payload.php"
COMPLETION = "\\core\\event\\course_module_completion_updated"
COURSE_COMPLETED = "\\core\\event\\course_completed"
USER_UPDATED = "\\core\\event\\user_updated"
USER_DELETED = "\\core\\event\\user_deleted"
OBSERVED = (COMPLETION, COURSE_COMPLETED, USER_UPDATED, USER_DELETED)
MSG_ID = "msg_0123456789abcdef0123456789abcdef"
# Moodle's event data for a manual completion (get_data(), trimmed): "other" must not be sent.
COMPLETION_DATA: dict[str, object] = {
    "eventname": COMPLETION,
    "component": "core",
    "objectid": 41,
    "contextinstanceid": "4",
    "userid": "7",
    "courseid": "3",
    "relateduserid": 7,
    "other": {"relateduserid": 7, "overrideby": None, "completionstate": 1},
    "timecreated": 1790000000,
}
FIXED_BODY = (
    b'{"eventname":"\\\\core\\\\event\\\\course_module_completion_updated","userid":7,'
    b'"relateduserid":7,"courseid":3,"contextinstanceid":4,"timecreated":1790000000}'
)
# The same vector is asserted by the plugin's own PHPUnit test (tests/payload_test.php).
FIXED_SIGNATURE = "v1,HucVNUJUSn5RtW39aymwo2bbe6zyO7CBSmgw09pgPes="


def php_binary() -> str:
    """The PHP CLI; skip without it, but fail under CI=true (PHP is a CI prerequisite)."""
    php = shutil.which("php")
    if php is None:
        if os.environ.get("CI") == "true":
            pytest.fail("php is not installed, and CI=true requires it (run .ci/install-prereqs)")
        pytest.skip("php is not installed")
    return php


def inbox_rows(rt: Runtime) -> list[tuple[str, str, str, str]]:  # noqa: F811
    with rt.db.session() as session:
        rows = session.scalars(select(InboxEvent).order_by(InboxEvent.id))
        return [(r.kind, r.object, r.record_id, r.source) for r in rows]


def post(client: FlaskClient, body: bytes, headers: dict[str, str]):  # noqa: F811
    # Content-Type goes with the other headers, exactly as the plugin's task sends it.
    return client.post(mirror.MOODLE_EVENTS_PATH, data=body, headers=headers)


# --- php -l ------------------------------------------------------------------------------------


def test_every_php_file_of_the_plugin_lints() -> None:
    php = php_binary()
    files = sorted(PLUGIN.rglob("*.php"))
    assert len(files) >= 15, files  # the plugin's files are really there
    failed = {}
    for path in files:
        done = subprocess.run(
            [php, "-l", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            failed[str(path.relative_to(PLUGIN))] = (done.stdout + done.stderr).strip()
    assert failed == {}


# --- the mirror against the PHP class -----------------------------------------------------------

_RUN_PAYLOAD = """<?php
require $argv[1];
use local_mentorsync\\payload;
$in = json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$body = payload::body(payload::event_from_data($in['data']));
$headers = payload::headers($in['secret'], $in['msgid'], $in['timestamp'], $body);
echo json_encode(['body' => base64_encode($body), 'headers' => $headers]);
"""


def php_build(
    tmp_path: Path, data: dict[str, object], msg_id: str, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` from the plugin's own payload.php, run standalone by the PHP CLI."""
    script = tmp_path / "run_payload.php"
    script.write_text(_RUN_PAYLOAD)
    stdin = json.dumps(
        {"data": data, "secret": MOODLE_SECRET, "msgid": msg_id, "timestamp": timestamp}
    )
    done = subprocess.run(
        [php_binary(), "-d", "display_errors=stderr", str(script), str(PAYLOAD_PHP)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return base64.b64decode(out["body"]), out["headers"]


def test_python_mirror_builds_the_fixed_vector() -> None:
    body, headers = mirror.build(COMPLETION_DATA, MOODLE_SECRET, MSG_ID, 1790000005)
    assert body == FIXED_BODY
    assert headers == {
        "Content-Type": "application/json",
        "webhook-id": MSG_ID,
        "webhook-timestamp": "1790000005",
        "webhook-signature": FIXED_SIGNATURE,
    }


@pytest.mark.parametrize(
    "data",
    [
        COMPLETION_DATA,
        {"eventname": COURSE_COMPLETED, "userid": 0, "relateduserid": "9", "courseid": 2},
        {"eventname": "core\\event\\user_updated", "userid": 5, "relateduserid": 5},
        {
            "eventname": USER_DELETED,
            "userid": 2,
            "relateduserid": 12,
            "other": {"username": "someone", "email": "someone@example.org"},
            "contextinstanceid": "",
        },
    ],
    ids=["completion", "course-completed", "no-leading-backslash", "user-deleted"],
)
def test_php_payload_class_and_mirror_agree_byte_for_byte(
    tmp_path: Path, data: dict[str, object]
) -> None:
    php_body, php_headers = php_build(tmp_path, data, MSG_ID, 1790000005)
    body, headers = mirror.build(data, MOODLE_SECRET, MSG_ID, 1790000005)
    assert php_body == body
    assert list(php_headers.items()) == list(headers.items())  # same names, values and order
    assert b"example.org" not in php_body and b"someone" not in php_body
    assert list(json.loads(php_body)) == list(mirror.FIELDS)


def test_php_payload_class_produces_the_fixed_vector(tmp_path: Path) -> None:
    body, headers = php_build(tmp_path, COMPLETION_DATA, MSG_ID, 1790000005)
    assert body == FIXED_BODY
    assert headers["webhook-signature"] == FIXED_SIGNATURE


# --- the webhook takes what the plugin sends ----------------------------------------------------


def test_php_built_event_is_stored_by_the_webhook(
    tmp_path: Path,
    client: FlaskClient,  # noqa: F811
    rt: Runtime,  # noqa: F811
) -> None:
    body, headers = php_build(tmp_path, COMPLETION_DATA, MSG_ID, int(time.time()))
    response = post(client, body, headers)
    assert response.status_code == 202
    assert response.get_json() == {"stored": 1, "duplicates": 0}
    assert inbox_rows(rt) == [("fake_completions", f"moodle:{COMPLETION}", "7", "moodle")]


@pytest.mark.parametrize(
    ("eventname", "kind", "subject"),
    [
        (COMPLETION, "fake_completions", "7"),
        (COURSE_COMPLETED, "fake_moodle", "7"),
        (USER_UPDATED, "fake_moodle", "7"),
        (USER_DELETED, "fake_moodle", "7"),
    ],
)
def test_every_observed_event_is_routed(
    client: FlaskClient,  # noqa: F811
    rt: Runtime,  # noqa: F811
    eventname: str,
    kind: str,
    subject: str,
) -> None:
    data = {**COMPLETION_DATA, "eventname": eventname}
    body, headers = mirror.build(data, MOODLE_SECRET, MSG_ID, int(time.time()))
    response = post(client, body, headers)
    assert response.status_code == 202
    assert response.get_json() == {"stored": 1, "duplicates": 0}
    assert inbox_rows(rt) == [(kind, f"moodle:{eventname}", subject, "moodle")]


def test_a_retried_delivery_is_a_duplicate(client: FlaskClient, rt: Runtime) -> None:  # noqa: F811
    # Moodle retries a task whose answer got lost: same webhook-id, new timestamp and signature.
    first = mirror.build(COMPLETION_DATA, MOODLE_SECRET, MSG_ID, int(time.time()) - 120)
    again = mirror.build(COMPLETION_DATA, MOODLE_SECRET, MSG_ID, int(time.time()))
    assert first[1]["webhook-signature"] != again[1]["webhook-signature"]
    assert post(client, *first).get_json() == {"stored": 1, "duplicates": 0}
    assert post(client, *again).get_json() == {"stored": 0, "duplicates": 1}
    assert len(inbox_rows(rt)) == 1


def test_a_delivery_signed_with_another_secret_is_refused(
    client: FlaskClient,  # noqa: F811
    rt: Runtime,  # noqa: F811
) -> None:
    other = mirror.secret_for(b"not-the-moodle-key-0123456789abc")
    response = post(client, *mirror.build(COMPLETION_DATA, other, MSG_ID, int(time.time())))
    assert response.status_code == 401
    assert inbox_rows(rt) == []


def test_secret_helper_round_trips() -> None:
    assert mirror.secret_for(MOODLE_KEY) == MOODLE_SECRET


# --- the plugin's files agree with each other ---------------------------------------------------


def _php_sources() -> str:
    return "\n".join(p.read_text() for p in sorted(PLUGIN.rglob("*.php")) if "lang" not in p.parts)


def test_plugin_declares_its_component_observers_function_and_capability() -> None:
    version = (PLUGIN / "version.php").read_text()
    assert "$plugin->component = 'local_mentorsync';" in version
    events = (PLUGIN / "db" / "events.php").read_text()
    observed = re.findall(r"'eventname' => '([^']+)'", events)
    assert sorted(observed) == sorted(OBSERVED)
    services = (PLUGIN / "db" / "services.php").read_text()
    assert "'local_mentorsync_get_completions' => [" in services
    assert "'type' => 'read'" in services
    access = (PLUGIN / "db" / "access.php").read_text()
    assert "'local/mentorsync:readcompletions' => [" in access
    payload = PAYLOAD_PHP.read_text()
    fields = re.search(r"public const FIELDS = \[([^\]]*)\]", payload)
    assert fields is not None
    assert tuple(re.findall(r"'([a-z]+)'", fields.group(1))) == mirror.FIELDS


def test_every_string_the_plugin_uses_is_in_the_language_file() -> None:
    lang = (PLUGIN / "lang" / "en" / "local_mentorsync.php").read_text()
    defined = set(re.findall(r"^\$string\['([^']+)'\]", lang, re.M))
    source = _php_sources()
    used = set(re.findall(r"(?:get_string|lang_string)\('([^']+)', 'local_mentorsync'\)", source))
    used |= set(re.findall(r"moodle_exception\('([^']+)', 'local_mentorsync'", source))
    used |= {"pluginname", "privacy:metadata:mentorsync", "mentorsync:readcompletions"}
    used |= {f"privacy:metadata:mentorsync:{field}" for field in mirror.FIELDS}
    assert used - defined == set()
    assert defined - used == set()  # no stale strings either
