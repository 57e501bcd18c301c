"""The plan of one member run, kept on disk so memory stays flat however many members there are.

A member run plans everything first (so the mass-change guard sees the whole plan before
anything is applied), then applies it. The plan of 50,000 members does not belong in memory:
it goes to a temporary SQLite database with only a small page cache in memory. It holds, for
this run only:

- the actions in plan order (compact JSON: ids, changed fields, codes);
- the claims (usernames, emails, adopted accounts taken by a Contact earlier in the run);
- the Contact Ids already planned, so a Contact reached twice (a changed record that is also due
  for retry, a merge survivor) is planned once;
- the email of every member read, so an adoption by an email two Contacts share is refused.

Privacy: the actions of creates and changed fields hold names and emails. The database lives
in a directory of its own, made for this run in the system's temp directory (``$TMPDIR``,
else ``/tmp``) with mode 0700, and the file has mode 0600. :meth:`PlanSpool.close` deletes the
directory, and the run calls it in a ``finally``, so it goes on errors and interrupts too. A
process killed outright cannot clean up: the next spool made by the same user removes such
leftovers (a directory whose owner no longer holds its lock file), so a plan never outlives
the next run.
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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from connector.kinds.members.plan import ADOPT, CONFLICT, Action

try:  # POSIX; without it (Windows) leftovers of killed runs are not swept.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PREFIX = "mentorsync-plan-"
_STARTING = "mentorsync-starting-"
_LOCK = "owner.lock"


class PlanSpool:
    """Actions, claims, emails and seen Contact Ids of one run, in a private temp directory.

    Use as a context manager, or call :meth:`close` in a ``finally``.
    """

    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        """Make the spool under ``parent`` (default: the system temp directory)."""
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
                CREATE TABLE claims (key TEXT PRIMARY KEY, contact_id TEXT NOT NULL);
                CREATE TABLE seen (contact_id TEXT PRIMARY KEY);
                CREATE TABLE emails (email TEXT, contact_id TEXT, PRIMARY KEY (email, contact_id));
                CREATE TABLE adoptions (seq INTEGER PRIMARY KEY, email TEXT NOT NULL);
                """
            )
        except BaseException:
            self.close()
            raise
        self.counts: collections.Counter[str] = collections.Counter()
        # Actions that suspend an account (the mass-change guard's number).
        self.suspensions = 0
        self._size = 0

    def __enter__(self) -> PlanSpool:
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

    def add(self, action: Action, adopted_email: str = "") -> None:
        """Append ``action`` to the plan and record its claims.

        ``adopted_email``: for an adoption matched on email or username, the member's email, so
        :meth:`refuse_shared_adoptions` can undo it if another Contact has that email too.
        """
        self.counts[action.kind] += 1
        if action.payload.get("suspended") is True:
            self.suspensions += 1
        cursor = self.db.execute("INSERT INTO actions (data) VALUES (?)", (_dump(action),))
        self._size += 1
        if adopted_email:
            self.db.execute(
                "INSERT INTO adoptions (seq, email) VALUES (?, ?)",
                (cursor.lastrowid, adopted_email.lower()),
            )
        if action.claims:
            self.db.executemany(
                "INSERT OR IGNORE INTO claims (key, contact_id) VALUES (?, ?)",
                [(key, action.contact_id) for key in action.claims],
            )

    def claimed(self, key: str) -> str | None:
        """The Contact Id that claimed ``key`` in this run, or None."""
        row = self.db.execute("SELECT contact_id FROM claims WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def mark_seen(self, contact_ids: Iterable[str]) -> None:
        """Remember these Contacts as planned."""
        self.db.executemany(
            "INSERT OR IGNORE INTO seen (contact_id) VALUES (?)", [(c,) for c in contact_ids]
        )

    def unseen(self, contact_ids: Iterable[str]) -> list[str]:
        """Those of ``contact_ids`` not planned yet, in the given order, each once."""
        out = []
        for contact_id in dict.fromkeys(contact_ids):
            row = self.db.execute(
                "SELECT 1 FROM seen WHERE contact_id = ?", (contact_id,)
            ).fetchone()
            if row is None:
                out.append(contact_id)
        return out

    def note_emails(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(email, contact_id)`` of members read (emails compared case-insensitively)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO emails (email, contact_id) VALUES (?, ?)",
            [(email.lower(), cid) for email, cid in pairs if email],
        )

    def refuse_shared_adoptions(self) -> list[str]:
        """Turn each adoption by an email that several Contacts of this run share into a
        conflict (``conflict:ambiguous_match``): whose the account is, a person must decide.

        Returns the Contact Ids concerned.
        """
        rows = self.db.execute(
            """
            SELECT a.seq, x.data FROM adoptions a JOIN actions x ON x.seq = a.seq
            WHERE (SELECT COUNT(*) FROM emails e WHERE e.email = a.email) > 1
            """
        ).fetchall()
        changed = []
        for seq, text in rows:
            old = _load(text)
            conflict = Action(
                CONFLICT,
                old.contact_id,
                None,
                code="conflict:ambiguous_match",
                note=f"moodle user {old.moodle_id} matches an email several contacts share",
                writeback=old.writeback,
            )
            self.db.execute("UPDATE actions SET data = ? WHERE seq = ?", (_dump(conflict), seq))
            self.counts[ADOPT] -= 1
            self.counts[CONFLICT] += 1
            if old.payload.get("suspended") is True:
                self.suspensions -= 1
            changed.append(old.contact_id)
        self.db.execute("DELETE FROM adoptions")
        return changed

    def __iter__(self) -> Iterator[Action]:
        """The actions in plan order, read lazily."""
        cursor = self.db.execute("SELECT data FROM actions ORDER BY seq")
        for (text,) in cursor:
            yield _load(text)

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


def _dump(action: Action) -> str:
    return json.dumps(
        {
            "k": action.kind,
            "c": action.contact_id,
            "m": action.moodle_id,
            "p": action.payload,
            "e": action.code,
            "n": action.note,
            "s": action.suspended,
            "w": action.writeback,
        }
    )


def _load(text: str) -> Action:
    d: dict[str, Any] = json.loads(text)
    return Action(
        kind=d["k"],
        contact_id=d["c"],
        moodle_id=d["m"],
        payload=d["p"],
        code=d["e"],
        note=d["n"],
        suspended=d["s"],
        writeback=d["w"],
    )


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
