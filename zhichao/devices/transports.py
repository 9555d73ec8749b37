"""Byte transports: TCP sockets and serial ports, behind one small interface.

A transport only moves bytes; framing lives in sans-I/O decoders. Foreign errors
(``OSError``, ``serial.SerialException``) are translated here into
:class:`~zhichao.devices.errors.DeviceConnectionError` / ``DeviceTimeoutError``.
"""

from __future__ import annotations

import contextlib
import socket
from abc import ABC, abstractmethod
from typing import Any

from zhichao.devices.base import DeviceUrl
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
    DeviceNotAvailableError,
    DeviceTimeoutError,
)
from zhichao.devices.health import HealthMonitor


class ByteTransport(ABC):
    """A bidirectional byte stream.

    ``read`` returns ``b""`` when nothing arrived within ``timeout_s`` and raises
    :class:`DeviceConnectionError` when the link is gone.
    """

    description: str = "transport"

    @abstractmethod
    def open(self, timeout_s: float) -> None: ...

    @abstractmethod
    def read(self, max_bytes: int, timeout_s: float) -> bytes: ...

    @abstractmethod
    def write(self, data: bytes, timeout_s: float) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class TcpTransport(ByteTransport):
    """A TCP client connection (``tcp://host:port``)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.description = f"tcp://{host}:{port}"
        self._sock: socket.socket | None = None

    def open(self, timeout_s: float) -> None:
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        except TimeoutError as exc:
            raise DeviceTimeoutError(f"{self.description}: connect timed out "
                                     f"after {timeout_s:.3g} s") from exc
        except OSError as exc:
            raise DeviceConnectionError(f"{self.description}: connect failed: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock = sock

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise DeviceConnectionError(f"{self.description}: not connected")
        return self._sock

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        sock = self._socket()
        try:
            sock.settimeout(timeout_s)
            data = sock.recv(max_bytes)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise DeviceConnectionError(f"{self.description}: read failed: {exc}") from exc
        if not data:
            raise DeviceConnectionError(f"{self.description}: connection closed by the device")
        return data

    def write(self, data: bytes, timeout_s: float) -> None:
        sock = self._socket()
        try:
            sock.settimeout(timeout_s)
            sock.sendall(data)
        except TimeoutError as exc:
            raise DeviceTimeoutError(f"{self.description}: write timed out") from exc
        except OSError as exc:
            raise DeviceConnectionError(f"{self.description}: write failed: {exc}") from exc

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class SerialTransport(ByteTransport):
    """A serial port through pyserial: a device path or any pyserial URL.

    ``port`` is ``/dev/ttyUSB0``, a pty slave path, or ``loop://`` / ``socket://h:p``.
    """

    def __init__(self, port: str, *, baud_rate: int = 9600, bytesize: int = 8,
                 parity: str = "N", stopbits: float = 1) -> None:
        self.port = port
        self.baud_rate = baud_rate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.description = f"serial:{port}@{baud_rate}"
        self._serial: Any = None

    def open(self, timeout_s: float) -> None:
        self.close()
        try:
            import serial
        except ImportError:  # pragma: no cover - pyserial is a dependency
            raise DeviceNotAvailableError("pyserial is not installed") from None
        try:
            ser = serial.serial_for_url(
                self.port, baudrate=self.baud_rate, bytesize=self.bytesize,
                parity=self.parity, stopbits=self.stopbits, timeout=timeout_s,
                write_timeout=timeout_s, exclusive=None, do_not_open=True)
            ser.open()
        except (serial.SerialException, OSError) as exc:
            raise DeviceConnectionError(f"{self.description}: open failed: {exc}") from exc
        except ValueError as exc:
            raise DeviceConfigurationError(f"{self.description}: {exc}") from exc
        self._serial = ser

    def _port(self) -> Any:
        if self._serial is None:
            raise DeviceConnectionError(f"{self.description}: not open")
        return self._serial

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        import serial

        ser = self._port()
        try:
            ser.timeout = timeout_s
            first: bytes = ser.read(1)
            if not first:
                return b""
            waiting = ser.in_waiting
            if waiting and max_bytes > 1:
                return first + bytes(ser.read(min(waiting, max_bytes - 1)))
            return first
        except (serial.SerialException, OSError) as exc:
            raise DeviceConnectionError(f"{self.description}: read failed: {exc}") from exc

    def write(self, data: bytes, timeout_s: float) -> None:
        import serial

        ser = self._port()
        try:
            ser.write_timeout = timeout_s
            ser.write(data)
        except serial.SerialTimeoutException as exc:
            raise DeviceTimeoutError(f"{self.description}: write timed out") from exc
        except (serial.SerialException, OSError) as exc:
            raise DeviceConnectionError(f"{self.description}: write failed: {exc}") from exc

    def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(Exception):  # closing a dead port may fail
                ser.close()


class StreamBackend(ABC):
    """What the backends over a byte stream share (mixed in before their device kind):
    the link is the transport, a new link starts a new decoder, and bytes received are
    counted in health."""

    transport: ByteTransport
    health: HealthMonitor

    @abstractmethod
    def _reset_decoder(self) -> None:
        """Start decoding afresh (after a (re)connection)."""

    def _connect(self, timeout_s: float) -> None:
        self.transport.open(timeout_s)
        self._reset_decoder()

    def _disconnect(self) -> None:
        self.transport.close()

    def _receive(self, max_bytes: int, timeout_s: float) -> bytes:
        """Bytes received within ``timeout_s`` (``b""``: none), counted in health."""
        data = self.transport.read(max_bytes, timeout_s)
        if data:
            self.health.add("bytes_received", len(data))
        return data


def transport_for_url(url: DeviceUrl, *, default_baud_rate: int = 9600) -> ByteTransport:
    """``tcp://host:port`` or ``serial:///dev/x?baud_rate=…`` (also ``serial:loop://``); a
    protocol prefix (``zsf+tcp``, ``xk3190+serial`` …) names what travels on the link."""
    link = url.scheme.rpartition("+")[2]
    if link == "tcp":
        host, port = url.host_port()
        return TcpTransport(host, port)
    if link == "serial":
        if not url.path:
            raise DeviceConfigurationError(f"{url.text}: serial URL needs a port path")
        return SerialTransport(
            url.path, baud_rate=url.get_int("baud_rate", default_baud_rate),
            bytesize=url.get_int("bytesize", 8), parity=url.get_str("parity", "N").upper(),
            stopbits=url.get_float("stopbits", 1))
    raise DeviceConfigurationError(f"{url.text}: expected tcp:// or serial://")
