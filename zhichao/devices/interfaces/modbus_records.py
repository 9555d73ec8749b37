"""The zhichao Modbus record ring (:mod:`zhichao.devices.record_ring`) polled over Modbus.

URLs: ``modbus+tcp://host:502?device_id=1&kind=records``,
``modbus+rtu:///dev/ttyX?baud_rate=115200&kind=records``; setting ``poll_interval_s``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.data import WimRecord, check_record
from zhichao.devices.errors import DeviceProtocolError
from zhichao.devices.modbus import MODBUS_ADDRESSES, ModbusPoller, regs_to_u32
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
        self._modbus = ModbusPoller(url, poll_interval_s=poll_interval_s)
        self.max_records_per_poll = max_records_per_poll
        self._torn_retries = 0
        self._next_read = 0
        self._read_boot = -1
        self.health.info["protocol"] = "zhichao record ring v1"

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusRecordSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        return cls(parsed.text, **parsed.settings(kwargs, poll_interval_s=float))

    def _connect(self, timeout_s: float) -> None:
        head = self._modbus.open_ring(min(timeout_s, self.timeouts.read), count=HEADER_COUNT,
                                      magic=RECORD_MAGIC, what="zhichao record ring")
        self.health.info.update(boot_id=head[2], ring_slots=head[6])

    def _disconnect(self) -> None:
        self._modbus.close()

    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        if not self._modbus.due(timeout_s):
            return []
        link = self._modbus.link()
        head = link.read_holding(0, HEADER_COUNT)
        self.health.add("bytes_received", 2 * HEADER_COUNT)
        if head[0] != RECORD_MAGIC:
            raise DeviceProtocolError(f"{self.url}: register 0 = {head[0]:#06x}, not the magic")
        self._note_status(head[3], RING_STATUS_BITS, RING_STATUS_FAULTS)
        boot_id, total, ring, slot_size = head[2], regs_to_u32(head[4:6]), head[6], head[7]
        if ring < 2 or slot_size != SLOT_REGISTERS:
            raise DeviceProtocolError(f"{self.url}: absurd header registers {head}")
        if RECORD_RING_BASE + ring * SLOT_REGISTERS > MODBUS_ADDRESSES:
            raise DeviceProtocolError(
                f"{self.url}: a ring of {ring} slots ends at register "
                f"{RECORD_RING_BASE + ring * SLOT_REGISTERS - 1}, beyond 65535")
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
