"""What the Moodle REST server does with a request before and after a function runs.

PHP form parsing (``a[b][0]=v`` into nested arrays, ``max_input_vars`` truncation), Moodle's
external-API parameter validation (``external_value`` / ``external_single_structure`` /
``external_multiple_structure``, with PHP's ``clean_param`` rules), the exception body, and the
XML answer used when ``moodlewsrestformat`` is missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

# Exception classes as Moodle 4.5 names them in the "exception" key.
INVALID_PARAMETER = "core\\exception\\invalid_parameter_exception"
MOODLE_EXCEPTION = "core\\exception\\moodle_exception"
CODING_EXCEPTION = "core\\exception\\coding_exception"
CAPABILITY_EXCEPTION = "core\\exception\\required_capability_exception"
REQUIRE_LOGIN_EXCEPTION = "core\\exception\\require_login_exception"
MISSING_RECORD = "dml_missing_record_exception"
WRITE_EXCEPTION = "dml_write_exception"
ACCESS_EXCEPTION = "webservice_access_exception"


class MoodleError(Exception):
    """A Moodle exception as the REST server reports it (HTTP 200, exception/errorcode/message)."""

    def __init__(self, exception: str, errorcode: str, message: str, debuginfo: str = "") -> None:
        super().__init__(f"{errorcode}: {debuginfo or message}")
        self.exception = exception
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo

    def body(self, debugging: bool) -> dict[str, Any]:
        """The JSON body; ``debuginfo`` only with debugging on, like Moodle."""
        body: dict[str, Any] = {
            "exception": self.exception,
            "errorcode": self.errorcode,
            "message": self.message,
        }
        if debugging and self.debuginfo:
            body["debuginfo"] = self.debuginfo
        return body


def invalid_parameter(debuginfo: str) -> MoodleError:
    """Moodle's ``invalid_parameter_exception``: the same message whatever the cause."""
    return MoodleError(
        INVALID_PARAMETER, "invalidparameter", "Invalid parameter value detected", debuginfo
    )


def query_debuginfo(table: str, column: str, value: object) -> str:
    """The debuginfo Moodle shows for a failed MUST_EXIST read (text only, never executed)."""
    shown = f"'{value}'" if isinstance(value, str) else str(value)
    return f"SELECT * FROM {{{table}}} WHERE {column} = ?\n[array (\n  0 => {shown},\n)]"  # noqa: S608


def missing_record(table: str, value: object = None, column: str = "id") -> MoodleError:
    """Moodle's ``dml_missing_record_exception`` for ``table`` (a MUST_EXIST lookup failed)."""
    return MoodleError(
        MISSING_RECORD,
        "invalidrecord",
        f"Can't find data record in database table {table}.",
        query_debuginfo(table, column, value),
    )


def moodle_exception(errorcode: str, message: str, debuginfo: str = "") -> MoodleError:
    """A plain ``moodle_exception``."""
    return MoodleError(MOODLE_EXCEPTION, errorcode, message, debuginfo)


def coding_error(debuginfo: str) -> MoodleError:
    """Moodle's ``coding_exception`` (what core raises for e.g. a role for a missing user)."""
    return MoodleError(
        CODING_EXCEPTION,
        "codingerror",
        f"Coding error detected, it must be fixed by a programmer: {debuginfo}",
        debuginfo,
    )


# --------------------------------------------------------------------------- form parsing

_KEY_RE = re.compile(r"\[([^\]]*)\]")


def truncate_fields(
    pairs: list[tuple[str, str]], max_input_vars: int, *, body: bool
) -> list[tuple[str, str]]:
    """Keep the fields PHP keeps and drop the rest silently, as PHP does.

    PHP counts the query string and the body apart, and not alike: the query string keeps
    ``max_input_vars`` fields, a urlencoded body one more (``add_post_vars`` in PHP's
    ``main/php_variables.c`` stores a field before it checks ``++cnt > max_input_vars``; PHP
    8.2 measured at 3 and, on the real-Moodle tier, at 1000 and 5000).
    """
    return pairs[: max_input_vars + 1 if body else max_input_vars]


def php_parse(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Build PHP's ``$_POST``-like nested arrays from ordered form pairs.

    ``users[0][customfields][1][type]=x`` becomes nested dicts (PHP arrays keep insertion
    order, a repeated key overwrites, ``[]`` appends with the next integer key).
    """
    root: dict[str, Any] = {}
    for name, value in pairs:
        bracket = name.find("[")
        if bracket <= 0:
            root[name] = value
            continue
        base = name[:bracket]
        rest = name[bracket:]
        keys = _KEY_RE.findall(rest)
        # PHP ignores anything after a malformed bracket run; keep what parsed.
        node = root
        path = [base, *keys]
        for depth, key in enumerate(path):
            last = depth == len(path) - 1
            if key == "":
                ints = [int(k) for k in node if _is_int_key(k)]
                key = str(max(ints) + 1) if ints else "0"
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
    return root


def _is_int_key(key: str) -> bool:
    return key.isdigit() or (key.startswith("-") and key[1:].isdigit())


# --------------------------------------------------------------------------- clean_param

# PARAM_* types used by the functions the sandbox implements.
INT = "int"
BOOL = "bool"
ALPHA = "alpha"
ALPHANUMEXT = "alphanumext"
RAW = "raw"
RAW_TRIMMED = "raw_trimmed"
TEXT = "text"
NOTAGS = "notags"
USERNAME = "username"
AUTH = "auth"
LANG = "lang"
TIMEZONE = "timezone"
FLOAT = "float"

_TAG_RE = re.compile(r"<[^>]*>")
_INT_RE = re.compile(r"^-?(0|[1-9][0-9]*)$")
_FLOAT_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_TIMEZONE_RE = re.compile(r"^(99|[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*)$")

AUTH_PLUGINS = frozenset(
    {
        "manual",
        "nologin",
        "email",
        "oauth2",
        "saml2",
        "ldap",
        "cas",
        "db",
        "lti",
        "none",
        "shibboleth",
    }
)
LANGS = frozenset({"en"})


def clean_param(value: str, ptype: str) -> str:
    """PHP's ``clean_param`` for the types in use, as a string."""
    if ptype == INT:
        return value if _INT_RE.match(value) else "\0"
    if ptype == FLOAT:
        return value if _FLOAT_RE.match(value) else "\0"
    if ptype == ALPHA:
        return re.sub(r"[^a-zA-Z]", "", value)
    if ptype == ALPHANUMEXT:
        return re.sub(r"[^a-zA-Z0-9_\-]", "", value)
    if ptype in (RAW,):
        return value
    if ptype == RAW_TRIMMED:
        return value.strip()
    if ptype in (TEXT, NOTAGS):
        return _TAG_RE.sub("", value)
    if ptype == USERNAME:
        return re.sub(r"[^-.@_a-z0-9]", "", value.strip().lower())
    if ptype == AUTH:
        return value if value in AUTH_PLUGINS else ""
    if ptype == LANG:
        return value if value in LANGS else ""
    if ptype == TIMEZONE:
        return value if _TIMEZONE_RE.match(value) else ""
    raise ValueError(f"unknown PARAM type {ptype!r}")


# --------------------------------------------------------------------------- descriptions

REQUIRED = "required"
OPTIONAL = "optional"
DEFAULT = "default"


@dataclass(frozen=True)
class Value:
    """``external_value``: one scalar of a PARAM type."""

    ptype: str
    presence: str = REQUIRED
    default: Any = None
    allownull: bool = False


@dataclass(frozen=True)
class Single:
    """``external_single_structure``: a PHP array with named keys."""

    keys: Mapping[str, Value | Single | Multiple]
    presence: str = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Multiple:
    """``external_multiple_structure``: a list (PHP array keys are ignored, order kept)."""

    content: Value | Single | Multiple
    presence: str = REQUIRED
    default: Any = field(default_factory=list)


def opt(desc: Value) -> Value:
    """The same value, VALUE_OPTIONAL."""
    return Value(desc.ptype, OPTIONAL)


def validate_parameters(desc: Single, params: Any) -> dict[str, Any]:
    """``external_api::validate_parameters``: typed values, or ``invalidparameter``."""
    return _validate(desc, params, "")


def _validate(desc: Value | Single | Multiple, params: Any, where: str) -> Any:
    if isinstance(desc, Value):
        if isinstance(params, dict):
            raise invalid_parameter(f"{where}Scalar type expected, array or object received.")
        if params is None:
            if desc.allownull:
                return None
            raise invalid_parameter(f"{where}Null value not allowed")
        text = str(params)
        if desc.ptype == BOOL:
            # PARAM_BOOL takes exactly 0/1 ("true" fails clean_param's round trip).
            if text in ("0", "1"):
                return text == "1"
            raise invalid_parameter(
                f'{where}Invalid external api parameter: the value is "{text}", the server was '
                f'expecting "bool" type'
            )
        if clean_param(text, desc.ptype) != text:
            raise invalid_parameter(
                f'{where}Invalid external api parameter: the value is "{text}", the server was '
                f'expecting "{desc.ptype}" type'
            )
        if desc.ptype == INT:
            return int(text)
        if desc.ptype == FLOAT:
            return float(text)
        return text
    if isinstance(desc, Single):
        if not isinstance(params, dict):
            raise invalid_parameter(f"{where}Only arrays accepted. The bad value is: '{params}'")
        remaining = dict(params)
        result: dict[str, Any] = {}
        for key, sub in desc.keys.items():
            if key not in remaining:
                if sub.presence == REQUIRED:
                    raise invalid_parameter(f"Missing required key in single structure: {key}")
                if sub.presence == DEFAULT:
                    result[key] = sub.default
                continue
            result[key] = _validate(sub, remaining.pop(key), f"{key} => ")
        if remaining:
            raise invalid_parameter(
                f"Unexpected keys ({', '.join(remaining)}) detected in parameter array."
            )
        return result
    if not isinstance(params, dict):
        raise invalid_parameter(f"{where}Only arrays accepted. The bad value is: '{params}'")
    return [_validate(desc.content, item, where) for item in params.values()]


# --------------------------------------------------------------------------- XML answer


def to_xml(value: Any) -> str:
    """The REST server's XML document for a return value (``moodlewsrestformat`` missing)."""
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n{_xml_value(value)}</RESPONSE>\n'


def error_xml(error: MoodleError, debugging: bool) -> str:
    """The XML document for an exception."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8" ?>\n',
        f"<EXCEPTION class={quoteattr(error.exception)}>\n",
        f"<ERRORCODE>{escape(error.errorcode)}</ERRORCODE>\n",
        f"<MESSAGE>{escape(error.message)}</MESSAGE>\n",
    ]
    if debugging and error.debuginfo:
        parts.append(f"<DEBUGINFO>{escape(error.debuginfo)}</DEBUGINFO>\n")
    parts.append("</EXCEPTION>\n")
    return "".join(parts)


def _xml_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        keys = "".join(f"<KEY name={quoteattr(k)}>{_xml_item(v)}</KEY>\n" for k, v in value.items())
        return f"<SINGLE>\n{keys}</SINGLE>\n"
    if isinstance(value, list):
        return "<MULTIPLE>\n" + "".join(_xml_value(v) for v in value) + "</MULTIPLE>\n"
    return f"<VALUE>{escape(_scalar(value))}</VALUE>\n"


def _xml_item(value: Any) -> str:
    if value is None:
        return '<VALUE null="null"/>\n'
    return _xml_value(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
