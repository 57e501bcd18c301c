"""The Salesforce sandbox's logins: SOAP, OAuth grants (password, JWT bearer, client
credentials) and bearer sessions on REST calls."""

from __future__ import annotations

import base64
import functools
import time
from xml.etree import ElementTree

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.salesforce import SalesforceSandbox
from sandbox.testing import RestSession

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SOAP_NS = "{urn:partner.soap.sforce.com}"


@pytest.fixture
def sf(tmp_path):
    sandbox = SalesforceSandbox(tmp_path / "sf")
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def rest(sf):
    client = RestSession(sf)
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared():
    # One sandbox for the tests that only read answers (refused logins).
    sandbox = SalesforceSandbox()
    sandbox.start()
    client = RestSession(sandbox)
    yield sandbox, client
    client.close()
    sandbox.stop()


def soap_body(username: str, password: str) -> str:
    # What simple-salesforce's SalesforceLogin sends for username + password + security token.
    return f"""<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:urn="urn:partner.soap.sforce.com">
    <env:Header><urn:CallOptions><urn:client>simple-salesforce</urn:client>
        <urn:defaultNamespace>sf</urn:defaultNamespace></urn:CallOptions></env:Header>
    <env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">
        <n1:username>{username}</n1:username><n1:password>{password}</n1:password>
    </n1:login></env:Body>
</env:Envelope>"""


def assertion(sf: SalesforceSandbox, key_pem: str | None = None, **claims) -> str:
    payload = {
        "iss": sf.consumer_key,
        "sub": sf.username,
        "aud": sf.url,
        "exp": int(time.time()) + 180,
        **claims,
    }
    return jwt.encode(payload, key_pem or sf.jwt_private_key_pem, algorithm="RS256")


def test_soap_login_returns_a_session_that_works_on_rest(sf, rest):
    response = rest.http.post(
        f"{sf.url}/services/Soap/u/59.0",
        data=soap_body(sf.username, sf.password + sf.security_token),
        headers={"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"},
        verify=sf.ca_file,
    )
    assert response.status_code == 200
    doc = ElementTree.fromstring(response.content)
    session_id = doc.find(f".//{SOAP_NS}sessionId").text
    server_url = doc.find(f".//{SOAP_NS}serverUrl").text
    assert server_url.startswith(f"{sf.url}/services/Soap/u/59.0/")
    assert doc.find(f".//{SOAP_NS}organizationId").text == sf.org_id

    rest.token = session_id
    assert rest.get("limits").status_code == 200
    assert sf.calls["login"] == 1


def test_soap_login_with_a_wrong_password_is_an_invalid_login_fault(sf, rest):
    response = rest.http.post(
        f"{sf.url}/services/Soap/u/59.0",
        data=soap_body(sf.username, sf.password),  # security token missing
        verify=sf.ca_file,
    )
    assert response.status_code == 500
    assert b"<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in response.content
    assert b"sessionId" not in response.content


def test_oauth_password_grant_answers_the_token_shape(sf, rest):
    rest.login()
    response = rest.post_form(
        "/services/oauth2/token",
        {
            "grant_type": "password",
            "client_id": sf.consumer_key,
            "client_secret": sf.consumer_secret,
            "username": sf.username,
            "password": sf.password + sf.security_token,
        },
    )
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    }
    assert body["instance_url"] == sf.url
    assert body["id"].split("/")[-2] == sf.org_id
    assert body["token_type"] == "Bearer"
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"password": "wrong"}, "invalid_grant"),
        ({"username": "someone@else.example"}, "invalid_grant"),
        ({"client_id": "3MVG9unknown"}, "invalid_client_id"),
        ({"client_secret": "nope"}, "invalid_client"),
    ],
)
def test_oauth_password_grant_refuses_bad_credentials(shared, change, error):
    sf, rest = shared
    form = {
        "grant_type": "password",
        "client_id": sf.consumer_key,
        "client_secret": sf.consumer_secret,
        "username": sf.username,
        "password": sf.password + sf.security_token,
        **change,
    }
    response = rest.post_form("/services/oauth2/token", form)
    assert response.status_code == 400
    assert response.json()["error"] == error
    if error == "invalid_grant":
        assert response.json() == {
            "error": "invalid_grant",
            "error_description": "authentication failure",
        }


def test_jwt_bearer_grant_accepts_an_assertion_signed_with_the_app_key(sf, rest):
    response = rest.post_form(
        "/services/oauth2/token", {"grant_type": JWT_GRANT, "assertion": assertion(sf)}
    )
    assert response.status_code == 200
    rest.token = response.json()["access_token"]
    assert rest.get("limits").status_code == 200


def test_jwt_bearer_grant_accepts_the_public_login_audience(sf, rest):
    token = assertion(sf, aud="https://login.salesforce.com")
    response = rest.post_form(
        "/services/oauth2/token", {"grant_type": JWT_GRANT, "assertion": token}
    )
    assert response.status_code == 200


@functools.cache
def forged_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    ("make", "error", "description"),
    [
        (lambda sf: assertion(sf, key_pem=forged_key_pem()), "invalid_grant", "invalid assertion"),
        (lambda sf: assertion(sf, iss="3MVG9other"), "invalid_client_id", None),
        (lambda sf: assertion(sf, sub="someone@else.example"), "invalid_grant", None),
        (lambda sf: assertion(sf, aud="https://evil.example"), "invalid_grant", None),
        (lambda sf: assertion(sf, exp=int(time.time()) - 60), "invalid_grant", None),
        (lambda sf: "not-a-jwt", "invalid_grant", "invalid assertion"),
    ],
    ids=["forged-signature", "wrong-iss", "unknown-sub", "wrong-aud", "expired", "garbage"],
)
def test_jwt_bearer_grant_refuses_bad_assertions(shared, make, error, description):
    sf, rest = shared
    response = rest.post_form(
        "/services/oauth2/token", {"grant_type": JWT_GRANT, "assertion": make(sf)}
    )
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert "access_token" not in response.json()
    if description:
        assert response.json()["error_description"] == description


def test_jwt_with_an_unsigned_algorithm_is_refused(shared):
    sf, rest = shared
    unsigned = jwt.encode(
        {"iss": sf.consumer_key, "sub": sf.username, "aud": sf.url, "exp": time.time() + 60},
        key=None,
        algorithm="none",
    )
    response = rest.post_form(
        "/services/oauth2/token", {"grant_type": JWT_GRANT, "assertion": unsigned}
    )
    assert response.status_code == 400


def test_client_credentials_grant_by_form_and_by_basic_auth(sf, rest):
    by_form = rest.post_form(
        "/services/oauth2/token",
        {
            "grant_type": "client_credentials",
            "client_id": sf.consumer_key,
            "client_secret": sf.consumer_secret,
        },
    )
    basic = base64.b64encode(f"{sf.consumer_key}:{sf.consumer_secret}".encode()).decode()
    by_header = rest.post_form(
        "/services/oauth2/token",
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    wrong = rest.post_form(
        "/services/oauth2/token",
        {"grant_type": "client_credentials", "client_id": sf.consumer_key, "client_secret": "x"},
    )
    assert by_form.status_code == 200 and by_header.status_code == 200
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"


def test_unknown_grant_type_is_refused(shared):
    _, rest = shared
    response = rest.post_form("/services/oauth2/token", {"grant_type": "authorization_code"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_rest_calls_need_a_live_session(sf, rest):
    rest.token = "00Dbogus!session"
    response = rest.get("limits")
    assert response.status_code == 401
    assert response.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}
    ]
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")

    rest.login()
    assert rest.get("limits").status_code == 200
    sf.expire_sessions()
    assert rest.get("limits").status_code == 401
    rest.token = ""
    assert rest.get("limits").status_code == 401  # no Authorization header at all
