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

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import (
    MoodleConfigurationError,
    MoodleError,
    MoodleRecordError,
    MoodleTransientError,
)

log = logging.getLogger("connector.clients.moodle.client")

# The form fields of a call, as sent.
Body = list[tuple[str, str]]
# A real Moodle error code; the weak-password case puts the policy's HTML there instead (05_).
_CODE_SHAPE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


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


def error_from_answer(
    wsfunction: str, data: Mapping[str, Any], body: Body, write: bool = False
) -> MoodleError:
    """Turn Moodle's ``{"exception","errorcode","message"}`` answer into a typed error, by the
    table; ``body`` (the form fields sent) only names the roles in a hint."""
    raw_code = str(data.get("errorcode") or "")
    message = str(data.get("message") or "")
    upstream = (str(data.get("exception") or ""), message, str(data.get("debuginfo") or ""))
    if _CODE_SHAPE.match(raw_code):
        code = raw_code
    elif wsfunction in ("core_user_create_users", "core_user_update_users"):
        code = "passwordpolicy"  # Moodle throws the policy's HTML as the error code (05_)
    else:
        code = "unrecognisederror"
    rule = rule_for(code, message, write)
    error: MoodleError
    if issubclass(rule.error, MoodleConfigurationError):
        error = configuration_error(wsfunction, code, body, rule.hint, upstream)
    else:
        error = rule.error(wsfunction, code, *upstream)
    if isinstance(error, MoodleTransientError):
        # Retried: the retry's own line says it once (attempt n, wait), or the giving up.
        log.debug("moodle %s: %s (%s)", wsfunction, code, type(error).__name__)
    else:
        log.warning("moodle %s: %s (%s)", wsfunction, code, type(error).__name__)
    return error


def configuration_error(
    wsfunction: str,
    code: str,
    body: Body,
    template: str,
    upstream: tuple[str, str, str] = ("", "", ""),
) -> MoodleConfigurationError:
    """A configuration error with its hint filled in (the function, the roles asked for)."""
    roles = sorted({v for k, v in body if k == "roleid" or k.endswith("[roleid]")}, key=_numeric)
    hint = template.format(wsfunction=wsfunction, roles=", ".join(roles) or "?")
    return MoodleConfigurationError(wsfunction, code, *upstream, hint=hint)


def _numeric(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (0, value)
