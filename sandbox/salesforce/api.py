"""The REST resources of the sandbox org, as plain functions of (sandbox, request, path parts).

Each handler returns ``(status, body)``; ``body`` is JSON-ready, or None for an empty answer.
Errors are raised as :class:`ApiError` and rendered by the server as Salesforce's error list
``[{"message", "errorCode", "fields"}]``. Per-record errors of sObject Collections are returned
inside HTTP 200 as ``{"success": false, "errors": [{"statusCode", "message", "fields"}]}``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from sandbox.salesforce import soql
from sandbox.salesforce.ids import normalize_id
from sandbox.salesforce.schema import OBJECTS, ObjectDef, object_def
from sandbox.salesforce.store import MultipleMatches, RecordError, RecordNotFound, error
from sandbox.salesforce.values import format_datetime, parse_datetime

if TYPE_CHECKING:
    from sandbox.salesforce.server import SalesforceSandbox

MAX_COLLECTION = 200
# How long the recycle bin keeps deletions visible to getDeleted, as in Salesforce.
RECYCLE_DAYS = 15


class ApiError(Exception):
    """An HTTP error answer: status, Salesforce error code and message."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: Sequence[str] = ()
    ) -> None:
        super().__init__(error_code)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = list(fields)

    def body(self) -> list[dict[str, Any]]:
        """Salesforce's error body."""
        return [{"message": self.message, "errorCode": self.error_code, "fields": self.fields}]


def not_found() -> ApiError:
    """The 404 Salesforce answers for an unknown resource or record."""
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


def record_error(exc: RecordError) -> ApiError:
    """A single-record write's :class:`RecordError` as an HTTP error."""
    if isinstance(exc, RecordNotFound):
        return not_found()
    first = exc.errors[0]
    status = 404 if first["statusCode"] in ("NOT_FOUND", "ENTITY_IS_DELETED") else 400
    return ApiError(status, first["statusCode"], first["message"], first["fields"])


@dataclass
class Cursor:
    """A query's materialized result: pages are slices of ``ids``."""

    query: soql.Query
    ids: list[str]


Result = tuple[int, Any]


# -- query ----------------------------------------------------------------------------------


def query(sf: SalesforceSandbox, request: Request, version: str, include_deleted: bool) -> Result:
    """``GET query?q=`` and ``GET queryAll?q=``: the first page."""
    text = request.args.get("q")
    if not text:
        raise ApiError(400, "MALFORMED_QUERY", "A query string must be provided in the q parameter")
    try:
        parsed = soql.parse(text)
    except soql.SoqlError as exc:
        raise ApiError(400, exc.error_code, exc.message) from None
    ids = sf.store.run_query(parsed, include_deleted)
    if parsed.count_only:
        return 200, {"totalSize": len(ids), "done": True, "records": []}
    return 200, _page(sf, Cursor(parsed, ids), "", 0, version, _batch_size(sf, request))


def query_more(sf: SalesforceSandbox, request: Request, version: str, locator: str) -> Result:
    """``GET query/01g...-2000``: the next page of a materialized result."""
    key, _, offset_text = locator.rpartition("-")
    cursor = sf.cursors.get(key)
    if cursor is None or not offset_text.isdigit() or int(offset_text) > len(cursor.ids):
        raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return 200, _page(sf, cursor, key, int(offset_text), version, _batch_size(sf, request))


def _batch_size(sf: SalesforceSandbox, request: Request) -> int:
    """The page size: the sandbox's (2,000), or a smaller ``Sforce-Query-Options: batchSize``."""
    size = sf.page_size
    for option in request.headers.get("Sforce-Query-Options", "").split(","):
        name, _, value = option.strip().partition("=")
        if name.strip().lower() == "batchsize" and value.strip().isdigit():
            size = min(size, max(200, int(value.strip())))
    return size


def _page(
    sf: SalesforceSandbox, cursor: Cursor, key: str, offset: int, version: str, size: int
) -> dict[str, Any]:
    end = min(offset + size, len(cursor.ids))
    with sf.store.lock:
        sobject = cursor.query.sobject.name
        records = [
            cursor.query.render(record, sf.store.lookup, version)
            for record_id in cursor.ids[offset:end]
            if (record := sf.store.lookup(sobject, record_id)) is not None
        ]
    body: dict[str, Any] = {"totalSize": len(cursor.ids), "done": end >= len(cursor.ids)}
    if end < len(cursor.ids):
        key = key or sf.cursors.add(cursor)
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{key}-{end}"
    elif key:
        sf.cursors.discard(key)
    body["records"] = records
    return body


class Cursors:
    """Open query locators, oldest dropped first past ``limit`` (Salesforce keeps 10 per user)."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self._lock = threading.Lock()  # request threads add and read concurrently
        self._cursors: dict[str, Cursor] = {}

    def add(self, cursor: Cursor) -> str:
        """Keep ``cursor``; return its locator (``01g`` + 15 characters)."""
        key = "01g" + secrets.token_hex(8)[:15]
        with self._lock:
            self._cursors[key] = cursor
            while len(self._cursors) > self.limit:
                self._cursors.pop(next(iter(self._cursors)))
        return key

    def get(self, key: str) -> Cursor | None:
        """The cursor of ``key``, or None if unknown or dropped."""
        with self._lock:
            return self._cursors.get(key)

    def discard(self, key: str) -> None:
        """Forget a finished cursor."""
        with self._lock:
            self._cursors.pop(key, None)


# -- org resources --------------------------------------------------------------------------


def limits(sf: SalesforceSandbox) -> Result:
    """``GET limits``."""
    used, limit = sf.api_usage()
    return 200, {
        "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        "DataStorageMB": {"Max": 1024, "Remaining": 1000},
    }


def describe_global(version: str) -> Result:
    """``GET sobjects``."""
    return 200, {
        "encoding": "UTF-8",
        "maxBatchSize": MAX_COLLECTION,
        "sobjects": [
            {
                k: v
                for k, v in o.describe(version).items()
                if k not in ("fields", "childRelationships", "recordTypeInfos")
            }
            for o in OBJECTS.values()
        ],
    }


def sobject_info(odef: ObjectDef, version: str) -> Result:
    """``GET sobjects/{obj}``: the object's basic information."""
    info = {
        k: v
        for k, v in odef.describe(version).items()
        if k not in ("fields", "childRelationships", "recordTypeInfos")
    }
    return 200, {"objectDescribe": info, "recentItems": []}


def resources(version: str) -> Result:
    """``GET /services/data/vXX.X/``."""
    base = f"/services/data/v{version}"
    return 200, {
        "limits": f"{base}/limits",
        "query": f"{base}/query",
        "queryAll": f"{base}/queryAll",
        "sobjects": f"{base}/sobjects",
        "composite": f"{base}/composite",
    }


def get_deleted(sf: SalesforceSandbox, request: Request, odef: ObjectDef) -> Result:
    """``GET sobjects/{obj}/deleted/?start=&end=``.

    Salesforce rounds the window to whole minutes; the sandbox keeps whole seconds (its
    timestamps' precision) so a test sees a deletion without waiting for the next minute.
    ``latestDateCovered`` is ``end``, or now if ``end`` is in the future.
    """
    try:
        start = _second(parse_datetime(request.args["start"]))
        end = _second(parse_datetime(request.args["end"]))
    except KeyError as exc:
        raise ApiError(400, "MISSING_ARGUMENT", f"{exc.args[0]} not specified") from None
    except ValueError:
        raise ApiError(
            400, "INVALID_REPLICATION_DATE", "start and end must be ISO 8601 date-times"
        ) from None
    # min(): a test may set the clock back before the org was made.
    created = min(sf.created_at, sf.clock())
    earliest = (created - dt.timedelta(days=RECYCLE_DAYS)).replace(second=0, microsecond=0)
    if start > end:
        raise ApiError(
            400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate"
        )
    if start < earliest:
        raise ApiError(
            400, "INVALID_REPLICATION_DATE", "startDate before org replication enabled date"
        )
    covered = min(end, _second(sf.clock()))
    return 200, {
        "deletedRecords": sf.store.deleted_between(odef.name, start, covered),
        "earliestDateAvailable": format_datetime(earliest),
        "latestDateCovered": format_datetime(covered),
    }


def _second(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


# -- single records -------------------------------------------------------------------------


def get_record(
    sf: SalesforceSandbox, request: Request, odef: ObjectDef, record_id: str, version: str
) -> Result:
    """``GET sobjects/{obj}/{id}?fields=``."""
    record = sf.store.get(odef.name, record_id)
    if record is None:
        raise not_found()
    if record["IsDeleted"]:
        raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
    return 200, _render(odef, record, request.args.get("fields"), version)


def get_by_external(
    sf: SalesforceSandbox,
    request: Request,
    odef: ObjectDef,
    field_name: str,
    value: str,
    version: str,
) -> Result:
    """``GET sobjects/{obj}/{extfield}/{value}``."""
    try:
        ext = sf.store.external_field(odef, field_name)
    except RecordError as exc:
        raise record_error(exc) from None
    ids = sf.store.find_external(odef.name, ext.name, value)
    if not ids:
        raise not_found()
    if len(ids) > 1:
        return 300, [f"/services/data/v{version}/sobjects/{odef.name}/{i}" for i in ids]
    record = sf.store.get(odef.name, ids[0])
    assert record is not None
    return 200, _render(odef, record, request.args.get("fields"), version)


def _render(odef: ObjectDef, record: dict, fields_param: str | None, version: str) -> dict:
    names = odef.field_names
    if fields_param:
        names = []
        for name in fields_param.split(","):
            f = odef.field(name.strip())
            if f is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name.strip()}' on entity '{odef.name}'.",
                )
            names.append(f.name)
    out: dict[str, Any] = {
        "attributes": {
            "type": odef.name,
            "url": f"/services/data/v{version}/sobjects/{odef.name}/{record['Id']}",
        }
    }
    for name in names:
        out[name] = record.get(name)
    return out


def create_record(sf: SalesforceSandbox, request: Request, odef: ObjectDef) -> Result:
    """``POST sobjects/{obj}``: 201 ``{"id","success","errors"}``."""
    body = _json_object(request)
    try:
        record_id = sf.store.create(odef.name, body)
    except RecordError as exc:
        raise record_error(exc) from None
    return 201, {"id": record_id, "success": True, "errors": []}


def update_record(
    sf: SalesforceSandbox, request: Request, odef: ObjectDef, record_id: str
) -> Result:
    """``PATCH sobjects/{obj}/{id}``: 204."""
    body = _json_object(request)
    try:
        sf.store.update(odef.name, record_id, body)
    except RecordError as exc:
        raise record_error(exc) from None
    return 204, None


def delete_record(sf: SalesforceSandbox, odef: ObjectDef, record_id: str) -> Result:
    """``DELETE sobjects/{obj}/{id}``: 204."""
    try:
        sf.store.delete(odef.name, record_id)
    except RecordError as exc:
        raise record_error(exc) from None
    return 204, None


def upsert_record(
    sf: SalesforceSandbox,
    request: Request,
    odef: ObjectDef,
    field_name: str,
    value: str,
    version: str,
) -> Result:
    """``PATCH sobjects/{obj}/{extfield}/{value}``: 201 created, 200 updated, 300 several."""
    body = _json_object(request)
    try:
        record_id, created = sf.store.upsert(odef.name, field_name, value, body)
    except MultipleMatches as exc:
        return 300, [f"/services/data/v{version}/sobjects/{odef.name}/{i}" for i in exc.ids]
    except RecordError as exc:
        raise record_error(exc) from None
    return (201 if created else 200), {
        "id": record_id,
        "success": True,
        "errors": [],
        "created": created,
    }


# -- sObject Collections --------------------------------------------------------------------


def collection_write(
    sf: SalesforceSandbox, request: Request, kind: str, sobject: str = "", ext_field: str = ""
) -> Result:
    """``POST|PATCH composite/sobjects[/{obj}/{extfield}]``: 200 and one result per record."""
    body = _json_object(request)
    records = body.get("records")
    if not isinstance(records, list):
        raise ApiError(400, "JSON_PARSER_ERROR", "records: expected a list of records")
    if len(records) > MAX_COLLECTION:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this "
            "call",
        )
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone: expected true or false")
    odefs = [_record_type(r, sobject) for r in records]
    if kind == "upsert":
        odef = object_def(sobject)
        if odef is None:
            raise not_found()
        try:
            ext = sf.store.external_field(odef, ext_field)
        except RecordError as exc:
            raise record_error(exc) from None
        duplicates = _duplicate_values(records, ext.name)

        def apply(record: dict, odef: ObjectDef) -> dict:
            value = _field_value(record, ext.name)
            if value in (None, ""):
                raise RecordError(
                    [error("MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])]
                )
            if str(value).casefold() in duplicates:
                raise RecordError(
                    [
                        error(
                            "DUPLICATE_EXTERNAL_ID",
                            "Duplicate external id specified in this request",
                            [ext.name],
                        )
                    ]
                )
            try:
                record_id, created = sf.store.upsert(odef.name, ext.name, str(value), record)
            except MultipleMatches as exc:
                raise RecordError(
                    [
                        error(
                            "DUPLICATE_EXTERNAL_ID",
                            f"{ext.name}: more than one record found for external id field: "
                            f"[{', '.join(exc.ids)}]",
                            [ext.name],
                        )
                    ]
                ) from None
            return {"id": record_id, "success": True, "errors": [], "created": created}

    elif kind == "create":

        def apply(record: dict, odef: ObjectDef) -> dict:
            return {"id": sf.store.create(odef.name, record), "success": True, "errors": []}

    else:

        def apply(record: dict, odef: ObjectDef) -> dict:
            record_id = _field_value(record, "Id")
            if not record_id:
                raise RecordError([error("MISSING_ARGUMENT", "Id not specified in an update call")])
            if normalize_id(str(record_id)) is None:
                raise RecordError([error("MALFORMED_ID", "Id: id value of incorrect type", ["Id"])])
            sf.store.update(odef.name, str(record_id), record)
            return {"id": normalize_id(str(record_id)), "success": True, "errors": []}

    return 200, _apply_all(sf, records, odefs, apply, all_or_none)


class _Rollback(Exception):
    pass


def _apply_all(
    sf: SalesforceSandbox,
    records: list[dict],
    odefs: list[ObjectDef],
    apply: Callable[[dict, ObjectDef], dict],
    all_or_none: bool,
) -> list[dict]:
    results: list[dict] = []

    def one(record: dict, odef: ObjectDef) -> tuple[dict, bool]:
        try:
            return apply(record, odef), True
        except RecordError as exc:
            failed: dict[str, Any] = {"success": False, "errors": exc.errors}
            known = _field_value(record, "Id")
            if known and normalize_id(str(known)):
                failed = {"id": normalize_id(str(known)), **failed}
            return failed, False

    if not all_or_none:
        return [one(r, o)[0] for r, o in zip(records, odefs, strict=True)]
    try:
        with sf.store.transaction():
            ok = True
            for record, odef in zip(records, odefs, strict=True):
                result, success = one(record, odef)
                results.append(result)
                ok = ok and success
            if not ok:
                raise _Rollback
    except _Rollback:
        rolled_back = error(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using "
            "AllOrNone header",
        )
        results = [
            {"success": False, "errors": [rolled_back]} if r["success"] else r for r in results
        ]
    return results


def _record_type(record: Any, url_sobject: str) -> ObjectDef:
    if not isinstance(record, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "each record must be a JSON object")
    attributes = record.get("attributes")
    name = attributes.get("type") if isinstance(attributes, dict) else None
    name = name or url_sobject
    odef = object_def(name) if isinstance(name, str) else None
    if odef is None or (url_sobject and odef.name.lower() != url_sobject.lower()):
        raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
    return odef


def _field_value(record: dict, name: str) -> Any:
    for key, value in record.items():
        if key.lower() == name.lower():
            return value
    return None


def _duplicate_values(records: list[dict], ext_name: str) -> set[str]:
    seen: set[str] = set()
    duplicates: set[str] = set()
    for record in records:
        value = _field_value(record, ext_name)
        if value in (None, ""):
            continue
        key = str(value).casefold()
        (duplicates if key in seen else seen).add(key)
    return duplicates


def collection_retrieve(
    sf: SalesforceSandbox, request: Request, odef: ObjectDef, version: str
) -> Result:
    """``GET composite/sobjects/{obj}?ids=&fields=``: records in order, null for unknown."""
    ids = [i for i in request.args.get("ids", "").split(",") if i]
    if not ids or not request.args.get("fields"):
        raise ApiError(400, "MISSING_ARGUMENT", "ids and fields are required")
    if len(ids) > 2000:
        raise ApiError(400, "EXCEEDED_ID_LIMIT", "cannot retrieve more than 2000 records")
    out = []
    for record_id in ids:
        record = sf.store.get(odef.name, record_id)
        if record is None or record["IsDeleted"]:
            out.append(None)
        else:
            out.append(_render(odef, record, request.args.get("fields"), version))
    return 200, out


def collection_delete(sf: SalesforceSandbox, request: Request) -> Result:
    """``DELETE composite/sobjects?ids=``: one result per Id."""
    ids = [i for i in request.args.get("ids", "").split(",") if i]
    if len(ids) > MAX_COLLECTION:
        raise ApiError(400, "EXCEEDED_ID_LIMIT", "cannot delete more than 200 records")
    out = []
    for record_id in ids:
        normalized = normalize_id(record_id)
        target = next(
            (o for o in OBJECTS.values() if normalized and normalized.startswith(o.key_prefix)),
            None,
        )
        try:
            if target is None:
                raise RecordError([error("MALFORMED_ID", "malformed id")])
            sf.store.delete(target.name, record_id)
            out.append({"id": normalized, "success": True, "errors": []})
        except RecordError as exc:
            out.append({"id": normalized, "success": False, "errors": exc.errors})
    return 200, out


def _json_object(request: Request) -> dict:
    try:
        body = json.loads(request.get_data() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body
