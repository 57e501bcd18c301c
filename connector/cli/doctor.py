"""``mentorsync doctor``: a readable report of what works and what to fix."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console

from connector.cli.options import json_option
from connector.cli.preflight import missing_credentials
from connector.context import Context
from connector.service.doctor import (
    Check,
    check_metadata,
    check_moodle,
    check_salesforce,
    config_check,
    healthy,
)

STATUS_STYLE = {"ok": "[green]ok[/]", "fail": "[bold red]FAIL[/]", "note": "[yellow]note[/]"}


def checks_for(settings: Any, ctx: Context) -> list[Check]:
    """Every check, Moodle first; a system whose credentials are missing is not called at all."""
    checks: list[Check] = []
    for system, run in (("moodle", check_moodle), ("salesforce", check_salesforce)):
        missing = missing_credentials(settings, [system])
        if missing:
            checks.extend(config_check(system, exc) for exc in missing)
        else:
            client = ctx.moodle if system == "moodle" else ctx.salesforce
            checks.extend(run(settings, client))
    checks.extend(check_metadata(settings))  # offline: the field map against deploy/salesforce
    return checks


@click.command()
@json_option
@click.pass_obj
def doctor(app: Any, as_json: bool) -> None:
    """Check the configuration against Moodle and Salesforce.

    Moodle: reachable, site and version, every needed web-service function, the programme's
    courses and meeting activities. Salesforce: login, API budget left, every object and field
    of the field map. A missing credential is reported as such, without calling the system.
    Exits 0 only when everything needed is there.
    """
    settings = app.settings
    ctx = Context(settings)
    try:
        checks = checks_for(settings, ctx)
    finally:
        ctx.close()
    failed = sum(1 for c in checks if c.status == "fail")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "healthy": healthy(checks),
                    "checks": [
                        {
                            "system": c.system, "name": c.name, "status": c.status,
                            "detail": c.detail, "fix": c.fix or None,
                        }
                        for c in checks
                    ],
                },
                indent=2,
            )
        )
        if failed:
            raise SystemExit(1)
        return
    console = Console(highlight=False)
    console.print("[bold]mentorsync doctor[/]")
    for check in checks:
        line = f"{STATUS_STYLE[check.status]:>24} {check.system:<10} {check.name}: {check.detail}"
        console.print(line, soft_wrap=True)
        if check.fix:
            console.print(f"{'':>15}-> {check.fix}", soft_wrap=True)
    if failed:
        raise click.ClickException(f"{failed} problem(s) found; see 'what to do' above")
    click.echo("Everything mentorsync needs is there.")


COMMANDS: list[click.Command] = [doctor]
