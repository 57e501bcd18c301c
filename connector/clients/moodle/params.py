"""Moodle's form encoding: PHP bracket names, and counting fields against ``max_input_vars``.

Moodle's REST server reads parameters the way PHP parses a form: ``users[0][customfields][1][type]``
becomes ``$_POST["users"][0]["customfields"][1]["type"]``. PHP counts every such field against
``max_input_vars`` and silently drops the ones past the limit, so a client must know the exact
number of fields a call will send before sending it. Encoding and counting share one walk of the
value, so the count can never disagree with what goes on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connector.errors import BatchTooLargeError

# Fields every call carries besides its parameters: wstoken, wsfunction, moodlewsrestformat.
PROTOCOL_FIELDS = 3


def encode(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Flatten ``params`` into ordered ``(name, value)`` form fields with PHP bracket names.

    Lists become ``key[0]``, ``key[1]``...; mappings become ``key[name]``; booleans ``1``/``0``
    (Moodle rejects ``true``); ``None`` values in a mapping are left out (an optional parameter
    not sent). Raises ``TypeError`` or ``ValueError`` naming the parameter path on bad input.
    """
    if not params:
        return []
    fields: list[tuple[str, str]] = []
    for key, value in params.items():
        fields.extend(_flatten(_check_key(key, ""), value))
    return fields


def count_fields(value: Any) -> int:
    """Number of form fields ``value`` turns into (a scalar is 1; ``None`` in a mapping is 0)."""
    return sum(1 for _ in _flatten("item", value))


def split_items(
    list_key: str,
    items: Sequence[Any],
    *,
    base_fields: int,
    field_limit: int,
    max_items: int,
) -> list[list[Any]]:
    """Split ``items`` into consecutive batches, each one call's worth.

    A batch holds at most ``max_items`` items, and ``base_fields`` (the call's other fields) plus
    the fields of its items stay ``<= field_limit``. Order is kept. An item that does not fit even
    alone raises :class:`BatchTooLargeError`.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    batches: list[list[Any]] = []
    current: list[Any] = []
    used = base_fields
    for index, item in enumerate(items):
        size = count_fields(item)
        if base_fields + size > field_limit:
            raise BatchTooLargeError(
                f"{list_key}[{index}] needs {size} form fields and the call {base_fields} more; "
                f"the limit is {field_limit} (moodle.max_input_vars - moodle.field_margin)"
            )
        if current and (used + size > field_limit or len(current) >= max_items):
            batches.append(current)
            current, used = [], base_fields
        current.append(item)
        used += size
    if current:
        batches.append(current)
    return batches


def _check_key(key: object, prefix: str) -> str:
    where = prefix or "params"
    if not isinstance(key, str) or not key or "[" in key or "]" in key:
        raise ValueError(f"{where}: parameter name {key!r} must be a non-empty string without []")
    return f"{prefix}[{key}]" if prefix else key


def _flatten(name: str, value: Any) -> Iterator[tuple[str, str]]:
    # bool before int: bool is an int subclass, and Moodle wants 1/0 (true is rejected, 69_).
    if isinstance(value, bool):
        yield name, "1" if value else "0"
    elif isinstance(value, str):
        yield name, value
    elif isinstance(value, int | float):
        yield name, str(value)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if inner is not None:
                yield from _flatten(_check_key(key, name), inner)
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            if inner is None:
                # Dropping it would shift what the caller means by position; say so instead.
                raise ValueError(f"{name}[{index}]: None is not allowed in a list")
            yield from _flatten(f"{name}[{index}]", inner)
    elif value is None:
        # Only reachable for a top-level or list value; mappings skip None above.
        return
    else:
        raise TypeError(f"{name}: cannot send a {type(value).__name__} to Moodle")
