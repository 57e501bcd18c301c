"""Options shared by several commands: ``--kind`` (checked against the registry), ``--json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def kind_names() -> list[str]:
    """The registered sync kinds' names."""
    try:
        from connector.registry import kinds
    except ImportError:  # before the composition root exists
        from connector.engine.kind import kinds
    return sorted(kinds())


class KindChoice(click.ParamType):
    """A sync kind name; the choices are read from the registry when the option is parsed.

    A plain ``click.Choice`` would import every kind when the CLI is loaded, and would not see
    kinds registered later.
    """

    name = "kind"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """Return ``value`` if it names a sync kind, else fail with the choices."""
        names = kind_names()
        if value in names:
            return str(value)
        self.fail(f"{value!r} is not a sync kind (choose from {', '.join(names)})", param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """Shown in --help."""
        return "[" + "|".join(kind_names()) + "]"


def kind_option(help_text: str) -> Callable[[F], F]:
    """``--kind NAME``, validated against the registered sync kinds."""
    return click.option("--kind", type=KindChoice(), default=None, help=help_text)


def json_option(f: F) -> F:
    """``--json``: one JSON document on stdout instead of tables, for scripts and monitoring."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts and monitoring)."
    )(f)
