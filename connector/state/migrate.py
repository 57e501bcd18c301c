"""Bring the state database to the current schema with Alembic, when it is opened.

Deployed databases exist, so every schema change from the ownership ledger on is a migration in
``migrations/versions``. Three cases when a database is opened:

- empty: the tables are made from the models in one go and stamped with the newest revision
  (what every test and a fresh install does; as fast as before migrations);
- made before migrations (tables, no ``alembic_version``): stamped with the baseline ``0001``,
  which is exactly that schema, then upgraded;
- migrated before: upgraded to the newest revision (nothing to do when it is current).

Two processes opening a fresh database at once are tolerated: the loser of a ``CREATE`` or of
the stamp finds everything in place when it looks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

log = logging.getLogger(__name__)

BASELINE = "0001"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def config() -> Config:
    """An Alembic configuration for this package's migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest revision."""
    current = ScriptDirectory.from_config(config()).get_current_head()
    if current is None:  # pragma: no cover  (the package ships its versions)
        raise RuntimeError("no migrations found in " + str(MIGRATIONS))
    return current


def current_revision(engine: Engine) -> str | None:
    """The revision the database is stamped with (None when it is not)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, create_all: Callable[[Engine], None]) -> None:
    """Bring ``engine``'s database to :func:`head` (``create_all`` makes an empty one)."""
    tables = set(inspect(engine).get_table_names())
    if "alembic_version" not in tables:
        if tables & {"runs", "cursors", "inbox"}:
            log.info("state database made before migrations: stamping %s", BASELINE)
            _stamp(engine, BASELINE)
        else:
            create_all(engine)
            _stamp(engine, head())
            return
    if current_revision(engine) != head():
        with engine.begin() as conn:
            cfg = config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        log.info("state database upgraded to %s", head())


def _stamp(engine: Engine, revision: str) -> None:
    try:
        with engine.begin() as conn:
            context = MigrationContext.configure(conn)
            if context.get_current_revision() is None:
                context.stamp(ScriptDirectory.from_config(config()), revision)
    except (IntegrityError, OperationalError, ProgrammingError) as exc:
        # Another process stamped (or made alembic_version) at the same moment.
        if current_revision(engine) is None:
            raise
        log.debug("stamp raced with another process: %s", type(exc).__name__)
