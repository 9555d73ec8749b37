"""Weighing indicators: the station's static re-weigh scale (复检).

Protocols (sans-I/O decoders, byte-vector tested):

``xk3190``  Yaohua XK3190 continuous output, tF = 0: 12-byte frames
            ``STX sign d5..d0 decimals XH XL ETX``; XOR of bytes 2–9 in two ASCII nibbles
            (``0``–``9``/``A``–``F``, or the A22's ``0x30 + nibble`` ``:``–``?``; both accepted).
            Also the reversed ``=`` format (A26/A23p formats 1/2): ``=`` + 7 characters
            low digit first (decimal point included) + optional sign.
``toledo``  Mettler-Toledo continuous: ``STX SWA SWB SWC`` + 6 digits weight + 6 digits
            tare + ``CR`` + optional checksum (two's complement of the 7-bit sum).
``modbus``  a holding-register map (:class:`ModbusIndicatorMap`) with gross, net and a
            status word holding a stable bit.

URLs: ``xk3190+serial:///dev/ttyS0?baud_rate=9600``, ``toledo+serial:///dev/ttyS1``,
``xk3190+tcp://host:port`` (serial server), ``modbus+tcp://host:502?device_id=1&map=zhichao``.

XK3190 frames carry no stable bit: :class:`StabilityDetector` calls a weight stable after
``n_identical`` equal readings (5 by default, as the open parsers do) spanning at least
``min_duration_s``.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, DeviceUrl, Timeouts, parse_device_url
from zhichao.devices.crc import toledo_checksum, xor8
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from zhichao.devices.modbus import ModbusLink, regs_to_f32, regs_to_i32
from zhichao.devices.transports import ByteTransport, transport_for_url

LOG = logging.getLogger("zhichao.devices")
STX, ETX, CR = 0x02, 0x03, 0x0D


@dataclass(frozen=True)
class WeightReading:
    """One displayed weight.

    Attributes
    ----------
    weight_kg : displayed weight (gross or net, see ``is_net``) [kg].
    stable : True/False when the device says so, None when it cannot tell (XK3190).
    is_net : the display shows net weight.
    tare_kg : tare, when the protocol carries it [kg].
    overload : out of range (over or under).
    station_time_utc : station clock when the reading was received.
    raw : the bytes or registers it was decoded from (for logs and evidence).
    """

    weight_kg: float
    stable: bool | None
    is_net: bool = False
    tare_kg: float | None = None
    overload: bool = False
    station_time_utc: datetime = field(default_factory=utc_now)
    raw: bytes = b""


@dataclass(frozen=True)
class DecodeFault:
    kind: str  # garbage | checksum | format
    offset: int
    n_bytes: int
    detail: str = ""


def _nibble(ch: int) -> int | None:
    if 0x30 <= ch <= 0x3F:  # '0'..'9' and the A22 ':'..'?'
        return ch - 0x30
    if 0x41 <= ch <= 0x46:  # 'A'..'F'
        return ch - 0x37
    return None


def encode_xk3190(weight: float, decimals: int, *, a22_nibbles: bool = False) -> bytes:
    """One XK3190 tF=0 frame (for twins and tests)."""
    if not 0 <= decimals <= 4:
        raise ValueError("decimals must be 0..4")
    counts = round(abs(weight) * 10**decimals)
    if counts > 999_999:
        raise ValueError(f"{weight} does not fit in 6 digits with {decimals} decimals")
    body = (b"-" if weight < 0 else b"+") + f"{counts:06d}{decimals}".encode()
    x = xor8(body)
    hi, lo = x >> 4, x & 0xF
    if a22_nibbles:
        nib = bytes([0x30 + hi, 0x30 + lo])
    else:
        nib = bytes([hi + (0x30 if hi <= 9 else 0x37), lo + (0x30 if lo <= 9 else 0x37)])
    return bytes([STX]) + body + nib + bytes([ETX])


def encode_xk3190_reversed(weight: float, decimals: int, *, with_sign: bool = True) -> bytes:
    """The reversed ``=`` format: ``=`` + 7 characters low digit first (+ sign)."""
    text = f"{abs(weight):.{decimals}f}" if decimals else f"{round(abs(weight))}"
    text = text.rjust(7, "0")[-7:]
    sign = b"-" if weight < 0 else b"+"
    return b"=" + text[::-1].encode() + (sign if with_sign else b"")


class Xk3190Decoder:
    """Sans-I/O decoder of both XK3190 continuous formats (auto-detected per frame)."""

    def __init__(self, max_buffer_bytes: int = 4096) -> None:
        self._buf = bytearray()
        self._offset = 0
        self.max_buffer_bytes = max_buffer_bytes

    def feed(self, data: bytes) -> list[WeightReading | DecodeFault]:
        self._buf += data
        out: list[WeightReading | DecodeFault] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while pos < n:
            ch = buf[pos]
            if ch == STX:
                if n - pos < 12:
                    break
                frame = bytes(buf[pos:pos + 12])
                reading = self._decode_stx(frame, pos, out)
                if reading is None:
                    pos += 1
                    continue
                out.append(reading)
                pos += 12
            elif ch == ord("="):
                if n - pos < 9:  # without a sign byte, the next '=' decides
                    break
                frame = bytes(buf[pos:pos + 9])
                used = self._decode_reversed(frame, pos, out)
                if used == 0:
                    pos += 1
                    continue
                pos += used
            else:
                start = pos
                while pos < n and buf[pos] not in (STX, ord("=")):
                    pos += 1
                out.append(DecodeFault("garbage", self._offset + start, pos - start))
        if n - pos > self.max_buffer_bytes:
            out.append(DecodeFault("garbage", self._offset + pos, n - pos, "buffer overflow"))
            pos = n
        del buf[:pos]
        self._offset += pos
        return out

    def _decode_stx(self, frame: bytes, pos: int,
                    out: list[WeightReading | DecodeFault]) -> WeightReading | None:
        where = self._offset + pos
        if frame[11] != ETX or frame[1] not in b"+-" or not frame[2:9].isdigit():
            out.append(DecodeFault("format", where, 1, f"not an XK3190 frame: {frame!r}"))
            return None
        hi, lo = _nibble(frame[9]), _nibble(frame[10])
        if hi is None or lo is None or (hi << 4 | lo) != xor8(frame[1:9]):
            out.append(DecodeFault("checksum", where, 1, f"XOR mismatch in {frame!r}"))
            return None
        decimals = frame[8] - 0x30
        if decimals > 4:
            out.append(DecodeFault("format", where, 1, f"decimals {decimals} > 4"))
            return None
        value = int(frame[2:8]) / 10**decimals
        return WeightReading(-value if frame[1] == ord("-") else value, None, raw=frame)

    def _decode_reversed(self, frame: bytes, pos: int,
                         out: list[WeightReading | DecodeFault]) -> int:
        where = self._offset + pos
        body = frame[1:8].decode("ascii", "replace")[::-1]
        if len(body) < 7 or body.count(".") > 1 or not body.replace(".", "").isdigit():
            out.append(DecodeFault("format", where, 1, f"not a '=' frame: {frame!r}"))
            return 0
        value = float(body)
        used = 8
        if len(frame) > 8 and frame[8] in b"+-":
            used = 9
            if frame[8] == ord("-"):
                value = -value
        return_value = WeightReading(value, None, raw=frame[:used])
        out.append(return_value)
        return used


_TOLEDO_DECIMALS = {0: -2, 1: -1, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}


def encode_toledo(weight: float, *, tare: float = 0.0, decimals: int = 0, net: bool = False,
                  motion: bool = False, overload: bool = False, checksum: bool = True) -> bytes:
    """One Toledo continuous frame, kg, for twins and tests."""
    code = {v: k for k, v in _TOLEDO_DECIMALS.items()}[decimals]
    swa = 0x20 | code | (1 << 3)  # increment size x1
    swb = 0x20 | (1 if net else 0) | (2 if weight < 0 else 0) | (4 if overload else 0) \
        | (8 if motion else 0) | 0x10
    swc = 0x20
    factor = 10**decimals
    w = f"{round(abs(weight) * factor):06d}"[-6:]
    t = f"{round(abs(tare) * factor):06d}"[-6:]
    frame = bytes([STX, swa, swb, swc]) + w.encode() + t.encode() + bytes([CR])
    return frame + (bytes([toledo_checksum(frame)]) if checksum else b"")


class ToledoDecoder:
    """Sans-I/O decoder of Toledo continuous frames (with or without checksum byte)."""

    def __init__(self, max_buffer_bytes: int = 4096) -> None:
        self._buf = bytearray()
        self._offset = 0
        self.max_buffer_bytes = max_buffer_bytes

    def feed(self, data: bytes) -> list[WeightReading | DecodeFault]:
        self._buf += data
        out: list[WeightReading | DecodeFault] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] != STX:
                start = pos
                while pos < n and buf[pos] != STX:
                    pos += 1
                out.append(DecodeFault("garbage", self._offset + start, pos - start))
                continue
            if n - pos < 18:
                break
            frame = bytes(buf[pos:pos + 17])
            if frame[16] != CR or not frame[4:16].isdigit():
                out.append(DecodeFault("format", self._offset + pos, 1,
                                       f"not a Toledo frame: {frame!r}"))
                pos += 1
                continue
            used = 17
            nxt = buf[pos + 17]
            if nxt != STX:  # a checksum byte follows
                if nxt != toledo_checksum(frame):
                    out.append(DecodeFault("checksum", self._offset + pos, 1,
                                           f"checksum {nxt:#04x} != {toledo_checksum(frame):#04x}"))
                    pos += 18
                    continue
                used = 18
            swa, swb = frame[1], frame[2]
            exp = _TOLEDO_DECIMALS[swa & 0x07]
            scale = 10.0**-exp
            weight = int(frame[4:10]) * scale
            tare = int(frame[10:16]) * scale
            if swb & 0x02:
                weight = -weight
            if not swb & 0x10:  # pounds
                weight *= 0.45359237
                tare *= 0.45359237
            out.append(WeightReading(weight, not bool(swb & 0x08), is_net=bool(swb & 0x01),
                                     tare_kg=tare, overload=bool(swb & 0x04),
                                     raw=bytes(buf[pos:pos + used])))
            pos += used
        if n - pos > self.max_buffer_bytes:
            pos = n
        del buf[:pos]
        self._offset += pos
        return out


class StabilityDetector:
    """A weight is stable after ``n_identical`` readings within ``tolerance_kg`` of each
    other spanning at least ``min_duration_s``; a device's own stable bit, when it has
    one, must also be set."""

    def __init__(self, n_identical: int = 5, tolerance_kg: float = 0.0,
                 min_duration_s: float = 0.0) -> None:
        self.n_identical = n_identical
        self.tolerance_kg = tolerance_kg
        self.min_duration_s = min_duration_s
        self._window: deque[WeightReading] = deque(maxlen=n_identical)

    def reset(self) -> None:
        self._window.clear()

    def update(self, reading: WeightReading) -> bool:
        self._window.append(reading)
        if reading.stable is False or reading.overload or len(self._window) < self.n_identical:
            return False
        weights = [r.weight_kg for r in self._window]
        span = (self._window[-1].station_time_utc - self._window[0].station_time_utc)
        return (max(weights) - min(weights) <= self.tolerance_kg
                and span.total_seconds() >= self.min_duration_s)


class WeighingIndicator(Device):
    """Abstract weighing indicator. ``read`` returns the next reading; ``read_stable``
    waits for a stable one. Both own their deadline and reconnect as needed."""

    kind: ClassVar[str] = "indicator"

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, max_abs_kg: float = 200_000.0) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff)
        self.max_abs_kg = max_abs_kg

    @abstractmethod
    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        """Readings received within ``timeout_s``; raise DeviceConnectionError if lost."""

    def read(self, timeout_s: float | None = None) -> WeightReading | None:
        """The next plausible reading, or None if none came within ``timeout_s``."""
        deadline = time.monotonic() + (self.timeouts.read if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            if self._pending:
                return self._pending.popleft()
            if not self._ensure_connected(deadline):
                continue
            try:
                readings = self._read_internal(min(0.1, max(0.0, deadline - time.monotonic())))
            except DeviceConnectionError as exc:
                self._link_lost(str(exc))
                continue
            except DeviceProtocolError as exc:
                self.health.fault("bad_values", str(exc))
                continue
            for r in readings:
                if not abs(r.weight_kg) <= self.max_abs_kg:
                    self.health.fault("bad_values", f"absurd weight {r.weight_kg} kg",
                                      where=repr(r.raw))
                    continue
                self.health.frame_received()
                self.health.add("frames")
                self._pending.append(r)
        return self._pending.popleft() if self._pending else None

    @property
    def _pending(self) -> deque[WeightReading]:
        q: deque[WeightReading] | None = getattr(self, "_pending_q", None)
        if q is None:
            q = deque(maxlen=1000)
            self._pending_q = q
        return q

    def read_stable(self, timeout_s: float, *, n_identical: int = 5, tolerance_kg: float = 0.0,
                    min_duration_s: float = 0.0) -> WeightReading:
        """Wait for a stable reading; raises :class:`DeviceTimeoutError` if none in time."""
        detector = StabilityDetector(n_identical, tolerance_kg, min_duration_s)
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            r = self.read(remaining)
            if r is not None and detector.update(r):
                return WeightReading(r.weight_kg, True, r.is_net, r.tare_kg, r.overload,
                                     r.station_time_utc, r.raw)
        raise DeviceTimeoutError(f"{self.url}: no stable weight within {timeout_s:.3g} s "
                                 "(称重未稳定)")


class StreamIndicator(WeighingIndicator):
    """XK3190 or Toledo continuous output over serial or TCP."""

    def __init__(self, url: str, transport: ByteTransport, protocol: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if protocol not in ("xk3190", "toledo"):
            raise DeviceConfigurationError(f"unknown indicator protocol {protocol!r}")
        self.protocol = protocol
        self.transport = transport
        self._new_decoder()
        self.health.info.update(protocol=protocol, transport=transport.description)

    def _new_decoder(self) -> None:
        self.decoder: Xk3190Decoder | ToledoDecoder = (
            Xk3190Decoder() if self.protocol == "xk3190" else ToledoDecoder())

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> StreamIndicator:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        protocol, _, inner = parsed.scheme.partition("+")
        inner_url = DeviceUrl(parsed.text, inner, parsed.host, parsed.port, parsed.path,
                              parsed.query)
        return cls(parsed.text, transport_for_url(inner_url, default_baud_rate=9600), protocol,
                   **kwargs)

    def _connect(self, timeout_s: float) -> None:
        self.transport.open(timeout_s)
        self._new_decoder()

    def _disconnect(self) -> None:
        self.transport.close()

    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        data = self.transport.read(4096, timeout_s)
        if not data:
            return []
        self.health.add("bytes_received", len(data))
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


@dataclass(frozen=True)
class ModbusIndicatorMap:
    """Holding-register map of an indicator (0-based addresses).

    ``data_type`` is ``int32`` (counts × ``scale_kg``) or ``float32`` [kg]; words are
    most significant first unless ``word_order="little"``. ``stable_when_set`` False means
    the bit is a *motion* bit (stable when clear). ``valid_bit`` None when absent.
    """

    gross_address: int = 0
    net_address: int | None = 2
    status_address: int = 4
    stable_bit: int = 0
    stable_when_set: bool = True
    overload_bit: int | None = 1
    net_mode_bit: int | None = 2
    valid_bit: int | None = 15
    data_type: str = "int32"
    word_order: str = "big"
    scale_kg: float = 1.0
    decimals_address: int | None = 5


#: known maps; ``zhichao`` is the map of the simulated twin. ``tuna-id551`` follows the
#: published ID551PN table (40003/4 gross, 40005 status: b12 motion, b10 overload, b11 net,
#: b15 data OK); its data type is not confirmed — check on the device.
INDICATOR_MAPS: dict[str, ModbusIndicatorMap] = {
    "zhichao": ModbusIndicatorMap(),
    "tuna-id551": ModbusIndicatorMap(gross_address=2, net_address=None, status_address=4,
                                     stable_bit=12, stable_when_set=False, overload_bit=10,
                                     net_mode_bit=11, valid_bit=15, data_type="float32",
                                     decimals_address=None),
}


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

    def _value(self, regs: list[int]) -> float:
        words = regs if self.map.word_order == "big" else regs[::-1]
        if self.map.data_type == "float32":
            return regs_to_f32(words)
        return regs_to_i32(words) * self.map.scale_kg

    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        wait = self._last_poll + self.poll_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_s))
            if wait > timeout_s:
                return []
        self._last_poll = time.monotonic()
        if self._link is None:
            raise DeviceConnectionError(f"{self.url}: not connected")
        m = self.map
        addresses = [m.gross_address, m.gross_address + 1, m.status_address]
        if m.net_address is not None:
            addresses += [m.net_address, m.net_address + 1]
        if m.decimals_address is not None:
            addresses.append(m.decimals_address)
        lo, hi = min(addresses), max(addresses)
        regs = self._link.read_holding(lo, hi - lo + 1)
        self.health.add("bytes_received", 2 * len(regs))

        def at(a: int, n: int = 1) -> list[int]:
            return regs[a - lo:a - lo + n]

        status = at(m.status_address)[0]

        def bit(b: int | None) -> bool:
            return b is not None and bool(status >> b & 1)

        if m.valid_bit is not None and not bit(m.valid_bit):
            raise DeviceProtocolError(f"{self.url}: status {status:#06x} says data not valid")
        divisor = 10 ** at(m.decimals_address)[0] if m.decimals_address is not None else 1
        if divisor > 10**6:
            raise DeviceProtocolError(f"{self.url}: absurd decimals register {divisor}")
        gross = self._value(at(m.gross_address, 2)) / divisor
        is_net = bit(m.net_mode_bit)
        net = self._value(at(m.net_address, 2)) / divisor if m.net_address is not None else None
        weight = net if (is_net and net is not None) else gross
        stable = bit(m.stable_bit) if m.stable_when_set else not bit(m.stable_bit)
        tare = (gross - net) if net is not None else None
        raw = b"".join(r.to_bytes(2, "big") for r in regs)
        return [WeightReading(weight, stable, is_net, tare, bit(m.overload_bit), raw=raw)]
