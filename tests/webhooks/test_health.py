"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, update
from sqlalchemy.orm import sessionmaker

from connector import bookkeeping
from connector.context import Context
from connector.state import InboxEvent, utcnow
from webhooks import inbox
from webhooks.runtime import Runtime

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"\\\n]*(\\.[^"\\\n]*)*",?)*\})? (-?[0-9.e+]+|NaN)$')


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample line as {'name{labels}': value}, checking the exposition format."""
    samples = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        assert SAMPLE.match(line), line
        series, value = line.rsplit(" ", 1)
        assert series.split("{")[0] in typed, f"sample before its TYPE line: {line}"
        samples[series] = float(value)
    return samples


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_ok(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "queue": "ok"}


def test_readyz_database_down(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = create_engine("sqlite:////nonexistent-dir/state.db")
    monkeypatch.setattr(rt.db, "sessions", sessionmaker(broken))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "OperationalError"
    assert client.get("/metrics").status_code == 503
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_queue_down(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> int:
        raise ConnectionError("queue refused")

    monkeypatch.setattr(rt.worker.huey.storage, "queue_size", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "queue": "ConnectionError"}
    metrics = parse_metrics(client.get("/metrics").get_data(as_text=True))
    assert math.isnan(metrics["mentorsync_queue_pending_tasks"])


class FakeClient:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.budget = None


class FakeBudget:
    used, limit = 1234, 15000


def test_metrics(client: FlaskClient, rt: Runtime) -> None:
    # Inbox: two pending (one an hour old), one done.
    stored = inbox.store(
        rt.db,
        [
            inbox.Notice(f"k{n}", "salesforce-outbound", "fake_contacts", "Contact", f"003{n:015d}")
            for n in range(3)
        ],
    )
    assert stored.stored == 3
    with rt.db.session() as session:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.dedup_key == "k0")
            .values(received_at=utcnow() - dt.timedelta(hours=1))
        )
    inbox.finish(rt.db, [3])
    # Runs and failed records.
    with rt.db.session() as session:
        for status in ("ok", "ok", "error"):
            run = bookkeeping.start_run(session, "fake_contacts", "ids")
            bookkeeping.finish_run(session, run.id, status, {"seen": 1})
        svc = rt.settings.service
        bookkeeping.record_failure(
            session, "fake_contacts", "003A", "invalidparameter", "moodle", svc
        )
        row = bookkeeping.record_failure(session, "fake_contacts", "003B", "x", "moodle", svc)
        row.parked = True
    # API calls as the worker records them after a run.
    ctx = Context(rt.settings)
    ctx.moodle = FakeClient()  # type: ignore[misc]
    ctx.salesforce = FakeClient()  # type: ignore[misc]
    worker = rt.worker
    worker._local.ctx = ctx
    worker._local.calls = {"moodle": Counter(), "salesforce": Counter()}
    ctx.moodle.calls.update({"core_user_get_users_by_field": 3, "core_user_create_users": 1})
    ctx.salesforce.calls.update({"query": 2})
    ctx.salesforce.budget = FakeBudget()
    worker._record_api_usage(ctx)
    ctx.moodle.calls.update({"core_user_get_users_by_field": 2})  # a second run adds on
    worker._record_api_usage(ctx)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = parse_metrics(response.get_data(as_text=True))
    assert m['mentorsync_inbox_events{status="pending"}'] == 2
    assert m['mentorsync_inbox_events{status="done"}'] == 1
    assert m["mentorsync_inbox_depth"] == 2
    assert 3590 < m["mentorsync_inbox_oldest_pending_age_seconds"] < 3700
    assert m['mentorsync_runs_total{kind="fake_contacts",status="ok"}'] == 2
    assert m['mentorsync_runs_total{kind="fake_contacts",status="error"}'] == 1
    assert m['mentorsync_last_success_timestamp_seconds{kind="fake_contacts"}'] > 1.7e9
    assert m['mentorsync_failed_records{kind="fake_contacts",parked="false"}'] == 1
    assert m['mentorsync_failed_records{kind="fake_contacts",parked="true"}'] == 1
    assert (
        m['mentorsync_api_calls_total{system="moodle",function="core_user_get_users_by_field"}']
        == 5
    )
    assert m['mentorsync_api_calls_total{system="moodle",function="core_user_create_users"}'] == 1
    assert m['mentorsync_api_calls_total{system="salesforce",function="query"}'] == 2
    assert m["mentorsync_salesforce_api_used"] == 1234
    assert m["mentorsync_salesforce_api_limit"] == 15000
    assert m["mentorsync_queue_pending_tasks"] == 0


def test_metrics_on_an_empty_database(client: FlaskClient) -> None:
    m = parse_metrics(client.get("/metrics").get_data(as_text=True))
    assert m["mentorsync_inbox_depth"] == 0
    assert m["mentorsync_inbox_oldest_pending_age_seconds"] == 0
