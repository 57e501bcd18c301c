"""The sandbox's SOQL: a tokenizer, a recursive-descent parser and an evaluator over the store.

The supported subset is what mentorsync issues, and it is checked strictly: anything outside it is
``MALFORMED_QUERY``, an unknown field ``INVALID_FIELD``, an unknown object ``INVALID_TYPE``, a
literal of the wrong type for its field ``INVALID_QUERY_FILTER_OPERATOR``. A query is never
answered by guessing.

Grammar::

    query     := SELECT select FROM object [WHERE expr] [ORDER BY order (, order)*] [LIMIT n]
    select    := COUNT() | path (, path)*
    expr      := unary (AND unary)* | unary (OR unary)*     -- mixing needs parentheses, as in SOQL
    unary     := NOT unary | ( expr ) | path op literal | path [NOT] IN (literal, ...)
                 | path LIKE 'pattern'
    op        := = | != | <> | < | <= | > | >=
    literal   := 'string' | number | TRUE | FALSE | NULL | 2026-03-01 | 2026-03-01T12:00:00Z
    order     := path [ASC | DESC] [NULLS FIRST | NULLS LAST]
    path      := Field | Relationship__r.Field (any depth)

Values compare as Salesforce does: text case-insensitively, Ids by their 18-character form,
datetimes in UTC, and ``!=`` / ``NOT IN`` include nulls while ``<`` and friends never match null.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce.ids import normalize_id
from sandbox.salesforce.schema import NUMBER_TYPES, TEXT_TYPES, FieldDef, ObjectDef, object_def
from sandbox.salesforce.values import format_datetime, parse_datetime

Record = dict[str, Any]
Lookup = Callable[[str, str], Record | None]
Predicate = Callable[[Record, Lookup], bool]

_RESERVED = frozenset(
    {
        "select",
        "from",
        "where",
        "and",
        "or",
        "not",
        "in",
        "like",
        "order",
        "by",
        "asc",
        "desc",
        "nulls",
        "first",
        "last",
        "limit",
        "null",
        "true",
        "false",
        "group",
        "having",
        "offset",
        "with",
        "for",
        "using",
        "scope",
        "typeof",
        "includes",
        "excludes",
        "update",
        "view",
        "reference",
        "all",
        "rows",
        "tracking",
        "viewstat",
        "format",
    }
)
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_STRING_ESCAPES = {
    "'": "'",
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
}


class SoqlError(Exception):
    """A query the sandbox refuses, with Salesforce's error code and message."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class Token:
    """One lexical token; ``kind`` is the regex group name, ``pos`` the offset in the query."""

    kind: str
    text: str
    pos: int

    def word(self) -> str:
        """The token lower-cased if it is an identifier, else ""."""
        return self.text.lower() if self.kind == "ident" else ""


@dataclass(frozen=True)
class FieldPath:
    """A field reference resolved against the schema: lookups to follow, then the field."""

    text: str
    steps: tuple[FieldDef, ...]
    field: FieldDef
    # The output keys: relationship names, then the field name (canonical spelling).
    names: tuple[str, ...]
    # The object of the final field (used for relationship "attributes").
    targets: tuple[str, ...]

    def value(self, record: Record, lookup: Lookup) -> Any:
        """The field's value on ``record``, following lookups (null anywhere gives null)."""
        if not self.steps:
            return record.get(self.field.name)
        current: Record | None = record
        for step, target in zip(self.steps, self.targets, strict=True):
            ref = current.get(step.name) if current is not None else None
            if ref is None:
                return None
            current = lookup(target, ref)
        return current.get(self.field.name) if current is not None else None


@dataclass
class Query:
    """A parsed, schema-checked query, ready to run."""

    text: str
    sobject: ObjectDef
    fields: list[FieldPath]
    count_only: bool = False
    where: Predicate | None = None
    order: list[tuple[FieldPath, bool, bool]] = field(default_factory=list)  # path, desc, nulls1st
    limit: int | None = None

    def run(self, records: Iterable[Record], lookup: Lookup, include_deleted: bool) -> list[str]:
        """The Ids of the matching records, sorted and limited: the materialized result."""
        where = self.where
        matched = [
            r
            for r in records
            if (include_deleted or not r["IsDeleted"]) and (where is None or where(r, lookup))
        ]
        # Stable sorts from the last key to the first give a multi-key sort with mixed directions.
        for path, desc, nulls_first in reversed(self.order):
            matched.sort(key=_sort_key(path, lookup, desc, nulls_first), reverse=desc)
        if self.limit is not None:
            matched = matched[: self.limit]
        return [r["Id"] for r in matched]

    def render(self, record: Record, lookup: Lookup, version: str) -> Record:
        """One result record as the REST API returns it, fields in select-list order."""
        out: Record = {"attributes": _attributes(self.sobject.name, record["Id"], version)}
        for path in self.fields:
            if not path.steps:
                out[path.field.name] = record.get(path.field.name)
                continue
            _render_path(out, record, path, lookup, version)
        return out


def _render_path(
    out: Record, record: Record, path: FieldPath, lookup: Lookup, version: str
) -> None:
    """Put a relationship field into nested dicts (``Mentor__r: {attributes, Email}``)."""
    container, current = out, record
    for step, target, key in zip(path.steps, path.targets, path.names[:-1], strict=True):
        ref = current.get(step.name) if current is not None else None
        parent = lookup(target, ref) if ref is not None else None
        if parent is None:
            container.setdefault(key, None)
            return
        nested = container.get(key)
        if nested is None:
            nested = {"attributes": _attributes(target, parent["Id"], version)}
            container[key] = nested
        container, current = nested, parent
    container[path.field.name] = current.get(path.field.name)


def _attributes(sobject: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}


def _sort_key(path: FieldPath, lookup: Lookup, desc: bool, nulls_first: bool) -> Callable:
    text = path.field.type in TEXT_TYPES
    # With reverse=True the null rank flips too; pick the rank so nulls land where asked.
    null_rank = 0 if nulls_first != desc else 1

    def key(record: Record) -> tuple:
        value = path.value(record, lookup)
        if value is None:
            return (null_rank, "")
        return (1 - null_rank, value.casefold() if text else value)

    return key


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens; a character outside the grammar is ``MALFORMED_QUERY``."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            bad = text[pos]
            if bad == "'":
                raise _malformed(text, pos, "unterminated string literal")
            raise _malformed(text, pos, f"unexpected token: '{bad}'")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


def _malformed(text: str, pos: int, problem: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", _located(text, pos, problem))


def _located(text: str, pos: int, problem: str) -> str:
    """Salesforce's error layout: the query, a caret, then Row/Column and the problem."""
    row = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    line = text.splitlines()[row - 1] if text else ""
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{problem}"


def parse(text: str) -> Query:
    """Parse and check ``text`` against the schema; raise :class:`SoqlError` if it is refused."""
    return _Parser(text).query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.sobject: ObjectDef | None = None

    # -- token helpers -----------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.tok
        if token.kind == "eof":
            return _malformed(self.text, token.pos, "unexpected end of query")
        return _malformed(self.text, token.pos, f"unexpected token: '{token.text}'")

    def keyword(self, word: str) -> bool:
        if self.tok.word() == word:
            self.advance()
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise self.unexpected()

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise self.unexpected()
        return self.advance()

    # -- grammar -----------------------------------------------------------------------------

    def query(self) -> Query:
        self.expect_keyword("select")
        select_start = self.i
        # The select list names fields of the FROM object, so skip ahead to read it first.
        depth = 0
        while not (self.tok.word() == "from" and depth == 0):
            if self.tok.kind == "eof":
                raise self.unexpected()
            depth += {"lparen": 1, "rparen": -1}.get(self.tok.kind, 0)
            self.advance()
        self.advance()
        object_token = self.expect("ident")
        sobject = object_def(object_token.text)
        if sobject is None or "." in object_token.text:
            raise SoqlError(
                "INVALID_TYPE",
                _located(
                    self.text,
                    object_token.pos,
                    f"sObject type '{object_token.text}' is not supported. If you are attempting "
                    "to use a custom object, be sure to append the '__c' after the entity name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                ),
            )
        self.sobject = sobject
        after_from = self.i
        self.i = select_start
        query = Query(self.text, sobject, [])
        self.select_list(query)
        if self.tok.word() != "from":
            raise self.unexpected()
        self.i = after_from
        if self.keyword("where"):
            query.where = self.expr()
        if self.keyword("order"):
            if query.count_only:
                raise self.unexpected(self.tokens[self.i - 1])
            self.expect_keyword("by")
            query.order.append(self.order_item())
            while self.tok.kind == "comma":
                self.advance()
                query.order.append(self.order_item())
        if self.keyword("limit"):
            token = self.expect("number")
            if not token.text.isdigit():
                raise self.unexpected(token)
            query.limit = int(token.text)
        if self.tok.kind != "eof":
            raise self.unexpected()
        return query

    def select_list(self, query: Query) -> None:
        if self.tok.word() == "count" and self.tokens[self.i + 1].kind == "lparen":
            self.advance()
            self.advance()
            self.expect("rparen")
            query.count_only = True
            return
        seen: set[tuple[str, ...]] = set()
        while True:
            token = self.tok
            if token.kind != "ident" or token.word() in _RESERVED:
                raise self.unexpected()
            if self.tokens[self.i + 1].kind == "lparen":
                # Aggregates, FIELDS(), TYPEOF... are outside the subset.
                raise self.unexpected(self.tokens[self.i + 1])
            self.advance()
            path = self.resolve(token)
            key = tuple(n.lower() for n in path.names)
            if key in seen:
                raise _malformed(self.text, token.pos, f"duplicate field selected: {token.text}")
            seen.add(key)
            query.fields.append(path)
            if self.tok.kind != "comma":
                return
            self.advance()

    def order_item(self) -> tuple[FieldPath, bool, bool]:
        token = self.tok
        if token.kind != "ident" or token.word() in _RESERVED:
            raise self.unexpected()
        self.advance()
        path = self.resolve(token)
        desc = False
        if self.keyword("desc"):
            desc = True
        else:
            self.keyword("asc")
        nulls_first = not desc
        if self.keyword("nulls"):
            if self.keyword("first"):
                nulls_first = True
            elif self.keyword("last"):
                nulls_first = False
            else:
                raise self.unexpected()
        return path, desc, nulls_first

    def expr(self) -> Predicate:
        first = self.unary()
        word = self.tok.word()
        if word not in ("and", "or"):
            return first
        parts = [first]
        while self.keyword(word):
            parts.append(self.unary())
        other = "or" if word == "and" else "and"
        if self.tok.word() == other:
            # SOQL refuses `a AND b OR c`; parentheses must say what is meant.
            raise self.unexpected()
        if word == "and":
            return lambda r, lk: all(p(r, lk) for p in parts)
        return lambda r, lk: any(p(r, lk) for p in parts)

    def unary(self) -> Predicate:
        if self.keyword("not"):
            inner = self.unary()
            return lambda r, lk: not inner(r, lk)
        if self.tok.kind == "lparen":
            self.advance()
            inner = self.expr()
            self.expect("rparen")
            return inner
        return self.condition()

    def condition(self) -> Predicate:
        token = self.tok
        if token.kind != "ident" or token.word() in _RESERVED:
            raise self.unexpected()
        self.advance()
        path = self.resolve(token)
        if self.tok.kind == "op":
            op_token = self.advance()
            value = self.literal(path)
            return _comparison(self.text, op_token, path, value)
        negate = self.keyword("not")
        if self.keyword("in"):
            return self.in_list(path, negate)
        if negate:
            raise self.unexpected()
        if self.tok.word() == "like":
            like_token = self.advance()
            return self.like(path, like_token)
        raise self.unexpected()

    def in_list(self, path: FieldPath, negate: bool) -> Predicate:
        self.expect("lparen")
        if self.tok.word() == "select":
            raise _malformed(self.text, self.tok.pos, "unexpected token: 'SELECT' (semi-joins)")
        values = [self.literal(path)]
        while self.tok.kind == "comma":
            self.advance()
            values.append(self.literal(path))
        self.expect("rparen")
        wanted = frozenset(_fold(path.field, v) for v in values)
        if negate:
            return lambda r, lk: _fold(path.field, path.value(r, lk)) not in wanted
        return lambda r, lk: _fold(path.field, path.value(r, lk)) in wanted

    def like(self, path: FieldPath, like_token: Token) -> Predicate:
        if path.field.type not in TEXT_TYPES:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _located(self.text, like_token.pos, f"invalid operator on {path.field.type} field"),
            )
        token = self.expect("string")
        pattern = _like_regex(self.text, token)
        return lambda r, lk: (v := path.value(r, lk)) is not None and bool(pattern.match(v))

    def literal(self, path: FieldPath) -> Any:
        """Read one literal and convert it to the stored form of ``path``'s field."""
        token = self.advance()
        f = path.field
        kind, word = token.kind, token.word()
        if word == "null":
            return None
        if kind == "eof":
            raise self.unexpected(token)
        if kind == "ident" and word not in ("true", "false"):
            raise _malformed(self.text, token.pos, f"unexpected token: '{token.text}'")
        if kind in ("lparen", "rparen", "comma", "op"):
            raise self.unexpected(token)

        def wrong(expected: str) -> SoqlError:
            return SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _located(
                    self.text,
                    token.pos,
                    f"value of filter criterion for field '{f.name}' must be of type {expected}",
                ),
            )

        if f.type in TEXT_TYPES:
            if kind != "string":
                raise wrong("string and should be enclosed in quotes")
            return _unquote(self.text, token)
        if f.type in ("id", "reference"):
            if kind != "string":
                raise wrong("id and should be enclosed in quotes")
            normalized = normalize_id(_unquote(self.text, token))
            if normalized is None:
                raise SoqlError(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    _located(self.text, token.pos, "invalid ID field"),
                )
            return normalized
        if f.type == "boolean":
            if word not in ("true", "false"):
                raise wrong("boolean and should not be enclosed in quotes")
            return word == "true"
        if f.type in NUMBER_TYPES:
            if kind != "number":
                raise wrong("double and should not be enclosed in quotes")
            return float(token.text)
        if f.type == "date":
            if kind != "date":
                raise wrong("date and should not be enclosed in quotes")
            return token.text
        if f.type == "datetime":
            if kind != "datetime":
                raise wrong("dateTime and should not be enclosed in quotes")
            try:
                return format_datetime(parse_datetime(token.text))
            except ValueError:
                raise _malformed(self.text, token.pos, "invalid datetime literal") from None
        raise wrong(f.type)

    def resolve(self, token: Token) -> FieldPath:
        """Resolve ``Field`` or ``Rel__r.Field`` against the FROM object; INVALID_FIELD if not."""
        assert self.sobject is not None
        parts = token.text.split(".")
        if len(parts) > 1 and parts[0].lower() == self.sobject.name.lower():
            parts = parts[1:]  # "Contact.Email" in a query on Contact
        current = self.sobject
        steps: list[FieldDef] = []
        names: list[str] = []
        targets: list[str] = []
        for part in parts[:-1]:
            lookup_field = current.relationship(part)
            target = object_def(lookup_field.reference_to) if lookup_field else None
            if lookup_field is None or target is None:
                raise SoqlError(
                    "INVALID_FIELD",
                    _located(
                        self.text,
                        token.pos,
                        f"Didn't understand relationship '{part}' in field path. If you are "
                        "attempting to use a custom relationship, be sure to append the '__r' "
                        "after the custom relationship name. Please reference your WSDL or the "
                        "describe call for the appropriate names.",
                    ),
                )
            steps.append(lookup_field)
            names.append(lookup_field.relationship_name)
            targets.append(target.name)
            current = target
        final = current.field(parts[-1])
        if final is None:
            raise SoqlError(
                "INVALID_FIELD",
                _located(
                    self.text,
                    token.pos,
                    f"No such column '{parts[-1]}' on entity '{current.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                ),
            )
        return FieldPath(token.text, tuple(steps), final, (*names, final.name), tuple(targets))


def _fold(f: FieldDef, value: Any) -> Any:
    """The comparable form of a value: text case-folded, the rest unchanged."""
    if value is not None and f.type in TEXT_TYPES:
        return value.casefold()
    return value


def _comparison(text: str, op_token: Token, path: FieldPath, value: Any) -> Predicate:
    op = "!=" if op_token.text == "<>" else op_token.text
    f = path.field
    if value is None or f.type == "boolean":
        if op not in ("=", "!="):
            target = "null" if value is None else "boolean field"
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _located(text, op_token.pos, f"invalid operator on {target}"),
            )
    wanted = _fold(f, value)
    get = path.value
    if op == "=":
        return lambda r, lk: _fold(f, get(r, lk)) == wanted
    if op == "!=":
        return lambda r, lk: _fold(f, get(r, lk)) != wanted
    compare = {
        "<": lambda a: a < wanted,
        "<=": lambda a: a <= wanted,
        ">": lambda a: a > wanted,
        ">=": lambda a: a >= wanted,
    }[op]
    return lambda r, lk: (v := _fold(f, get(r, lk))) is not None and compare(v)


def _scan_string(text: str, token: Token, like: bool) -> list[tuple[str, bool]]:
    """The characters of a string literal, each with whether it was escaped.

    ``\\%`` and ``\\_`` (a literal ``%`` or ``_``) are allowed only in LIKE patterns; any other
    unknown escape is ``MALFORMED_QUERY``.
    """
    body = token.text[1:-1]
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append((char, False))
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _STRING_ESCAPES:
            out.append((_STRING_ESCAPES[nxt], True))
        elif like and nxt in ("%", "_"):
            out.append((nxt, True))
        else:
            raise _malformed(text, token.pos + 1 + i, "Invalid string literal: illegal escape")
        i += 2
    return out


def _unquote(text: str, token: Token) -> str:
    """The value of a string literal."""
    return "".join(char for char, _ in _scan_string(text, token, like=False))


def _like_regex(text: str, token: Token) -> re.Pattern[str]:
    """A LIKE pattern as a regex: ``%`` any run, ``_`` one character, case-insensitive."""
    parts = []
    for char, escaped in _scan_string(text, token, like=True):
        if not escaped and char == "%":
            parts.append(".*")
        elif not escaped and char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts) + r"\Z", re.IGNORECASE | re.DOTALL)
