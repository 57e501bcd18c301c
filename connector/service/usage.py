"""What the worker counts for ``/metrics``: runs that raised, API calls, the Salesforce budget.

The worker processes write these figures into key-value rows of the state database, so that
any web process can serve them (``webhooks/health.py``) whichever machine made the calls.
"""

from __future__ import annotations

import threading
from collections import Counter

from connector.context import Context
from connector.service.schedule import put_value
from connector.state.database import KeyValue, StateDB

# Key-value rows the worker keeps for /metrics.
KV_API_CALLS = "metrics:api_calls"
KV_SF_BUDGET = "metrics:salesforce_budget"
KV_TASK_ERRORS = "metrics:task_errors"

_SYSTEMS = ("moodle", "salesforce")


def count_task_error(db: StateDB, kind: str) -> None:
    """Add one to ``kind``'s count of runs that raised (``metrics:task_errors``)."""
    with db.session() as session:
        row = session.get(KeyValue, KV_TASK_ERRORS, with_for_update=True)
        counts = dict(row.value) if row and row.value else {}
        counts[kind] = int(counts.get(kind, 0)) + 1
        put_value(session, KV_TASK_ERRORS, counts)


class ApiUsage:
    """The API calls of each thread's :class:`Context`, added to the totals after each run.

    A context's clients count their calls from the start (``client.calls``); this remembers, per
    thread, how many were already added, so that each run adds only its own.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def record(self, db: StateDB, ctx: Context) -> None:
        """Add the calls made since the last record on this thread to ``metrics:api_calls``,
        and keep the Salesforce budget's last reading (``metrics:salesforce_budget``)."""
        seen: dict[str, Counter[str]] | None = getattr(self._local, "seen", None)
        if seen is None:
            seen = self._local.seen = {system: Counter() for system in _SYSTEMS}
        delta: dict[str, Counter[str]] = {}
        for system in _SYSTEMS:
            client = ctx.__dict__.get(system)  # only clients the run actually built
            calls = getattr(client, "calls", None)
            if calls is None:
                continue
            now_calls = Counter(calls)
            delta[system] = now_calls - seen[system]
            seen[system] = now_calls
        budget = getattr(ctx.__dict__.get("salesforce"), "budget", None)
        if not any(delta.values()) and budget is None:
            return
        with db.session() as session:
            row = session.get(KeyValue, KV_API_CALLS, with_for_update=True)
            totals: dict[str, dict[str, int]] = (
                {k: dict(v) for k, v in row.value.items()} if row and row.value else {}
            )
            for system, counter in delta.items():
                bucket = totals.setdefault(system, {})
                for function, n in counter.items():
                    bucket[function] = int(bucket.get(function, 0)) + n
            put_value(session, KV_API_CALLS, totals)
            if budget is not None:
                reading = {"used": int(budget.used), "limit": int(budget.limit)}
                put_value(session, KV_SF_BUDGET, reading)
