"""A handful of the recorded calls replayed against the live site, compared on shape.

Values differ (ids, timestamps, ports, names); keys and JSON types must not. A drift between
the recordings the sandbox replays and a real Moodle 4.5 shows up here first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from tests.real_moodle.conftest import RealMoodle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "moodle-4.5"
INDEX = {entry["file"]: entry for entry in json.loads((FIXTURES / "index.json").read_text())}
REPLAYED = (
    "01_core_webservice_get_site_info_GET.json",
    "13_core_course_get_courses_by_field_shortname_GMP-ORIENT.json",
    "16_core_course_get_contents_GMP-2026.json",
    "17_core_course_get_contents_ERROR_missing_param.json",
    "18_core_course_get_contents_ERROR_no_such_course.json",
    "59_ERROR_invalid_token.json",
    "60_ERROR_function_not_in_service.json",
    "61_ERROR_no_such_function.json",
)


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively; a list is the shape of its first element."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def replay(moodle: RealMoodle, entry: dict[str, Any]) -> requests.Response:
    """Send the recorded request to the live site, with its token."""
    query = [
        (k, moodle.token if v == "<TOKEN mentorsync>" else v)
        for k, v in parse_qsl(entry["url_params"], keep_blank_values=True)
    ]
    body = [tuple(pair) for pair in entry["body_params"]]
    method = entry["http_method"]
    url = moodle.url + "/webservice/rest/server.php"
    return requests.request(method, url, params=query, data=body or None, timeout=60)


@pytest.mark.parametrize("name", REPLAYED)
def test_recorded_call_has_the_recorded_shape(real_moodle: RealMoodle, name: str) -> None:
    entry = INDEX[name]
    recorded = json.loads((FIXTURES / name).read_text())
    response = replay(real_moodle, entry)
    assert response.status_code == entry["http_status"]
    live = response.json()
    if isinstance(recorded, dict) and "errorcode" in recorded:
        assert live["errorcode"] == recorded["errorcode"]
        assert live["exception"] == recorded["exception"]
    assert shape(live) == shape(recorded)
