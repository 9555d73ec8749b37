"""A corrupted or mis-read indicator frame never becomes a wrong weight: Toledo checksum
and status bytes, the XK3190 ``=`` sign, stale readings, the stability window, and the
ZSF/1 int16 scale. Frames are built from the byte tables here, not only by the encoders."""

from __future__ import annotations

import math
import os
import struct
import threading
import time
import tty
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from zhichao.devices.base import Timeouts
from zhichao.devices.crc import crc16_ccitt, toledo_checksum
from zhichao.devices.data import WeightReading
from zhichao.devices.framing import (
    ENCODING_INT16,
    HEADER,
    FrameDecoder,
    FrameFault,
    SampleFrame,
    encode_frame,
)
from zhichao.devices.indicator_formats import (
    CR,
    LATCH_FRAMES,
    STX,
    DecodeFault,
    ToledoDecoder,
    Xk3190Decoder,
    encode_toledo,
    encode_xk3190,
    encode_xk3190_reversed,
)
from zhichao.devices.indicators import StreamIndicator
from zhichao.devices.weighing_indicator import StabilityDetector

Item = WeightReading | DecodeFault


def _weights(items: list[Item]) -> list[float]:
    return [r.weight_kg for r in items if isinstance(r, WeightReading)]


def _faults(items: list[Item]) -> list[str]:
    return [f.kind for f in items if isinstance(f, DecodeFault)]


# -- Toledo: the checksum is decided for the stream, never per frame ------------------------

def _stx_checksum_frames(n: int) -> list[tuple[int, bytes]]:
    """Net-mode frames (tare 8 850 kg) whose checksum byte happens to be STX (0x02)."""
    found = []
    for w in range(10_000, 100_000, 10):
        frame = encode_toledo(w, tare=8850, net=True)
        if frame[-1] == STX:
            found.append((w, frame))
            if len(found) == n:
                break
    return found


def _digit_corruptions(frame: bytes) -> Iterator[bytes]:
    """The frame with one weight or tare digit changed to each other digit."""
    for i in range(4, 16):
        for d in b"0123456789":
            if d != frame[i]:
                bad = bytearray(frame)
                bad[i] = d
                yield bytes(bad)


@pytest.mark.parametrize(("weight_kg", "frame"), _stx_checksum_frames(4))
def test_toledo_frame_with_checksum_stx_is_still_checked(weight_kg: int, frame: bytes) -> None:
    assert frame[17] == STX
    for bad in _digit_corruptions(frame):
        # first frame of the stream (nothing latched yet), and after the latch
        for before in (b"", frame * LATCH_FRAMES):
            items = ToledoDecoder().feed(before + bad + frame + frame[:2])
            assert set(_weights(items)) == {weight_kg}, bad
            assert "checksum" in _faults(items)


def test_reviewer_frame_49990_kg_changed_to_59990_is_refused() -> None:
    good = bytes([STX]) + b"*1 049990008850\r" + bytes([STX])
    assert good == encode_toledo(49_990, tare=8850, net=True)
    bad = bytes([STX]) + b"*1 059990008850\r" + bytes([STX])
    items = ToledoDecoder().feed(bad + good + good)
    assert _weights(items) == [49_990.0]
    assert _faults(items) == ["checksum"]


def test_toledo_latched_checksum_refuses_a_frame_that_lost_it() -> None:
    good = encode_toledo(32_450, tare=500)
    lost = encode_toledo(42_450, tare=500)[:17]  # the checksum byte dropped on the line
    dec = ToledoDecoder()
    assert _weights(dec.feed(good * LATCH_FRAMES)) == [32_450.0] * (LATCH_FRAMES - 1)
    items = dec.feed(good[:2])
    assert _weights(items) == [32_450.0] and dec.checksum.state is True
    items = dec.feed(good[2:] + lost + good + good[:2])
    assert _weights(items) == [32_450.0, 32_450.0] and "checksum" in _faults(items)


def test_toledo_without_checksum_is_delivered_once_latched() -> None:
    frames = [encode_toledo(1000 + i, checksum=False) for i in range(LATCH_FRAMES + 2)]
    dec = ToledoDecoder()
    items = dec.feed(b"".join(frames) + frames[0][:2])
    assert dec.checksum.state is False and not _faults(items)
    assert _weights(items) == [1000.0 + i for i in range(LATCH_FRAMES - 1, LATCH_FRAMES + 2)]
    # the indicator switched its checksum on: latched again, from then on it is checked
    with_cs = encode_toledo(2000)
    dec.feed(with_cs * LATCH_FRAMES + with_cs[:2])
    assert dec.checksum.state is True
    items = dec.feed(with_cs[2:] + encode_toledo(3000, checksum=False) + with_cs + with_cs[:2])
    assert _weights(items) == [2000.0, 2000.0] and "checksum" in _faults(items)


def test_toledo_checksum_setting() -> None:
    plain = encode_toledo(1500, checksum=False)
    assert _weights(ToledoDecoder(checksum=False).feed(plain + plain[:2])) == [1500.0]
    items = ToledoDecoder(checksum=True).feed(plain * 4)
    assert _weights(items) == [] and set(_faults(items)) >= {"checksum"}


# -- Toledo: units and validity from the status bytes ------------------------------------

def _toledo_frame(swa: int, swb: int, swc: int, weight: bytes, tare: bytes = b"000000") -> bytes:
    frame = bytes([STX, swa, swb, swc]) + weight + tare + bytes([CR])
    return frame + bytes([toledo_checksum(frame)])


def _decode_one(frame: bytes) -> Item:
    items = ToledoDecoder().feed(frame + frame[:2])
    assert len(items) == 1, items
    return items[0]


SWA_X1 = 0x20 | 0x08  # bit 5 always 1, increment size x1


@pytest.mark.parametrize(("swa_decimals", "swb", "swc", "digits", "kg", "decimals"), [
    (4, 0x20, 0x22, b"002050", 20_500.0, 0),        # 20.50 t (SWC code 2; SWB bit 4 clear)
    (4, 0x30, 0x22, b"002050", 20_500.0, 0),        # t with SWB bit 4 set: SWC decides
    (2, 0x30, 0x21, b"012345", 12.345, 3),          # 12345 g (SWC code 1)
    (2, 0x30, 0x20, b"012345", 12_345.0, 0),        # kg
    (3, 0x30, 0x20, b"012345", 1_234.5, 1),         # kg, one decimal
    (1, 0x30, 0x20, b"003245", 32_450.0, 0),        # kg, one dummy zero (x10)
    (2, 0x20, 0x20, b"001000", 453.59237, None),    # 1000 lb (SWB bit 4 clear)
    (2, 0x32, 0x20, b"000500", -500.0, 0),          # negative kg
])
def test_toledo_unit_is_converted_to_kg(swa_decimals: int, swb: int, swc: int, digits: bytes,
                                       kg: float, decimals: int | None) -> None:
    r = _decode_one(_toledo_frame(SWA_X1 | swa_decimals, swb, swc, digits))
    assert isinstance(r, WeightReading)
    assert (r.weight_kg, r.decimals, r.is_weight) == (kg, decimals, True)


def test_toledo_tare_is_converted_with_the_weight() -> None:
    r = _decode_one(_toledo_frame(SWA_X1 | 4, 0x21, 0x22, b"002050", b"000885"))
    assert isinstance(r, WeightReading)
    assert (r.weight_kg, r.tare_kg, r.is_net) == (20_500.0, 8_850.0, True)


@pytest.mark.parametrize("code", [3, 4, 5, 6, 7])
def test_toledo_unsupported_unit_is_refused(code: int) -> None:
    f = _decode_one(_toledo_frame(SWA_X1 | 2, 0x30, 0x20 | code, b"012345"))
    assert isinstance(f, DecodeFault) and f.kind == "format" and "unit" in f.detail


@pytest.mark.parametrize(("swb", "swc", "why"), [
    (0x30 | 0x40, 0x20, "not zeroed"),       # SWB bit 6: power-up not zeroed
    (0x30, 0x20 | 0x10, "expanded"),         # SWC bit 4: expanded x10 display
    (0x30 | 0x40 | 0x08, 0x20, "not zeroed"),
])
def test_toledo_display_that_is_no_weight_gives_no_reading(swb: int, swc: int,
                                                          why: str) -> None:
    f = _decode_one(_toledo_frame(SWA_X1 | 2, swb, swc, b"012345"))
    assert isinstance(f, DecodeFault) and f.kind == "format" and why in f.detail


def test_toledo_encoder_writes_the_status_bits_the_decoder_reads() -> None:
    for unit, shown, kg in (("t", 20.5, 20_500.0), ("g", 12_345, 12.345), ("lb", 1000, 453.59237),
                            ("kg", 7_500, 7_500.0)):
        r = _decode_one(encode_toledo(shown, decimals=2 if unit == "t" else 0, unit=unit))
        assert isinstance(r, WeightReading) and r.weight_kg == kg, unit
    for frame in (encode_toledo(100, not_zeroed=True), encode_toledo(100, expanded=True)):
        f = _decode_one(frame)
        assert isinstance(f, DecodeFault) and f.kind == "format"


def test_toledo_not_zeroed_through_the_driver_is_counted_with_its_reason() -> None:
    frame = _toledo_frame(SWA_X1 | 2, 0x30 | 0x40, 0x20, b"012345")
    with StreamIndicator.from_url("toledo+serial:loop://", timeouts=Timeouts(1.0)) as scale:
        scale.open()
        scale.transport.write(frame * 6, 1.0)
        assert scale.read(0.3) is None
        h = scale.health_snapshot()
    assert h.counters["bad_headers"] >= 5 and h.counters.get("frames", 0) == 0
    assert h.last_error is not None and "not zeroed" in h.last_error


# -- XK3190 '=' format: the sign byte -----------------------------------------------------

def test_xk3190_reversed_lost_sign_never_reads_positive() -> None:
    neg = encode_xk3190_reversed(-120.5, 1)
    assert neg == b"=5.02100-"
    # the reviewer's stream: the first frame lost its '-'
    assert _weights(Xk3190Decoder().feed(neg[:-1] + neg + neg)) == [-120.5, -120.5]
    dec = Xk3190Decoder()
    assert _weights(dec.feed(neg * LATCH_FRAMES)) == [-120.5] * LATCH_FRAMES
    assert dec.sign.state is True
    items = dec.feed(neg[:-1] + neg + neg[:-1] + b"=")
    assert _weights(items) == [-120.5] and _faults(items) == ["format", "format"]


def test_xk3190_reversed_sign_setting_and_latch() -> None:
    neg = encode_xk3190_reversed(-120.5, 1)
    items = Xk3190Decoder(reversed_sign=True).feed(neg[:-1] + neg)
    assert _weights(items) == [-120.5] and _faults(items) == ["format"]
    items = Xk3190Decoder(reversed_sign=False).feed(neg + b"=5.02100=")
    assert _weights(items) == [120.5] and _faults(items) == ["format"]
    # latched without a sign, then the stream starts carrying one: latched with it
    dec = Xk3190Decoder()
    unsigned = encode_xk3190_reversed(120.5, 1, with_sign=False)
    assert _weights(dec.feed(unsigned * (LATCH_FRAMES + 1) + b"=")) == [120.5] * 2
    assert dec.sign.state is False
    assert _weights(dec.feed(neg[1:] + neg * (LATCH_FRAMES - 1))) == [-120.5] * LATCH_FRAMES
    assert dec.sign.state is True
    items = dec.feed(unsigned + b"=")
    assert _weights(items) == [] and _faults(items) == ["format"]


def test_xk3190_stx_frames_are_not_held() -> None:
    assert _weights(Xk3190Decoder(reversed_sign=True).feed(encode_xk3190(-5.5, 1))) == [-5.5]


# -- stability: every reading of the window ------------------------------------------------

def _reading(kg: float, stable: bool | None, overload: bool = False) -> WeightReading:
    return WeightReading(kg, stable, overload=overload)


def test_stability_window_with_overload_or_motion_is_not_stable() -> None:
    det = StabilityDetector(n_identical=5)
    seq = [_reading(40_000, True, overload=True)] + [_reading(40_000, False)] * 3
    assert not any(det.update(r) for r in seq)
    assert not det.update(_reading(40_000, True))
    assert [det.update(_reading(40_000, True)) for _ in range(4)] == [False] * 3 + [True]
    # XK3190 readings (no stable bit) with an overload among them
    det = StabilityDetector(n_identical=3)
    results = [det.update(r) for r in (_reading(9_000, None), _reading(9_000, None, True),
                                       _reading(9_000, None), _reading(9_000, None),
                                       _reading(9_000, None))]
    assert results == [False, False, False, False, True]


# -- stale readings: read_stable answers with the weight on the platform now ---------------

def test_read_stable_does_not_return_readings_received_before_the_call() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    stop = threading.Event()

    def next_truck() -> None:
        while not stop.is_set():
            os.write(master, encode_xk3190(18_400, 0))
            time.sleep(0.01)

    writer = threading.Thread(target=next_truck, daemon=True)
    try:
        url = f"xk3190+serial://{os.ttyname(slave)}?baud_rate=9600"
        with StreamIndicator.from_url(url, timeouts=Timeouts(1.0)) as scale:
            scale.open()
            # the previous truck stays on the display while nobody reads ...
            os.write(master, encode_xk3190(31_250, 0) * 40)
            time.sleep(0.1)
            first = scale.read(1.0)  # ... one read queues the rest of that chunk
            assert first is not None and first.weight_kg == 31_250
            os.write(master, encode_xk3190(31_250, 0) * 40)  # and more waits in the port
            time.sleep(0.1)
            called = datetime.now(UTC)
            writer.start()
            r = scale.read_stable(5.0)
        assert r.weight_kg == 18_400 and r.station_time_utc >= called
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(2)
        os.close(master)
        os.close(slave)


# -- ZSF/1 int16 scale ---------------------------------------------------------------------

def _int16_frame(scale: float) -> bytes:
    body = HEADER.pack(b"\xa5\x5a", 1, ENCODING_INT16, 1, 0, 1, 0, 2, 0, 0, 0, 1000.0, scale)
    body += struct.pack("<2h", 250, -500)
    return body + struct.pack("<H", crc16_ccitt(body[2:]))


@pytest.mark.parametrize("scale", [0.0, -0.0, -0.001, math.nan, math.inf, -math.inf])
def test_zsf_int16_frame_with_impossible_scale_is_refused(scale: float) -> None:
    good = encode_frame([[0.25], [-0.5]], sample_index=2, device_time_us=0,
                        sample_rate_hz=1000.0, seq=1, boot_id=1, encoding=ENCODING_INT16,
                        scale=0.001)
    items = FrameDecoder().feed(_int16_frame(scale) + good)
    frames = [f for f in items if isinstance(f, SampleFrame)]
    assert [f.seq for f in frames] == [1] and frames[0].scale > 0
    bad = [f for f in items if isinstance(f, FrameFault) and f.kind == "bad_header"]
    assert bad and bad[0].offset == 0 and "scale" in bad[0].detail
