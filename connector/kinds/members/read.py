"""Reading a member run's source: the Contacts (changed, named or all, deleted ones too) and
their Moodle accounts, in chunks read ahead while the previous one is planned.

A mixin of :class:`connector.kinds.members.run.MembersRun`: what it reads is planned there.

Streaming and memory: Contacts are streamed page by page and planned in chunks of
:data:`CHUNK_SIZE` (a multiple of Moodle's per-call item ceiling, so lookups come in full calls);
a background thread reads the next chunk (its Salesforce page and its accounts) while one is
planned, at most :data:`PREFETCH_CHUNKS` ahead, so memory stays bounded.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.context import Context
from connector.engine.kind import MOODLE_USER_ID, SyncRequest
from connector.errors import SalesforceError
from connector.kinds.members.lookup import ParallelLookup
from connector.kinds.members.spool import MemberPlanSpool
from mappings.fieldmap import FieldMap
from mappings.members import Account, account_from_moodle

log = logging.getLogger(__name__)

# Contacts planned together: one SOQL page, and a multiple of Moodle's 200 values per lookup
# (max_batch_items), so lookups come in full calls and the rounding of the partial ones is small.
CHUNK_SIZE = 2000
# Chunks read ahead while one is planned.
PREFETCH_CHUNKS = 1


_END = object()


@dataclass(frozen=True)
class _Failed:
    """An error raised while prefetching, handed over to be raised in the run's thread."""

    error: BaseException


class MemberSource:
    """How a member run reads (mixed into the run, which plans what is read)."""

    ctx: Context
    request: SyncRequest
    fieldmap: FieldMap
    read_fields: list[str]
    lookup: ParallelLookup
    lookups: collections.Counter[str]
    counts: collections.Counter[str]

    if TYPE_CHECKING:  # provided by the run and the engine's KindRun

        @property
        def spool(self) -> MemberPlanSpool: ...

        def tick(self, step: int = 1) -> None: ...

        def _plan_gone_chunk(self, rows: list[dict[str, Any]]) -> None: ...

        def _plan_chunk(
            self, rows: list[dict[str, Any]], linked: dict[str, list[Account]] | None = None
        ) -> None: ...

    def _where(self) -> str:
        """In scope, or still linked or with a sync status (so a Contact that left scope is
        seen: its account is handled and a stale status or error cleared)."""
        scope = self.fieldmap.scope_soql()
        marks = [self.fieldmap.writeback.get(k) for k in ("user_id", "status")]
        extra = "".join(f" OR {name} != null" for name in marks if name)
        return f"({scope}){extra}" if extra else scope

    def _plan_deleted(self, since: dt.datetime | None, run_start: dt.datetime) -> None:
        """Plan for Contacts deleted or merged away (since the cursor, or in the recycle bin)."""
        sf = self.ctx.salesforce
        sobject = self.fieldmap.sobject
        rows: Iterable[dict[str, Any]]
        if since is None:
            rows = sf.query(
                f"SELECT Id, MasterRecordId FROM {sobject} WHERE IsDeleted = true",  # noqa: S608
                include_deleted=True,
            )
        else:
            start = since - dt.timedelta(seconds=self.members_settings.lookback_seconds)
            try:
                deleted = sf.get_deleted(sobject, start, run_start)
            except SalesforceError as exc:
                if exc.error_code != "INVALID_REPLICATION_DATE":
                    raise
                # The cursor is older than Salesforce keeps deletions: read the recycle bin.
                log.warning("getDeleted refused the cursor's age; reading the recycle bin")
                self._plan_deleted(None, run_start)
                return
            ids = [str(d["id"]) for d in deleted if d.get("id")]
            if not ids:
                return
            rows = self._deleted_rows(ids)
        for chunk in chunks(rows, CHUNK_SIZE):
            self._plan_gone_chunk(chunk)

    def _deleted_rows(self, ids: list[str]) -> list[dict[str, Any]]:
        """The deleted records with their MasterRecordId; purged ones as bare Ids."""
        found = {
            r["Id"]: r
            for r in self.ctx.salesforce.get_by_ids(
                self.fieldmap.sobject,
                ["Id", "MasterRecordId", "IsDeleted"],
                ids,
                include_deleted=True,
            )
        }
        rows = []
        for contact_id in ids:
            row = found.get(contact_id, {"Id": contact_id, "IsDeleted": True})
            # Undeleted since: the changed-records read sees it as a live Contact.
            if row.get("IsDeleted") is not False:
                rows.append(row)
        return rows

    def _contact_ids(self, ids: list[str]) -> list[str]:
        """The Contact Ids named: Salesforce Ids as they are, Moodle user ids (from Moodle's
        user events) through the account's ``idnumber``. A Moodle user deleted since, or one
        without an idnumber, is not mentorsync's: nothing to do for it."""
        moodle_ids = [i for i in ids if MOODLE_USER_ID.invalid([i]) == []]
        if not moodle_ids:
            return ids
        self.lookups["id"] += len(moodle_ids)
        users = self.lookup.by_fields({"id": moodle_ids})["id"]
        linked = [str(u.get("idnumber") or "") for u in users]
        contacts = [i for i in ids if i not in set(moodle_ids)]
        return list(dict.fromkeys([*contacts, *(c for c in linked if c)]))

    def _plan_ids(self, ids: list[str]) -> None:
        """Plan for the named Contacts, deleted ones included (events, retries, survivors)."""
        if not ids:
            return
        fields = [*self.read_fields, "IsDeleted", "MasterRecordId"]
        live: list[dict[str, Any]] = []
        gone: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in self.ctx.salesforce.get_by_ids(
            self.fieldmap.sobject, fields, ids, include_deleted=True
        ):
            seen.add(str(row["Id"]))
            seen.add(str(row["Id"])[:15])
            (gone if row.get("IsDeleted") else live).append(row)
        gone += [{"Id": i, "IsDeleted": True} for i in ids if i not in seen]
        # Deletions first: a merge survivor must know of its loser's account before planning.
        for chunk in chunks(gone, CHUNK_SIZE):
            self._plan_gone_chunk(chunk)
        for chunk in chunks(live, CHUNK_SIZE):
            self._plan_chunk(chunk)

    def _prefetched(
        self, rows: Iterable[dict[str, Any]]
    ) -> Iterator[tuple[list[dict[str, Any]], dict[str, list[Account]]]]:
        """Chunks of ``rows`` with their accounts by idnumber, read one chunk ahead.

        A background thread reads the next Salesforce page and looks up the next chunk's
        accounts while this one is planned: the waiting overlaps, the calls stay the same.
        At most PREFETCH_CHUNKS chunks wait, so memory stays bounded. The Salesforce client is
        used only by that thread until the stream ends.
        """
        ahead: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_CHUNKS)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for chunk in chunks(rows, CHUNK_SIZE):
                    linked = self._accounts_by_idnumber([str(r["Id"]) for r in chunk])
                    if not put((chunk, linked)):
                        return
                put(_END)
            except Exception as exc:  # noqa: BLE001  (not swallowed: the consumer raises it)
                put(_Failed(exc))

        producer = threading.Thread(target=produce, name="members-prefetch", daemon=True)
        producer.start()
        try:
            while True:
                item = ahead.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            producer.join()

    def _accounts_by_idnumber(self, ids: list[str]) -> dict[str, list[Account]]:
        if not ids:
            return {}
        self.lookups["idnumber"] += len(ids)
        users = self.lookup.by_fields({"idnumber": ids})["idnumber"]
        return self._group(users, lambda a: a.idnumber)

    def _group(self, users: list[dict[str, Any]], key: Any) -> dict[str, list[Account]]:
        grouped: dict[str, list[Account]] = {}
        for user in users:
            account = account_from_moodle(user, self.fieldmap)
            bucket = grouped.setdefault(key(account), [])
            if all(a.id != account.id for a in bucket):
                bucket.append(account)
        return grouped


def chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
