"""A weighing indicator's holding registers (:mod:`zhichao.devices.indicator_maps`) polled
over Modbus.

URLs: ``modbus+tcp://host:502?device_id=1&map=zhichao`` (or ``map=tuna-id551``),
``modbus+rtu:///dev/ttyX?…&map=…``; setting ``poll_interval_s``.
"""

from __future__ import annotations

from typing import Any

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.data import WeightReading
from zhichao.devices.errors import DeviceConfigurationError, DeviceProtocolError
from zhichao.devices.indicator_maps import (
    INDICATOR_MAPS,
    ModbusIndicatorMap,
    decode_indicator_registers,
)
from zhichao.devices.modbus import ModbusPoller
from zhichao.devices.weighing_indicator import WeighingIndicator


class ModbusIndicator(WeighingIndicator):
    """Polls gross/net/status registers (``modbus+tcp://…?map=zhichao``)."""

    def __init__(self, url: str, *, register_map: ModbusIndicatorMap | None = None,
                 poll_interval_s: float = 0.05, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._modbus = ModbusPoller(url, poll_interval_s=poll_interval_s)
        name = self._modbus.parsed.get_str("map", "zhichao")
        if register_map is None:
            if name not in INDICATOR_MAPS:
                raise DeviceConfigurationError(
                    f"{url}: unknown register map {name!r}; known: {sorted(INDICATOR_MAPS)}")
            register_map = INDICATOR_MAPS[name]
        self.map = register_map
        self.health.info.update(protocol="modbus", map=name)

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusIndicator:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        return cls(parsed.text, **parsed.settings(kwargs, poll_interval_s=float))

    def _connect(self, timeout_s: float) -> None:
        self._modbus.open(min(timeout_s, self.timeouts.read))

    def _disconnect(self) -> None:
        self._modbus.close()

    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        if not self._modbus.due(timeout_s):
            return []
        lo, count = self.map.span()
        regs = self._modbus.link().read_holding(lo, count)
        self.health.add("bytes_received", 2 * len(regs))
        try:
            return [decode_indicator_registers(regs, lo, self.map)]
        except DeviceProtocolError as exc:
            raise DeviceProtocolError(f"{self.url}: {exc}") from None
