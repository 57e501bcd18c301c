"""Checks a command makes before it does anything: which config file, credentials, data directory.

Why here and not in :func:`connector.config.load_settings`: ``load_settings`` builds settings for
every use, including ``status`` and ``retry`` (which read the state database and need no
credential), the sandbox's and the demo's own configs, and the tests' settings. Each command
states what it needs (:meth:`connector.cli.AppState.require`), and is refused at its start, with
the key named, when that is missing; a command that needs nothing of a system is not refused
for it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connector.config import ENV_PREFIX, SECTIONS, Settings
from connector.errors import ConfigError

# Where a config file is looked for when neither --config nor MENTORSYNC_CONFIG names one.
SEARCH_PATH: tuple[Path, ...] = (Path("mentorsync.toml"), Path("/etc/mentorsync/mentorsync.toml"))

# The credentials each Salesforce grant needs (salesforce.auth); see connector.clients.salesforce.
SALESFORCE_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "password": ("username", "password"),
    "jwt": ("username", "consumer_key", "private_key"),
    "client_credentials": ("consumer_key", "consumer_secret"),
    "session": ("session_id", "instance_url"),
}


def find_config(
    explicit: str | None, env: Mapping[str, str], search: Iterable[Path] | None = None
) -> str | None:
    """The config file to load: ``--config``, else ``$MENTORSYNC_CONFIG``, else the search path.

    Raises :class:`ConfigError` (key ``config``) when none is found and no ``MENTORSYNC_*``
    setting is given either: running silently on built-in defaults (a Moodle on 127.0.0.1)
    helps nobody. Settings from the environment alone are allowed (containers).
    """
    named = explicit or env.get(ENV_PREFIX + "CONFIG")
    if named:
        return named
    searched = list(SEARCH_PATH if search is None else search)
    for candidate in searched:
        if candidate.is_file():
            return str(candidate)
    if any(_is_setting(name) for name in env):
        return None
    looked = " and ".join(str(p if p.is_absolute() else Path.cwd() / p) for p in searched)
    raise ConfigError(
        "config",
        f"no configuration file; looked for {looked}. Give --config FILE or set "
        "MENTORSYNC_CONFIG (or MENTORSYNC_<SECTION>_<KEY> variables)",
    )


def _is_setting(name: str) -> bool:
    if not name.startswith(ENV_PREFIX):
        return False
    section = name[len(ENV_PREFIX) :].lower().partition("_")[0]
    return section in SECTIONS


def missing_credentials(settings: Settings, systems: Iterable[str]) -> list[ConfigError]:
    """Every credential that ``systems`` ("moodle", "salesforce") need and the settings lack."""
    missing: list[ConfigError] = []
    for system in systems:
        if system == "moodle" and not settings.moodle.token:
            missing.append(ConfigError("moodle.token", "required (the web-service token)"))
        if system == "salesforce":
            sf = settings.salesforce
            names = list(SALESFORCE_CREDENTIALS.get(sf.auth, ()))
            if sf.auth == "password" and sf.consumer_key:
                names.append("consumer_secret")  # the OAuth password grant
            missing.extend(
                ConfigError(f"salesforce.{name}", f"required for auth = {sf.auth}")
                for name in names
                if not getattr(sf, name)
            )
    return missing


def require_credentials(settings: Settings, systems: Iterable[str]) -> None:
    """Raise the first :func:`missing_credentials` error, if any."""
    missing = missing_credentials(settings, systems)
    if missing:
        raise missing[0]


def sqlite_files(settings: Settings) -> list[tuple[str, str, Path]]:
    """``(role, key, path)`` of the SQLite files: the state database and the queue.

    ``role`` is "database" or "queue"; ``key`` is the setting that places the file.
    """
    files: list[tuple[str, str, Path]] = []
    for role, key, url, explicit in (
        ("database", "database_url", settings.database_url, settings.service.database_url),
        ("queue", "queue_url", settings.queue_url, settings.service.queue_url),
    ):
        try:
            parsed = make_url(url)
        except ArgumentError:
            continue  # a queue URL that SQLAlchemy does not parse (redis://): not a file
        if parsed.get_backend_name() != "sqlite" or not parsed.database:
            continue
        if parsed.database == ":memory:":
            continue
        files.append((role, "service." + (key if explicit else "data_dir"), Path(parsed.database)))
    return files


def state_file(settings: Settings) -> Path | None:
    """The state database's SQLite file, or None when it is not SQLite."""
    return next((path for role, _, path in sqlite_files(settings) if role == "database"), None)


def ensure_data_dir(settings: Settings) -> None:
    """Create the directories of the SQLite files, or raise :class:`ConfigError` naming the key.

    Without this a data directory that cannot be created (``/proc/nope``, or
    ``/var/lib/mentorsync`` for a user who may not write there) surfaces as a traceback from
    the state module.
    """
    for _, key, path in sqlite_files(settings):
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(key, f"cannot create {directory} ({_reason(exc)})") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(key, f"cannot write in {directory} (permission denied)")


def probe_data_dir(settings: Settings) -> None:
    """Like :func:`ensure_data_dir`, but leaves nothing behind: what it creates, it removes.

    For commands that must leave no trace (a dry run, ``status``) yet should name a data
    directory that could never be used, rather than fail later or say nothing.
    """
    for _, key, path in sqlite_files(settings):
        directory = path.parent
        created: list[Path] = []
        probe = directory
        while not probe.exists():
            created.append(probe)
            probe = probe.parent
        try:
            for part in reversed(created):
                part.mkdir()
        except OSError as exc:
            raise ConfigError(key, f"cannot create {directory} ({_reason(exc)})") from None
        finally:
            for part in created:
                if part.is_dir():
                    part.rmdir()
        if not os.access(probe, os.W_OK | os.X_OK) or not probe.is_dir():
            raise ConfigError(key, f"cannot write in {probe} (permission denied)")


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "a parent directory cannot hold it"
    return (exc.strerror or type(exc).__name__).lower()
