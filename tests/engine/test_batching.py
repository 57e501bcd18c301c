"""BatchSender: full batches, bisection of all-or-nothing refusals, re-read after partial ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from connector.engine.batching import BatchSender, Sent
from connector.errors import MoodleRecordError, UnknownOutcomeError


class Limits:
    """Batches of at most ``size`` items (field counting is the client's; tested there)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def split(
        self, list_key: str, items: Sequence[Mapping[str, Any]]
    ) -> list[list[Mapping[str, Any]]]:
        return [list(items[i : i + self.size]) for i in range(0, len(items), self.size)]


def test_all_or_nothing_refusal_is_bisected_to_the_bad_row() -> None:
    calls: list[list[int]] = []
    applied: list[int] = []

    def send(items: list[Mapping[str, Any]]) -> None:
        users = [int(i["userid"]) for i in items]
        calls.append(users)
        if 5 in users:
            raise MoodleRecordError("enrol_manual_enrol_users", "invalidparameter")
        applied.extend(users)

    done: list[Sent[int]] = []
    sender: BatchSender[int] = BatchSender(
        Limits(8), "enrolments", send, done.extend, batch_items=8
    )
    for n in range(8):
        sender.add(n, {"userid": n})
    sender.flush()

    assert [(s.key, s.error) for s in done if not s.ok] == [(5, "moodle:invalidparameter")]
    assert sorted(applied) == [0, 1, 2, 3, 4, 6, 7]
    # 1 whole + halves: [0-3] ok, [4-7] refused -> [4,5] refused -> [4] ok, [5] refused; [6,7] ok
    assert calls == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [6, 7]]


def test_a_partly_applied_refusal_is_re_read_and_only_the_rest_is_sent_again() -> None:
    groups: dict[str, int] = {}
    sent: list[list[str]] = []

    def send(items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        sent.append([str(i["idnumber"]) for i in items])
        out = []
        for item in items:  # core_group_create_groups: groups before the bad one stay
            if item["idnumber"] == "bad":
                raise MoodleRecordError("core_group_create_groups", "idnumbertaken")
            groups[str(item["idnumber"])] = len(groups) + 1
            out.append({"id": groups[str(item["idnumber"])], "idnumber": item["idnumber"]})
        return out

    def reread(keys: list[str]) -> dict[str, Any]:
        return {k: {"id": groups[k]} for k in keys if k in groups}

    done: list[Sent[str]] = []
    sender: BatchSender[str] = BatchSender(
        Limits(10), "groups", send, done.extend, all_or_nothing=False, reread=reread
    )
    for key in ("a", "b", "bad", "c"):
        sender.add(key, {"idnumber": key})
    sender.flush()

    assert {s.key: (s.error, s.answer) for s in done} == {
        "a": ("", {"id": 1}),
        "b": ("", {"id": 2}),
        "bad": ("moodle:idnumbertaken", None),
        "c": ("", {"id": 3, "idnumber": "c"}),
    }
    assert sent == [["a", "b", "bad", "c"], ["bad"], ["c"]]
    assert groups == {"a": 1, "b": 2, "c": 3}  # never a second group for one key


def test_an_unknown_outcome_is_resolved_by_re_reading_never_by_sending_twice() -> None:
    made: set[str] = set()
    attempts = {"n": 0}

    def send(items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        attempts["n"] += 1
        for item in items:
            made.add(str(item["idnumber"]))
        if attempts["n"] == 1:
            raise UnknownOutcomeError("lost", wsfunction="core_group_create_groups")
        return [{"id": 9} for _ in items]

    done: list[Sent[str]] = []
    sender: BatchSender[str] = BatchSender(
        Limits(10),
        "groups",
        send,
        done.extend,
        all_or_nothing=False,
        reread=lambda keys: {k: {"id": 1} for k in keys if k in made},
    )
    sender.add("x", {"idnumber": "x"})
    sender.flush()
    assert [(s.key, s.ok) for s in done] == [("x", True)]
    assert attempts["n"] == 1


def test_unknown_outcomes_twice_in_a_row_stop_the_run() -> None:
    def send(items: list[Mapping[str, Any]]) -> None:
        raise UnknownOutcomeError("lost", wsfunction="core_role_assign_roles")

    sender: BatchSender[int] = BatchSender(Limits(10), "assignments", send, lambda _: None)
    sender.add(1, {"userid": 1})
    with pytest.raises(UnknownOutcomeError):
        sender.flush()
    assert sender.calls == 2
