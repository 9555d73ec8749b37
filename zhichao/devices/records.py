"""WIM record sources: the names of the record kind and its backends, in one place.

The code lives in the kind (:mod:`zhichao.devices.record_source`), the record type and its
checks (:mod:`zhichao.devices.data`), the tracker (:mod:`zhichao.devices.tracking`), the
codecs (:mod:`zhichao.devices.zwr`, :mod:`zhichao.devices.record_ring`) and one module per
backend (:mod:`zhichao.devices.interfaces.zwr_stream`,
:mod:`zhichao.devices.interfaces.modbus_records`); this module re-exports them so that
``from zhichao.devices.records import WimRecord`` keeps working.
"""

from __future__ import annotations

from zhichao.devices.data import (
    MAX_AXLES,
    MAX_ROWS,
    STATUS_BITS,
    STATUS_MASK,
    RecordLimits,
    WimRecord,
    check_record,
)
from zhichao.devices.interfaces.modbus_records import ModbusRecordSource
from zhichao.devices.interfaces.zwr_stream import StreamRecordSource
from zhichao.devices.reasons import (
    EVENT_CLOCK_JUMP,
    REASON_BAD_VALUES,
    REASON_OVERRUN,
    REASON_REBOOT,
    REASON_RECONNECT,
    REASON_SEQUENCE_GAP,
    REASON_START,
)
from zhichao.devices.record_ring import (
    RECORD_MAGIC,
    RECORD_REGISTERS,
    RECORD_RING_BASE,
    SLOT_LAYOUT,
    SLOT_REGISTERS,
    decode_record_slot,
    encode_record_slot,
)
from zhichao.devices.record_source import RecordSource
from zhichao.devices.tracking import RecordTracker
from zhichao.devices.zwr import (
    LINE_TAG,
    MAX_LINE_BYTES,
    RecordFault,
    RecordLineDecoder,
    encode_record_line,
    parse_record_body,
)

__all__ = [
    "EVENT_CLOCK_JUMP", "LINE_TAG", "MAX_AXLES", "MAX_LINE_BYTES", "MAX_ROWS",
    "REASON_BAD_VALUES", "REASON_OVERRUN", "REASON_REBOOT", "REASON_RECONNECT",
    "REASON_SEQUENCE_GAP", "REASON_START", "RECORD_MAGIC", "RECORD_REGISTERS",
    "RECORD_RING_BASE", "SLOT_LAYOUT", "SLOT_REGISTERS", "STATUS_BITS", "STATUS_MASK",
    "ModbusRecordSource", "RecordFault", "RecordLimits", "RecordLineDecoder", "RecordSource",
    "RecordTracker", "StreamRecordSource", "WimRecord", "check_record", "decode_record_slot",
    "encode_record_line", "encode_record_slot", "parse_record_body",
]
