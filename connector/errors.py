"""One rooted error hierarchy for mentorsync.

Every error says what to do about it through its ``action``:

- ``Action.RETRY``: a passing fault (network, 5xx, row lock). Retry with backoff.
- ``Action.FAIL_RECORD``: this record is bad (Moodle refused the row, Salesforce refused the
  field value). Record it with its error code, go on with the rest.
- ``Action.STOP``: nothing further can work until a person fixes something (wrong token, a
  function missing from the web service, the daily API budget spent). Stop the run and alert.

Messages carry ids and error codes only. Upstream messages can contain names and emails
(Moodle's do), so they are kept on the exception as ``upstream_message`` but never put in
``str(error)``, which is what logs show.
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """What a caller should do about an error."""

    RETRY = "retry"
    FAIL_RECORD = "fail_record"
    STOP = "stop"


class MentorsyncError(Exception):
    """Root of every error mentorsync raises on purpose.

    ``code`` is the short machine-readable code that run records, failed records, logs and
    metrics carry (``moodle:invalidtoken``, ``salesforce:REQUEST_LIMIT_EXCEEDED``,
    ``config:moodle.url``): derived here once, so nothing else re-derives it.
    """

    action: Action = Action.STOP

    @property
    def code(self) -> str:
        """This error's code (the class name for errors without an upstream code)."""
        return type(self).__name__


def error_code(exc: BaseException) -> str:
    """The code of any exception: a mentorsync error's ``code``, else its class name."""
    return exc.code if isinstance(exc, MentorsyncError) else type(exc).__name__


class ConfigError(MentorsyncError):
    """The configuration is invalid; the message names the key and what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")

    @property
    def code(self) -> str:
        """``config:<key>``."""
        return f"config:{self.key}"


class UnknownOutcomeError(MentorsyncError):
    """A write was sent but no answer came back (read timeout): it may or may not have happened.

    Never retried blindly; the caller re-reads the target to learn what happened.
    ``operation`` names the call (a Moodle wsfunction such as ``core_user_create_users``, or a
    Salesforce operation such as ``collections.create``); ``wsfunction`` is set for Moodle calls.
    """

    action = Action.RETRY

    def __init__(self, message: str = "", *, operation: str = "", wsfunction: str = "") -> None:
        super().__init__(message)
        self.wsfunction = wsfunction
        self.operation = operation or wsfunction

    @property
    def code(self) -> str:
        """``unknown_outcome``."""
        return "unknown_outcome"


# --- Moodle --------------------------------------------------------------------------------


class MoodleError(MentorsyncError):
    """Moodle answered with an exception body: HTTP 200 and ``{"exception","errorcode","message"}``.

    ``errorcode`` is Moodle's machine-readable code; the message is not logged (Moodle's messages
    can quote usernames and emails).
    """

    def __init__(
        self,
        wsfunction: str,
        errorcode: str,
        exception: str = "",
        upstream_message: str = "",
        debuginfo: str = "",
        *,
        hint: str = "",
    ) -> None:
        self.wsfunction = wsfunction
        self.errorcode = errorcode
        self.exception = exception
        self.upstream_message = upstream_message
        self.debuginfo = debuginfo
        # What the admin should do; mentorsync's own words, so it may go in str() and logs.
        self.hint = hint
        super().__init__(f"Moodle {wsfunction}: {errorcode}")

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base

    @property
    def code(self) -> str:
        """``moodle:<errorcode>``."""
        return f"moodle:{self.errorcode}"


class MoodleTransientError(MoodleError):
    """Moodle could not be reached or answered like a proxy in trouble.

    Connection refused, connect timeout, HTTP 5xx or 429, or a body that is not JSON (an HTML
    error page from a load balancer). Retried with backoff.
    """

    action = Action.RETRY


class MoodleConfigurationError(MoodleError):
    """The site or the token is set up wrong; no retry can help.

    Moodle: ``invalidtoken`` "Invalid token - token not found"; ``accessexception`` "Access control
    exception" (the function is not in the token's external service); ``invalidrecord`` for an
    unknown function; ``wsusercannotassign`` "You don't have the permission to assign this role"
    (the role is not in the integration user's allowed assignments). ``hint`` says what to enable.
    """


class MoodleRecordError(MoodleError):
    """Moodle refused the data of this call.

    Moodle: ``invalidparameter`` "Invalid parameter value detected": with debugging off this is a
    duplicate username, a duplicate email, a missing key and a malformed value alike. In an
    all-or-nothing call (create users, enrol) one bad row fails the whole call, so the caller
    bisects to find it.
    """

    action = Action.FAIL_RECORD


class MoodleWriteRefusedError(MoodleRecordError):
    """A write failed twice with ``dmlwriteexception`` "Error writing to database".

    Once can be the race of concurrent first calls (the client resends once); twice is the data:
    a value longer than its column (a group name over 254 characters, an ``idnumber`` over 100).
    Nothing of the batch stayed (each function runs in one transaction), so callers bisect.
    """


class MoodleProtocolError(MoodleError):
    """Moodle answered something that is not its web-service protocol (XML, a 303 redirect page).

    Usually a wrong URL (the Host must be the site's wwwroot) or a missing
    ``moodlewsrestformat=json``. Stop: this is a configuration problem; ``hint`` says what to fix.
    """


class BatchTooLargeError(MentorsyncError):
    """One call would exceed PHP's ``max_input_vars``; sending it would lose fields silently."""

    @property
    def code(self) -> str:
        """``batch_too_large``."""
        return "batch_too_large"


# --- Salesforce ----------------------------------------------------------------------------


class SalesforceError(MentorsyncError):
    """Salesforce answered an error: HTTP 4xx/5xx with ``[{"message","errorCode","fields"}]``."""

    def __init__(
        self,
        error_code: str,
        status: int = 0,
        upstream_message: str = "",
        fields: list[str] | None = None,
        context: str = "",
    ) -> None:
        self.error_code = error_code
        self.status = status
        self.upstream_message = upstream_message
        self.fields = fields or []
        self.context = context
        # What the admin can do (mentorsync's own words; set from the error table).
        self.hint = ""
        where = f" {context}" if context else ""
        field_text = f" fields={','.join(self.fields)}" if self.fields else ""
        super().__init__(f"Salesforce{where}: {error_code} (HTTP {status}){field_text}")

    @property
    def code(self) -> str:
        """``salesforce:<errorCode>``."""
        return f"salesforce:{self.error_code}"


class SalesforceTransientError(SalesforceError):
    """A passing fault: ``UNABLE_TO_LOCK_ROW`` "unable to obtain exclusive access to this record",
    ``REQUEST_LIMIT_EXCEEDED`` for concurrent requests ("ConcurrentPerOrgLongTxn Limit exceeded"),
    HTTP 5xx, or the connection failed. Retried with backoff and jitter.
    """

    action = Action.RETRY


class SalesforceAuthError(SalesforceError):
    """Login failed or the session could not be renewed.

    ``INVALID_SESSION_ID`` "Session expired or invalid" after one re-login, ``invalid_grant``
    "authentication failure" from the token endpoint, ``INVALID_LOGIN``. Stop: credentials.
    """


class SalesforceBudgetError(SalesforceError):
    """The org's daily API request budget is spent or above the configured share.

    Salesforce: ``REQUEST_LIMIT_EXCEEDED`` "TotalRequests Limit exceeded." Stop cleanly; the next
    scheduled run continues from the saved cursor.
    """


class SalesforceSchemaError(SalesforceError):
    """The query or the field map names something the org does not have.

    ``INVALID_FIELD`` "No such column 'X' on entity 'Contact'", ``INVALID_TYPE`` "sObject type 'X'
    is not supported", ``MALFORMED_QUERY``. A renamed field lands here: stop and fix the field map.
    """


class SalesforceRecordError(SalesforceError):
    """Salesforce refused one record's data (``REQUIRED_FIELD_MISSING``, ``DUPLICATE_VALUE``,
    ``FIELD_CUSTOM_VALIDATION_EXCEPTION``, ``STRING_TOO_LONG``...). Fail that record only.
    """

    action = Action.FAIL_RECORD
