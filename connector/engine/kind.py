"""What every sync kind (members; later pairs and progress) offers the machinery around it.

The CLI, the worker, the scheduler and the webhook router know sync kinds only through this
module: a kind registers itself once, and events for its objects, its schedules, its
``mentorsync sync <kind>`` command and its failed-record retries all work without changes
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Mode = Literal["incremental", "full", "ids"]


@dataclass(frozen=True)
class SyncRequest:
    """What a run should look at."""

    mode: Mode = "incremental"
    ids: tuple[str, ...] = ()
    dry_run: bool = False
    allow_mass_change: bool = False


@dataclass
class RunResult:
    """What a run did: counts by outcome (created, updated, suspended, failed...), and the plan."""

    kind: str
    run_id: int | None = None
    # ok | failed_records | stopped | dry_run
    status: str = "ok"
    counts: dict[str, int] = field(default_factory=dict)
    # Short reason when stopped (mass-change guard, budget, configuration), never PII.
    reason: str = ""
    # Plan lines for --dry-run: (action, record id, details without PII).
    plan: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """How many records failed in this run."""
        return self.counts.get("failed", 0)


ProgressHook = Callable[[int, int | None], None]
"""Called as ``hook(done, total)``; total may be unknown (None)."""


class SyncKind(Protocol):
    """A reconciler that the machinery can run."""

    name: str
    # Source objects whose events route to this kind: "Contact", "moodle:user"... A kind whose
    # source object is configurable may also offer ``objects_for(settings) -> tuple[str, ...]``,
    # which the webhook router then uses instead (read once when the app starts).
    objects: tuple[str, ...]

    def run(
        self, ctx: Any, request: SyncRequest, progress: ProgressHook | None = None
    ) -> RunResult:
        """Reconcile what ``request`` names and return what was done."""
        ...


REGISTRY: dict[str, SyncKind] = {}


def register(kind: SyncKind) -> SyncKind:
    """Register a sync kind under its name (idempotent)."""
    REGISTRY[kind.name] = kind
    return kind


def kinds() -> dict[str, SyncKind]:
    """Every registered sync kind, importing the built-in ones first."""
    import connector.kinds.members.kind  # noqa: F401  (registers "members")

    return REGISTRY


def kind_for_object(obj: str) -> str | None:
    """The sync kind that handles events about ``obj``, or None."""
    for name, kind in kinds().items():
        if obj in kind.objects:
            return name
    return None
