"""XK3190 or Toledo continuous output (:mod:`zhichao.devices.indicator_formats`) over serial
or TCP (a serial server).

URLs: ``xk3190+serial:///dev/ttyS0?baud_rate=9600``, ``xk3190+tcp://host:port``,
``toledo+serial:///dev/ttyS1``, ``toledo+tcp://host:port``; ``weight_unit=t`` for an
XK3190 that displays tonnes (default ``kg``: its frames do not say).
"""

from __future__ import annotations

from typing import Any

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.data import WeightReading
from zhichao.devices.errors import DeviceConfigurationError
from zhichao.devices.indicator_formats import XK3190_UNITS, ToledoDecoder, Xk3190Decoder
from zhichao.devices.transports import ByteTransport, StreamBackend, transport_for_url
from zhichao.devices.weighing_indicator import WeighingIndicator


class StreamIndicator(StreamBackend, WeighingIndicator):
    """XK3190 or Toledo continuous output over serial or TCP."""

    def __init__(self, url: str, transport: ByteTransport, protocol: str, *,
                 weight_unit: str = "kg", **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if protocol not in ("xk3190", "toledo"):
            raise DeviceConfigurationError(f"unknown indicator protocol {protocol!r}")
        if weight_unit not in XK3190_UNITS or (protocol == "toledo" and weight_unit != "kg"):
            raise DeviceConfigurationError(
                f"{url}: weight_unit {weight_unit!r}; an XK3190 takes kg or t (what its display "
                "shows), a Toledo frame says its unit itself")
        self.protocol = protocol
        self.weight_unit = weight_unit
        self.transport = transport
        self._reset_decoder()
        self.health.info.update(protocol=protocol, transport=transport.description)
        if protocol == "xk3190":
            self.health.info["weight_unit"] = weight_unit

    def _reset_decoder(self) -> None:
        self.decoder: Xk3190Decoder | ToledoDecoder = (
            Xk3190Decoder(weight_unit=self.weight_unit) if self.protocol == "xk3190"
            else ToledoDecoder())

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> StreamIndicator:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        protocol = parsed.scheme.partition("+")[0]
        return cls(parsed.text, transport_for_url(parsed, default_baud_rate=9600), protocol,
                   **parsed.settings(kwargs, weight_unit=str))

    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        data = self._receive(4096, timeout_s)
        if not data:
            return []
        readings: list[WeightReading] = []
        for item in self.decoder.feed(data):
            if isinstance(item, WeightReading):
                readings.append(item)
            else:
                name = {"garbage": "bytes_discarded", "checksum": "crc_errors",
                        "format": "bad_headers"}[item.kind]
                self.health.fault(name, item.detail or f"{item.n_bytes} bytes",
                                  n=item.n_bytes if item.kind == "garbage" else 1,
                                  where=f"stream byte {item.offset}")
        return readings
