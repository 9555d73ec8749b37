"""A thin, synchronous Modbus link over pymodbus 3.x (TCP or RTU), with error translation.

URLs: ``modbus+tcp://host:502?device_id=1`` and
``modbus+rtu:///dev/ttyUSB0?baud_rate=19200&parity=E&device_id=1``. pymodbus is imported
only here, and only when a Modbus backend is opened. Every pymodbus exception becomes a
:class:`~zhichao.devices.errors.DeviceConnectionError`; a Modbus exception *response*
(illegal address …), and a request pymodbus refuses to build (an address beyond 65535,
a ``ValueError``), become a :class:`~zhichao.devices.errors.DeviceProtocolError`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
    DeviceNotAvailableError,
    DeviceProtocolError,
)

MAX_REGISTERS_PER_READ = 125
#: registers a Modbus unit can address (0 … 65535)
MODBUS_ADDRESSES = 65536


@dataclass(frozen=True)
class ModbusSettings:
    """A Modbus URL's settings, read (and checked) when the device is built, not when it
    first connects: ``device_id`` (unit, 1), and for RTU the serial line's ``baud_rate``
    (19200), ``bytesize`` (8), ``parity`` (N, E or O) and ``stopbits`` (1)."""

    device_id: int
    baud_rate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @classmethod
    def from_url(cls, url: DeviceUrl) -> ModbusSettings:
        if url.scheme not in ("modbus+tcp", "modbus+rtu"):
            raise DeviceConfigurationError(f"{url.text}: expected modbus+tcp:// or modbus+rtu://")
        device_id = url.get_int("device_id", 1)
        if url.scheme == "modbus+tcp":
            return cls(device_id)
        if not url.path:
            raise DeviceConfigurationError(f"{url.text}: needs a serial port path")
        settings = cls(device_id, url.get_int("baud_rate", 19200), url.get_int("bytesize", 8),
                       url.get_str("parity", "N").upper(), url.get_int("stopbits", 1))
        if settings.parity not in ("N", "E", "O"):
            raise DeviceConfigurationError(
                f"{url.text}: parity must be N, E or O, got {settings.parity!r}")
        return settings


class ModbusLink:
    """One Modbus client; ``read_holding`` / ``write_holding`` raise only our errors."""

    def __init__(self, url: DeviceUrl, *, timeout_s: float,
                 settings: ModbusSettings | None = None) -> None:
        self.settings = settings if settings is not None else ModbusSettings.from_url(url)
        self.url = url
        self.device_id = self.settings.device_id
        self.timeout_s = timeout_s
        self._client: Any = None

    def connect(self) -> None:
        self.close()
        try:
            from pymodbus.client import ModbusSerialClient, ModbusTcpClient
            from pymodbus.framer import FramerType
        except ImportError:  # pragma: no cover - pymodbus is a dependency
            raise DeviceNotAvailableError("pymodbus is not installed") from None
        if self.url.scheme == "modbus+tcp":
            host, port = self.url.host_port(502)
            client: Any = ModbusTcpClient(host, port=port, timeout=self.timeout_s, retries=0,
                                          reconnect_delay=0, reconnect_delay_max=0)
        else:
            s = self.settings
            client = ModbusSerialClient(
                self.url.path, framer=FramerType.RTU, baudrate=s.baud_rate,
                bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits,
                timeout=self.timeout_s, retries=0, reconnect_delay=0, reconnect_delay_max=0)
        try:
            ok = client.connect()
        except Exception as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise DeviceConnectionError(f"{self.url.text}: connect failed: {exc}") from exc
        if not ok:
            with contextlib.suppress(Exception):
                client.close()
            raise DeviceConnectionError(f"{self.url.text}: connect failed")
        self._client = client

    def _require(self) -> Any:
        if self._client is None:
            raise DeviceConnectionError(f"{self.url.text}: not connected")
        return self._client

    def read_holding(self, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers (split into ≤125-register requests)."""
        out: list[int] = []
        while count > 0:
            n = min(count, MAX_REGISTERS_PER_READ)
            out.extend(self._read_once(address, n))
            address += n
            count -= n
        return out

    def _read_once(self, address: int, count: int) -> list[int]:
        from pymodbus.exceptions import ModbusException

        client = self._require()
        if address < 0 or count < 1 or address + count > MODBUS_ADDRESSES:
            raise DeviceProtocolError(
                f"{self.url.text}: read {address}+{count}: beyond register 65535")
        try:
            rr = client.read_holding_registers(address, count=count, device_id=self.device_id)
        except ModbusException as exc:
            raise DeviceConnectionError(f"{self.url.text}: read {address}+{count}: {exc}") from exc
        except OSError as exc:
            raise DeviceConnectionError(f"{self.url.text}: read {address}+{count}: {exc}") from exc
        except ValueError as exc:  # pymodbus refused to build the request
            raise DeviceProtocolError(f"{self.url.text}: read {address}+{count}: {exc}") from exc
        if rr.isError():
            raise DeviceProtocolError(f"{self.url.text}: read {address}+{count} refused: {rr}")
        regs = list(rr.registers)
        if len(regs) < count:
            raise DeviceProtocolError(
                f"{self.url.text}: read {address}+{count} returned {len(regs)} registers")
        return regs[:count]

    def write_holding(self, address: int, values: Sequence[int]) -> None:
        from pymodbus.exceptions import ModbusException

        client = self._require()
        try:
            rr = client.write_registers(address, list(values), device_id=self.device_id)
        except (ModbusException, OSError) as exc:
            raise DeviceConnectionError(f"{self.url.text}: write {address}: {exc}") from exc
        except ValueError as exc:  # pymodbus refused to build the request
            raise DeviceProtocolError(f"{self.url.text}: write {address}: {exc}") from exc
        if rr.isError():
            raise DeviceProtocolError(f"{self.url.text}: write {address} refused: {rr}")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


class ModbusPoller:
    """What every polled Modbus backend keeps: its parsed URL, one link at a time, and the
    time of its last poll, so that polls are at least ``poll_interval_s`` apart [s]."""

    def __init__(self, url: str, *, poll_interval_s: float) -> None:
        self.parsed = parse_device_url(url)
        self.settings = ModbusSettings.from_url(self.parsed)  # checked now, not at connect
        self.poll_interval_s = poll_interval_s
        self._link: ModbusLink | None = None
        self._last_poll = 0.0

    def open(self, timeout_s: float) -> ModbusLink:
        """Connect a new link (timeouts of ``timeout_s`` per request)."""
        link = ModbusLink(self.parsed, timeout_s=timeout_s, settings=self.settings)
        link.connect()
        self._link = link
        return link

    def open_ring(self, timeout_s: float, *, count: int, magic: int, what: str) -> list[int]:
        """Connect and read the first ``count`` registers; register 0 must be ``magic``,
        or the link is closed and :class:`DeviceConnectionError` names ``what`` it expected."""
        head = self.open(timeout_s).read_holding(0, count)
        if head[0] != magic:
            self.close()
            raise DeviceConnectionError(
                f"{self.parsed.text}: not a {what} (register 0 = {head[0]:#06x})")
        return head

    def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def link(self) -> ModbusLink:
        """The open link; :class:`DeviceConnectionError` when there is none."""
        if self._link is None:
            raise DeviceConnectionError(f"{self.parsed.text}: not connected")
        return self._link

    def due(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the next poll is due; True when it is, and
        the poll counts as made now."""
        wait = self._last_poll + self.poll_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_s))
            if wait > timeout_s:
                return False
        self._last_poll = time.monotonic()
        return True


def regs_to_u32(regs: Sequence[int]) -> int:
    """Two registers, most significant word first."""
    return (regs[0] << 16) | regs[1]


def regs_to_i32(regs: Sequence[int]) -> int:
    v = regs_to_u32(regs)
    return v - (1 << 32) if v & 0x80000000 else v


def regs_to_u64(regs: Sequence[int]) -> int:
    """Four registers, most significant word first."""
    return (regs[0] << 48) | (regs[1] << 32) | (regs[2] << 16) | regs[3]


def regs_to_i64(regs: Sequence[int]) -> int:
    v = regs_to_u64(regs)
    return v - (1 << 64) if v & (1 << 63) else v


def u64_to_regs(value: int) -> list[int]:
    value &= (1 << 64) - 1
    return [(value >> 48) & 0xFFFF, (value >> 32) & 0xFFFF, (value >> 16) & 0xFFFF, value & 0xFFFF]


def u32_to_regs(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


def regs_to_f32(regs: Sequence[int]) -> float:
    import struct

    return float(struct.unpack(">f", struct.pack(">HH", regs[0], regs[1]))[0])


def f32_to_regs(value: float) -> list[int]:
    import struct

    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]
