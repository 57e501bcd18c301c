"""Contact -> Moodle user: marshmallow schemas driven by the field map, and the Moodle shapes.

``ContactMapper.desired(record)`` turns one Contact as read from Salesforce into the Moodle user it
should be (:class:`DesiredUser`), or raises :class:`MappingRejected` with a reason code such as
``mapping:email_missing``, ``mapping:firstname_too_long`` or ``mapping:username_invalid``. The
code names the field and the problem, never the value: it goes to logs and back to Salesforce.

``account_from_moodle`` reads a user as ``core_user_get_users_by_field`` returns it into the same
comparable shape (:class:`Account`), and ``create_payload`` builds the ``core_user_create_users``
item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from mappings.fieldmap import USER_FIELD_LIMITS, USERNAME_MAX, FieldMap

# Moodle's internal auth plugins need a password; createpassword has Moodle make one and mail it.
INTERNAL_AUTH = frozenset({"manual", "email"})
# Reported first when a record has several problems: the most basic ones.
_PRIORITY = ("email", "firstname", "lastname", "username")
_MISSING = {"required": "missing", "null": "missing"}


class MappingRejected(Exception):
    """A Contact that cannot become a Moodle user; ``code`` says why (``mapping:email_missing``)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


@dataclass(frozen=True, slots=True)
class DesiredUser:
    """The Moodle user a Contact should be. ``username`` is used only at creation."""

    contact_id: str
    username: str
    # Moodle core fields (firstname, lastname, email, mapped extras) -> value ("" when empty).
    fields: dict[str, str]
    # Custom profile field shortname -> value ("" when empty).
    customfields: dict[str, str]

    @property
    def email(self) -> str:
        """The email address."""
        return self.fields["email"]


@dataclass(frozen=True, slots=True)
class Account:
    """A Moodle user as it is, in the shape DesiredUser is compared with."""

    id: int
    username: str
    idnumber: str
    email: str
    suspended: bool
    fields: dict[str, str]
    customfields: dict[str, str]


def _user_schema(fieldmap: FieldMap) -> Schema:
    """A marshmallow schema checking a desired Moodle user against Moodle's rules."""
    declared: dict[str, fields.Field] = {}
    for moodle_field in fieldmap.user:
        limit = USER_FIELD_LIMITS[moodle_field]
        checks: list[Any] = [validate.Length(max=limit, error="too_long")]
        if moodle_field == "email":
            checks.insert(0, validate.Email(error="invalid"))
        required = moodle_field in ("firstname", "lastname", "email")
        declared[moodle_field] = (
            fields.String(required=True, validate=checks, error_messages=_MISSING)
            if required
            else fields.String(allow_none=True, load_default=None, validate=checks)
        )
    declared["username"] = fields.String(
        required=True,
        validate=[
            validate.Length(max=USERNAME_MAX, error="too_long"),
            validate.Regexp(r"^[a-z0-9_.@-]+$", error="invalid"),
        ],
        error_messages=_MISSING,
    )
    schema_class = Schema.from_dict(declared, name="DesiredMoodleUserSchema")
    return schema_class(unknown=EXCLUDE)


class ContactMapper:
    """Turns Contacts into desired Moodle users, as the field map says."""

    def __init__(self, fieldmap: FieldMap) -> None:
        self.fieldmap = fieldmap
        self._schema = _user_schema(fieldmap)
        self._template_fields = fieldmap.template_fields

    def desired(self, record: Mapping[str, Any]) -> DesiredUser:
        """The Moodle user ``record`` should be, or :class:`MappingRejected` with a reason code."""
        fm = self.fieldmap
        values: dict[str, Any] = {
            moodle: _text(record.get(sf_field)) for moodle, sf_field in fm.user.items()
        }
        template_values = {name: _text(record.get(name)) or "" for name in self._template_fields}
        username = fm.username_template.format(**template_values).strip().lower()
        values["username"] = username or None
        try:
            loaded = self._schema.load(values)
        except ValidationError as exc:
            raise MappingRejected(_reason(exc.messages)) from None
        return DesiredUser(
            contact_id=str(record["Id"]),
            username=loaded["username"],
            fields={name: loaded.get(name) or "" for name in fm.user},
            # Custom profile fields are free text in Moodle: nothing to check.
            customfields={
                shortname: _text(record.get(sf_field)) or ""
                for shortname, sf_field in fm.customfields.items()
            },
        )


def _text(value: Any) -> str | None:
    """A Salesforce value as trimmed text; empty becomes None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _reason(messages: Any) -> str:
    """The reason code of the most basic problem in marshmallow's error messages."""
    if not isinstance(messages, dict) or not messages:
        return "mapping:invalid"
    names = sorted(messages, key=lambda n: (_PRIORITY.index(n) if n in _PRIORITY else 99, n))
    name = names[0]
    problem = messages[name]
    if isinstance(problem, list) and problem and isinstance(problem[0], str):
        kind = problem[0] if problem[0] in ("missing", "too_long", "invalid") else "invalid"
    else:
        kind = "invalid"
    return f"mapping:{name}_{kind}"


def account_from_moodle(user: Mapping[str, Any], fieldmap: FieldMap) -> Account:
    """A user from ``core_user_get_users_by_field`` as a comparable :class:`Account`.

    Moodle leaves empty fields and empty custom fields out of its answer; they read as "".
    """
    custom = {
        str(item.get("shortname")): _text(item.get("value")) or ""
        for item in user.get("customfields") or []
        if isinstance(item, Mapping)
    }
    return Account(
        id=int(user["id"]),
        username=str(user.get("username") or ""),
        idnumber=str(user.get("idnumber") or ""),
        email=str(user.get("email") or ""),
        suspended=bool(user.get("suspended")) and str(user.get("suspended")) not in ("0", ""),
        fields={name: _text(user.get(name)) or "" for name in fieldmap.user},
        customfields={name: custom.get(name, "") for name in fieldmap.customfields},
    )


def create_payload(desired: DesiredUser, auth: str) -> dict[str, Any]:
    """The ``core_user_create_users`` item for ``desired`` (idnumber = the Contact Id)."""
    item: dict[str, Any] = {
        "username": desired.username,
        "auth": auth,
        "idnumber": desired.contact_id,
    }
    if auth in INTERNAL_AUTH:
        item["createpassword"] = True
    item.update({name: value for name, value in desired.fields.items() if value})
    custom = [{"type": k, "value": v} for k, v in desired.customfields.items() if v]
    if custom:
        item["customfields"] = custom
    return item


def changed_fields(desired: DesiredUser, account: Account) -> dict[str, Any]:
    """The ``core_user_update_users`` fields (without ``id``) that differ; {} when in step.

    Emails compare case-insensitively: a case-only difference is the same mailbox, and
    rewriting it every run would never settle if Moodle normalises case.
    """
    changes: dict[str, Any] = {}
    for name, value in desired.fields.items():
        current = account.fields.get(name, "")
        same = value.lower() == current.lower() if name == "email" else value == current
        if not same:
            changes[name] = value
    custom = [
        {"type": name, "value": value}
        for name, value in desired.customfields.items()
        if value != account.customfields.get(name, "")
    ]
    if custom:
        changes["customfields"] = custom
    return changes
