"""A weighing indicator's holding registers (:mod:`zhichao.devices.indicator_maps`) polled
over Modbus.

URLs: ``modbus+tcp://host:502?device_id=1&map=zhichao`` (or ``map=tuna-id551``),
``modbus+rtu:///dev/ttyX?…&map=…``; setting ``poll_interval_s``.
"""

from __future__ import annotations

import time
from typing import Any

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.data import WeightReading
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
    DeviceProtocolError,
)
from zhichao.devices.indicator_maps import (
    INDICATOR_MAPS,
    ModbusIndicatorMap,
    decode_indicator_registers,
)
from zhichao.devices.modbus import ModbusLink
from zhichao.devices.weighing_indicator import WeighingIndicator


class ModbusIndicator(WeighingIndicator):
    """Polls gross/net/status registers (``modbus+tcp://…?map=zhichao``)."""

    def __init__(self, url: str, *, register_map: ModbusIndicatorMap | None = None,
                 poll_interval_s: float = 0.05, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._parsed = parse_device_url(url)
        name = self._parsed.get_str("map", "zhichao")
        if register_map is None:
            if name not in INDICATOR_MAPS:
                raise DeviceConfigurationError(
                    f"{url}: unknown register map {name!r}; known: {sorted(INDICATOR_MAPS)}")
            register_map = INDICATOR_MAPS[name]
        self.map = register_map
        self.poll_interval_s = poll_interval_s
        self._link: ModbusLink | None = None
        self._last_poll = 0.0
        self.health.info.update(protocol="modbus", map=name)

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusIndicator:
        return cls(url if isinstance(url, str) else url.text, **kwargs)

    def _connect(self, timeout_s: float) -> None:
        link = ModbusLink(self._parsed, timeout_s=min(timeout_s, self.timeouts.read))
        link.connect()
        self._link = link

    def _disconnect(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        wait = self._last_poll + self.poll_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_s))
            if wait > timeout_s:
                return []
        self._last_poll = time.monotonic()
        if self._link is None:
            raise DeviceConnectionError(f"{self.url}: not connected")
        lo, count = self.map.span()
        regs = self._link.read_holding(lo, count)
        self.health.add("bytes_received", 2 * len(regs))
        try:
            return [decode_indicator_registers(regs, lo, self.map)]
        except DeviceProtocolError as exc:
            raise DeviceProtocolError(f"{self.url}: {exc}") from None
