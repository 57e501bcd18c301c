"""A fake sync kind in the registry, a config file and a CLI runner for the command tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import connector.registry
from connector.cli import main
from connector.engine.kind import RunResult, SyncRequest

CONTACT_A = "0035e00000AbCdEAAV"
CONTACT_B = "0035e00000AbCdFAAV"


class WordyKind:
    """People, CRM -> LMS: a fake kind whose first paragraph spans two lines
    of its docstring, so the help must not stop at the first line.

    Second paragraph: not in the help.
    """

    name = "people"
    objects = ("Contact",)
    summary_labels = {
        "created": "created {n} accounts",
        "conflicts": "{n} conflicts (shared email)",
        "skipped": "{n} skipped (no email)",
    }

    def __init__(self) -> None:
        self.calls: list[SyncRequest] = []
        self.behaviour: Callable[[Any, SyncRequest, Any], RunResult] | None = None

    def run(self, ctx: Any, request: SyncRequest, progress: Any = None) -> RunResult:
        """Record the request; answer with ``behaviour`` or an ok run."""
        self.calls.append(request)
        if self.behaviour is not None:
            return self.behaviour(ctx, request, progress)
        return RunResult(kind=self.name, status="ok", counts={"created": len(request.ids)})


@dataclass
class Cli:
    """Runs ``mentorsync --config <config> ...`` in-process."""

    config: Path
    kind: WordyKind
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, config: bool = True) -> Result:
        prefix = ["--config", str(self.config)] if config else []
        return CliRunner().invoke(main, [*prefix, *args], env=self.env, catch_exceptions=False)


def write_config(tmp_path: Path, extra: str = "", *, credentials: bool = True) -> Path:
    """A config on dead loopback ports; with or without the credentials."""
    secrets = (
        'token = "moodle-token"\n' if credentials else "",
        'username = "sync@example.org"\npassword = "pw"\n' if credentials else "",
    )
    path = tmp_path / "mentorsync.toml"
    path.write_text(
        f"""[moodle]
url = "http://127.0.0.1:9"
{secrets[0]}[salesforce]
domain = "127.0.0.1:9"
{secrets[1]}[service]
data_dir = "{tmp_path / "data"}"
{extra}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def people(monkeypatch: pytest.MonkeyPatch) -> WordyKind:
    """A registry holding only the fake ``people`` kind."""
    connector.registry.kinds()  # load the built-in kinds now, then hide them
    kind = WordyKind()
    monkeypatch.setattr(connector.registry, "REGISTRY", {kind.name: kind})
    return kind


@pytest.fixture
def cli(tmp_path: Path, people: WordyKind) -> Cli:
    return Cli(write_config(tmp_path), people)
