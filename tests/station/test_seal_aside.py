"""One case that cannot be sealed never blocks the cases after it: after a few failures it
is set aside (still pending, named by an open alarm) and retried later; a retry that
finds its package complete adopts it."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.station.conftest import collect_until
from tests.station.test_retention import NEW, Lane
from zhichao.station import seal_stage
from zhichao.station.alarms import StageHealth
from zhichao.station.ops import StationMetrics
from zhichao.station.seal_stage import ASIDE_ALARM, SealStage
from zhichao.station.sealing import material_from_json


def _status(lane: Lane, key: str) -> str:
    return str(lane.store.db.execute("SELECT status FROM cases WHERE passage_key = ?",
                                     (key,)).fetchone()[0])


def _aside_alarm(lane: Lane) -> list[dict[str, Any]]:
    return [dict(r) for r in lane.store.active_alarms() if r["code"] == ASIDE_ALARM]


@pytest.fixture
def running(lane: Lane, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[SealStage]:
    monkeypatch.setattr(seal_stage, "ERROR_RETRY_S", 0.01)
    stage = SealStage(lane.sealer, lane.store, StageHealth(lane.store), StationMetrics())
    stop = threading.Event()
    thread = threading.Thread(target=stage.loop, args=(stop,), daemon=True)
    thread.start()
    yield stage
    stop.set()
    stage.jobs.put(None)
    thread.join(timeout=10)


def _queue(lane: Lane, stage: SealStage, *keys: str) -> None:
    for key in keys:
        raw = lane.store.case_material(key)
        assert raw is not None
        stage.jobs.put(material_from_json(raw))


def test_a_case_that_cannot_be_sealed_does_not_block_the_next(
        lane: Lane, running: SealStage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seal_stage, "SET_ASIDE_RETRY_S", 1.0)
    bad = lane.add(NEW, "浙A11111", case="pending")
    good = lane.add(NEW, "浙A22222", case="pending")
    real = lane.sealer.seal
    poisoned = {"on": True}

    def seal(m: Any, *rest: Any) -> Any:
        if m.passage_key == bad and poisoned["on"]:
            raise ValueError("record cannot be read")
        return real(m, *rest)

    monkeypatch.setattr(lane.sealer, "seal", seal)
    _queue(lane, running, bad, good)
    collect_until(running, lambda: _status(lane, good) == "sealed")
    assert _status(lane, bad) == "pending_seal"
    alarm = _aside_alarm(lane)
    assert len(alarm) == 1 and bad in alarm[0]["detail"]
    time.sleep(1.5)  # retried later: it fails again, and the alarm stays open
    running.collect()
    assert _status(lane, bad) == "pending_seal" and len(_aside_alarm(lane)) == 1
    poisoned["on"] = False  # whatever it was, fixed: the next retry seals it
    collect_until(running, lambda: _status(lane, bad) == "sealed")
    assert _aside_alarm(lane) == []
    running.drain(timeout_s=1.0)


def test_a_package_complete_before_the_failure_is_adopted(
        lane: Lane, running: SealStage, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error after the package got its final name (fsync of the tree): the case
    is not sealed twice ("already exists" for ever) but its package adopted."""
    key = lane.add(NEW, "浙A11111", case="pending")
    real = lane.sealer.seal
    calls: list[str] = []

    def seal(m: Any, *rest: Any) -> Any:
        calls.append(m.passage_key)
        real(m)
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(lane.sealer, "seal", seal)
    _queue(lane, running, key)
    collect_until(running, lambda: _status(lane, key) == "sealed")
    assert calls == [key]
    row = lane.store.db.execute("SELECT package_dir FROM cases WHERE passage_key = ?",
                                (key,)).fetchone()
    assert row[0] == str(lane.sealer.package_dir(key))
    assert _aside_alarm(lane) == []
