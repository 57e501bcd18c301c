"""``mentorsync doctor``: a readable report of what works and what to fix."""

from __future__ import annotations

import click
from rich.console import Console

from connector.context import Context
from connector.service.doctor import healthy, run_doctor

STATUS_STYLE = {"ok": "[green]ok[/]", "fail": "[bold red]FAIL[/]", "note": "[yellow]note[/]"}


@click.command()
@click.pass_obj
def doctor(app: object) -> None:
    """Check the configuration against Moodle and Salesforce.

    Moodle: reachable, site and version, every needed web-service function, the programme's
    courses and meeting activities. Salesforce: login, API budget left, every object and field
    of the field map. Exits 0 only when everything needed is there.
    """
    settings = app.settings  # type: ignore[attr-defined]
    ctx = Context(settings)
    checks = run_doctor(settings, ctx.moodle, ctx.salesforce)
    console = Console(highlight=False)
    console.print("[bold]mentorsync doctor[/]")
    for check in checks:
        line = f"{STATUS_STYLE[check.status]:>24} {check.system:<10} {check.name}: {check.detail}"
        console.print(line, soft_wrap=True)
        if check.fix:
            console.print(f"{'':>15}-> {check.fix}", soft_wrap=True)
    if not healthy(checks):
        failed = sum(1 for c in checks if c.status == "fail")
        raise click.ClickException(f"{failed} problem(s) found; see 'what to do' above")
    click.echo("Everything mentorsync needs is there.")


COMMANDS: list[click.Command] = [doctor]
