"""What a progress run reads: matches with their Moodle users, their meeting records, the
meeting activities' course-module ids, and completions (the plugin's bulk read, or per user).

- Matches: one SOQL over the match object with the people's Moodle user ids through the lookup
  relationships (``Mentor__r.LMS_User_Id__c``), so no second query by Contact Ids.
- Meeting records: ``Match__c IN (...)`` in chunks of :data:`IDS_PER_QUERY`.
- Activities: ``core_course_get_contents`` lists the programme course's modules without their
  idnumber, so each module with completion is looked up once with
  ``core_course_get_course_module`` (a handful of calls, once per run).
- Completions, with the plugin: ``local_mentorsync_get_completions`` per course since a time,
  paged. Without: per user, ``core_completion_get_activities_completion_status`` (programme
  course) and ``core_completion_get_course_completion_status`` (orientation), a few calls in
  flight at once, each thread with its own client.

Only ids, states and times are read from Moodle: never names, notes, grades or text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.clients.moodle.client import MoodleClient
from connector.clients.salesforce import soql
from connector.clients.salesforce.client import SalesforceClient
from connector.engine.pipeline import InFlight
from connector.errors import Action, ConfigError, MoodleError
from connector.kinds.progress.plan import ActivityCompletion, CourseCompletion, Scalar
from connector.kinds.progress.rules import ProgrammeRules
from mappings.pairs import ACTIVE, COMPLETED, PairsFieldMap
from mappings.progress import ProgressMap

# Ids in one ``IN (...)`` list (Salesforce Ids are 18 characters: well inside the URL limit).
IDS_PER_QUERY = 200
# Rows per page of the plugin's bulk read (the plugin's MAX_LIMIT).
BULK_PAGE = 5000
# Moodle's answers for a user who is not (or no longer) enrolled: nothing completed.
NOT_ENROLLED = frozenset({"usernotenroled", "notenroled"})
# Match statuses whose progress is written: active pairs, and completed ones (their final
# totals and health stay right). Proposed and cancelled matches are left alone.
PROGRESS_STATUSES = (ACTIVE, COMPLETED)


def relationship(field_name: str) -> str:
    """The relationship name of a lookup field (``Mentor__c`` -> ``Mentor__r``)."""
    if field_name.endswith("__c"):
        return field_name[: -len("__c")] + "__r"
    if field_name.endswith("Id"):
        return field_name[: -len("Id")]
    raise ConfigError("pairs.field_map", f"{field_name} is not a lookup field name")


def moodle_user_id(value: object) -> int | None:
    """A Moodle user id as written on a Contact, or None when it is not one."""
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


@dataclass(frozen=True, slots=True)
class MatchRow:
    """One match as read: its people's Moodle user ids and its progress fields."""

    match_id: str
    mentor_userid: int | None
    mentee_userid: int | None
    values: dict[str, Scalar] = field(default_factory=dict)

    @property
    def userids(self) -> tuple[int, ...]:
        """The pair's Moodle user ids that are known."""
        return tuple(u for u in (self.mentor_userid, self.mentee_userid) if u is not None)


class MatchReader:
    """Reads the programme's active and completed matches with their Moodle user ids."""

    def __init__(
        self,
        salesforce: SalesforceClient,
        pairs: PairsFieldMap,
        progress: ProgressMap,
        user_id_field: str,
        programme_code: str,
    ) -> None:
        self.salesforce = salesforce
        self.pairs = pairs
        f = pairs.fields
        self.mentor_rel = relationship(f["mentor"])
        self.mentee_rel = relationship(f["mentee"])
        self.user_id_field = user_id_field
        self.value_fields = [n for n in progress.match_read_fields() if n != "Id"]
        self.fields = [
            "Id",
            f"{self.mentor_rel}.{user_id_field}",
            f"{self.mentee_rel}.{user_id_field}",
            *self.value_fields,
        ]
        statuses = [v for v, c in pairs.status_values.items() if c in PROGRESS_STATUSES]
        self.scope = (
            f"{pairs.program_soql(programme_code)} AND {f['status']} IN {soql.in_list(statuses)}"
        )

    def query(self, where: str = "", after: str = "") -> Iterator[MatchRow]:
        """Matches in scope (and ``where``), in Id order, with Id above ``after`` when given."""
        conditions = [self.scope]
        if where:
            conditions.append(f"({where})")
        if after:
            conditions.append(f"Id > {soql.quote(soql.check_id(after, 'sweep position'))}")
        statement = (
            f"{soql.select(self.pairs.sobject, self.fields)} WHERE {' AND '.join(conditions)}"
            " ORDER BY Id"
        )
        for record in self.salesforce.query(statement):
            yield self._row(record)

    def by_ids(self, match_ids: Sequence[str]) -> Iterator[MatchRow]:
        """The named matches that are in scope."""
        for chunk in _chunks(list(dict.fromkeys(match_ids)), IDS_PER_QUERY):
            yield from self.query(f"Id IN {soql.in_list(chunk)}")

    def by_users(self, userids: Iterable[int]) -> Iterator[MatchRow]:
        """The matches in scope in which any of these Moodle users takes part."""
        wanted = sorted(set(userids))
        for chunk in _chunks([str(u) for u in wanted], IDS_PER_QUERY):
            ids = soql.in_list(chunk)
            yield from self.query(
                f"{self.mentor_rel}.{self.user_id_field} IN {ids}"
                f" OR {self.mentee_rel}.{self.user_id_field} IN {ids}"
            )

    def _row(self, record: dict[str, Any]) -> MatchRow:
        def user(rel: str) -> int | None:
            person = record.get(rel)
            return moodle_user_id(person.get(self.user_id_field)) if person else None

        return MatchRow(
            match_id=str(record["Id"]),
            mentor_userid=user(self.mentor_rel),
            mentee_userid=user(self.mentee_rel),
            values={name: record.get(name) for name in self.value_fields},
        )


def read_meetings(
    salesforce: SalesforceClient, progress: ProgressMap, match_ids: Sequence[str]
) -> dict[str, dict[str, dict[str, Scalar]]]:
    """Match Id -> external id -> the meeting record's fields (with ``Id``), for these matches.

    Records without an external id are staff's own and never touched, so they are not read.
    """
    m = progress.meeting
    fields = progress.meeting_read_fields()
    out: dict[str, dict[str, dict[str, Scalar]]] = {}
    for chunk in _chunks(list(dict.fromkeys(match_ids)), IDS_PER_QUERY):
        statement = (
            f"{soql.select(progress.meeting_object, fields)} WHERE {m['match']} IN "
            f"{soql.in_list(chunk)} AND {m['external_id']} != null"
        )
        for record in salesforce.query(statement):
            key = record.get(m["external_id"])
            if key:
                out.setdefault(str(record[m["match"]]), {})[str(key)] = record
    return out


@dataclass(frozen=True)
class Courses:
    """The programme's courses and its meeting activities' course-module ids."""

    orientation_id: int
    programme_id: int
    # cmid -> idnumber, meeting activities only.
    activities: dict[int, str]


def resolve_courses(moodle: MoodleClient, rules: ProgrammeRules) -> Courses:
    """Find both courses by shortname and the meeting activities' cmids (once per run).

    Raises :class:`ConfigError` naming the key when a course or a meeting activity is missing.
    """

    def course(key: str, shortname: str) -> int:
        found = moodle.get_courses_by_field("shortname", shortname)
        if not found:
            raise ConfigError(f"programme.{key}", f"no Moodle course with shortname {shortname}")
        return int(found[0]["id"])

    orientation = course("orientation_course", rules.orientation_course)
    programme = course("programme_course", rules.programme_course)
    wanted = {a.idnumber for a in rules.activities}
    activities: dict[int, str] = {}
    for section in moodle.get_course_contents(programme):
        for module in section.get("modules") or []:
            if not module.get("completion"):
                continue
            # Contents leave the idnumber out for most callers; the module lookup has it.
            idnumber = module.get("idnumber")
            if idnumber is None:
                cm = moodle.get_course_module(int(module["id"]))
                if "idnumber" not in cm:
                    # Moodle leaves the key out for callers without the capability (measured
                    # on a real 4.5 site): say so, rather than "no such activity".
                    raise ConfigError(
                        "programme.meeting_activities",
                        "core_course_get_course_module returns no idnumber: give the "
                        "integration role moodle/course:manageactivities in "
                        f"{rules.programme_course}",
                    )
                idnumber = cm.get("idnumber") or ""
            if idnumber in wanted:
                activities[int(module["id"])] = str(idnumber)
    missing = sorted(wanted - set(activities.values()))
    if missing:
        raise ConfigError(
            "programme.meeting_activities",
            f"no activity with completion in {rules.programme_course} has idnumber "
            + ", ".join(missing),
        )
    return Courses(orientation, programme, activities)


@dataclass
class Completions:
    """Completions by Moodle user id; ``failed``: users whose read failed, with the code."""

    activities: dict[int, list[ActivityCompletion]] = field(default_factory=dict)
    orientation: dict[int, CourseCompletion] = field(default_factory=dict)
    read: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    # The latest completion time seen (Unix seconds), for the logs.
    latest: int = 0

    def add_activity(self, row: ActivityCompletion) -> None:
        """Keep one activity completion row."""
        self.activities.setdefault(row.userid, []).append(row)
        self.latest = max(self.latest, row.timecompleted)

    def add_course(self, row: CourseCompletion) -> None:
        """Keep one orientation completion."""
        self.orientation[row.userid] = row
        self.latest = max(self.latest, row.timecompleted or 0)

    def for_users(self, userids: Iterable[int]) -> tuple[list[ActivityCompletion], list[Any]]:
        """The activity and orientation completions of these users."""
        acts = [a for u in userids for a in self.activities.get(u, ())]
        courses = [self.orientation[u] for u in userids if u in self.orientation]
        return acts, courses


def bulk_read(moodle: MoodleClient, courses: Courses, since: int = 0) -> Completions:
    """Every meeting and orientation completion changed since ``since``, from the plugin."""
    out = Completions()
    activities, _ = moodle.get_completions(courses.programme_id, since, BULK_PAGE)
    for row in activities:
        idnumber = courses.activities.get(int(row["cmid"]))
        if idnumber is None:
            continue  # not a meeting activity
        out.add_activity(
            ActivityCompletion(
                int(row["userid"]), idnumber, int(row["completionstate"]), int(row["timemodified"])
            )
        )
    _, completed = moodle.get_completions(courses.orientation_id, since, BULK_PAGE)
    for row in completed:
        when = int(row.get("timecompleted") or 0)
        out.add_course(CourseCompletion(int(row["userid"]), when or None))
    return out


class PerUserReader:
    """Per-user completion reads, ``threads`` in flight, each thread with its own client.

    :class:`MoodleClient` is not shared between threads; the threads' call counts are added to
    the main client's on :meth:`close`, so ``ctx.moodle.calls`` still counts every call.
    """

    def __init__(self, moodle: MoodleClient, courses: Courses, threads: int) -> None:
        self.moodle = moodle
        self.courses = courses
        self.threads = max(1, threads)
        self.calls = 0
        self._local = threading.local()
        self._clients: list[MoodleClient] = []
        self._lock = threading.Lock()

    def read(self, userids: Sequence[int], activity_users: set[int], out: Completions) -> None:
        """Read ``userids``' orientation, and the meetings of those in ``activity_users``."""
        jobs: list[tuple[str, int]] = []
        for uid in userids:
            if uid in activity_users:
                jobs.append(("activities", uid))
            jobs.append(("orientation", uid))
        self.calls += len(jobs)
        pipe: InFlight[tuple[str, int, Any]] = InFlight(
            lambda result: self._deliver(result, out),
            self.threads if self.threads > 1 else 0,
            name="progress-read",
        )
        try:
            for what, uid in jobs:
                pipe.submit(self._one, what, uid)
            pipe.settle()
        finally:
            pipe.close()
        out.read.update(userids)

    def _client(self) -> MoodleClient:
        if self.threads == 1:
            return self.moodle
        client = getattr(self._local, "client", None)
        if client is None:
            client = type(self.moodle)(self.moodle.settings)
            client.sleep = self.moodle.sleep
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _one(self, what: str, uid: int) -> tuple[str, int, Any]:
        client = self._client()
        try:
            if what == "activities":
                return what, uid, client.get_activities_completion_status(
                    self.courses.programme_id, uid
                )
            return what, uid, client.get_course_completion_status(
                self.courses.orientation_id, uid
            )
        except MoodleError as exc:
            if exc.errorcode in NOT_ENROLLED:
                return what, uid, {}
            if exc.action is Action.FAIL_RECORD:
                return what, uid, exc
            raise

    def _deliver(self, result: tuple[str, int, Any], out: Completions) -> None:
        what, uid, answer = result
        if isinstance(answer, MoodleError):
            out.failed[uid] = f"moodle:{answer.errorcode}"
            return
        if what == "activities":
            for status in answer.get("statuses") or []:
                idnumber = self.courses.activities.get(int(status.get("cmid") or 0))
                if idnumber is not None:
                    out.add_activity(
                        ActivityCompletion(
                            uid,
                            idnumber,
                            int(status.get("state") or 0),
                            int(status.get("timecompleted") or 0),
                        )
                    )
            return
        when = course_completed_at(answer)
        if when is not None:
            out.add_course(CourseCompletion(uid, when))

    def close(self) -> None:
        """Add the threads' call counts to the main client and close their connections."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            self.moodle.calls.update(client.calls)
            client.session.close()


def course_completed_at(answer: dict[str, Any]) -> int | None:
    """When a course was completed, from ``core_completion_get_course_completion_status``.

    The answer has no course completion time, only each criterion's: with aggregation "all"
    (1) the course completed when its last criterion did, with "any" (2) when its first did.
    A completed course without a dated criterion gives None (cannot be dated: not counted).
    """
    status = answer.get("completionstatus") or {}
    if not status.get("completed"):
        return None
    criteria = status.get("completions") or []
    times = [int(c["timecompleted"]) for c in criteria if c.get("timecompleted")]
    if not times:
        return None
    return min(times) if status.get("aggregation") == 2 else max(times)


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
