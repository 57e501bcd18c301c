"""The programme rules of the progress kind, built once from ``settings.programme``.

Pure values and date arithmetic, no I/O. Everything here works on *local dates* in the
programme's time zone (``programme.timezone``): a Moodle timestamp becomes a date with
:meth:`ProgrammeRules.local_date`, and the health rule only ever compares dates, so a daylight
saving change (a 23- or 25-hour day) cannot shift a count.

Moodle completion states (``lib/completionlib.php``, ``COMPLETION_*``): 0 incomplete, 1 complete,
2 complete-pass, 3 complete-fail, 4 complete-fail-hidden. Only 1 and 2 count as done, exactly as
Moodle's own course-completion criterion for an activity counts them
(``completion_criteria_activity::review``); a failed grade is not a meeting held. Meeting
activities use manual completion, so in practice only 0 and 1 occur.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zoneinfo
from dataclasses import dataclass

from connector.config import ProgrammeSettings

COMPLETION_INCOMPLETE = 0
COMPLETION_COMPLETE = 1
COMPLETION_COMPLETE_PASS = 2
COMPLETION_COMPLETE_FAIL = 3
COMPLETION_COMPLETE_FAIL_HIDDEN = 4
DONE_STATES = frozenset({COMPLETION_COMPLETE, COMPLETION_COMPLETE_PASS})

TICKED_BY = ("mentee", "mentor", "either")
CADENCES = ("monthly", "none")
# At risk: no meeting for more than this many days (counted from the window's start when the
# pair has not met yet in the window).
AT_RISK_GAP_DAYS = 45


def is_done(state: int) -> bool:
    """Whether a Moodle completion state counts as done (1 complete, 2 complete-pass)."""
    return state in DONE_STATES


@dataclass(frozen=True, slots=True)
class MeetingActivity:
    """One meeting activity: its idnumber, its 1-based position in the list, its hours."""

    idnumber: str
    number: int
    hours: float


@dataclass(frozen=True, slots=True)
class Window:
    """The programme window: first and last day (both counted), local dates."""

    start: dt.date
    end: dt.date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day <= self.end

    def months(self) -> list[tuple[dt.date, dt.date]]:
        """The calendar months of the window, each as (first, last) day clipped to the window."""
        out: list[tuple[dt.date, dt.date]] = []
        first = self.start
        while first <= self.end:
            last_of_month = dt.date(
                first.year, first.month, calendar.monthrange(first.year, first.month)[1]
            )
            last = min(last_of_month, self.end)
            out.append((first, last))
            first = last + dt.timedelta(days=1)
        return out

    def one_month_in(self) -> dt.date:
        """The day one calendar month after the start (31 Oct -> 30 Nov): orientation is due."""
        return add_months(self.start, 1)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole calendar months, clipped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _parts(value: str) -> tuple[int, int]:
    month, day = (int(part) for part in value.split("-"))
    return month, day


def _month_day(value: str, year: int) -> dt.date:
    month, day = _parts(value)
    # A 29 February bound in a common year is the 28th.
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class ProgrammeRules:
    """The programme rules the planner and the health rule apply."""

    orientation_course: str
    programme_course: str
    activities: tuple[MeetingActivity, ...]
    # MM-DD of the window's first and last day; the window crosses a new year when end < start.
    window_start: str = "10-01"
    window_end: str = "03-31"
    # Calendar year the window starts in; 0 = the window that started last, on or before today.
    window_year: int = 0
    timezone: str = "America/New_York"
    min_hours: float = 6.0
    cadence: str = "monthly"
    ticked_by: str = "mentee"

    @classmethod
    def from_settings(cls, programme: ProgrammeSettings) -> ProgrammeRules:
        """Build the rules from validated ``settings.programme``."""
        activities = tuple(
            MeetingActivity(
                idnumber=idnumber,
                number=position,
                hours=float(programme.activity_hours.get(idnumber, programme.meeting_hours)),
            )
            for position, idnumber in enumerate(programme.meeting_activities, start=1)
        )
        return cls(
            orientation_course=programme.orientation_course,
            programme_course=programme.programme_course,
            activities=activities,
            window_start=programme.window_start,
            window_end=programme.window_end,
            window_year=programme.window_year,
            timezone=programme.timezone,
            min_hours=float(programme.min_hours),
            cadence=programme.cadence,
            ticked_by=programme.ticked_by,
        )

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise ValueError(f"cadence must be one of {CADENCES}")
        if self.ticked_by not in TICKED_BY:
            raise ValueError(f"ticked_by must be one of {TICKED_BY}")

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The programme's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)

    def activity(self, idnumber: str) -> MeetingActivity | None:
        """The meeting activity with this idnumber, or None when it is not a meeting."""
        for activity in self.activities:
            if activity.idnumber == idnumber:
                return activity
        return None

    def local_date(self, timestamp: int | float) -> dt.date:
        """The programme-local calendar date of a Unix timestamp (Moodle's ``timecompleted``)."""
        return dt.datetime.fromtimestamp(timestamp, tz=self.zone).date()

    def today(self, now: dt.datetime | None = None) -> dt.date:
        """Today's date in the programme's time zone (``now`` must be aware; default: now)."""
        moment = now if now is not None else dt.datetime.now(dt.UTC)
        if moment.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return moment.astimezone(self.zone).date()

    def window_starting(self, year: int) -> Window:
        """The window whose first day falls in ``year``."""
        start = _month_day(self.window_start, year)
        crosses = _parts(self.window_end) < _parts(self.window_start)
        end_year = year + 1 if crosses else year
        return Window(start, _month_day(self.window_end, end_year))

    def window_for(self, today: dt.date) -> Window:
        """The window that applies on ``today``.

        With ``window_year`` set, that window whatever the date (so before it, a pair is judged
        "before the window", and after it, on its final state). With 0, the window that started
        most recently on or before ``today`` (from 1 April to 30 September that is the window
        just ended: set ``window_year`` when pairs are set up ahead of their window).
        """
        if self.window_year:
            return self.window_starting(self.window_year)
        window = self.window_starting(today.year)
        if window.start > today:
            window = self.window_starting(today.year - 1)
        return window
