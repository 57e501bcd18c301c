"""``/healthz`` (the process answers), ``/readyz`` (database and queue reachable), ``/metrics``.

``/metrics`` is Prometheus text format 0.0.4, read from the state database, so every process
and machine reports the same figures: inbox depth and the oldest waiting row's age, runs by
kind and outcome, failed records by kind, API calls by system and function and the last
Salesforce API budget reading (both kept in the ``kv`` table by the worker), the queue's backlog.
Keep it off the public internet (see deploy/README.md): it names no person, but it is not for
everyone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Blueprint, Response, jsonify
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from connector.service.queue import ping
from connector.service.worker import KV_API_CALLS, KV_SF_BUDGET, KV_TASK_ERRORS
from connector.state import inbox
from connector.state.database import FailedRecord, KeyValue, Run
from webhooks.runtime import runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)

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
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _label(value: object) -> str:
    """A label value escaped as the text format wants: backslash, double quote, line feed."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    """HELP text escaped as the text format wants: backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Exposition:
    """Builds the text format: HELP and TYPE once per metric, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, object], float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            series = f"{name}{{{label_text}}}" if label_text else name
            self.lines.append(f"{series} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics from the state database (503 if it cannot be read)."""
    rt = runtime()
    out = _Exposition()
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
    except SQLAlchemyError as exc:
        log.error("metrics unavailable: %s", type(exc).__name__)
        return Response("# state database unavailable\n", 503, content_type=PROMETHEUS_TYPE)

    statuses = ("pending", "leased", "done", "failed")
    out.metric(
        "mentorsync_inbox_events",
        "gauge",
        "Inbox rows by status.",
        [({"status": s}, stats.counts.get(s, 0)) for s in statuses],
    )
    out.metric(
        "mentorsync_inbox_depth",
        "gauge",
        "Inbox rows waiting (pending or leased).",
        [({}, stats.counts.get("pending", 0) + stats.counts.get("leased", 0))],
    )
    out.metric(
        "mentorsync_inbox_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest waiting inbox row (0 when none).",
        [({}, round(stats.oldest_pending_seconds, 3))],
    )
    out.metric(
        "mentorsync_runs_total",
        "counter",
        "Recorded runs by sync kind and outcome.",
        [({"kind": k, "status": s}, n) for k, s, n in sorted(runs)],
    )
    out.metric(
        "mentorsync_last_success_timestamp_seconds",
        "gauge",
        "End of the last successful run of each sync kind (Unix time).",
        [({"kind": k}, t.timestamp()) for k, t in sorted(last_ok) if t is not None],
    )
    out.metric(
        "mentorsync_failed_records",
        "gauge",
        "Failed records by sync kind, parked or not.",
        [({"kind": k, "parked": str(bool(p)).lower()}, n) for k, p, n in sorted(failed)],
    )
    out.metric(
        "mentorsync_task_errors_total",
        "counter",
        "Runs started by the worker that raised, by sync kind.",
        [({"kind": k}, float(n)) for k, n in sorted((kv.get(KV_TASK_ERRORS) or {}).items())],
    )
    calls = kv.get(KV_API_CALLS) or {}
    out.metric(
        "mentorsync_api_calls_total",
        "counter",
        "API calls made by the worker, by system and function.",
        [
            ({"system": system, "function": fn}, float(n))
            for system in sorted(calls)
            for fn, n in sorted(calls[system].items())
        ],
    )
    budget = kv.get(KV_SF_BUDGET) or {}
    if budget:
        out.metric(
            "mentorsync_salesforce_api_used",
            "gauge",
            "Salesforce daily API requests used, at the last reading.",
            [({}, float(budget.get("used", 0)))],
        )
        out.metric(
            "mentorsync_salesforce_api_limit",
            "gauge",
            "Salesforce daily API request limit, at the last reading.",
            [({}, float(budget.get("limit", 0)))],
        )
    try:
        pending_tasks: float = ping(rt.worker.huey)
    except Exception:  # noqa: BLE001  (queue down: reported as NaN; /readyz says which)
        pending_tasks = float("nan")
    out.metric(
        "mentorsync_queue_pending_tasks",
        "gauge",
        "Tasks waiting in the queue.",
        [({}, pending_tasks)],
    )
    return Response(out.text(), 200, content_type=PROMETHEUS_TYPE)
