"""Settings: TOML, then environment, then *_FILE secrets; every mistake names its key."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from connector.config import SECTIONS, Secret, load_settings
from connector.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mentorsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(env={})
    assert settings.moodle.max_input_vars == 5000
    assert settings.programme.meeting_activities[0] == "GMP-2026-M1"
    assert settings.database_url.startswith("sqlite:///")


def test_toml_then_environment_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[moodle]\nurl = "https://lms.example.org"\nmax_input_vars = 1000\n'
        '[salesforce]\ndomain = "assoc.my.salesforce.com"\n',
    )
    settings = load_settings(path, env={"MENTORSYNC_MOODLE_MAX_INPUT_VARS": "2000"})
    assert settings.moodle.url == "https://lms.example.org"
    assert settings.moodle.max_input_vars == 2000
    assert settings.salesforce.domain == "assoc.my.salesforce.com"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[programme]\norientation_course = "ORIENT-X"\n')
    settings = load_settings(env={"MENTORSYNC_CONFIG": str(path)})
    assert settings.programme.orientation_course == "ORIENT-X"


def test_secret_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t-token\n", encoding="utf-8")
    settings = load_settings(env={"MENTORSYNC_MOODLE_TOKEN_FILE": str(secret_file)})
    assert settings.moodle.token.get() == "s3cr3t-token"


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^moodle\.token: cannot read"):
        load_settings(env={"MENTORSYNC_MOODLE_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[moodle]\nurl = "ftp://lms"\n', "moodle.url: not an http(s) URL"),
        ('[moodle]\nmax_input_vars = "many"\n', "moodle.max_input_vars: must be a whole number"),
        ('[moodle]\ncolour = "blue"\n', "moodle.colour: unknown setting"),
        ('[moodel]\nurl = "https://x"\n', "moodel: unknown section"),
        ('[salesforce]\nauth = "magic"\n', "salesforce.auth: must be one of"),
        ('[salesforce]\norg_ids = ["00Dshort"]\n', "salesforce.org_ids: each must be"),
        ('[programme]\ntimezone = "Mars/Olympus"\n', "programme.timezone: unknown time zone"),
        ('[programme]\nwindow_start = "13-01"\n', "programme.window_start: must be MM-DD"),
        ('[members]\nstatus_policy = { Lapsed = "delete" }\n', "members.status_policy.Lapsed"),
        ('[service]\nevents_secret = "plain"\n', "service.events_secret: must start with whsec_"),
        ("[moodle\n", "config: not valid TOML"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), env={})
    assert str(info.value).startswith(message)


def test_unknown_environment_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"moodle\.tokn: unknown setting"):
        load_settings(env={"MENTORSYNC_MOODLE_TOKN": "x"})


def test_secrets_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        env={
            "MENTORSYNC_MOODLE_TOKEN": "moodle-token-value",
            "MENTORSYNC_SALESFORCE_PASSWORD": "sf-password-value",
            "MENTORSYNC_SALESFORCE_SECURITY_TOKEN": "sf-security-value",
        }
    )
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings %s %r", settings, settings.moodle)
    text = repr(settings) + str(settings) + caplog.text
    for value in ("moodle-token-value", "sf-password-value", "sf-security-value"):
        assert value not in text
    assert settings.salesforce.password.get() == "sf-password-value"
    assert repr(Secret("x")) == "Secret('**********')"


def _numeric_settings() -> list[str]:
    return [
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if str(f.type) in ("int", "float")
    ]


@pytest.mark.parametrize("key", _numeric_settings())
def test_every_numeric_setting_refuses_nonsense_and_names_its_key(key: str) -> None:
    section, name = key.split(".")
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides={section: {name: -1}})
    assert info.value.key == key
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides={section: {name: "lots"}})
    assert info.value.key == key


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("programme", {"programme_course": " "}, "programme.programme_course"),
        ("programme", {"meeting_activities": ["M1", "M1"]}, "programme.meeting_activities"),
        ("members", {"auth": ""}, "members.auth"),
        ("service", {"bind": "127.0.0.1:http"}, "service.bind"),
        ("service", {"queue_url": "/var/queue.db"}, "service.queue_url"),
        ("service", {"basic_auth_user": "outbound"}, "service.basic_auth_password"),
        ("salesforce", {"retry_attempts": 0}, "salesforce.retry_attempts"),
    ],
)
def test_other_mistakes_name_their_key(section: str, values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides={section: values})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_a_secret_never_shows_in_a_validation_error(tmp_path: Path) -> None:
    secret = "whsec-lookalike-but-wrong-do-not-leak"
    with pytest.raises(ConfigError) as info:
        load_settings(env={"MENTORSYNC_SERVICE_EVENTS_SECRET": secret})
    assert info.value.key == "service.events_secret"
    assert secret not in str(info.value) and secret not in repr(info.value)
    path = write(tmp_path, f'[moodle]\ntoken = 12345\n[salesforce]\npassword = "{secret}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == "moodle.token" and "12345" not in str(info.value)


def test_stalled_feed_minutes_default_and_bound() -> None:
    assert load_settings(env={}).service.stalled_feed_minutes == 120
    off = load_settings(env={"MENTORSYNC_SERVICE_STALLED_FEED_MINUTES": "0"})
    assert off.service.stalled_feed_minutes == 0
    with pytest.raises(ConfigError, match=r"^service\.stalled_feed_minutes: must be at least 0"):
        load_settings(env={"MENTORSYNC_SERVICE_STALLED_FEED_MINUTES": "-1"})


def test_every_kind_settings_section_is_a_section_the_loader_reads() -> None:
    """Kinds declare their section; config keeps the list (it must not import the kinds)."""
    from connector.config import SECTIONS
    from connector.registry import kinds

    declared = {name: kind.settings_section for name, kind in kinds().items()}
    assert declared == {"members": "members", "pairs": "pairs", "progress": "programme"}
    assert set(declared.values()) <= set(SECTIONS)
