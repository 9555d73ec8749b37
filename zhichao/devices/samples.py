"""WIM sample sources: the names of the sample kind and its backends, in one place.

The code lives in the kind (:mod:`zhichao.devices.sample_source`), the record type
(:mod:`zhichao.devices.data`), the tracker (:mod:`zhichao.devices.tracking`), the
codecs (:mod:`zhichao.devices.framing`, :mod:`zhichao.devices.sample_ring`) and one module
per backend (:mod:`zhichao.devices.interfaces.zsf_stream`,
:mod:`zhichao.devices.interfaces.modbus_samples`); this module re-exports them so that
``from zhichao.devices.samples import StreamSampleSource`` keeps working.
"""

from __future__ import annotations

from zhichao.devices.base import device_time
from zhichao.devices.data import SampleBlock
from zhichao.devices.interfaces.modbus_samples import ModbusSampleSource
from zhichao.devices.interfaces.zsf_stream import StreamSampleSource
from zhichao.devices.reasons import (
    EVENT_CLOCK_JUMP,
    REASON_BAD_VALUES,
    REASON_FORMAT_CHANGE,
    REASON_OVERRUN,
    REASON_REBOOT,
    REASON_RECONNECT,
    REASON_SEQUENCE_GAP,
    REASON_START,
)
from zhichao.devices.sample_ring import SAMPLE_MAGIC, SAMPLE_REGISTERS, SAMPLE_RING_BASE
from zhichao.devices.sample_source import SampleSource
from zhichao.devices.tracking import SampleTracker, SequenceTracker

__all__ = [
    "EVENT_CLOCK_JUMP", "REASON_BAD_VALUES", "REASON_FORMAT_CHANGE", "REASON_OVERRUN",
    "REASON_REBOOT", "REASON_RECONNECT", "REASON_SEQUENCE_GAP", "REASON_START",
    "SAMPLE_MAGIC", "SAMPLE_REGISTERS", "SAMPLE_RING_BASE", "ModbusSampleSource",
    "SampleBlock", "SampleSource", "SampleTracker", "SequenceTracker", "StreamSampleSource",
    "device_time",
]
