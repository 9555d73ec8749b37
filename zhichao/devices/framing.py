"""The zhichao binary sample frame (``ZSF/1``) and its sans-I/O decoder.

A WIM data-acquisition unit streams raw strip-sensor samples as a sequence of frames,
over serial or TCP. All integers are little-endian; see ``docs/devices.md`` for the table.

======  ====  ================  ==========================================================
offset  size  field             meaning
======  ====  ================  ==========================================================
0       2     sync              ``A5 5A``
2       1     version           1
3       1     encoding          0 = float32, 1 = int16 scaled (value = raw * scale)
4       1     n_channels        1 … 64
5       1     flags             bit 0: first frame after power-up; other bits 0
6       2     boot_id           u16, +1 at every power-up of the device (wraps)
8       4     seq               u32 frame counter, 0 after power-up, +1 per frame (wraps)
12      2     n_samples         samples per channel in this frame, 1 … 8192
14      2     reserved          0
16      8     sample_index      u64 index of the frame's first sample since power-up
24      8     device_time_us    i64 device clock at the first sample [µs since 1970 UTC]
32      4     sample_rate_hz    float32 [Hz]
36      4     scale             float32, output units per count (1.0 for float32; an
                                int16 frame's must be finite and > 0)
40      …     payload           n_samples × n_channels values, sample-major
end-2   2     crc               CRC-16/CCITT-FALSE over bytes 2 … end-3 (all but sync, crc)
======  ====  ================  ==========================================================

:class:`FrameDecoder` turns bytes into frames with no I/O inside. Garbage before, inside or
after a frame is skipped by hunting for the next sync word; a wrong CRC or an impossible
header discards one byte and hunts again, so a genuine frame that starts inside a damaged
one is still found. Each problem is returned as a :class:`FrameFault` with its stream
offset, so the driver can count and log it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.devices.crc import crc16_ccitt

SYNC = b"\xa5\x5a"
VERSION = 1
ENCODING_FLOAT32 = 0
ENCODING_INT16 = 1
FLAG_BOOT = 0x01
HEADER = struct.Struct("<2sBBBBHIHHQqff")
HEADER_SIZE = HEADER.size  # 40
CRC_SIZE = 2
MAX_CHANNELS = 64
MAX_SAMPLES_PER_FRAME = 8192
DEFAULT_MAX_FRAME_BYTES = 256 * 1024
_BYTES_PER_VALUE = {ENCODING_FLOAT32: 4, ENCODING_INT16: 2}
_DTYPE: dict[int, np.dtype[Any]] = {
    ENCODING_FLOAT32: np.dtype("<f4"), ENCODING_INT16: np.dtype("<i2")}


@dataclass(frozen=True)
class SampleFrame:
    """One decoded frame.

    Attributes
    ----------
    boot_id : power-up counter of the device (u16).
    seq : frame counter since power-up (u32).
    sample_index : index of the first sample since power-up.
    device_time_us : device clock at the first sample [µs since 1970-01-01 UTC].
    sample_rate_hz : the device's sample rate [Hz].
    samples : float32 ``[n_samples, n_channels]`` [output units].
    boot : True on the first frame after a power-up.
    encoding : 0 float32, 1 int16 scaled.
    scale : output units per count for int16 frames.
    wire_bytes : size of the frame on the wire [bytes].
    """

    boot_id: int
    seq: int
    sample_index: int
    device_time_us: int
    sample_rate_hz: float
    samples: npt.NDArray[np.float32]
    boot: bool = False
    encoding: int = ENCODING_FLOAT32
    scale: float = 1.0
    wire_bytes: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])


@dataclass(frozen=True)
class FrameFault:
    """A problem met while decoding.

    ``kind`` is one of ``garbage`` (bytes skipped while hunting for sync), ``bad_header``,
    ``oversize`` (a header announcing more than the limit), ``crc``; ``offset`` is the
    stream offset [bytes since the decoder was created] where it starts; ``n_bytes`` how
    many bytes it concerns.
    """

    kind: str
    offset: int
    n_bytes: int
    detail: str = ""


def encode_frame(
    samples: npt.ArrayLike,
    *,
    sample_index: int,
    device_time_us: int,
    sample_rate_hz: float,
    seq: int = 0,
    boot_id: int = 0,
    boot: bool = False,
    encoding: int = ENCODING_FLOAT32,
    scale: float = 1.0,
) -> bytes:
    """Build one frame from ``samples`` ``[n_samples, n_channels]`` [output units].

    For ``ENCODING_INT16`` the values are rounded to ``value / scale`` and clipped to int16.
    """
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"samples must be 2-D [n_samples, n_channels], got {data.ndim}-D")
    n_samples, n_channels = data.shape
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise ValueError(f"n_channels must be 1..{MAX_CHANNELS}, got {n_channels}")
    if not 1 <= n_samples <= MAX_SAMPLES_PER_FRAME:
        raise ValueError(f"n_samples must be 1..{MAX_SAMPLES_PER_FRAME}, got {n_samples}")
    if encoding == ENCODING_FLOAT32:
        payload = data.astype("<f4").tobytes()
        scale = 1.0
    elif encoding == ENCODING_INT16:
        if not scale > 0:
            raise ValueError(f"scale must be > 0 for int16 frames, got {scale}")
        payload = np.clip(np.rint(data / scale), -32768, 32767).astype("<i2").tobytes()
    else:
        raise ValueError(f"unknown encoding {encoding}")
    header = HEADER.pack(
        SYNC, VERSION, encoding, n_channels, FLAG_BOOT if boot else 0, boot_id & 0xFFFF,
        seq & 0xFFFFFFFF, n_samples, 0, sample_index, device_time_us, sample_rate_hz, scale,
    )
    body = header + payload
    return body + struct.pack("<H", crc16_ccitt(memoryview(body)[2:]))


def frame_size(n_samples: int, n_channels: int, encoding: int = ENCODING_FLOAT32) -> int:
    """Wire size of a frame [bytes]."""
    return HEADER_SIZE + n_samples * n_channels * _BYTES_PER_VALUE[encoding] + CRC_SIZE


class FrameDecoder:
    """Sans-I/O decoder: ``feed(bytes)`` returns the frames and faults found so far.

    Parameters
    ----------
    max_frame_bytes : frames announcing more than this are refused as ``oversize``
        (the decoder never buffers more than about twice this) [bytes].
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < HEADER_SIZE + CRC_SIZE + 2:
            raise ValueError(f"max_frame_bytes too small: {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._buf_offset = 0  # stream offset of _buf[0]
        self.frames_decoded = 0
        self.bytes_discarded = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget buffered bytes (after a reconnect: the new stream starts afresh)."""
        if self._buf:
            self.bytes_discarded += len(self._buf)
        self._buf_offset += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[SampleFrame | FrameFault]:
        """Add received bytes; return every complete frame and every fault, in stream order."""
        self._buf += data
        out: list[SampleFrame | FrameFault] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                # keep a trailing first sync byte: it may be the start of the next frame
                keep = 1 if n > pos and buf[n - 1] == SYNC[0] else 0
                if n - keep > pos:
                    self._skip(out, pos, n - keep, "garbage")
                pos = n - keep
                break
            if start > pos:
                self._skip(out, pos, start, "garbage")
            pos = start
            if n - pos < HEADER_SIZE:
                break
            (_sync, version, encoding, n_channels, flags, boot_id, seq, n_samples, reserved,
             sample_index, device_time_us, rate, scale) = HEADER.unpack_from(buf, pos)
            problem = ""
            if version != VERSION:
                problem = f"version {version}"
            elif encoding not in _BYTES_PER_VALUE:
                problem = f"encoding {encoding}"
            elif not 1 <= n_channels <= MAX_CHANNELS:
                problem = f"n_channels {n_channels}"
            elif not 1 <= n_samples <= MAX_SAMPLES_PER_FRAME:
                problem = f"n_samples {n_samples}"
            elif reserved != 0 or flags & ~FLAG_BOOT:
                problem = "reserved bits set"
            elif encoding == ENCODING_INT16 and not (math.isfinite(scale) and scale > 0):
                problem = f"int16 scale {scale} (must be finite and > 0)"
            if problem:
                out.append(FrameFault("bad_header", self._buf_offset + pos, 1, problem))
                self._skip(out, pos, pos + 1, None)
                pos += 1
                continue
            size = HEADER_SIZE + n_samples * n_channels * _BYTES_PER_VALUE[encoding] + CRC_SIZE
            if size > self.max_frame_bytes:
                out.append(FrameFault("oversize", self._buf_offset + pos, 1,
                                      f"{size} bytes announced, limit {self.max_frame_bytes}"))
                self._skip(out, pos, pos + 1, None)
                pos += 1
                continue
            if n - pos < size:
                break
            view = memoryview(buf)
            crc_rx = buf[pos + size - 2] | (buf[pos + size - 1] << 8)
            crc = crc16_ccitt(view[pos + 2:pos + size - 2])
            if crc != crc_rx:
                view.release()
                out.append(FrameFault("crc", self._buf_offset + pos, 1,
                                      f"crc {crc_rx:04x} != computed {crc:04x}"))
                self._skip(out, pos, pos + 1, None)
                pos += 1
                continue
            view.release()
            raw = np.frombuffer(buf, dtype=_DTYPE[encoding], count=n_samples * n_channels,
                                offset=pos + HEADER_SIZE)
            if encoding == ENCODING_FLOAT32:
                samples = raw.astype(np.float32).reshape(n_samples, n_channels)
            else:
                samples = (raw.astype(np.float32) * np.float32(scale)).reshape(
                    n_samples, n_channels)
            del raw  # release the export of buf before it is resized
            out.append(SampleFrame(boot_id, seq, sample_index, device_time_us, float(rate),
                                   samples, bool(flags & FLAG_BOOT), encoding, float(scale),
                                   size))
            self.frames_decoded += 1
            pos += size
        if pos:
            del buf[:pos]
            self._buf_offset += pos
        return out

    def _skip(self, out: list[SampleFrame | FrameFault], start: int, stop: int,
              kind: str | None) -> None:
        self.bytes_discarded += stop - start
        if kind is not None:
            out.append(FrameFault(kind, self._buf_offset + start, stop - start))
