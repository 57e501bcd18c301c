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

from connector.context import Context
from connector.service.usage import KV_API_CALLS, ApiUsage
from connector.state import bookkeeping, inbox
from connector.state.database import InboxEvent, KeyValue, utcnow
from webhooks.runtime import Runtime

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"({METRIC_NAME})(?:\{{(.*)\}})? (\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|Inf)|NaN")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    """Label pairs of one sample, unescaped; every byte of ``text`` must belong to a pair."""
    pairs, pos = [], 0
    while pos < len(text):
        match = LABEL.match(text, pos)
        assert match, f"bad label syntax at {pos}: {line!r}"
        value = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), match[2])
        pairs.append((match[1], value))
        pos = match.end()
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"repeated label: {line!r}"
    return tuple(pairs)


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Check Prometheus text format 0.0.4 strictly; return {(name, labels): value}.

    Every family has one HELP and one TYPE line before its samples, its samples are
    contiguous, no series repeats, label values are escaped, the text ends with a newline.
    """
    assert text.endswith("\n"), "the text ends with a newline"
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    helped: set[str] = set()
    typed: set[str] = set()
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, keyword, name, *rest = line.split(" ", 3)
            assert re.fullmatch(METRIC_NAME, name), line
            seen = helped if keyword == "HELP" else typed
            assert name not in seen, f"second {keyword} for {name}"
            seen.add(name)
            if keyword == "TYPE":
                assert rest and rest[0] in TYPES, line
                assert name in helped, f"TYPE before HELP for {name}"
            current = name
            continue
        assert not line.startswith("#") or line.startswith("# "), line
        if line.startswith("#"):
            continue
        match = SAMPLE.fullmatch(line)
        assert match, f"bad sample line: {line!r}"
        name, label_text, value = match[1], match[2] or "", match[3]
        assert name == current and name in typed, f"sample outside its family: {line!r}"
        assert VALUE.fullmatch(value), f"bad value: {line!r}"
        key = (name, _labels(label_text, line))
        assert key not in samples, f"repeated series: {line!r}"
        samples[key] = float(value)
    return samples


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample as {'name{labels}': value}, after checking the exposition format.

    Labels are put in name order (their order in a sample carries no meaning).
    """
    return {
        name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}" if labels else ""):
        value
        for (name, labels), value in parse_exposition(text).items()
    }


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
    usage = ApiUsage()
    ctx.moodle.calls.update({"core_user_get_users_by_field": 3, "core_user_create_users": 1})
    ctx.salesforce.calls.update({"query": 2})
    ctx.salesforce.budget = FakeBudget()
    usage.record(rt.db, ctx)
    ctx.moodle.calls.update({"core_user_get_users_by_field": 2})  # a second run adds on
    usage.record(rt.db, ctx)

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
        m['mentorsync_api_calls_total{function="core_user_get_users_by_field",system="moodle"}']
        == 5
    )
    assert m['mentorsync_api_calls_total{function="core_user_create_users",system="moodle"}'] == 1
    assert m['mentorsync_api_calls_total{function="query",system="salesforce"}'] == 2
    assert m["mentorsync_salesforce_api_used"] == 1234
    assert m["mentorsync_salesforce_api_limit"] == 15000
    assert m["mentorsync_queue_pending_tasks"] == 0


def test_metrics_on_an_empty_database(client: FlaskClient) -> None:
    m = parse_metrics(client.get("/metrics").get_data(as_text=True))
    assert m["mentorsync_inbox_depth"] == 0
    assert m["mentorsync_inbox_oldest_pending_age_seconds"] == 0


def test_label_values_and_odd_names_are_escaped(client: FlaskClient, rt: Runtime) -> None:
    odd = 'fn"with\\back\nslash'
    with rt.db.session() as session:
        session.add(KeyValue(key=KV_API_CALLS, value={"moodle": {odd: 2, "plain": 1}}))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'function="fn\\"with\\\\back\\nslash"' in text
    samples = parse_exposition(text)
    calls = {
        dict(labels)["function"]: value
        for (name, labels), value in samples.items()
        if name == "mentorsync_api_calls_total"
    }
    assert calls == {odd: 2, "plain": 1}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# TYPE m gauge\nm 1\n", "TYPE before HELP"),
        ("# HELP m x\n# TYPE m gauge\nm 1\nm 2\n", "repeated series"),
        ('# HELP m x\n# TYPE m gauge\nm{a="x"y"} 1\n', "bad label syntax"),
        ("# HELP m x\n# TYPE m gauge\nn 1\n", "sample outside its family"),
        ("# HELP m x\n# TYPE m gauge\nm one\n", "bad value"),
        ("# HELP m x\n# TYPE m gauge\nm 1", "ends with a newline"),
        ("# HELP m x\n# TYPE m gauge\n# HELP n y\n# TYPE n gauge\nm 1\n", "outside its family"),
        ("# HELP m x\n# TYPE m gauge\n# HELP m x\n", "second HELP for m"),
    ],
)
def test_the_format_checker_itself_refuses_bad_text(text: str, problem: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(problem)):
        parse_exposition(text)


def test_prometheus_own_parser_reads_the_metrics(client: FlaskClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "mentorsync_inbox_depth", "mentorsync_runs", "mentorsync_feed_stalled",
        "mentorsync_queue_pending_tasks",
    } <= names


def _finish_run(rt: Runtime, kind: str, status: str, ago: dt.timedelta) -> None:
    from connector.state.database import Run

    with rt.db.session() as session:
        run = bookkeeping.start_run(session, kind, "incremental")
        bookkeeping.finish_run(session, run.id, status, {})
        session.execute(update(Run).where(Run.id == run.id).values(finished_at=utcnow() - ago))


def test_a_stalled_feed_shows_in_readyz_and_metrics_without_turning_unready(
    client: FlaskClient, rt: Runtime
) -> None:
    limit = rt.settings.service.stalled_feed_minutes
    assert limit == 120  # the default
    # fake_contacts: its last successful run is older than the limit; an error since.
    _finish_run(rt, "fake_contacts", "ok", dt.timedelta(minutes=limit + 5))
    _finish_run(rt, "fake_contacts", "error", dt.timedelta(minutes=1))
    # fake_matches: a successful run a minute ago. fake_moodle: an event a minute ago.
    _finish_run(rt, "fake_matches", "ok", dt.timedelta(minutes=1))
    inbox.store(rt.db, [inbox.Notice("m1", "moodle", "fake_moodle", "moodle:x", "7")])
    # fake_completions: nothing ever.

    response = client.get("/readyz")
    assert response.status_code == 200  # detail, not a reason to leave the load balancer
    assert response.get_json()["feeds"] == {
        "fake_completions": "stalled: no event and no successful run yet",
        "fake_contacts": f"stalled: no event and no successful run for over {limit} min",
        "fake_matches": "ok",
        "fake_moodle": "ok",
    }
    m = parse_metrics(client.get("/metrics").get_data(as_text=True))
    stalled = {k: v for k, v in m.items() if k.startswith("mentorsync_feed_stalled")}
    assert stalled == {
        'mentorsync_feed_stalled{kind="fake_completions"}': 1,
        'mentorsync_feed_stalled{kind="fake_contacts"}': 1,
        'mentorsync_feed_stalled{kind="fake_matches"}': 0,
        'mentorsync_feed_stalled{kind="fake_moodle"}': 0,
    }
    last = m['mentorsync_feed_last_activity_timestamp_seconds{kind="fake_matches"}']
    assert abs(last - (utcnow() - dt.timedelta(minutes=1)).timestamp()) < 5
    assert 'mentorsync_feed_last_activity_timestamp_seconds{kind="fake_completions"}' not in m
