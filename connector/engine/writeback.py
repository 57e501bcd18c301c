"""Write outcomes back to Salesforce in Collections calls of 200, only what changed.

Every kind tells staff what happened where they work: the member sync on the Contact, pairs
and progress on the match, progress creates meeting records. The kind decides *what* to write
(only changed values); this buffer sends it: ``collections.update`` by record Id, or
``collections.upsert`` on an external id, 200 records a call, optionally from a background
thread while the run goes on writing Moodle (at most :data:`IN_FLIGHT` calls outstanding).
Results come back per record, in order, in the caller's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from connector.engine.pipeline import InFlight

log = logging.getLogger(__name__)

COLLECTION_SIZE = 200
# Collections calls outstanding at once when sending in the background.
IN_FLIGHT = 2


class RecordResultLike(Protocol):
    """What a Collections call answers per record (the Salesforce client's ``RecordResult``)."""

    success: bool

    @property
    def error_code(self) -> str:
        """The first error's code, "" on success."""
        ...


class CollectionsClient(Protocol):
    """The Salesforce client's Collections writes."""

    def collection_update(self, sobject: str, records: list[dict[str, Any]]) -> list[Any]:
        """Update by Id; one result per record, in order."""
        ...

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: list[dict[str, Any]]
    ) -> list[Any]:
        """Upsert on an external id; one result per record, in order."""
        ...


@dataclass(slots=True)
class _Pending:
    record: dict[str, Any]
    # Whether the member had gone through until now (so a write-back failure is its only one).
    ok: bool


class WritebackBuffer:
    """Collects record writes and sends them in Collections calls of 200.

    ``external_id`` set: records are upserted on that field and identified by its value in
    ``on_result``; otherwise they are updates identified by ``Id``.

    With ``background``, calls are sent from one background thread while the caller goes on
    (writing Moodle, typically); at most :data:`IN_FLIGHT` calls are outstanding, and results
    are handed to ``on_result`` in the caller's thread, in order. The Salesforce client must not
    be used by anyone else meanwhile.
    """

    def __init__(
        self,
        salesforce: CollectionsClient,
        sobject: str,
        on_result: Callable[[str, bool, str, bool], None],
        size: int = COLLECTION_SIZE,
        *,
        background: bool = False,
        external_id: str = "",
    ) -> None:
        """``on_result(record_key, success, error_code, was_ok)`` is called for every record."""
        self.salesforce = salesforce
        self.sobject = sobject
        self.on_result = on_result
        self.size = size
        self.external_id = external_id
        self.written = 0
        self._pending: list[_Pending] = []
        self._pipe: InFlight[tuple[list[_Pending], list[Any]]] = InFlight(
            self._deliver_batch,
            1 if background else 0,
            name="salesforce-writeback",
            limit=IN_FLIGHT,
        )

    def add(self, record: dict[str, Any], ok: bool) -> None:
        """Queue one record write; sends a call when 200 are queued."""
        self._pending.append(_Pending(record, ok))
        if len(self._pending) >= self.size:
            batch, self._pending = self._pending[: self.size], self._pending[self.size :]
            self._pipe.submit(self._send, batch)
        self._pipe.poll()

    def flush(self) -> None:
        """Send everything queued and wait for every answer."""
        while self._pending:
            batch, self._pending = self._pending[: self.size], self._pending[self.size :]
            self._pipe.submit(self._send, batch)
        self._pipe.settle()

    def close(self) -> None:
        """Stop the background thread (after the call it is in, if any)."""
        self._pipe.close()

    def _send(self, batch: list[_Pending]) -> tuple[list[_Pending], list[Any]]:
        records = [p.record for p in batch]
        if self.external_id:
            return batch, self.salesforce.collection_upsert(self.sobject, self.external_id, records)
        return batch, self.salesforce.collection_update(self.sobject, records)

    def _deliver_batch(self, sent: tuple[list[_Pending], list[Any]]) -> None:
        batch, results = sent
        key = self.external_id or "Id"
        for pending, result in zip(batch, results, strict=True):
            record_key = str(pending.record[key])
            if result.success:
                self.written += 1
            else:
                log.warning(
                    "write-back to %s %s failed: %s", self.sobject, record_key, result.error_code
                )
            self.on_result(record_key, result.success, result.error_code, pending.ok)
