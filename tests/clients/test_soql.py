"""SOQL building: values are always quoted and escaped, names and Ids are checked."""

from __future__ import annotations

import datetime as dt

import pytest

from connector.clients.salesforce import soql

UNESCAPE = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def read_literal(text: str) -> tuple[str, int]:
    """Read a SOQL string literal at the start of ``text`` like Salesforce's parser would:
    return its value and where it ends."""
    assert text[0] == "'"
    out, i = [], 1
    while text[i] != "'":
        if text[i] == "\\":
            out.append(UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), i + 1


@pytest.mark.parametrize(
    "value", ["x\\' OR Name != '", "O'Neil", "back\\slash\\", "\\'; DELETE", "multi\nline"]
)
def test_quoted_value_stays_one_literal(value: str) -> None:
    # The classic injection closes the literal and adds a condition; a trailing backslash
    # tries to escape the closing quote. Each must read back as exactly one literal.
    quoted = soql.quote(value)
    decoded, end = read_literal(quoted)
    assert decoded == value
    assert end == len(quoted)


def test_quote_escapes_quote_and_backslash() -> None:
    assert soql.quote("x\\' OR Name != '") == "'x\\\\\\' OR Name != \\''"


def test_quote_escapes_newlines_and_double_quotes() -> None:
    assert soql.quote('a\nb\r\t"c"') == "'a\\nb\\r\\t\\\"c\\\"'"


def test_quote_refuses_other_control_characters_and_non_strings() -> None:
    with pytest.raises(ValueError, match="U\\+0000"):
        soql.quote("a\x00b")
    with pytest.raises(TypeError):
        soql.quote(42)  # type: ignore[arg-type]


def test_in_list_quotes_every_value_and_refuses_empty() -> None:
    assert soql.in_list(["003A", "O'Neil"]) == "('003A','O\\'Neil')"
    with pytest.raises(ValueError, match="empty IN list"):
        soql.in_list([])


def test_datetime_literal_is_utc_seconds_and_needs_a_zone() -> None:
    local = dt.datetime(2026, 1, 31, 7, 0, 5, 900_000, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert soql.datetime_literal(local) == "2026-01-31T12:00:05Z"
    with pytest.raises(ValueError, match="naive"):
        soql.datetime_literal(dt.datetime(2026, 1, 31))


def test_parse_datetime_reads_the_api_format() -> None:
    parsed = soql.parse_datetime("2026-01-10T09:00:00.000+0000")
    assert parsed == dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        soql.parse_datetime("2026-01-10T09:00:00")


@pytest.mark.parametrize("value", ["003D000000QV9n2", "003D000000QV9n2IAD"])
def test_ids_of_15_and_18_characters_pass(value: str) -> None:
    assert soql.check_id(value) == value


@pytest.mark.parametrize(
    "value", ["003D000000QV9n", "003D000000QV9n2IA", "003D000000QV9n2'", None, ""]
)
def test_malformed_ids_are_refused_with_where(value: object) -> None:
    with pytest.raises(ValueError, match="row 3"):
        soql.check_id(value, "row 3")


def test_select_checks_names() -> None:
    assert soql.select("Contact", ["Id", "Account.Name"]) == "SELECT Id, Account.Name FROM Contact"
    with pytest.raises(ValueError, match="field name"):
        soql.select("Contact", ["Id FROM User --"])
    with pytest.raises(ValueError, match="object name"):
        soql.select("Contact WHERE", ["Id"])
