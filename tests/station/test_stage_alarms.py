"""A stage that keeps failing is an alarm (``/health`` degraded, zh-CN reason), not a log
line, and the alarm closes when the stage works again."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zhichao.station import journal as journal_module
from zhichao.station.alarms import STAGE_ALARMS, StageHealth
from zhichao.station.config import parse_config
from zhichao.station.errors import JournalError
from zhichao.station.journal import SampleJournal
from zhichao.station.messages import SealOutcome
from zhichao.station.runtime import Station
from zhichao.station.store import StationStore


def _codes(store: StationStore) -> set[str]:
    return {a["code"] for a in store.active_alarms()}


def test_alarm_opens_at_the_threshold_and_closes_on_success(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "station.db")
    stages = StageHealth(store)
    code = STAGE_ALARMS["plates"].code
    for _ in range(STAGE_ALARMS["plates"].after_failures - 1):
        assert not stages.failed("plates", "worker crashed")
    assert code not in _codes(store)
    assert stages.failed("plates", "worker crashed")
    alarm = next(a for a in store.active_alarms() if a["code"] == code)
    assert "车牌识别" in alarm["message_zh"] and "worker crashed" in alarm["detail"]
    # a restarted station knows the alarm is open and closes it at the first success
    again = StageHealth(store)
    again.succeeded("plates")
    assert code not in _codes(store)
    store.close()


def test_failing_sealing_turns_health_degraded_until_a_seal_succeeds(tmp_path: Path) -> None:
    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "vision": {"read": "none"},
                        "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)
    st = Station(cfg)
    try:
        with st.store.transaction() as con:
            st.store.insert_case(con, "K-1")
        assert st.health()["status"] == "ok"
        for _ in range(STAGE_ALARMS["sealing"].after_failures):
            st.seals.outcomes.put(SealOutcome("error", "K-1",
                                              detail="PackageError('original file missing')"))
            st.seals.collect()
        h = st.health()
        assert h["status"] == "degraded"
        assert [a["code"] for a in h["alarms"]] == ["sealing_failed"]
        assert "证据封存连续失败" in h["alarms"][0]["message_zh"]
        res = SimpleNamespace(package_id="P-1", directory=tmp_path / "p", manifest_sha256="0",
                              log_index=0, eligibility=SimpleNamespace(status="usable",
                                                                       reasons=[]))
        st.seals.outcomes.put(SealOutcome("sealed", "K-1", res,  # type: ignore[arg-type]
                                          elapsed_s=0.1))
        st.seals.collect()
        assert st.health()["status"] == "ok"
    finally:
        st.close()


def test_a_failed_journal_append_loses_no_later_record(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    j = SampleJournal(tmp_path / "journal")
    block = np.ones((100, 4), dtype=np.float32)
    j.append(0, block, 0)
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes) -> int:
        real_write(fd, data[:len(data) // 2])  # a torn record, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", half_then_enospc)
    with pytest.raises(JournalError):
        j.append(100, block * 2, 0)
    monkeypatch.setattr(journal_module.os, "write", real_write)
    j.append(200, block * 3, 0)  # the disk has room again
    j.close()
    again = SampleJournal(tmp_path / "journal")
    got = [(b.first_index, float(b.samples[0, 0])) for b in again.replay(0)]
    assert got == [(0, 1.0), (200, 3.0)]  # the failed block is a gap, the next is kept
    assert again.end_index == 300
    again.close()
