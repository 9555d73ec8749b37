"""Weighing indicators: byte vectors, then real ptys and a real pymodbus server."""

from __future__ import annotations

import pytest

from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.errors import DeviceTimeoutError
from zhichao.devices.faults import Fault, FaultInjector
from zhichao.devices.indicator_formats import LATCH_FRAMES
from zhichao.devices.indicators import (
    DecodeFault,
    ModbusIndicator,
    StreamIndicator,
    ToledoDecoder,
    WeightReading,
    Xk3190Decoder,
    encode_toledo,
    encode_xk3190,
)
from zhichao.devices.twins.indicators import (
    ModbusIndicatorTwin,
    StreamIndicatorTwin,
    truck_program,
)


def _weights(items: list[WeightReading | DecodeFault]) -> list[float]:
    return [r.weight_kg for r in items if isinstance(r, WeightReading)]


def test_xk3190_worked_example_from_the_manual() -> None:
    frame = bytes.fromhex("022B303031323334323144 03".replace(" ", ""))
    assert encode_xk3190(12.34, 2) == frame
    assert _weights(Xk3190Decoder().feed(frame)) == [12.34]


def test_xk3190_a22_nibbles_negative_and_bad_xor() -> None:
    a22 = encode_xk3190(-250.0, 0, a22_nibbles=True)
    bad = bytearray(encode_xk3190(100.0, 0))
    bad[5] = ord("9")
    items = Xk3190Decoder().feed(b"\xff\x00" + a22 + bytes(bad) + encode_xk3190(7.5, 1))
    assert _weights(items) == [-250.0, 7.5]
    assert {f.kind for f in items if isinstance(f, DecodeFault)} >= {"garbage", "checksum"}


def test_xk3190_reversed_format() -> None:
    dec = Xk3190Decoder()
    assert _weights(dec.feed(b"=00.1000-")) == [-1.0]
    # without a sign byte: delivered once the stream is known to carry none
    unsigned = Xk3190Decoder()
    assert _weights(unsigned.feed(b"=0543200" * (LATCH_FRAMES + 1) + b"=")) == [23450.0] * 2


def test_toledo_frames() -> None:
    frame = encode_toledo(12345, tare=345, net=True)
    assert len(frame) == 18
    (r,) = ToledoDecoder().feed(frame + b"\x02")
    assert isinstance(r, WeightReading)
    assert (r.weight_kg, r.tare_kg, r.is_net, r.stable) == (12345, 345, True, True)
    moving = encode_toledo(1.25, decimals=2, motion=True)
    bad = bytearray(encode_toledo(10))
    bad[-1] ^= 0x01
    items = ToledoDecoder().feed(b"zz" + moving + bytes(bad) + encode_toledo(-3.5, decimals=1)
                                 + b"\x02")
    got = [(r.weight_kg, r.stable) for r in items if isinstance(r, WeightReading)]
    assert got == [(1.25, False), (-3.5, True)]
    assert any(isinstance(f, DecodeFault) and f.kind == "checksum" for f in items)


@pytest.mark.parametrize("protocol", ["xk3190", "xk3190-reversed", "toledo"])
def test_stable_weight_over_pty(protocol: str) -> None:
    injector = FaultInjector(schedule={3: [Fault("corrupt", 2)], 5: [Fault("garbage", 20)]},
                             seed=1)
    twin = StreamIndicatorTwin(protocol, truck_program(32_450.0), rate_hz=100,
                               injector=injector)
    url = twin.url + "?baud_rate=9600"
    with StreamIndicator.from_url(url, timeouts=Timeouts(1.0)) as scale, twin:
        scale.open()
        r = scale.read_stable(5.0, n_identical=5)
        assert r.weight_kg == 32_450.0 and r.stable is True
        h = scale.health_snapshot()
    assert h.counters["frames"] >= 5 and h.connected
    assert h.counters.get("bytes_discarded", 0) + h.counters.get("crc_errors", 0) \
        + h.counters.get("bad_headers", 0) >= 1


def test_modbus_indicator_stable_bit_over_pymodbus() -> None:
    with ModbusIndicatorTwin(truck_program(18_000.0), rate_hz=100, tare_kg=500.0) as twin, \
            ModbusIndicator.from_url(twin.url, poll_interval_s=0.01,
                                     timeouts=Timeouts(1.0)) as scale:
        first = scale.read(2.0)
        assert first is not None and first.stable is False
        r = scale.read_stable(5.0, n_identical=3)
        assert r.weight_kg == 18_000.0 and r.tare_kg == 500.0
        twin.server.fail_next = 2  # the device answers "busy" twice: counted, not fatal
        assert scale.read(2.0) is not None
        assert scale.health_snapshot().counters["bad_values"] >= 1


def test_read_stable_times_out_with_our_error() -> None:
    program = [(float(1000 + 10 * (i % 2)), True) for i in range(1000)]
    twin = StreamIndicatorTwin("xk3190", program, rate_hz=100)
    with StreamIndicator.from_url(twin.url, timeouts=Timeouts(1.0),
                                  backoff=Backoff(0.02, 0.1)) as scale, twin:
        scale.open()
        with pytest.raises(DeviceTimeoutError):
            scale.read_stable(0.5)
