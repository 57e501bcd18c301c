"""A throw-away Moodle 4.5 site on loopback for the real-Moodle test tier.

``MENTORSYNC_TEST_MOODLE_SOURCE`` names the Moodle 4.5 code: a ``.tgz`` that unpacks to ``moodle/``,
or an unpacked code tree (the directory holding ``version.php``). It is never modified: the tree
is copied into the cache directory (``MENTORSYNC_TEST_MOODLE_CACHE``, default ``var/moodle-tier/``),
where the site is built once:

1. a private PostgreSQL 15 cluster (run as ``nobody`` when we are root: PostgreSQL refuses root),
   on a free loopback port, with trust authentication on 127.0.0.1 only;
2. ``admin/cli/install_database.php`` (about 90 s on 2 cores), then ``site/configure.php``
   (Moodle's own APIs: service, integration user and role, courses, pages, profile fields);
3. one warm-up web-service call (so caches are built), then the integration user's
   ``last_time_enrolments_synced`` preference is removed again, so every restored site starts
   with the enrolment-check race armed, like a site whose integration user has never called;
4. a snapshot: the database as a template database plus a copy of moodledata.

The build is keyed by the source, the configuration script, the config template and the
plugin: a later session with the same key reuses the cluster and restores in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from connector.clients.moodle.site import REQUIRED_FUNCTIONS

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
SITE_FILES = Path(__file__).resolve().parent / "site"

EXTRA_FUNCTIONS = ("core_course_get_course_module", "local_mentorsync_get_completions")
PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
DB, TEMPLATE_DB = "moodle", "moodle_template"
ADMIN_PASSWORD = "Admin#Pass2026"


def plugin_dir() -> Path | None:
    """The plugin installed as ``local/mentorsync``, when it is there (it has a version.php).

    ``MENTORSYNC_TEST_MOODLE_PLUGIN`` overrides ``deploy/moodle/local_mentorsync``; set empty, no
    plugin (handy while the plugin is edited: each change of it rebuilds the site).
    """
    configured = os.environ.get("MENTORSYNC_TEST_MOODLE_PLUGIN")
    if configured == "":
        return None
    path = Path(configured) if configured else ROOT / "deploy" / "moodle" / "local_mentorsync"
    return path if (path / "version.php").is_file() else None


def pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL server binary (Debian keeps them off PATH)."""
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


def missing_prerequisites() -> list[str]:
    """What this machine lacks to build the site (empty when the tier can run)."""
    missing = []
    if shutil.which("php") is None:
        missing.append("php (bash .ci/install-prereqs)")
    for name in ("initdb", "pg_ctl"):
        if pg_bin(name) is None:
            missing.append(f"{name} (PostgreSQL 15: bash .ci/install-prereqs)")
    if shutil.which("psql") is None:
        missing.append("psql")
    source = os.environ.get("MENTORSYNC_TEST_MOODLE_SOURCE", "")
    if not source:
        missing.append("MENTORSYNC_TEST_MOODLE_SOURCE (a Moodle 4.5 .tgz or code tree)")
    elif not Path(source).exists():
        missing.append(f"MENTORSYNC_TEST_MOODLE_SOURCE={source} does not exist")
    return missing


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command; on failure raise with its output (never tokens: none are on the line)."""
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}):\n{tail}")
    return done.stdout


@dataclass
class Timings:
    """Seconds spent per build step (0 when the step was reused from the cache)."""

    unpack: float = 0.0
    install: float = 0.0
    configure: float = 0.0
    snapshot: float = 0.0
    restores: list[float] = field(default_factory=list)


class Server:
    """One ``php -S`` process serving the site at ``url`` with its own ``max_input_vars``."""

    def __init__(self, site: MoodleSite, max_input_vars: int, workers: int = 4) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.max_input_vars = max_input_vars
        env = site.env(wwwroot=self.url)
        # The built-in server is single-threaded unless told otherwise; concurrency is the point.
        env["PHP_CLI_SERVER_WORKERS"] = str(workers)
        self.log_path = site.cache / f"php-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["php", "-d", f"max_input_vars={max_input_vars}", "-d", "display_errors=0",
             "-S", f"127.0.0.1:{self.port}", "-t", str(site.code)],
            cwd=site.code, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers stop with it
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/webservice/rest/server.php", timeout=60)
                break
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"php -S did not start; see {self.log_path}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (its workers are its children and stop with it)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class MoodleSite:
    """The cached site: build or reuse, start and stop PostgreSQL, restore, serve."""

    def __init__(self, source: Path, cache: Path) -> None:
        self.source = source
        self.cache = cache
        self.code = cache / "moodle"
        self.pgdata = cache / "pg" / "data"
        self.dataroot = cache / "moodledata"
        self.dataroot_template = cache / "moodledata-template"
        self.info_file = cache / "site.json"
        self.pg_port = 0
        self.info: dict = {}
        self.timings = Timings()
        self._as_nobody = os.geteuid() == 0

    # --- PostgreSQL ----------------------------------------------------------------------

    def _pg(self, *args: str) -> list[str]:
        return ["runuser", "-u", "nobody", "--", *args] if self._as_nobody else list(args)

    def start_postgres(self) -> None:
        """Start the cluster on a free loopback port (``initdb`` first when there is none)."""
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            if self._as_nobody:
                shutil.chown(self.pgdata.parent, "nobody", "nogroup")
            _run(self._pg(pg_bin("initdb") or "initdb", "-D", str(self.pgdata), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"))
        if (self.pgdata / "postmaster.pid").exists():
            # Left running by a session of ours that was killed: stop it (ignoring a stale pid).
            subprocess.run(self._pg(pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.pgdata), "-w",
                                    "-m", "fast", "stop"), capture_output=True, check=False)
        self.pg_port = free_port()
        options = (
            f"-p {self.pg_port} -k {self.pgdata} -c listen_addresses=127.0.0.1 "
            # A throw-away cluster: durability buys nothing here and costs install minutes.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(self._pg(pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60",
                      "-l", str(self.pgdata.parent / "server.log"), "-o", options, "start"))

    def stop_postgres(self) -> None:
        """Stop the cluster (fast mode: connections are closed)."""
        if self.pg_port and (self.pgdata / "postmaster.pid").exists():
            _run(self._pg(pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.pgdata), "-w",
                          "-m", "fast", "stop"))
        self.pg_port = 0

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement as the cluster's superuser; return psql's unaligned output."""
        return _run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                     "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", statement])

    def _has_database(self, name: str) -> bool:
        return self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"

    # --- build -----------------------------------------------------------------------------

    def key(self) -> str:
        """What the cached site was built from: source, site files and plugin."""
        digest = hashlib.sha256()
        stat = self.source.stat()
        digest.update(f"{self.source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        for path in sorted(SITE_FILES.iterdir()):
            digest.update(path.name.encode() + path.read_bytes())
        plugin = plugin_dir()
        if plugin is not None:
            for path in sorted(plugin.rglob("*")):
                if path.is_file():
                    digest.update(str(path.relative_to(plugin)).encode() + path.read_bytes())
        digest.update(",".join(self.functions()).encode())
        return digest.hexdigest()

    @staticmethod
    def functions() -> list[str]:
        """Every function the service gets (absent ones, e.g. a missing plugin's, are skipped)."""
        return list(dict.fromkeys([*REQUIRED_FUNCTIONS, *EXTRA_FUNCTIONS]))

    def env(self, wwwroot: str = "http://127.0.0.1", database: str = DB) -> dict[str, str]:
        """The environment config.php reads."""
        env = dict(os.environ)
        env.update(
            MENTORSYNC_TEST_MOODLE_ROOT=str(self.code),
            MENTORSYNC_TEST_DB_PORT=str(self.pg_port),
            MENTORSYNC_TEST_DB_NAME=database,
            MENTORSYNC_TEST_DATAROOT=str(self.dataroot),
            MENTORSYNC_TEST_WWWROOT=wwwroot,
        )
        return env

    def prepare(self) -> None:
        """Reuse the cached site when its key matches, else build it from scratch."""
        key = self.key()
        if self.info_file.exists() and self.pgdata.exists():
            info = json.loads(self.info_file.read_text())
            if info.get("key") == key:
                self.start_postgres()
                if self._has_database(TEMPLATE_DB):
                    self.info = info
                    return
                self.stop_postgres()
        self.build(key)

    def build(self, key: str) -> None:
        """Unpack, install, configure, snapshot (every step timed)."""
        if self.cache.exists():
            shutil.rmtree(self.cache)
        self.cache.mkdir(parents=True)
        started = time.monotonic()
        self._unpack()
        self.timings.unpack = time.monotonic() - started
        self.start_postgres()
        self.sql(f"CREATE DATABASE {DB} ENCODING 'UTF8' TEMPLATE template0")
        self.dataroot.mkdir()
        started = time.monotonic()
        _run(["php", "-d", "max_input_vars=5000", "admin/cli/install_database.php",
              "--agree-license", f"--adminpass={ADMIN_PASSWORD}",
              "--adminemail=admin@example.org", "--fullname=Mentorship test site",
              "--shortname=mentorship"], env=self.env(), cwd=self.code)
        self.timings.install = time.monotonic() - started
        started = time.monotonic()
        out = _run(["php", str(SITE_FILES / "configure.php"),
                    "--functions=" + ",".join(self.functions())], env=self.env(), cwd=self.code)
        info = json.loads(out.strip().splitlines()[-1])
        self.timings.configure = time.monotonic() - started
        started = time.monotonic()
        self._warm_up(info["token"], int(info["userid"]))
        self.sql(f"CREATE DATABASE {TEMPLATE_DB} TEMPLATE {DB}")
        shutil.copytree(self.dataroot, self.dataroot_template, symlinks=True)
        self.timings.snapshot = time.monotonic() - started
        info["key"] = key
        info["timings"] = {
            "unpack": self.timings.unpack,
            "install": self.timings.install,
            "configure": self.timings.configure,
            "snapshot": self.timings.snapshot,
        }
        self.info_file.write_text(json.dumps(info, indent=1))
        self.info = info

    def _unpack(self) -> None:
        if self.source.is_dir():
            shutil.copytree(self.source, self.code, symlinks=True)
        else:
            # GNU tar is ten times faster than tarfile on Moodle's 30,000 files.
            _run(["tar", "-xzf", str(self.source), "-C", str(self.cache)])
        if not (self.code / "version.php").exists():
            raise RuntimeError(f"{self.source}: no moodle/version.php (not a Moodle code tree)")
        shutil.copy(SITE_FILES / "config.php.template", self.code / "config.php")
        plugin = plugin_dir()
        if plugin is not None:
            shutil.copytree(plugin, self.code / "local" / "mentorsync")

    def _warm_up(self, token: str, userid: int) -> None:
        """Fill the caches with one call, then re-arm the enrolment-check race (module doc)."""
        server = Server(self, 5000, workers=1)
        try:
            requests.post(server.url + "/webservice/rest/server.php", timeout=120, data={
                "wstoken": token, "wsfunction": "core_webservice_get_site_info",
                "moodlewsrestformat": "json"}).raise_for_status()
        finally:
            server.stop()
        self.forget_enrolment_check(userid)

    def forget_enrolment_check(self, userid: int) -> None:
        """Remove ``last_time_enrolments_synced`` so the next calls race to insert it again."""
        self.sql(
            "DELETE FROM mdl_user_preferences WHERE name = 'last_time_enrolments_synced' "
            f"AND userid = {int(userid)}",
            DB,
        )

    def race_enrolment_check(
        self, userid: int, calls: list[Callable[[], T]]
    ) -> list[T | Exception]:
        """Make ``calls`` lose the enrolment-check race for certain; their results in order.

        Left to chance, the window between Moodle's look-up and its insert of the preference
        is so short that a loaded machine went 25 rounds of 8 calls without one loss. Here
        inserts into ``mdl_user_preferences`` are held (a SHARE ROW EXCLUSIVE lock: reads go
        on, inserts wait) until every call waits on it, then let go together: one insert
        wins, every other call answers dmlwriteexception, as in the natural race.

        The calls start one at a time, each once the one before waits in the database: sent
        at once, two of them could be accepted by one ``php -S`` worker, and the second would
        queue behind the first instead of racing. So there must be no more calls than workers.
        """
        self.forget_enrolment_check(userid)
        holder = subprocess.Popen(
            ["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", DB,
             "-v", "ON_ERROR_STOP=1", "-Atq"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("BEGIN;\nLOCK TABLE mdl_user_preferences IN SHARE ROW EXCLUSIVE MODE;\n"
                           "SELECT 'held';\n")
        holder.stdin.flush()
        if holder.stdout.readline().strip() != "held":
            holder.kill()
            raise RuntimeError("could not lock mdl_user_preferences")
        results: list[T | Exception] = []
        threads: list[threading.Thread] = []

        def run(index: int, call: Callable[[], T]) -> None:
            try:
                results[index] = call()
            except Exception as exc:  # noqa: BLE001 - the caller inspects every outcome
                results[index] = exc

        try:
            for index, call in enumerate(calls):
                results.append(RuntimeError("not run"))
                threads.append(threading.Thread(target=run, args=(index, call), daemon=True))
                threads[-1].start()
                self._wait_for_preference_inserts(index + 1)
        finally:
            holder.communicate("COMMIT;\n")  # let go (also when a call never arrived)
            for thread in threads:
                thread.join()
        return results

    def _wait_for_preference_inserts(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while self._preference_inserts_waiting() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"call {count} never waited on the preference insert")
            time.sleep(0.02)  # polling the database's own view, with a deadline

    def _preference_inserts_waiting(self) -> int:
        return int(self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE '%insert%user_preferences%'",
            DB,
        ).strip())

    # --- between test modules -----------------------------------------------------------

    def restore(self) -> float:
        """Put the configured site back (database and moodledata); return the seconds taken."""
        started = time.monotonic()
        self.sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        self.sql(f"CREATE DATABASE {DB} TEMPLATE {TEMPLATE_DB}")
        shutil.rmtree(self.dataroot, ignore_errors=True)
        shutil.copytree(self.dataroot_template, self.dataroot, symlinks=True)
        seconds = time.monotonic() - started
        self.timings.restores.append(seconds)
        return seconds

    def php(self, script: str, *args: str) -> str:
        """Run a PHP CLI script of the site (path relative to the code tree)."""
        return _run(["php", script, *args], env=self.env(), cwd=self.code)
