"""The state database (SQLAlchemy): cursors, runs, failed records, the durable inbox, locks.

A SQLite file by default, PostgreSQL by URL; the same code for both. The schema is kept by
Alembic migrations (:mod:`connector.state.migrate`), run when the database is opened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    """Timezone-aware now in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores aware datetimes as UTC and gives them back aware (SQLite forgets the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored in the state database")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every state table."""


class Cursor(Base):
    """Where the incremental sweep of one sync kind (and source object) stands."""

    __tablename__ = "cursors"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    """One run of one sync kind, with its counts."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    mode: Mapped[str] = mapped_column(String(20))  # full | incremental | ids
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # running | ok | failed_records | stopped | error
    status: Mapped[str] = mapped_column(String(20), default="running")
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    # An error code or short reason when stopped; never PII.
    error: Mapped[str | None] = mapped_column(Text)


class FailedRecord(Base):
    """A record that failed, kept with its error code for retry or an admin's attention."""

    __tablename__ = "failed_records"
    __table_args__ = (UniqueConstraint("kind", "record_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    record_id: Mapped[str] = mapped_column(String(64))
    error_code: Mapped[str] = mapped_column(String(200))
    # Where it failed: "moodle:core_user_create_users", "mapping:email", "salesforce:writeback".
    stage: Mapped[str] = mapped_column(String(100), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_retry_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    parked: Mapped[bool] = mapped_column(Boolean, default=False)


class InboxEvent(Base):
    """One received notification: the durable truth of what must be looked at.

    Stored before the sender is acknowledged. ``dedup_key`` makes a redelivery a no-op:
    the Outbound Message notification Id, ``webhook-id``, or ``record Id + SystemModstamp``.
    """

    __tablename__ = "inbox"
    # One change of a record (its SystemModstamp) is stored once, whatever message reported it:
    # the inbox's insert skips a row this index, or the unique dedup_key, already holds.
    __table_args__ = (
        Index(
            "ux_inbox_change",
            "record_id",
            "modstamp",
            unique=True,
            postgresql_where=text("modstamp IS NOT NULL"),
            sqlite_where=text("modstamp IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    # salesforce-outbound | salesforce-events | moodle
    source: Mapped[str] = mapped_column(String(30))
    kind: Mapped[str] = mapped_column(String(50), index=True)  # the sync kind it routes to
    object: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[str] = mapped_column(String(64))
    modstamp: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending | leased | done | failed
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error_code: Mapped[str | None] = mapped_column(String(200))


class Lock(Base):
    """A lease so that two runs of one sync kind never overlap; it expires if its holder dies."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class KeyValue(Base):
    """Small named values: the last Salesforce API budget reading, and the like."""

    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ownership(Base):
    """One thing mentorsync itself made in Moodle, for the source record that wanted it.

    Moodle cannot say who made an enrolment, a group, a group membership or a role assignment,
    so an undo removes exactly what this ledger holds and nothing someone else did (like
    Kubernetes' ownerReferences). See :mod:`connector.state.ownership`.
    """

    __tablename__ = "ownership"
    __table_args__ = (
        UniqueConstraint(
            "kind", "owner", "thing", "scope", "user_id", "role_id", name="uq_ownership"
        ),
        Index("ix_ownership_user", "kind", "thing", "user_id"),
        Index("ix_ownership_owner", "kind", "owner"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    # The source record that wanted it (a Match Id).
    owner: Mapped[str] = mapped_column(String(64))
    # enrolment | course_role | role_assignment | group | group_member
    thing: Mapped[str] = mapped_column(String(30))
    # Where: a course id, a group idnumber, the user whose context holds a role.
    scope: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(Integer, default=0)
    role_id: Mapped[int] = mapped_column(Integer, default=0)
    # The source record of the person concerned (a Contact Id), "" when none.
    subject: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StateDB:
    """Engine and session factory for the state database."""

    def __init__(self, url: str) -> None:
        parsed = _with_driver(make_url(url))
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            # A pooled connection can go stale (a PostgreSQL restart, an idle timeout in a
            # proxy): test it at checkout instead of failing the next webhook.
            kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = create_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        from connector.state.migrate import upgrade  # (imports this module's models)

        upgrade(self.engine, _create_schema)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Closers of connections kept out of the pool (the inbox writer's), run by dispose().
        self._on_dispose: list[Callable[[], None]] = []

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def on_dispose(self, close: Callable[[], None]) -> None:
        """Have :meth:`dispose` call ``close`` first (a holder of a long-lived connection)."""
        self._on_dispose.append(close)

    def dispose(self) -> None:
        """Close pooled connections, and the ones their holders registered with on_dispose."""
        for close in self._on_dispose:
            close()
        self.engine.dispose()


def _with_driver(url: URL) -> URL:
    """``postgresql://`` (and ``postgres://``) with psycopg 3, the driver the extra installs.

    SQLAlchemy's default PostgreSQL driver is psycopg2, which mentorsync does not depend on:
    a plain ``postgresql://`` URL would fail with "No module named 'psycopg2'".
    """
    if url.drivername in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+psycopg")
    return url


def _create_schema(engine: Engine) -> None:
    """Create missing tables; tolerate another process creating them at the same moment."""
    try:
        Base.metadata.create_all(engine)
    except (OperationalError, ProgrammingError, IntegrityError) as exc:
        # Two processes starting on a fresh database both see a table missing; the loser's
        # CREATE fails with "already exists" (SQLite: OperationalError; PostgreSQL:
        # DuplicateTable, a ProgrammingError, or a unique violation on pg_type when both
        # CREATEs ran at the same moment). Checking again finds everything in place.
        if "already exists" not in str(exc.orig) and "pg_type_typname_nsp_index" not in str(
            exc.orig
        ):
            raise
        Base.metadata.create_all(engine)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the web service write the inbox while the worker reads; busy_timeout waits
    # for a lock instead of failing at once. synchronous=FULL: a webhook is acknowledged only
    # after its row is stored, and NORMAL could lose the last commits on a power cut
    # (bench/webhooks.py measures the cost).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
