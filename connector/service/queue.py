"""The Huey instance behind the worker, chosen by ``service.queue_url``.

- empty or ``sqlite:///path/queue.db``: :class:`huey.SqliteHuey`, a file in the data directory
  (the embedded default: one machine, nothing else to run);
- ``postgresql://user@host/db`` (or ``postgres://``): :class:`huey.PostgresHuey`, needs the
  ``postgres`` extra (psycopg 3);
- ``redis://host:6379/0`` (or ``rediss://``): :class:`huey.RedisHuey`, needs the ``redis`` extra;
- ``memory://``: :class:`huey.MemoryHuey`, one process only, for tests.

The queue only carries ids (inbox row ids, sync kind names); the state database's inbox is the
durable truth, so losing the queue loses no work (the sweeper re-enqueues it).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from huey import Huey, MemoryHuey, SqliteHuey

from connector.errors import ConfigError

QUEUE_NAME = "mentorsync"


def make_huey(url: str, *, name: str = QUEUE_NAME, blocking: bool = True) -> Huey:
    """Build the Huey instance for ``url``; raise :class:`ConfigError` naming the setting.

    ``blocking`` (PostgreSQL and Redis): a consumer's read waits for a task (LISTEN/NOTIFY,
    BRPOP) instead of polling; tests that drain a queue by hand pass False.
    """
    # "postgresql+psycopg://" is how SQLAlchemy spells the state database's URL; accept the
    # same spelling for the queue, so that one URL can serve both.
    scheme = urlparse(url).scheme.lower().split("+", 1)[0]
    # Results are never read (tasks report through the state database); storing them would
    # grow the queue's key-value table without bound.
    common = {"name": name, "results": False, "utc": True}
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError("service.queue_url", "a SQLite queue URL looks like sqlite:///path")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(filename=path, **common)
    if scheme in {"postgresql", "postgres"}:
        try:
            import psycopg  # noqa: F401  (PostgresHuey needs psycopg 3)
        except ImportError:
            raise ConfigError(
                "service.queue_url", "a PostgreSQL queue needs: pip install 'mentorsync[postgres]'"
            ) from None
        from huey import PostgresHuey

        # No connection at construction (a web process must start while PostgreSQL is down);
        # the worker creates the tables at start (init_schema).
        return PostgresHuey(
            dsn=libpq_url(url), create_tables=False, blocking=blocking, **common
        )
    if scheme in {"redis", "rediss"}:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigError(
                "service.queue_url", "a Redis queue needs: pip install 'mentorsync[redis]'"
            ) from None
        from huey import RedisHuey

        return RedisHuey(url=url, blocking=blocking, **common)
    if scheme == "memory":
        return MemoryHuey(**common)
    raise ConfigError(
        "service.queue_url",
        f"unknown scheme {scheme or '(none)'!r}: use sqlite:///, postgresql://, redis://",
    )


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it: ``postgresql://``, without a SQLAlchemy ``+driver``."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower().split("+", 1)[0] in {"postgresql", "postgres"}:
        return f"postgresql://{rest}"
    return url


def ping(huey: Huey) -> int:
    """Touch the queue's storage (raises when it is unreachable); returns the pending count."""
    return int(huey.pending_count())


def init_schema(huey: Huey) -> None:
    """Create the queue's tables if its storage has any and did not create them already."""
    initialize = getattr(huey.storage, "initialize_schema", None)
    if initialize is not None:
        initialize()
