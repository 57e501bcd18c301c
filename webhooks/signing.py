"""Standard Webhooks signatures (https://www.standardwebhooks.com/), verified over raw bytes.

A sender signs ``{webhook-id}.{webhook-timestamp}.{body}`` with HMAC-SHA256 under the key that
``whsec_<base64>`` encodes, and sends ``webhook-signature: v1,<base64 digest>``; several
space-separated signatures are allowed, so keys can be rotated. The timestamp (Unix seconds)
must be within :data:`TOLERANCE_SECONDS` of now, in both directions. Replays inside the window
are caught by the inbox, which deduplicates on ``webhook-id``.

:func:`verify` is pure: headers, body and clock in, the message id or a :class:`SignatureError`
out (never any other exception, whatever the headers hold).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"
# Used with fullmatch(): "$" would let a trailing newline through, and \d any Unicode digit.
_MSG_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# The longest signature header looked at; more is a malformed header, not work to do.
_MAX_SIGNATURE_HEADER = 4096


class SignatureError(Exception):
    """A request that is not correctly signed. ``status`` is 400 (malformed) or 401 (refused)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside ``whsec_<base64>``; raise ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a Standard Webhooks secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 16:
        raise ValueError("the key is shorter than 16 bytes")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message (for senders and tests)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or ""
    if not isinstance(value, str):  # a mapping built by hand may hold anything
        raise SignatureError(400, f"{name} header is not text")
    return value


def verify(
    keys: list[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a signed request and return its ``webhook-id``.

    ``keys`` are the accepted HMAC keys (from :func:`decode_secret`). ``headers`` is looked up
    with lower-case names (Werkzeug's headers are case-insensitive; so is a plain dict built with
    lower-case keys). Raises :class:`SignatureError`: 400 when a header is missing or malformed,
    401 when the timestamp is outside the tolerance or no signature matches.
    """
    msg_id = _header(headers, "webhook-id")
    timestamp_text = _header(headers, "webhook-timestamp")
    signature_header = _header(headers, "webhook-signature")
    if not msg_id:
        raise SignatureError(400, "missing webhook-id header")
    if not _MSG_ID.fullmatch(msg_id):
        raise SignatureError(400, "webhook-id must be 1-200 printable ASCII characters")
    if not timestamp_text:
        raise SignatureError(400, "missing webhook-timestamp header")
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise SignatureError(400, "webhook-timestamp must be Unix seconds")
    if not signature_header:
        raise SignatureError(400, "missing webhook-signature header")
    if len(signature_header) > _MAX_SIGNATURE_HEADER:
        raise SignatureError(400, "webhook-signature header is too long")
    timestamp = int(timestamp_text)
    now = time.time() if now is None else now
    if timestamp < now - tolerance:
        raise SignatureError(401, "webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise SignatureError(401, "webhook-timestamp is in the future")

    offered: list[bytes] = []
    for entry in signature_header.split():
        version, sep, value = entry.partition(",")
        if not sep:
            raise SignatureError(400, "webhook-signature entries look like v1,<base64>")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric); not ours to check
        try:
            offered.append(base64.b64decode(value, validate=True))
        except binascii.Error:
            raise SignatureError(400, "webhook-signature v1 value is not base64") from None
    if not offered:
        raise SignatureError(401, "no v1 signature in webhook-signature")
    signed = f"{msg_id}.{timestamp_text}.".encode() + body
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        # Check every offered signature (no early exit on the first one tried).
        matched = False
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return msg_id
    raise SignatureError(401, "no signature matches")
