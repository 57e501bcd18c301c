"""``collection_delete``: ``DELETE /composite/sobjects?ids=...&allOrNone=false``, 200 a call."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from salesforce_helpers import DATA, make_client

COLLECTIONS = f"{DATA}/composite/sobjects"


def meeting_id(n: int) -> str:
    return f"a02{n:015d}"


def query_of(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


@responses.activate
def test_deletes_in_calls_of_200_with_results_per_record_in_order() -> None:
    ids = [meeting_id(n) for n in range(201)]

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        import json

        sent = parse_qs(urlsplit(request.url).query)["ids"][0].split(",")  # type: ignore[attr-defined]
        body = [
            {"id": i, "success": True, "errors": []}
            if i != meeting_id(3)
            else {
                "id": None,
                "success": False,
                "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted"}],
            }
            for i in sent
        ]
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.DELETE, COLLECTIONS, callback=answer)
    client, _ = make_client()
    results = client.collection_delete(ids)

    assert len(responses.calls) == 2
    first, second = (query_of(c) for c in responses.calls)
    assert first["ids"][0].split(",") == ids[:200]
    assert first["allOrNone"] == ["false"]
    assert second["ids"] == [ids[200]]
    assert all(c.request.method == "DELETE" for c in responses.calls)
    assert [r.success for r in results] == [n != 3 for n in range(201)]
    assert results[3].error_code == "ENTITY_IS_DELETED"
    assert client.calls == {"collections.delete": 2}


def test_a_malformed_id_is_refused_before_any_call() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError, match="collection_delete id #1"):
        client.collection_delete([meeting_id(1), "not an id"])


def test_nothing_to_delete_makes_no_call() -> None:
    client, _ = make_client()
    assert client.collection_delete([]) == []
    assert client.calls == {}
