"""The ``mentorsync`` command line."""

from __future__ import annotations

import logging
import sys

import click

from connector.config import Settings, load_settings
from connector.errors import ConfigError


class AppState:
    """What every command gets: the config path, loaded on first use and validated."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The validated settings; a config mistake ends the command with the key named."""
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from None
        return self._settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="MENTORSYNC_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML settings file (default: $MENTORSYNC_CONFIG; env MENTORSYNC_* overrides it).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail (ids and codes only).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """mentorsync keeps Salesforce (CRM) and Moodle (LMS) in step for mentorship programmes.

    Members flow CRM -> LMS, pairs and orientation CRM -> LMS, progress LMS -> CRM.
    Start with `mentorsync doctor` to check a configuration against both systems.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # urllib3's debug lines carry whole request URLs (SOQL, query strings): keep them out.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    ctx.obj = AppState(config_path)


def _register_commands() -> None:
    from connector.cli import demo, doctor, sandbox, service, status, sync

    for module in (demo, doctor, sandbox, service, status, sync):
        for command in module.COMMANDS:
            main.add_command(command)


_register_commands()


if __name__ == "__main__":
    main()
