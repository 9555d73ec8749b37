"""Status flags are visible and weights keep their resolution; the registry opens every
WIM URL (ZSF/1 and ZWR/1 over TCP and serial, both Modbus rings, TCP and RTU)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.devices.conftest import START_UTC, make_samples
from tests.devices.test_devices_records import records
from zhichao.cli import main
from zhichao.devices.base import Timeouts, parse_device_url
from zhichao.devices.data import WeightReading, bit_names, format_kg
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceNotAvailableError,
    DeviceTimeoutError,
)
from zhichao.devices.indicator_formats import (
    ToledoDecoder,
    Xk3190Decoder,
    encode_toledo,
    encode_xk3190,
    encode_xk3190_reversed,
)
from zhichao.devices.indicator_maps import INDICATOR_MAPS, decode_indicator_registers
from zhichao.devices.interfaces.modbus_indicator import ModbusIndicator
from zhichao.devices.interfaces.modbus_records import ModbusRecordSource
from zhichao.devices.interfaces.modbus_samples import ModbusSampleSource
from zhichao.devices.interfaces.stream_indicator import StreamIndicator
from zhichao.devices.interfaces.zsf_stream import StreamSampleSource
from zhichao.devices.interfaces.zwr_stream import StreamRecordSource
from zhichao.devices.modbus import u32_to_regs
from zhichao.devices.record_source import RecordSource
from zhichao.devices.registry import open_wim_device, wim_kind
from zhichao.devices.sample_source import SampleSource
from zhichao.devices.twins.indicators import ModbusIndicatorTwin
from zhichao.devices.twins.links import PtyNullModem
from zhichao.devices.twins.records import ModbusRecordTwin, RecordLineTwin
from zhichao.devices.twins.samples import ModbusSampleRingTwin, SampleStreamTwin


def _regs(counts: int, status: int, decimals: int) -> list[int]:
    """The ``zhichao`` indicator map: gross 0–1, net 2–3, status 4, decimals 5."""
    return [*u32_to_regs(counts), *u32_to_regs(counts), status, decimals]


# -- readings: flags and resolution (sans-I/O) ------------------------------------------

def test_overload_bit_is_a_flag_never_a_weight() -> None:
    m = INDICATOR_MAPS["zhichao"]
    ok = decode_indicator_registers(_regs(2_050_037, 0x8001, 2), 0, m)
    assert ok.weight_kg == pytest.approx(20500.37) and ok.stable is True
    assert ok.is_weight and ok.flags == () and ok.weight_text() == "20500.37"
    over = decode_indicator_registers(_regs(2_050_037, 0x8003, 2), 0, m)  # b1 overload
    assert over.overload and not over.is_weight and "overload" in over.flags
    moving = decode_indicator_registers(_regs(100, 0x8000, 0), 0, m)
    assert moving.flags == ("unstable",) and moving.weight_text() == "100"
    with pytest.raises(Exception, match="data-valid bit 15 is clear"):
        decode_indicator_registers(_regs(100, 0x0001, 0), 0, m)  # b15 clear: an error


def test_tuna_map_motion_bit_and_float_resolution() -> None:
    m = INDICATOR_MAPS["tuna-id551"]
    hi, lo = np.frombuffer(np.float32(20500.37).tobytes()[::-1], ">u2")
    regs = [0, 0, int(hi), int(lo), 0x8000 | 1 << 12]  # motion bit set
    r = decode_indicator_registers(regs, 0, m)
    assert r.stable is False and r.weight_text() == "20500.37"
    r = decode_indicator_registers([0, 0, int(hi), int(lo), 0x8000 | 1 << 10], 0, m)
    assert r.overload and r.stable is True and not r.is_weight


def test_format_kg_keeps_the_device_resolution() -> None:
    assert format_kg(20500.37, 2) == "20500.37"
    assert format_kg(20500.0, 2) == "20500.00"
    assert format_kg(20500.0, 0) == "20500"
    assert format_kg(float(np.float32(20500.37)), None) == "20500.37"
    assert f"{20500.37:g}" == "20500.4"  # what probe printed before


def test_xk3190_decimals_and_weight_unit() -> None:
    r = Xk3190Decoder().feed(encode_xk3190(1234.5, 1))[0]
    assert isinstance(r, WeightReading)
    assert (r.weight_kg, r.decimals, r.weight_text()) == (1234.5, 1, "1234.5")
    assert r.flags == ("stability_unknown",)
    t = Xk3190Decoder(weight_unit="t").feed(encode_xk3190(32.45, 3))[0]
    assert isinstance(t, WeightReading)
    assert (t.weight_kg, t.decimals, t.weight_text()) == (32450.0, 0, "32450")
    t2 = Xk3190Decoder(weight_unit="t").feed(encode_xk3190(32.45, 2))[0]
    assert isinstance(t2, WeightReading) and t2.weight_text() == "32450"
    rev = Xk3190Decoder().feed(encode_xk3190_reversed(-1.0, 2) + b"=")[0]
    assert isinstance(rev, WeightReading)
    assert (rev.weight_kg, rev.decimals, rev.weight_text()) == (-1.0, 2, "-1.00")
    with pytest.raises(ValueError):
        Xk3190Decoder(weight_unit="lb")


def test_toledo_flags_and_resolution() -> None:
    dec = ToledoDecoder()
    frames = (encode_toledo(1234.56, decimals=2, motion=True)
              + encode_toledo(99.5, decimals=1, overload=True) + b"\x02")
    a, b = (r for r in dec.feed(frames) if isinstance(r, WeightReading))
    assert a.weight_text() == "1234.56" and a.flags == ("unstable",)
    assert b.weight_text() == "99.5" and b.flags == ("overload",) and not b.is_weight


def test_bit_names_names_unknown_bits() -> None:
    table = {1: "acquiring", 2: "adc_fault"}
    assert bit_names(0x0003, table) == ("acquiring", "adc_fault")
    assert bit_names(0x4001, table) == ("acquiring", "0x4000")
    assert bit_names(0, table) == ()


# -- drivers and probe -----------------------------------------------------------------

def test_modbus_overload_is_never_stable_and_probe_says_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ModbusIndicatorTwin([(20500.37, False)], decimals=2) as twin:
        twin.overload = True
        with ModbusIndicator.from_url(twin.url, poll_interval_s=0.01,
                                      timeouts=Timeouts(1.0)) as scale:
            r = scale.read(2.0)
            assert r is not None and r.stable is True and r.overload and not r.is_weight
            with pytest.raises(DeviceTimeoutError):
                scale.read_stable(0.3, n_identical=2)
            h = scale.health_snapshot()
            assert h.info["last_reading"] == "20500.37 kg [overload]"
            assert h.counters["overload_readings"] >= 2
        assert main(["devices", "probe", twin.url, "--kind", "indicator",
                     "--listen-s", "0.3"]) == 0
        out = capsys.readouterr().out
        assert "OVERLOAD" in out and "20500.37 kg" in out and "[overload]" in out
        assert "stable 稳定" not in out and "20500.4" not in out
        assert "(overload " in out  # the summary counts the flag
        twin.overload = False
        assert main(["devices", "probe", twin.url, "--kind", "indicator",
                     "--listen-s", "0.3"]) == 0
        out = capsys.readouterr().out
        assert "weight 20500.37 kg stable 稳定" in out and "OVERLOAD" not in out
        twin.data_valid = False  # the indicator reports an error: counted, no reading
        assert main(["devices", "probe", twin.url, "--kind", "indicator",
                     "--listen-s", "0.3"]) == 0
        out = capsys.readouterr().out
        assert "indicator: 0 readings" in out and "data-valid bit 15 is clear" in out


def test_xk3190_weight_unit_from_the_url() -> None:
    with StreamIndicator.from_url("xk3190+serial:loop://?weight_unit=t") as scale:
        assert scale.health_snapshot().info["weight_unit"] == "t"
    with pytest.raises(DeviceConfigurationError):
        StreamIndicator.from_url("toledo+serial:loop://?weight_unit=t")


def test_url_settings_become_keywords_and_a_given_keyword_wins() -> None:
    url = parse_device_url("zsf+tcp://h:1?stall_timeout_s=3.5&max_frame_bytes=0x100"
                           "&weight_unit=t&other=x")
    assert url.settings({}, stall_timeout_s=float, max_frame_bytes=int, weight_unit=str) == {
        "stall_timeout_s": 3.5, "max_frame_bytes": 256, "weight_unit": "t"}
    assert url.settings({"stall_timeout_s": 1.0, "timeouts": None}, stall_timeout_s=float,
                        poll_interval_s=float) == {"stall_timeout_s": 1.0, "timeouts": None}
    with pytest.raises(DeviceConfigurationError, match="max_frame_bytes"):
        parse_device_url("tcp://h:1?max_frame_bytes=big").settings({}, max_frame_bytes=int)


def test_every_modbus_backend_takes_poll_interval_from_its_url() -> None:
    for cls, query in ((ModbusSampleSource, ""), (ModbusRecordSource, "&kind=records"),
                       (ModbusIndicator, "&map=zhichao")):
        url = f"modbus+tcp://127.0.0.1:9?poll_interval_s=0.25{query}"
        with cls.from_url(url) as dev:
            assert dev._modbus.poll_interval_s == 0.25, cls.__name__
        with cls.from_url(url, poll_interval_s=0.5) as dev:
            assert dev._modbus.poll_interval_s == 0.5, cls.__name__


def test_sample_ring_status_bits_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with ModbusSampleRingTwin(make_samples(4000, 2), 1000, START_UTC, ring_samples=512,
                              speed=1.0) as twin:
        twin.status = 0x0003  # acquiring, ADC fault
        with ModbusSampleSource.from_url(twin.url, poll_interval_s=0.01,
                                         timeouts=Timeouts(1.0)) as src:
            assert src.read_block(1.0) is not None
            h = src.health_snapshot()
            assert h.info["device_status"] == "acquiring, adc_fault"
            assert h.counters["device_faults"] == 1
            src.read_block(0.1)
            assert src.health_snapshot().counters["device_faults"] == 1  # counted once
        assert main(["devices", "probe", twin.url, "--listen-s", "0.3"]) == 0
    assert "device_status = acquiring, adc_fault" in capsys.readouterr().out


def test_record_ring_status_bits_are_shown() -> None:
    with ModbusRecordTwin(records(3), ring_slots=8, interval_s=0.0) as twin:
        twin.status = 0x0005  # running, clock not synced
        with ModbusRecordSource.from_url(twin.url, poll_interval_s=0.01,
                                         timeouts=Timeouts(1.0)) as src:
            assert len(src.records(max_records=3, timeout_s=3.0)) == 3
            h = src.health_snapshot()
    assert h.info["device_status"] == "running, clock_not_synced"
    assert h.counters["device_faults"] == 1


# -- the registry opens every WIM URL ----------------------------------------------------

@pytest.mark.parametrize(("url", "kind", "cls"), [
    ("zsf+tcp://127.0.0.1:9", "samples", StreamSampleSource),
    ("tcp://127.0.0.1:9", "samples", StreamSampleSource),
    ("zsf+serial:///dev/ttyUSB0?baud_rate=921600", "samples", StreamSampleSource),
    ("serial:loop://", "samples", StreamSampleSource),
    ("modbus+tcp://127.0.0.1:502?device_id=1", "samples", ModbusSampleSource),
    ("modbus+rtu:///dev/ttyS1?baud_rate=115200&parity=E", "samples", ModbusSampleSource),
    ("zwr+tcp://127.0.0.1:9", "records", StreamRecordSource),
    ("zwr+serial:///dev/ttyS2?baud_rate=9600", "records", StreamRecordSource),
    ("zwr+serial:loop://", "records", StreamRecordSource),
    ("tcp://127.0.0.1:9?kind=records", "records", StreamRecordSource),
    ("modbus+tcp://127.0.0.1:502?kind=records", "records", ModbusRecordSource),
    ("modbus+rtu:///dev/ttyS3?kind=records", "records", ModbusRecordSource),
])
def test_open_wim_device(url: str, kind: str, cls: type) -> None:
    assert wim_kind(url) == kind
    with open_wim_device(url) as dev:
        assert type(dev) is cls
        assert isinstance(dev, SampleSource if kind == "samples" else RecordSource)


def test_guess_kind_of_an_indicator_map() -> None:
    from zhichao.devices.registry import guess_kind

    assert guess_kind("modbus+tcp://h:502?device_id=1&map=zhichao") == "indicator"
    assert guess_kind("modbus+rtu:///dev/ttyS0?map=tuna-id551") == "indicator"
    assert guess_kind("modbus+tcp://h:502?device_id=1") == "samples"
    assert guess_kind("zwr+tcp://h:1") == "records"


@pytest.mark.parametrize(("url", "error"), [
    ("xk3190+serial:///dev/ttyS0", DeviceConfigurationError),  # an indicator
    ("folder:///srv/frames", DeviceConfigurationError),  # a camera
    ("modbus+tcp://127.0.0.1:502?map=zhichao", DeviceConfigurationError),  # an indicator
    ("tcp://no-port", DeviceConfigurationError),
    ("zsf+tcp://127.0.0.1:9?stall_timeout_s=soon", DeviceConfigurationError),
    ("modbus+tcp://127.0.0.1:502?poll_interval_s=often", DeviceConfigurationError),
    ("zwr+serial:///dev/ttyS2?baud_rate=fast", DeviceConfigurationError),
    ("carrier-pigeon://x:1", DeviceNotAvailableError),
    ("tcp://127.0.0.1:9?kind=camera", DeviceConfigurationError),
])
def test_open_wim_device_refuses(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_wim_device(url).close()


def test_wim_urls_deliver_through_the_registry() -> None:
    """One URL each, real links: ZSF/1 over TCP, ZWR/1 over a pty and TCP, both Modbus
    rings over TCP and the record ring over RTU on a pty null modem."""
    with SampleStreamTwin(make_samples(2000, 4), 5000, START_UTC, speed=0) as twin, \
            open_wim_device("zsf+" + twin.url, timeouts=Timeouts(1.0)) as dev:
        assert isinstance(dev, SampleSource)
        assert dev.read_block(2.0) is not None
    for link in ("pty", "tcp"):
        with RecordLineTwin(records(3), link=link, interval_s=0.02) as rtwin:
            assert rtwin.url.startswith(f"zwr+{'serial' if link == 'pty' else 'tcp'}://")
            with open_wim_device(rtwin.url, timeouts=Timeouts(1.0)) as rdev:
                assert isinstance(rdev, RecordSource)
                got = rdev.records(max_records=3, timeout_s=5.0)
        assert [r.seq for r in got] == [0, 1, 2]
    with ModbusSampleRingTwin(make_samples(4000, 2), 1000, START_UTC, ring_samples=512) as mt, \
            open_wim_device(mt.url, timeouts=Timeouts(1.0)) as mdev:
        assert isinstance(mdev, ModbusSampleSource)
        assert mdev.read_block(2.0) is not None
    with PtyNullModem() as modem, ModbusRecordTwin(
            records(2), ring_slots=8, interval_s=0.0, serial_port=modem.path_a,
            client_port=modem.path_b) as rt:
        assert rt.url.startswith("modbus+rtu://") and "kind=records" in rt.url
        with open_wim_device(rt.url, timeouts=Timeouts(2.0)) as rdev:
            assert isinstance(rdev, ModbusRecordSource)
            deadline = time.monotonic() + 10
            got = []
            while len(got) < 2 and time.monotonic() < deadline:
                got += rdev.records(max_records=2 - len(got), timeout_s=1.0)
    assert [r.seq for r in got] == [0, 1]


# -- the shared decoder skeleton ---------------------------------------------------------

def _stream(protocol: str) -> bytes:
    if protocol == "xk3190":
        return (b"\xffjunk" + encode_xk3190(-250.0, 0, a22_nibbles=True) + encode_xk3190(7.5, 1)
                + b"=00.1000-" + encode_xk3190(20500.0, 0) + b"\x02+bad")
    return (b"zz" + encode_toledo(1.25, decimals=2, motion=True)
            + encode_toledo(10, overload=True) + b"\x02\x02" + encode_toledo(-3.5, decimals=1)
            + b"\x02")


def _summary(items: Sequence[object]) -> list[tuple[object, ...]]:
    return [(r.weight_kg, r.decimals, r.flags) if isinstance(r, WeightReading)
            else (type(r).__name__,) for r in items]


@settings(max_examples=200, deadline=None)
@given(protocol=st.sampled_from(["xk3190", "toledo"]),
       cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_decoders_give_the_same_readings_however_the_bytes_arrive(
        protocol: str, cuts: list[int]) -> None:
    data = _stream(protocol)
    new = Xk3190Decoder if protocol == "xk3190" else ToledoDecoder
    whole = new().feed(data)
    dec = new()
    parts: list[WeightReading | object] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        parts.extend(dec.feed(data[start:cut]))
        start = cut
    readings = [r for r in whole if isinstance(r, WeightReading)]
    assert len(readings) == (4 if protocol == "xk3190" else 3)
    assert [x for x in _summary(parts) if len(x) > 1] == [x for x in _summary(whole)
                                                          if len(x) > 1]


@pytest.mark.parametrize("decoder", [Xk3190Decoder, ToledoDecoder])
def test_buffer_overflow_is_reported_by_both_decoders(decoder: type) -> None:
    dec = decoder(max_buffer_bytes=4)  # less than a frame: a started frame overflows it
    items = dec.feed(b"\x02" + b"0" * 8)
    assert [(f.kind, f.n_bytes, f.detail) for f in items] == [("garbage", 9, "buffer overflow")]
    assert dec.feed(b"") == []
