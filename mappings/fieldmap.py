"""The member field map: which Contacts are programme members and how one becomes a Moodle user.

The map is a TOML file (``mappings/default_fieldmap.toml`` is the built-in default, read with
``importlib.resources``; ``members.field_map`` names an override). Loading checks every name, so
a typo fails at start-up with the key named (``members.field_map: [user] nickname: ...``), not
in the middle of a run.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.clients.salesforce import soql
from connector.errors import ConfigError
from mappings.files import read_map_file

DEFAULT_FILE = "default_fieldmap.toml"

# Moodle core user fields a map may fill, with Moodle's column lengths (user table).
USER_FIELD_LIMITS: dict[str, int] = {
    "firstname": 100,
    "lastname": 100,
    "email": 100,
    "middlename": 255,
    "alternatename": 255,
    "city": 120,
    "country": 2,
    "institution": 255,
    "department": 255,
    "phone1": 20,
    "phone2": 20,
    "address": 255,
    "description": 10_000,
}
REQUIRED_USER_FIELDS = ("firstname", "lastname", "email")
# Moodle usernames: lower case, these characters, at most 100 (PARAM_USERNAME).
USERNAME_MAX = 100
USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.@-")
WRITEBACK_KEYS = ("user_id", "status", "error", "synced_at")


@dataclass(frozen=True)
class FieldMap:
    """A validated member field map."""

    sobject: str
    status_field: str
    scope_field: str
    # Empty: any non-empty value of scope_field is in scope.
    scope_values: tuple[str, ...]
    username_template: str
    # Moodle core user field -> Salesforce field.
    user: dict[str, str]
    # Moodle custom profile field shortname -> Salesforce field.
    customfields: dict[str, str]
    # user_id / status / error / synced_at -> Salesforce field ("" = not written).
    writeback: dict[str, str]
    source: str = ""

    @property
    def template_fields(self) -> tuple[str, ...]:
        """The Salesforce fields the username template uses."""
        return tuple(
            name for _, name, _, _ in string.Formatter().parse(self.username_template) if name
        )

    def read_fields(self) -> list[str]:
        """Every Salesforce field a member sync reads, each once, ``Id`` first."""
        wanted = [
            "Id",
            self.scope_field,
            self.status_field,
            *self.user.values(),
            *self.customfields.values(),
            *self.template_fields,
            *(f for f in self.writeback.values() if f),
        ]
        seen: dict[str, str] = {}
        for name in wanted:
            seen.setdefault(name.lower(), name)
        return list(seen.values())

    def scope_soql(self) -> str:
        """The SOQL condition selecting in-scope records (built from checked names and quoted
        values only)."""
        if self.scope_values:
            return f"{self.scope_field} IN {soql.in_list(self.scope_values)}"
        return f"{self.scope_field} != null"

    def in_scope(self, record: dict[str, Any]) -> bool:
        """Whether a record read from Salesforce is in scope (the Python twin of scope_soql)."""
        value = record.get(self.scope_field)
        if value is None or str(value).strip() == "":
            return False
        return not self.scope_values or str(value) in self.scope_values


def load_field_map(path: str | Path | None = None) -> FieldMap:
    """Load and check the field map at ``path``, or the built-in default when empty.

    Raises :class:`ConfigError` (key ``members.field_map``) naming what is wrong and where.
    """
    data, source = read_map_file(path, DEFAULT_FILE, "members.field_map")
    return parse_field_map(data, source)


def parse_field_map(data: dict[str, Any], source: str = "") -> FieldMap:
    """Check a decoded field map and build the :class:`FieldMap`."""

    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError("members.field_map", f"{where}: {problem} (in {source or 'the map'})")

    known = {"source", "scope", "username", "user", "customfields", "writeback"}
    for section in data:
        if section not in known:
            raise fail(f"[{section}]", f"unknown section (known: {', '.join(sorted(known))})")

    def table(name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise fail(f"[{name}]", "must be a table")
        return value

    def sf_name(where: str, value: Any, *, allow_empty: bool = False) -> str:
        if allow_empty and value == "":
            return ""
        if not isinstance(value, str):
            raise fail(where, "must be a Salesforce field name (a string)")
        try:
            return soql.check_name(value, "field name")
        except ValueError:
            raise fail(where, f"not a valid Salesforce API name: {value!r}") from None

    src = table("source")
    _only(src, {"object", "status_field"}, "[source]", fail)
    sobject = sf_name("[source] object", src.get("object", "Contact"))
    status_field = sf_name("[source] status_field", src.get("status_field", "Member_Status__c"))

    scope = table("scope")
    _only(scope, {"field", "values"}, "[scope]", fail)
    if "field" not in scope:
        raise fail("[scope] field", "missing (the field that marks programme members)")
    scope_field = sf_name("[scope] field", scope["field"])
    values = scope.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise fail("[scope] values", "must be a list of non-empty strings")

    username = table("username")
    _only(username, {"template"}, "[username]", fail)
    user = table("user")
    # Default: the (lower-cased) email, from whichever field the map takes it.
    email_field = user.get("email") if isinstance(user.get("email"), str) else "Email"
    template = username.get("template", "{" + email_field + "}")
    if not isinstance(template, str) or not template.strip():
        raise fail("[username] template", "must be a non-empty string")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise fail("[username] template", f"not a valid template ({exc})") from None
    names = [name for _, name, spec, conv in parts if name is not None]
    if not names:
        raise fail("[username] template", "must use at least one field, like {Email}")
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if spec or conv:
            raise fail("[username] template", "format specs and conversions are not supported")
        sf_name(f"[username] template field {{{name}}}", name)

    user_map: dict[str, str] = {}
    for moodle_field, sf_field in user.items():
        if moodle_field not in USER_FIELD_LIMITS:
            raise fail(
                f"[user] {moodle_field}",
                "not a Moodle user field mentorsync maps (username, idnumber, auth and "
                f"suspended are managed); known: {', '.join(USER_FIELD_LIMITS)}",
            )
        user_map[moodle_field] = sf_name(f"[user] {moodle_field}", sf_field)
    for required in REQUIRED_USER_FIELDS:
        if required not in user_map:
            raise fail(f"[user] {required}", "missing (Moodle requires it)")

    custom = table("customfields")
    custom_map: dict[str, str] = {}
    for shortname, sf_field in custom.items():
        if not shortname.replace("_", "").isalnum():
            raise fail(f"[customfields] {shortname}", "not a Moodle profile field shortname")
        custom_map[shortname] = sf_name(f"[customfields] {shortname}", sf_field)

    writeback = table("writeback")
    _only(writeback, set(WRITEBACK_KEYS), "[writeback]", fail)
    wb_map = {
        key: sf_name(f"[writeback] {key}", writeback.get(key, ""), allow_empty=True)
        for key in WRITEBACK_KEYS
    }
    return FieldMap(
        sobject=sobject,
        status_field=status_field,
        scope_field=scope_field,
        scope_values=tuple(values),
        username_template=template,
        user=user_map,
        customfields=custom_map,
        writeback=wb_map,
        source=source,
    )


def _only(table: dict[str, Any], allowed: set[str], where: str, fail: Any) -> None:
    for key in table:
        if key not in allowed:
            raise fail(f"{where} {key}", f"unknown key (known: {', '.join(sorted(allowed))})")


def salesforce_fields(settings: Any) -> dict[str, set[str]]:
    """The Salesforce object and fields the member field map of ``settings`` reads and writes
    (``mentorsync doctor`` checks they exist)."""
    fieldmap = load_field_map(settings.members.field_map)
    return {fieldmap.sobject: set(fieldmap.read_fields())}
