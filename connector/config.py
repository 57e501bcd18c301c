"""Settings: one object, loaded from a TOML file, then ``MENTORSYNC_*`` environment variables.

Order (later wins): built-in defaults, the TOML file (``--config`` or ``MENTORSYNC_CONFIG``),
environment variables ``MENTORSYNC_<SECTION>_<KEY>`` (``MENTORSYNC_MOODLE_TOKEN``), and for any
key ``MENTORSYNC_<SECTION>_<KEY>_FILE``, a path whose content (stripped) is the value: the usual
way to hand in Docker or Kubernetes secrets.

Everything is validated when loaded (types here, the other rules in
:mod:`connector.config_rules`); a mistake raises :class:`ConfigError` naming the key
(``moodle.url: not an http(s) URL``). Secrets are :class:`Secret` values whose ``repr`` and
``str`` never show the value.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.config_rules import validate
from connector.errors import ConfigError

ENV_PREFIX = "MENTORSYNC_"


class Secret:
    """A secret string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """Return the secret value; call this only where the value is sent."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _secret(value: str = "") -> Any:
    return field(default_factory=lambda: Secret(value), metadata={"secret": True})


# ruff's RUF009 cannot see that _secret() returns a dataclasses.field.


@dataclass
class MoodleSettings:
    """Where Moodle is and how to call it."""

    url: str = "http://127.0.0.1:8081"
    token: Secret = _secret()
    # PHP's max_input_vars on the Moodle server; every form field of a call counts against it.
    max_input_vars: int = 5000
    # Fields kept free below max_input_vars, for wstoken/wsfunction/format and safety.
    field_margin: int = 50
    # Most items (users, enrolments...) in one call, whatever the field count.
    max_batch_items: int = 200
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retry_attempts: int = 5
    retry_max_seconds: float = 120.0
    ca_bundle: str = ""


@dataclass
class SalesforceSettings:
    """How to log in to Salesforce and how hard to use its API."""

    # password | jwt | client_credentials | session
    auth: str = "password"
    username: str = ""
    password: Secret = _secret()
    security_token: Secret = _secret()
    consumer_key: str = ""
    consumer_secret: Secret = _secret()
    # PEM private key for the JWT bearer flow; usually handed in as ..._PRIVATE_KEY_FILE.
    private_key: Secret = _secret()
    session_id: Secret = _secret()
    instance_url: str = ""
    # login | test | a My Domain host (assoc.my.salesforce.com)
    domain: str = "login"
    api_version: str = "59.0"
    ca_bundle: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    retry_attempts: int = 5
    retry_max_seconds: float = 120.0
    # Refuse to start a run when this share of the daily API budget is already used.
    max_budget_share: float = 0.8
    # Organization Ids whose Outbound Messages are accepted (15 or 18 characters).
    org_ids: list[str] = field(default_factory=list)


@dataclass
class ProgrammeSettings:
    """The mentorship programme as it is set up in Moodle."""

    orientation_course: str = "GMP-ORIENT"
    programme_course: str = "GMP-2026"
    programme_code: str = "GMP-2026"
    student_role_id: int = 5
    mentor_course_role_id: int = 4
    mentor_user_role_id: int = 9
    meeting_activities: list[str] = field(
        default_factory=lambda: [f"GMP-2026-M{n}" for n in range(1, 7)]
    )
    meeting_hours: float = 1.0
    # Month-day of the window's first and last day, in the association's time zone.
    window_start: str = "10-01"
    window_end: str = "03-31"
    timezone: str = "America/New_York"
    min_hours: float = 6.0
    # Calendar year the window starts in (2026: October 2026 to March 2027); 0 = the window that
    # started most recently on or before today.
    window_year: int = 0
    # Hours a meeting counts for, per activity idnumber; the others count meeting_hours.
    activity_hours: dict[str, float] = field(default_factory=dict)
    # monthly: at least one meeting in every calendar month of the window; none: hours only.
    cadence: str = "monthly"
    # Whose completion of a meeting activity counts: mentee | mentor | either.
    ticked_by: str = "mentee"
    # The progress field map file (TOML); empty means mappings/default_progress_fieldmap.toml.
    progress_field_map: str = ""
    # Progress without the Moodle plugin: per-user completion reads one progress run may make at
    # most (0: no cap), so one sweep cannot starve the other kinds; the rest wait for the next
    # run. And how many of those calls are in flight at once.
    completion_reads_per_run: int = 2000
    completion_concurrency: int = 4
    # Stop before deleting more than this share or number of meeting records.
    mass_change_share: float = 0.05
    mass_change_count: int = 100
    profile_fields: list[str] = field(
        default_factory=lambda: ["memberstatus", "practicesetting", "region"]
    )


@dataclass
class MembersSettings:
    """Member sync policy."""

    # A field map file (TOML); empty means the built-in default mapping.
    field_map: str = ""
    # Membership status -> suspend | keep | reactivate
    status_policy: dict[str, str] = field(
        default_factory=lambda: {"Active": "reactivate", "Grace": "keep", "Lapsed": "suspend"}
    )
    # What happens to a linked account whose Contact leaves scope or is deleted: suspend | keep
    out_of_scope: str = "suspend"
    # Moodle auth plugin for new accounts: manual, oauth2, saml2...
    auth: str = "manual"
    # Stop before applying a run that would suspend more than this share or number of linked users.
    mass_change_share: float = 0.05
    mass_change_count: int = 100
    # Look-back overlap of the incremental cursor, for clock skew and late commits.
    lookback_seconds: int = 300
    # Moodle calls a member run keeps in flight at once (lookups; write batches use half).
    # 1 sends one call at a time, with no background write-back to Salesforce.
    concurrency: int = 4


@dataclass
class PairsConfig:
    """Pairs sync policy (section ``[pairs]``; the pairs kind checks it at start-up too)."""

    # A Completed match keeps the mentor's user-context role / both people's enrolments.
    completed_keeps_role: bool = False
    completed_keeps_enrolments: bool = True
    # What a Cancelled match does with its group once both people left it: delete | keep
    cancelled_group: str = "delete"
    # Enrolment start/end from the match's Start_Date__c / End_Date__c.
    use_enrolment_dates: bool = False
    # The group's name; fields: {mentor_last} {mentee_last} {program} {match_name}.
    group_name_template: str = "{mentor_last} & {mentee_last} ({program})"
    # A pairs field map file (TOML); empty means the built-in default.
    field_map: str = ""
    # Stop before applying a run that would undo more than this share or number of grants.
    mass_change_share: float = 0.05
    mass_change_count: int = 100
    lookback_seconds: int = 300


@dataclass
class ServiceSettings:
    """The webhook service, the worker and their schedules."""

    data_dir: str = "var"
    # SQLAlchemy URL of the state database; empty means a SQLite file in data_dir.
    database_url: str = ""
    # Queue: empty means SqliteHuey in data_dir; sqlite:///path, postgresql://..., redis://...
    queue_url: str = ""
    bind: str = "127.0.0.1:8080"
    max_body_bytes: int = 1_048_576
    # Standard Webhooks secrets (whsec_...) for signed JSON events from Salesforce and Moodle.
    events_secret: Secret = _secret()
    moodle_events_secret: Secret = _secret()
    # Optional extra path segment for the Outbound Message URL, and optional basic auth.
    outbound_path_secret: Secret = _secret()
    basic_auth_user: str = ""
    basic_auth_password: Secret = _secret()
    incremental_minutes: int = 5
    nightly_hour: int = 2
    coalesce_seconds: float = 2.0
    inbox_lease_seconds: int = 300
    lock_ttl_seconds: int = 3600
    retry_max_attempts: int = 8
    retry_base_seconds: int = 60
    # Run the periodic scheduler in this process (exactly one machine should).
    scheduler: bool = True
    # Stalled-feed alarm: a sync kind with no event and no successful run for longer than this
    # shows as stalled in `status`, /readyz and /metrics. 0 turns the alarm off.
    stalled_feed_minutes: int = 120
    log_level: str = "INFO"


@dataclass
class Settings:
    """All of mentorsync's settings."""

    moodle: MoodleSettings = field(default_factory=MoodleSettings)
    salesforce: SalesforceSettings = field(default_factory=SalesforceSettings)
    programme: ProgrammeSettings = field(default_factory=ProgrammeSettings)
    members: MembersSettings = field(default_factory=MembersSettings)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    source: str = ""

    @property
    def data_path(self) -> Path:
        """The data directory (state database, queue file, sandbox state)."""
        return Path(self.service.data_dir)

    @property
    def database_url(self) -> str:
        """The state database URL, defaulting to a SQLite file in the data directory."""
        if self.service.database_url:
            return self.service.database_url
        return f"sqlite:///{(self.data_path / 'mentorsync.db').resolve()}"

    @property
    def queue_url(self) -> str:
        """The queue URL, defaulting to a SQLite file in the data directory."""
        if self.service.queue_url:
            return self.service.queue_url
        return f"sqlite:///{(self.data_path / 'queue.db').resolve()}"


SECTIONS: dict[str, type] = {
    "moodle": MoodleSettings,
    "salesforce": SalesforceSettings,
    "programme": ProgrammeSettings,
    "members": MembersSettings,
    "pairs": PairsConfig,
    "service": ServiceSettings,
}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Load and validate settings from a TOML file, then the environment, then ``overrides``.

    ``path`` defaults to ``$MENTORSYNC_CONFIG``; with neither, only defaults and environment apply.
    Raises :class:`ConfigError` naming the first wrong key.
    """
    env = os.environ if env is None else env
    path = path or env.get(ENV_PREFIX + "CONFIG") or None
    raw: dict[str, dict[str, Any]] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                loaded = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"not valid TOML ({exc})") from None
        for section, values in loaded.items():
            if section not in SECTIONS:
                raise ConfigError(section, f"unknown section (known: {', '.join(SECTIONS)})")
            if not isinstance(values, dict):
                raise ConfigError(section, "must be a table")
            raw[section] = dict(values)
    for section, values in _from_env(env).items():
        raw.setdefault(section, {}).update(values)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        built[section] = _build_section(section, cls, raw.get(section, {}))
    settings = Settings(**built, source=str(path or ""))
    validate(settings)
    return settings


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``MENTORSYNC_<SECTION>_<KEY>[_FILE]`` variables into sections."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in SECTIONS or not key:
            continue
        if key.endswith("_file"):
            base = key[: -len("_file")]
            if base in _field_names(SECTIONS[section]):
                out.setdefault(section, {})[base] = _read_secret_file(f"{section}.{base}", value)
                continue
        if key not in _field_names(SECTIONS[section]):
            raise ConfigError(f"{section}.{key}", f"unknown setting (from environment {name})")
        out.setdefault(section, {})[key] = value
    return out


def _read_secret_file(key: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read the _FILE path ({exc.strerror})") from None


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _build_section(section: str, cls: type, values: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{section}.{key}", "unknown setting")
        kwargs[key] = _coerce(f"{section}.{key}", fields[key], value)
    return cls(**kwargs)


def _coerce(key: str, f: dataclasses.Field[Any], value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or name the key and the problem."""
    kind = str(f.type)
    if f.metadata.get("secret"):
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return Secret(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        truthy, falsy = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
        if isinstance(value, str) and value.lower() in truthy | falsy:
            return value.lower() in truthy
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(key, "must be a whole number")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a whole number, got {value!r}") from None
    if kind == "float":
        if isinstance(value, bool):
            raise ConfigError(key, "must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a number, got {value!r}") from None
    if kind.startswith("list"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a list of strings")
        return list(value)
    if kind.startswith("dict"):
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a table")
        if kind == "dict[str, float]":
            numbers: dict[str, float] = {}
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, int | float | str):
                    raise ConfigError(f"{key}.{k}", "must be a number")
                try:
                    numbers[str(k)] = float(v)
                except ValueError:
                    raise ConfigError(f"{key}.{k}", f"must be a number, got {v!r}") from None
            return numbers
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {type(value).__name__}")
    return value
