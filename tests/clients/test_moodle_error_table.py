"""Moodle's errors come from one table: code -> class (its action) and a hint."""

from __future__ import annotations

import pytest

from connector.clients.moodle.errors import ERRORS, rule_for
from connector.errors import (
    Action,
    MoodleConfigurationError,
    MoodleRecordError,
    MoodleTransientError,
)


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_code_in_the_table_has_its_class(code: str) -> None:
    assert rule_for(code, "", write=False) is ERRORS[code]


@pytest.mark.parametrize(
    ("code", "message", "write", "cls", "action"),
    [
        ("invalidtoken", "", False, MoodleConfigurationError, Action.STOP),
        ("wsaccessusersuspended", "", False, MoodleConfigurationError, Action.STOP),
        (
            "invalidrecord",
            "Can't find data record in database table external_functions.",
            False,
            MoodleConfigurationError,
            Action.STOP,
        ),
        (
            "invalidrecord",
            "Can't find data record in database table course.",
            False,
            MoodleRecordError,
            Action.FAIL_RECORD,
        ),
        ("dmlwriteexception", "", False, MoodleTransientError, Action.RETRY),
        ("dmlwriteexception", "", True, MoodleRecordError, Action.FAIL_RECORD),
        ("sitemaintenance", "", True, MoodleTransientError, Action.RETRY),
        ("invalidparameter", "", True, MoodleRecordError, Action.FAIL_RECORD),
    ],
)
def test_the_special_codes_decide_by_message_and_by_read_or_write(
    code: str, message: str, write: bool, cls: type, action: Action
) -> None:
    rule = rule_for(code, message, write)
    assert rule.error is cls and cls.action is action
    if cls is MoodleConfigurationError:
        assert rule.hint  # what to enable, in mentorsync's words
