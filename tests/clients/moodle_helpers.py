"""Shared bits for the Moodle client tests: the recorded fixtures and a client that never sleeps."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import responses

from connector.clients.moodle.client import MoodleClient
from connector.config import MoodleSettings, Secret

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "moodle-4.5"
URL = "http://127.0.0.1:8081"
ENDPOINT = URL + "/webservice/rest/server.php"
TOKEN = "tok-5ec7e7-do-not-leak-4b1d"

# The two users of recording 02_core_user_create_users, as a caller would pass them.
MENTEE = {
    "username": "labtest.mentee1",
    "auth": "manual",
    "password": "Lab#Mentee2026",
    "firstname": "Maria",
    "lastname": "Mentee",
    "email": "labtest.mentee1@example.com",
    "idnumber": "003LAB0000MENTEE01",
    "city": "Columbus",
    "country": "US",
    "customfields": [
        {"type": "crmid", "value": "003LAB0000MENTEE01"},
        {"type": "memberstatus", "value": "Active"},
        {"type": "practicesetting", "value": "Community pharmacy"},
        {"type": "region", "value": "Midwest"},
    ],
}
MENTOR = {
    "username": "labtest.mentor1",
    "auth": "manual",
    "password": "Lab#Mentor2026",
    "firstname": "Mark",
    "lastname": "Mentor",
    "email": "labtest.mentor1@example.com",
    "idnumber": "003LAB0000MENTOR01",
    "city": None,  # an optional field not sent: the recording has no city for the mentor
    "customfields": [
        {"type": "crmid", "value": "003LAB0000MENTOR01"},
        {"type": "memberstatus", "value": "Active"},
        {"type": "practicesetting", "value": "Hospital pharmacy"},
        {"type": "region", "value": "Midwest"},
    ],
}


def fixture_body(name: str) -> bytes:
    """The recorded response body of fixture ``name`` (the file name in the recordings)."""
    return (FIXTURES / name).read_bytes()


@cache
def _index() -> dict[str, dict[str, Any]]:
    entries = json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))
    return {entry["file"]: entry for entry in entries}


def recorded_fields(name: str) -> list[tuple[str, str]]:
    """The form fields the recording sent (``body_params`` in index.json), in order."""
    return [(key, value) for key, value in _index()[name]["body_params"]]


def recorded_function(name: str) -> str:
    """The wsfunction the recording called."""
    return str(_index()[name]["wsfunction"])


def make_client(**overrides: Any) -> tuple[MoodleClient, list[float]]:
    """A client for ``URL`` with a fake sleep; returns it and the list of waits it asked for."""
    settings = MoodleSettings(url=overrides.pop("url", URL), token=Secret(TOKEN), **overrides)
    client = MoodleClient(settings)
    waits: list[float] = []
    client.sleep = waits.append
    return client, waits


def add_fixture(
    rsps: responses.RequestsMock, name: str, *, status: int = 200, url: str = ENDPOINT
) -> None:
    """Answer the next POST with the recorded body of ``name``."""
    content_type = "application/xml; charset=utf-8" if name.endswith(".xml") else "application/json"
    if name.endswith(".html"):
        content_type = "text/html; charset=UTF-8"
    rsps.add(responses.POST, url, body=fixture_body(name), status=status, content_type=content_type)


def sent_fields(call_or_request: Any) -> list[tuple[str, str]]:
    """The form fields of a recorded ``responses`` call (or of a prepared request), in order."""
    body = getattr(call_or_request, "request", call_or_request).body
    if isinstance(body, bytes):
        body = body.decode()
    return parse_qsl(body, keep_blank_values=True, strict_parsing=True)


def protocol_fields(wsfunction: str) -> list[tuple[str, str]]:
    """The three fields every call starts with."""
    return [("wstoken", TOKEN), ("wsfunction", wsfunction), ("moodlewsrestformat", "json")]
