"""A damaged journal record costs only its own bytes: the reader resynchronises on the next
valid record, every valid record after it is kept, and the lost stretch is a recorded gap
(``journal_corrupt``) with an alarm and a warning. A torn last record (a kill mid-write)
is still cut off silently."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from zhichao.station.config import StationConfig, parse_config
from zhichao.station.journal import SampleJournal
from zhichao.station.runtime import JOURNAL_CORRUPT, Station

RECORD_BYTES = 32 + 100 * 2 * 4  # header + 100 samples × 2 channels (float32)


def _journal(directory: Path, blocks: int = 10) -> list[Path]:
    """``blocks`` blocks of 100 samples (block i holds the value i), 3 per segment."""
    j = SampleJournal(directory, segment_samples=250)
    for i in range(blocks):
        j.append(i * 100, np.full((100, 2), i, np.float32), 0)
    j.close()
    return sorted(directory.glob("seg-*.zsj"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _replayed(j: SampleJournal, start: int = 0) -> list[tuple[int, float]]:
    return [(b.first_index, float(b.samples[0, 0])) for b in j.replay(start)]


def test_a_damaged_first_record_of_the_newest_segment_loses_only_itself(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    segs = _journal(tmp_path / "b", blocks=12)  # the newest segment: blocks 9, 10, 11
    newest = segs[-1]
    size = newest.stat().st_size
    assert size == 3 * RECORD_BYTES
    _flip(newest, 100)  # in the payload of block 9
    with caplog.at_level(logging.WARNING, logger="zhichao.station"):
        j = SampleJournal(tmp_path / "b")
    assert newest.stat().st_size == size  # nothing cut from the file
    assert j.end_index == 1200 and j.torn_records == 0
    assert [(d.byte_start, d.byte_end, d.first_index, d.end_index) for d in j.damage] == [
        (0, RECORD_BYTES, 900, 1000)]
    got = _replayed(j)
    assert got == [(i * 100, float(i)) for i in range(12) if i != 9]
    assert any("journal damaged" in r.getMessage() and newest.name in str(r.__dict__)
               for r in caplog.records)
    j.close()


def test_damage_in_a_middle_segment_skips_only_the_bad_record(tmp_path: Path) -> None:
    segs = _journal(tmp_path)  # segments: blocks 0-2, 3-5, 6-8, 9
    _flip(segs[1], 10)  # the header of block 3 (its first index)
    j = SampleJournal(tmp_path)
    assert [(d.segment, d.first_index, d.n_samples) for d in j.damage] == [(segs[1], 300, 100)]
    assert _replayed(j) == [(i * 100, float(i)) for i in range(10) if i != 3]
    assert _replayed(j, 250)[0] == (250, 2.0) and _replayed(j, 250)[1] == (400, 4.0)
    j.close()


def test_a_record_whose_length_is_damaged_does_not_hide_the_rest(tmp_path: Path) -> None:
    segs = _journal(tmp_path)
    _flip(segs[0], RECORD_BYTES + 14)  # block 1's sample count: past the end of the file
    j = SampleJournal(tmp_path)
    assert [(d.first_index, d.end_index) for d in j.damage] == [(100, 200)]
    assert _replayed(j) == [(i * 100, float(i)) for i in range(10) if i != 1]
    j.close()


def test_the_damaged_tail_of_an_older_segment_is_damage(tmp_path: Path) -> None:
    segs = _journal(tmp_path)
    _flip(segs[0], 2 * RECORD_BYTES + 50)  # block 2, the last of the first segment
    j = SampleJournal(tmp_path)
    assert [(d.first_index, d.end_index) for d in j.damage] == [(200, 300)]
    assert segs[0].stat().st_size == 3 * RECORD_BYTES
    assert _replayed(j) == [(i * 100, float(i)) for i in range(10) if i != 2]
    j.close()


def test_a_torn_last_record_is_cut_without_damage(tmp_path: Path) -> None:
    segs = _journal(tmp_path, blocks=12)
    with open(segs[-1], "ab") as f:  # a record cut by a kill
        f.write(b"ZSJ1" + b"\x00" * 300)
    j = SampleJournal(tmp_path)
    assert j.torn_records == 1 and j.damage == [] and j.end_index == 1200
    assert segs[-1].stat().st_size == 3 * RECORD_BYTES
    j.close()


def _cfg(tmp_path: Path) -> StationConfig:
    return parse_config({"station": {"data_dir": str(tmp_path / "st"), "disk_reserve_mb": 0},
                         "vision": {"read": "none"}, "evidence": {"render_documents": False},
                         "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)


def test_the_station_records_the_damage_as_a_gap_and_an_alarm_once(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    Station(cfg).close()  # the station's database, then its journal
    segs = _journal(cfg.data_dir / "journal")
    _flip(segs[1], 100)  # block 3
    for _ in range(2):  # a second start finds the same damage: nothing new
        st = Station(cfg)
        try:
            st._journal_damage()
            gaps = list(st.store.db.execute("SELECT first_index, n_samples, reason FROM gaps"))
            assert [tuple(g) for g in gaps] == [(300, 100, JOURNAL_CORRUPT)]
            alarms = st.store.active_alarms()
            assert [a["code"] for a in alarms] == [JOURNAL_CORRUPT]
            assert "原始数据日志" in alarms[0]["message_zh"]
            assert segs[1].name in alarms[0]["detail"]
            assert st.health()["status"] == "degraded"
        finally:
            st.close()
