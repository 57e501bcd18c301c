"""Salesforce client: a thin layer over simple-salesforce with mentorsync's error policy.

simple-salesforce builds the REST URLs and sends the requests, over our own ``requests.Session``
(timeouts and CA bundle from settings). Around it this module adds what a sync needs:

- login done here (:mod:`connector.clients.salesforce.auth`), against ``settings.domain``;
- reads that stream page by page, with every value quoted
  (:mod:`connector.clients.salesforce.soql`);
- sObject Collections writes (:mod:`connector.clients.salesforce.sobject_collections`);
- errors classified on the ``errorCode`` of the JSON body, retried with tenacity when passing,
  one re-login on ``INVALID_SESSION_ID`` (simple-salesforce's own re-login can loop);
- the write rule (as the Moodle client's): a create is not idempotent, so when it may have
  happened without an answer (read timeout, connection lost after sending, HTTP 502/504 from a
  gateway, a 2xx that is not JSON) it raises :class:`UnknownOutcomeError` and is not retried.
  Salesforce documents 503 as "the server is unavailable to handle the request" and 500 as "an
  error has occurred within Lightning Platform, so the request couldn't be completed" (the
  transaction rolls back), so those, like 429, ``UNABLE_TO_LOCK_ROW`` and concurrent
  ``REQUEST_LIMIT_EXCEEDED``, are retried even for a create. Updates by Id and upserts by
  external id set fields to values: repeating them is harmless, so every passing fault is
  retried for them, as for reads;
- the daily API budget from ``Sforce-Limit-Info`` on every response.

Logs hold operation names, status and error codes and record counts: never bodies, SOQL, URLs
with queries, tokens, names or emails.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote_plus

import requests
import simple_salesforce
import tenacity
import urllib3.exceptions
from simple_salesforce.exceptions import SalesforceError as LibraryError

from connector.clients.salesforce import auth as salesforce_auth
from connector.clients.salesforce import soql
from connector.clients.salesforce.errors import rule_for
from connector.clients.salesforce.sobject_collections import CollectionWrites
from connector.config import SalesforceSettings
from connector.errors import (
    SalesforceAuthError,
    SalesforceBudgetError,
    SalesforceError,
    SalesforceRecordError,
    SalesforceSchemaError,
    SalesforceTransientError,
    UnknownOutcomeError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Gateways (Salesforce's edge, a corporate proxy) that may have passed the request on before
# failing: a create behind one may have happened.
GATEWAY_STATUSES = frozenset({502, 504})
# Ids per "Id IN (...)" query, and the most URL-encoded SOQL characters per GET: Salesforce
# refuses request URIs over 16,384 bytes, and the path and host need room too.
IDS_PER_QUERY = 300
MAX_ENCODED_SOQL = 15_000


@dataclass
class ApiBudget:
    """The org's daily API requests: used so far and the limit (``Sforce-Limit-Info``)."""

    used: int
    limit: int

    @property
    def share(self) -> float:
        """Used share of the daily limit (1.0 when the limit is unknown or zero)."""
        return self.used / self.limit if self.limit > 0 else 1.0


class SalesforceClient(CollectionWrites):
    """Salesforce REST client for mentorsync. Not thread-safe: one per worker thread."""

    def __init__(
        self,
        settings: SalesforceSettings,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.calls: collections.Counter[str] = collections.Counter()
        self.budget: ApiBudget | None = None
        # Org Id from the login answer, when the grant reports it ("" otherwise).
        self.org_id = ""
        self._sleep = sleep
        self._session = session or requests.Session()
        self._request_kwargs: dict[str, Any] = {
            "timeout": (settings.connect_timeout, settings.read_timeout),
            "hooks": {"response": [self._observe]},
        }
        if settings.ca_bundle:
            self._request_kwargs["verify"] = settings.ca_bundle
        self._sf: simple_salesforce.Salesforce | None = None

    def __repr__(self) -> str:
        return (
            f"SalesforceClient(domain={self.settings.domain!r}, auth={self.settings.auth!r},"
            f" logged_in={self._sf is not None})"
        )

    # --- session -----------------------------------------------------------------------------

    def login(self) -> None:
        """Log in with the configured grant (the other methods call this when needed)."""

        def exchange() -> salesforce_auth.LoginResult:
            return salesforce_auth.login(self.settings, self._session, self._request_kwargs)

        if self.settings.auth == "session":
            result = exchange()  # no HTTP call: nothing to count or retry
        else:
            result = self._retrying("login", exchange, idempotent=True)
        self.org_id = result.org_id
        # Direct session access: simple-salesforce makes no login call and, having no login
        # partial, never re-logs in (and so never loops) on a 401; that is handled in _call.
        self._sf = simple_salesforce.Salesforce(
            instance_url=result.instance_url,
            session_id=result.access_token.get(),
            session=self._session,
            version=self.settings.api_version,
            object_pairs_hook=dict,
        )
        log.info("salesforce login ok (auth=%s, org=%s)", self.settings.auth, self.org_id or "?")

    def check_budget(self) -> ApiBudget:
        """Return the API budget, refusing (``SalesforceBudgetError``) above the allowed share.

        Uses the last ``Sforce-Limit-Info`` seen; before any, reads ``DailyApiRequests`` from
        ``/limits``.
        """
        if self.budget is None:
            limits = self._call("limits", lambda sf: sf.limits(**self._request_kwargs))
            daily = (limits or {}).get("DailyApiRequests") or {}
            try:
                limit, remaining = int(daily["Max"]), int(daily["Remaining"])
            except (KeyError, TypeError, ValueError):
                raise SalesforceError("UNEXPECTED_RESPONSE", 200, context="limits") from None
            self.budget = ApiBudget(used=limit - remaining, limit=limit)
        budget = self.budget
        if budget.share > self.settings.max_budget_share:
            log.warning(
                "salesforce API budget: %d/%d used, above the allowed share %.2f",
                budget.used,
                budget.limit,
                self.settings.max_budget_share,
            )
            raise SalesforceBudgetError(
                "API_BUDGET_SHARE_EXCEEDED",
                context=(
                    f"check_budget: {budget.used}/{budget.limit} used, more than"
                    f" {self.settings.max_budget_share:.0%} (salesforce.max_budget_share)"
                ),
            )
        return budget

    # --- reads -------------------------------------------------------------------------------

    def query(self, soql_text: str, *, include_deleted: bool = False) -> Iterator[dict]:
        """Stream the records of a SOQL query, fetching the next page only when needed.

        ``include_deleted`` uses ``queryAll`` (deleted and merged records too). The
        ``attributes`` key is removed from every record, nested ones included.
        """
        op = "queryAll" if include_deleted else "query"
        page = self._call(
            op,
            lambda sf: sf.query(soql_text, include_deleted=include_deleted, **self._request_kwargs),
        )
        while True:
            records = page.get("records") or []
            log.debug("salesforce %s page: %d records", op, len(records))
            for record in records:
                yield _strip_attributes(record)
            if page.get("done", True):
                return
            next_url = page["nextRecordsUrl"]
            page = self._call(
                "queryMore",
                lambda sf, url=next_url: sf.query_more(
                    url, identifier_is_url=True, **self._request_kwargs
                ),
            )

    def changed_since(
        self,
        sobject: str,
        fields: Sequence[str],
        since: dt.datetime | None,
        *,
        lookback: dt.timedelta,
        run_start: dt.datetime,
        where: str = "",
    ) -> Iterator[dict]:
        """Stream records with ``since - lookback <= SystemModstamp <= run_start``, in
        ``SystemModstamp, Id`` order (every record if ``since`` is None).

        The look-back re-reads a margin before the cursor (clock skew, late commits, several
        records sharing one stamp); reconciling is idempotent, so re-reading is harmless.
        ``Id`` and ``SystemModstamp`` are always selected. ``where`` is an extra SOQL condition
        the caller built with :mod:`connector.clients.salesforce.soql`; it is ANDed in parentheses.
        """
        wanted = list(fields)
        for required in ("Id", "SystemModstamp"):
            if required.lower() not in {f.lower() for f in wanted}:
                wanted.append(required)
        conditions = []
        if since is not None:
            conditions.append(f"SystemModstamp >= {soql.datetime_literal(since - lookback)}")
        conditions.append(f"SystemModstamp <= {soql.datetime_literal(run_start)}")
        if where.strip():
            conditions.append(f"({where})")
        statement = (
            f"{soql.select(sobject, wanted)} WHERE {' AND '.join(conditions)}"
            " ORDER BY SystemModstamp, Id"
        )
        return self.query(statement)

    def get_by_ids(
        self,
        sobject: str,
        fields: Sequence[str],
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
    ) -> Iterator[dict]:
        """Stream the records with these Ids, in as few ``Id IN (...)`` queries as the URL
        length allows (at most 300 Ids each). Order is Salesforce's, not the input's.
        """
        unique = list(
            dict.fromkeys(
                soql.check_id(i, f"get_by_ids({sobject}) id #{n}") for n, i in enumerate(ids)
            )
        )
        prefix = f"{soql.select(sobject, fields)} WHERE Id IN "
        return self._chunked_queries(prefix, unique, include_deleted)

    def _chunked_queries(
        self, prefix: str, ids: list[str], include_deleted: bool
    ) -> Iterator[dict]:
        for chunk in _id_chunks(prefix, ids):
            yield from self.query(prefix + soql.in_list(chunk), include_deleted=include_deleted)

    def get_deleted(self, sobject: str, start: dt.datetime, end: dt.datetime) -> list[dict]:
        """Records of ``sobject`` deleted between ``start`` and ``end``: ``[{"id","deletedDate"}]``.

        Only recent deletions are kept (the recycle bin's retention); an older ``start`` is
        refused with ``INVALID_REPLICATION_DATE`` (raised as :class:`SalesforceError`).
        """
        params = {"start": _iso(start), "end": _iso(end)}
        path = f"sobjects/{soql.check_name(sobject, 'object name')}/deleted/"
        body = self._call(
            "getDeleted", lambda sf: sf.restful(path, params=params, **self._request_kwargs)
        )
        records = list((body or {}).get("deletedRecords") or [])
        log.info("salesforce getDeleted %s: %d records", sobject, len(records))
        return records

    def describe(self, sobject: str) -> dict:
        """The describe result of ``sobject`` (fields, their types, picklist values...)."""
        path = f"sobjects/{soql.check_name(sobject, 'object name')}/describe"
        try:
            return self._call("describe", lambda sf: sf.restful(path, **self._request_kwargs)) or {}
        except SalesforceRecordError as exc:
            if exc.error_code != "NOT_FOUND":
                raise
            # An unknown object answers 404 NOT_FOUND here: a schema problem, not a record's.
            raise SalesforceSchemaError(
                exc.error_code, exc.status, exc.upstream_message, exc.fields, f"describe {sobject}"
            ) from None

    # --- the request path --------------------------------------------------------------------

    def _call(
        self,
        op: str,
        send: Callable[[simple_salesforce.Salesforce], T],
        *,
        idempotent: bool = True,
    ) -> T:
        """Run one API operation: log in if needed, retry passing faults, re-login once.

        ``idempotent=False`` (a create) applies the write rule: a failure that may have come
        after Salesforce did the work raises :class:`UnknownOutcomeError`, unretried.

        A second ``INVALID_SESSION_ID`` right after a fresh login means the credentials or the
        session policy are wrong: it is raised as :class:`SalesforceAuthError`.
        """
        relogged = False
        while True:
            if self._sf is None:
                self.login()
            connection = self._sf
            if connection is None:  # pragma: no cover  (login() sets it or raises)
                raise SalesforceAuthError("NOT_LOGGED_IN", context=op)
            try:
                return self._retrying(op, lambda c=connection: send(c), idempotent=idempotent)
            except SalesforceAuthError as exc:
                if exc.error_code != "INVALID_SESSION_ID" or relogged:
                    raise
                if self.settings.auth == "session":
                    raise SalesforceAuthError(
                        "INVALID_SESSION_ID",
                        exc.status,
                        context=f"{op} (salesforce.session_id expired; no other credentials)",
                    ) from None
                log.info("salesforce %s: INVALID_SESSION_ID, logging in again", op)
                relogged = True
                self._sf = None

    def _retrying(self, op: str, attempt: Callable[[], T], *, idempotent: bool) -> T:
        """Call ``attempt`` with tenacity: passing faults are retried, with backoff and jitter."""
        retryer = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(SalesforceTransientError),
            stop=(
                tenacity.stop_after_attempt(self.settings.retry_attempts)
                # Never start a wait that would end past the total budget.
                | tenacity.stop_before_delay(self.settings.retry_max_seconds)
            ),
            wait=tenacity.wait_random_exponential(
                multiplier=0.5, max=min(30.0, self.settings.retry_max_seconds)
            ),
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(op, state),
            reraise=True,
        )
        return retryer(self._attempt, op, attempt, idempotent)

    def _attempt(self, op: str, attempt: Callable[[], T], idempotent: bool) -> T:
        """One HTTP call, with every failure turned into a mentorsync error."""
        self.calls[op] += 1
        try:
            return attempt()
        except LibraryError as exc:
            if not idempotent and exc.status in GATEWAY_STATUSES:
                log.warning(
                    "salesforce %s: HTTP %s from a gateway, outcome unknown", op, exc.status
                )
                raise UnknownOutcomeError(
                    f"Salesforce {op}: HTTP {exc.status} from a gateway; the write may or may not"
                    " have happened",
                    operation=op,
                ) from None
            error = classify(op, exc.status, exc.content)
            log.warning("salesforce %s: HTTP %s %s", op, exc.status, error.error_code)
            raise error from None
        except requests.exceptions.SSLError:
            log.error("salesforce %s: TLS verification failed", op)
            raise SalesforceError(
                "TLS_ERROR", context=f"{op} (check salesforce.ca_bundle)"
            ) from None
        except requests.RequestException as exc:
            # Includes a non-JSON body answered with 2xx (requests' JSONDecodeError).
            kind = type(exc).__name__
            if not idempotent and not _never_sent(exc):
                log.warning("salesforce %s: %s after sending, outcome unknown", op, kind)
                raise UnknownOutcomeError(
                    f"Salesforce {op}: {kind}; the write may or may not have happened",
                    operation=op,
                ) from None
            log.warning("salesforce %s: %s", op, kind)
            raise SalesforceTransientError(kind, context=op) from None

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Response hook: track the daily API budget from every answer."""
        info = response.headers.get("Sforce-Limit-Info")
        if info:
            usage = simple_salesforce.Salesforce.parse_api_usage(info).get("api-usage")
            if usage is not None:
                self.budget = ApiBudget(used=usage.used, limit=usage.total)
        log.debug("salesforce HTTP %s", response.status_code)


def classify(op: str, status: int, content: Any) -> SalesforceError:
    """Turn an error answer into the matching error, by the table in :mod:`.errors`."""
    first = content[0] if isinstance(content, list) and content else {}
    if not isinstance(first, dict):
        first = {}
    code = str(first.get("errorCode") or f"HTTP_{status}")
    message = str(first.get("message") or "")
    fields = [str(f) for f in first.get("fields") or []]
    rule = rule_for(code, status, message)
    error = rule.error(code, status, message, fields, op)
    error.hint = rule.hint
    return error


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach Salesforce (safe to repeat a write)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _log_retry(op: str, state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    code = getattr(exc, "error_code", type(exc).__name__)
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("salesforce %s: %s, retry %d in %.1fs", op, code, state.attempt_number, wait)


def _strip_attributes(value: Any) -> Any:
    """Drop the ``attributes`` key from a record and from nested relationship records."""
    if isinstance(value, dict):
        return {k: _strip_attributes(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [_strip_attributes(v) for v in value]
    return value


def _id_chunks(prefix: str, ids: list[str]) -> Iterator[list[str]]:
    """Split ``ids`` so each ``prefix + IN list`` stays within IDS_PER_QUERY and the URL limit."""
    budget = MAX_ENCODED_SOQL - len(quote_plus(prefix)) - len(quote_plus("()"))
    chunk: list[str] = []
    used = 0
    for record_id in ids:
        cost = len(quote_plus(soql.quote(record_id) + ","))
        if chunk and (len(chunk) >= IDS_PER_QUERY or used + cost > budget):
            yield chunk
            chunk, used = [], 0
        if cost > budget:
            raise ValueError("get_by_ids: the field list leaves no room for Ids in the query URL")
        chunk.append(record_id)
        used += cost
    if chunk:
        yield chunk


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("get_deleted: naive datetime (give it a time zone, e.g. UTC)")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
