"""Continuous output formats of weighing indicators: sans-I/O decoders and encoders.

Both decoders share :class:`StreamDecoder` (buffer, stream offsets, garbage runs between
frames, the buffer limit); each format adds only how a frame that starts at a given byte
is decoded.

``xk3190``  Yaohua XK3190 continuous output, tF = 0: 12-byte frames
            ``STX sign d5..d0 decimals XH XL ETX``; XOR of bytes 2–9 in two ASCII nibbles
            (``0``–``9``/``A``–``F``, or the A22's ``0x30 + nibble`` ``:``–``?``; both accepted).
            Also the reversed ``=`` format (A26/A23p formats 1/2): ``=`` + 7 characters
            low digit first (decimal point included) + optional sign. The frames carry no
            unit: the indicator sends the weight in its display unit, kg unless it was set
            up in t (``weight_unit="t"``).
``toledo``  Mettler-Toledo continuous: ``STX SWA SWB SWC`` + 6 digits weight + 6 digits
            tare + ``CR`` + optional checksum (two's complement of the 7-bit sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zhichao.devices.crc import toledo_checksum, xor8
from zhichao.devices.data import WeightReading

STX, ETX, CR = 0x02, 0x03, 0x0D
#: display units of an XK3190 and their factor to kg
XK3190_UNITS: dict[str, int] = {"kg": 1, "t": 1000}


@dataclass(frozen=True)
class DecodeFault:
    kind: str  # garbage | checksum | format
    offset: int
    n_bytes: int
    detail: str = ""


class StreamDecoder:
    """Sans-I/O skeleton of a continuous-output decoder: ``feed(bytes)`` returns readings
    and faults in stream order. Bytes that cannot start a frame (:attr:`starts`) are one
    ``garbage`` fault per run; more than ``max_buffer_bytes`` waiting for a frame's end
    are dropped as ``garbage`` (buffer overflow)."""

    #: bytes that may begin a frame
    starts: ClassVar[bytes] = b""

    def __init__(self, max_buffer_bytes: int = 4096) -> None:
        self._buf = bytearray()
        self._offset = 0
        self.max_buffer_bytes = max_buffer_bytes

    def _decode_at(self, buf: bytearray, pos: int,
                   out: list[WeightReading | DecodeFault]) -> int | None:
        """Decode the frame starting at ``buf[pos]`` (a start byte), appending its reading
        or fault to ``out``; return the bytes consumed (≥ 1), or None to wait for more."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[WeightReading | DecodeFault]:
        self._buf += data
        out: list[WeightReading | DecodeFault] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] in self.starts:
                used = self._decode_at(buf, pos, out)
                if used is None:
                    break
                pos += used
                continue
            start = pos
            while pos < n and buf[pos] not in self.starts:
                pos += 1
            out.append(DecodeFault("garbage", self._offset + start, pos - start))
        if n - pos > self.max_buffer_bytes:
            out.append(DecodeFault("garbage", self._offset + pos, n - pos, "buffer overflow"))
            pos = n
        del buf[:pos]
        self._offset += pos
        return out


# -- Yaohua XK3190 ------------------------------------------------------------------------

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


class Xk3190Decoder(StreamDecoder):
    """Both XK3190 continuous formats (auto-detected per frame).

    ``weight_unit`` is the indicator's display unit (``kg`` or ``t``, :data:`XK3190_UNITS`):
    the frames do not say it, so it must be set to what the indicator shows.
    """

    starts: ClassVar[bytes] = bytes([STX]) + b"="

    def __init__(self, max_buffer_bytes: int = 4096, *, weight_unit: str = "kg") -> None:
        super().__init__(max_buffer_bytes)
        if weight_unit not in XK3190_UNITS:
            raise ValueError(f"weight_unit must be one of {sorted(XK3190_UNITS)}")
        self.weight_unit = weight_unit
        self._factor = XK3190_UNITS[weight_unit]
        self._shift = len(str(self._factor)) - 1  # decimals lost by the factor (t: 3)

    def _reading(self, counts: int, decimals: int, raw: bytes) -> WeightReading:
        """``counts`` display digits with ``decimals`` after the point, in kg (one correctly
        rounded division: 32.450 t is exactly 32450 kg)."""
        return WeightReading(counts * self._factor / 10**decimals, None, raw=raw,
                             decimals=max(0, decimals - self._shift))

    def _decode_at(self, buf: bytearray, pos: int,
                   out: list[WeightReading | DecodeFault]) -> int | None:
        if buf[pos] == STX:
            if len(buf) - pos < 12:
                return None
            reading = self._decode_stx(bytes(buf[pos:pos + 12]), pos, out)
            if reading is None:
                return 1
            out.append(reading)
            return 12
        if len(buf) - pos < 9:  # without a sign byte, the next '=' decides
            return None
        return self._decode_reversed(bytes(buf[pos:pos + 9]), pos, out) or 1

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
        counts = int(frame[2:8])
        return self._reading(-counts if frame[1] == ord("-") else counts, decimals, frame)

    def _decode_reversed(self, frame: bytes, pos: int,
                         out: list[WeightReading | DecodeFault]) -> int:
        where = self._offset + pos
        body = frame[1:8].decode("ascii", "replace")[::-1]
        if len(body) < 7 or body.count(".") > 1 or not body.replace(".", "").isdigit():
            out.append(DecodeFault("format", where, 1, f"not a '=' frame: {frame!r}"))
            return 0
        counts = int(body.replace(".", ""))
        decimals = len(body) - body.index(".") - 1 if "." in body else 0
        used = 8
        if len(frame) > 8 and frame[8] in b"+-":
            used = 9
            if frame[8] == ord("-"):
                counts = -counts
        out.append(self._reading(counts, decimals, frame[:used]))
        return used


# -- Mettler-Toledo continuous --------------------------------------------------------------

#: SWA bits 0–2 -> decimal places of the displayed weight (negative: the last digit counts
#: tens or hundreds)
TOLEDO_DECIMALS = {0: -2, 1: -1, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}
LB_KG = 0.45359237


def encode_toledo(weight: float, *, tare: float = 0.0, decimals: int = 0, net: bool = False,
                  motion: bool = False, overload: bool = False, checksum: bool = True) -> bytes:
    """One Toledo continuous frame, kg, for twins and tests."""
    code = {v: k for k, v in TOLEDO_DECIMALS.items()}[decimals]
    swa = 0x20 | code | (1 << 3)  # increment size x1
    swb = 0x20 | (1 if net else 0) | (2 if weight < 0 else 0) | (4 if overload else 0) \
        | (8 if motion else 0) | 0x10
    swc = 0x20
    factor = 10**decimals
    w = f"{round(abs(weight) * factor):06d}"[-6:]
    t = f"{round(abs(tare) * factor):06d}"[-6:]
    frame = bytes([STX, swa, swb, swc]) + w.encode() + t.encode() + bytes([CR])
    return frame + (bytes([toledo_checksum(frame)]) if checksum else b"")


class ToledoDecoder(StreamDecoder):
    """Toledo continuous frames (with or without the checksum byte)."""

    starts: ClassVar[bytes] = bytes([STX])

    def _decode_at(self, buf: bytearray, pos: int,
                   out: list[WeightReading | DecodeFault]) -> int | None:
        if len(buf) - pos < 18:
            return None
        frame = bytes(buf[pos:pos + 17])
        where = self._offset + pos
        if frame[16] != CR or not frame[4:16].isdigit():
            out.append(DecodeFault("format", where, 1, f"not a Toledo frame: {frame!r}"))
            return 1
        used = 17
        nxt = buf[pos + 17]
        if nxt != STX:  # a checksum byte follows
            if nxt != toledo_checksum(frame):
                out.append(DecodeFault("checksum", where, 1,
                                       f"checksum {nxt:#04x} != {toledo_checksum(frame):#04x}"))
                return 18
            used = 18
        swa, swb = frame[1], frame[2]
        exp = TOLEDO_DECIMALS[swa & 0x07]
        scale = 10.0**-exp
        weight = int(frame[4:10]) * scale
        tare = int(frame[10:16]) * scale
        if swb & 0x02:
            weight = -weight
        decimals: int | None = max(0, exp)
        if not swb & 0x10:  # pounds
            weight *= LB_KG
            tare *= LB_KG
            decimals = None
        out.append(WeightReading(weight, not bool(swb & 0x08), is_net=bool(swb & 0x01),
                                 tare_kg=tare, overload=bool(swb & 0x04),
                                 raw=bytes(buf[pos:pos + used]), decimals=decimals))
        return used
