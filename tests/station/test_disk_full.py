"""A full disk never ends the station: a write of the pipeline refused for want of space
(or the data folder below ``evidence.min_free_mb``) stops the commits with the
``disk_full`` alarm open and ``/health`` degraded; the vehicle waits and is committed once,
when there is room again, and the alarm closes. On a full disk start-up gives up the
reserve file before it opens the database, so the station starts and stores the alarm.

No filesystem is mounted: the refusals are injected (``OSError(ENOSPC)`` from the
waveform write, SQLite's ``database or disk is full`` from the passage insert, the free
space reported by ``statvfs``)."""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.station.conftest import weighed_vehicle
from zhichao.station import commit as commit_mod
from zhichao.station import diskspace, runtime
from zhichao.station.config import StationConfig, parse_config
from zhichao.station.diskspace import RESERVE_NAME, is_disk_full
from zhichao.station.errors import StoreError
from zhichao.station.runtime import Station
from zhichao.station.store import StationStore

KEY = "S-1-0"


def _cfg(tmp_path: Path) -> StationConfig:
    return parse_config({"station": {"data_dir": str(tmp_path / "st"), "disk_reserve_mb": 1},
                         "vision": {"read": "none"}, "evidence": {"render_documents": False},
                         "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    st = Station(_cfg(tmp_path))
    st.intake.epoch = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # the lane has a timeline
    st.intake.stream_index = 10 ** 6
    st.intake.ring.append((0, np.zeros((2000, 8), np.float32)))  # the waveform's samples
    try:
        yield st
    finally:
        st.close()


def _codes(st: Station) -> set[str]:
    return {a["code"] for a in st.store.active_alarms()}


def _stored(st: Station) -> int:
    return st.store.counts()["passages"]


def test_the_ways_a_full_disk_is_reported_are_recognised() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    try:  # as the store wraps it
        try:
            raise sqlite3.OperationalError("disk I/O error")
        except sqlite3.Error as exc:
            raise StoreError("cannot open the station database") from exc
    except StoreError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("no such table: x"))
    assert not is_disk_full(ValueError("bad"))


def _refuse_waveform(monkeypatch: pytest.MonkeyPatch) -> None:
    def enospc(*_a: Any, **_k: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(commit_mod, "write_atomic", enospc)


def _refuse_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_a: Any, **_k: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(StationStore, "insert_passage", full)


@pytest.mark.parametrize("refuse", [_refuse_waveform, _refuse_insert],
                         ids=["enospc-waveform", "sqlite-full-insert"])
def test_a_full_disk_at_commit_stops_alarms_and_the_vehicle_is_committed_once_later(
        station: Station, monkeypatch: pytest.MonkeyPatch, refuse: Any) -> None:
    st = station
    seen: list[int] = []
    real_process = st.device.process

    def process(v: Any) -> Any:
        seen.append(v.first_sample)
        return real_process(v)

    monkeypatch.setattr(st.device, "process", process)
    st.link.add(weighed_vehicle(), KEY, None)
    with monkeypatch.context() as m:
        refuse(m)
        st._advance_pending(final=True)  # the station goes on
        assert any(w in str(st.disk.stopped) for w in ("No space", "disk is full"))
        assert "disk_full" in _codes(st)
        h = st.health()
        assert h["status"] == "degraded" and h["disk_stopped"]
        assert _stored(st) == 0 and [p.key for p in st.link.pending] == [KEY]
        st._advance_pending(final=True)  # stopped: nothing is tried until there is room
        st.disk.poll(force=True)  # room by statvfs, but the writes still fail
        st._advance_pending(final=True)
        assert _stored(st) == 0 and [p.key for p in st.link.pending] == [KEY]
        assert st.disk.stopped is not None and "disk_full" in _codes(st)
    st.disk.poll(force=True)  # room: the commit is tried again
    st._advance_pending(final=True)
    assert _stored(st) == 1 and not st.link.pending
    assert st.store.pending_cases() == [KEY] and st.seals.jobs.qsize() == 1
    assert seen == [0]  # the drift monitor saw the vehicle once
    st.disk.poll(force=True)  # a whole interval with room and no failure: closed
    assert "disk_full" not in _codes(st) and st.health()["status"] == "ok"


def test_the_pipeline_loop_outlives_a_full_disk(station: Station,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    st = station
    full = {"on": True}
    monkeypatch.setattr(runtime, "IDLE_ADVANCE_S", 30.0)
    monkeypatch.setattr(diskspace, "CHECK_S", 0.05)
    monkeypatch.setattr(st, "_read_device", lambda: time.sleep(0.01))
    real_step = st.retention.step

    def step() -> None:  # any store write of the pipeline thread
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        real_step()

    monkeypatch.setattr(st.retention, "step", step)
    st.source = SimpleNamespace(  # type: ignore[assignment]
        health_snapshot=lambda: SimpleNamespace(error_count=0))
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            st._loop(stop, None, None)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while "disk_full" not in _codes(st) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "disk_full" in _codes(st) and t.is_alive() and not errors
        full["on"] = False
        deadline = time.monotonic() + 10
        while "disk_full" in _codes(st) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "disk_full" not in _codes(st) and t.is_alive() and not errors
    finally:
        stop.set()
        t.join(timeout=10)
        st.source = None


def test_a_start_on_a_full_disk_gives_up_the_reserve_first_and_stores_the_alarm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)
    reserve = cfg.data_dir / RESERVE_NAME
    Station(cfg).close()  # the first start makes the reserve
    assert reserve.stat().st_size == 1024 * 1024 and reserve.stat().st_blocks * 512 >= \
        1024 * 1024  # real blocks, not a sparse file
    free = {"mb": 1.0}
    monkeypatch.setattr(diskspace, "free_mb", lambda _p: free["mb"])
    opened_with: list[bool] = []
    real_init = StationStore.__init__

    def init(self: StationStore, path: Path, *, readonly: bool = False) -> None:
        opened_with.append(reserve.exists())
        real_init(self, path, readonly=readonly)

    monkeypatch.setattr(StationStore, "__init__", init)
    st = Station(cfg)
    try:
        assert opened_with and not any(opened_with)  # gone before the database opened
        assert "disk_full" in _codes(st) and st.health()["status"] == "degraded"
        assert "reserve was released" in st.store.active_alarms()[0]["detail"]
        assert st.disk.stopped is not None
        st.disk.poll(force=True)  # still short: still stopped, the reserve not made
        assert st.disk.stopped is not None and not reserve.exists()
        free["mb"] = 10_000.0  # the operator made room
        st.disk.poll(force=True)
        assert st.disk.stopped is None and "disk_full" in _codes(st)
        st.disk.poll(force=True)
        assert "disk_full" not in _codes(st) and reserve.exists()
    finally:
        st.close()


def test_the_data_folder_threshold_stops_the_commits(station: Station,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    st = station
    free = {"mb": 1.0}  # below evidence.min_free_mb (64), above nothing
    monkeypatch.setattr(diskspace, "free_mb", lambda _p: free["mb"])
    st.link.add(weighed_vehicle(), KEY, None)
    st.disk.poll(force=True)
    st._advance_pending(final=True)
    assert _stored(st) == 0 and "disk_full" in _codes(st)
    assert "evidence.min_free_mb" in str(st.disk.stopped)
    free["mb"] = 10_000.0
    st.disk.poll(force=True)
    st._advance_pending(final=True)
    assert _stored(st) == 1
