"""Shared bits for the Salesforce client tests: wire samples, settings and a client that never
sleeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from connector.clients.salesforce.client import SalesforceClient
from connector.config import SalesforceSettings, Secret

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
DOMAIN = "acme.my.salesforce.com"
INSTANCE = f"https://{DOMAIN}"
DATA = f"{INSTANCE}/services/data/v59.0"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
LIMIT_HEADER = {"Sforce-Limit-Info": "api-usage=18/15000"}

# Secret values the tests look for in logs and reprs.
SESSION_ID = "00DD0000000K1Ab!AQ4AQ.session-do-not-leak"
PASSWORD = "pw-s3cret-do-not-leak"
SECURITY_TOKEN = "sectok-do-not-leak"
CONSUMER_SECRET = "consumer-secret-do-not-leak"
OAUTH_TOKEN = "00DD0000000K1AbMAK!AQ4AQ.oauth-token-do-not-leak"


def fixture_text(name: str) -> str:
    """The text of wire sample ``name``."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    """The decoded JSON of wire sample ``name``."""
    return json.loads(fixture_text(name))


def settings(**overrides: Any) -> SalesforceSettings:
    """Settings for a session-id login at the test instance, retries fast and bounded."""
    values: dict[str, Any] = {
        "auth": "session",
        "session_id": Secret(SESSION_ID),
        "instance_url": INSTANCE,
        "domain": DOMAIN,
        "retry_attempts": 4,
        "retry_max_seconds": 60.0,
    }
    values.update(overrides)
    return SalesforceSettings(**values)


def oauth_password_settings(**overrides: Any) -> SalesforceSettings:
    """Settings for the OAuth password grant at the My Domain."""
    values: dict[str, Any] = {
        "auth": "password",
        "username": "integration@example.org",
        "password": Secret(PASSWORD),
        "security_token": Secret(SECURITY_TOKEN),
        "consumer_key": "3MVG9-consumer-key",
        "consumer_secret": Secret(CONSUMER_SECRET),
    }
    values.update(overrides)
    return settings(**values)


def make_client(
    sf_settings: SalesforceSettings | None = None,
) -> tuple[SalesforceClient, list[float]]:
    """A client whose retry waits are recorded instead of slept."""
    sleeps: list[float] = []
    client = SalesforceClient(
        sf_settings or settings(), session=requests.Session(), sleep=sleeps.append
    )
    return client, sleeps


def soql_of(url: str) -> str:
    """The SOQL statement of a query request URL."""
    return parse_qs(urlparse(url).query)["q"][0]
