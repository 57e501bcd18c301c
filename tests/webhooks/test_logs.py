"""The secret path segment never reaches a log line, gunicorn's own included."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connector.cli.service import gunicorn_options
from tests.webhooks.fakes import make_settings
from webhooks import logs

ROOT = Path(__file__).resolve().parents[2]


def test_the_filter_redacts_the_segment_after_the_outbound_path() -> None:
    record = logging.LogRecord(
        "gunicorn.error",
        logging.WARNING,
        __file__,
        1,
        "Invalid request from ip=%s: %s",
        ("127.0.0.1", "Invalid HTTP request line: 'POST /hooks/salesforce/outbound/s3cret-Path x'"),
        None,
    )
    assert logs.RedactSecretPaths().filter(record) is True
    message = record.getMessage()
    assert "s3cret-Path" not in message
    assert "/hooks/salesforce/outbound/<redacted> x'" in message
    assert message.startswith("Invalid request from ip=127.0.0.1")


def test_other_lines_are_left_alone() -> None:
    record = logging.LogRecord(
        "gunicorn.error", logging.INFO, __file__, 1, "Booting worker with pid: %s", (42,), None
    )
    logs.RedactSecretPaths().filter(record)
    assert (record.msg, record.args) == ("Booting worker with pid: %s", (42,))


def test_install_is_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    name = "tests.logs.install"
    logs.install(name)
    logs.install(name)
    logger = logging.getLogger(name)
    assert sum(isinstance(f, logs.RedactSecretPaths) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=name):
        logger.info("request %s failed", "/hooks/salesforce/outbound/abc?x=1")
    assert "abc" not in caplog.text and "<redacted>" in caplog.text


def test_the_shipped_gunicorn_config_keeps_the_access_log_off(tmp_path: Path) -> None:
    options = gunicorn_options(
        make_settings(tmp_path), None, 2, 4, str(ROOT / "deploy" / "gunicorn.conf.py")
    )
    assert options["accesslog"] is None
    assert callable(options["on_starting"])


def test_a_record_that_cannot_be_formatted_is_passed_on_unchanged() -> None:
    record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, "%d", ("x",), None)
    assert logs.RedactSecretPaths().filter(record) is True
    assert (record.msg, record.args) == ("%d", ("x",))
