"""Moodle's error codes as one table: code -> error class (hence action) and a hint.

The class decides what mentorsync does (its ``action``): a configuration problem stops the run
(:class:`MoodleConfigurationError`, with a hint saying what to enable, in mentorsync's own
words), a passing fault is retried (:class:`MoodleTransientError`), anything else is that
record's problem (:class:`MoodleRecordError`: the caller bisects an all-or-nothing batch).
Moodle's own messages are never used: they can quote usernames and emails.

Two codes depend on more than the code: ``invalidrecord`` is "no such function" when its message
names ``external_functions`` (61_) and a missing record otherwise (18_); ``dmlwriteexception`` on
a read is the race of concurrent calls inserting ``last_time_enrolments_synced`` (retried),
on a write a value the database refuses or the same race (the client resends once, then it is
the record's fault).
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.errors import (
    MoodleConfigurationError,
    MoodleError,
    MoodleRecordError,
    MoodleTransientError,
)


@dataclass(frozen=True)
class Rule:
    """What one error code means; ``hint`` may use ``{wsfunction}`` and ``{roles}``."""

    error: type[MoodleError]
    hint: str = ""


_SERVICES = "Site administration > Server > Web services"
_CONFIG_HINTS: dict[str, str] = {
    "invalidtoken": f"the token is unknown: create one for the integration user ({_SERVICES} > "
    "Manage tokens) and set moodle.token",
    "invalidtimedtoken": f"the token has expired: create a new one ({_SERVICES} > Manage tokens)",
    "invalidiptoken": "the token is IP-restricted: allow this host's address on the token",
    "accessexception": "add {wsfunction} to the integration user's external service ("
    f"{_SERVICES} > External services > Functions) and check the service's user, IP and "
    "time restrictions",
    "servicenotavailable": f"enable the integration user's external service ({_SERVICES} > "
    "External services)",
    "webservicesnotenabled": "enable web services (Site administration > General > Advanced "
    "features) and the REST protocol (Web services > Manage protocols)",
    "wsusercannotassign": "allow the integration role to assign role {roles} (Site "
    "administration > Users > Permissions > Define roles > Allow role assignments)",
    "nosuchfunction": "{wsfunction} does not exist on this Moodle: check the Moodle version "
    "and that the plugin providing it is installed",
    "nopermissions": "give the integration user's role the capability {wsfunction} needs "
    "(turn on Moodle debugging to see which)",
    "requireloginerror": "the integration user cannot access the course or site: check its "
    "role and that it is not suspended",
}
# Moodle 4.x refuses a token whose user cannot log in with wsaccessuser* codes
# (wsaccessusersuspended, wsaccessuserdeleted, wsaccessusernologin...).
_USER_ACCESS_HINT = "the integration user cannot log in (suspended, deleted or not confirmed)"

DML_WRITE = "dmlwriteexception"

ERRORS: dict[str, Rule] = {
    **{code: Rule(MoodleConfigurationError, hint) for code, hint in _CONFIG_HINTS.items()},
    "sitemaintenance": Rule(MoodleTransientError),
}
USER_ACCESS = Rule(MoodleConfigurationError, _USER_ACCESS_HINT)
NO_SUCH_FUNCTION = ERRORS["nosuchfunction"]


def rule_for(code: str, message: str, write: bool) -> Rule:
    """The rule of a Moodle error answer (see the module docstring for the special codes)."""
    if code in ERRORS:
        return ERRORS[code]
    if code.startswith("wsaccessuser"):
        # Moodle 4.x: wsaccessusersuspended, wsaccessuserdeleted, wsaccessusernologin...
        return USER_ACCESS
    if code == "invalidrecord" and "external_functions" in message:
        return NO_SUCH_FUNCTION
    if code == DML_WRITE and not write:
        return Rule(MoodleTransientError)
    return Rule(MoodleRecordError)
