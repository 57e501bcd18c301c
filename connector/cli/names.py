"""``--show-names``: people's names for record Ids, read from Salesforce when they are printed.

Names are never logged, never written to the state database or any file: they are read into
memory for one print and dropped. The state database keeps ids and error codes only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connector.clients.salesforce import soql
from connector.config import Settings

# Fields that make up a record's name, per object; others use the standard Name field.
NAME_FIELDS: dict[str, tuple[str, ...]] = {"Contact": ("FirstName", "LastName")}
# Ids per query: well under SOQL's 100,000-character statement limit.
IDS_PER_QUERY = 200


def source_object(kind: object, settings: Settings) -> str:
    """The Salesforce object whose Ids a kind's plan and failed records name."""
    objects_for = getattr(kind, "objects_for", None)
    objects = objects_for(settings) if callable(objects_for) else getattr(kind, "objects", ())
    return next((o for o in objects if not o.startswith("moodle")), "Contact")


def read_names(salesforce: Any, sobject: str, ids: Iterable[str]) -> dict[str, str]:
    """``{record Id: name}`` for the Salesforce ``ids`` (15- and 18-character forms both)."""
    wanted = [i for i in dict.fromkeys(ids) if soql.is_id(i)]
    fields = NAME_FIELDS.get(sobject, ("Name",))
    names: dict[str, str] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        query = (
            f"{soql.select(sobject, ('Id', *fields))} WHERE Id IN {soql.in_list(chunk)}"
        )
        for record in salesforce.query(query):
            name = " ".join(str(record.get(f) or "") for f in fields).strip()
            record_id = str(record.get("Id") or "")
            names[record_id] = name
            names[record_id[:15]] = name
    return names
