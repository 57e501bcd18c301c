"""The documents are true in a clone of this repository alone (defect 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "deploy" / "README.md"]
TOP = ("connector/", "webhooks/", "mappings/", "sandbox/", "bench/", "deploy/", "tests/", ".ci/")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_outside_the_clone(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert "DESIGN.md" not in text
    # mentorsync is not on PyPI: "pip install mentorsync" cannot work.
    assert not re.search(r"pip install '?mentorsync\b", text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    base = doc.parent
    missing = []
    for name in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)#\s]+)\)", text):
        name = name.rstrip(".,;:")
        # Patterns, URLs and Moodle capabilities (moodle/site:viewfullnames) are not paths.
        if any(c in name for c in "*<>{}$:"):
            continue
        relative = name.split(" ")[0]
        if relative.startswith(TOP):
            path = ROOT / relative
        elif relative.startswith(("systemd/", "nginx/", "moodle/", "salesforce/")):
            path = base / relative
        else:
            continue
        if not (path.exists() or (ROOT / relative).exists()):
            missing.append(relative)
    assert missing == []


def test_every_command_the_readme_shows_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    code = re.findall(r"`([^`\n]+)`", text) + [ln for b in blocks for ln in b.splitlines()]
    named = {
        match
        for span in code
        for match in re.findall(r"^(?:\$ )?mentorsync (?:--config \S+ )?([a-z]+)\b", span)
    }
    assert {"sync", "status", "retry", "doctor", "run"} <= named
    assert named <= set(main.commands), named - set(main.commands)
