"""WIM sample sources: raw strip-sensor samples from a data-acquisition unit.

:class:`SampleSource` is the abstract device kind. Its public :meth:`SampleSource.read_block`
owns the read deadline, reconnection with back-off, stall detection, bad-value checks and
the sequence bookkeeping (:class:`SequenceTracker`); a backend implements only
``_connect``, ``_disconnect`` and ``_read_frames_internal``.

Backends:

``tcp://host:port``, ``serial:///dev/ttyX?baud_rate=921600``
    :class:`StreamSampleSource`, the zhichao binary frame ``ZSF/1`` (see
    :mod:`zhichao.devices.framing`) over a byte stream.
``modbus+tcp://host:port``, ``modbus+rtu:///dev/ttyX``
    :class:`ModbusSampleSource`, polling the sample ring and status registers of
    :data:`SAMPLE_REGISTERS`.

The guarantee given to the weighing core: every sample received intact is delivered
exactly once, at its true index (``first_index``), and every discontinuity — lost frames,
reconnects, reboots, FIFO overruns, rejected frames — is reported on the next block as
``gap_before_samples`` (> 0: exactly that many samples are missing; -1: unknown) with a
``reason``. A device clock step never creates a fake gap: indices come from the device's
sample counter, not its clock.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, DeviceUrl, Timeouts, parse_device_url
from zhichao.devices.errors import (
    DeviceConnectionError,
    DeviceProtocolError,
)
from zhichao.devices.framing import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, FrameFault, SampleFrame
from zhichao.devices.health import HealthMonitor
from zhichao.devices.modbus import ModbusLink, regs_to_f32, regs_to_i64, regs_to_u64
from zhichao.devices.transports import ByteTransport, transport_for_url

LOG = logging.getLogger("zhichao.devices")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: reasons a block may carry
REASON_START = "start"
REASON_SEQUENCE_GAP = "sequence_gap"
REASON_RECONNECT = "reconnect"
REASON_REBOOT = "device_reboot"
REASON_OVERRUN = "fifo_overrun"
REASON_BAD_VALUES = "bad_values"
REASON_FORMAT_CHANGE = "format_change"
EVENT_CLOCK_JUMP = "clock_jump"


def device_time(us: int) -> datetime:
    """Device clock [µs since 1970 UTC] as a tz-aware UTC datetime (clamped to datetime's range)."""
    us = min(max(us, -62_135_596_800_000_000), 253_402_300_799_000_000)
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class SampleBlock:
    """A run of consecutive samples, as fed to the weighing core.

    Attributes
    ----------
    first_index : station stream index of ``samples[0]``. During the first power-up
        period it equals the device's sample counter; after a reboot it continues the
        station's timeline (estimated from the device clock, else the station clock).
    samples : float32 ``[n, n_channels]`` [output units].
    device_time_utc : device clock at ``samples[0]``.
    station_time_utc : station clock when the data was received.
    gap_before_samples : 0 contiguous with the previous block; > 0 exactly this many
        samples are missing before this block; -1 an unknown number are missing.
    reason : why this block is not a plain continuation (``start``, ``sequence_gap``,
        ``reconnect``, ``device_reboot``, ``fifo_overrun``, ``bad_values``,
        ``format_change``), None otherwise.
    sample_rate_hz : device sample rate [Hz].
    events : other things that happened, e.g. ``clock_jump`` (no samples lost).
    boot_id : the device's power-up counter.
    device_index : the device's own counter for ``samples[0]``.
    """

    first_index: int
    samples: npt.NDArray[np.float32]
    device_time_utc: datetime
    station_time_utc: datetime
    gap_before_samples: int
    reason: str | None
    sample_rate_hz: float
    events: tuple[str, ...] = ()
    boot_id: int = 0
    device_index: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def end_index(self) -> int:
        """Stream index one past the last sample."""
        return self.first_index + self.n_samples

    @property
    def plain(self) -> bool:
        """A plain continuation: no gap, no reason, no event."""
        return self.gap_before_samples == 0 and self.reason is None and not self.events


class SequenceTracker:
    """Sans-I/O: turns device frames into :class:`SampleBlock` s with gaps made explicit.

    Parameters
    ----------
    health : where gaps, duplicates, reboots and clock jumps are counted and logged.
    clock_jump_threshold_s : a device time that differs from the one its sample counter
        predicts by more than this is a clock step [s].
    """

    def __init__(self, health: HealthMonitor, *, clock_jump_threshold_s: float = 0.5) -> None:
        self.health = health
        self.clock_jump_threshold_s = clock_jump_threshold_s
        self._started = False
        self._boot_id = 0
        self._next_device = 0  # device index expected next
        self._offset = 0  # stream index = device index + offset
        self._rate = 0.0
        self._n_channels = 0
        self._anchor: tuple[int, int] = (0, 0)  # (device index, device time µs)
        self._last_station: datetime | None = None
        self._pending_reason: str | None = None
        self._pending_events: list[str] = []
        self._offsets: deque[float] = deque(maxlen=64)

    @property
    def next_stream_index(self) -> int:
        return self._next_device + self._offset

    @property
    def next_device_index(self) -> int | None:
        return self._next_device if self._started else None

    def note(self, reason: str) -> None:
        """Something happened on the link (``reconnect``, ``bad_values`` …): the next block
        carries it as its reason, with or without a gap."""
        if self._pending_reason is None or self._pending_reason == REASON_RECONNECT:
            self._pending_reason = reason
        if reason not in self._pending_events:
            self._pending_events.append(reason)

    def _predicted_time_us(self, device_index: int) -> float:
        idx, t_us = self._anchor
        return t_us + (device_index - idx) * 1e6 / self._rate

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
            self._started = True
            reason = reason or REASON_START
            self._offset = 0
        elif (frame.boot_id != self._boot_id or rate != self._rate
              or frame.n_channels != self._n_channels):
            is_reboot = frame.boot_id != self._boot_id
            lost = self._estimate_lost(frame, station_time, use_device_clock=is_reboot)
            new_stream = self.next_stream_index + lost
            self._offset = new_stream - device_index
            gap = -1
            reason = REASON_REBOOT if is_reboot else REASON_FORMAT_CHANGE
            if is_reboot:
                self.health.fault("reboots", f"boot_id {self._boot_id} -> {frame.boot_id}, "
                                  f"about {lost} samples lost while it restarted",
                                  where=f"device index {device_index}")
            else:
                self.health.fault("bad_values", f"stream format changed to {rate} Hz × "
                                  f"{frame.n_channels} channels", where=f"seq {frame.seq}")
        elif device_index > self._next_device:
            gap = device_index - self._next_device
            reason = reason if reason not in (None, REASON_START) else REASON_SEQUENCE_GAP
            self.health.fault("sequence_gaps", f"{gap} samples missing ({reason})",
                              where=f"device index {self._next_device}")
            self.health.add("samples_lost", gap)
        elif device_index < self._next_device:
            overlap = self._next_device - device_index
            if overlap >= frame.n_samples:
                self.health.fault("duplicates", f"frame seq {frame.seq} already delivered",
                                  where=f"device index {device_index}", level=logging.INFO)
                return None
            samples = samples[overlap:]
            device_index += overlap
        else:
            pass
        if gap == 0 and not first and reason not in (REASON_REBOOT, REASON_FORMAT_CHANGE):
            self._check_clock(frame)
            if EVENT_CLOCK_JUMP in self._pending_events:
                events = list(self._pending_events)
        first_time_us = frame.device_time_us + round(
            (device_index - frame.sample_index) * 1e6 / rate)
        self._boot_id = frame.boot_id
        self._rate = rate
        self._n_channels = frame.n_channels
        self._anchor = (device_index, first_time_us)
        n = int(samples.shape[0])
        self._next_device = device_index + n
        self._last_station = station_time
        end_time_s = first_time_us / 1e6 + n / rate
        self._offsets.append(end_time_s - station_time.timestamp())
        self.health.clock_offset_s = max(self._offsets)
        self._pending_reason = None
        self._pending_events = []
        if reason is not None and reason not in events:
            events.insert(0, reason)
        events_out = tuple(e for e in events if e != reason)
        return SampleBlock(
            first_index=device_index + self._offset, samples=samples,
            device_time_utc=device_time(first_time_us), station_time_utc=station_time,
            gap_before_samples=gap, reason=reason, sample_rate_hz=rate, events=events_out,
            boot_id=frame.boot_id, device_index=device_index)

    def _check_clock(self, frame: SampleFrame) -> None:
        predicted = self._predicted_time_us(frame.sample_index)
        step_s = (frame.device_time_us - predicted) / 1e6
        if abs(step_s) > self.clock_jump_threshold_s:
            self.health.fault("clock_jumps", f"device clock stepped {step_s:+.3f} s",
                              where=f"device index {frame.sample_index}")
            self._offsets.clear()
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
            lost_s = (frame.device_time_us - self._predicted_time_us(self._next_device)) / 1e6
            if -0.001 <= lost_s <= station_elapsed_s + 2.0:
                return max(0, round(lost_s * frame.sample_rate_hz))
        return by_station


class SampleSource(Device):
    """Abstract WIM sample source (template method: :meth:`read_block`).

    Parameters
    ----------
    url : the device URL (also the ``where`` of its log lines).
    timeouts : per-phase limits; ``read_s`` is the default wait of :meth:`read_block`.
    backoff : reconnection back-off.
    stall_timeout_s : a link silent this long is declared stalled and reconnected [s].
    max_abs_value : a frame holding a value beyond this (or NaN/inf) is rejected and
        reported as a gap [output units].
    clock_jump_threshold_s : see :class:`SequenceTracker` [s].
    max_block_samples : contiguous frames are merged into blocks of at most this many.
    """

    kind: ClassVar[str] = "samples"
    #: seconds one call of the hook may block
    poll_s: ClassVar[float] = 0.05

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, stall_timeout_s: float = 2.0,
                 max_abs_value: float = 1e9, clock_jump_threshold_s: float = 0.5,
                 max_block_samples: int = 8192) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff)
        self.stall_timeout_s = stall_timeout_s
        self.max_abs_value = max_abs_value
        self.max_block_samples = max_block_samples
        self.tracker = SequenceTracker(self.health, clock_jump_threshold_s=clock_jump_threshold_s)
        self._queue: deque[SampleBlock] = deque()
        self._last_data = time.monotonic()

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        """Return the frames received within ``timeout_s`` (possibly none).

        Raise :class:`DeviceConnectionError` when the link is lost. Count and log bad
        bytes in ``self.health``; never raise for them.
        """

    # -- template ------------------------------------------------------------------------
    def _on_connected(self, reconnect: bool) -> None:
        self._last_data = time.monotonic()
        if reconnect:
            self.tracker.note(REASON_RECONNECT)

    def read_block(self, timeout_s: float | None = None) -> SampleBlock | None:
        """The next block of samples, or None if none arrived within ``timeout_s``.

        Never raises for link or data problems: they are counted in health and reported
        on the blocks. Raises :class:`~zhichao.devices.errors.DeviceClosedError` after
        :meth:`close`.
        """
        wait_s = self.timeouts.read if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait_s
        while True:
            if self._queue:
                return self._pop_merged()
            now = time.monotonic()
            if now >= deadline and timeout_s != 0:
                return None
            if not self._ensure_connected(deadline):
                if time.monotonic() >= deadline:
                    return None
                continue
            remaining = max(0.0, deadline - time.monotonic())
            bytes_before = self.health.count("bytes_received")
            try:
                frames = self._read_frames_internal(min(remaining, self.poll_s))
            except DeviceConnectionError as exc:
                self._link_lost(str(exc))
                continue
            except DeviceProtocolError as exc:
                self.health.fault("bad_values", str(exc))
                frames = []
            if self.health.count("bytes_received") != bytes_before:
                self._last_data = time.monotonic()
            if frames:
                self._accept(frames)
            elif time.monotonic() - self._last_data > self.stall_timeout_s:
                self.health.fault("stalls", f"no data for {self.stall_timeout_s:.3g} s")
                self._link_lost("stalled")
            if timeout_s == 0 and not self._queue:
                return None

    def blocks(self, *, max_blocks: int, timeout_s: float) -> list[SampleBlock]:
        """Read until ``max_blocks`` blocks or ``timeout_s`` seconds, whichever first."""
        deadline = time.monotonic() + timeout_s
        out: list[SampleBlock] = []
        while len(out) < max_blocks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            block = self.read_block(remaining)
            if block is not None:
                out.append(block)
        return out

    def _accept(self, frames: list[SampleFrame]) -> None:
        station = utc_now()
        self._last_data = time.monotonic()
        for frame in frames:
            data = frame.samples
            rate = frame.sample_rate_hz
            if not (np.isfinite(rate) and 0 < rate <= 1e6):
                self.health.fault("bad_values", f"frame seq {frame.seq}: sample rate {rate} Hz; "
                                  "rejected", where=f"device index {frame.sample_index}")
                self.tracker.note(REASON_BAD_VALUES)
                continue
            if not np.isfinite(data).all() or float(np.abs(data).max()) > self.max_abs_value:
                self.health.fault("bad_values", f"frame seq {frame.seq}: NaN, inf or |value| > "
                                  f"{self.max_abs_value:g}; rejected",
                                  where=f"device index {frame.sample_index}")
                self.tracker.note(REASON_BAD_VALUES)
                continue
            block = self.tracker.process(frame, station)
            if block is None:
                continue
            self.health.frame_received()
            self.health.add("frames")
            self.health.add("samples", block.n_samples)
            self._queue.append(block)

    def _pop_merged(self) -> SampleBlock:
        first = self._queue.popleft()
        if not self._queue or not self._queue[0].plain:
            return first
        parts = [first.samples]
        n = first.n_samples
        end = first.end_index
        while (self._queue and self._queue[0].plain and self._queue[0].first_index == end
               and n + self._queue[0].n_samples <= self.max_block_samples):
            nxt = self._queue.popleft()
            parts.append(nxt.samples)
            n += nxt.n_samples
            end = nxt.end_index
        if len(parts) == 1:
            return first
        return replace(first, samples=np.concatenate(parts))

    def info(self) -> dict[str, object]:
        return dict(self.health.info)


class StreamSampleSource(SampleSource):
    """``ZSF/1`` frames over a byte stream (TCP or serial)."""

    def __init__(self, url: str, transport: ByteTransport, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, read_chunk_bytes: int = 1 << 16,
                 **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self.transport = transport
        self.decoder = FrameDecoder(max_frame_bytes)
        self.read_chunk_bytes = read_chunk_bytes
        self.health.info["transport"] = transport.description

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> StreamSampleSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        transport = transport_for_url(parsed, default_baud_rate=921600)
        for key, conv in (("stall_timeout_s", float), ("max_frame_bytes", int)):
            if key in parsed.query and key not in kwargs:
                kwargs[key] = conv(parsed.query[key])
        return cls(parsed.text, transport, **kwargs)

    def _connect(self, timeout_s: float) -> None:
        self.transport.open(timeout_s)
        self.decoder.reset()

    def _disconnect(self) -> None:
        self.transport.close()

    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        data = self.transport.read(self.read_chunk_bytes, timeout_s)
        if not data:
            return []
        self.health.add("bytes_received", len(data))
        frames: list[SampleFrame] = []
        for item in self.decoder.feed(data):
            if isinstance(item, SampleFrame):
                if "sample_rate_hz" not in self.health.info:
                    self.health.info.update(sample_rate_hz=item.sample_rate_hz,
                                            n_channels=item.n_channels, boot_id=item.boot_id)
                frames.append(item)
            else:
                self._count_fault(item)
        return frames

    _FAULT_COUNTER: ClassVar[dict[str, str]] = {
        "garbage": "bytes_discarded", "bad_header": "bad_headers",
        "oversize": "oversize_frames", "crc": "crc_errors"}

    def _count_fault(self, fault: FrameFault) -> None:
        name = self._FAULT_COUNTER[fault.kind]
        n = fault.n_bytes if fault.kind == "garbage" else 1
        detail = f"{fault.n_bytes} bytes" if fault.kind == "garbage" else fault.detail
        self.health.fault(name, detail, n=n, where=f"stream byte {fault.offset}",
                          level=logging.INFO if fault.kind == "garbage" else logging.WARNING)


# -- Modbus sample ring -------------------------------------------------------------------

#: Holding-register map of the zhichao Modbus sample ring (0-based register addresses).
SAMPLE_REGISTERS: dict[str, tuple[int, int]] = {
    # name: (address, count)
    "magic": (0, 1),            # 0x5A43 ("ZC")
    "map_version": (1, 1),      # 1
    "n_channels": (2, 1),
    "sample_rate_hz": (3, 1),   # [Hz], integer
    "boot_id": (4, 1),          # +1 at each power-up
    "status": (5, 1),           # bit 0 acquiring, bit 1 ADC fault, bit 2 clock not synced
    "scale": (6, 2),            # float32, output units per count, high word first
    "total_samples": (8, 4),    # u64 samples written since power-up, high word first
    "newest_time_us": (12, 4),  # i64 device clock at sample total-1 [µs since 1970 UTC]
    "ring_samples": (16, 1),    # ring capacity R [samples]
}
SAMPLE_MAGIC = 0x5A43
SAMPLE_RING_BASE = 100  # sample i, channel c at SAMPLE_RING_BASE + (i mod R) * C + c (int16)
_STATUS_COUNT = 17


class ModbusSampleSource(SampleSource):
    """Polls the sample ring of :data:`SAMPLE_REGISTERS` over Modbus TCP or RTU.

    The driver keeps its own read pointer, so a lost reply never loses data: it simply
    reads the same samples again. It reads at most ``ring - guard`` samples behind the
    newest and re-reads the sample counter after each poll, so samples overwritten while
    they were being read are discarded and reported as a ``fifo_overrun`` gap.
    """

    poll_s: ClassVar[float] = 0.02

    def __init__(self, url: str, *, poll_interval_s: float = 0.02,
                 max_samples_per_poll: int = 4096, **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self._parsed = parse_device_url(url)
        self.poll_interval_s = poll_interval_s
        self.max_samples_per_poll = max_samples_per_poll
        self._link: object = None
        self._seq = 0
        self._n_channels = 0
        self._ring = 0
        self._last_poll = 0.0

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusSampleSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        if "poll_interval_s" in parsed.query and "poll_interval_s" not in kwargs:
            kwargs["poll_interval_s"] = parsed.get_float("poll_interval_s", 0.02)
        return cls(parsed.text, **kwargs)

    def _modbus(self) -> ModbusLink:
        if not isinstance(self._link, ModbusLink):
            raise DeviceConnectionError(f"{self.url}: not connected")
        return self._link

    def _connect(self, timeout_s: float) -> None:
        link = ModbusLink(self._parsed, timeout_s=min(timeout_s, self.timeouts.read))
        link.connect()
        self._link = link
        status = link.read_holding(0, _STATUS_COUNT)
        if status[0] != SAMPLE_MAGIC:
            link.close()
            raise DeviceConnectionError(
                f"{self.url}: not a zhichao sample ring (register 0 = {status[0]:#06x})")
        self.health.info.update(n_channels=status[2], sample_rate_hz=status[3],
                                ring_samples=status[16], boot_id=status[4])

    def _disconnect(self) -> None:
        link, self._link = self._link, None
        if isinstance(link, ModbusLink):
            link.close()

    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        wait = self._last_poll + self.poll_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_s))
            if wait > timeout_s:
                return []
        self._last_poll = time.monotonic()
        link = self._modbus()
        st = link.read_holding(0, _STATUS_COUNT)
        if st[0] != SAMPLE_MAGIC:
            raise DeviceProtocolError(f"{self.url}: register 0 = {st[0]:#06x}, not the magic")
        n_ch, rate, boot_id, ring = st[2], st[3], st[4], st[16]
        scale = regs_to_f32(st[6:8])
        total = regs_to_u64(st[8:12])
        newest_us = regs_to_i64(st[12:16])
        if not (1 <= n_ch <= 64 and rate > 0 and ring > 8 and scale > 0 and np.isfinite(scale)):
            raise DeviceProtocolError(f"{self.url}: absurd status registers {st}")
        guard = max(4, ring // 4)
        oldest_safe = max(0, total - (ring - guard))
        nxt = self.tracker.next_device_index
        same_boot = nxt is not None and self.health.info.get("boot_id") == boot_id
        if not same_boot or nxt is None or nxt > total:
            start = oldest_safe
        elif nxt < oldest_safe:
            self.tracker.note(REASON_OVERRUN)
            start = oldest_safe
        else:
            start = nxt
        self.health.info["boot_id"] = boot_id
        stop = min(total, start + self.max_samples_per_poll)
        if stop <= start:
            return []
        per_read = max(1, 125 // n_ch)
        values: list[int] = []
        i = start
        while i < stop:
            slot = i % ring
            n = min(per_read, stop - i, ring - slot)
            values.extend(link.read_holding(SAMPLE_RING_BASE + slot * n_ch, n * n_ch))
            i += n
        total_after = regs_to_u64(link.read_holding(8, 4))
        valid_from = max(start, total_after - ring) if total_after >= total else start
        if total_after < total:  # rebooted while we read: keep nothing of this poll
            return []
        raw = np.asarray(values, dtype=np.uint16).view(np.int16).reshape(-1, n_ch)
        raw = raw[valid_from - start:]
        if raw.shape[0] == 0:
            self.tracker.note(REASON_OVERRUN)
            return []
        if valid_from > start:
            self.tracker.note(REASON_OVERRUN)
        samples = raw.astype(np.float32) * np.float32(scale)
        t_first_us = newest_us - round((total - 1 - valid_from) * 1e6 / rate)
        self._seq += 1
        self.health.add("bytes_received", 2 * (len(values) + 2 * _STATUS_COUNT))
        return [SampleFrame(boot_id, self._seq, valid_from, t_first_us, float(rate),
                            np.ascontiguousarray(samples), False, 1, scale)]

