"""A station restarted while its WIM device stays up: what a sample ring sends again is
dropped (never weighed twice), a real device restart is still a gap of unknown length."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tests.station.conftest import query
from zhichao.devices.data import SampleBlock
from zhichao.station.config import parse_config
from zhichao.station.intake import ANCHOR_KEY, DeviceAnchor
from zhichao.station.runtime import Station

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
BLOCK = 200  # samples per block


def _cfg(tmp_path: Path) -> Any:
    return parse_config({"station": {"data_dir": str(tmp_path / "st")},
                         "vision": {"read": "none"},
                         "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)


def _block(st: Station, device_index: int, *, boot_id: int = 5, n: int = BLOCK,
           tracker_offset: int = 0, reason: str | None = None,
           device_t0: datetime = T0) -> SampleBlock:
    """A block as a new driver's tracker gives it: stream index = device index + the
    tracker's own offset (0 in a new run); the device clock runs with its counter."""
    fs = st.fs
    channels = 2 * len(st.cfg.wim.sensor.rows_x_m)
    samples = np.full((n, channels), float(device_index % 997), np.float32)
    t = device_t0 + timedelta(seconds=device_index / fs)
    return SampleBlock(first_index=device_index + tracker_offset, samples=samples,
                       device_time_utc=t, station_time_utc=t, gap_before_samples=0,
                       reason=reason, sample_rate_hz=fs, boot_id=boot_id,
                       device_index=device_index)


def _first_run(tmp_path: Path, blocks: int) -> int:
    """A run that journals ``blocks`` blocks of boot 5 from device index 10 000, then
    dies; the journal's end."""
    st = Station(_cfg(tmp_path))
    try:
        for i in range(blocks):
            st.intake.on_block(_block(st, 10_000 + i * BLOCK,
                                      reason="start" if i == 0 else None))
        end = st.intake.stream_index
    finally:
        st.close()
    return end


def _restarted(tmp_path: Path) -> Station:
    st = Station(_cfg(tmp_path))
    st.intake.replay()
    return st


def test_a_ring_read_back_after_a_restart_is_not_weighed_again(tmp_path: Path) -> None:
    """The new run's driver starts ¾ of the ring back (same power-up): the samples the
    journal has are dropped, the rest continue it with no gap and no new offset, and
    the driver is told where to resume."""
    end = _first_run(tmp_path, 40)
    st = _restarted(tmp_path)
    try:
        assert st.intake.resume_point() == (5, end)
        first_end = st.journal.end_index
        # 30 blocks already journalled, then 5 new ones (the ring's read-back)
        start = end - 30 * BLOCK
        for i in range(35):
            st.intake.on_block(_block(st, start + i * BLOCK, reason="start" if i == 0 else None))
        assert first_end == end
        assert st.intake.stream_index == end + 5 * BLOCK
        blocks = list(st.journal.replay(0))
        firsts = [b.first_index for b in blocks]
        assert firsts == sorted(set(firsts))  # nothing journalled twice
        assert sum(b.samples.shape[0] for b in blocks) == 45 * BLOCK
        assert all(b.gap_before_samples == 0 for b in blocks)
    finally:
        st.close()
    assert query(tmp_path / "st" / "station.db", "SELECT COUNT(*) FROM gaps") == [(0,)]
    assert query(tmp_path / "st" / "station.db",
                 "SELECT value FROM meta WHERE key = 'index_offset'") in ([], [("0",)])


def test_a_partly_journalled_first_block_is_trimmed(tmp_path: Path) -> None:
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        st.intake.on_block(_block(st, end - 150, n=4096, reason="start"))
        assert st.intake.stream_index == end - 150 + 4096
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.samples.shape[0], last.gap_before_samples) == (
            end, 4096 - 150, 0)
    finally:
        st.close()


def test_samples_older_than_the_ring_are_a_station_restart_gap(tmp_path: Path) -> None:
    """Down longer than the ring holds: the first block is past the journal's end by an
    exactly known number of samples (same power-up): a gap of that many, counted once."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)  # a run killed after it recorded the gap, not the block
    try:
        block = _block(st, end + 5000, reason="start")
        st.intake._first_of_run(block)  # on_block up to the journal
        st.intake._align(block, block.first_index + st.intake.index_offset)
    finally:
        st.close()
    st = _restarted(tmp_path)
    try:
        st.intake.on_block(_block(st, end + 5000, reason="start"))
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (end + 5000, 5000)
    finally:
        st.close()
    assert query(tmp_path / "st" / "station.db", "SELECT first_index, n_samples, reason "
                 "FROM gaps") == [(end, 5000, "station_restart")]


def test_a_device_reboot_while_the_station_was_down_is_still_a_gap(tmp_path: Path) -> None:
    """A new power-up (new boot id) whose counter starts again: the timeline continues
    after a gap of unknown length, where the device's clock (within a minute of the
    station's, no WIM offset known yet) puts it: 5 minutes on."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        placed = round(5 * 60 * st.fs)
        st.intake.on_block(_block(st, 0, boot_id=6, reason="start",
                                  device_t0=T0 + timedelta(minutes=5)))
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (placed, -1)
        assert st.intake.index_offset == placed
    finally:
        st.close()
    db = tmp_path / "st" / "station.db"
    assert query(db, "SELECT first_index, n_samples, reason FROM gaps") == [
        (end, -1, "device_reboot")]
    anchor = DeviceAnchor.from_json(query(db, f"SELECT value FROM meta WHERE key = "
                                              f"'{ANCHOR_KEY}'")[0][0])
    assert anchor is not None and (anchor.boot_id, anchor.offset_samples) == (6, placed)


def test_a_device_clock_reset_at_power_up_gives_way_to_the_station_clock(
        tmp_path: Path) -> None:
    """A device whose clock came back at 2000-01-01: not plausible; with no WIM offset
    known the block follows the journal's end (as before), with a known one the station's
    clock places it."""
    end = _first_run(tmp_path, 10)
    reset = datetime(2000, 1, 1, tzinfo=UTC)
    st = _restarted(tmp_path)
    try:
        block = _block(st, 0, boot_id=6, reason="start", device_t0=reset)
        block = replace(block, station_time_utc=T0 + timedelta(minutes=5))
        st.intake.on_block(block)
        assert list(st.journal.replay(0))[-1].first_index == end
    finally:
        st.close()
    shutil.rmtree(tmp_path / "st")
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        st.linker.wim_offset.restore(BLOCK / st.fs)
        block = _block(st, 0, boot_id=6, reason="start", device_t0=reset)
        st.intake.on_block(replace(block, station_time_utc=T0 + timedelta(minutes=5)))
        assert list(st.journal.replay(0))[-1].first_index == round(5 * 60 * st.fs)
    finally:
        st.close()


def test_a_stale_wim_offset_gives_way_to_a_plausible_device_clock(tmp_path: Path) -> None:
    """The offset restored from the last commit was measured while the station's clock
    was 90 s slow (corrected while the station was down): the device's clock, plausible
    (after the journal's end, not later than the station's placement), continues the
    timeline (the station's placement alone was 90 s late)."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        st.linker.wim_offset.restore(BLOCK / st.fs + 90.0)
        st.intake.on_block(_block(st, 0, boot_id=6, reason="start",
                                  device_t0=T0 + timedelta(minutes=5)))
        assert list(st.journal.replay(0))[-1].first_index == round(5 * 60 * st.fs)
        assert end < round(5 * 60 * st.fs)
    finally:
        st.close()


def test_a_new_power_up_whose_counter_lies_past_the_journals_end_is_a_break(
        tmp_path: Path) -> None:
    """The device rebooted an hour after the journal's end and has been up 30 minutes:
    its counter lands past the journal's end, but it is another power-up (another boot
    id): a gap of unknown length (not a known gap of the counter's difference), placed by
    its clock 1 h 30 min on."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        up_s = 30 * 60
        booted = T0 + timedelta(seconds=end / st.fs + 3600)
        st.intake.on_block(_block(st, round(up_s * st.fs), boot_id=6, reason="start",
                                  device_t0=booted))
        placed = round((end / st.fs + 3600 + up_s) * st.fs)
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (placed, -1)
    finally:
        st.close()
    assert query(tmp_path / "st" / "station.db",
                 "SELECT first_index, n_samples, reason FROM gaps") == [
        (end, -1, "device_reboot")]


def test_a_repeated_boot_id_with_a_restarted_counter_is_a_reboot(tmp_path: Path) -> None:
    """A device whose boot id did not change although it restarted (its counter back at
    0, its clock minutes later): its clock disagrees with its counter, so its samples are
    a new power-up's, not ones the station already has (they would be dropped)."""
    _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        st.intake.on_block(_block(st, 0, boot_id=5, reason="start",
                                  device_t0=T0 + timedelta(minutes=5)))
        last = list(st.journal.replay(0))[-1]
        # the device's clock (5 minutes on) places it
        assert (last.first_index, last.gap_before_samples) == (round(5 * 60 * st.fs), -1)
    finally:
        st.close()


def test_a_run_killed_between_a_reboots_anchor_and_its_block_leaves_the_break(
        tmp_path: Path) -> None:
    """A device reboot reached a run that stored the new power-up's anchor (and its gap
    row), then was killed before it journalled the block. The next run continues that
    power-up by its counter, but its first block still follows the break: a gap of
    unknown length fed to the weighing core (not the old boot's samples joined to the new
    boot's), the one gap row kept."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        block = _block(st, 0, boot_id=6, reason="start", device_t0=T0 + timedelta(minutes=5))
        intake = st.intake
        intake._first_of_run(block)  # on_block up to the journal, then killed
        idx, _samples, gap = intake._align(block, block.first_index + intake.index_offset)
        intake._keep_anchor(block, idx, gap)
        placed = round(5 * 60 * st.fs)
        assert (idx, gap) == (placed, -1)
    finally:
        st.close()
    db = tmp_path / "st" / "station.db"
    anchor = DeviceAnchor.from_json(query(db, f"SELECT value FROM meta WHERE key = "
                                              f"'{ANCHOR_KEY}'")[0][0])
    assert anchor is not None and (anchor.boot_id, anchor.break_index) == (6, placed)
    st = _restarted(tmp_path)
    try:
        assert st.journal.end_index == end
        # the new driver reads the new power-up's ring from its start
        for i in range(3):
            st.intake.on_block(_block(st, i * BLOCK, boot_id=6,
                                      reason="start" if i == 0 else None,
                                      device_t0=T0 + timedelta(minutes=5)))
        blocks = list(st.journal.replay(0))
        assert [(b.first_index, b.gap_before_samples) for b in blocks[-3:]] == [
            (placed, -1), (placed + BLOCK, 0), (placed + 2 * BLOCK, 0)]
    finally:
        st.close()
    assert query(db, "SELECT first_index, n_samples, reason FROM gaps") == [
        (end, -1, "device_reboot")]
    # journalled now: a later restart continues without another break
    st = _restarted(tmp_path)
    try:
        st.intake.on_block(_block(st, 3 * BLOCK, boot_id=6, reason="start",
                                  device_t0=T0 + timedelta(minutes=5)))
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (placed + 3 * BLOCK, 0)
    finally:
        st.close()


def test_a_device_reboot_keeps_the_time_it_was_away_on_the_timeline(tmp_path: Path) -> None:
    """A device that came back from a restart 5 minutes after its last sample: its counter
    says nothing of the time between, the station's clock and the WIM offset known
    before do. The block is placed 5 minutes on (the vehicles after it keep their real
    times; before, every later vehicle was 5 minutes early), after a gap of unknown
    length fed to the weighing core, and a replay places it the same."""
    end = _first_run(tmp_path, 10)
    back = T0 + timedelta(minutes=5)
    st = _restarted(tmp_path)
    try:
        fs = st.fs
        assert st.intake.epoch == T0
        # stream time of a block's end − its arrival (what the first run observed)
        st.linker.wim_offset.restore(BLOCK / fs)
        st.intake.on_block(_block(st, 0, boot_id=6, reason="start", device_t0=back))
        placed = round(5 * 60 * fs)
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (placed, -1)
        assert st.intake.stream_index == placed + BLOCK
        assert st.intake.proc is not None
        assert st.intake.proc.detector.next_index == placed + BLOCK
        assert st.intake.stream_time() == back + timedelta(seconds=BLOCK / fs)
        st.intake.on_block(_block(st, BLOCK, boot_id=6, device_t0=back))
        assert st.intake.stream_index == placed + 2 * BLOCK
    finally:
        st.close()
    db = tmp_path / "st" / "station.db"
    assert query(db, "SELECT first_index, n_samples, reason FROM gaps") == [
        (end, -1, "device_reboot")]
    st = _restarted(tmp_path)  # the journal replayed: the same timeline
    try:
        assert st.intake.stream_index == placed + 2 * BLOCK
        assert st.intake.proc is not None
        assert st.intake.proc.detector.next_index == placed + 2 * BLOCK
    finally:
        st.close()


def test_a_device_reboot_is_never_placed_before_the_journals_end(tmp_path: Path) -> None:
    """A station clock behind the stream (or an offset from before a long-gone epoch)
    would place the block before what was journalled: it follows the journal's end."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        st.linker.wim_offset.restore(-3600.0)
        st.intake.on_block(_block(st, 0, boot_id=6, reason="start",
                                  device_t0=T0 + timedelta(minutes=5)))
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (end, -1)
    finally:
        st.close()


def test_a_reboot_placed_at_the_journals_end_is_a_recorded_gap(tmp_path: Path) -> None:
    """The device's tracker continued the timeline right at the journal's end (it
    estimated nothing lost across the restart): still a gap of unknown length, fed to the
    weighing core and recorded (no gaps row was written before)."""
    st = Station(_cfg(tmp_path))
    try:
        for i in range(10):
            st.intake.on_block(_block(st, 10_000 + i * BLOCK, reason="start" if i == 0 else None))
        end = st.intake.stream_index
        back = T0 + timedelta(seconds=end / st.fs)
        st.intake.on_block(replace(_block(st, 0, boot_id=6, tracker_offset=end,
                                          device_t0=back),
                                   reason="reboot", gap_before_samples=-1))
        last = list(st.journal.replay(0))[-1]
        assert (last.first_index, last.gap_before_samples) == (end, -1)
    finally:
        st.close()
    assert query(tmp_path / "st" / "station.db",
                 "SELECT first_index, n_samples, reason FROM gaps") == [
        (end, -1, "device_reboot")]


def test_the_resume_point_after_a_pending_break_is_the_power_ups_first_sample(
        tmp_path: Path) -> None:
    """A run killed after it placed a new power-up 5 minutes on (its anchor stored, its
    block not journalled): the driver is told to resume at that power-up's first sample,
    not at a device index before it (it was negative)."""
    _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        st.linker.wim_offset.restore(BLOCK / st.fs)
        block = _block(st, 0, boot_id=6, reason="start", device_t0=T0 + timedelta(minutes=5))
        intake = st.intake
        intake._first_of_run(block)
        idx, _samples, gap = intake._align(block, block.first_index + intake.index_offset)
        intake._keep_anchor(block, idx, gap)
    finally:
        st.close()
    st = _restarted(tmp_path)
    try:
        assert st.intake.resume_point() == (6, 0)
    finally:
        st.close()


def test_a_reboot_the_tracker_placed_after_its_estimated_loss_keeps_the_weighing_core_in_step(
        tmp_path: Path) -> None:
    """A live reboot whose tracker estimated 1 000 samples lost (block past the journal's
    end, gap of unknown length): the weighing core's sample index moves with the station's
    (it stayed behind by the estimate before, so every later vehicle's time and waveform
    were off by it)."""
    st = Station(_cfg(tmp_path))
    try:
        for i in range(10):
            st.intake.on_block(_block(st, 10_000 + i * BLOCK, reason="start" if i == 0 else None))
        end = st.intake.stream_index
        back = T0 + timedelta(seconds=(end + 1000) / st.fs)
        st.intake.on_block(replace(_block(st, 0, boot_id=6, tracker_offset=end + 1000,
                                          device_t0=back),
                                   reason="reboot", gap_before_samples=-1))
        assert st.intake.stream_index == end + 1000 + BLOCK
        assert st.intake.proc is not None
        assert st.intake.proc.detector.next_index == st.intake.stream_index
    finally:
        st.close()


def test_the_same_power_up_with_its_clock_corrected_meanwhile_continues(
        tmp_path: Path) -> None:
    """The device's clock was stepped 3 s (an NTP correction) while the station was down;
    same boot id, counter continuous: the same power-up, continued with no gap (a 2 s
    tolerance took it for a new power-up: a break, an invented 3 s jump and the weighing
    core reset)."""
    end = _first_run(tmp_path, 10)
    st = _restarted(tmp_path)
    try:
        for i in range(2):
            st.intake.on_block(_block(st, end + i * BLOCK, reason="start" if i == 0 else None,
                                      device_t0=T0 + timedelta(seconds=3)))
        blocks = [(b.first_index, b.gap_before_samples) for b in st.journal.replay(0)]
        assert blocks[-2:] == [(end, 0), (end + BLOCK, 0)]
    finally:
        st.close()
    assert query(tmp_path / "st" / "station.db", "SELECT COUNT(*) FROM gaps") == [(0,)]



def test_a_read_back_stamped_from_a_corrected_clock_is_the_same_power_up(
        tmp_path: Path) -> None:
    """A 64 s run (its anchor renewed), the device's clock corrected 3 s while the station
    was down; the ring driver reads 8 s back, before the anchor, stamping the rows from the
    clock as it is now: the same power-up (a 2 s tolerance before the anchor took it for a
    restart and weighed the journalled samples again)."""
    end = _first_run(tmp_path, 1600)
    st = _restarted(tmp_path)
    try:
        start = end - 200 * BLOCK
        assert st.intake.anchor is not None and start < st.intake.anchor.device_index
        st.intake.on_block(_block(st, start, reason="start",
                                  device_t0=T0 + timedelta(seconds=3)))
        assert not st.intake.new_power_up
        assert st.journal.end_index == end  # the read-back block was journalled already
    finally:
        st.close()
    assert query(tmp_path / "st" / "station.db", "SELECT COUNT(*) FROM gaps") == [(0,)]
