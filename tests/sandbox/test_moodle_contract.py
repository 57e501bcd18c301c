"""Contract test: the sandbox Moodle answers like the real Moodle 4.5 in the recordings.

Every request in ``tests/fixtures/moodle-4.5/index.json`` (and ``debug_on/index.json``) is
replayed, in recording order, against one fresh sandbox: the recordings were made in sequence on
one site, so each call finds the state the earlier ones built. Tokens are mapped
(``<TOKEN mentorsync>`` to the integration token, ``<TOKEN labtest.mentee1 ...>`` to that user's
self-service token). Each answer is compared with the recording by structure: HTTP status,
content type, keys, value types, list lengths, and the values that carry behaviour
(``exception``, ``errorcode``, ``warningcode``, completion states); ids, times, names and
messages may differ.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from sandbox.moodle import MoodleSandbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "moodle-4.5"
REST = "/webservice/rest/server.php"
RECORDED_ROOT = "http://127.0.0.1:8081"

# Keys whose values are behaviour, not data: compared exactly.
SEMANTIC_KEYS = frozenset(
    {
        "exception",
        "errorcode",
        "warningcode",
        "state",
        "completed",
        "complete",
        "status",
        "tracking",
        "isoverallcomplete",
        "istrackeduser",
        "isautomatic",
        "suspended",
        "class",
        "ERRORCODE",
    }
)

# Recordings not replayed, each with the reason. Keep this empty unless a recording truly
# cannot be reproduced on loopback.
SKIPPED: dict[str, str] = {}


def load_index(folder: Path) -> list[dict[str, Any]]:
    """The recording index of ``folder``."""
    return json.loads((folder / "index.json").read_text(encoding="utf-8"))


MAIN = load_index(FIXTURES)
DEBUG = load_index(FIXTURES / "debug_on")


# ----------------------------------------------------------------------------- structure


def shape(value: Any, key: str = "") -> Any:
    """A hashable description of ``value``: types, keys, list contents (order-free)."""
    if isinstance(value, dict):
        return tuple(sorted((k, shape(v, k)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(sorted((shape(v) for v in value), key=repr)))
    if key in SEMANTIC_KEYS:
        return (type(value).__name__, value)
    return type(value).__name__


def xml_to_python(text: str) -> Any:
    """Moodle's REST XML (RESPONSE / EXCEPTION) as Python values (strings, None, dicts, lists)."""
    root = ET.fromstring(text.encode("utf-8"))
    if root.tag == "EXCEPTION":
        out: dict[str, Any] = {"class": root.get("class")}
        for child in root:
            out[child.tag] = child.text or ""
        return out
    assert root.tag == "RESPONSE", root.tag
    children = list(root)
    return _xml_node(children[0]) if children else None


def _xml_node(node: ET.Element) -> Any:
    if node.tag == "SINGLE":
        return {key.get("name"): _xml_node(next(iter(key))) for key in node}
    if node.tag == "MULTIPLE":
        return [_xml_node(child) for child in node]
    assert node.tag == "VALUE", node.tag
    if node.get("null") == "null":
        return None
    return node.text or ""


def differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Readable differences between two shapes (for failure messages)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            elif key not in expected:
                out.append(f"{path}.{key}: unexpected")
            else:
                out += differences(expected[key], actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items, recorded {len(expected)}"]
        if shape(expected) == shape(actual):
            return []
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += differences(e, a, f"{path}[{i}]")
        return out or [f"{path}: items differ (order-free comparison)"]
    key = path.rsplit(".", 1)[-1]
    if shape(expected, key) != shape(actual, key):
        return [
            f"{path}: {actual!r} ({type(actual).__name__}), recorded {expected!r} "
            f"({type(expected).__name__})"
        ]
    return []


# ----------------------------------------------------------------------------- replay


class Replayer:
    """Sends recorded requests to a sandbox, mapping tokens and the host."""

    def __init__(self, sandbox: MoodleSandbox) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()

    def token(self, placeholder: str) -> str:
        """The sandbox token for a ``<TOKEN who ...>`` placeholder (others are sent as is)."""
        match = re.fullmatch(r"<TOKEN (\S+)[^>]*>", placeholder)
        if match is None:
            return placeholder
        who = match.group(1)
        if who == "mentorsync":
            return self.sandbox.token
        user = self.sandbox.site.user_by_username(who)
        assert user is not None, f"no user {who} for a self-service token"
        return self.sandbox.site.user_token(user["id"])

    def pairs(self, query: str) -> list[tuple[str, str]]:
        """Recorded query text (placeholders unencoded) as pairs with real tokens."""
        out = []
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            value = unquote(value)
            out.append((name, self.token(value) if name == "wstoken" else value))
        return out

    def send(self, entry: dict[str, Any]) -> requests.Response:
        """Replay one index entry."""
        method = entry["http_method"]
        if "url" in entry:
            parts = urlsplit(entry["url"])
            headers = {
                k: self.token(v) if k == "Authorization" else v
                for k, v in (entry.get("request_headers") or {}).items()
            }
            port = urlsplit(self.sandbox.url).port
            if parts.hostname != "127.0.0.1":
                headers["Host"] = f"{parts.hostname}:{port}"
            return self.http.request(
                method,
                self.sandbox.url + parts.path,
                params=self.pairs(parts.query),
                data=(entry.get("body") or "").encode() or None,
                headers=headers,
                allow_redirects=False,
                timeout=10,
            )
        return self.http.request(
            method,
            self.sandbox.url + REST,
            params=self.pairs(entry["url_params"]),
            data=[tuple(p) for p in entry["body_params"]] or None,
            timeout=10,
        )


def replay_all(entries: list[dict[str, Any]], sandbox: MoodleSandbox) -> dict[str, Any]:
    """Replay ``entries`` in order; file -> response (or the exception raised)."""
    replayer = Replayer(sandbox)
    results: dict[str, Any] = {}
    for entry in entries:
        if entry["file"] in SKIPPED:
            continue
        try:
            results[entry["file"]] = replayer.send(entry)
        except (requests.RequestException, AssertionError) as exc:
            results[entry["file"]] = exc
    return results


@pytest.fixture(scope="module")
def main_replay():
    """The main recording series against one fresh sandbox."""
    sandbox = MoodleSandbox()
    sandbox.start()
    try:
        yield sandbox, replay_all(MAIN, sandbox)
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def debug_replay():
    """The debugging-on series; the lab site had made users 4 and 5 before it, so do we."""
    sandbox = MoodleSandbox(debugging=True)
    sandbox.site.create_user("earlier.one", "earlier.one@example.com")
    sandbox.site.create_user("earlier.two", "earlier.two@example.com")
    sandbox.start()
    try:
        yield sandbox, replay_all(DEBUG, sandbox)
    finally:
        sandbox.stop()


def check(folder: Path, entry: dict[str, Any], sandbox: MoodleSandbox, response: Any) -> None:
    """Compare one replayed answer with its recording."""
    if isinstance(response, Exception):
        pytest.fail(f"{entry['file']}: replay failed: {response!r}")
    recorded = (folder / entry["file"]).read_text(encoding="utf-8")
    assert response.status_code == entry["http_status"], response.text[:300]
    assert response.headers["Content-Type"].split(";")[0] == entry["content_type"].split(";")[0]
    if entry["http_status"] in (301, 302, 303):
        location = entry["location"].replace(RECORDED_ROOT, sandbox.url)
        location = location.replace("<TOKEN mentorsync>", sandbox.token)
        assert response.headers["Location"] == location
        return
    if entry["file"].endswith(".xml"):
        expected, actual = xml_to_python(recorded), xml_to_python(response.text)
    else:
        expected, actual = json.loads(recorded), response.json()
    problems = differences(expected, actual)
    assert not problems, f"{entry['file']}:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("entry", MAIN, ids=[e["file"] for e in MAIN])
def test_recording(entry: dict[str, Any], main_replay) -> None:
    """Each recorded call of the main series gets an answer of the recorded structure."""
    sandbox, results = main_replay
    check(FIXTURES, entry, sandbox, results[entry["file"]])


@pytest.mark.parametrize("entry", DEBUG, ids=[e["file"] for e in DEBUG])
def test_recording_with_debugging(entry: dict[str, Any], debug_replay) -> None:
    """With debugging on, errors carry ``debuginfo`` where the real site's did."""
    sandbox, results = debug_replay
    check(FIXTURES / "debug_on", entry, sandbox, results[entry["file"]])


def test_every_recording_is_indexed_and_replayed() -> None:
    """Nothing in the fixtures folder escapes the replay (besides the README and the index)."""
    indexed = {e["file"] for e in MAIN}
    on_disk = {p.name for p in FIXTURES.iterdir() if p.is_file()} - {"README.md", "index.json"}
    # 00_ is the README's curl example, the same call as 01_ (GET).
    assert on_disk - indexed == {"00_curl_core_webservice_get_site_info.json"}
    assert not SKIPPED
