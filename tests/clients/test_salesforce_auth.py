"""Salesforce login grants: the request each sends, and one re-login on INVALID_SESSION_ID."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from salesforce_helpers import (
    CONSUMER_SECRET,
    DATA,
    INSTANCE,
    OAUTH_TOKEN,
    PASSWORD,
    SECURITY_TOKEN,
    SESSION_ID,
    TOKEN_URL,
    fixture_json,
    fixture_text,
    make_client,
    oauth_password_settings,
    settings,
)

from connector.clients.salesforce.auth import base_url, jwt_audience
from connector.config import Secret
from connector.errors import ConfigError, SalesforceAuthError

LIMITS = f"{DATA}/limits/"


def form_of(call: responses.Call) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {k: v[0] for k, v in parse_qs(text).items()}


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("login", "https://login.salesforce.com"),
        ("test", "https://test.salesforce.com"),
        ("acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        ("127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_login_base_url_follows_domain(domain: str, expected: str) -> None:
    assert base_url(domain) == expected


@responses.activate
def test_soap_login_request_shape_and_session_use() -> None:
    tricky = "p&ss<word>"
    responses.post(
        "https://login.salesforce.com/services/Soap/u/59.0",
        body=fixture_text("soap-login-ok.xml"),
        content_type="text/xml",
    )
    responses.get(LIMITS, json=fixture_json("limits.json"))
    client, _ = make_client(
        settings(
            auth="password",
            domain="login",
            username="integration@example.org",
            password=Secret(tricky),
            security_token=Secret(SECURITY_TOKEN),
        )
    )
    client.check_budget()

    login = responses.calls[0].request
    assert login.headers["SOAPAction"] == "login"
    assert login.headers["Content-Type"].startswith("text/xml")
    body = login.body.decode()
    assert "<urn:login>" in body
    assert "<urn:username>integration@example.org</urn:username>" in body
    # Password and security token are sent together, XML-escaped.
    assert f"<urn:password>p&amp;ss&lt;word&gt;{SECURITY_TOKEN}</urn:password>" in body
    # The REST call goes to the instance from serverUrl, with the session id as bearer token.
    rest = responses.calls[1].request
    assert rest.url.startswith("https://acme.my.salesforce.com/services/data/v59.0/limits")
    assert rest.headers["Authorization"] == "Bearer 00DD0000000K1Ab!AQ4AQ.soap-session-do-not-leak"
    assert client.org_id == "00DD0000000K1AbMAK"
    assert client.calls["login"] == 1


@responses.activate
def test_soap_login_fault_is_an_auth_error_not_retried() -> None:
    responses.post(
        "https://test.salesforce.com/services/Soap/u/59.0",
        body=fixture_text("soap-login-fault.xml"),
        status=500,
        content_type="text/xml",
    )
    client, sleeps = make_client(
        settings(auth="password", domain="test", username="u@example.org", password=Secret("x"))
    )
    with pytest.raises(SalesforceAuthError) as info:
        client.login()
    assert info.value.error_code == "INVALID_LOGIN"
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_oauth_password_grant_request_shape() -> None:
    responses.post(
        "https://login.salesforce.com/services/oauth2/token", json=fixture_json("oauth-token.json")
    )
    client, _ = make_client(oauth_password_settings(domain="login"))
    client.login()
    form = form_of(responses.calls[0])
    assert form == {
        "grant_type": "password",
        "client_id": "3MVG9-consumer-key",
        "client_secret": CONSUMER_SECRET,
        "username": "integration@example.org",
        "password": PASSWORD + SECURITY_TOKEN,
    }
    assert client.org_id == "00DD0000000K1AbMAK"


def rsa_key_pair() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@responses.activate
def test_jwt_bearer_assertion_is_signed_rs256_with_the_claims() -> None:
    private, public = rsa_key_pair()
    responses.post(
        "https://127.0.0.1:8443/services/oauth2/token", json=fixture_json("oauth-token.json")
    )
    client, _ = make_client(
        settings(
            auth="jwt",
            domain="127.0.0.1:8443",
            username="integration@example.org",
            consumer_key="3MVG9-consumer-key",
            private_key=Secret(private),
        )
    )
    client.login()
    form = form_of(responses.calls[0])
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.get_unverified_header(form["assertion"])["alg"] == "RS256"
    claims = jwt.decode(
        form["assertion"], public, algorithms=["RS256"], audience="https://127.0.0.1:8443"
    )
    assert claims["iss"] == "3MVG9-consumer-key"
    assert claims["sub"] == "integration@example.org"
    assert time.time() < claims["exp"] <= time.time() + 300


def test_jwt_audience_for_salesforce_hosts() -> None:
    assert jwt_audience("login") == "https://login.salesforce.com"
    assert jwt_audience("test") == "https://test.salesforce.com"
    assert jwt_audience("acme.my.salesforce.com") == "https://login.salesforce.com"
    assert jwt_audience("acme--uat.sandbox.my.salesforce.com") == "https://test.salesforce.com"


def test_jwt_with_a_bad_key_names_the_setting_not_the_key() -> None:
    client, _ = make_client(
        settings(
            auth="jwt",
            username="u@example.org",
            consumer_key="ck",
            private_key=Secret("not-a-pem-key-do-not-leak"),
        )
    )
    with pytest.raises(ConfigError) as info:
        client.login()
    assert info.value.key == "salesforce.private_key"
    assert "do-not-leak" not in str(info.value)


@responses.activate
def test_client_credentials_grant_request_shape() -> None:
    responses.post(TOKEN_URL, json=fixture_json("oauth-token.json"))
    client, _ = make_client(
        settings(
            auth="client_credentials",
            consumer_key="3MVG9-consumer-key",
            consumer_secret=Secret(CONSUMER_SECRET),
        )
    )
    client.login()
    assert form_of(responses.calls[0]) == {
        "grant_type": "client_credentials",
        "client_id": "3MVG9-consumer-key",
        "client_secret": CONSUMER_SECRET,
    }


@responses.activate
def test_session_grant_sends_no_login_and_uses_the_session_id() -> None:
    responses.get(LIMITS, json=fixture_json("limits.json"))
    client, _ = make_client()
    client.check_budget()
    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {SESSION_ID}"
    assert client.calls["login"] == 0


def test_missing_credentials_name_the_setting() -> None:
    client, _ = make_client(settings(auth="client_credentials", consumer_key=""))
    with pytest.raises(ConfigError, match=r"salesforce\.consumer_key: required"):
        client.login()


@responses.activate
def test_oauth_refusal_is_an_auth_error() -> None:
    responses.post(TOKEN_URL, json=fixture_json("oauth-error.json"), status=400)
    client, sleeps = make_client(oauth_password_settings())
    with pytest.raises(SalesforceAuthError) as info:
        client.login()
    assert info.value.error_code == "invalid_grant"
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_token_endpoint_5xx_is_retried() -> None:
    responses.post(TOKEN_URL, body="<html>maintenance</html>", status=503)
    responses.post(TOKEN_URL, json=fixture_json("oauth-token.json"))
    client, sleeps = make_client(oauth_password_settings())
    client.login()
    assert client.calls["login"] == 2
    assert len(sleeps) == 1


@responses.activate
def test_invalid_session_logs_in_again_once_then_succeeds() -> None:
    responses.post(TOKEN_URL, json=fixture_json("oauth-token.json"))
    responses.get(LIMITS, json=fixture_json("error-invalid-session.json"), status=401)
    responses.get(LIMITS, json=fixture_json("limits.json"))
    client, _ = make_client(oauth_password_settings())
    budget = client.check_budget()
    assert budget.limit == 15000
    assert client.calls["login"] == 2
    assert client.calls["limits"] == 2
    assert [c.request.url.split("?")[0] for c in responses.calls] == [
        TOKEN_URL,
        LIMITS,
        TOKEN_URL,
        LIMITS,
    ]
    assert responses.calls[3].request.headers["Authorization"] == f"Bearer {OAUTH_TOKEN}"


@responses.activate
def test_invalid_session_twice_is_an_auth_error_after_exactly_two_logins() -> None:
    responses.post(TOKEN_URL, json=fixture_json("oauth-token.json"))
    responses.get(LIMITS, json=fixture_json("error-invalid-session.json"), status=401)
    client, _ = make_client(oauth_password_settings())
    with pytest.raises(SalesforceAuthError) as info:
        client.check_budget()
    assert info.value.error_code == "INVALID_SESSION_ID"
    assert client.calls["login"] == 2
    assert client.calls["limits"] == 2
    assert len(responses.calls) == 4


@responses.activate
def test_expired_configured_session_cannot_be_renewed() -> None:
    responses.get(LIMITS, json=fixture_json("error-invalid-session.json"), status=401)
    client, _ = make_client()
    with pytest.raises(SalesforceAuthError, match="session_id expired"):
        client.check_budget()
    assert client.calls["login"] == 0
    assert len(responses.calls) == 1


def test_instance_url_is_required_for_the_session_grant() -> None:
    client, _ = make_client(settings(instance_url=""))
    with pytest.raises(ConfigError, match=r"salesforce\.instance_url"):
        client.login()


def test_instance_fixture_matches_helpers() -> None:
    # The OAuth sample's instance is the one the REST mocks use.
    assert fixture_json("oauth-token.json")["instance_url"] == INSTANCE
