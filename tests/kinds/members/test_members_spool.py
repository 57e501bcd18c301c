"""The plan spool: private on disk, gone when the run ends (errors included), leftovers swept."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from members_fakes import FakeMoodle, FakeSalesforce, make_context

from connector.engine.kind import SyncRequest
from connector.engine.spool import PREFIX, sweep_leftovers
from connector.kinds.members.kind import MembersSync
from connector.kinds.members.plan import ADOPT, CONFLICT, CREATE, Action
from connector.kinds.members.spool import MemberPlanSpool as PlanSpool
from connector.state import bookkeeping

CID = "003TEST00000001AAA"
OTHER = "003TEST00000002AAA"


def spools(base: Path) -> list[Path]:
    return [p for p in base.iterdir() if p.name.startswith(PREFIX)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_spool_is_private_and_deleted_on_close(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a careless umask
    try:
        spool = PlanSpool(tmp_path)
    finally:
        os.umask(old)
    (directory,) = spools(tmp_path)
    assert mode(directory) == 0o700
    assert mode(directory / "plan.sqlite") == 0o600
    spool.add(Action(CREATE, CID, payload={"email": "ann@example.org"}))
    assert [a.contact_id for a in spool] == [CID]

    spool.close()
    spool.close()  # twice is fine

    assert spools(tmp_path) == []
    with pytest.raises(RuntimeError):
        spool.add(Action(CREATE, CID))


def test_spool_as_context_manager_is_deleted_on_an_exception(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), PlanSpool(tmp_path):
        assert len(spools(tmp_path)) == 1
        _ = 1 / 0
    assert spools(tmp_path) == []


def test_leftover_of_a_killed_run_is_swept_but_a_live_one_is_not(tmp_path: Path) -> None:
    dead = Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp_path))
    (dead / "owner.lock").touch()
    (dead / "plan.sqlite").write_text("names and emails")
    live = PlanSpool(tmp_path)  # sweeps as it starts
    try:
        assert not dead.exists()
        assert sweep_leftovers(tmp_path) == 0  # the live one's lock is held
        assert spools(tmp_path) == [live.directory]
        live.add(Action(CREATE, CID))
        assert len(live) == 1
    finally:
        live.close()


def test_adoption_by_an_email_another_contact_shares_becomes_a_conflict(tmp_path: Path) -> None:
    with PlanSpool(tmp_path) as spool:
        adopt = Action(ADOPT, CID, 12, {"idnumber": CID, "suspended": True}, writeback={})
        spool.add(adopt, adopted_email="Family@example.org")
        spool.note_emails([("family@example.org", CID), ("FAMILY@example.org", OTHER)])
        assert spool.suspensions == 1

        assert spool.refuse_shared_adoptions() == [CID]

        (action,) = list(spool)
        assert action.kind == CONFLICT
        assert action.code == "conflict:ambiguous_match"
        assert action.moodle_id is None
        assert action.payload == {}
        assert spool.counts[ADOPT] == 0 and spool.counts[CONFLICT] == 1
        assert spool.suspensions == 0


def test_adoption_by_an_email_only_one_contact_has_stands(tmp_path: Path) -> None:
    with PlanSpool(tmp_path) as spool:
        spool.add(Action(ADOPT, CID, 12, {"idnumber": CID}), adopted_email="ann@example.org")
        spool.note_emails([("ann@example.org", CID), ("bob@example.org", OTHER)])
        assert spool.refuse_shared_adoptions() == []
        assert [a.kind for a in spool] == [ADOPT]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeMoodle, FakeSalesforce]]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        moodle, sf = FakeMoodle(), FakeSalesforce()
        moodle.install(rsps)
        sf.install(rsps)
        yield moodle, sf


def test_a_run_that_fails_leaves_no_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: tuple[FakeMoodle, FakeSalesforce]
) -> None:
    _, sf = fakes
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    sf.add(1)
    seen: list[int] = []

    def crash(*args: Any, **kwargs: Any) -> None:
        (directory,) = spools(temp)  # the plan is on disk, privately, while the run is on
        seen.append(mode(directory))
        raise RuntimeError("power cut")

    monkeypatch.setattr(bookkeeping, "save_cursor", crash)
    ctx = make_context(tmp_path / "state", lookback_seconds=0)
    try:
        with pytest.raises(RuntimeError):
            MembersSync().run(ctx, SyncRequest(mode="incremental"))
    finally:
        ctx.close()

    assert seen == [0o700]
    assert spools(temp) == []
