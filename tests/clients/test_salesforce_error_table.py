"""Salesforce's errors come from one table: code -> class (its action) and a hint."""

from __future__ import annotations

import pytest

from connector.clients.salesforce.client import classify
from connector.clients.salesforce.errors import ERRORS
from connector.errors import (
    Action,
    SalesforceBudgetError,
    SalesforceError,
    SalesforceRecordError,
    SalesforceSchemaError,
    SalesforceTransientError,
)


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_code_in_the_table_becomes_its_class_with_its_hint(code: str) -> None:
    error = classify("query", 400, [{"errorCode": code, "message": "x", "fields": []}])
    assert type(error) is ERRORS[code].error
    assert error.hint == ERRORS[code].hint
    assert error.code == f"salesforce:{code}"


@pytest.mark.parametrize(
    ("code", "status", "message", "cls", "action"),
    [
        ("INVALID_FIELD", 400, "No such column", SalesforceSchemaError, Action.STOP),
        (
            "REQUEST_LIMIT_EXCEEDED",
            403,
            "TotalRequests Limit exceeded.",
            SalesforceBudgetError,
            Action.STOP,
        ),
        (
            "REQUEST_LIMIT_EXCEEDED",
            403,
            "ConcurrentPerOrgLongTxn Limit exceeded",
            SalesforceTransientError,
            Action.RETRY,
        ),
        ("DUPLICATE_VALUE", 400, "duplicate", SalesforceRecordError, Action.FAIL_RECORD),
        ("SOMETHING_NEW", 503, "", SalesforceTransientError, Action.RETRY),
        ("SOMETHING_NEW", 400, "", SalesforceError, Action.STOP),
    ],
)
def test_codes_and_statuses_decide_the_action(
    code: str, status: int, message: str, cls: type, action: Action
) -> None:
    error = classify("query", status, [{"errorCode": code, "message": message}])
    assert (type(error), error.action) == (cls, action)
    assert message not in str(error) or not message  # upstream text never in str()
