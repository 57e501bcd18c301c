"""``/healthz`` (the process answers), ``/readyz`` (database and queue reachable), ``/metrics``.

``/metrics`` is Prometheus text format 0.0.4, written by ``prometheus-client`` from figures read
in the state database at each scrape, so every process and machine reports the same figures:
inbox depth and the oldest waiting row's age, runs by kind and outcome, failed records by kind,
API calls by system and function and the last Salesforce API budget reading (both kept in the
``kv`` table by the worker), the queue's backlog, and the stalled-feed alarm of each kind
(:mod:`connector.service.feeds`; ``/readyz`` shows it as detail without turning unready).
Keep it off the public internet (see deploy/README.md): it names no person, but it is not for
everyone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from flask import Blueprint, Response, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from connector.service.feeds import Feed, feeds
from connector.service.queue import ping
from connector.service.usage import KV_API_CALLS, KV_SF_BUDGET, KV_TASK_ERRORS
from connector.state import inbox
from connector.state.database import FailedRecord, KeyValue, Run
from webhooks.runtime import Runtime, runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)

# generate_latest() writes text format 0.0.4 (newer clients default their constant to 1.0.0).
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@blueprint.get("/healthz")
def healthz() -> Response:
    """Alive: the process answers requests."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> Response:
    """Ready: the state database answers a query and the queue's storage can be read."""
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = type(exc).__name__
    try:
        ping(rt.worker.huey)
        checks["queue"] = "ok"
    except Exception as exc:  # noqa: BLE001  (whatever the queue backend raises means "not ready")
        checks["queue"] = type(exc).__name__
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        log.warning("not ready: %s", checks)
    # Detail only: a stalled feed does not make the service unready (that would stop the
    # events that could unstall it); monitoring alerts on it from here or /metrics.
    feed_detail: dict[str, str] = {}
    if checks["database"] == "ok":
        try:
            feed_detail = {f.kind: f.describe() for f in _feeds(rt)}
        except SQLAlchemyError as exc:
            feed_detail = {"error": type(exc).__name__}
    response = jsonify(
        status="ok" if ready else "unavailable", checks=checks, feeds=feed_detail
    )
    response.status_code = 200 if ready else 503
    return response


def _feeds(rt: Runtime) -> list[Feed]:
    from connector.registry import kinds

    with rt.db.session() as session:
        return feeds(session, kinds(), rt.settings.service.stalled_feed_minutes)


def _counter(
    name: str, help_text: str, labels: list[str], samples: Iterable[tuple[list[str], float]]
) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(
    name: str, help_text: str, labels: list[str], samples: Iterable[tuple[list[str], float]]
) -> Metric:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


class _Snapshot:
    """A prometheus-client collector over figures read once, for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        """The families, as read."""
        return iter(self.families)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics from the state database (503 if it cannot be read)."""
    rt = runtime()
    try:
        stats = inbox.stats(rt.db)
        with rt.db.session() as session:
            runs = session.execute(
                select(Run.kind, Run.status, func.count()).group_by(Run.kind, Run.status)
            ).all()
            last_ok = session.execute(
                select(Run.kind, func.max(Run.finished_at))
                .where(Run.status.in_(("ok", "failed_records")), Run.dry_run.is_(False))
                .group_by(Run.kind)
            ).all()
            failed = session.execute(
                select(FailedRecord.kind, FailedRecord.parked, func.count()).group_by(
                    FailedRecord.kind, FailedRecord.parked
                )
            ).all()
            kv = {
                row.key: row.value
                for row in session.scalars(
                    select(KeyValue).where(
                        KeyValue.key.in_((KV_API_CALLS, KV_SF_BUDGET, KV_TASK_ERRORS))
                    )
                )
            }
        feed_list = _feeds(rt)
    except SQLAlchemyError as exc:
        log.error("metrics unavailable: %s", type(exc).__name__)
        return Response("# state database unavailable\n", 503, content_type=PROMETHEUS_TYPE)

    statuses = ("pending", "leased", "done", "failed")
    calls = kv.get(KV_API_CALLS) or {}
    budget = kv.get(KV_SF_BUDGET) or {}
    families = [
        _gauge(
            "mentorsync_inbox_events", "Inbox rows by status.", ["status"],
            [([s], stats.counts.get(s, 0)) for s in statuses],
        ),
        _gauge(
            "mentorsync_inbox_depth", "Inbox rows waiting (pending or leased).", [],
            [([], stats.counts.get("pending", 0) + stats.counts.get("leased", 0))],
        ),
        _gauge(
            "mentorsync_inbox_oldest_pending_age_seconds",
            "Age of the oldest waiting inbox row (0 when none).", [],
            [([], round(stats.oldest_pending_seconds, 3))],
        ),
        _counter(
            "mentorsync_runs_total", "Recorded runs by sync kind and outcome.",
            ["kind", "status"], [([k, s], n) for k, s, n in sorted(runs)],
        ),
        _gauge(
            "mentorsync_last_success_timestamp_seconds",
            "End of the last successful run of each sync kind (Unix time).", ["kind"],
            [([k], t.timestamp()) for k, t in sorted(last_ok) if t is not None],
        ),
        _gauge(
            "mentorsync_failed_records", "Failed records by sync kind, parked or not.",
            ["kind", "parked"],
            [([k, str(bool(p)).lower()], n) for k, p, n in sorted(failed)],
        ),
        _counter(
            "mentorsync_task_errors_total", "Runs started by the worker that raised, by sync kind.",
            ["kind"], [([k], float(n)) for k, n in sorted((kv.get(KV_TASK_ERRORS) or {}).items())],
        ),
        _counter(
            "mentorsync_api_calls_total", "API calls made by the worker, by system and function.",
            ["system", "function"],
            [
                ([system, fn], float(n))
                for system in sorted(calls)
                for fn, n in sorted(calls[system].items())
            ],
        ),
        _gauge(
            "mentorsync_feed_stalled",
            "1 when a sync kind had no event and no successful run for longer than "
            "service.stalled_feed_minutes (0 otherwise, and when the alarm is off).",
            ["kind"], [([f.kind], 1.0 if f.stalled else 0.0) for f in feed_list],
        ),
        _gauge(
            "mentorsync_feed_last_activity_timestamp_seconds",
            "Last event or successful run of each sync kind (Unix time).", ["kind"],
            [([f.kind], f.last_activity.timestamp()) for f in feed_list if f.last_activity],
        ),
    ]
    if budget:
        families.append(
            _gauge(
                "mentorsync_salesforce_api_used",
                "Salesforce daily API requests used, at the last reading.", [],
                [([], float(budget.get("used", 0)))],
            )
        )
        families.append(
            _gauge(
                "mentorsync_salesforce_api_limit",
                "Salesforce daily API request limit, at the last reading.", [],
                [([], float(budget.get("limit", 0)))],
            )
        )
    try:
        pending_tasks: float = ping(rt.worker.huey)
    except Exception:  # noqa: BLE001  (queue down: reported as NaN; /readyz says which)
        pending_tasks = float("nan")
    families.append(
        _gauge("mentorsync_queue_pending_tasks", "Tasks waiting in the queue.", [],
               [([], pending_tasks)])
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), 200, content_type=PROMETHEUS_TYPE)
