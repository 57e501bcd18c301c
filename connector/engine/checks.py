"""One line of ``mentorsync doctor``'s report, shared by the doctor and the kinds' own checks.

A kind may declare ``doctor_checks(settings, moodle, seen) -> list[Check]``: what it needs of
the configured systems beyond what every kind needs (pairs: a programme course with separate
groups; progress: each meeting activity with manual completion, the Moodle plugin). ``seen``
holds what the doctor already read, so no kind asks Moodle for it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Seen:
    """What the doctor read before the kinds' checks: site info, courses by shortname."""

    site_info: Mapping[str, Any] = field(default_factory=dict)
    courses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: ok, fail (the run is unhealthy) or note."""

    system: str
    name: str
    status: str  # ok | fail | note
    detail: str
    fix: str = ""
