"""Sans-I/O sequence bookkeeping: device counters in, gaps, reboots and clock steps out.

One :class:`SequenceTracker` holds what every counted stream shares: the boot id and the
counter expected next, the reason and events noted by the driver for the next item
(``reconnect``, ``bad_values``, ``fifo_overrun``), the accounting of a forward gap
(``sequence_gap``: exactly that many lost), of a reboot (an unknown number), of a clock
step, and the device − station clock offset. Two thin specialisations add what differs:

:class:`SampleTracker`
    counts samples (:class:`~zhichao.devices.framing.SampleFrame` rows): overlapping
    frames are trimmed, a reboot's loss is estimated so the station's timeline continues,
    a clock step is a device time that differs from the one its sample counter predicts.
    A counter that goes back is a resend (trimmed or dropped) only when the frame's device
    time is the one already delivered for that index and its boot flag is clear; else the
    device restarted without changing its boot id, a reboot.
:class:`RecordTracker`
    counts controller records: a record resent after a reconnect (same boot, seq and
    device time as one delivered) is a duplicate, a record of a gap already reported that
    arrives late is delivered and taken out of the gap, any other counter that goes back
    without a boot change is a reboot, a clock step is a (device − station) time off the
    recent median (records arrive after a varying processing delay).
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import ClassVar

from zhichao.devices.base import device_time
from zhichao.devices.data import SampleBlock, WimRecord
from zhichao.devices.framing import SampleFrame
from zhichao.devices.health import HealthMonitor
from zhichao.devices.reasons import (
    EVENT_CLOCK_JUMP,
    REASON_FORMAT_CHANGE,
    REASON_REBOOT,
    REASON_RECONNECT,
    REASON_SEQUENCE_GAP,
    REASON_START,
)


class SequenceTracker:
    """What every counted stream shares (see the module docstring).

    Parameters
    ----------
    health : where gaps, duplicates, reboots and clock jumps are counted and logged.
    clock_jump_threshold_s : a device clock step beyond this is reported [s].
    offsets_kept : how many recent (device − station) offsets ``clock_offset_s`` spans.
    """

    #: what the device counter counts; losses are added to health's ``<unit>_lost``
    unit: ClassVar[str] = "items"

    def __init__(self, health: HealthMonitor, *, clock_jump_threshold_s: float,
                 offsets_kept: int) -> None:
        self.health = health
        self.clock_jump_threshold_s = clock_jump_threshold_s
        self._started = False
        self._boot_id = 0
        self._next = 0  # device counter expected next
        self._pending_reason: str | None = None
        self._pending_events: list[str] = []
        self._offsets: deque[float] = deque(maxlen=offsets_kept)

    def note(self, reason: str) -> None:
        """Something happened on the link (``reconnect``, ``bad_values`` …): the next item
        carries it as its reason, with or without a gap."""
        if self._pending_reason is None or self._pending_reason == REASON_RECONNECT:
            self._pending_reason = reason
        if reason not in self._pending_events:
            self._pending_events.append(reason)

    def _start(self) -> str:
        self._started = True
        return self._pending_reason or REASON_START

    def _forward_gap(self, counter: int, where: str) -> tuple[int, str]:
        """The device counter is ahead of the one expected: exactly that many are lost."""
        gap = counter - self._next
        reason = self._pending_reason
        reason = reason if reason not in (None, REASON_START) else REASON_SEQUENCE_GAP
        self.health.fault("sequence_gaps", f"{gap} {self.unit} missing ({reason})", where=where)
        self.health.add(f"{self.unit}_lost", gap)
        return gap, reason

    def _clock_stepped(self, message: str, where: str) -> None:
        self.health.fault("clock_jumps", message, where=where)
        self._offsets.clear()

    def _add_offset(self, offset_s: float) -> None:
        self._offsets.append(offset_s)
        self.health.clock_offset_s = max(self._offsets)

    def _advance(self, boot_id: int, next_counter: int) -> None:
        self._boot_id = boot_id
        self._next = next_counter
        self._pending_reason = None
        self._pending_events = []


class SampleTracker(SequenceTracker):
    """Turns device frames into :class:`~zhichao.devices.data.SampleBlock` s with
    gaps made explicit.

    Parameters
    ----------
    health : where gaps, duplicates, reboots and clock jumps are counted and logged.
    clock_jump_threshold_s : a device time that differs from the one its sample counter
        predicts by more than this is a clock step [s].
    """

    unit: ClassVar[str] = "samples"

    def __init__(self, health: HealthMonitor, *, clock_jump_threshold_s: float = 0.5) -> None:
        super().__init__(health, clock_jump_threshold_s=clock_jump_threshold_s,
                         offsets_kept=64)
        self._offset = 0  # stream index = device index + offset
        self._rate = 0.0
        self._n_channels = 0
        self._anchor: tuple[int, int] = (0, 0)  # (device index, device time µs)
        self._last_station: datetime | None = None
        # recent delivered runs of this power-up: (first device index, end, first time µs)
        self._delivered: deque[tuple[int, int, int]] = deque(maxlen=64)

    @property
    def next_stream_index(self) -> int:
        return self._next + self._offset

    @property
    def next_device_index(self) -> int | None:
        return self._next if self._started else None

    @property
    def boot_id(self) -> int | None:
        """The power-up the counter expected next belongs to (None before the first)."""
        return self._boot_id if self._started else None

    def _predicted_time_us(self, device_index: int) -> float:
        idx, t_us = self._anchor
        return t_us + (device_index - idx) * 1e6 / self._rate

    def _delivered_time_us(self, device_index: int) -> float:
        """The device time already delivered for ``device_index`` (predicted from the
        last block when no recent block holds it)."""
        for first, end, t_us in reversed(self._delivered):
            if first <= device_index < end:
                return t_us + (device_index - first) * 1e6 / self._rate
        return self._predicted_time_us(device_index)

    def _is_resend(self, frame: SampleFrame) -> bool:
        """A frame whose counter went back is a resend of samples already delivered only
        when its boot flag is clear and its device time is theirs (within
        ``clock_jump_threshold_s``); otherwise the device restarted keeping its boot id."""
        if frame.boot:
            return False
        step_s = (frame.device_time_us - self._delivered_time_us(frame.sample_index)) / 1e6
        return abs(step_s) <= self.clock_jump_threshold_s

    def process(self, frame: SampleFrame, station_time: datetime) -> SampleBlock | None:
        """Account for one frame; return its block, or None for a full duplicate."""
        rate = frame.sample_rate_hz
        samples = frame.samples
        device_index = frame.sample_index
        events = list(self._pending_events)
        reason: str | None = self._pending_reason
        gap = 0
        first = not self._started
        if first:
            reason = self._start()
            self._offset = 0
        elif (frame.boot_id != self._boot_id or rate != self._rate
              or frame.n_channels != self._n_channels):
            gap, reason = -1, self._discontinuity(frame, station_time)
        elif device_index < self._next and not self._is_resend(frame):
            gap, reason = -1, self._discontinuity(frame, station_time, counter_back=True)
        elif device_index > self._next:
            gap, reason = self._forward_gap(device_index, f"device index {self._next}")
        elif device_index < self._next:
            overlap = self._next - device_index
            if overlap >= frame.n_samples:
                self.health.fault("duplicates", f"frame seq {frame.seq} already delivered",
                                  where=f"device index {device_index}", level=logging.INFO)
                return None
            samples = samples[overlap:]
            device_index += overlap
        if gap == 0 and not first and reason not in (REASON_REBOOT, REASON_FORMAT_CHANGE):
            self._check_clock(frame)
            if EVENT_CLOCK_JUMP in self._pending_events:
                events = list(self._pending_events)
        first_time_us = frame.device_time_us + round(
            (device_index - frame.sample_index) * 1e6 / rate)
        self._rate = rate
        self._n_channels = frame.n_channels
        self._anchor = (device_index, first_time_us)
        n = int(samples.shape[0])
        if gap < 0 or first:
            self._delivered.clear()
        self._delivered.append((device_index, device_index + n, first_time_us))
        self._last_station = station_time
        self._add_offset(first_time_us / 1e6 + n / rate - station_time.timestamp())
        self._advance(frame.boot_id, device_index + n)
        return SampleBlock(
            first_index=device_index + self._offset, samples=samples,
            device_time_utc=device_time(first_time_us), station_time_utc=station_time,
            gap_before_samples=gap, reason=reason, sample_rate_hz=rate,
            events=tuple(e for e in events if e != reason),
            boot_id=frame.boot_id, device_index=device_index)

    def _discontinuity(self, frame: SampleFrame, station_time: datetime, *,
                       counter_back: bool = False) -> str:
        """A reboot (a new boot id, or a counter that went back to samples not delivered)
        or a format change: continue the station timeline after the estimated loss; the
        block says ``-1`` (an unknown number lost)."""
        is_reboot = counter_back or frame.boot_id != self._boot_id
        lost = self._estimate_lost(frame, station_time, use_device_clock=is_reboot)
        self._offset = self.next_stream_index + lost - frame.sample_index
        if counter_back:
            flag = "boot flag set" if frame.boot else "device time not that of the samples sent"
            self.health.fault("reboots", f"sample counter went back {self._next} -> "
                              f"{frame.sample_index} without a boot_id change ({flag}), "
                              f"about {lost} samples lost while it restarted",
                              where=f"device index {frame.sample_index}")
            return REASON_REBOOT
        if is_reboot:
            self.health.fault("reboots", f"boot_id {self._boot_id} -> {frame.boot_id}, "
                              f"about {lost} samples lost while it restarted",
                              where=f"device index {frame.sample_index}")
            return REASON_REBOOT
        self.health.fault("bad_values", f"stream format changed to {frame.sample_rate_hz} Hz "
                          f"× {frame.n_channels} channels", where=f"seq {frame.seq}")
        return REASON_FORMAT_CHANGE

    def _check_clock(self, frame: SampleFrame) -> None:
        predicted = self._predicted_time_us(frame.sample_index)
        step_s = (frame.device_time_us - predicted) / 1e6
        if abs(step_s) > self.clock_jump_threshold_s:
            self._clock_stepped(f"device clock stepped {step_s:+.3f} s",
                                where=f"device index {frame.sample_index}")
            if EVENT_CLOCK_JUMP not in self._pending_events:
                self._pending_events.append(EVENT_CLOCK_JUMP)

    def _estimate_lost(self, frame: SampleFrame, station_time: datetime,
                       use_device_clock: bool) -> int:
        """Samples missed across a reboot: from the device clock if it is plausible
        against the station clock, else from the station clock alone."""
        station_elapsed_s = 0.0
        if self._last_station is not None:
            station_elapsed_s = max(0.0, (station_time - self._last_station).total_seconds())
        by_station = max(0, round(station_elapsed_s * frame.sample_rate_hz) - frame.n_samples)
        if use_device_clock and self._rate == frame.sample_rate_hz:
            lost_s = (frame.device_time_us - self._predicted_time_us(self._next)) / 1e6
            if -0.001 <= lost_s <= station_elapsed_s + 2.0:
                return max(0, round(lost_s * frame.sample_rate_hz))
        return by_station


@dataclass
class _Hole:
    """A forward gap reported in a record stream: counters ``[first_seq, end_seq)`` of
    power-up ``boot_id``, between the records at ``after_utc`` and ``before_utc``."""

    boot_id: int
    first_seq: int
    end_seq: int
    after_utc: datetime
    before_utc: datetime
    late: set[int] = field(default_factory=set)  # counters delivered late since


class RecordTracker(SequenceTracker):
    """Gaps, duplicates, late records, reboots and clock steps of a controller's record
    stream.

    Parameters
    ----------
    health : where they are counted and logged.
    clock_jump_threshold_s : a record whose (device − station) time differs from the
        recent median by more than this is a device clock step [s]. Records arrive after
        the controller's processing delay, which varies; the default 2 s is a guess that
        must exceed that variation (configurable). It is also how far a late record's
        device time may lie outside the records around its gap [s].
    """

    unit: ClassVar[str] = "records"

    def __init__(self, health: HealthMonitor, *, clock_jump_threshold_s: float = 2.0) -> None:
        super().__init__(health, clock_jump_threshold_s=clock_jump_threshold_s,
                         offsets_kept=16)
        # (boot id, seq) -> device time, the last 256 delivered
        self._recent: dict[tuple[int, int], datetime] = {}
        self._holes: deque[_Hole] = deque(maxlen=16)  # the last forward gaps reported
        self._last_time: datetime | None = None  # device time of the newest in order

    @property
    def next_seq(self) -> int | None:
        return self._next if self._started else None

    @property
    def boot_id(self) -> int | None:
        return self._boot_id if self._started else None

    def process(self, r: WimRecord, station_time: datetime, source: str) -> WimRecord | None:
        """Account for one record; return it annotated, or None for a duplicate."""
        reason = self._pending_reason
        gap = 0
        where = f"record {r.boot_id}/{r.seq}"
        if self._started and self._recent.get((r.boot_id, r.seq)) == r.device_time_utc:
            self.health.fault("duplicates", f"record {r.boot_id}/{r.seq} already delivered",
                              where=where, level=logging.INFO)
            return None
        if not self._started:
            reason = self._start()
        elif r.boot_id != self._boot_id:
            gap, reason = -1, REASON_REBOOT
            self.health.fault("reboots", f"boot_id {self._boot_id} -> {r.boot_id}; records "
                              "of vehicles passing while it restarted are unknown", where=where)
        elif r.seq > self._next:
            gap, reason = self._forward_gap(r.seq, f"record {r.boot_id}/{self._next}")
            if self._last_time is not None:
                self._holes.append(_Hole(r.boot_id, self._next, r.seq, self._last_time,
                                         r.device_time_utc))
        elif r.seq < self._next:
            hole = self._hole_of(r)
            if hole is not None:
                return self._late(r, hole, station_time, source)
            # the counter went back without a boot change: a controller that keeps no boot
            # counter restarted. Not a duplicate (a different vehicle): never drop it.
            gap, reason = -1, REASON_REBOOT
            self.health.fault("reboots", f"record counter went back {self._next - 1} -> "
                              f"{r.seq} without a boot change", where=where)
            if self._last_time is not None and r.device_time_utc < self._last_time:
                # its clock went back too: a new vehicle may repeat an old (seq, time)
                self._recent.clear()
            self._holes.clear()
        events = [e for e in self._pending_events if e != reason]
        offset_s = (r.device_time_utc - station_time).total_seconds()
        if self._offsets and reason != REASON_REBOOT:
            base = statistics.median(self._offsets)
            if abs(offset_s - base) > self.clock_jump_threshold_s:
                self._clock_stepped(f"device clock stepped about {offset_s - base:+.3f} s",
                                    where=where)
                events.append(EVENT_CLOCK_JUMP)
        elif reason == REASON_REBOOT:
            self._offsets.clear()
        self._add_offset(offset_s)
        self._remember(r)
        self._last_time = r.device_time_utc
        self._advance(r.boot_id, r.seq + 1)
        return replace(r, station_time_utc=station_time, gap_before_records=gap, reason=reason,
                       events=tuple(events), source=source)

    def _remember(self, r: WimRecord) -> None:
        key = (r.boot_id, r.seq)
        self._recent.pop(key, None)
        self._recent[key] = r.device_time_utc
        if len(self._recent) > 256:
            del self._recent[next(iter(self._recent))]

    def _hole_of(self, r: WimRecord) -> _Hole | None:
        """The reported gap ``r`` belongs to, if it is a late arrival: same power-up, a
        counter inside the gap not delivered since, and a device time between the records
        around the gap (± ``clock_jump_threshold_s``)."""
        slack = timedelta(seconds=self.clock_jump_threshold_s)
        for hole in reversed(self._holes):
            if (hole.boot_id == r.boot_id and hole.first_seq <= r.seq < hole.end_seq
                    and r.seq not in hole.late
                    and hole.after_utc - slack <= r.device_time_utc <= hole.before_utc + slack):
                return hole
        return None

    def _late(self, r: WimRecord, hole: _Hole, station_time: datetime,
              source: str) -> WimRecord:
        """A record of a reported gap that arrived after later ones: delivered (no gap
        before it, the stream's counter and pending reason untouched) and taken out of the
        loss count."""
        hole.late.add(r.seq)
        self.health.add(f"{self.unit}_lost", -1)
        self.health.fault("late_records", f"record {r.boot_id}/{r.seq} arrived after "
                          f"{r.boot_id}/{self._next - 1}; it is no longer counted missing",
                          where=f"record {r.boot_id}/{r.seq}", level=logging.INFO)
        self._remember(r)
        return replace(r, station_time_utc=station_time, gap_before_records=0, reason=None,
                       events=(), source=source)
