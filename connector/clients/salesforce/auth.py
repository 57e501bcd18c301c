"""Salesforce login: one HTTP exchange per grant, against a base URL built from settings.

simple-salesforce's own login helpers hard-code ``https://{domain}.salesforce.com``, which rules
out My Domain hosts given in full and the loopback sandbox, so the grants are done here:

- ``password``: OAuth password grant at ``/services/oauth2/token`` when a consumer key is set,
  else the SOAP ``login`` call at ``/services/Soap/u/{version}`` (what simple-salesforce does).
- ``jwt``: OAuth JWT bearer grant, an RS256 assertion signed with the private key.
- ``client_credentials``: OAuth client credentials grant (needs a My Domain in real orgs).
- ``session``: no exchange; the configured session id and instance URL are used as they are.

Only this module sees passwords and keys; what it returns holds the token as a :class:`Secret`.
Transport exceptions (``requests.RequestException``) propagate: the client classifies and retries
them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import jwt
import requests
from defusedxml import DefusedXmlException

from connector.config import SalesforceSettings, Secret
from connector.errors import ConfigError, SalesforceAuthError, SalesforceTransientError

TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce accepts a JWT assertion for at most a few minutes.
JWT_LIFETIME_SECONDS = 180
CLIENT_NAME = "mentorsync"


@dataclass(frozen=True)
class LoginResult:
    """What a login yields: where the org's API lives and the bearer token."""

    instance_url: str
    access_token: Secret
    org_id: str = ""


def base_url(domain: str) -> str:
    """The login host for ``settings.domain``: ``login``/``test`` or a host (with port) as given."""
    if domain in ("login", "test"):
        return f"https://{domain}.salesforce.com"
    return f"https://{domain}"


def jwt_audience(domain: str) -> str:
    """The ``aud`` claim of a JWT bearer assertion.

    Salesforce wants ``https://login.salesforce.com`` for production orgs and
    ``https://test.salesforce.com`` for sandboxes, even when the token is requested from a My
    Domain host; any other host (a private deployment, the loopback sandbox) is its own audience.
    """
    host = domain.split(":", 1)[0].lower()
    if domain == "test" or host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if domain == "login" or host.endswith(".salesforce.com"):
        return "https://login.salesforce.com"
    return base_url(domain)


def login(
    settings: SalesforceSettings, session: requests.Session, request_kwargs: Mapping[str, Any]
) -> LoginResult:
    """Log in with the grant ``settings.auth`` names; one HTTP call (none for ``session``).

    Raises ``ConfigError`` for a missing setting, ``SalesforceAuthError`` when Salesforce refuses
    the credentials and ``SalesforceTransientError`` for a 5xx answer.
    """
    if settings.auth == "session":
        _require(settings, "session_id", "instance_url")
        if urlparse(settings.instance_url).scheme != "https":
            raise ConfigError("salesforce.instance_url", "must be an https URL")
        return LoginResult(settings.instance_url.rstrip("/"), settings.session_id)
    root = base_url(settings.domain)
    if settings.auth == "password" and not settings.consumer_key:
        _require(settings, "username", "password")
        return _soap_login(settings, session, root, request_kwargs)
    return _token_login(session, root + TOKEN_PATH, _token_form(settings), request_kwargs)


def _require(settings: SalesforceSettings, *names: str) -> None:
    for name in names:
        if not getattr(settings, name):
            raise ConfigError(f"salesforce.{name}", f"required for auth = {settings.auth}")


def _token_form(settings: SalesforceSettings) -> dict[str, str]:
    """The form body of the OAuth token request for the configured grant."""
    if settings.auth == "password":
        _require(settings, "username", "password", "consumer_key", "consumer_secret")
        return {
            "grant_type": "password",
            "client_id": settings.consumer_key,
            "client_secret": settings.consumer_secret.get(),
            "username": settings.username,
            "password": settings.password.get() + settings.security_token.get(),
        }
    if settings.auth == "jwt":
        _require(settings, "username", "consumer_key", "private_key")
        return {"grant_type": JWT_GRANT, "assertion": _jwt_assertion(settings)}
    if settings.auth == "client_credentials":
        _require(settings, "consumer_key", "consumer_secret")
        return {
            "grant_type": "client_credentials",
            "client_id": settings.consumer_key,
            "client_secret": settings.consumer_secret.get(),
        }
    raise ConfigError("salesforce.auth", f"unknown grant {settings.auth!r}")


def _jwt_assertion(settings: SalesforceSettings) -> str:
    claims = {
        "iss": settings.consumer_key,
        "sub": settings.username,
        "aud": jwt_audience(settings.domain),
        "exp": int(time.time()) + JWT_LIFETIME_SECONDS,
    }
    try:
        return jwt.encode(claims, settings.private_key.get(), algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        # The library's message may quote the key material: say only what is wrong.
        raise ConfigError("salesforce.private_key", "not a usable PEM RSA private key") from None


def _token_login(
    session: requests.Session, url: str, form: dict[str, str], request_kwargs: Mapping[str, Any]
) -> LoginResult:
    response = session.post(
        url, data=form, headers={"Accept": "application/json"}, **request_kwargs
    )
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500:
        raise SalesforceTransientError("HTTP_ERROR", response.status_code, context="login")
    if not isinstance(body, dict):
        raise SalesforceAuthError("UNEXPECTED_RESPONSE", response.status_code, context="login")
    if response.status_code != 200 or "access_token" not in body:
        raise SalesforceAuthError(
            str(body.get("error") or "UNEXPECTED_RESPONSE"),
            response.status_code,
            upstream_message=str(body.get("error_description") or ""),
            context="login",
        )
    instance_url = str(body.get("instance_url") or "")
    if urlparse(instance_url).scheme != "https":
        raise SalesforceAuthError("BAD_INSTANCE_URL", response.status_code, context="login")
    # The identity URL ends in /id/<org id>/<user id>.
    parts = str(body.get("id") or "").rstrip("/").split("/")
    org_id = parts[-2] if len(parts) >= 2 and parts[-3:-2] == ["id"] else ""
    return LoginResult(instance_url.rstrip("/"), Secret(str(body["access_token"])), org_id)


def soap_envelope(username: str, password: str) -> str:
    """The SOAP ``login`` request body of the partner API."""
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:urn="urn:partner.soap.sforce.com">'
        "<env:Header><urn:CallOptions>"
        f"<urn:client>{CLIENT_NAME}</urn:client>"
        "</urn:CallOptions></env:Header>"
        "<env:Body><urn:login>"
        f"<urn:username>{escape(username)}</urn:username>"
        f"<urn:password>{escape(password)}</urn:password>"
        "</urn:login></env:Body></env:Envelope>"
    )


def _soap_login(
    settings: SalesforceSettings,
    session: requests.Session,
    root: str,
    request_kwargs: Mapping[str, Any],
) -> LoginResult:
    body = soap_envelope(settings.username, settings.password.get() + settings.security_token.get())
    response = session.post(
        f"{root}/services/Soap/u/{settings.api_version}",
        data=body.encode("utf-8"),
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
        **request_kwargs,
    )
    try:
        doc: Element | None = SafeET.fromstring(response.content)
    except (SafeET.ParseError, DefusedXmlException):
        doc = None
    # A SOAP fault comes with HTTP 500: its exceptionCode (INVALID_LOGIN...) decides, not the
    # status. Only a 5xx without a fault is a passing server problem.
    fault = _xml_text(doc, "exceptionCode") or _xml_text(doc, "faultcode").rpartition(":")[2]
    if fault and fault != "SERVER_UNAVAILABLE":
        raise SalesforceAuthError(
            fault,
            response.status_code,
            upstream_message=_xml_text(doc, "exceptionMessage") or _xml_text(doc, "faultstring"),
            context="login",
        )
    if response.status_code >= 500:
        raise SalesforceTransientError(fault or "HTTP_ERROR", response.status_code, context="login")
    session_id, server_url = _xml_text(doc, "sessionId"), _xml_text(doc, "serverUrl")
    parsed = urlparse(server_url)
    if response.status_code != 200 or not session_id or parsed.scheme != "https":
        raise SalesforceAuthError("UNEXPECTED_RESPONSE", response.status_code, context="login")
    return LoginResult(
        f"{parsed.scheme}://{parsed.netloc}", Secret(session_id), _xml_text(doc, "organizationId")
    )


def _xml_text(doc: Element | None, local_name: str) -> str:
    """Text of the first element named ``local_name`` in any namespace, or ""."""
    if doc is None:
        return ""
    for element in doc.iter():
        if element.tag == local_name or element.tag.endswith("}" + local_name):
            return (element.text or "").strip()
    return ""
