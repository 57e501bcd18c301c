"""The ``mentorsync`` command line."""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata

import click

from connector.config import Settings, load_settings
from connector.errors import ConfigError

# Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
# Commands whose output is a report for a person; at a terminal they log warnings only.
REPORTING_COMMANDS = frozenset({"sync", "status", "retry", "doctor", "demo"})


class AppState:
    """What every command gets: the config path, loaded on first use and validated."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The validated settings; a config mistake ends the command with the key named.

        With neither ``--config`` nor ``MENTORSYNC_CONFIG``, ``./mentorsync.toml`` and
        ``/etc/mentorsync/mentorsync.toml`` are tried; with none of them and no ``MENTORSYNC_*``
        setting, the command stops and says which files it looked for.
        """
        from connector.cli.preflight import find_config

        if self._settings is None:
            try:
                path = find_config(self.config_path, os.environ)
                self._settings = load_settings(path)
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from None
        return self._settings

    def require(self, *systems: str, storage: bool = True) -> Settings:
        """The settings, refused at once when ``systems``' credentials or the data dir are missing.

        ``systems`` are "moodle" and/or "salesforce". ``storage`` creates the directories of
        the SQLite state database and queue; without it they are only checked (and nothing
        is left behind).
        """
        from connector.cli.preflight import ensure_data_dir, probe_data_dir, require_credentials

        settings = self.settings
        try:
            require_credentials(settings, systems)
            (ensure_data_dir if storage else probe_data_dir)(settings)
        except ConfigError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
        return settings


class MainGroup(click.Group):
    """The top-level group: Ctrl-C ends any command with one line and exit status 130."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand; turn KeyboardInterrupt into exit 130 (click would say "Aborted!")."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nmentorsync: interrupted (Ctrl-C)", err=True)
            sys.exit(EXIT_INTERRUPTED)


def _version() -> str:
    try:
        return metadata.version("mentorsync")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="mentorsync")
@click.option(
    "--config",
    "config_path",
    envvar="MENTORSYNC_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML settings file (default: $MENTORSYNC_CONFIG, else ./mentorsync.toml, else "
    "/etc/mentorsync/mentorsync.toml; env MENTORSYNC_* overrides it).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail (ids and codes only).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """mentorsync keeps Salesforce (CRM) and Moodle (LMS) in step for mentorship programmes.

    Members flow CRM -> LMS, pairs and orientation CRM -> LMS, progress LMS -> CRM.
    Start with `mentorsync doctor` to check a configuration against both systems.
    """
    # An admin at a terminal running a command that reports (sync, status...) reads its
    # summary; the INFO lines (ids and codes) are for services and logs, or -v.
    interactive = ctx.invoked_subcommand in REPORTING_COMMANDS and sys.stderr.isatty()
    level = logging.DEBUG if verbose else logging.WARNING if interactive else logging.INFO
    configure_logging(level)
    ctx.obj = AppState(config_path)


def configure_logging(level: int) -> None:
    """Log lines to stderr at ``level``, as every command (and ``serve``'s workers) writes them."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # urllib3's debug lines carry whole request URLs (SOQL, query strings): keep them out.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    # Alembic announces its plugins and migration context on every start: not news.
    logging.getLogger("alembic").setLevel(
        logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    )


def _register_commands() -> None:
    from connector.cli import demo, doctor, retry, sandbox, service, status, sync

    for module in (demo, doctor, retry, sandbox, service, status, sync):
        for command in module.COMMANDS:
            main.add_command(command)


_register_commands()


if __name__ == "__main__":
    main()
