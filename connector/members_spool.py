"""The plan of one member run, kept on disk so memory stays flat however many members there are.

A member run plans everything first (so the mass-change guard sees the whole plan before
anything is applied), then applies it. The plan of 50,000 members does not belong in memory:
it goes to a private temporary SQLite database (``sqlite3.connect("")``), which SQLite deletes
when it is closed, with only a small page cache in memory. It holds, for this run only:

- the actions in plan order (compact JSON: ids, changed fields, codes);
- the claims (usernames, emails, adopted accounts taken by a Contact earlier in the run);
- the Contact Ids already planned, so a Contact reached twice (a changed record that is also due
  for retry, a merge survivor) is planned once.

The actions of creates and changed fields include names and emails: the file is private to the
process (mode 0600 in the temp directory) and gone when the run ends.
"""

from __future__ import annotations

import collections
import json
import sqlite3
from collections.abc import Iterable, Iterator

from connector.members_plan import Action


class PlanSpool:
    """Actions, claims and seen Contact Ids of one run, on disk."""

    def __init__(self) -> None:
        # "" = a temporary on-disk database, deleted on close.
        self._db = sqlite3.connect("")
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -4096;
            CREATE TABLE actions (seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
            CREATE TABLE claims (key TEXT PRIMARY KEY, contact_id TEXT NOT NULL);
            CREATE TABLE seen (contact_id TEXT PRIMARY KEY);
            """
        )
        self.counts: collections.Counter[str] = collections.Counter()
        # Actions that suspend an account (the mass-change guard's number).
        self.suspensions = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, action: Action) -> None:
        """Append ``action`` to the plan and record its claims."""
        self.counts[action.kind] += 1
        if action.payload.get("suspended") is True:
            self.suspensions += 1
        data = {
            "k": action.kind,
            "c": action.contact_id,
            "m": action.moodle_id,
            "p": action.payload,
            "e": action.code,
            "n": action.note,
            "s": action.suspended,
            "w": action.writeback,
        }
        self._db.execute("INSERT INTO actions (data) VALUES (?)", (json.dumps(data),))
        self._size += 1
        if action.claims:
            self._db.executemany(
                "INSERT OR IGNORE INTO claims (key, contact_id) VALUES (?, ?)",
                [(key, action.contact_id) for key in action.claims],
            )

    def claimed(self, key: str) -> str | None:
        """The Contact Id that claimed ``key`` in this run, or None."""
        row = self._db.execute("SELECT contact_id FROM claims WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def mark_seen(self, contact_ids: Iterable[str]) -> None:
        """Remember these Contacts as planned."""
        self._db.executemany(
            "INSERT OR IGNORE INTO seen (contact_id) VALUES (?)", [(c,) for c in contact_ids]
        )

    def unseen(self, contact_ids: Iterable[str]) -> list[str]:
        """Those of ``contact_ids`` not planned yet, in the given order, each once."""
        out = []
        for contact_id in dict.fromkeys(contact_ids):
            row = self._db.execute(
                "SELECT 1 FROM seen WHERE contact_id = ?", (contact_id,)
            ).fetchone()
            if row is None:
                out.append(contact_id)
        return out

    def __iter__(self) -> Iterator[Action]:
        """The actions in plan order, read lazily."""
        cursor = self._db.execute("SELECT data FROM actions ORDER BY seq")
        for (text,) in cursor:
            d = json.loads(text)
            yield Action(
                kind=d["k"],
                contact_id=d["c"],
                moodle_id=d["m"],
                payload=d["p"],
                code=d["e"],
                note=d["n"],
                suspended=d["s"],
                writeback=d["w"],
            )

    def close(self) -> None:
        """Drop the plan (SQLite deletes the temporary file)."""
        self._db.close()
