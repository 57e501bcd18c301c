"""Logins of the sandbox org: SOAP ``login`` and the OAuth token endpoint, and bearer sessions.

Grants: SOAP login (username + password + security token, what simple-salesforce sends),
OAuth ``password`` (consumer key and secret, password + security token), the JWT bearer grant
(an RS256 assertion checked against the connected app's certificate, ``iss`` = consumer key,
``sub`` = the username, ``aud`` = the login host, ``exp`` in the future) and
``client_credentials`` (consumer key and secret as form fields or HTTP Basic).

The org has one API user. Its credentials, the JWT key pair and the open sessions are kept in the
sandbox state, so a restarted sandbox accepts the same configuration and tokens.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import secrets
import string
import threading
import time
from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from defusedxml import DefusedXmlException

from sandbox.salesforce.ids import random_id

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PUBLIC_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_ALNUM = string.ascii_letters + string.digits


def _random_text(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class OAuthError(Exception):
    """A refused token request: HTTP status and the OAuth ``error`` / ``error_description``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body Salesforce answers with."""
        return {"error": self.error, "error_description": self.description}


class Auth:
    """Credentials of the org's API user, its connected app, and the live sessions."""

    def __init__(self, session_ttl: float = 7200.0) -> None:
        self.org_id = random_id("00D")
        self.user_id = random_id("005")
        self.username = "integration@mentorsync.sandbox"
        self.password = _random_text(16)
        self.security_token = _random_text(24)
        self.consumer_key = "3MVG9" + _random_text(80, _ALNUM + "._")
        self.consumer_secret = _random_text(64, string.digits + "ABCDEF")
        self.session_ttl = session_ttl
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.jwt_private_key_pem, self.jwt_certificate_pem = _make_jwt_keys()

    # -- sessions ----------------------------------------------------------------------------

    def new_session(self) -> str:
        """Open a session; return its token (``00D...!...``, like Salesforce's)."""
        token = f"{self.org_id[:15]}!AR" + secrets.token_urlsafe(72)[:94]
        with self._lock:
            self._sessions[token] = time.time() + self.session_ttl
        return token

    def check(self, authorization: str | None) -> bool:
        """True if an ``Authorization: Bearer <token>`` (or ``OAuth <token>``) header is live."""
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return False
        token = token.strip()
        with self._lock:
            expiry = self._sessions.get(token)
            if expiry is None:
                return False
            if expiry < time.time():
                del self._sessions[token]
                return False
            return True

    def revoke(self, authorization: str | None) -> None:
        """End the session named by an Authorization header (a scripted INVALID_SESSION_ID)."""
        _, _, token = (authorization or "").partition(" ")
        with self._lock:
            self._sessions.pop(token.strip(), None)

    def expire_sessions(self) -> None:
        """End every session: the next REST call of every client gets INVALID_SESSION_ID."""
        with self._lock:
            self._sessions.clear()

    # -- SOAP login --------------------------------------------------------------------------

    def soap_login(self, body: bytes, instance_url: str, version: str) -> tuple[int, str]:
        """Answer a SOAP ``login`` request: (HTTP status, XML body)."""
        try:
            doc: Element | None = SafeET.fromstring(body)
        except (SafeET.ParseError, DefusedXmlException):
            doc = None
        username, password = _xml_text(doc, "username"), _xml_text(doc, "password")
        if doc is None or not username:
            return 500, _soap_fault(
                "soapenv:Client", "INVALID_LOGIN", "Invalid request: no login element"
            )
        expected = self.password + self.security_token
        if username != self.username or not hmac.compare_digest(password, expected):
            return 500, _soap_fault(
                "sf:INVALID_LOGIN",
                "INVALID_LOGIN",
                "Invalid username, password, security token; or user locked out.",
            )
        token = self.new_session()
        org15 = self.org_id[:15]
        return 200, (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
            ' xmlns="urn:partner.soap.sforce.com"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{instance_url}/services/Soap/m/{version}/{org15}"
            "</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired>"
            "<sandbox>true</sandbox>"
            f"<serverUrl>{instance_url}/services/Soap/u/{version}/{org15}</serverUrl>"
            f"<sessionId>{token}</sessionId>"
            f"<userId>{self.user_id}</userId>"
            "<userInfo>"
            f"<organizationId>{self.org_id}</organizationId>"
            "<organizationName>Mentorship Association (sandbox)</organizationName>"
            f"<sessionSecondsValid>{int(self.session_ttl)}</sessionSecondsValid>"
            f"<userId>{self.user_id}</userId>"
            f"<userName>{escape(self.username)}</userName>"
            "</userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )

    # -- OAuth -------------------------------------------------------------------------------

    def token(
        self, form: Mapping[str, str], authorization: str | None, instance_url: str
    ) -> dict[str, Any]:
        """Answer ``POST /services/oauth2/token``; raises :class:`OAuthError` on refusal."""
        grant = form.get("grant_type", "")
        if grant == "password":
            self._check_client(form.get("client_id"), form.get("client_secret"))
            expected = self.password + self.security_token
            if form.get("username") != self.username or not hmac.compare_digest(
                form.get("password", ""), expected
            ):
                raise OAuthError("invalid_grant", "authentication failure")
        elif grant == JWT_GRANT:
            self._check_assertion(form.get("assertion", ""), instance_url)
        elif grant == "client_credentials":
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if authorization and authorization.lower().startswith("basic "):
                client_id, client_secret = _basic(authorization)
            self._check_client(client_id, client_secret)
        elif not grant:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        issued_at = str(int(time.time() * 1000))
        identity = f"{instance_url}/id/{self.org_id}/{self.user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.consumer_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        return {
            "access_token": self.new_session(),
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
        }

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if client_id != self.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(client_secret or "", self.consumer_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _check_assertion(self, assertion: str, instance_url: str) -> None:
        certificate = x509.load_pem_x509_certificate(self.jwt_certificate_pem.encode())
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256"],
                audience=[*PUBLIC_AUDIENCES, instance_url],
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            raise OAuthError("invalid_grant", "audience is invalid") from None
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.PyJWTError:
            # Bad signature, wrong algorithm, missing claim, not a JWT at all.
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("iss") != self.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The credentials, keys and sessions, JSON-ready."""
        with self._lock:
            sessions = dict(self._sessions)
        return {
            "org_id": self.org_id,
            "user_id": self.user_id,
            "username": self.username,
            "password": self.password,
            "security_token": self.security_token,
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "jwt_private_key_pem": self.jwt_private_key_pem,
            "jwt_certificate_pem": self.jwt_certificate_pem,
            "sessions": sessions,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take back the credentials, keys and sessions of :meth:`to_state`."""
        for key in (
            "org_id",
            "user_id",
            "username",
            "password",
            "security_token",
            "consumer_key",
            "consumer_secret",
            "jwt_private_key_pem",
            "jwt_certificate_pem",
        ):
            if key in state:
                setattr(self, key, state[key])
        with self._lock:
            self._sessions = {str(k): float(v) for k, v in state.get("sessions", {}).items()}


@functools.cache
def _make_jwt_keys() -> tuple[str, str]:
    """A connected app's key pair: the private key (PEM) and a self-signed certificate (PEM).

    Made once per process (RSA key generation is slow; many test sandboxes start per process):
    sandboxes of one process share the pair, and a data directory keeps its own.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mentorsync sandbox JWT")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return private_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def _basic(authorization: str) -> tuple[str | None, str | None]:
    try:
        decoded = base64.b64decode(authorization.split(" ", 1)[1]).decode()
    except (binascii.Error, UnicodeDecodeError, IndexError):
        return None, None
    client_id, _, client_secret = decoded.partition(":")
    return client_id, client_secret


def _soap_fault(faultcode: str, exception_code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:sf="urn:fault.partner.soap.sforce.com"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{faultcode}</faultcode>"
        f"<faultstring>{exception_code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{exception_code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


def _xml_text(doc: Element | None, local_name: str) -> str:
    """Text of the first element named ``local_name`` in any namespace, or ""."""
    if doc is None:
        return ""
    for element in doc.iter():
        if element.tag == local_name or element.tag.endswith("}" + local_name):
            return element.text or ""
    return ""
