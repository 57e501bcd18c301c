"""The sandbox org's records: validated writes, system fields, deletes and merges, persistence.

Every write goes through the same checks as the REST API (unknown field, read-only field, type,
length, required fields, lookups that must exist, unique external ids) and raises
:class:`RecordError` with Salesforce's ``statusCode`` values. Every write stamps
``SystemModstamp`` and ``LastModifiedDate`` and tells the listeners (the Outbound Message
deliverer) what changed. Deleted records stay, with ``IsDeleted`` true, as in the recycle bin:
``queryAll`` sees them, ``query`` does not.

One re-entrant lock guards everything; callers that need several operations to be atomic (an
all-or-none collection call) hold ``store.lock`` around them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sandbox.salesforce import soql
from sandbox.salesforce.ids import make_id, normalize_id
from sandbox.salesforce.schema import (
    AUTO_NUMBER_FORMATS,
    OBJECTS,
    FieldDef,
    ObjectDef,
    object_def,
    object_for_id,
)
from sandbox.salesforce.values import FieldValueError, coerce, format_datetime

Record = dict[str, Any]
# listener(object name, record snapshot, names of fields whose value changed, created?)
Listener = Callable[[str, Record, frozenset[str], bool], None]


class RecordError(Exception):
    """A write Salesforce would refuse; ``errors`` as in a collection result."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(", ".join(e["statusCode"] for e in errors))
        self.errors = errors

    @property
    def status_code(self) -> str:
        """The first error's code."""
        return self.errors[0]["statusCode"]


class RecordNotFound(RecordError):
    """No record with that Id (the single-record REST endpoints answer 404)."""


class MultipleMatches(Exception):
    """An upsert's external id value matches several records (HTTP 300)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.ids = ids


def error(status_code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    """One per-record error entry."""
    return {"statusCode": status_code, "message": message, "fields": list(fields)}


class Store:
    """Records by object, with the indexes the API needs."""

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC))
        self.listeners: list[Listener] = []
        self._records: dict[str, dict[str, Record]] = {name: {} for name in OBJECTS}
        self._counters: dict[str, int] = dict.fromkeys(OBJECTS, 0)
        self._auto_numbers: dict[str, int] = dict.fromkeys(OBJECTS, 0)
        # (object, external id field) -> value (case-folded unless the field is case-sensitive,
        # as its metadata says) -> ids (deleted records included)
        self._ext_index: dict[tuple[str, str], dict[str, set[str]]] = {
            (o.name, f.name): {} for o in OBJECTS.values() for f in o.fields if f.external_id
        }
        self._ext_case: dict[tuple[str, str], bool] = {
            (o.name, f.name): f.case_sensitive
            for o in OBJECTS.values()
            for f in o.fields
            if f.external_id
        }
        # object -> id -> deletedDate, for getDeleted
        self._deleted: dict[str, dict[str, str]] = {name: {} for name in OBJECTS}
        # Inside transaction(): (object, id, record before or None if inserted, deletedDate
        # before), and the notifications held back until commit.
        self._journal: list[tuple[str, str, Record | None, str | None]] | None = None
        self._held: list[tuple[str, Record, frozenset[str], bool]] = []

    # -- reads -------------------------------------------------------------------------------

    def get(self, sobject: str, record_id: str) -> Record | None:
        """A copy of the record (deleted ones included), or None. Accepts 15- or 18-char Ids."""
        odef = _object(sobject)
        normalized = normalize_id(record_id)
        with self.lock:
            record = self._records[odef.name].get(normalized or "")
            return dict(record) if record is not None else None

    def find(self, sobject: str, include_deleted: bool = False, **equals: Any) -> list[Record]:
        """Copies of the records whose fields equal ``equals`` exactly (a test helper)."""
        odef = _object(sobject)
        with self.lock:
            return [
                dict(r)
                for r in self._records[odef.name].values()
                if (include_deleted or not r["IsDeleted"])
                and all(r.get(k) == v for k, v in equals.items())
            ]

    def count(self, sobject: str, include_deleted: bool = False) -> int:
        """How many records ``sobject`` has."""
        odef = _object(sobject)
        with self.lock:
            records = self._records[odef.name].values()
            if include_deleted:
                return len(records)
            return sum(1 for r in records if not r["IsDeleted"])

    def lookup(self, sobject: str, record_id: str) -> Record | None:
        """The stored record itself (not a copy), for the query engine; hold ``lock``."""
        return self._records[sobject].get(record_id)

    def run_query(self, query: soql.Query, include_deleted: bool) -> list[str]:
        """The Ids a parsed query selects, sorted and limited."""
        with self.lock:
            return query.run(
                self._records[query.sobject.name].values(), self.lookup, include_deleted
            )

    def select(self, text: str, include_deleted: bool = False) -> list[Record]:
        """Run a SOQL query without HTTP (a test helper): records without ``attributes``."""
        query = soql.parse(text)
        with self.lock:
            ids = self.run_query(query, include_deleted)
            out = []
            for record_id in ids:
                rendered = query.render(
                    self._records[query.sobject.name][record_id], self.lookup, ""
                )
                rendered.pop("attributes")
                out.append(rendered)
            return out

    def deleted_between(
        self, sobject: str, start: dt.datetime, end: dt.datetime
    ) -> list[dict[str, str]]:
        """``[{"id", "deletedDate"}]`` for records of ``sobject`` deleted in [start, end]."""
        odef = _object(sobject)
        low, high = format_datetime(start), format_datetime(end)
        with self.lock:
            return [
                {"id": record_id, "deletedDate": when}
                for record_id, when in sorted(self._deleted[odef.name].items(), key=lambda i: i[1])
                if low <= when <= high
            ]

    def find_external(self, sobject: str, field_name: str, value: str) -> list[str]:
        """Ids of live records whose external id field ``field_name`` equals ``value``."""
        with self.lock:
            index = self._ext_index.get((sobject, field_name), {})
            ids = index.get(self._ext_key(sobject, field_name, value), set())
            return sorted(i for i in ids if not self._records[sobject][i]["IsDeleted"])

    # -- writes ------------------------------------------------------------------------------

    def create(self, sobject: str, fields: Mapping[str, Any], *, notify: bool = True) -> str:
        """Insert a record; return its Id. Raises :class:`RecordError`."""
        odef = _object(sobject)
        with self.lock:
            values = self.check(odef, fields, creating=True)
            return self._insert(odef, values, notify=notify)

    def bulk_insert(self, sobject: str, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert many records without Outbound Messages (seeding). Stops at the first bad row."""
        odef = _object(sobject)
        ids = []
        with self.lock:
            now = self.now()
            for number, row in enumerate(rows):
                try:
                    values = self.check(odef, row, creating=True)
                except RecordError as exc:
                    raise RecordError(
                        [dict(e, message=f"row {number}: {e['message']}") for e in exc.errors]
                    ) from None
                ids.append(self._insert(odef, values, notify=False, now=now))
        return ids

    def update(
        self, sobject: str, record_id: str, fields: Mapping[str, Any], *, notify: bool = True
    ) -> None:
        """Update a record. Raises :class:`RecordNotFound` or :class:`RecordError`."""
        odef = _object(sobject)
        with self.lock:
            record = self._live(odef, record_id)
            values = self.check(odef, fields, creating=False, record_id=record["Id"])
            self._write(odef, record, values, notify=notify)

    def upsert(
        self,
        sobject: str,
        field_name: str,
        value: str,
        fields: Mapping[str, Any],
        *,
        notify: bool = True,
    ) -> tuple[str, bool]:
        """Create or update by external id; return (id, created).

        Raises :class:`MultipleMatches` when several records hold the value.
        """
        odef = _object(sobject)
        ext = self.external_field(odef, field_name)
        with self.lock:
            matches = self._upsert_matches(odef, ext, value)
            if len(matches) > 1:
                raise MultipleMatches(matches)
            body = {k: v for k, v in fields.items() if k.lower() != ext.name.lower()}
            if matches:
                record = self._records[odef.name][matches[0]]
                values = self.check(odef, body, creating=False, record_id=record["Id"])
                self._write(odef, record, values, notify=notify)
                return record["Id"], False
            if ext.name != "Id":
                body[ext.name] = value
            values = self.check(odef, body, creating=True)
            return self._insert(odef, values, notify=notify), True

    def delete(self, sobject: str, record_id: str) -> None:
        """Move a record to the recycle bin (``IsDeleted`` true). Raises RecordNotFound."""
        odef = _object(sobject)
        with self.lock:
            record = self._live(odef, record_id)
            self._mark_deleted(odef, record)

    def undelete(self, sobject: str, record_id: str) -> None:
        """Restore a deleted record."""
        odef = _object(sobject)
        with self.lock:
            record = self._records[odef.name].get(normalize_id(record_id) or "")
            if record is None or not record["IsDeleted"]:
                raise RecordError([error("UNDELETE_FAILED", "entity is not in the recycle bin")])
            self._journal_write(odef.name, record["Id"], dict(record))
            record["IsDeleted"] = False
            self._deleted[odef.name].pop(record["Id"], None)
            self._write(odef, record, {}, notify=True)

    def merge(self, master_id: str, loser_id: str) -> None:
        """Merge Contact ``loser_id`` into ``master_id``: the loser is deleted and points to it."""
        with self.lock:
            master = self._live(OBJECTS["Contact"], master_id)
            loser = self._live(OBJECTS["Contact"], loser_id)
            if master["Id"] == loser["Id"]:
                raise RecordError([error("INVALID_ID_FIELD", "cannot merge a record with itself")])
            self._journal_write("Contact", loser["Id"], dict(loser))
            loser["MasterRecordId"] = master["Id"]
            self._mark_deleted(OBJECTS["Contact"], loser)
            self._write(OBJECTS["Contact"], master, {}, notify=True)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside succeed together or, if the block raises, are undone together.

        Outbound Messages of the writes are sent only on success. Used for ``allOrNone``.
        """
        with self.lock:
            if self._journal is not None:
                yield  # nested: the outer transaction decides
                return
            self._journal, self._held = [], []
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            else:
                held = self._held
                self._journal, self._held = None, []
                for note in held:
                    self._send(*note)
            finally:
                self._journal, self._held = None, []

    def _rollback(self) -> None:
        assert self._journal is not None
        for sobject, record_id, before, deleted_before in reversed(self._journal):
            odef = OBJECTS[sobject]
            current = self._records[sobject].get(record_id)
            if current is not None:
                self._unindex(odef, current)
            if before is None:
                self._records[sobject].pop(record_id, None)
            else:
                self._records[sobject][record_id] = before
                self._index(odef, before)
            if deleted_before is None:
                self._deleted[sobject].pop(record_id, None)
            else:
                self._deleted[sobject][record_id] = deleted_before

    def _journal_write(self, sobject: str, record_id: str, before: Record | None) -> None:
        if self._journal is not None:
            self._journal.append(
                (sobject, record_id, before, self._deleted[sobject].get(record_id))
            )

    # -- checks ------------------------------------------------------------------------------

    def external_field(self, odef: ObjectDef, field_name: str) -> FieldDef:
        """The field an upsert keys on: ``Id`` or an external id field. RecordError if not."""
        f = odef.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise RecordError(
                [
                    error(
                        "NOT_FOUND",
                        f"Provided external ID field does not exist or is not accessible: "
                        f"{field_name}",
                    )
                ]
            )
        return f

    def _upsert_matches(self, odef: ObjectDef, ext: FieldDef, value: str) -> list[str]:
        if ext.name == "Id":
            normalized = normalize_id(value)
            record = self._records[odef.name].get(normalized or "")
            if record is None or record["IsDeleted"]:
                raise RecordNotFound([error("NOT_FOUND", "The requested resource does not exist")])
            return [record["Id"]]
        return self.find_external(odef.name, ext.name, value)

    def check(
        self,
        odef: ObjectDef,
        fields: Mapping[str, Any],
        *,
        creating: bool,
        record_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate a write body; return the stored values by canonical field name."""
        if not isinstance(fields, Mapping):
            raise RecordError([error("JSON_PARSER_ERROR", "the record must be a JSON object")])
        errors: list[dict[str, Any]] = []
        values: dict[str, Any] = {}
        for name, raw in fields.items():
            if name == "attributes":
                continue
            f = odef.field(name)
            if f is None:
                errors.append(
                    error(
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {odef.name}",
                        [name],
                    )
                )
                continue
            if f.name == "Id":
                if creating:
                    errors.append(error("INVALID_FIELD", "cannot specify Id in an insert call"))
                continue  # an update body may repeat its own Id (collections do)
            if not (f.createable if creating else f.updateable):
                errors.append(
                    error(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {f.name}. Please check the security "
                        "settings of this field and verify that it is read/write for your "
                        "profile or permission set.",
                        [f.name],
                    )
                )
                continue
            try:
                value = coerce(f, raw)
            except FieldValueError as exc:
                errors.append(error(exc.status_code, exc.message, [f.name]))
                continue
            if value is not None and f.type == "reference":
                problem = self._reference_problem(f, value)
                if problem:
                    errors.append(problem)
                    continue
            if value is not None and f.restricted_picklist and str(value) not in f.picklist:
                # A restricted picklist (the metadata's <restricted>true</restricted>).
                errors.append(
                    error(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{f.label or f.name}: bad value for restricted picklist field: {value}",
                        [f.name],
                    )
                )
                continue
            values[f.name] = value
        refused = {name for e in errors for name in e["fields"]}
        missing = [
            f.name
            for f in odef.fields
            if f.name not in refused
            and not f.nillable
            and f.createable
            and f.type != "boolean"
            and (f.name in values or creating)
            and values.get(f.name) is None
        ]
        if missing:
            errors.append(
                error(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            )
        for f in odef.fields:
            if f.unique and values.get(f.name) is not None:
                others = [
                    i
                    for i in self.find_external(odef.name, f.name, values[f.name])
                    if i != record_id
                ]
                if others:
                    errors.append(
                        error(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {f.name} duplicates value on record with "
                            f"id: {others[0]}",
                            [],
                        )
                    )
        if errors:
            raise RecordError(errors)
        return values

    def _reference_problem(self, f: FieldDef, value: str) -> dict[str, Any] | None:
        target = object_for_id(value)
        label = f.label or f.name
        if target is None or target.name != f.reference_to:
            return error(
                "FIELD_INTEGRITY_EXCEPTION", f"{label}: id value of incorrect type", [f.name]
            )
        record = self._records[target.name].get(value)
        if record is None:
            return error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        if record["IsDeleted"]:
            return error("ENTITY_IS_DELETED", "entity is deleted", [f.name])
        return None

    def _live(self, odef: ObjectDef, record_id: str) -> Record:
        record = self._records[odef.name].get(normalize_id(record_id) or "")
        if record is None:
            raise RecordNotFound(
                [error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")]
            )
        if record["IsDeleted"]:
            raise RecordError([error("ENTITY_IS_DELETED", "entity is deleted")])
        return record

    # -- internals ---------------------------------------------------------------------------

    def now(self) -> str:
        """The current time in stored form (whole seconds)."""
        return format_datetime(self.clock())

    def _insert(
        self, odef: ObjectDef, values: dict[str, Any], *, notify: bool, now: str | None = None
    ) -> str:
        self._counters[odef.name] += 1
        record_id = make_id(odef.key_prefix, self._counters[odef.name])
        now = now or self.now()
        record: Record = {f.name: (False if f.type == "boolean" else None) for f in odef.fields}
        record.update(values)
        record.update(Id=record_id, CreatedDate=now, LastModifiedDate=now, SystemModstamp=now)
        if odef.name in AUTO_NUMBER_FORMATS:
            self._auto_numbers[odef.name] += 1
            record["Name"] = AUTO_NUMBER_FORMATS[odef.name].format(self._auto_numbers[odef.name])
        self._journal_write(odef.name, record_id, None)
        self._records[odef.name][record_id] = record
        self._index(odef, record)
        if notify:
            self._notify(odef.name, record, frozenset(k for k, v in values.items() if v), True)
        return record_id

    def _write(
        self, odef: ObjectDef, record: Record, values: dict[str, Any], *, notify: bool
    ) -> None:
        changed = frozenset(k for k, v in values.items() if record.get(k) != v)
        self._journal_write(odef.name, record["Id"], dict(record))
        self._unindex(odef, record)
        record.update(values)
        # Salesforce stamps every update, even one that changes no value.
        now = self.now()
        record["LastModifiedDate"] = now
        record["SystemModstamp"] = now
        self._index(odef, record)
        if notify:
            self._notify(odef.name, record, changed, False)

    def _mark_deleted(self, odef: ObjectDef, record: Record) -> None:
        self._journal_write(odef.name, record["Id"], dict(record))
        now = self.now()
        record["IsDeleted"] = True
        record["SystemModstamp"] = now
        record["LastModifiedDate"] = now
        self._deleted[odef.name][record["Id"]] = now
        # Deleting fires no Outbound Message, as in Salesforce: sweeps find deletions.

    def _ext_key(self, sobject: str, field_name: str, value: Any) -> str:
        """The index key of an external id value: as it is for a case-sensitive field."""
        text = str(value)
        return text if self._ext_case.get((sobject, field_name)) else text.casefold()

    def _index(self, odef: ObjectDef, record: Record) -> None:
        for (sobject, name), index in self._ext_index.items():
            if sobject == odef.name and record.get(name) is not None:
                index.setdefault(self._ext_key(sobject, name, record[name]), set()).add(
                    record["Id"]
                )

    def _unindex(self, odef: ObjectDef, record: Record) -> None:
        for (sobject, name), index in self._ext_index.items():
            if sobject == odef.name and record.get(name) is not None:
                ids = index.get(self._ext_key(sobject, name, record[name]))
                if ids:
                    ids.discard(record["Id"])

    def _notify(self, sobject: str, record: Record, changed: frozenset[str], created: bool) -> None:
        if self._journal is not None:
            self._held.append((sobject, dict(record), changed, created))
            return
        self._send(sobject, dict(record), changed, created)

    def _send(self, sobject: str, snapshot: Record, changed: frozenset[str], created: bool) -> None:
        for listener in self.listeners:
            listener(sobject, snapshot, changed, created)

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to start again where this store is, as JSON-ready data."""
        with self.lock:
            return {
                # Copies: the caller serializes them outside the lock while writes go on.
                "records": {
                    name: [dict(r) for r in recs.values()] for name, recs in self._records.items()
                },
                "counters": dict(self._counters),
                "auto_numbers": dict(self._auto_numbers),
                "deleted": {name: dict(d) for name, d in self._deleted.items()},
            }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with a :meth:`to_state` snapshot."""
        with self.lock:
            for name in OBJECTS:
                odef = OBJECTS[name]
                blank = {f.name: (False if f.type == "boolean" else None) for f in odef.fields}
                records = state.get("records", {}).get(name, [])
                # Fields added to the schema since the snapshot start empty.
                self._records[name] = {r["Id"]: {**blank, **r} for r in records}
                self._counters[name] = int(state.get("counters", {}).get(name, 0))
                self._auto_numbers[name] = int(state.get("auto_numbers", {}).get(name, 0))
                self._deleted[name] = dict(state.get("deleted", {}).get(name, {}))
            for index in self._ext_index.values():
                index.clear()
            for name, records in self._records.items():
                for record in records.values():
                    self._index(OBJECTS[name], record)


def _object(sobject: str) -> ObjectDef:
    odef = object_def(sobject)
    if odef is None:
        raise RecordError([error("INVALID_TYPE", f"sObject type '{sobject}' is not supported")])
    return odef
