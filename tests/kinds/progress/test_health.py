"""The health rule: the README's table, the window's edges, time zones and daylight saving."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from connector.config import ProgrammeSettings
from connector.kinds.progress.health import Assessment, Health, HealthFacts, assess, health
from connector.kinds.progress.rules import ProgrammeRules, Window, add_months

README = Path(__file__).resolve().parents[3] / "README.md"
D = dt.date.fromisoformat
ORIENTED = D("2026-09-20")


def rules(**overrides: object) -> ProgrammeRules:
    settings = {"window_year": 2026, **overrides}
    return ProgrammeRules.from_settings(ProgrammeSettings(**settings))  # type: ignore[arg-type]


def monthly(*days: str, hours: float = 1.0) -> tuple[tuple[dt.date, float], ...]:
    return tuple((D(day), hours) for day in days)


SIX = monthly("2026-10-05", "2026-11-10", "2026-12-01", "2027-01-12", "2027-02-20", "2027-03-10")


def facts(meetings=(), mentor=ORIENTED, mentee=ORIENTED) -> HealthFacts:
    return HealthFacts(tuple(meetings), mentor, mentee)


# --- the README's table ----------------------------------------------------------------------


def _readme_rows() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Pair health\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d{4}-\d\d-\d\d \|", line)]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def _cell_date(cell: str) -> dt.date | None:
    return None if cell == "—" else D(cell)


def _cell_meetings(cell: str) -> tuple[tuple[dt.date, float], ...]:
    if cell == "—":
        return ()
    out = []
    for part in cell.split(","):
        found = re.fullmatch(r"(\d{4}-\d\d-\d\d)(?: \(([\d.]+) h\))?", part.strip())
        assert found, part
        out.append((D(found.group(1)), float(found.group(2) or 1.0)))
    return tuple(out)


def test_the_readme_table_has_every_health_and_both_window_edges() -> None:
    rows = _readme_rows()
    assert len(rows) == 17
    assert {row[4] for row in rows} == {h.value for h in Health}
    assert {"2026-10-01", "2027-03-31", "2027-04-01"} <= {row[0] for row in rows}


@pytest.mark.parametrize("row", _readme_rows(), ids=lambda row: f"{row[0]}-{row[4]}")
def test_every_readme_example_holds(row: list[str]) -> None:
    today, meetings, mentor, mentee, expected, _why = row
    got = health(
        HealthFacts(_cell_meetings(meetings), _cell_date(mentor), _cell_date(mentee)),
        rules(),
        D(today),
    )
    assert got.value == expected


# --- the rule, case by case -----------------------------------------------------------------


def test_reasons_name_what_decided() -> None:
    r = rules()
    assert assess(facts(), r, D("2026-09-30")) == Assessment(Health.ON_TRACK, ("before_window",))
    assert assess(facts(), r, D("2026-11-01")) == Assessment(
        Health.BEHIND, ("month:2026-10", "pace")
    )
    assert assess(facts(mentee=None), r, D("2026-11-20")) == Assessment(
        Health.AT_RISK, ("gap:50d", "orientation")
    )
    assert assess(facts(SIX), r, D("2027-03-10")) == Assessment(Health.COMPLETE, ("rules_met",))
    assert assess(facts(SIX[:5]), r, D("2027-04-01")) == Assessment(
        Health.AT_RISK, ("window_over",)
    )


def test_health_changes_by_date_alone() -> None:
    """Nothing changed in Moodle, and still the pair moves on: On track -> Behind -> At risk."""
    r = rules()
    same = facts(monthly("2026-10-12"))
    by_day = {
        day: health(same, r, D(day))
        for day in ("2026-10-31", "2026-11-26", "2026-11-27", "2026-12-01")
    }
    assert by_day == {
        "2026-10-31": Health.ON_TRACK,
        "2026-11-26": Health.ON_TRACK,  # 45 days since 12 October, November not over
        "2026-11-27": Health.AT_RISK,  # 46 days
        "2026-12-01": Health.AT_RISK,
    }
    late = facts(monthly("2026-10-30"))
    assert health(late, r, D("2026-11-30")) == Health.ON_TRACK
    assert health(late, r, D("2026-12-01")) == Health.BEHIND  # November passed, no meeting


def test_facts_after_today_do_not_count() -> None:
    r = rules()
    assert health(facts(SIX), r, D("2027-03-09")) == Health.ON_TRACK
    assert health(facts(SIX), r, D("2027-03-10")) == Health.COMPLETE
    assert health(facts(monthly("2026-10-05"), mentee=D("2026-11-05")), r, D("2026-11-02")) == (
        Health.AT_RISK
    )


def test_orientation_is_due_one_calendar_month_into_the_window() -> None:
    r = rules()
    met = monthly("2026-10-05")
    assert health(facts(met, mentor=None), r, D("2026-10-31")) == Health.ON_TRACK
    assert health(facts(met, mentor=None), r, D("2026-11-01")) == Health.AT_RISK
    assert health(facts(met, mentor=None, mentee=None), r, D("2026-11-01")) == Health.AT_RISK
    # Done late is done.
    assert health(facts(met, mentor=D("2026-11-03")), r, D("2026-11-03")) == Health.ON_TRACK


def test_complete_comes_first_even_after_a_long_gap() -> None:
    r = rules(cadence="none")
    early = monthly(*(f"2026-10-{day:02d}" for day in range(1, 7)))
    assert health(facts(early), r, D("2026-10-06")) == Health.COMPLETE
    assert health(facts(early), r, D("2027-02-01")) == Health.COMPLETE
    assert health(facts(early[:5]), r, D("2026-12-31")) == Health.AT_RISK  # gap 86 days


def test_cadence_none_checks_hours_only() -> None:
    r = rules(cadence="none")
    # October and November skipped: the monthly rule would say Behind; hours are on pace.
    two = monthly("2026-12-02", "2026-12-03", hours=1.5)
    assert health(facts(two), r, D("2027-01-01")) == Health.ON_TRACK
    three = (*two, (D("2027-01-20"), 0.5))
    assert health(facts(three), r, D("2027-02-01")) == Health.BEHIND  # 3.5 h, pace asks 4


def test_pace_with_fractional_hours_is_exact() -> None:
    # 4.5 hours over 6 months: 0.75 per passed month; 3 months passed asks 2.25.
    r = rules(min_hours=4.5)
    met = ((D("2026-10-05"), 0.75), (D("2026-11-05"), 0.75), (D("2026-12-05"), 0.75))
    assert health(facts(met), r, D("2027-01-01")) == Health.ON_TRACK
    short = ((D("2026-10-05"), 0.75), (D("2026-11-05"), 0.75), (D("2026-12-05"), 0.7))
    assert health(facts(short), r, D("2027-01-01")) == Health.BEHIND
    tenths = tuple((D(f"2026-10-{d:02d}"), 0.1) for d in range(1, 31))
    assert health(facts(tenths), rules(min_hours=3.0, cadence="none"), D("2026-10-30")) == (
        Health.COMPLETE
    )


def test_after_the_window_short_is_at_risk_and_complete_stays() -> None:
    r = rules()
    assert health(facts(SIX[:5]), r, D("2027-04-01")) == Health.AT_RISK
    assert health(facts(SIX), r, D("2027-09-30")) == Health.COMPLETE


# --- windows ---------------------------------------------------------------------------------


def test_window_year_zero_takes_the_window_started_last() -> None:
    r = rules(window_year=0)
    assert r.window_for(D("2026-10-01")) == Window(D("2026-10-01"), D("2027-03-31"))
    assert r.window_for(D("2027-03-31")) == Window(D("2026-10-01"), D("2027-03-31"))
    assert r.window_for(D("2026-09-30")) == Window(D("2025-10-01"), D("2026-03-31"))
    assert r.window_for(D("2026-06-15")) == Window(D("2025-10-01"), D("2026-03-31"))
    # Before 1 October with year 0, last year's window is over: a pair short of it is At risk.
    assert health(facts(), r, D("2026-09-30")) == Health.AT_RISK
    # With the year set, the same day is before the window.
    assert health(facts(), rules(), D("2026-09-30")) == Health.ON_TRACK


def test_window_months_clip_to_a_mid_month_window() -> None:
    r = rules(window_start="10-15", window_end="04-14")
    window = r.window_for(D("2026-12-01"))
    months = window.months()
    assert months[0] == (D("2026-10-15"), D("2026-10-31"))
    assert months[-1] == (D("2027-04-01"), D("2027-04-14"))
    assert len(months) == 7
    assert window.one_month_in() == D("2026-11-15")


def test_a_same_year_window_and_a_29_february_bound() -> None:
    r = rules(window_start="01-15", window_end="02-29")
    assert r.window_for(D("2026-02-01")) == Window(D("2026-01-15"), D("2026-02-28"))
    assert rules(window_start="01-15", window_end="02-29", window_year=2028).window_for(
        D("2028-02-01")
    ) == Window(D("2028-01-15"), D("2028-02-29"))
    assert add_months(D("2027-01-31"), 1) == D("2027-02-28")
    assert add_months(D("2026-12-15"), 1) == D("2027-01-15")


# --- time zones and daylight saving ----------------------------------------------------------


def _utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())


def test_dates_are_local_to_the_programme_across_dst_new_york() -> None:
    r = rules(timezone="America/New_York")
    # 1 November 2026, 02:00 EDT -> 01:00 EST. 03:30 UTC is still 23:30 EDT on 31 October.
    assert r.local_date(_utc("2026-11-01T03:30:00")) == D("2026-10-31")
    assert r.local_date(_utc("2026-11-01T04:30:00")) == D("2026-11-01")
    # After the change the offset is -5: 04:30 UTC on 2 November is 23:30 on 1 November.
    assert r.local_date(_utc("2026-11-02T04:30:00")) == D("2026-11-01")
    assert r.today(dt.datetime(2026, 11, 2, 4, 59, tzinfo=dt.UTC)) == D("2026-11-01")
    assert r.today(dt.datetime(2026, 11, 2, 5, 0, tzinfo=dt.UTC)) == D("2026-11-02")
    # So that late-evening October meeting keeps October covered.
    held = facts(((r.local_date(_utc("2026-11-01T03:30:00")), 1.0),))
    assert health(held, r, D("2026-11-02")) == Health.ON_TRACK
    # The 45-day count spans the 25-hour day without shifting: days are dates.
    assert health(facts(monthly("2026-10-01")), r, D("2026-11-15")) == Health.ON_TRACK
    assert health(facts(monthly("2026-10-01")), r, D("2026-11-16")) == Health.AT_RISK


def test_dates_are_local_to_the_programme_in_auckland() -> None:
    r = rules(timezone="Pacific/Auckland")
    # NZDT (+13) began 27 September 2026: 11:30 UTC on 30 September is 00:30 on 1 October there.
    first_minute = _utc("2026-09-30T11:30:00")
    assert r.local_date(first_minute) == D("2026-10-01")
    assert r.today(dt.datetime(2026, 9, 30, 11, 30, tzinfo=dt.UTC)) == D("2026-10-01")
    held = facts(((r.local_date(first_minute), 1.0),))
    assert health(held, r, D("2026-11-01")) == Health.ON_TRACK
    # The same instant in New York is 30 September: before the window, October uncovered.
    ny = rules(timezone="America/New_York")
    assert health(facts(((ny.local_date(first_minute), 1.0),)), ny, D("2026-11-01")) == (
        Health.BEHIND
    )
    # The window's last day in Auckland ends at 11:00 UTC on 31 March 2027 (still NZDT).
    assert r.local_date(_utc("2027-03-31T10:59:59")) == D("2027-03-31")
    assert r.local_date(_utc("2027-03-31T11:00:00")) == D("2027-04-01")


def test_today_needs_an_aware_moment() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rules().today(dt.datetime(2026, 11, 1, 12, 0))
