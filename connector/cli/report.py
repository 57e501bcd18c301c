"""What a run says when it ends: a summary in words, the plan grouped by action, or JSON.

Words come from the kind's ``summary_labels`` (counter -> phrase with ``{n}``, e.g.
``{"created": "created {n} accounts"}``); a counter without a label gets a plain
``name: n``, and the kind's bookkeeping counters (:data:`INTERNAL_COUNTERS`, plus any the kind
lists in ``internal_counters``) appear only in ``--json`` and ``/metrics``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.engine.kind import RunResult

# Bookkeeping counters, kept out of the words (still in --json and /metrics).
INTERNAL_COUNTERS = frozenset(
    {
        "linked_active", "written_back", "planned", "read", "deleted_read", "moodle_failed",
        "writeback_failed", "unchanged",
    }
)
# The first plural-looking word of the two after "{n}" in a label: made singular for n == 1
# ("1 conflict", "linked 1 existing account"). Words in -ss, -us, -is are not plurals.
_PLURAL_AFTER_N = re.compile(r"(\{n\}(?: \w+)?? )(\w{2,}?[^su\W])s\b")


def labels_of(kind: object) -> dict[str, str]:
    """The kind's counter labels (``summary_labels``), or none."""
    labels = getattr(kind, "summary_labels", None)
    return dict(labels) if isinstance(labels, Mapping) else {}


def internal_of(kind: object) -> frozenset[str]:
    """Counters kept out of the words for ``kind``."""
    extra = getattr(kind, "internal_counters", ()) or ()
    return INTERNAL_COUNTERS | frozenset(extra)


def phrase(template: str, n: int) -> str:
    """``template`` with ``{n}`` filled in, its plural word made singular when ``n == 1``."""
    if n == 1:
        template = _PLURAL_AFTER_N.sub(lambda m: m.group(1) + m.group(2), template, count=1)
    return template.replace("{n}", f"{n:,}")


def summary_words(kind: object, counts: Mapping[str, int]) -> list[str]:
    """One phrase per non-zero counter staff care about, labelled ones first, in label order."""
    labels = labels_of(kind)
    hidden = internal_of(kind)
    words = [phrase(t, int(counts[k])) for k, t in labels.items() if counts.get(k)]
    for key in sorted(counts):
        if key in labels or key in hidden or not counts[key]:
            continue
        words.append(f"{key.replace('_', ' ')}: {int(counts[key]):,}")
    return words


def plan_counts(plan: Iterable[tuple[str, str, str]]) -> dict[str, int]:
    """How many plan lines each action has, most frequent first."""
    return dict(Counter(action for action, _, _ in plan).most_common())


def filter_plan(
    plan: Sequence[tuple[str, str, str]], only: Sequence[str]
) -> list[tuple[str, str, str]]:
    """The plan lines whose action is one of ``only`` (all of them when ``only`` is empty)."""
    wanted = {a.lower() for a in only}
    return [line for line in plan if not wanted or line[0].lower() in wanted]


def plan_table(plan: Sequence[tuple[str, str, str]], names: Mapping[str, str] | None) -> Table:
    """The plan grouped by action (stable order within a group), with names when asked for."""
    table = Table()
    table.add_column("action")
    table.add_column("record", no_wrap=True)
    if names is not None:
        table.add_column("name")
    table.add_column("details", overflow="fold")
    order = {action: i for i, action in enumerate(plan_counts(plan))}
    for action, record_id, details in sorted(plan, key=lambda line: order[line[0]]):
        row = [action, record_id]
        if names is not None:
            row.append(names.get(record_id, "?"))
        table.add_row(*row, details)
    return table


def print_result(
    console: Console,
    kind: object,
    result: RunResult,
    *,
    only: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
) -> None:
    """The plan (dry run), then the summary in words and the status line."""
    if result.status == "dry_run" or result.plan:
        counts = plan_counts(result.plan)
        if counts:
            shown = filter_plan(result.plan, only)
            title = f"Plan ({result.kind}): " + ", ".join(f"{a} {n:,}" for a, n in counts.items())
            if only:
                title += f"; showing {', '.join(only)}"
            console.print(title, soft_wrap=True)  # a table title would wrap at the table
            if shown:
                console.print(plan_table(shown, names))
            else:
                console.print(f"  nothing to {' or '.join(only)} in this plan")
        else:
            console.print("Plan: nothing to do.")
    words = summary_words(kind, result.counts)
    if result.status != "dry_run":
        head = f"{result.kind} run {result.run_id}" if result.run_id else result.kind
        text = ", ".join(words) if words else "nothing to do"
        console.print(f"{head}: {text}", soft_wrap=True)
    style = {"ok": "green", "dry_run": "cyan", "failed_records": "yellow"}.get(
        result.status, "bold red"
    )
    line = f"status: [{style}]{result.status}[/]"
    if result.reason:
        line += f" ({result.reason})"
    console.print(line, soft_wrap=True)
    if result.failed:
        console.print("Failed records: see `mentorsync status`.")


def result_json(
    kind: object,
    result: RunResult,
    *,
    only: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
) -> str:
    """The run as one JSON object: every counter (internal ones too), words, the plan."""
    plan: list[dict[str, Any]] = []
    for action, record_id, details in filter_plan(result.plan, only):
        line: dict[str, Any] = {"action": action, "record": record_id, "details": details}
        if names is not None:
            line["name"] = names.get(record_id)
        plan.append(line)
    return json.dumps(
        {
            "kind": result.kind,
            "run_id": result.run_id,
            "status": result.status,
            "reason": result.reason or None,
            "counts": dict(sorted(result.counts.items())),
            "summary": summary_words(kind, result.counts),
            "plan_counts": plan_counts(result.plan),
            "plan": plan,
        },
        indent=2,
    )
