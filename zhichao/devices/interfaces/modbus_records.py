"""The zhichao Modbus record ring (:mod:`zhichao.devices.record_ring`) polled over Modbus.

URLs: ``modbus+tcp://host:502?device_id=1&kind=records``,
``modbus+rtu:///dev/ttyX?baud_rate=115200&kind=records``; setting ``poll_interval_s``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.data import WimRecord, check_record
from zhichao.devices.errors import DeviceConnectionError, DeviceProtocolError
from zhichao.devices.modbus import ModbusLink, regs_to_u32
from zhichao.devices.reasons import REASON_BAD_VALUES, REASON_OVERRUN
from zhichao.devices.record_ring import (
    HEADER_COUNT,
    RECORD_MAGIC,
    RECORD_RING_BASE,
    RING_STATUS_BITS,
    RING_STATUS_FAULTS,
    SLOT_REGISTERS,
    decode_record_slot,
)
from zhichao.devices.record_source import RecordSource


class ModbusRecordSource(RecordSource):
    """Polls the record ring of :data:`RECORD_REGISTERS` over Modbus TCP or RTU.

    The driver keeps its own read pointer (the next record counter it expects), so a lost
    reply loses nothing: it reads the same slot again. A slot whose CRC or counter does not
    match is read again at the next poll (the controller was writing it); records already
    overwritten in the ring are reported as a ``fifo_overrun`` gap of exactly that many.
    """

    poll_s: ClassVar[float] = 0.02

    def __init__(self, url: str, *, poll_interval_s: float = 0.05,
                 max_records_per_poll: int = 16, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._parsed = parse_device_url(url)
        self.poll_interval_s = poll_interval_s
        self.max_records_per_poll = max_records_per_poll
        self._link: ModbusLink | None = None
        self._last_poll = 0.0
        self._torn_retries = 0
        self._next_read = 0
        self._read_boot = -1
        self.health.info["protocol"] = "zhichao record ring v1"

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusRecordSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        if "poll_interval_s" in parsed.query and "poll_interval_s" not in kwargs:
            kwargs["poll_interval_s"] = parsed.get_float("poll_interval_s", 0.05)
        return cls(parsed.text, **kwargs)

    def _modbus(self) -> ModbusLink:
        if self._link is None:
            raise DeviceConnectionError(f"{self.url}: not connected")
        return self._link

    def _connect(self, timeout_s: float) -> None:
        link = ModbusLink(self._parsed, timeout_s=min(timeout_s, self.timeouts.read))
        link.connect()
        self._link = link
        head = link.read_holding(0, HEADER_COUNT)
        if head[0] != RECORD_MAGIC:
            link.close()
            self._link = None
            raise DeviceConnectionError(
                f"{self.url}: not a zhichao record ring (register 0 = {head[0]:#06x})")
        self.health.info.update(boot_id=head[2], ring_slots=head[6])

    def _disconnect(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        wait = self._last_poll + self.poll_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_s))
            if wait > timeout_s:
                return []
        self._last_poll = time.monotonic()
        link = self._modbus()
        head = link.read_holding(0, HEADER_COUNT)
        self.health.add("bytes_received", 2 * HEADER_COUNT)
        if head[0] != RECORD_MAGIC:
            raise DeviceProtocolError(f"{self.url}: register 0 = {head[0]:#06x}, not the magic")
        self._note_status(head[3], RING_STATUS_BITS, RING_STATUS_FAULTS)
        boot_id, total, ring, slot_size = head[2], regs_to_u32(head[4:6]), head[6], head[7]
        if ring < 2 or slot_size != SLOT_REGISTERS:
            raise DeviceProtocolError(f"{self.url}: absurd header registers {head}")
        out: list[WimRecord | str] = []
        if self._read_boot != boot_id or self._next_read > total:
            # first poll, or the controller restarted: take what its ring still holds
            self._next_read = max(0, total - ring)
            self._read_boot = boot_id
        elif self._next_read < total - ring:
            out.append(REASON_OVERRUN)
            self._next_read = total - ring
        self.health.info["boot_id"] = boot_id
        stop = min(total, self._next_read + self.max_records_per_poll)
        while self._next_read < stop:
            seq = self._next_read
            slot = link.read_holding(RECORD_RING_BASE + (seq % ring) * SLOT_REGISTERS,
                                     SLOT_REGISTERS)
            self.health.add("bytes_received", 2 * SLOT_REGISTERS)
            try:
                record: WimRecord | None = decode_record_slot(slot, boot_id)
                detail = ""
            except ValueError as exc:
                record, detail = None, str(exc)
            if record is not None and record.seq != seq:
                detail = f"slot of record {seq} holds record {record.seq}"
            if detail and self._torn_retries < 3:
                # the controller may be writing that slot right now: read it again later
                self._torn_retries += 1
                self.health.fault("torn_reads", detail, where=f"record {boot_id}/{seq}",
                                  level=logging.INFO)
                break
            self._torn_retries = 0
            self._next_read += 1
            if record is not None and not detail:
                detail = check_record(record, self.limits)
            if record is None or detail:
                self.health.fault("bad_values", f"record rejected: {detail}",
                                  where=f"record {boot_id}/{seq}")
                out.append(REASON_BAD_VALUES)
                continue
            out.append(record)
        return out
