"""The plugin's event delivery, as the sandbox Moodle does it: signed JSON POSTs to a webhook.

Off by default. :meth:`MoodleEventEmitter.attach` hooks a :class:`~sandbox.moodle.site.Site`:
every activity completion change (``\\core\\event\\course_module_completion_updated``) and every
course completion (``\\core\\event\\course_completed``) is queued, and a background thread
delivers it, so the web-service call that caused it never waits for the webhook. Like the
plugin's adhoc task (deploy/moodle/local_mentorsync/classes/payload.php):

- the body is one event with exactly the keys of :data:`FIELDS`, in that order, as compact JSON
  (``json_encode`` with ``JSON_UNESCAPED_SLASHES``: ASCII only, ``\\`` escaped);
- the headers are the Standard Webhooks ones: ``webhook-id`` (``msg_`` + 32 hex digits, the
  same on every retry), ``webhook-timestamp`` (at each attempt) and ``webhook-signature``
  ``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` under the key of the ``whsec_`` secret;
- a failed attempt (connection error, HTTP 5xx or 429) is retried with exponential backoff up to
  ``attempts`` times; another 4xx is final. Nothing is lost silently: ``failed`` counts events
  given up on, ``delivered`` those answered 2xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from typing import Any

import requests

from sandbox.moodle.site import Site

log = logging.getLogger(__name__)

FIELDS = ("eventname", "userid", "relateduserid", "courseid", "contextinstanceid", "timecreated")
_STOP = object()


def body_bytes(event: dict[str, Any]) -> bytes:
    """The exact request body for one event (keys in :data:`FIELDS` order, missing ones null)."""
    ordered = {key: event.get(key) for key in FIELDS}
    return json.dumps(ordered, separators=(",", ":")).encode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (at least 16 bytes), or ValueError."""
    secret = secret.strip()
    if not secret.startswith("whsec_"):
        raise ValueError("the secret must start with whsec_")
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except binascii.Error:
        raise ValueError("the part of the secret after whsec_ is not base64") from None
    if len(key) < 16:
        raise ValueError("the secret's key is shorter than 16 bytes")
    return key


def signed_headers(key: bytes, msgid: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt."""
    digest = hmac.new(key, f"{msgid}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "webhook-id": msgid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


class MoodleEventEmitter:
    """Delivers a site's completion events to ``url``, signed with ``secret``, from a thread.

    ``courses``: only events of these course ids (the plugin's "courses" setting); None: all.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        courses: set[int] | None = None,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.url = url
        self._key = decode_secret(secret)
        self.courses = courses
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout = timeout
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._session = requests.Session()
        self._thread: threading.Thread | None = None
        self._sites: list[Site] = []

    # ------------------------------------------------------------------ wiring

    def attach(self, site: Site) -> None:
        """Start observing ``site`` (and the delivery thread, on first use).

        A configured plugin is an installed one: this also sets ``site.plugin_installed``.
        """
        site.plugin_installed = True
        site.listeners.append(self._observe)
        self._sites.append(site)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="moodle-sandbox-events", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop observing, deliver what is queued (up to ``timeout``), end the thread."""
        for site in self._sites:
            if self._observe in site.listeners:
                site.listeners.remove(self._observe)
        self._sites.clear()
        self.wait_idle(timeout)
        self._stopping.set()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        self._session.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event is delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ------------------------------------------------------------------ work

    def _observe(self, event: dict[str, Any]) -> None:
        # Called under the site's lock inside a web-service call: queue only, never block.
        if self.courses is not None and event.get("courseid") not in self.courses:
            return
        with self._idle:
            self._pending += 1
        self._queue.put(("msg_" + secrets.token_hex(16), dict(event)))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            msgid, event = item
            try:
                if self._deliver(msgid, event):
                    self.delivered += 1
                else:
                    self.failed += 1
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, msgid: str, event: dict[str, Any]) -> bool:
        body = body_bytes(event)
        for attempt in range(1, self.attempts + 1):
            headers = signed_headers(self._key, msgid, int(time.time()), body)
            try:
                response = self._session.post(
                    self.url, data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    return True
                outcome = f"http{response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    log.warning("moodle sandbox event %s refused: %s", msgid, outcome)
                    return False
            log.info("moodle sandbox event %s attempt %d failed: %s", msgid, attempt, outcome)
            if attempt < self.attempts and self._stopping.wait(
                self.backoff_seconds * 2 ** (attempt - 1)
            ):
                break
        log.warning("moodle sandbox event %s given up", msgid)
        return False
