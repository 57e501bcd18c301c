"""Pair health: a pure function of a pair's dated facts, the programme rules and today's date.

No I/O and no clock: the caller passes ``today`` (a local date in the programme's time zone,
:meth:`ProgrammeRules.today`), so the nightly pass re-evaluates every pair and a pair falls
behind by doing nothing. The rule (the README's "Pair health" states it for staff):

- **Complete**: both people finished orientation, the meetings held in the window add up to at
  least ``min_hours``, and (cadence ``monthly``) every calendar month of the window has a
  meeting. Checked first, on any date.
- Before the window's first day: **On track** (nothing is expected yet).
- After the window's last day, not complete: **At risk** (the programme ended short).
- Inside the window, the first that applies:

  - **At risk**: more than 45 days without a meeting (counted from the latest meeting held in
    the window, or from the window's first day when there is none yet); or orientation not
    done by both one calendar month into the window (from 1 November for a 1 October start).
  - **Behind**: a calendar month of the window has passed (its last day is before today)
    without a meeting (cadence ``monthly``); or the hours are below the pace: each passed
    month asks for its share ``min_hours / months in the window`` (6 hours over 6 months:
    1 hour by 1 November, 2 by 1 December...).
  - **On track** otherwise.

Only facts dated on or before ``today`` count, so the health of any past day can be computed;
meetings outside the window are facts but do not count towards the rule.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from connector.kinds.progress.rules import AT_RISK_GAP_DAYS, ProgrammeRules, Window


class Health(enum.Enum):
    """A pair's health; ``value`` is the default Salesforce picklist value."""

    COMPLETE = "Complete"
    ON_TRACK = "On track"
    BEHIND = "Behind"
    AT_RISK = "At risk"


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """What the health rule looks at: dated meetings and orientation dates (local dates)."""

    # (date held, hours) of every completed meeting of the pair.
    meetings: tuple[tuple[dt.date, float], ...] = ()
    mentor_orientation: dt.date | None = None
    mentee_orientation: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Assessment:
    """The health and the reasons that decided it (codes without PII, for plans and logs)."""

    health: Health
    # e.g. ("before_window",), ("gap:46d",), ("month:2026-10", "pace"), ("window_over",)
    reasons: tuple[str, ...] = ()


def _done_by(day: dt.date | None, today: dt.date) -> bool:
    return day is not None and day <= today


def _held(
    meetings: Iterable[tuple[dt.date, float]], rules: ProgrammeRules, today: dt.date
) -> tuple[Window, list[tuple[dt.date, float]]]:
    window = rules.window_for(today)
    return window, [(day, hours) for day, hours in meetings if day in window and day <= today]


def assess(facts: HealthFacts, rules: ProgrammeRules, today: dt.date) -> Assessment:
    """Decide a pair's health on ``today`` (a programme-local date), with the reasons."""
    window, held = _held(facts.meetings, rules, today)
    months = window.months()
    hours = sum(h for _, h in held)
    oriented = _done_by(facts.mentor_orientation, today) and _done_by(
        facts.mentee_orientation, today
    )
    uncovered = [
        first
        for first, last in months
        if rules.cadence == "monthly" and not any(first <= day <= last for day, _ in held)
    ]
    # Rounded so that 0.1-hour steps do not fail on binary float error.
    if oriented and not uncovered and round(hours - rules.min_hours, 6) >= 0:
        return Assessment(Health.COMPLETE, ("rules_met",))
    if today < window.start:
        return Assessment(Health.ON_TRACK, ("before_window",))
    if today > window.end:
        return Assessment(Health.AT_RISK, ("window_over",))

    at_risk: list[str] = []
    last = max((day for day, _ in held), default=window.start)
    gap = (today - last).days
    if gap > AT_RISK_GAP_DAYS:
        at_risk.append(f"gap:{gap}d")
    if today >= window.one_month_in() and not oriented:
        at_risk.append("orientation")
    if at_risk:
        return Assessment(Health.AT_RISK, tuple(at_risk))

    behind: list[str] = []
    passed = [(first, last) for first, last in months if last < today]
    behind += [f"month:{first:%Y-%m}" for first in uncovered if any(first == p for p, _ in passed)]
    # Pace: hours / min_hours must reach passed / months; compared multiplied out.
    if round(hours * len(months) - rules.min_hours * len(passed), 6) < 0:
        behind.append("pace")
    if behind:
        return Assessment(Health.BEHIND, tuple(behind))
    return Assessment(Health.ON_TRACK, ())


def health(facts: HealthFacts, rules: ProgrammeRules, today: dt.date) -> Health:
    """A pair's health on ``today`` (see :func:`assess` for the reasons too)."""
    return assess(facts, rules, today).health
