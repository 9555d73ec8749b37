"""ZSF/1 frames and CRCs: byte vectors and property tests of the sans-I/O decoder."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhichao.devices.crc import (
    crc16_ccitt,
    crc16_ccitt_reference,
    crc16_modbus,
    toledo_checksum,
    xor8,
)
from zhichao.devices.framing import (
    ENCODING_INT16,
    HEADER,
    HEADER_SIZE,
    SYNC,
    FrameDecoder,
    FrameFault,
    SampleFrame,
    encode_frame,
    frame_size,
)


@pytest.mark.parametrize(("func", "data", "expected"), [
    (crc16_ccitt, b"123456789", 0x29B1),
    (crc16_ccitt_reference, b"123456789", 0x29B1),
    (crc16_ccitt, b"", 0xFFFF),
    (crc16_modbus, b"123456789", 0x4B37),
    (crc16_modbus, bytes.fromhex("010300000001"), 0x0A84),  # 01 03 00 00 00 01 84 0A
    (xor8, bytes.fromhex("2b3030313233343200"), 0x1D),
    (toledo_checksum, b"\x02\x01", 0x7D),
])
def test_checksum_vectors(func: object, data: bytes, expected: int) -> None:
    assert func(data) == expected  # type: ignore[operator]


@given(st.binary(max_size=300))
def test_crc_fast_equals_reference(data: bytes) -> None:
    assert crc16_ccitt(data) == crc16_ccitt_reference(data)


def _frame(i: int = 0, n: int = 5, ch: int = 3) -> tuple[bytes, np.ndarray]:
    x = (np.arange(n * ch, dtype=np.float32).reshape(n, ch) + 1000 * i)
    return encode_frame(x, sample_index=i * n, device_time_us=1_700_000_000_000_000 + i,
                        sample_rate_hz=5000.0, seq=i, boot_id=7), x


def _frames(items: list[SampleFrame | FrameFault]) -> list[SampleFrame]:
    return [f for f in items if isinstance(f, SampleFrame)]


def test_layout_and_roundtrip() -> None:
    raw, x = _frame(2)
    assert raw[:2] == SYNC and len(raw) == frame_size(5, 3) == HEADER_SIZE + 60 + 2
    assert struct.unpack_from("<H", raw, len(raw) - 2)[0] == crc16_ccitt(raw[2:-2])
    (frame,) = _frames(FrameDecoder().feed(raw))
    assert (frame.seq, frame.sample_index, frame.boot_id, frame.sample_rate_hz) == (2, 10, 7, 5000)
    np.testing.assert_array_equal(frame.samples, x)


def test_int16_encoding_quantises_to_scale() -> None:
    x = np.array([[0.0, 1.234], [-2.5, 100.0]], dtype=np.float32)
    raw = encode_frame(x, sample_index=0, device_time_us=0, sample_rate_hz=5000,
                       encoding=ENCODING_INT16, scale=0.01)
    (frame,) = _frames(FrameDecoder().feed(raw))
    np.testing.assert_allclose(frame.samples, x, atol=0.005 + 1e-6)
    assert len(raw) == frame_size(2, 2, ENCODING_INT16)


def test_garbage_before_inside_and_after() -> None:
    a, _ = _frame(0)
    b, _ = _frame(1)
    c, _ = _frame(2)
    broken = bytearray(b)
    broken[HEADER_SIZE + 3] ^= 0xFF  # damage inside frame b: CRC fails
    stream = b"\x00\xa5junk" + a + b"\x5a\xa5" + bytes(broken) + c + b"tail"
    dec = FrameDecoder()
    items = dec.feed(stream)
    assert [f.seq for f in _frames(items)] == [0, 2]
    kinds = [f.kind for f in items if isinstance(f, FrameFault)]
    assert "crc" in kinds and kinds[0] == "garbage"
    assert dec.bytes_discarded >= len(broken)


def test_every_split_point() -> None:
    a, _ = _frame(0)
    b, _ = _frame(1)
    stream = a + b
    for cut in range(1, len(stream)):
        dec = FrameDecoder()
        got = _frames(dec.feed(stream[:cut])) + _frames(dec.feed(stream[cut:]))
        assert [f.seq for f in got] == [0, 1], cut
        assert dec.bytes_discarded == 0


def test_byte_by_byte() -> None:
    a, _ = _frame(0)
    dec = FrameDecoder()
    got = [f for byte in a for f in _frames(dec.feed(bytes([byte])))]
    assert len(got) == 1


def test_oversize_and_bad_header_are_refused_then_resync() -> None:
    fake = HEADER.pack(SYNC, 1, 0, 64, 0, 0, 0, 8192, 0, 0, 0, 5000.0, 1.0)
    bad_version = HEADER.pack(SYNC, 9, 0, 3, 0, 0, 0, 5, 0, 0, 0, 5000.0, 1.0)
    a, _ = _frame(0)
    dec = FrameDecoder(max_frame_bytes=64 * 1024)
    items = dec.feed(fake + bad_version + a)
    kinds = {f.kind for f in items if isinstance(f, FrameFault)}
    assert {"oversize", "bad_header"} <= kinds
    assert len(_frames(items)) == 1
    assert dec.buffered_bytes == 0


def test_trailing_sync_byte_kept() -> None:
    a, _ = _frame(0)
    dec = FrameDecoder()
    assert not _frames(dec.feed(b"xyz" + a[:1]))
    assert len(_frames(dec.feed(a[1:]))) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40).map(lambda g: g.replace(b"\xa5", b"")),
                          st.integers(1, 20), st.integers(1, 8)), min_size=1, max_size=8),
       st.lists(st.integers(1, 200), max_size=10))
def test_property_frames_survive_garbage_and_any_chunking(
        parts: list[tuple[bytes, int, int]], cuts: list[int]) -> None:
    stream = b""
    expected = []
    for i, (garbage, n, ch) in enumerate(parts):
        x = np.full((n, ch), i, dtype=np.float32)
        stream += garbage + encode_frame(x, sample_index=i, device_time_us=0,
                                         sample_rate_hz=1000, seq=i)
        expected.append(i)
    dec = FrameDecoder()
    got: list[int] = []
    pos = 0
    for c in cuts:
        got += [f.seq for f in _frames(dec.feed(stream[pos:pos + c]))]
        pos += c
    got += [f.seq for f in _frames(dec.feed(stream[pos:]))]
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000))
def test_property_random_bytes_never_crash_and_buffer_is_bounded(data: bytes) -> None:
    dec = FrameDecoder(max_frame_bytes=1024)
    for i in range(0, len(data), 97):
        dec.feed(data[i:i + 97])
        assert dec.buffered_bytes <= 1024 + 97
