"""Salesforce's error codes as one table: code -> error class (hence action) and a hint.

The class decides what mentorsync does (its ``action``: retry, fail the record, stop); the hint
says what the admin can do, in mentorsync's own words (never the upstream message, which can
quote record data). Codes not in the table fall back on the HTTP status: 401 is a session
problem, 429 and 5xx pass, anything else is a plain :class:`SalesforceError` (stop).
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.errors import (
    SalesforceAuthError,
    SalesforceBudgetError,
    SalesforceError,
    SalesforceRecordError,
    SalesforceSchemaError,
    SalesforceTransientError,
)


@dataclass(frozen=True)
class Rule:
    """What one error code means."""

    error: type[SalesforceError]
    hint: str = ""


_FIELD_MAP = "check the field map (members.field_map, pairs.field_map) and `mentorsync doctor`"
_RECORD = "fix the record in Salesforce; mentorsync retries it when it changes"

ERRORS: dict[str, Rule] = {
    "INVALID_SESSION_ID": Rule(SalesforceAuthError, "the session expired and a new login failed"),
    "INVALID_LOGIN": Rule(SalesforceAuthError, "check salesforce.username/password/security_token"),
    "INVALID_AUTH_HEADER": Rule(SalesforceAuthError, "check the salesforce.auth settings"),
    # REQUEST_LIMIT_EXCEEDED is the daily budget unless its message says "concurrent".
    "REQUEST_LIMIT_EXCEEDED": Rule(
        SalesforceBudgetError, "the org's daily API budget is spent; the next run continues"
    ),
    "API_BUDGET_SHARE_EXCEEDED": Rule(
        SalesforceBudgetError, "above salesforce.max_budget_share of the daily API budget"
    ),
    "UNABLE_TO_LOCK_ROW": Rule(SalesforceTransientError),
    "SERVER_UNAVAILABLE": Rule(SalesforceTransientError),
    "INVALID_FIELD": Rule(SalesforceSchemaError, _FIELD_MAP),
    "INVALID_TYPE": Rule(SalesforceSchemaError, _FIELD_MAP),
    "MALFORMED_QUERY": Rule(SalesforceSchemaError, _FIELD_MAP),
    "INVALID_QUERY_FILTER_OPERATOR": Rule(SalesforceSchemaError, _FIELD_MAP),
    **{
        code: Rule(SalesforceRecordError, _RECORD)
        for code in (
            "REQUIRED_FIELD_MISSING",
            "DUPLICATE_VALUE",
            "DUPLICATE_EXTERNAL_ID",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "FIELD_INTEGRITY_EXCEPTION",
            "STRING_TOO_LONG",
            "INVALID_CROSS_REFERENCE_KEY",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "INVALID_ID_FIELD",
            "MALFORMED_ID",
            "ENTITY_IS_DELETED",
            "NOT_FOUND",
        )
    },
}


def rule_for(code: str, status: int, message: str) -> Rule:
    """The rule of an error answer: the table first, then the HTTP status."""
    if code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" in message.lower():
        return Rule(SalesforceTransientError)  # ConcurrentPerOrgLongTxn: passes
    if code in ERRORS:
        return ERRORS[code]
    if status == 401:
        return ERRORS["INVALID_SESSION_ID"]
    if status >= 500 or status == 429:
        return Rule(SalesforceTransientError)
    if status == 300:  # an external id matched several records
        return Rule(SalesforceRecordError, _RECORD)
    return Rule(SalesforceError)
