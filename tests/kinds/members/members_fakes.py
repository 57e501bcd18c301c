"""HTTP-level fakes of Moodle and Salesforce for the member sync tests, on ``responses``.

The real clients (:class:`MoodleClient`, :class:`SalesforceClient`) talk to these through
``requests``; the fakes keep a little state (users, contacts) and answer like the recordings in
``tests/fixtures/moodle`` and the Salesforce wire samples: Moodle errors as HTTP 200 bodies,
all-or-nothing creates, per-user update warnings; Salesforce query pages, getDeleted and
Collections results per record.

The Salesforce fake understands exactly the SOQL shapes the member sync sends (changed since,
Ids in a list, deleted records); anything else fails the test loudly.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlparse

import requests
import responses

from connector.config import (
    MembersSettings,
    MoodleSettings,
    SalesforceSettings,
    Secret,
    ServiceSettings,
    Settings,
)
from connector.context import Context

MOODLE_URL = "http://moodle.test"
MOODLE_ENDPOINT = MOODLE_URL + "/webservice/rest/server.php"
INSTANCE = "https://acme.my.salesforce.com"
DATA = INSTANCE + "/services/data/v59.0"
INVALID = {
    "exception": "core\\exception\\invalid_parameter_exception",
    "errorcode": "invalidparameter",
    "message": "Invalid parameter value detected",
}
CUSTOM_NAMES = {
    "memberstatus": "Membership status",
    "practicesetting": "Practice setting",
    "region": "Region",
}


def contact_id(n: int) -> str:
    """An 18-character Contact Id."""
    return f"003TEST{n:08d}AAA"


def sf_time(value: dt.datetime) -> str:
    """A datetime as the REST API writes it."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def php_decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """PHP's reading of bracketed form fields into nested dicts and lists."""
    root: dict[str, Any] = {}
    for name, value in pairs:
        parts = re.findall(r"[^\[\]]+", name)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: listify(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return listify(root)


@dataclass
class FakeMoodle:
    """A Moodle site's users behind ``core_user_*``; counts calls per function."""

    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 10
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    # Usernames whose creation Moodle refuses (invalidparameter), whatever else is in the batch.
    refuse_usernames: set[str] = field(default_factory=set)
    # Create calls (1-based) that create the users and then time out before answering.
    timeout_create_calls: set[int] = field(default_factory=set)
    # Every write request, decoded: (wsfunction, params).
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add_user(self, **values: Any) -> dict[str, Any]:
        """Put a user on the site (like an account made by hand); returns it."""
        uid = self.next_id
        self.next_id += 1
        custom = values.pop("customfields", {})
        user = {
            "id": uid,
            "username": values.pop("username"),
            "firstname": values.pop("firstname", "Pre"),
            "lastname": values.pop("lastname", "Existing"),
            "email": values.pop("email"),
            "idnumber": values.pop("idnumber", ""),
            "auth": values.pop("auth", "manual"),
            "suspended": values.pop("suspended", False),
            "custom": dict(custom),
            **values,
        }
        self.users[uid] = user
        return user

    def by_idnumber(self, idnumber: str) -> list[dict[str, Any]]:
        """Users whose idnumber is ``idnumber``."""
        return [u for u in self.users.values() if u["idnumber"] == idnumber]

    def writes_of(self, wsfunction: str) -> list[dict[str, Any]]:
        """Decoded parameters of each write call of ``wsfunction``."""
        return [params for fn, params in self.writes if fn == wsfunction]

    @property
    def write_calls(self) -> int:
        """Number of write calls (create or update)."""
        return len(self.writes)

    def install(self, rsps: responses.RequestsMock) -> None:
        """Answer every POST to the REST endpoint."""
        rsps.add_callback(responses.POST, MOODLE_ENDPOINT, callback=self._handle)

    def _shape(self, user: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in user.items() if k != "custom"}
        out["fullname"] = f"{user['firstname']} {user['lastname']}"
        custom = [
            {
                "type": "text",
                "value": value,
                "displayvalue": value,
                "name": CUSTOM_NAMES.get(name, name),
                "shortname": name,
            }
            for name, value in user["custom"].items()
            if value
        ]
        if custom:
            out["customfields"] = custom
        return out

    def _handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        pairs = parse_qsl(body or "", keep_blank_values=True)
        params = php_decode(pairs)
        function = params.pop("wsfunction")
        params.pop("wstoken")
        params.pop("moodlewsrestformat")
        self.calls[function] += 1
        if function == "core_user_get_users_by_field":
            wanted = set(params.get("values", []))
            key = params["field"]
            found = [
                self._shape(u)
                for u in self.users.values()
                if str(u[key]) in wanted and (key != "idnumber" or u[key])
            ]
            return _json(found)
        if function == "core_user_create_users":
            self.writes.append((function, params))
            answer = self._create(params["users"])
            if self.calls[function] in self.timeout_create_calls:
                raise requests.exceptions.ReadTimeout("read timed out")
            return _json(answer)
        if function == "core_user_update_users":
            self.writes.append((function, params))
            return _json(self._update(params["users"]))
        raise AssertionError(f"FakeMoodle: unexpected function {function}")

    def _create(self, items: list[dict[str, Any]]) -> Any:
        usernames = {u["username"] for u in self.users.values()}
        emails = {u["email"].lower() for u in self.users.values()}
        for item in items:
            # All or nothing, like Moodle: one bad row refuses the whole call.
            if (
                item["username"] in self.refuse_usernames
                or item["username"] in usernames
                or item["email"].lower() in emails
                or not item.get("firstname")
                or not item.get("idnumber")
            ):
                return INVALID
            usernames.add(item["username"])
            emails.add(item["email"].lower())
        created = []
        for item in items:
            user = self.add_user(
                username=item["username"],
                firstname=item["firstname"],
                lastname=item["lastname"],
                email=item["email"],
                idnumber=item["idnumber"],
                auth=item["auth"],
                customfields={c["type"]: c["value"] for c in item.get("customfields", [])},
            )
            created.append({"id": user["id"], "username": user["username"]})
        return created

    def _update(self, items: list[dict[str, Any]]) -> Any:
        warnings = []
        for item in items:
            uid = int(item["id"])
            user = self.users.get(uid)
            if user is None:
                warnings.append(
                    {
                        "item": "user",
                        "itemid": uid,
                        "warningcode": "invaliduserid",
                        "message": "Invalid user ID",
                    }
                )
                continue
            email = item.get("email")
            if email and any(
                u["email"].lower() == email.lower() and u["id"] != uid for u in self.users.values()
            ):
                warnings.append(
                    {
                        "item": "user",
                        "itemid": uid,
                        "warningcode": "useremailduplicate",
                        "message": "Duplicate email address",
                    }
                )
                continue
            for key, value in item.items():
                if key == "customfields":
                    for c in value:
                        user["custom"][c["type"]] = c["value"]
                elif key == "suspended":
                    user["suspended"] = value == "1"
                elif key != "id":
                    user[key] = value
        return {"warnings": warnings}


@dataclass
class FakeSalesforce:
    """Contacts behind query/queryAll, getDeleted and Collections update."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    # Contact Ids whose write-back Salesforce refuses (per-record error).
    refuse_updates: dict[str, str] = field(default_factory=dict)
    # Every Collections update record received.
    updates: list[dict[str, Any]] = field(default_factory=list)
    # While set, Collections updates answer HTTP 503 (an outage after Moodle was written).
    updates_down: bool = False
    # After this many Collections updates, answer the daily limit (403 REQUEST_LIMIT_EXCEEDED).
    budget_spent_after: int | None = None
    clock: dt.datetime = field(
        default_factory=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )

    def tick(self) -> str:
        """The next SystemModstamp: now, and never earlier than the last one.

        Never later than now either, as in Salesforce: a stamp ahead of the clock would fall
        after the run's start and be left, rightly, to the next run (records may share a stamp).
        """
        self.clock = max(self.clock, dt.datetime.now(dt.UTC))
        return sf_time(self.clock)

    def add(self, n: int, **values: Any) -> str:
        """A programme member Contact number ``n``; returns its Id."""
        cid = contact_id(n)
        record = {
            "Id": cid,
            "FirstName": f"First{n}",
            "LastName": f"Last{n}",
            "Email": f"member{n}@example.org",
            "Member_Status__c": "Active",
            "Mentorship_Role__c": "Mentee",
            "Practice_Setting__c": "Hospital pharmacy",
            "Region__c": "Midwest",
            "LMS_User_Id__c": None,
            "LMS_Sync_Status__c": None,
            "LMS_Sync_Error__c": None,
            "LMS_Synced_At__c": None,
            "IsDeleted": False,
            "MasterRecordId": None,
            "DeletedAt": None,
        }
        record.update(values)
        record["SystemModstamp"] = values.get("SystemModstamp") or self.tick()
        self.contacts[cid] = record
        return cid

    def time_passes(self) -> None:
        """Move every stamp an hour back, as if the next run came an hour later (no sleeping)."""
        for record in self.contacts.values():
            for key in ("SystemModstamp", "DeletedAt"):
                if record[key]:
                    record[key] = sf_time(_parse(record[key]) - dt.timedelta(hours=1))

    def edit(self, cid: str, **values: Any) -> None:
        """Change a Contact as staff would (bumps SystemModstamp)."""
        self.contacts[cid].update(values)
        self.contacts[cid]["SystemModstamp"] = self.tick()

    def delete(self, cid: str, master: str | None = None) -> None:
        """Delete a Contact (merge it into ``master`` when given)."""
        stamp = self.tick()
        record = self.contacts[cid]
        record.update(IsDeleted=True, MasterRecordId=master, SystemModstamp=stamp, DeletedAt=stamp)
        if master:
            self.contacts[master]["SystemModstamp"] = self.tick()

    def install(self, rsps: responses.RequestsMock) -> None:
        """Answer the REST calls of the member sync."""
        rsps.add_callback(responses.GET, re.compile(DATA + r"/query(All)?/?\?"), self._query)
        rsps.add_callback(
            responses.GET, re.compile(DATA + r"/sobjects/Contact/deleted/"), self._deleted
        )
        rsps.add_callback(responses.PATCH, DATA + "/composite/sobjects", self._update)

    # --- handlers -------------------------------------------------------------------------

    def _query(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = urlparse(request.url)
        include_deleted = url.path.rstrip("/").endswith("queryAll")
        self.calls["queryAll" if include_deleted else "query"] += 1
        soql = parse_qs(url.query)["q"][0]
        match = re.fullmatch(r"SELECT (.+?) FROM Contact WHERE (.+?)( ORDER BY .+)?", soql)
        assert match, f"FakeSalesforce: unexpected SOQL {soql}"
        fields = [f.strip() for f in match.group(1).split(",")]
        where = match.group(2)
        rows = [r for r in self.contacts.values() if include_deleted or not r["IsDeleted"]]
        rows = [r for r in rows if _matches(where, r)]
        if match.group(3):
            rows.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
        records = [
            {"attributes": {"type": "Contact"}, **{f: r.get(f) for f in fields}} for r in rows
        ]
        return _json({"totalSize": len(records), "done": True, "records": records})

    def _deleted(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls["getDeleted"] += 1
        query = parse_qs(urlparse(request.url).query)
        start = dt.datetime.fromisoformat(query["start"][0])
        end = dt.datetime.fromisoformat(query["end"][0])
        found = [
            {"id": r["Id"], "deletedDate": r["DeletedAt"]}
            for r in self.contacts.values()
            if r["DeletedAt"] and start <= _parse(r["DeletedAt"]) <= end
        ]
        return _json(
            {"deletedRecords": found, "earliestDateAvailable": "", "latestDateCovered": ""}
        )

    def _update(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls["collections.update"] += 1
        if (
            self.budget_spent_after is not None
            and self.calls["collections.update"] > self.budget_spent_after
        ):
            return (
                403,
                {"Content-Type": "application/json"},
                json.dumps([{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests"}]),
            )
        if self.updates_down:
            return (
                503,
                {"Content-Type": "application/json"},
                json.dumps([{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]),
            )
        body = json.loads(request.body)
        assert body["allOrNone"] is False
        assert len(body["records"]) <= 200
        results = []
        for record in body["records"]:
            record = {k: v for k, v in record.items() if k != "attributes"}
            self.updates.append(record)
            cid = record["Id"]
            if cid in self.refuse_updates:
                code = self.refuse_updates[cid]
                results.append(
                    {
                        "id": cid,
                        "success": False,
                        "errors": [{"statusCode": code, "message": "refused", "fields": []}],
                    }
                )
                continue
            fields = {k: v for k, v in record.items() if k != "Id"}
            self.edit(cid, **fields)
            results.append({"id": cid, "success": True, "errors": []})
        return _json(results)


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("+0000", "+00:00"))


def _matches(where: str, record: dict[str, Any]) -> bool:
    """The conditions the member sync uses, ANDed."""
    stamp = _parse(record["SystemModstamp"])
    conditions = re.findall(r"SystemModstamp (>=|<=|>|<|=) (\S+?Z)", where)
    assert len(conditions) == where.count("SystemModstamp"), f"FakeSalesforce: {where}"
    # SOQL compares at second precision.
    stamp_s = stamp.replace(microsecond=0)
    for op, value in conditions:
        bound = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        ok = {
            ">=": stamp_s >= bound,
            "<=": stamp_s <= bound,
            ">": stamp_s > bound,
            "<": stamp_s < bound,
            "=": stamp_s == bound,
        }[op]
        if not ok:
            return False
    ids = re.search(r"Id IN \(([^)]*)\)", where)
    if ids and record["Id"] not in re.findall(r"'([^']*)'", ids.group(1)):
        return False
    if "IsDeleted = true" in where and not record["IsDeleted"]:
        return False
    if "Mentorship_Role__c != null" in where:
        linked = "LMS_User_Id__c != null" in where and record["LMS_User_Id__c"]
        marked = "LMS_Sync_Status__c != null" in where and record["LMS_Sync_Status__c"]
        if not (record["Mentorship_Role__c"] or linked or marked):
            return False
    return True


def _json(value: Any) -> tuple[int, dict[str, str], str]:
    return 200, {"Content-Type": "application/json"}, json.dumps(value)


def make_context(tmp_path: Any, **members: Any) -> Context:
    """A Context on the fakes' URLs with its state database in ``tmp_path``."""
    settings = Settings(
        moodle=MoodleSettings(url=MOODLE_URL, token=Secret("moodle-token"), retry_attempts=1),
        salesforce=SalesforceSettings(
            auth="session",
            session_id=Secret("session-id"),
            instance_url=INSTANCE,
            domain="acme.my.salesforce.com",
            retry_attempts=1,
        ),
        members=MembersSettings(**members),
        service=ServiceSettings(data_dir=str(tmp_path)),
    )
    return Context(settings)
