"""Weighing indicators (复检 scales): the names of the indicator kind and its backends.

The code lives in the kind (:mod:`zhichao.devices.weighing_indicator`), the reading type
(:mod:`zhichao.devices.data`), the codecs (:mod:`zhichao.devices.indicator_formats`:
XK3190 and Toledo continuous output; :mod:`zhichao.devices.indicator_maps`: Modbus register
maps) and one module per backend (:mod:`zhichao.devices.interfaces.stream_indicator`,
:mod:`zhichao.devices.interfaces.modbus_indicator`); this module re-exports them so that
``from zhichao.devices.indicators import StreamIndicator`` keeps working.
"""

from __future__ import annotations

from zhichao.devices.data import WeightReading, format_kg
from zhichao.devices.indicator_formats import (
    CR,
    ETX,
    STX,
    DecodeFault,
    ToledoDecoder,
    Xk3190Decoder,
    encode_toledo,
    encode_xk3190,
    encode_xk3190_reversed,
)
from zhichao.devices.indicator_maps import (
    INDICATOR_MAPS,
    ModbusIndicatorMap,
    decode_indicator_registers,
)
from zhichao.devices.interfaces.modbus_indicator import ModbusIndicator
from zhichao.devices.interfaces.stream_indicator import StreamIndicator
from zhichao.devices.weighing_indicator import StabilityDetector, WeighingIndicator

__all__ = [
    "CR", "ETX", "INDICATOR_MAPS", "STX", "DecodeFault", "ModbusIndicator",
    "ModbusIndicatorMap", "StabilityDetector", "StreamIndicator", "ToledoDecoder",
    "WeighingIndicator", "WeightReading", "Xk3190Decoder", "decode_indicator_registers",
    "encode_toledo", "encode_xk3190", "encode_xk3190_reversed", "format_kg",
]
