"""Sans-I/O sequence bookkeeping fed crafted counters: a sample counter that goes back
without a boot id change, records out of order, int16 samples at full scale."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from tests.devices.conftest import START_UTC
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.data import SampleBlock, WimRecord
from zhichao.devices.framing import ENCODING_INT16, FrameDecoder, SampleFrame, encode_frame
from zhichao.devices.health import HealthMonitor
from zhichao.devices.sample_source import EVENT_SATURATION, SampleSource
from zhichao.devices.tracking import RecordTracker, SampleTracker

US0 = round(START_UTC.timestamp() * 1e6)
RATE_HZ = 1000.0


def _frame(index: int, seq: int, *, boot_id: int = 7, boot: bool = False,
           time_us: int | None = None, n: int = 100) -> SampleFrame:
    raw = encode_frame(np.full((n, 1), float(index), np.float32), sample_index=index,
                       device_time_us=US0 + index * 1000 if time_us is None else time_us,
                       sample_rate_hz=RATE_HZ, seq=seq, boot_id=boot_id, boot=boot)
    (frame,) = FrameDecoder().feed(raw)
    assert isinstance(frame, SampleFrame)
    return frame


def _station(ms: float) -> datetime:
    return START_UTC + timedelta(milliseconds=ms)


def test_a_sample_counter_back_at_zero_with_the_same_boot_id_is_a_reboot() -> None:
    """Boot 7 runs to index 5 000; it restarts keeping boot id 7 (boot flag set, index 0,
    clock 60 s later): the new power-up is delivered after a reboot gap, not dropped as
    duplicates."""
    health = HealthMonitor("test://", "samples")
    tracker = SampleTracker(health)
    old = [tracker.process(_frame(k * 100, k, boot=k == 0), _station(k * 100 + 100))
           for k in range(50)]
    assert all(b is not None for b in old)
    restart_us = US0 + 60_000_000
    new: list[SampleBlock | None] = [
        tracker.process(_frame(k * 100, 50 + k, boot=k == 0, time_us=restart_us + k * 100_000),
                        _station(60_000 + k * 100 + 100)) for k in range(30)]
    assert all(b is not None for b in new), "a new power-up was dropped as duplicates"
    first = new[0]
    assert first is not None
    assert first.gap_before_samples == -1 and first.reason == "device_reboot"
    assert first.device_index == 0 and first.first_index >= 5000
    assert all(b is not None and b.plain for b in new[1:])
    c = health.snapshot().counters
    assert c["reboots"] == 1 and "duplicates" not in c


def test_a_restart_without_the_boot_flag_is_told_from_a_resend_by_its_clock() -> None:
    """Counter back, boot flag clear: a resend (the device times already delivered, also
    across a later clock step) is trimmed or dropped; other device times are a reboot."""
    health = HealthMonitor("test://", "samples")
    tracker = SampleTracker(health)
    for k in range(10):
        assert tracker.process(_frame(k * 100, k), _station(k * 100 + 100)) is not None
    # the device clock steps +5 s: a clock_jump, no gap
    stepped = tracker.process(_frame(1000, 10, time_us=US0 + 6_000_000), _station(1100))
    assert stepped is not None and "clock_jump" in stepped.events
    # frames 5 and 6 resent with the times they had (before the step): duplicates
    assert tracker.process(_frame(500, 5), _station(1150)) is None
    assert tracker.process(_frame(600, 6), _station(1160)) is None
    # an overlapping resend is trimmed to its new rows
    tail = tracker.process(_frame(1050, 11, time_us=US0 + 6_050_000), _station(1200))
    assert tail is not None and tail.device_index == 1100 and tail.n_samples == 50
    assert tail.gap_before_samples == 0
    # counter back to 0, boot flag clear, 30 s later: the device restarted
    again = tracker.process(_frame(0, 0, time_us=US0 + 36_000_000), _station(31_000))
    assert again is not None and again.reason == "device_reboot"
    assert again.gap_before_samples == -1
    c = health.snapshot().counters
    assert c["duplicates"] == 2 and c["reboots"] == 1


def _record(seq: int, *, boot_id: int = 1, at_s: float | None = None) -> WimRecord:
    t = START_UTC + timedelta(seconds=10 * seq if at_s is None else at_s)
    return WimRecord(boot_id, seq, t, "1", 60.0, None, (8000.0, 8000.0), (), (3.6,),
                     16000.0, (), 0, None)


def test_a_late_record_is_delivered_once_and_taken_out_of_its_gap() -> None:
    """seq 0, 1, 3, 2, 4, then 3 resent: 3 reports a gap of 1; 2 is late (delivered, no
    reboot); 4 follows 3 (no false gap); 3 resent is a duplicate."""
    health = HealthMonitor("test://", "records")
    tracker = RecordTracker(health)
    got: dict[int, WimRecord | None] = {}
    order = (0, 1, 3, 2, 4, 3)
    out = []
    for seq in order:
        r = tracker.process(_record(seq), START_UTC + timedelta(seconds=10 * seq + 1), "t://")
        out.append(None if r is None else (r.gap_before_records, r.reason))
        got.setdefault(seq, r)
    assert out == [(0, "start"), (0, None), (1, "sequence_gap"), (0, None), (0, None), None]
    c = health.snapshot().counters
    assert c["records_lost"] == 0 and c["late_records"] == 1 and c["duplicates"] == 1
    assert "reboots" not in c
    assert tracker.next_seq == 5


def test_record_counter_back_outside_any_gap_is_still_a_reboot() -> None:
    """A counter that goes back to a seq never reported missing, later in time, is a
    controller restarted without a boot counter; a record of the old boot resent after
    a new boot id is a duplicate, not a second reboot."""
    health = HealthMonitor("test://", "records")
    tracker = RecordTracker(health)
    for seq in range(4):
        assert tracker.process(_record(seq), START_UTC + timedelta(seconds=10 * seq), "t://")
    back = tracker.process(_record(1, at_s=100), START_UTC + timedelta(seconds=100), "t://")
    assert back is not None and back.reason == "device_reboot"
    # a record inside a reported gap but far later than the records around it: a reboot
    tracker.process(_record(5, at_s=110), START_UTC + timedelta(seconds=110), "t://")
    odd = tracker.process(_record(3, at_s=500), START_UTC + timedelta(seconds=500), "t://")
    assert odd is not None and odd.reason == "device_reboot"
    newboot = tracker.process(_record(0, boot_id=2, at_s=600),
                              START_UTC + timedelta(seconds=600), "t://")
    assert newboot is not None and newboot.reason == "device_reboot"
    assert tracker.process(_record(3, at_s=500), START_UTC + timedelta(seconds=601),
                           "t://") is None  # boot 1's seq 3 resent
    c = health.snapshot().counters
    assert c["reboots"] == 3 and c["duplicates"] == 1


class _Scripted(SampleSource):
    """A sample source whose backend returns frames given in advance."""

    def __init__(self, frames: list[SampleFrame]) -> None:
        super().__init__("test://scripted", timeouts=Timeouts(0.5), backoff=Backoff(0.01, 0.1))
        self._frames = frames

    def _connect(self, timeout_s: float) -> None:
        pass

    def _disconnect(self) -> None:
        pass

    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        out, self._frames = self._frames, []
        return out


def test_int16_samples_at_full_scale_are_flagged_saturation() -> None:
    """An int16 ZSF frame holding counts −32768 / 32767 (a saturated ADC): delivered,
    counted and logged, its block carries the event ``saturation``; a float32 frame with
    the same values is not int16 full scale."""
    scale = 0.001
    values = np.zeros((20, 2))
    values[3, 0] = 40.0  # clipped to 32767 counts
    values[4, 1] = -40.0  # clipped to -32768 counts
    values[5, 1] = 32.766  # one count below full scale: not saturated
    frames = []
    for i, (encoding, index) in enumerate([(0, 0), (ENCODING_INT16, 20)]):
        raw = encode_frame(values, sample_index=index, device_time_us=US0 + index * 1000,
                           sample_rate_hz=RATE_HZ, seq=i, boot_id=1, encoding=encoding,
                           scale=scale if encoding else 1.0)
        (frame,) = FrameDecoder().feed(raw)
        assert isinstance(frame, SampleFrame)
        frames.append(frame)
    with _Scripted(frames) as source:
        first = source.read_block(0.2)
        second = source.read_block(0.2)
        health = source.health_snapshot()
    assert first is not None and second is not None
    assert first.n_samples == 20 and EVENT_SATURATION not in first.events
    assert second.n_samples == 20 and EVENT_SATURATION in second.events
    np.testing.assert_allclose(second.samples[3, 0], 32.767, atol=1e-4)
    assert health.counters["saturated_samples"] == 2
