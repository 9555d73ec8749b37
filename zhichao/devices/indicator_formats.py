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
            Whether ``=`` frames carry the sign byte is latched from the stream
            (:class:`OptionalByteLatch`): once it is, a frame without one is refused.
``toledo``  Mettler-Toledo continuous: ``STX SWA SWB SWC`` + 6 digits weight + 6 digits
            tare + ``CR`` + optional checksum (two's complement of the 7-bit sum). Whether
            the stream carries the checksum is a setting or latched from the stream; the
            unit (SWB bit 4, SWC bits 0–2) is converted to kg; a display the status bytes
            call no weight (power-up not zeroed, expanded ×10) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from zhichao.devices.crc import toledo_checksum, xor8
from zhichao.devices.data import WeightReading

STX, ETX, CR = 0x02, 0x03, 0x0D
#: display units of an XK3190 and their factor to kg
XK3190_UNITS: dict[str, int] = {"kg": 1, "t": 1000}
#: consecutive frames that must agree before a stream's optional byte (the Toledo checksum,
#: the XK3190 ``=`` sign) is latched as present or absent
LATCH_FRAMES = 3


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


class OptionalByteLatch:
    """Whether a stream carries an optional byte (Toledo's checksum, the XK3190 ``=``
    format's sign), decided once for the stream, never per frame.

    ``setting`` True/False fixes it. None (auto) latches :attr:`state` after
    :data:`LATCH_FRAMES` consecutive frames that show it one way; until then ``state`` is
    None and a decoder delivers only frames that carry the byte. Latched absent, it still
    latches present after :data:`LATCH_FRAMES` consecutive frames carrying it (stricter);
    latched present, it never goes back: from then on a frame without it is refused.
    """

    def __init__(self, setting: bool | None = None) -> None:
        self.setting = setting
        self.state: bool | None = setting
        self._run_present = 0
        self._run_absent = 0

    def saw(self, present: bool) -> None:
        """A well-formed frame that showed the byte (``present``) or not."""
        if self.setting is not None:
            return
        if present:
            self._run_present, self._run_absent = self._run_present + 1, 0
            if self._run_present >= LATCH_FRAMES:
                self.state = True
        else:
            self._run_present, self._run_absent = 0, self._run_absent + 1
            if self.state is None and self._run_absent >= LATCH_FRAMES:
                self.state = False

    def broken(self) -> None:
        """A frame that fits neither way (a fault): the runs start again."""
        self._run_present = self._run_absent = 0


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

    ``reversed_sign``: whether ``=`` frames carry the sign byte (True/False), or None to
    latch it from the stream (:class:`OptionalByteLatch`). A frame without the sign is
    delivered only once the stream is known to carry none: a negative weight whose ``-``
    was lost on the line must not read as positive. A frame that does not match the
    latched (or set) form is refused as ``format``.
    """

    starts: ClassVar[bytes] = bytes([STX]) + b"="

    def __init__(self, max_buffer_bytes: int = 4096, *, weight_unit: str = "kg",
                 reversed_sign: bool | None = None) -> None:
        super().__init__(max_buffer_bytes)
        if weight_unit not in XK3190_UNITS:
            raise ValueError(f"weight_unit must be one of {sorted(XK3190_UNITS)}")
        self.weight_unit = weight_unit
        self.sign = OptionalByteLatch(reversed_sign)
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
        signed = frame[8] in b"+-"
        used = 9 if signed else 8
        self.sign.saw(signed)
        if signed and self.sign.setting is False:
            out.append(DecodeFault("format", where, used,
                                   f"sign byte in {frame!r}, set up without one"))
            return used
        if not signed:
            if self.sign.state is True:
                out.append(DecodeFault("format", where, used,
                                       f"sign byte missing in {frame[:used]!r}"))
                return used
            if self.sign.state is None:
                return used  # held: a lost '-' would read as positive
        if frame[8] == ord("-"):
            counts = -counts
        out.append(self._reading(counts, decimals, frame[:used]))
        return used


# -- Mettler-Toledo continuous --------------------------------------------------------------

#: SWA bits 0–2 -> decimal places of the displayed weight (negative: the last digit counts
#: tens or hundreds)
TOLEDO_DECIMALS = {0: -2, 1: -1, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}
LB_KG = 0.45359237
#: display units the decoder converts, and their size [kg]
TOLEDO_UNIT_KG: dict[str, Fraction] = {
    "kg": Fraction(1), "lb": Fraction(str(LB_KG)), "g": Fraction(1, 1000),
    "t": Fraction(1000)}
#: SWC bits 0–2 -> display unit (0: lb or kg, as SWB bit 4 says); the other codes of the
#: IND-series table are refused as unsupported units
TOLEDO_SWC_UNITS: dict[int, str] = {1: "g", 2: "t"}
#: decimals a display in each unit gains when expressed in kg (None: not a power of ten)
_UNIT_DECIMALS_SHIFT: dict[str, int | None] = {"kg": 0, "g": 3, "t": -3, "lb": None}
#: status bits
SWB_NET, SWB_NEGATIVE, SWB_OUT_OF_RANGE, SWB_MOTION, SWB_KG, SWB_NOT_ZEROED = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x40)
SWC_UNIT_MASK, SWC_EXPANDED = 0x07, 0x10


def encode_toledo(weight: float, *, tare: float = 0.0, decimals: int = 0, net: bool = False,
                  motion: bool = False, overload: bool = False, checksum: bool = True,
                  unit: str = "kg", not_zeroed: bool = False, expanded: bool = False) -> bytes:
    """One Toledo continuous frame, for twins and tests: ``weight`` and ``tare`` as the
    display shows them, in ``unit`` (``kg``, ``lb``, ``g``, ``t``) with ``decimals``."""
    if unit not in TOLEDO_UNIT_KG:
        raise ValueError(f"unit must be one of {sorted(TOLEDO_UNIT_KG)}")
    code = {v: k for k, v in TOLEDO_DECIMALS.items()}[decimals]
    swa = 0x20 | code | (1 << 3)  # increment size x1
    swb = 0x20 | (SWB_NET if net else 0) | (SWB_NEGATIVE if weight < 0 else 0) \
        | (SWB_OUT_OF_RANGE if overload else 0) | (SWB_MOTION if motion else 0) \
        | (0 if unit == "lb" else SWB_KG) | (SWB_NOT_ZEROED if not_zeroed else 0)
    unit_code = {"kg": 0, "lb": 0, **{u: c for c, u in TOLEDO_SWC_UNITS.items()}}[unit]
    swc = 0x20 | unit_code | (SWC_EXPANDED if expanded else 0)
    factor = 10**decimals
    w = f"{round(abs(weight) * factor):06d}"[-6:]
    t = f"{round(abs(tare) * factor):06d}"[-6:]
    frame = bytes([STX, swa, swb, swc]) + w.encode() + t.encode() + bytes([CR])
    return frame + (bytes([toledo_checksum(frame)]) if checksum else b"")


def toledo_unit(swb: int, swc: int) -> str | None:
    """The display unit the status bytes name, or None for a code not supported."""
    code = swc & SWC_UNIT_MASK
    if code == 0:
        return "kg" if swb & SWB_KG else "lb"
    return TOLEDO_SWC_UNITS.get(code)


class ToledoDecoder(StreamDecoder):
    """Toledo continuous frames, with or without the checksum byte.

    ``checksum``: True (every frame ends with its checksum), False (none), or None (the
    default) to latch it from the stream (:class:`OptionalByteLatch`). Where a frame ends
    is told by the two bytes after its ``CR``: a byte equal to the checksum followed by
    ``STX`` is an 18-byte frame; ``STX`` followed by another byte is a 17-byte frame (the
    next frame's SWA is never ``STX``). Latched (or set) with a checksum, the 18th byte is
    always the checksum, whatever its value; before the latch, a frame without a checksum is not
    delivered (nothing would show that it is intact).

    The status bytes are decoded as the Mettler-Toledo tables define them: the unit (SWB
    bit 4: kg, clear lb; SWC bits 0–2: 1 g, 2 t, 0 as SWB says, others refused) is
    converted to kg; a frame saying power-up not zeroed (SWB bit 6) or expanded ×10 display
    (SWC bit 4) shows no weight and is refused (``format``, with the reason).
    """

    starts: ClassVar[bytes] = bytes([STX])

    def __init__(self, max_buffer_bytes: int = 4096, *, checksum: bool | None = None) -> None:
        super().__init__(max_buffer_bytes)
        self.checksum = OptionalByteLatch(checksum)

    def _decode_at(self, buf: bytearray, pos: int,
                   out: list[WeightReading | DecodeFault]) -> int | None:
        avail = len(buf) - pos
        if avail < 17:
            return None
        frame = bytes(buf[pos:pos + 17])
        where = self._offset + pos
        if frame[16] != CR or not frame[4:16].isdigit():
            out.append(DecodeFault("format", where, 1, f"not a Toledo frame: {frame!r}"))
            return 1
        expected = toledo_checksum(frame)
        if self.checksum.state is True:
            if avail < 18:
                return None
            if buf[pos + 17] != expected:
                return self._checksum_fault(buf, pos, expected, out)
            self.checksum.saw(True)
            self._status(frame, bytes(buf[pos:pos + 18]), where, out)
            return 18
        if avail < 19:
            return None
        after, next_after = buf[pos + 17], buf[pos + 18]
        if after == expected and next_after == STX:  # an 18-byte frame, checksum correct
            self.checksum.saw(True)
            self._status(frame, bytes(buf[pos:pos + 18]), where, out)
            return 18
        if after == STX and next_after != STX:  # a 17-byte frame: no checksum
            self.checksum.saw(False)
            if self.checksum.state is False:
                self._status(frame, frame, where, out)
            return 17  # not delivered while the stream may carry checksums
        if self.checksum.state is False:  # no checksum; what follows is not a frame
            self._status(frame, frame, where, out)
            return 17
        return self._checksum_fault(buf, pos, expected, out)

    def _checksum_fault(self, buf: bytearray, pos: int, expected: int,
                        out: list[WeightReading | DecodeFault]) -> int | None:
        """Report a frame whose checksum does not match; return the bytes to skip: 18, or
        17 when the byte in the checksum's place is an STX that starts the next frame
        (the byte after it is not one); None to wait for that byte."""
        got = buf[pos + 17]
        if got == STX and len(buf) - pos < 19:
            return None
        self.checksum.broken()
        out.append(DecodeFault("checksum", self._offset + pos, 1,
                               f"checksum {got:#04x} != {expected:#04x}"))
        return 17 if got == STX and buf[pos + 18] != STX else 18

    def _status(self, frame: bytes, raw: bytes, where: int,
                out: list[WeightReading | DecodeFault]) -> None:
        """Append the reading of a frame whose bytes are trusted, or why it is no weight."""
        swa, swb, swc = frame[1], frame[2], frame[3]
        unit = toledo_unit(swb, swc)
        problem = ""
        if unit is None:
            problem = f"unsupported unit code {swc & SWC_UNIT_MASK} (SWC {swc:#04x})"
        elif swb & SWB_NOT_ZEROED:
            problem = "power-up not zeroed (SWB bit 6, 开机未置零): no weight"
        elif swc & SWC_EXPANDED:
            problem = "expanded ×10 display (SWC bit 4): no weight"
        if unit is None or problem:
            out.append(DecodeFault("format", where, len(raw), problem))
            return
        exp = TOLEDO_DECIMALS[swa & 0x07]
        per_count_kg = TOLEDO_UNIT_KG[unit] / Fraction(10)**exp
        weight = float(int(frame[4:10]) * per_count_kg)  # one correctly rounded conversion
        tare = float(int(frame[10:16]) * per_count_kg)
        if swb & SWB_NEGATIVE:
            weight = -weight
        shift = _UNIT_DECIMALS_SHIFT[unit]
        decimals = None if shift is None else max(0, exp + shift)
        out.append(WeightReading(weight, not bool(swb & SWB_MOTION), is_net=bool(swb & SWB_NET),
                                 tare_kg=tare, overload=bool(swb & SWB_OUT_OF_RANGE),
                                 raw=raw, decimals=decimals))
