"""Fixtures of the real-Moodle tier: one built site per session, restored per test module.

Without its prerequisites (php, PostgreSQL 15, ``MENTORSYNC_TEST_MOODLE_SOURCE``) the tier is
skipped, except with ``CI=true``, where it fails: CI must never pass without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.clients.moodle.client import MoodleClient
from connector.config import Settings, load_settings
from sandbox.salesforce import SalesforceSandbox
from tests.real_moodle.builder import (
    ROOT,
    SITE_FILES,
    MoodleSite,
    Server,
    missing_prerequisites,
)

_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the build and restore times of the session's site."""
    for line in _SUMMARY:
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/real_moodle/ carries the ``real_moodle`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_moodle)


@dataclass
class RealMoodle:
    """The running site: its URL, the integration token and what configure.php made."""

    site: MoodleSite
    server: Server

    @property
    def url(self) -> str:
        """The wwwroot (exactly what the client must use)."""
        return self.server.url

    @property
    def token(self) -> str:
        """The integration user's token."""
        return str(self.site.info["token"])

    @property
    def userid(self) -> int:
        """The integration user's id."""
        return int(self.site.info["userid"])

    def settings(self, data_dir: Path, **sections: dict) -> Settings:
        """Validated mentorsync settings for this site (``sections`` override per section)."""
        values: dict[str, dict] = {
            "moodle": {"url": self.url, "token": self.token, "max_input_vars": 5000},
            "service": {"data_dir": str(data_dir)},
        }
        for section, overrides in sections.items():
            values.setdefault(section, {}).update(overrides)
        return load_settings(None, env={}, overrides=values)

    def client(self, tmp_path: Path, **moodle: object) -> MoodleClient:
        """A client of the site, ``moodle`` overriding Moodle settings."""
        return MoodleClient(self.settings(tmp_path, moodle=dict(moodle)).moodle)

    def participant(self, tmp_path: Path, userid: int) -> MoodleClient:
        """A client calling as ``userid`` would (the mobile app's way): a token of the
        participants' service (``site/token.php``), not the integration user's.

        An account mentorsync made (``createpassword``) must change its password first: until
        then Moodle answers every web-service call of its own with ``forcepasswordchangenotice``.
        The participant is taken to have logged in once and set one (the preference is gone).
        """
        self.site.sql(
            "DELETE FROM mdl_user_preferences WHERE name = 'auth_forcepasswordchange' "
            f"AND userid = {int(userid)}", "moodle")
        token = self.site.php(str(SITE_FILES / "token.php"), f"--userid={int(userid)}").strip()
        return self.client(tmp_path, token=token)


def salesforce_settings(sf: SalesforceSandbox) -> dict[str, object]:
    """The ``[salesforce]`` settings of the sandbox org ``sf``."""
    return {
        "auth": "password", "username": sf.username, "password": sf.password,
        "security_token": sf.security_token, "domain": f"{sf.host}:{sf.port}",
        "ca_bundle": sf.ca_file, "org_ids": [sf.org_id],
    }


@pytest.fixture(scope="session")
def moodle_site() -> Iterator[RealMoodle]:
    """The site, built once (or reused from the cache) and served at max_input_vars=5000."""
    missing = missing_prerequisites()
    if missing:
        reason = "real-Moodle tier: missing " + "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (required when CI=true)", pytrace=False)
        pytest.skip(reason)
    cache = Path(os.environ.get("MENTORSYNC_TEST_MOODLE_CACHE") or ROOT / "var" / "moodle-tier")
    source = Path(os.environ["MENTORSYNC_TEST_MOODLE_SOURCE"])
    site = MoodleSite(source if source.is_absolute() else Path.cwd() / source, cache)
    server = None
    try:
        site.prepare()
        server = Server(site, 5000)
        yield RealMoodle(site, server)
    finally:
        if server is not None:
            server.stop()
        site.stop_postgres()
        t = site.timings
        _SUMMARY.append(
            f"real-Moodle tier: unpack {t.unpack:.1f}s, install {t.install:.1f}s, "
            f"configure {t.configure:.1f}s, snapshot {t.snapshot:.1f}s (0 = reused from "
            f"{cache}), restores " + ", ".join(f"{s:.1f}s" for s in t.restores)
        )


@pytest.fixture(scope="module")
def real_moodle(moodle_site: RealMoodle) -> RealMoodle:
    """The site restored to its configured state for this test module."""
    moodle_site.site.restore()
    return moodle_site
