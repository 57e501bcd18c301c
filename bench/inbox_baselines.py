"""Earlier ways of writing the inbox, kept so that ``bench/webhooks.py`` measures before and after
in one run, on one machine, under one load.

- ``one-by-one``: each delivery in a transaction of its own (a SELECT for duplicates, then an
  INSERT, through SQLAlchemy Core), committed by the request's thread: one fsync per delivery,
  SQLite's busy handler between writers. The inbox before group commit.
- ``group-v1``: the first group commit: one writer thread per process batching concurrent
  deliveries, but each batch still the SELECT + INSERT transaction above (three round trips on
  PostgreSQL: the SELECT with its BEGIN, the INSERT, the COMMIT).
- ``group-v2``: the batch as one INSERT ... ON CONFLICT (dedup_key) DO NOTHING RETURNING that
  looked each change up (NOT EXISTS), sent through SQLAlchemy (``Connection.exec_driver_sql``).
- ``group-v3``: that statement on the driver's cursor (the inbox before migration 0003 made the
  same-change check a unique index, ``ux_inbox_change``, and the statement a plain insert).
- ``group-v4``: the plain insert as 0003 shipped it, on PostgreSQL with the batch as six column
  arrays (``unnest``) sent through psycopg's cursor. (On SQLite it is ``group-v5``.) The inbox
  before the batch became one JSON parameter run with libpq's prepared-statement call.
- ``group-v5``: today's statement, written by a writer thread of each process
  (``bench/thread_writer.py``), which every mode before it also ran on. The inbox before the
  first request in line wrote its batch itself.

The first four ran on the schema before migration 0003 (a plain index over record and
SystemModstamp, which their lookups use): :func:`prepare_database` puts it back, and
:func:`install` swaps the mode's code into the server process.

``no-store`` is a diagnostic, not a way of writing the inbox: the endpoint parses, checks and
routes as shipped, then stores nothing (not durable). Next to ``group`` in one run, it says what
the durable store costs under load, in CPU per request and in latency.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select
from sqlalchemy.exc import IntegrityError

from bench.thread_writer import ThreadWriter
from connector.state import inbox, inbox_writer
from connector.state.database import InboxEvent, StateDB, utcnow
from connector.state.inbox import Notice, StoreResult

MODES = ("one-by-one", "group-v1", "group-v2", "group-v3", "group-v4", "group-v5", "group")
# The group commits before today's: a writer thread of each process wrote their batches.
_ON_THE_WRITER_THREAD = MODES[1:-1]
# Not a way of writing the inbox, and not measured unless asked for: the endpoint storing nothing.
NO_STORE = "no-store"
# The inbox's index, and its statement, before migration 0003.
_LOOKUP_SCHEMA = (
    "DROP INDEX ux_inbox_change",
    "CREATE INDEX ix_inbox_record_modstamp ON inbox (record_id, modstamp)",
)
_LOOKUP_INSERT = {
    "sqlite": """
INSERT INTO inbox
    (dedup_key, source, kind, object, record_id, modstamp, received_at, status, attempts)
SELECT n.value ->> 0, n.value ->> 1, n.value ->> 2, n.value ->> 3, n.value ->> 4, n.value ->> 5,
       ?, 'pending', 0
FROM json_each(?) AS n
WHERE n.value ->> 5 IS NULL OR NOT EXISTS (
    SELECT 1 FROM inbox AS i WHERE i.record_id = n.value ->> 4 AND i.modstamp = n.value ->> 5
)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING dedup_key
""",
    "postgresql": """
INSERT INTO inbox
    (dedup_key, source, kind, object, record_id, modstamp, received_at, status, attempts)
SELECT n.dedup_key, n.source, n.kind, n.object, n.record_id, n.modstamp, %s, 'pending', 0
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[],
            %s::varchar[]) AS n(dedup_key, source, kind, object, record_id, modstamp)
WHERE n.modstamp IS NULL OR NOT EXISTS (
    SELECT 1 FROM inbox AS i WHERE i.record_id = n.record_id AND i.modstamp = n.modstamp
)
ORDER BY n.dedup_key
ON CONFLICT (dedup_key) DO NOTHING
RETURNING dedup_key
""",
}
# group-v4 on PostgreSQL: the batch as column arrays, on psycopg's cursor.
_ARRAYS_INSERT = """
INSERT INTO inbox
    (dedup_key, source, kind, object, record_id, modstamp, received_at, status, attempts)
SELECT n.dedup_key, n.source, n.kind, n.object, n.record_id, n.modstamp, %s, 'pending', 0
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[],
            %s::varchar[]) AS n(dedup_key, source, kind, object, record_id, modstamp)
ORDER BY n.dedup_key
ON CONFLICT DO NOTHING
RETURNING dedup_key
"""
_CHUNK = 500
_EXISTING = select(InboxEvent.dedup_key, InboxEvent.record_id, InboxEvent.modstamp).where(
    or_(
        InboxEvent.dedup_key.in_(bindparam("keys", expanding=True)),
        InboxEvent.record_id.in_(bindparam("ids", expanding=True)),
    )
)
_INSERT = insert(InboxEvent)


def core_store_batch(conn: Connection, batch: Sequence[Sequence[Notice]]) -> list[StoreResult]:
    """The earlier ``inbox.store_batch``: SELECT what is stored, INSERT the rest."""
    keys: set[str] = set()
    changed: set[str] = set()
    for notices in batch:
        for notice in notices:
            keys.add(notice.dedup_key)
            if notice.modstamp:
                changed.add(notice.record_id)
    seen_keys, seen_changes = _existing(conn, sorted(keys), sorted(changed))
    now = utcnow()
    results: list[StoreResult] = []
    new_rows: list[dict[str, object]] = []
    for notices in batch:
        result = StoreResult()
        for notice in notices:
            change = (notice.record_id, notice.modstamp) if notice.modstamp else None
            if notice.dedup_key in seen_keys or (change and change in seen_changes):
                result.duplicates += 1
                continue
            seen_keys.add(notice.dedup_key)
            if change:
                seen_changes.add(change)
            new_rows.append(
                {
                    "dedup_key": notice.dedup_key,
                    "source": notice.source,
                    "kind": notice.kind,
                    "object": notice.object,
                    "record_id": notice.record_id,
                    "modstamp": notice.modstamp,
                    "received_at": now,
                    "status": "pending",
                    "attempts": 0,
                }
            )
            result.stored += 1
            result.kinds.add(notice.kind)
        results.append(result)
    if new_rows:
        conn.execute(_INSERT, new_rows)
    return results


def _existing(
    conn: Connection, keys: Sequence[str], changed_ids: Sequence[str]
) -> tuple[set[str], set[tuple[str, str]]]:
    existing: set[str] = set()
    known_changes: set[tuple[str, str]] = set()
    for start in range(0, max(len(keys), len(changed_ids)), _CHUNK):
        window = slice(start, start + _CHUNK)
        rows = conn.execute(_EXISTING, {"keys": keys[window], "ids": changed_ids[window]})
        for key, record_id, modstamp in rows:
            existing.add(key)
            if modstamp is not None:
                known_changes.add((record_id, modstamp))
    return existing, known_changes


def store_one_by_one(db: StateDB, notices: Sequence[Notice]) -> StoreResult:
    """``one-by-one``: a deferred transaction per delivery, retried once on a key conflict."""
    try:
        with db.engine.begin() as conn:
            return core_store_batch(conn, [notices])[0]
    except IntegrityError:
        with db.engine.begin() as conn:
            return core_store_batch(conn, [notices])[0]


def _group_v1_commit(self: Any, db: StateDB, batch: list[Sequence[Notice]]) -> list[StoreResult]:
    """``group-v1``: the writer's transaction as it was (replaces ``InboxWriter._commit``)."""
    try:
        return _group_v1_transaction(self, db, batch)
    except IntegrityError:
        return _group_v1_transaction(self, db, batch)


def _group_v1_transaction(
    self: Any, db: StateDB, batch: list[Sequence[Notice]]
) -> list[StoreResult]:
    if self._conn is None:
        self._conn = db.engine.connect()
    conn = self._conn
    try:
        if self._sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        results = core_store_batch(conn, batch)
        conn.commit()
    except BaseException:
        self._conn = None
        conn.invalidate()
        conn.close()
        raise
    return results


def _arrays_params(dialect: str, rows: Sequence[Notice]) -> tuple[object, ...]:
    """The parameters of the statements before ``group``: column arrays on PostgreSQL."""
    if dialect == "sqlite":
        return inbox.insert_params(rows)
    return (
        utcnow().replace(tzinfo=None),
        [n.dedup_key for n in rows],
        [n.source for n in rows],
        [n.kind for n in rows],
        [n.object for n in rows],
        [n.record_id for n in rows],
        [n.modstamp for n in rows],
    )


def _group_v2_insert_new(conn: Connection, rows: Sequence[Notice]) -> set[str]:
    """``group-v2``: the lookup statement through SQLAlchemy (replaces ``inbox._insert_new``)."""
    name = conn.dialect.name
    result = conn.exec_driver_sql(_LOOKUP_INSERT[name], _arrays_params(name, rows))
    return {row[0] for row in result}


def _cursor_insert_new(statements: dict[str, str]) -> Any:
    """An ``inbox._insert_new`` that runs ``statements[dialect]`` on the driver's cursor."""

    def insert_new(conn: Connection, rows: Sequence[Notice]) -> set[str]:
        name = conn.dialect.name
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statements[name], _arrays_params(name, rows))
            return {row[0] for row in cursor.fetchall()}
        finally:
            cursor.close()

    return insert_new


def prepare_database(mode: str, database_url: str) -> None:
    """Give the baselines the schema they ran on (``group``, today's, is left as it is)."""
    if mode in ("group", "group-v4", NO_STORE):
        return
    db = StateDB(database_url)
    try:
        with db.engine.begin() as conn:
            for statement in _LOOKUP_SCHEMA:
                conn.exec_driver_sql(statement)
    finally:
        db.dispose()


def _store_nothing(_db: StateDB, notices: Sequence[Notice]) -> StoreResult:
    """``no-store``: answer as if every notice were new, storing none."""
    return StoreResult(stored=len(notices), kinds={notice.kind for notice in notices})


def install(mode: str) -> None:
    """Make this (server) process write the inbox the ``mode`` way; ``group`` changes nothing."""
    if mode == "one-by-one":
        import webhooks.outbound

        webhooks.outbound.inbox = types.SimpleNamespace(  # type: ignore[attr-defined]
            Notice=inbox.Notice, store=store_one_by_one
        )
        return
    if mode in _ON_THE_WRITER_THREAD:
        inbox_writer.InboxWriter = ThreadWriter  # type: ignore[misc]
    if mode == "group-v1":
        ThreadWriter._commit = _group_v1_commit  # type: ignore[method-assign]
    elif mode == "group-v2":
        inbox._insert_new = _group_v2_insert_new  # type: ignore[assignment]
    elif mode == "group-v3":
        inbox._insert_new = _cursor_insert_new(_LOOKUP_INSERT)  # type: ignore[assignment]
    elif mode == "group-v4":
        statements = {"sqlite": inbox.insert_statement("sqlite"), "postgresql": _ARRAYS_INSERT}
        inbox._insert_new = _cursor_insert_new(statements)  # type: ignore[assignment]
    elif mode == NO_STORE:
        import webhooks.outbound

        webhooks.outbound.inbox = types.SimpleNamespace(  # type: ignore[attr-defined]
            Notice=inbox.Notice, store=_store_nothing
        )
    elif mode not in ("group", "group-v5"):  # group-v5: the writer thread, today's statement
        known = ", ".join((*MODES, NO_STORE))
        raise ValueError(f"unknown inbox mode {mode!r}; one of {known}")
