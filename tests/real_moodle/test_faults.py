"""Faults the real site shows: the dmlwriteexception race, partial batches, max_input_vars.

The race: every web-service call runs ``enrol_check_plugins`` for the token's user
(``webservice/lib.php``), which inserts the preference ``last_time_enrolments_synced`` when it
is missing (``lib/enrollib.php``). Concurrent calls that all find it missing race to insert
it, and the losers answer dmlwriteexception, even on a read. The built site starts without
the preference, and ``forget_enrolment_check`` removes it again to re-arm the race;
``race_enrolment_check`` makes the race certain instead of likely (its docstring says how).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connector.clients.moodle.client import MoodleClient
from connector.clients.moodle.site import (
    InputVarsLimit,
    check_max_input_vars,
    measure_max_input_vars,
)
from connector.errors import ConfigError, MoodleRecordError, MoodleWriteRefusedError
from tests.real_moodle.builder import Server
from tests.real_moodle.conftest import RealMoodle

THREADS = 4  # the server's workers: each call has one to itself, so all of them race


def raw_lookup(moodle: RealMoodle) -> Any:
    data = {"wstoken": moodle.token, "wsfunction": "core_user_get_users_by_field",
            "moodlewsrestformat": "json", "field": "id", "values[0]": str(moodle.userid)}
    return requests.post(moodle.url + "/webservice/rest/server.php", data=data, timeout=120).json()


def test_concurrent_first_calls_race_and_losers_answer_dmlwriteexception(
    real_moodle: RealMoodle,
) -> None:
    answers = real_moodle.site.race_enrolment_check(
        real_moodle.userid, [lambda: raw_lookup(real_moodle)] * THREADS)
    lost = [a for a in answers if isinstance(a, dict)]
    # One of the racing inserts wins; every other call loses.
    assert len(lost) == THREADS - 1
    assert {a["errorcode"] for a in lost} == {"dmlwriteexception"}
    assert {a["exception"] for a in lost} == {"dml_write_exception"}
    won = [a for a in answers if not isinstance(a, dict)]
    assert [a[0]["id"] for a in won] == [real_moodle.userid]


def test_the_client_survives_the_race_on_reads_and_writes(
    real_moodle: RealMoodle, tmp_path: Path
) -> None:
    courseid = int(real_moodle.site.info["courses"]["GMP-2026"])
    before = len(real_moodle.client(tmp_path).get_course_groups(courseid))
    real_moodle.site.forget_enrolment_check(real_moodle.userid)  # the look-up above won it
    clients = [real_moodle.client(tmp_path, retry_max_seconds=60.0) for _ in range(THREADS)]

    def work(i: int) -> Any:
        client = clients[i]
        if i % 2:
            return client.get_users_by_field("id", [real_moodle.userid])[0]["id"]
        group = {"courseid": courseid, "name": f"race {i}", "description": ""}
        return client.create_groups([group])[0]["name"]

    results = real_moodle.site.race_enrolment_check(
        real_moodle.userid, [lambda i=i: work(i) for i in range(THREADS)])

    assert results == [real_moodle.userid if i % 2 else f"race {i}" for i in range(THREADS)]
    # Each lost call was sent once more, reads and writes alike, and nothing else was.
    assert sum(sum(c.calls.values()) for c in clients) == THREADS + THREADS - 1
    # Every group made exactly once: a write resent after losing the race had not happened.
    names = [g["name"] for g in real_moodle.client(tmp_path).get_course_groups(courseid)]
    assert len(names) == before + THREADS // 2
    assert sorted(n for n in names if n.startswith("race ")) == [
        f"race {i}" for i in range(0, THREADS, 2)]


@pytest.fixture
def admin(real_moodle: RealMoodle, tmp_path: Path) -> MoodleClient:
    client = real_moodle.client(tmp_path)
    client.site_info()  # wins the enrolment-check insert alone: no race below
    return client


def test_a_group_name_over_254_characters_is_the_records_fault_and_nothing_stays(
    real_moodle: RealMoodle, admin: MoodleClient
) -> None:
    """group/externallib.php create_groups runs in one delegated transaction: a failing group
    takes the groups before it in the batch with it (checked here, not assumed)."""
    courseid = int(real_moodle.site.info["courses"]["GMP-2026"])
    before = {g["name"] for g in admin.get_course_groups(courseid)}
    batch = [
        {"courseid": courseid, "name": "kept?", "description": ""},
        {"courseid": courseid, "name": "x" * 255, "description": ""},
    ]
    with pytest.raises(MoodleWriteRefusedError) as caught:
        admin.create_groups(batch)
    assert caught.value.errorcode == "dmlwriteexception"
    assert admin.calls["core_group_create_groups"] == 2  # resent once, then the record's fault
    assert {g["name"] for g in admin.get_course_groups(courseid)} == before


def test_an_enrol_batch_with_a_bad_row_applies_nothing(
    real_moodle: RealMoodle, admin: MoodleClient
) -> None:
    courseid = int(real_moodle.site.info["courses"]["GMP-ORIENT"])
    made = admin.create_users([{"username": "batch.one", "email": "batch.one@example.org",
                                "firstname": "Batch", "lastname": "One", "auth": "manual",
                                "password": "Batch#One2026"}])
    good = {"roleid": 5, "userid": int(made[0]["id"]), "courseid": courseid}
    bad = {"roleid": 5, "userid": int(made[0]["id"]), "courseid": 999999}  # no such course
    with pytest.raises(MoodleRecordError):
        admin.enrol_users([good, bad])
    enrolled = {u["id"] for u in admin.get_enrolled_users(courseid)}
    assert good["userid"] not in enrolled


@pytest.fixture
def php_at_1000(real_moodle: RealMoodle) -> Iterator[Server]:
    server = Server(real_moodle.site, 1000, workers=1)
    try:
        yield server
    finally:
        server.stop()


def test_the_probe_measures_phps_real_max_input_vars(
    real_moodle: RealMoodle, php_at_1000: Server, tmp_path: Path
) -> None:
    settings = real_moodle.settings(tmp_path, moodle={"url": php_at_1000.url})
    client = MoodleClient(settings.moodle)  # configured at 5000, PHP has 1000
    assert measure_max_input_vars(client, 5000, real_moodle.userid) == InputVarsLimit(1001, False)
    with pytest.raises(ConfigError) as caught:
        check_max_input_vars(client)
    assert caught.value.key == "moodle.max_input_vars"
    assert "max_input_vars = 1000 in its php.ini" in str(caught.value)
    # PHP keeps one body field past its setting (measured: 1000 -> 1001, 5000 -> 5001); the
    # site at 5000 holds its setting with one call.
    full = real_moodle.client(tmp_path)
    assert check_max_input_vars(full) == InputVarsLimit(5000, at_least=True)
    assert full.calls["core_user_get_users_by_field"] == 1
