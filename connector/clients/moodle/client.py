"""Moodle web-service client: REST with JSON answers, typed errors, retries and batching.

Every call is one POST of a form body to ``{url}/webservice/rest/server.php`` carrying
``wstoken``, ``wsfunction`` and ``moodlewsrestformat=json`` plus the function's parameters in
PHP bracket encoding (:mod:`connector.clients.moodle.params`).
The token only ever travels in the body.

Moodle answers errors with HTTP 200 and ``{"exception","errorcode","message"}``. They become:

- :class:`MoodleTransientError`: connection refused, connect timeout, HTTP 5xx or 429, a body that
  is not JSON (a proxy's HTML page), ``sitemaintenance``. Retried here with tenacity
  (exponential backoff with full jitter, ``retry_attempts`` and ``retry_max_seconds`` caps).
- :class:`MoodleConfigurationError`: the token, the service or the permissions are wrong; ``hint``
  says what the admin should enable.
- :class:`MoodleRecordError`: Moodle refused the data of this call (``invalidparameter``...).
- ``dmlwriteexception`` ("Error writing to database"): on a read, transient (concurrent first
  calls race to insert the token user's ``last_time_enrolments_synced`` preference); on a write,
  resent once, then :class:`MoodleWriteRefusedError` (a value the database refuses).
- :class:`MoodleProtocolError`: an answer that is not the web-service protocol (XML, a redirect).
- :class:`UnknownOutcomeError`: a write (``write=True``) that may or may not have happened: read
  timeout, connection lost after sending, HTTP 502/504 from a gateway, a 200 that is not JSON
  (Moodle may have done the work, then printed a PHP notice). Never retried here: the caller
  re-reads Moodle and decides. On a read, the same failures are transient.

``calls`` counts HTTP requests per wsfunction that reached, or may have reached, Moodle:
every attempt, retries included; only attempts that provably never left (connection refused,
connect timeout, TLS failure) are not counted.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
import tenacity
from urllib3.exceptions import NewConnectionError

from connector.clients.moodle.errors import (
    DML_WRITE,
    ERRORS,
    configuration_error,
    error_from_answer,
)
from connector.clients.moodle.functions import MoodleFunctions
from connector.clients.moodle.params import PROTOCOL_FIELDS, count_fields, encode, split_items
from connector.config import MoodleSettings
from connector.errors import (
    BatchTooLargeError,
    MoodleConfigurationError,
    MoodleProtocolError,
    MoodleRecordError,
    MoodleTransientError,
    MoodleWriteRefusedError,
    UnknownOutcomeError,
)

log = logging.getLogger(__name__)

REST_PATH = "/webservice/rest/server.php"
_Body = list[tuple[str, str]]

# "Error writing to database": a race between concurrent calls, or a value the database refuses.

# A real Moodle error code; the weak-password case puts the policy's HTML there instead (05_).
# Gateways that may have passed the request on before failing: on a write, outcome unknown.
_GATEWAY_STATUSES = frozenset({502, 504})
# What to fix when the answer is not the web-service protocol (MoodleProtocolError.hint).
_REDIRECT_HINT = (
    "moodle.url must be the site's wwwroot exactly (scheme, host, port and path, as $CFG->wwwroot "
    "in Moodle's config.php): Moodle redirects any other address"
)
_XML_HINT = (
    "the REST protocol must answer JSON: mentorsync sends moodlewsrestformat=json, so a proxy or "
    "a rewrite in front of moodle.url is dropping the form body"
)
_STATUS_HINT = (
    "check that moodle.url is the site's wwwroot and that the REST protocol is enabled (Site "
    "administration > Server > Web services > Manage protocols)"
)


class MoodleClient(MoodleFunctions):
    """A Moodle REST web-service client for one site and token.

    Reads that take lists batch internally and merge; writes send exactly one HTTP call each
    (callers batch with :meth:`split`) and raise :class:`BatchTooLargeError` rather than send a
    call over ``field_limit``. Not meant to be shared between threads (``calls`` is a plain
    Counter).
    """

    def __init__(self, settings: MoodleSettings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.endpoint = settings.url.rstrip("/") + REST_PATH
        self.field_limit: int = settings.max_input_vars - settings.field_margin
        self.calls: collections.Counter[str] = collections.Counter()
        # Tenacity waits through this; tests replace it to record waits without sleeping.
        self.sleep: Callable[[float], None] = time.sleep
        if session is None:
            session = requests.Session()
            session.verify = settings.ca_bundle or True
            session.headers["User-Agent"] = "mentorsync"
        self.session = session

    def __repr__(self) -> str:
        host = urlsplit(self.endpoint).hostname
        return f"MoodleClient(host={host!r}, calls={sum(self.calls.values())})"

    # --- the wire ---------------------------------------------------------------------------

    def call(
        self, wsfunction: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> Any:
        """Call ``wsfunction`` with ``params`` and return the decoded JSON answer (None for void).

        Transient failures are retried with exponential backoff and jitter, at most
        ``retry_attempts`` attempts and ``retry_max_seconds`` in total. With ``write=True`` a call
        whose outcome cannot be known (read timeout, connection lost after sending, a 502/504
        gateway error, a non-JSON 200 answer) raises :class:`UnknownOutcomeError` unretried.
        ``dmlwriteexception`` is transient on a read; a write is resent once, and failing again
        raises :class:`MoodleWriteRefusedError` (the data's fault: the caller bisects).
        """
        fields = encode(params)
        total = PROTOCOL_FIELDS + len(fields)
        if total > self.field_limit:
            # PHP would drop the fields past max_input_vars without a word: never send it.
            raise BatchTooLargeError(
                f"Moodle {wsfunction}: {total} form fields, over the limit of {self.field_limit}"
            )
        if not write:
            return self._send(wsfunction, fields, write)
        try:
            return self._send(wsfunction, fields, write)
        except MoodleRecordError as exc:
            if exc.errorcode != DML_WRITE:
                raise
            first = exc
        # dmlwriteexception on a write: the enrolment-check race (nothing of the call ran) or
        # a value the database refuses. Every write function mentorsync calls runs in one
        # database transaction (or one per user, for core_user_update_users), so nothing of the
        # batch stayed: one resend is safe; failing again, it is the data's fault.
        log.warning("moodle %s: %s on a write, resending once", wsfunction, DML_WRITE)
        self.sleep(random.uniform(0, 1))  # jitter, as the read retries have
        try:
            return self._send(wsfunction, fields, write)
        except MoodleRecordError as exc:
            if exc.errorcode != DML_WRITE:
                raise
            raise MoodleWriteRefusedError(
                wsfunction, DML_WRITE, exc.exception, exc.upstream_message, exc.debuginfo
            ) from first

    def _send(self, wsfunction: str, fields: _Body, write: bool) -> Any:
        """POST ``fields`` with the protocol fields, retrying transient failures (see call)."""
        total = PROTOCOL_FIELDS + len(fields)
        body = [
            ("wstoken", self.settings.token.get()),
            ("wsfunction", wsfunction),
            ("moodlewsrestformat", "json"),
            *fields,
        ]
        s = self.settings
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(s.retry_attempts)
            | tenacity.stop_before_delay(s.retry_max_seconds),
            wait=tenacity.wait_random_exponential(multiplier=1, max=30),
            retry=tenacity.retry_if_exception_type(MoodleTransientError),
            sleep=lambda seconds: self.sleep(seconds),
            before_sleep=_log_retry,
            reraise=True,
        )
        log.debug("moodle call %s fields=%d write=%s", wsfunction, total, write)
        try:
            return retrying(self._attempt, wsfunction, body, write)
        except MoodleTransientError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            log.error(
                "moodle %s: %s, giving up after %d attempts", wsfunction, exc.errorcode, attempts
            )
            raise

    def _attempt(self, wsfunction: str, body: _Body, write: bool) -> Any:
        s = self.settings
        try:
            response = self.session.post(
                self.endpoint,
                data=body,
                timeout=(s.connect_timeout, s.read_timeout),
                allow_redirects=False,  # a redirect means a wrong URL; never resend elsewhere
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise MoodleTransientError(wsfunction, "connecttimeout") from exc
        except requests.exceptions.SSLError as exc:
            raise MoodleConfigurationError(
                wsfunction,
                "tlserror",
                hint="the TLS handshake failed: check moodle.url and moodle.ca_bundle",
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            self.calls[wsfunction] += 1
            self._after_send_failure(wsfunction, "readtimeout", write, exc)
        except requests.exceptions.ConnectionError as exc:
            if _never_sent(exc):
                raise MoodleTransientError(wsfunction, "connectionrefused") from exc
            self.calls[wsfunction] += 1
            self._after_send_failure(wsfunction, "connectionlost", write, exc)
        except requests.exceptions.RequestException as exc:
            # Broken chunked body, bad content encoding...: the request did go out.
            self.calls[wsfunction] += 1
            self._after_send_failure(wsfunction, "badresponse", write, exc)
        else:
            self.calls[wsfunction] += 1
            return self._decode(wsfunction, response, write, body)

    def _after_send_failure(
        self, wsfunction: str, code: str, write: bool, exc: Exception
    ) -> NoReturn:
        if write:
            log.warning("moodle %s: %s on a write, outcome unknown", wsfunction, code)
            raise UnknownOutcomeError(
                f"Moodle {wsfunction}: {code} after sending a write; re-read before retrying",
                wsfunction=wsfunction,
            ) from exc
        raise MoodleTransientError(wsfunction, code) from exc

    def _decode(
        self, wsfunction: str, response: requests.Response, write: bool, body: _Body
    ) -> Any:
        status = response.status_code
        if 300 <= status < 400:
            log.error(
                "moodle %s: HTTP %d redirect, moodle.url is not the wwwroot", wsfunction, status
            )
            raise MoodleProtocolError(wsfunction, f"redirect{status}", hint=_REDIRECT_HINT)
        if status == 403:
            # The REST server answers a bare 403 when web services or REST are disabled.
            hint = ERRORS["webservicesnotenabled"].hint
            raise configuration_error(wsfunction, f"http{status}", body, hint)
        if write and status in _GATEWAY_STATUSES:
            log.warning("moodle %s: HTTP %d on a write, outcome unknown", wsfunction, status)
            raise UnknownOutcomeError(
                f"Moodle {wsfunction}: HTTP {status} from a gateway on a write; re-read first",
                wsfunction=wsfunction,
            )
        if status >= 500 or status == 429:
            raise MoodleTransientError(wsfunction, f"http{status}")
        if status != 200:
            raise MoodleProtocolError(wsfunction, f"http{status}", hint=_STATUS_HINT)
        content = response.content
        if "xml" in response.headers.get("Content-Type", "") or content.lstrip().startswith(
            b"<?xml"
        ):
            log.error("moodle %s: XML answer, moodlewsrestformat=json not honoured", wsfunction)
            raise MoodleProtocolError(wsfunction, "xmlresponse", hint=_XML_HINT)
        try:
            data = json.loads(content)
        except ValueError:
            if write:
                # Moodle may have done the work, then printed a PHP notice before the JSON.
                log.warning("moodle %s: non-JSON answer to a write, outcome unknown", wsfunction)
                raise UnknownOutcomeError(
                    f"Moodle {wsfunction}: non-JSON answer to a write; re-read before retrying",
                    wsfunction=wsfunction,
                ) from None
            raise MoodleTransientError(wsfunction, "notjson") from None
        if isinstance(data, dict) and "exception" in data and "errorcode" in data:
            raise error_from_answer(wsfunction, data, body, write)
        return data

    # --- PHP's real max_input_vars ---------------------------------------------------------

    def fields_arrive(self, total: int, userid: int) -> bool:
        """Whether a call of ``total`` form fields reaches Moodle whole (the probe's one call).

        core_user_get_users_by_field by id with ``total - 4`` values: ``0`` (no such user) but
        the last, the integration user's own ``userid``. PHP drops the fields past its
        max_input_vars without a word, so that user comes back only when every field arrived.
        """
        if total < PROTOCOL_FIELDS + 2:
            raise ValueError(f"fields_arrive: total must be >= {PROTOCOL_FIELDS + 2}, got {total}")
        count = total - PROTOCOL_FIELDS - 1
        fields: _Body = [("field", "id")]
        fields += [(f"values[{i}]", "0") for i in range(count - 1)]
        fields.append((f"values[{count - 1}]", str(userid)))
        answer = self._send("core_user_get_users_by_field", fields, write=False)
        return any(isinstance(u, Mapping) and u.get("id") == userid for u in answer or [])

    # --- batching ---------------------------------------------------------------------------

    def split(
        self,
        list_key: str,
        items: Sequence[Mapping[str, Any]],
        extra: Mapping[str, Any] | None = None,
        max_items: int | None = None,
    ) -> list[list[Mapping[str, Any]]]:
        """Split ``items`` (sent as ``list_key[i]...``) into batches of one call each.

        Each batch's call, counting every form field (wstoken, wsfunction, moodlewsrestformat,
        ``extra`` and the items), stays within ``field_limit``, and holds at most ``max_items``
        (default ``settings.max_batch_items``) items. An item too big alone raises
        :class:`BatchTooLargeError`.
        """
        return split_items(
            list_key,
            items,
            base_fields=PROTOCOL_FIELDS + count_fields(dict(extra or {})),
            field_limit=self.field_limit,
            max_items=max_items or self.settings.max_batch_items,
        )

def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made (refused, unresolvable): nothing reached Moodle."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    code = getattr(error, "errorcode", "?")
    wsfunction = getattr(error, "wsfunction", "?")
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "moodle %s: %s, attempt %d failed, retrying in %.1fs",
        wsfunction,
        code,
        state.attempt_number,
        wait,
    )
