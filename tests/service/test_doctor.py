"""`mentorsync doctor`: a missing function or course fails the run and says what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from click.testing import CliRunner

from connector.cli import main
from connector.service.doctor import DEFAULT_SALESFORCE_FIELDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "moodle-4.5"
MOODLE = "http://127.0.0.1:8081"
INSTANCE = "https://assoc.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v59.0"


def recording(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def moodle_answers(
    drop_function: str | None = None,
    known_courses: tuple[str, ...] = (),
    idnumbers: dict[int, str] | None = None,
) -> Any:
    """A responses callback answering like the recorded Moodle, by wsfunction.

    ``idnumbers``: course module id -> idnumber (default: the six meetings, cmids 4-9, as on
    the recorded site; ``core_course_get_course_module`` is not in the recordings).
    """
    if idnumbers is None:
        idnumbers = {4 + n: f"GMP-2026-M{n + 1}" for n in range(6)}
    info = recording("01_core_webservice_get_site_info_GET.json")
    if drop_function:
        info["functions"] = [f for f in info["functions"] if f["name"] != drop_function]
    orient = recording("13_core_course_get_courses_by_field_shortname_GMP-ORIENT.json")
    programme = recording("14_core_course_get_courses_by_field_idnumber_GMP-2026.json")
    contents = recording("16_core_course_get_contents_GMP-2026.json")

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        function = form["wsfunction"]
        if function == "core_webservice_get_site_info":
            body: Any = info
        elif function == "core_course_get_courses_by_field":
            value = form["value"]
            found = {"GMP-ORIENT": orient, "GMP-2026": programme}.get(value)
            body = found if found and value in known_courses else {"courses": [], "warnings": []}
        elif function == "core_course_get_contents":
            body = contents
        elif function == "core_course_get_course_module":
            cmid = int(form["cmid"])
            completion = next(
                m["completion"] for s in contents for m in s["modules"] if m["id"] == cmid
            )
            body = {
                "cm": {
                    "id": cmid,
                    "course": 3,
                    "idnumber": idnumbers.get(cmid, ""),
                    "completion": completion,
                },
                "warnings": [],
            }
        elif function == "core_enrol_get_enrolled_users":
            body = recording("22_core_enrol_get_enrolled_users_GMP-ORIENT.json")
        elif function == "core_user_get_users_by_field":
            # The max_input_vars probe: the integration user (id 3) comes back.
            values = parse_qs(request.body).get("values[4995]", [])
            body = [{"id": 3, "username": "mentorsync"}] if values == ["3"] else []
        else:
            raise AssertionError(f"unexpected call {function}")
        return 200, {}, json.dumps(body)

    return answer


def serve_moodle(rsps: responses.RequestsMock, **answers: Any) -> None:
    """Answer Moodle web-service calls like the recorded site (see ``moodle_answers``)."""
    rsps.add_callback(
        responses.POST, f"{MOODLE}/webservice/rest/server.php", callback=moodle_answers(**answers)
    )


def salesforce_answers(rsps: responses.RequestsMock, missing_field: str | None = None) -> None:
    limit = {"Sforce-Limit-Info": "api-usage=18/15000"}
    rsps.get(
        f"{DATA}/limits/",
        json={"DailyApiRequests": {"Max": 15000, "Remaining": 14982}},
        headers=limit,
    )
    for obj, fields in DEFAULT_SALESFORCE_FIELDS.items():
        names = [f for f in ("Id", *fields) if f != missing_field]
        rsps.get(
            f"{DATA}/sobjects/{obj}/describe",
            json={"name": obj, "fields": [{"name": n} for n in names]},
            headers=limit,
        )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "MENTORSYNC_MOODLE_URL": MOODLE,
        "MENTORSYNC_MOODLE_TOKEN": "doctor-token-do-not-leak",
        "MENTORSYNC_SALESFORCE_AUTH": "session",
        "MENTORSYNC_SALESFORCE_SESSION_ID": "doctor-session-do-not-leak",
        "MENTORSYNC_SALESFORCE_INSTANCE_URL": INSTANCE,
        "MENTORSYNC_SALESFORCE_DOMAIN": "assoc.my.salesforce.com",
        "MENTORSYNC_SERVICE_DATA_DIR": str(tmp_path),
    }


def run_doctor(env: dict[str, str]) -> Any:
    return CliRunner().invoke(main, ["doctor"], env=env, terminal_width=200)


def test_everything_present_exits_zero(env: dict[str, str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_moodle(rsps, known_courses=("GMP-ORIENT", "GMP-2026"))
        salesforce_answers(rsps)
        result = run_doctor(env)
    assert result.exit_code == 0, result.output
    assert "Everything mentorsync needs is there." in result.output
    assert "Pharmacy Association LMS (lab)" in result.output
    assert "18 of 15000" in result.output


def test_missing_function_and_course_are_named(env: dict[str, str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_moodle(rsps, drop_function="enrol_manual_enrol_users", known_courses=("GMP-ORIENT",))
        salesforce_answers(rsps)
        result = run_doctor(env)
    assert result.exit_code != 0
    assert "enrol_manual_enrol_users" in result.output
    assert "no course with shortname GMP-2026" in result.output
    assert "2 problem(s) found" in result.output
    assert "doctor-token-do-not-leak" not in result.output


def test_a_meeting_activity_without_its_idnumber_is_named(env: dict[str, str]) -> None:
    idnumbers = {4 + n: f"GMP-2026-M{n + 1}" for n in range(5)}  # M6 has lost its idnumber
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_moodle(rsps, known_courses=("GMP-ORIENT", "GMP-2026"), idnumbers=idnumbers)
        salesforce_answers(rsps)
        result = run_doctor(env)
    assert result.exit_code != 0
    assert "in GMP-2026: no activity with idnumber GMP-2026-M6" in result.output
    assert "separate groups" in result.output  # the recorded course: groupmode 1
    assert "local_mentorsync is not installed" in result.output


def test_renamed_salesforce_field_is_named(env: dict[str, str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_moodle(rsps, known_courses=("GMP-ORIENT", "GMP-2026"))
        salesforce_answers(rsps, missing_field="Member_Status__c")
        result = run_doctor(env)
    assert result.exit_code != 0
    assert "Contact.Member_Status__c" in result.output


def test_refused_token_says_what_to_fix(env: dict[str, str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(
            f"{MOODLE}/webservice/rest/server.php",
            body=(FIXTURES / "59_ERROR_invalid_token.json").read_text(encoding="utf-8"),
        )
        salesforce_answers(rsps)
        result = run_doctor(env)
    assert result.exit_code != 0
    assert "invalidtoken" in result.output


def test_a_wrong_moodle_url_says_it_must_be_the_wwwroot(env: dict[str, str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(
            f"{MOODLE}/webservice/rest/server.php",
            body="<h1>Redirect</h1>",
            status=303,
            headers={"Location": "http://lms.example.org/webservice/rest/server.php"},
        )
        salesforce_answers(rsps)
        result = run_doctor(env)
    assert result.exit_code != 0
    assert "redirect303" in result.output
    assert "moodle.url must be the site's wwwroot exactly" in result.output


def test_unreadable_api_limits_fail_the_check_instead_of_crashing(env: dict[str, str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_moodle(rsps, known_courses=("GMP-ORIENT", "GMP-2026"))
        rsps.get(
            f"{DATA}/limits/",
            json=[{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}],
            status=403,
        )
        for obj, fields in DEFAULT_SALESFORCE_FIELDS.items():
            rsps.get(
                f"{DATA}/sobjects/{obj}/describe",
                json={"name": obj, "fields": [{"name": n} for n in ("Id", *fields)]},
            )
        result = run_doctor(env)
    assert result.exit_code == 1, result.output
    assert "cannot read the limits (INSUFFICIENT_ACCESS)" in result.output
    assert "Traceback" not in result.output
