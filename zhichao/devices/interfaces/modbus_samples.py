"""The zhichao Modbus sample ring (:mod:`zhichao.devices.sample_ring`) polled over Modbus.

URLs: ``modbus+tcp://host:502?device_id=1``, ``modbus+rtu:///dev/ttyX?baud_rate=115200``;
setting ``poll_interval_s``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.errors import DeviceProtocolError
from zhichao.devices.framing import ENCODING_INT16, SampleFrame
from zhichao.devices.modbus import (
    MODBUS_ADDRESSES,
    ModbusPoller,
    regs_to_f32,
    regs_to_i64,
    regs_to_u64,
)
from zhichao.devices.reasons import REASON_OVERRUN
from zhichao.devices.sample_ring import (
    SAMPLE_MAGIC,
    SAMPLE_RING_BASE,
    SAMPLE_STATUS_BITS,
    SAMPLE_STATUS_FAULTS,
    STATUS_COUNT,
)
from zhichao.devices.sample_source import SampleSource


class ModbusSampleSource(SampleSource):
    """Polls the sample ring of :data:`SAMPLE_REGISTERS` over Modbus TCP or RTU.

    The driver keeps its own read pointer, so a lost reply never loses data: it simply
    reads the same samples again. It reads at most ``ring - guard`` samples behind the
    newest and re-reads the sample counter after each poll, so samples overwritten while
    they were being read are discarded and reported as a ``fifo_overrun`` gap. A new
    driver starts there too, or at the point a restarted reader gives
    (:meth:`resume_at`) while the ring still holds it: samples the reader already has
    are not sent again, and those made while none read are not lost. After a power-up
    (a new boot id, or a counter below the pointer) it starts at the oldest safe row of
    the new power-up (row 0 while the ring still holds it).

    One poll reads at most ``max_samples_per_poll`` rows and issues no further row
    request once it has spent ``max_poll_read_s`` [s] (the rest is read at the next
    poll), so a slow link (RTU) never holds the caller long past its deadline.
    """

    poll_s: ClassVar[float] = 0.02

    def __init__(self, url: str, *, poll_interval_s: float = 0.02,
                 max_samples_per_poll: int = 4096, max_poll_read_s: float = 0.1,
                 **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self._modbus = ModbusPoller(url, poll_interval_s=poll_interval_s)
        self.max_samples_per_poll = max_samples_per_poll
        self.max_poll_read_s = max_poll_read_s
        self._seq = 0
        self._resume: tuple[int, int] | None = None  # (boot id, device index) to start at

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusSampleSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        return cls(parsed.text, **parsed.settings(kwargs, poll_interval_s=float))

    def resume_at(self, boot_id: int, device_index: int) -> None:
        self._resume = (boot_id, device_index)

    def _first_start(self, boot_id: int, oldest_safe: int, total: int) -> int:
        """Where the first poll reads from: the reader's resume point in this power-up
        while the ring still holds it (older: an overrun), else the oldest safe sample."""
        if self._resume is None or self._resume[0] != boot_id or self._resume[1] > total:
            return oldest_safe
        if self._resume[1] < oldest_safe:
            self.tracker.note(REASON_OVERRUN)
            return oldest_safe
        return self._resume[1]

    def _connect(self, timeout_s: float) -> None:
        status = self._modbus.open_ring(min(timeout_s, self.timeouts.read), count=STATUS_COUNT,
                                        magic=SAMPLE_MAGIC, what="zhichao sample ring")
        self.health.info.update(n_channels=status[2], sample_rate_hz=status[3],
                                ring_samples=status[16], boot_id=status[4])

    def _disconnect(self) -> None:
        self._modbus.close()

    def _start_row(self, boot_id: int, total: int, oldest_safe: int) -> int:
        """The first row this poll reads: the pointer while it belongs to this power-up
        and the ring holds it; else the resume point or the oldest safe row."""
        nxt = self.tracker.next_device_index
        if nxt is None:
            return self._first_start(boot_id, oldest_safe, total)
        if self.tracker.boot_id != boot_id or nxt > total:
            # the unit restarted (a new boot id, or its counter fell below the pointer):
            # the new power-up from its oldest safe row, 0 while the ring holds it
            return oldest_safe
        if nxt < oldest_safe:
            self.tracker.note(REASON_OVERRUN)
            return oldest_safe
        return nxt

    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        if not self._modbus.due(timeout_s):
            return []
        link = self._modbus.link()
        st = link.read_holding(0, STATUS_COUNT)
        if st[0] != SAMPLE_MAGIC:
            raise DeviceProtocolError(f"{self.url}: register 0 = {st[0]:#06x}, not the magic")
        self._note_status(st[5], SAMPLE_STATUS_BITS, SAMPLE_STATUS_FAULTS)
        n_ch, rate, boot_id, ring = st[2], st[3], st[4], st[16]
        scale = regs_to_f32(st[6:8])
        total = regs_to_u64(st[8:12])
        newest_us = regs_to_i64(st[12:16])
        if not (1 <= n_ch <= 64 and rate > 0 and ring > 8 and scale > 0 and np.isfinite(scale)):
            raise DeviceProtocolError(f"{self.url}: absurd status registers {st}")
        if SAMPLE_RING_BASE + ring * n_ch > MODBUS_ADDRESSES:
            raise DeviceProtocolError(
                f"{self.url}: a ring of {ring} rows × {n_ch} channels ends at register "
                f"{SAMPLE_RING_BASE + ring * n_ch - 1}, beyond 65535")
        guard = max(4, ring // 4)
        oldest_safe = max(0, total - (ring - guard))
        start = self._start_row(boot_id, total, oldest_safe)
        self.health.info["boot_id"] = boot_id
        stop = min(total, start + self.max_samples_per_poll)
        if stop <= start:
            return []
        per_read = max(1, 125 // n_ch)
        values: list[int] = []
        read_until = time.monotonic() + self.max_poll_read_s
        i = start
        while i < stop:
            if i > start and time.monotonic() >= read_until:
                break  # the rest at the next poll
            slot = i % ring
            n = min(per_read, stop - i, ring - slot)
            values.extend(link.read_holding(SAMPLE_RING_BASE + slot * n_ch, n * n_ch))
            i += n
        stop = i
        total_after = regs_to_u64(link.read_holding(8, 4))
        if total_after < total:  # rebooted while we read: keep nothing of this poll
            return []
        # the unit may be writing row total_after (not yet counted) into the slot of row
        # total_after − R: keep only rows from total_after − R + 1 on
        valid_from = max(start, total_after - ring + 1)
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
        self.health.add("bytes_received", 2 * (len(values) + 2 * STATUS_COUNT))
        return [SampleFrame(boot_id, self._seq, valid_from, t_first_us, float(rate),
                            np.ascontiguousarray(samples), False, ENCODING_INT16, scale)]
