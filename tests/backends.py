"""Real PostgreSQL and Redis servers for tests, on loopback ports of their own.

Each server is started once per test session (the fixtures below), as a non-root user (PostgreSQL
refuses root; Redis has no need for it), in a private temporary directory, and stopped at the end.
Tests then get a fresh PostgreSQL database, or a Huey queue of their own name on the shared Redis,
per test, so that nothing leaks between tests.

The backends a test runs over (fixture ``backend``):

- ``sqlite``: SQLite state database and a SQLite Huey queue, in the test's directory;
- ``postgresql``: PostgreSQL state database and a :class:`huey.PostgresHuey` queue in the same
  database (the shared-database deployment);
- ``redis``: SQLite state database and a :class:`huey.RedisHuey` queue.

A backend whose server binary or Python driver is missing is skipped locally; with ``CI=true`` it
fails instead, so that CI never passes by skipping. ``MENTORSYNC_TEST_POSTGRES_URL`` and
``MENTORSYNC_TEST_REDIS_URL`` point the tests at servers started elsewhere (``.ci/services``)
instead of starting their own.

Run as a script, it starts both servers and prints their URLs until interrupted:
``python -m tests.backends``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from huey import Huey

from connector.service.queue import init_schema, make_huey

PG_BIN = Path(os.environ.get("MENTORSYNC_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "mentorsync"
BACKENDS = ("sqlite", "postgresql", "redis")
# The unprivileged account servers run as when the tests run as root.
SERVICE_ACCOUNT = os.environ.get("MENTORSYNC_TEST_SERVICE_USER", "nobody")
START_SECONDS = 60.0


class ServerUnavailable(RuntimeError):
    """The server (or its Python driver) is not installed here."""


def in_ci() -> bool:
    """Whether missing backends must fail the run (``CI=true``) rather than skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a missing backend must never pass CI silently."""
    if in_ci():
        pytest.fail(f"backend unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _account() -> tuple[int, int] | None:
    """``(uid, gid)`` to run servers as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(SERVICE_ACCOUNT)
    return entry.pw_uid, entry.pw_gid


def _private_dir(prefix: str, account: tuple[int, int] | None) -> Path:
    # Under the system temp dir (world-traversable), not pytest's 0700 root-owned tmp_path,
    # which the unprivileged server account could not enter.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if account is not None:
        os.chown(root, *account)
    root.chmod(0o700)
    return root


def _wait(ready: object, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        if ready():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_SECONDS:.0f} s: {_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """A server process we started, its port and private directory."""

    name: str
    port: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 30 s) and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown; Redis stops on it too.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, durable: bool = False, statements: bool = False) -> Server:
    """initdb and start a PostgreSQL cluster on 127.0.0.1:<free port>; return it when ready.

    ``durable=False`` turns fsync off (tests: nothing must survive a power cut, and CREATE
    DATABASE per test is several times faster); benchmarks pass ``durable=True``.
    ``statements=True`` loads pg_stat_statements (planning counted too) and times WAL flushes
    (``track_wal_io_timing``), for benchmarks that say where the server's time went.
    """
    if not (PG_BIN / "postgres").exists():
        raise ServerUnavailable(f"PostgreSQL server not found in {PG_BIN}")
    if importlib.util.find_spec("psycopg") is None:
        raise ServerUnavailable("psycopg not installed (pip install 'mentorsync[postgres]')")
    import psycopg

    account = _account()
    root = _private_dir("mentorsync-pg-", account)
    data, log = root / "data", root / "server.log"
    as_user = {"user": account[0], "group": account[1]} if account else {}
    subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        cwd=root,
        **as_user,
    )
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(root),
        "fsync": "on" if durable else "off",
        "synchronous_commit": "on" if durable else "off",
        "full_page_writes": "on" if durable else "off",
        "max_connections": "200",
    }
    if statements:
        settings["shared_preload_libraries"] = "pg_stat_statements"
        settings["pg_stat_statements.track_planning"] = "on"
        settings["track_wal_io_timing"] = "on"
    args = [str(PG_BIN / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=root, **as_user)
    url = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
    server = Server("postgresql", port, root, proc, url)

    def ready() -> bool:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    try:
        _wait(ready, proc, "postgres", log)
    except BaseException:
        server.stop()
        raise
    return server


def start_redis() -> Server:
    """Start redis-server on 127.0.0.1:<free port> (no persistence); return it when ready."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable("redis-server not installed")
    if importlib.util.find_spec("redis") is None:
        raise ServerUnavailable("redis not installed (pip install 'mentorsync[redis]')")
    import redis

    account = _account()
    root = _private_dir("mentorsync-redis-", account)
    log = root / "server.log"
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root)]
    args += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
    as_user = {"user": account[0], "group": account[1]} if account else {}
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=root, **as_user)
    url = f"redis://127.0.0.1:{port}/0"
    server = Server("redis", port, root, proc, url)

    def ready() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
        except redis.ConnectionError:
            return False

    try:
        _wait(ready, proc, "redis-server", log)
    except BaseException:
        server.stop()
        raise
    return server


_counter = itertools.count()


def create_database(server_url: str) -> str:
    """A new, empty database on the server; returns its SQLAlchemy/libpq URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`, closing whatever is still connected."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- pytest fixtures ------------------------------------------------------------------------


def _session_server(kind: str) -> Iterator[Server | None]:
    external = os.environ.get(f"MENTORSYNC_TEST_{kind.upper()}_URL", "")
    if external:
        yield Server(kind, 0, Path(tempfile.gettempdir()), None, external)
        return
    try:
        server = start_postgres() if kind == "postgres" else start_redis()
    except ServerUnavailable as exc:
        # Reported by each test that asks for the backend (skip, or fail in CI).
        yield Server(kind, 0, Path(tempfile.gettempdir()), None, f"unavailable: {exc}")
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server | None]:
    """One PostgreSQL cluster for the session (``url`` says ``unavailable: ...`` if missing)."""
    yield from _session_server("postgres")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server | None]:
    """One Redis server for the session (``url`` says ``unavailable: ...`` if missing)."""
    yield from _session_server("redis")


def _require(server: Server | None) -> str:
    assert server is not None
    if server.url.startswith("unavailable: "):
        unavailable(server.url.removeprefix("unavailable: "))
    return server.url


@dataclass
class Backend:
    """Where one test's state database and queue live."""

    name: str
    database_url: str
    queue_url: str
    queue_name: str
    hueys: list[Huey] = field(default_factory=list)

    def overrides(self) -> dict[str, str]:
        """``service`` settings for :func:`tests.webhooks.fakes.make_settings`."""
        return {"database_url": self.database_url, "queue_url": self.queue_url}

    def child_args(self) -> list[str]:
        """``database_url queue_url queue_name``, for a child process on the same backend."""
        return [self.database_url, self.queue_url, self.queue_name]

    def huey(self) -> Huey:
        """A Huey on this backend's queue with its tables made (closed at teardown).

        Non-blocking: tests drain the queue with ``dequeue()`` until it is empty, and a
        blocking PostgreSQL or Redis read would wait a second for nothing at the end.
        """
        huey = make_huey(self.queue_url, name=self.queue_name, blocking=False)
        init_schema(huey)
        self.hueys.append(huey)
        return huey


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Backend]:
    """Each test that asks for it runs three times: over sqlite, postgresql and redis."""
    name: str = request.param
    queue_name = f"q{uuid.uuid4().hex[:12]}"
    sqlite_state = f"sqlite:///{(tmp_path / 'mentorsync.db').resolve()}"
    if name == "sqlite":
        work = Backend(name, sqlite_state, f"sqlite:///{(tmp_path / 'queue.db').resolve()}",
                       queue_name)
    elif name == "postgresql":
        url = create_database(_require(request.getfixturevalue("postgres_server")))
        work = Backend(name, url, url, queue_name)
    else:
        work = Backend(name, sqlite_state, _require(request.getfixturevalue("redis_server")),
                       queue_name)
    try:
        yield work
    finally:
        for huey in work.hueys:
            huey.flush()
            huey.storage.close()
        if name == "postgresql":
            drop_database(work.database_url)


def main() -> None:
    """Start both servers, print their URLs as environment lines, stop them on SIGINT/SIGTERM."""
    servers = [start_postgres(durable="--durable" in sys.argv), start_redis()]
    try:
        print(f"MENTORSYNC_TEST_POSTGRES_URL={servers[0].url}", flush=True)
        print(f"MENTORSYNC_TEST_REDIS_URL={servers[1].url}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
