"""The plan of one run, kept on disk so memory stays flat however many records there are.

A run plans everything first (so the mass-change guard sees the whole plan before anything is
applied), then applies it. The plan of 50,000 members does not belong in memory: it goes to a
temporary SQLite database with only a small page cache in memory. It holds, for this run only:

- the actions in plan order (compact JSON, through the kind's :class:`ActionCodec`);
- claims: keys taken by a record earlier in the run (a username, an email, an account), so two
  records never take the same thing;
- the record ids already planned, so a record reached twice is planned once;
- notes and tags: small facts a kind keeps for a check after planning (members: the email of
  every Contact read, and which adoptions were made by email, to refuse an adoption by an email
  two Contacts share).

The spool is generic over the kind's action type; it counts actions per kind and the destructive
ones (the guard's number), as the codec says.

Privacy: actions can hold names and emails. The database lives in a directory of its own, made
for this run in the system's temp directory (``$TMPDIR``, else ``/tmp``) with mode 0700, and the
file has mode 0600. :meth:`PlanSpool.close` deletes the directory, and the run calls it in a
``finally``, so it goes on errors and interrupts too. A process killed outright cannot clean up:
the next spool made by the same user removes such leftovers (a directory whose owner no longer
holds its lock file), so a plan never outlives the next run.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

try:  # POSIX; without it (Windows) leftovers of killed runs are not swept.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PREFIX = "mentorsync-plan-"
_STARTING = "mentorsync-starting-"
_LOCK = "owner.lock"


A = TypeVar("A")


class ActionCodec(Protocol[A]):
    """How a kind's actions go into and out of the spool, and what the spool counts."""

    def dump(self, action: A) -> dict[str, Any]:
        """The action as JSON-ready data."""
        ...

    def load(self, data: dict[str, Any]) -> A:
        """The action back from :meth:`dump`'s data."""
        ...

    def kind(self, action: A) -> str:
        """The action's kind (create, enrol, upsert_meeting...), counted per kind."""
        ...

    def record_id(self, action: A) -> str:
        """The source record the action is for (what claims are recorded against)."""
        ...

    def claims(self, action: A) -> Iterable[str]:
        """Keys the action takes for the rest of the run."""
        ...

    def destructive(self, action: A) -> bool:
        """Whether the guard counts the action (suspend, unenrol, delete...)."""
        ...


class PlanSpool(Generic[A]):
    """Actions, claims, notes and seen record ids of one run, in a private temp directory.

    Use as a context manager, or call :meth:`close` in a ``finally``.
    """

    def __init__(self, codec: ActionCodec[A], parent: str | os.PathLike[str] | None = None) -> None:
        """Make the spool under ``parent`` (default: the system temp directory)."""
        self.codec = codec
        base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        sweep_leftovers(base)
        # mkdtemp: a fresh directory only this user can enter (0700). It gets its final name
        # only once its lock is held, so a sweep never takes a starting spool for a dead one.
        self.directory = Path(tempfile.mkdtemp(prefix=_STARTING, dir=base))
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self._lock_fd = _hold_lock(self.directory / _LOCK)
            final = base / (PREFIX + self.directory.name[len(_STARTING) :])
            os.rename(self.directory, final)
            self.directory = final
            path = self.directory / "plan.sqlite"
            # Made 0600 before SQLite opens it, whatever the umask.
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.executescript(
                """
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                PRAGMA temp_store = MEMORY;
                PRAGMA cache_size = -4096;
                CREATE TABLE actions (seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
                CREATE TABLE claims (key TEXT PRIMARY KEY, record_id TEXT NOT NULL);
                CREATE TABLE seen (record_id TEXT PRIMARY KEY);
                CREATE TABLE notes (
                    tag TEXT, key TEXT, record_id TEXT, PRIMARY KEY (tag, key, record_id)
                );
                CREATE TABLE tags (
                    seq INTEGER, tag TEXT, value TEXT NOT NULL, PRIMARY KEY (seq, tag)
                );
                """
            )
        except BaseException:
            self.close()
            raise
        self.counts: collections.Counter[str] = collections.Counter()
        # Actions the guard counts (the codec's ``destructive``).
        self.destructive = 0
        self._size = 0

    def __enter__(self) -> PlanSpool[A]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._size

    @property
    def db(self) -> sqlite3.Connection:
        """The open database; an error after :meth:`close`."""
        if self._db is None:
            raise RuntimeError("PlanSpool used after close()")
        return self._db

    def add(self, action: A, tags: Mapping[str, str] | None = None) -> None:
        """Append ``action`` to the plan and record its claims.

        ``tags``: small values kept beside the action (``{"adopted_email": ...}``) that a check
        after planning can look at with :meth:`tagged` and :meth:`replace`.
        """
        codec = self.codec
        self._count(action, +1)
        cursor = self.db.execute(
            "INSERT INTO actions (data) VALUES (?)", (json.dumps(codec.dump(action)),)
        )
        self._size += 1
        if tags:
            self.db.executemany(
                "INSERT INTO tags (seq, tag, value) VALUES (?, ?, ?)",
                [(cursor.lastrowid, tag, value) for tag, value in tags.items()],
            )
        claims = list(codec.claims(action))
        if claims:
            record_id = codec.record_id(action)
            self.db.executemany(
                "INSERT OR IGNORE INTO claims (key, record_id) VALUES (?, ?)",
                [(key, record_id) for key in claims],
            )

    def claimed(self, key: str) -> str | None:
        """The record id that claimed ``key`` in this run, or None."""
        row = self.db.execute("SELECT record_id FROM claims WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def mark_seen(self, record_ids: Iterable[str]) -> None:
        """Remember these records as planned."""
        self.db.executemany(
            "INSERT OR IGNORE INTO seen (record_id) VALUES (?)", [(r,) for r in record_ids]
        )

    def unseen(self, record_ids: Iterable[str]) -> list[str]:
        """Those of ``record_ids`` not planned yet, in the given order, each once."""
        out = []
        for record_id in dict.fromkeys(record_ids):
            row = self.db.execute("SELECT 1 FROM seen WHERE record_id = ?", (record_id,)).fetchone()
            if row is None:
                out.append(record_id)
        return out

    def note(self, tag: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(key, record_id)`` facts under ``tag`` (each pair once)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO notes (tag, key, record_id) VALUES (?, ?, ?)",
            [(tag, key, record_id) for key, record_id in pairs if key],
        )

    def tagged_shared(self, tag: str, note_tag: str) -> list[tuple[int, A]]:
        """Actions tagged ``tag`` whose tag value was noted under ``note_tag`` by more than one
        record: ``(seq, action)`` in plan order."""
        rows = self.db.execute(
            """
            SELECT t.seq, x.data FROM tags t JOIN actions x ON x.seq = t.seq
            WHERE t.tag = ?
              AND (SELECT COUNT(*) FROM notes n WHERE n.tag = ? AND n.key = t.value) > 1
            ORDER BY t.seq
            """,
            (tag, note_tag),
        ).fetchall()
        return [(seq, self.codec.load(json.loads(text))) for seq, text in rows]

    def replace(self, seq: int, old: A, new: A) -> None:
        """Put ``new`` in place of action ``seq`` (which was ``old``), keeping the counts true."""
        self.db.execute(
            "UPDATE actions SET data = ? WHERE seq = ?", (json.dumps(self.codec.dump(new)), seq)
        )
        self._count(old, -1)
        self._count(new, +1)

    def drop_tags(self, tag: str) -> None:
        """Forget every ``tag`` tag (after the check that needed them)."""
        self.db.execute("DELETE FROM tags WHERE tag = ?", (tag,))

    def __iter__(self) -> Iterator[A]:
        """The actions in plan order, read lazily."""
        cursor = self.db.execute("SELECT data FROM actions ORDER BY seq")
        for (text,) in cursor:
            yield self.codec.load(json.loads(text))

    def _count(self, action: A, step: int) -> None:
        self.counts[self.codec.kind(action)] += step
        if self.codec.destructive(action):
            self.destructive += step

    def close(self) -> None:
        """Drop the plan: close the database and delete its directory. Safe to call twice."""
        try:
            if self._db is not None:
                self._db.close()
                self._db = None
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            shutil.rmtree(self.directory, ignore_errors=True)
            if self.directory.exists():
                log.error("could not delete the plan spool %s", self.directory)


def _hold_lock(path: Path) -> int | None:
    """Create ``path`` and hold an exclusive lock on it while the spool is open."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def sweep_leftovers(base: Path) -> int:
    """Delete spool directories of runs that were killed (their lock is free); return how many.

    Only this user's directories are looked at; one still locked belongs to a live run.
    """
    if fcntl is None:  # pragma: no cover
        return 0
    removed = 0
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return 0
    for directory in candidates:
        with contextlib.suppress(OSError):  # vanished meanwhile, or not ours: leave it
            if directory.is_symlink() or directory.stat().st_uid != os.getuid():
                continue
            lock = directory / _LOCK
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run holds it
            finally:
                os.close(fd)
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    if removed:
        log.warning("removed %d plan spool(s) left by killed runs", removed)
    return removed
