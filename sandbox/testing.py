"""Helpers for tests that run mentorsync against the loopback sandboxes.

``settings_for(sf, moodle, data_dir)`` gives validated :class:`Settings` pointing at both
sandboxes; ``running_sandboxes(tmp_path)`` starts both, seeds them and stops them afterwards::

    with running_sandboxes(tmp_path, members=60) as (sf, moodle, settings):
        ...  # sf.seed_report says where the special cases are
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from connector.config import Settings, load_settings
from sandbox.moodle import MoodleSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.seed import seed


def settings_for(
    sf: SalesforceSandbox,
    moodle: MoodleSandbox,
    data_dir: Path | str,
    /,
    **overrides: Mapping[str, Any],
) -> Settings:
    """Validated settings for both (started) sandboxes; ``overrides`` are per section.

    Salesforce logs in with the SOAP password grant (no consumer key), trusting the sandbox's
    CA. Every section can be overridden, ``moodle`` too (the first three parameters are
    positional-only): ``settings_for(sf, moodle, tmp, moodle={"read_timeout": 1.0},
    members={"mass_change_share": 1.0})``. The process environment (``MENTORSYNC_*``) is
    ignored, so a developer's shell cannot leak in.
    """
    if not sf.url or not moodle.url:
        raise ValueError("settings_for: start both sandboxes first (their URLs are not known yet)")
    sections: dict[str, dict[str, Any]] = {
        "moodle": {
            "url": moodle.url,
            "token": moodle.token,
            "max_input_vars": moodle.max_input_vars,
        },
        "salesforce": {
            "auth": "password",
            "username": sf.username,
            "password": sf.password,
            "security_token": sf.security_token,
            "domain": f"{sf.host}:{sf.port}",
            "ca_bundle": sf.ca_file,
            "org_ids": [sf.org_id],
        },
        "service": {"data_dir": str(data_dir)},
    }
    for section, values in overrides.items():
        if not isinstance(values, Mapping):
            raise TypeError(f"settings_for: override {section}= must be a mapping of settings")
        sections.setdefault(section, {}).update(values)
    return load_settings(None, env={}, overrides=sections)


@contextlib.contextmanager
def running_sandboxes(
    tmp_path: Path,
    members: int = 300,
    latency: float = 0.0,
    *,
    seed_value: int = 42,
    outbound_url: str | None = None,
    moodle_accounts: int = 1,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[tuple[SalesforceSandbox, MoodleSandbox, Settings]]:
    """Start both sandboxes (state under ``tmp_path``), seed them, yield, then stop both.

    ``members`` is how many members to seed (0 skips seeding); the seed report is
    ``sf.seed_report``. ``overrides`` (section -> settings, e.g.
    ``{"members": {"mass_change_share": 0.2}, "moodle": {"read_timeout": 1.0}}``) go to
    :func:`settings_for`; mentorsync's own data directory is ``tmp_path / "mentorsync"``.
    """
    sf = SalesforceSandbox(tmp_path / "salesforce", latency=latency, outbound_url=outbound_url)
    moodle = MoodleSandbox(tmp_path / "moodle", latency=latency)
    try:
        sf.start()
        moodle.start()
        if members:
            seed(sf, moodle, members=members, seed=seed_value, moodle_accounts=moodle_accounts)
        settings = settings_for(sf, moodle, tmp_path / "mentorsync", **(overrides or {}))
        yield sf, moodle, settings
    finally:
        # Stop both even if one fails to stop; the first error still surfaces.
        try:
            moodle.stop()
        finally:
            sf.stop()


class RestSession:
    """A plain ``requests`` client for the sandbox org, for tests that check the wire itself.

    It trusts the sandbox's CA (passed per request: a session-wide ``verify`` loses to
    ``REQUESTS_CA_BUNDLE`` in the environment) and logs in with the OAuth password grant.
    """

    def __init__(self, sf: SalesforceSandbox, version: str = "59.0") -> None:
        self.sf = sf
        self.version = version
        self.http = requests.Session()
        self.http.trust_env = False  # no proxies or CA bundle from the environment
        self.token = ""

    def login(self) -> str:
        """Log in (OAuth password grant); return and use the access token."""
        response = self.post_form(
            "/services/oauth2/token",
            {
                "grant_type": "password",
                "client_id": self.sf.consumer_key,
                "client_secret": self.sf.consumer_secret,
                "username": self.sf.username,
                "password": self.sf.password + self.sf.security_token,
            },
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        return self.token

    def post_form(self, path: str, form: Mapping[str, str], **kwargs: Any) -> requests.Response:
        """POST a form to ``path`` (from the host root, e.g. the token endpoint)."""
        return self.http.post(self.sf.url + path, data=form, verify=self.sf.ca_file, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A REST call: ``path`` relative to ``/services/data/vXX.X/``, or absolute from ``/``."""
        url = path if path.startswith("/") else f"/services/data/v{self.version}/{path}"
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        kwargs.setdefault("timeout", 30)
        return self.http.request(
            method, self.sf.url + url, headers=headers, verify=self.sf.ca_file, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST ``path``."""
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        """PATCH ``path``."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)

    def query(self, soql: str, *, all_rows: bool = False) -> requests.Response:
        """``GET query?q=`` (``queryAll`` with ``all_rows``)."""
        return self.get("queryAll" if all_rows else "query", params={"q": soql})

    def close(self) -> None:
        """Close pooled connections."""
        self.http.close()
