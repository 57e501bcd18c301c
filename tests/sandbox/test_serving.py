"""Both sandboxes keep HTTP/1.1 connections alive, and stop() still leaves no thread behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connector.clients.moodle.client import MoodleClient
from connector.clients.salesforce.client import SalesforceClient
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.testing import settings_for

REST = "/webservice/rest/server.php"


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[SalesforceSandbox, MoodleSandbox]]:
    sf, moodle = SalesforceSandbox(), MoodleSandbox()
    sf.start()
    moodle.start()
    try:
        yield sf, moodle
    finally:
        moodle.stop()
        sf.stop()


def test_the_clients_reuse_one_connection(
    both: tuple[SalesforceSandbox, MoodleSandbox], tmp_path: Path
) -> None:
    sf, moodle = both
    settings = settings_for(sf, moodle, tmp_path)
    sf_session, moodle_session = requests.Session(), requests.Session()
    salesforce = SalesforceClient(settings.salesforce, session=sf_session)
    lms = MoodleClient(settings.moodle, session=moodle_session)
    for _ in range(5):
        assert salesforce.describe("Contact")["name"] == "Contact"
        assert lms.site_info()["userid"] == 3
    # One TLS handshake for the login and all five calls; one TCP connection to Moodle.
    assert sf.connections == 1 and moodle.connections == 1
    assert sf.calls["describe"] == 5 and moodle.calls["core_webservice_get_site_info"] == 5
    sf_session.close()
    moodle_session.close()


def test_a_body_the_app_did_not_read_does_not_leak_into_the_next_request(
    both: tuple[SalesforceSandbox, MoodleSandbox],
) -> None:
    _, moodle = both
    with requests.Session() as session:
        # Moodle answers 404 for another path without reading the body, which here looks
        # like a request of its own: read as the next request, it would answer in its place.
        smuggled = b"GET /nowhere.php HTTP/1.1\r\nHost: elsewhere\r\n\r\n"
        lost = session.post(moodle.url + "/nowhere.php", data=smuggled, timeout=10)
        assert lost.status_code == 404 and "close" not in lost.headers.get("Connection", "")
        form = {
            "wstoken": moodle.token,
            "wsfunction": "core_webservice_get_site_info",
            "moodlewsrestformat": "json",
        }
        answer = session.post(moodle.url + REST, data=form, timeout=10)
        assert answer.json()["userid"] == 3
        assert moodle.connections == 1


def test_a_chunked_request_is_answered_and_the_connection_closed(
    both: tuple[SalesforceSandbox, MoodleSandbox],
) -> None:
    _, moodle = both
    form = (
        f"wstoken={moodle.token}&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json"
    )

    def chunks() -> Iterator[bytes]:
        yield form.encode()

    with requests.Session() as session:
        answer = session.post(
            moodle.url + REST,
            data=chunks(),  # a generator: requests sends it chunked
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert answer.json()["userid"] == 3
        assert answer.headers["Connection"] == "close"


@pytest.mark.parametrize("which", ["moodle", "salesforce"])
def test_stop_ends_kept_connections_and_leaves_no_threads(which: str, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    sf, moodle = SalesforceSandbox(), MoodleSandbox()
    sf.start()
    moodle.start()
    settings = settings_for(sf, moodle, tmp_path)
    session = requests.Session()  # left open on purpose: its connection is kept alive
    if which == "moodle":
        MoodleClient(settings.moodle, session=session).site_info()
    else:
        SalesforceClient(settings.salesforce, session=session).describe("Contact")
    moodle.stop()
    sf.stop()
    assert set(threading.enumerate()) - before == set()
    session.close()


def test_a_dropped_connection_is_not_reused(
    both: tuple[SalesforceSandbox, MoodleSandbox], tmp_path: Path
) -> None:
    sf, moodle = both
    settings = settings_for(sf, moodle, tmp_path, salesforce={"retry_attempts": 2})
    session = requests.Session()
    client = SalesforceClient(settings.salesforce, session=session, sleep=lambda seconds: None)
    client.login()
    sf.faults.add("describe", "drop")
    # The first call's connection is dropped; the retry opens a new one and succeeds.
    assert client.describe("Contact")["name"] == "Contact"
    assert sf.calls["describe"] == 2
    assert sf.connections == 2  # the login's connection (dropped) and a new one
    session.close()
