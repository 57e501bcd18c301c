"""sObject Collections writes: create, update, upsert and delete, 200 records a call.

``allOrNone`` is false, so Salesforce applies each record on its own and answers one result per
record, in input order: a per-record error is data (a :class:`RecordResult`), not an exception.
When a call fails as a whole, the exception carries ``completed_results``, the results of the
calls before it, so the caller knows which records were written. The request path (login,
retries, the write rule for creates) is the client's: :class:`CollectionWrites` is mixed into
:class:`~connector.clients.salesforce.client.SalesforceClient`.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import simple_salesforce

from connector.clients.salesforce import soql
from connector.errors import SalesforceError, UnknownOutcomeError

log = logging.getLogger(__name__)
T = TypeVar("T")

# sObject Collections take at most 200 records per call.
COLLECTION_SIZE = 200


@dataclass
class RecordResult:
    """The outcome of one record of a Collections call, in input order."""

    id: str | None
    success: bool
    created: bool | None
    # [{"statusCode", "message", "fields"}]; the message can quote data, so it is not in repr.
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_code(self) -> str:
        """The first error's ``statusCode`` (``DUPLICATE_VALUE``...), or "" on success."""
        return str(self.errors[0].get("statusCode", "")) if self.errors else ""

    def __repr__(self) -> str:
        codes = ",".join(str(e.get("statusCode", "")) for e in self.errors)
        return (
            f"RecordResult(id={self.id!r}, success={self.success}, created={self.created},"
            f" errors=[{codes}])"
        )


class CollectionWrites:
    """The Collections methods of the Salesforce client (see the module docstring)."""

    _request_kwargs: dict[str, Any]

    def _call(
        self,
        op: str,
        send: Callable[[simple_salesforce.Salesforce], T],
        *,
        idempotent: bool = True,
    ) -> T:
        raise NotImplementedError  # the client's request path

    def collection_create(self, sobject: str, records: Sequence[Mapping]) -> list[RecordResult]:
        """Create records (``POST /composite/sobjects``); one result per record, in order."""
        for n, record in enumerate(records):
            if "Id" in record:
                raise ValueError(f"collection_create({sobject}) record #{n}: must not have an Id")
        return self._collection(
            "collections.create", "POST", "composite/sobjects", sobject, records
        )

    def collection_update(self, sobject: str, records: Sequence[Mapping]) -> list[RecordResult]:
        """Update records by Id (``PATCH /composite/sobjects``); one result per record, in order."""
        for n, record in enumerate(records):
            soql.check_id(record.get("Id"), f"collection_update({sobject}) record #{n}")
        return self._collection(
            "collections.update", "PATCH", "composite/sobjects", sobject, records
        )

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping]
    ) -> list[RecordResult]:
        """Upsert records on an external id (``PATCH /composite/sobjects/{obj}/{field}``).

        ``created`` tells inserts from updates. One result per record, in order.
        """
        soql.check_name(external_id_field, "external id field")
        for n, record in enumerate(records):
            if record.get(external_id_field) in (None, ""):
                raise ValueError(
                    f"collection_upsert({sobject}) record #{n}: no {external_id_field} value"
                )
        path = f"composite/sobjects/{soql.check_name(sobject, 'object name')}/{external_id_field}"
        return self._collection("collections.upsert", "PATCH", path, sobject, records)

    def collection_delete(self, ids: Sequence[str]) -> list[RecordResult]:
        """Delete records by Id (``DELETE /composite/sobjects?ids=...&allOrNone=false``), 200 a
        call; one result per Id, in order. A record already gone answers ``ENTITY_IS_DELETED``
        (a per-record failure, as any other). Deleting again is harmless, so it is retried."""
        checked = [soql.check_id(i, f"collection_delete id #{n}") for n, i in enumerate(ids)]
        results: list[RecordResult] = []
        for start in range(0, len(checked), COLLECTION_SIZE):
            chunk = checked[start : start + COLLECTION_SIZE]
            params = {"ids": ",".join(chunk), "allOrNone": "false"}
            try:
                answer = self._call(
                    "collections.delete",
                    lambda sf, p=params: sf.restful(
                        "composite/sobjects", method="DELETE", params=p, **self._request_kwargs
                    ),
                )
                if not isinstance(answer, list) or len(answer) != len(chunk):
                    raise SalesforceError("UNEXPECTED_RESPONSE", 200, context="collections.delete")
            except (SalesforceError, UnknownOutcomeError) as exc:
                exc.completed_results = list(results)  # type: ignore[attr-defined]
                raise
            results.extend(_record_result(item, created_default=False) for item in answer)
        failed = sum(1 for r in results if not r.success)
        log.info(
            "salesforce collections.delete: %d records, %d ok, %d failed",
            len(results), len(results) - failed, failed,
        )
        return results

    def _collection(
        self, op: str, method: str, path: str, sobject: str, records: Sequence[Mapping]
    ) -> list[RecordResult]:
        """Send ``records`` in calls of at most 200 and map the results in input order.

        If a call fails as a whole, the exception carries ``completed_results``: the results of
        the calls before it, so the caller knows which records were written.
        """
        soql.check_name(sobject, "object name")
        results: list[RecordResult] = []
        for start in range(0, len(records), COLLECTION_SIZE):
            chunk = records[start : start + COLLECTION_SIZE]
            payload = json.dumps(
                {
                    "allOrNone": False,
                    "records": [
                        {
                            "attributes": {"type": sobject},
                            **{k: v for k, v in r.items() if k != "attributes"},
                        }
                        for r in chunk
                    ],
                },
                default=_json_default,
            )
            try:
                answer = self._call(
                    op,
                    lambda sf, p=payload: sf.restful(
                        path, method=method, data=p, **self._request_kwargs
                    ),
                    # Update by Id and upsert by external id can be repeated; a create cannot.
                    idempotent=op != "collections.create",
                )
                if not isinstance(answer, list) or len(answer) != len(chunk):
                    # Sent and accepted, but the outcome per record cannot be told.
                    raise SalesforceError("UNEXPECTED_RESPONSE", 200, context=op)
            except (SalesforceError, UnknownOutcomeError) as exc:
                exc.completed_results = list(results)  # type: ignore[attr-defined]
                raise
            results.extend(
                _record_result(item, created_default=op == "collections.create") for item in answer
            )
        failed = collections.Counter(r.error_code for r in results if not r.success)
        log.info(
            "salesforce %s %s: %d records, %d ok, %d failed %s",
            op,
            sobject,
            len(results),
            len(results) - sum(failed.values()),
            sum(failed.values()),
            dict(failed) if failed else "",
        )
        return results


def _record_result(item: Mapping[str, Any], *, created_default: bool) -> RecordResult:
    success = bool(item.get("success"))
    created = item.get("created")
    if created is None and created_default and success:
        created = True
    return RecordResult(
        id=item.get("id"), success=success, created=created, errors=list(item.get("errors") or [])
    )


def _json_default(value: Any) -> Any:
    """JSON for field values: datetimes as UTC ISO 8601, dates as YYYY-MM-DD."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a record (give it a time zone)")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} value to Salesforce")
