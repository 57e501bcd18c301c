"""Reading what a pairs run plans from: matches, their people, Moodle's state, the ledger.

Everything is read in bulk: matches by SOQL (by cursor, by ids, or all of the programme), the
people's Contacts by Id in calls of 200 and their Moodle accounts by ``idnumber`` in batched
calls, the programme course's groups in one call and their members in another, the enrolled
users of each course in one call each. The planner then gets it all at once (see
:mod:`connector.kinds.pairs.plan`, "Contract with the engine").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy.orm import Session

from connector.clients.moodle.client import MoodleClient
from connector.clients.salesforce import soql
from connector.clients.salesforce.client import MAX_ENCODED_SOQL, SalesforceClient
from connector.config import Settings
from connector.errors import ConfigError, SalesforceError
from connector.kinds.pairs.model import (
    ACTIVE,
    COMPLETED,
    DELETED,
    LAPSED,
    MERGED,
    OUT_OF_SCOPE,
    Grant,
    Group,
    Match,
    MoodleState,
    Owned,
    Person,
    Rejected,
    enrolled_roles,
    group_members,
)
from connector.state import ownership
from mappings.fieldmap import FieldMap
from mappings.pairs import MatchMapper, PairsFieldMap

log = logging.getLogger(__name__)

KIND = "pairs"
# Ids per SOQL ``IN`` list (an 18-character Id is 21 characters quoted; SOQL allows 100,000).
IDS_PER_QUERY = 300


def match_rows(
    sf: SalesforceClient,
    fm: PairsFieldMap,
    program: str,
    *,
    mode: str,
    ids: Iterable[str],
    since: dt.datetime | None,
    lookback: dt.timedelta,
    run_start: dt.datetime,
) -> Iterator[dict[str, Any]]:
    """The programme's match rows a run looks at.

    ``ids`` mode: the named matches, and every match of the named Contacts (a Contact event
    re-reads that person's matches). Otherwise changed since ``since`` (all when None).
    """
    where = fm.program_soql(program)
    if mode != "ids":
        yield from sf.changed_since(
            fm.sobject, fm.read_fields(), since, lookback=lookback, run_start=run_start, where=where
        )
        return
    wanted = sorted(set(ids))

    def statement(chunk: list[str]) -> str:
        return (
            f"{soql.select(fm.sobject, fm.read_fields())} WHERE ({where}) AND "
            f"(Id IN {soql.in_list(chunk)} OR {fm.people_soql(chunk)})"
        )

    for chunk in url_chunks(wanted, statement):
        yield from sf.query(statement(chunk))


def gone_matches(
    sf: SalesforceClient,
    fm: PairsFieldMap,
    program: str,
    candidates: set[str],
    *,
    since: dt.datetime,
    lookback: dt.timedelta,
    run_start: dt.datetime,
) -> set[str]:
    """Of ``candidates`` (matches mentorsync made something for), those that left ``program``
    since ``since - lookback``: deleted, or moved to another programme.

    Two reads: ``getDeleted``, and a query for the matches changed since then that are not in
    the programme (a move is a change of the match the programme's own changes cannot show).
    When Salesforce no longer keeps deletions that far back (``INVALID_REPLICATION_DATE``),
    the candidates are looked up instead: those no longer in the programme are gone.
    """
    start = since - lookback
    try:
        deleted = sf.get_deleted(fm.sobject, start, run_start)
    except SalesforceError as exc:
        if exc.error_code != "INVALID_REPLICATION_DATE":
            raise
        log.warning("getDeleted refused the cursor's age; looking the pairs' matches up")
        return candidates - present_matches(sf, fm, program, candidates)
    gone = {str(d["id"]) for d in deleted if d.get("id")}
    elsewhere = sf.changed_since(
        fm.sobject, ["Id"], since, lookback=lookback, run_start=run_start,
        where=fm.other_programs_soql(program),
    )
    gone.update(str(row["Id"]) for row in elsewhere)
    return candidates & gone


def present_matches(
    sf: SalesforceClient, fm: PairsFieldMap, program: str, ids: Iterable[str]
) -> set[str]:
    """Of ``ids``, the matches that exist (not deleted) and belong to ``program``."""
    where = fm.program_soql(program)

    def statement(chunk: list[str]) -> str:
        return f"{soql.select(fm.sobject, ['Id'])} WHERE ({where}) AND Id IN {soql.in_list(chunk)}"

    found: set[str] = set()
    for chunk in url_chunks(sorted(set(ids)), statement):
        found.update(str(row["Id"]) for row in sf.query(statement(chunk)))
    return found


def url_chunks(ids: list[str], statement: Callable[[list[str]], str]) -> Iterator[list[str]]:
    """``ids`` in consecutive chunks whose ``statement(chunk)`` fits one GET: at most
    IDS_PER_QUERY, and URL-encoded within the client's MAX_ENCODED_SOQL (Salesforce answers
    414 to a request URI over 16,384 bytes)."""
    start = 0
    while start < len(ids):
        n = min(IDS_PER_QUERY, len(ids) - start)
        while n > 1 and len(quote_plus(statement(ids[start : start + n]))) > MAX_ENCODED_SOQL:
            n -= max(1, n // 20)
        yield ids[start : start + n]
        start += n


def load_matches(
    rows: Iterable[Mapping[str, Any]], mapper: MatchMapper
) -> tuple[list[Match], list[Rejected]]:
    """Rows to :class:`Match` and :class:`Rejected`, each Id once (the last row read wins)."""
    matches: dict[str, Match] = {}
    rejected: dict[str, Rejected] = {}
    for row in rows:
        loaded = mapper.load(row)
        if isinstance(loaded, Match):
            matches[loaded.id] = loaded
            rejected.pop(loaded.id, None)
        else:
            rejected[loaded.match_id] = loaded
            matches.pop(loaded.match_id, None)
    return list(matches.values()), list(rejected.values())


def other_matches(
    sf: SalesforceClient,
    fm: PairsFieldMap,
    mapper: MatchMapper,
    program: str,
    contacts: Iterable[str],
    planned: set[str],
    changed_after: dt.datetime | None = None,
) -> list[Match]:
    """Active and completed matches of ``contacts`` that are not planned: their needs count."""
    out: dict[str, Match] = {}
    wanted = sorted(set(contacts))
    head = f"{soql.select(fm.sobject, fm.read_fields())} WHERE ({fm.program_soql(program)})"
    if changed_after is not None:
        people = set(wanted)
        statements = [f"{head} AND SystemModstamp > {soql.datetime_literal(changed_after)}"]
    else:
        people = None
        statements = [
            f"{head} AND {fm.people_soql(chunk)}"
            for chunk in url_chunks(wanted, lambda c: f"{head} AND {fm.people_soql(c)}")
        ]
    for statement in statements:
        for row in sf.query(statement):
            loaded = mapper.load(row)
            if (
                isinstance(loaded, Match)
                and loaded.id not in planned
                and loaded.status in (ACTIVE, COMPLETED)
                and (people is None or {loaded.mentor_id, loaded.mentee_id} & people)
            ):
                out[loaded.id] = loaded
    return list(out.values())


def contacts(
    sf: SalesforceClient, members: FieldMap, ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The Contacts (deleted ones included) by Id: what a person's problem is decided from."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    fields = ["Id", members.status_field, "IsDeleted", "MasterRecordId"]
    fields += [members.scope_field, members.user.get("lastname", "LastName")]
    fields = list(dict.fromkeys(f for f in fields if f))
    rows = sf.get_by_ids(members.sobject, fields, wanted, include_deleted=True)
    return {str(r["Id"]): dict(r) for r in rows}


def accounts(moodle: MoodleClient, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Contact Id -> the Moodle account whose ``idnumber`` it is (batched lookups)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for user in moodle.get_users_by_field("idnumber", wanted):
        found.setdefault(str(user.get("idnumber") or ""), user)
    return found


def person(
    contact_id: str,
    contact: Mapping[str, Any] | None,
    account: Mapping[str, Any] | None,
    members: FieldMap,
    suspend_statuses: set[str],
) -> Person:
    """The :class:`Person` of one Contact: its account, and why it cannot be used, if so."""
    moodle_id = int(account["id"]) if account else None
    lastname_field = members.user.get("lastname", "LastName")
    last_name = str((contact or {}).get(lastname_field) or "")
    problem = ""
    if contact is None or contact.get("IsDeleted"):
        problem = MERGED if contact and contact.get("MasterRecordId") else DELETED
    elif not members.in_scope(dict(contact)):
        problem = OUT_OF_SCOPE
    elif str(contact.get(members.status_field) or "") in suspend_statuses:
        problem = LAPSED
    elif account is not None and account.get("suspended"):
        problem = LAPSED
    return Person(contact_id, moodle_id, problem, last_name)


def course_id(moodle: MoodleClient, shortname: str, key: str) -> int:
    """The id of the course with ``shortname``; a missing course is a configuration error."""
    found = moodle.get_courses_by_field("shortname", shortname)
    if not found:
        raise ConfigError(key, f"no Moodle course has the shortname {shortname!r}")
    return int(found[0]["id"])


def moodle_state(
    moodle: MoodleClient, orientation: int, programme: int, idnumbers: Iterable[str]
) -> MoodleState:
    """Groups of the programme course, members of the planned matches' groups, enrolments.

    Only existing groups' members are asked for: one id of a group deleted by hand fails the
    whole ``core_group_get_group_members`` call (``invalidrecord``).
    """
    groups = tuple(Group.from_moodle(g) for g in moodle.get_course_groups(programme))
    wanted = set(idnumbers)
    ids = [g.id for g in groups if g.idnumber in wanted]
    members = group_members(moodle.get_group_members(ids)) if ids else {}
    options = {"userfields": "id,roles"}
    enrolments = {
        course: enrolled_roles(moodle.get_enrolled_users(course, options))
        for course in (orientation, programme)
    }
    return MoodleState(orientation, programme, groups, members, enrolments)


def grant_of(entry: ownership.Entry) -> Grant:
    """A ledger row as the planner's :class:`Grant`."""
    return Grant(entry.thing, entry.scope, entry.user_id, entry.role_id, entry.owner, entry.subject)


def entry_of(grant: Grant, owner: str) -> ownership.Entry:
    """A planner :class:`Grant` as a ledger row held by ``owner``."""
    return ownership.Entry(
        owner, grant.thing, grant.scope, grant.user_id, grant.role_id, grant.contact_id
    )


def ledger(
    session: Session,
    owners: Iterable[str],
    users: Iterable[int] = (),
    known: Owned | None = None,
) -> Owned:
    """The ledger entries of ``owners``, plus the shared grants (enrolments, roles) of ``users``.

    ``known``: the entries of ``owners`` read before in this run (not read again).
    """
    from connector.kinds.pairs.model import COURSE_ROLE, ENROLMENT, ROLE

    grants = (
        list(known)
        if known is not None
        else [grant_of(e) for e in ownership.owned_by(session, KIND, owners)]
    )
    if users:
        things = (ENROLMENT, COURSE_ROLE, ROLE)
        grants += [grant_of(e) for e in ownership.of_users(session, KIND, things, users)]
    return Owned(grants)


def suspend_statuses(settings: Settings) -> set[str]:
    """Membership statuses whose accounts the member policy suspends (their matches wait)."""
    return {s for s, action in settings.members.status_policy.items() if action == "suspend"}
