"""What a sync kind declares, and the request and result of one run.

The CLI, the worker, the scheduler, the webhook router and ``doctor`` know sync kinds only
through these declarations (and :mod:`connector.registry`, the composition root that lists the
kinds of this build). A kind declares:

- ``name`` and ``objects``: the source objects whose events wake it (one object may wake
  several kinds: a Contact change matters to members and to pairs);
- ``id_type``: what its record ids look like, so ``--ids``, events and failed records are
  validated by the kind that owns them;
- ``settings_section``: the part of the configuration it reads (or ``None``);
- ``schedule``: whether the periodic sweep runs it, and its place in the nightly order
  (members -> pairs -> progress);
- ``summary_labels``: how its counters read on a terminal (``{"created": "created {n} accounts"}``);
  counters without a label are internal and show only in ``--json`` and ``/metrics``;
- ``run(ctx, request, progress)``: one reconcile, usually a :class:`connector.engine.run.KindRun`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.context import Context

Mode = Literal["incremental", "full", "ids"]


class RunStatus(enum.StrEnum):
    """How a run ended (or that it is still going). Stored in the ``runs`` table as its value."""

    RUNNING = "running"
    # Everything planned went through.
    OK = "ok"
    # Applied, but some records failed (each is in the failed-records ledger).
    FAILED_RECORDS = "failed_records"
    # Stopped on purpose before or while applying: the guard, the API budget, a configuration
    # problem, a refused credential. A person has to act; retrying the same input stops again.
    STOPPED = "stopped"
    # A passing fault outlived the retries (Moodle answering 503, a timeout): try again later.
    ERROR = "error"
    DRY_RUN = "dry_run"
    # The run did not end by itself: Ctrl-C, or its process died (its lock expired).
    INTERRUPTED = "interrupted"

    @property
    def failed(self) -> bool:
        """Whether the work the run was asked to do must be tried again later."""
        return self in (RunStatus.STOPPED, RunStatus.ERROR, RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class IdType:
    """What the record ids of one kind look like (Salesforce Ids, Moodle user ids...)."""

    label: str
    pattern: str

    def invalid(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` that are not ids of this type, in order."""
        shape = re.compile(self.pattern)
        return [i for i in ids if not shape.fullmatch(i)]


SALESFORCE_ID = IdType(
    "a Salesforce record Id (15 or 18 letters and digits)", r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?"
)
MOODLE_USER_ID = IdType("a Moodle user id (digits)", r"[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class Schedule:
    """When the scheduler runs a kind."""

    # Run by the periodic incremental sweep (service.incremental_minutes).
    incremental: bool = True
    # Place in the nightly full reconcile: lower first (members 10, pairs 20, progress 30).
    nightly_order: int = 100


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
    status: RunStatus = RunStatus.OK
    counts: dict[str, int] = field(default_factory=dict)
    # Short reason when stopped (mass-change guard, budget, configuration), never PII.
    reason: str = ""
    # Plan lines for --dry-run: (action, record id, details without PII).
    plan: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)

    @property
    def failed(self) -> int:
        """How many records failed in this run."""
        return self.counts.get("failed", 0)


ProgressHook = Callable[[int, int | None], None]
"""Called as ``hook(done, total)``; total may be unknown (None)."""


class SyncKind(Protocol):
    """A reconciler that the machinery can run: declarations plus :meth:`run`."""

    name: str
    # Source objects whose events route to this kind: "Contact", "moodle:user"... A kind whose
    # source object is configurable may also offer ``objects_for(settings) -> tuple[str, ...]``,
    # which the webhook router then uses instead (read once when the app starts).
    objects: tuple[str, ...]

    def run(
        self, ctx: Context, request: SyncRequest, progress: ProgressHook | None = None
    ) -> RunResult:
        """Reconcile what ``request`` names and return what was done."""
        ...


def id_type(kind: object) -> IdType:
    """The kind's declared id type (Salesforce Ids unless it says otherwise)."""
    declared = getattr(kind, "id_type", None)
    return declared if isinstance(declared, IdType) else SALESFORCE_ID


def schedule(kind: object) -> Schedule:
    """The kind's declared schedule (incremental sweep, nightly order 100 unless declared)."""
    declared = getattr(kind, "schedule", None)
    return declared if isinstance(declared, Schedule) else Schedule()


def summary_labels(kind: object) -> Mapping[str, str]:
    """The kind's declared counter phrases (``{}`` when it declares none)."""
    declared = getattr(kind, "summary_labels", None)
    return declared if isinstance(declared, Mapping) else {}


def objects_for(kind: SyncKind, settings: Settings) -> tuple[str, ...]:
    """The source objects whose events wake ``kind`` under ``settings``."""
    configured = getattr(kind, "objects_for", None)
    return tuple(configured(settings)) if configured is not None else tuple(kind.objects)
