"""WIM record sources: ZWR/1 lines over real ptys and TCP, the Modbus record ring over a real
pymodbus server (TCP, and RTU on a pty null modem), with injected faults and garbage."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.devices.conftest import START_UTC
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.errors import DeviceClosedError
from zhichao.devices.faults import Fault, FaultInjector
from zhichao.devices.records import (
    STATUS_BITS,
    ModbusRecordSource,
    RecordFault,
    RecordLineDecoder,
    StreamRecordSource,
    WimRecord,
    check_record,
    decode_record_slot,
    encode_record_line,
    encode_record_slot,
)
from zhichao.devices.registry import open_device
from zhichao.devices.twins.links import PtyNullModem
from zhichao.devices.twins.records import ModbusRecordTwin, RecordLineTwin


def make_record(seq: int = 0, n_axles: int = 6, gross_kg: float = 42_000.0,
                **kw: object) -> WimRecord:
    loads = tuple(round(gross_kg / n_axles, 1) for _ in range(n_axles))
    base = WimRecord(
        boot_id=1, seq=seq, device_time_utc=START_UTC + timedelta(seconds=3 * seq),
        lane_id="2", speed_kmh=61.25, acceleration_ms2=-0.125, axle_loads_kg=loads,
        wheel_loads_kg=tuple((a / 2, a / 2) for a in loads),
        axle_spacings_m=(3.2, 1.35, 7.1, 1.31, 1.31)[:n_axles - 1],
        gross_weight_kg=round(sum(loads), 1),
        row_gross_weights_kg=(gross_kg * 0.99, gross_kg * 1.01), status=0x0020,
        pavement_temperature_c=31.5)
    return replace(base, **kw)  # type: ignore[arg-type]


def records(n: int, seed: int = 0) -> list[WimRecord]:
    rng = np.random.default_rng(seed)
    return [make_record(i, n_axles=int(rng.integers(2, 7)),
                        gross_kg=float(rng.uniform(3000, 55000))) for i in range(n)]


def test_line_round_trip_and_example() -> None:
    r = make_record()
    line = encode_record_line(r)
    assert line.startswith(b"$ZWR1,1,0,2026-05-01T08:00:00.000000Z,2,61.25,-0.125,6,7000;")
    assert line.endswith(b"\r\n") and line[-7:-6] == b"*"
    (got,) = RecordLineDecoder().feed(line)
    assert got == r
    assert got.status_names == ("close_following",)
    assert decode_record_slot(encode_record_slot(r), 1) == r
    assert check_record(r) == ""


def test_decoder_survives_every_kind_of_damage() -> None:
    good = [encode_record_line(r) for r in records(6)]
    crc_bad = bytearray(good[1])
    crc_bad[20] ^= 0x01
    no_end = good[2][:-2]  # lost its CR LF: the next `$` starts a new line
    absurd = encode_record_line(replace(make_record(9), speed_kmh=900.0))
    stream = (b"\x00\xffnoise" + good[0] + bytes(crc_bad) + no_end + good[3]
              + b"$" + b"7" * 3000 + b"\r\n" + absurd + good[4] + b"\r\n\r\n" + good[5])
    dec = RecordLineDecoder()
    out = [item for i in range(0, len(stream), 7) for item in dec.feed(stream[i:i + 7])]
    got = [x for x in out if isinstance(x, WimRecord)]
    faults = [x for x in out if isinstance(x, RecordFault)]
    assert [r.seq for r in got] == [0, 3, 4, 5]
    kinds = [f.kind for f in faults]
    assert kinds.count("crc") == 1 and kinds.count("oversize") == 1
    bad = [f for f in faults if f.kind == "bad_line"]
    assert len(bad) == 1 and "speed" in bad[0].detail and bad[0].seq == (1, 9)
    assert all(f.offset >= 0 for f in faults)


@settings(max_examples=60, deadline=None)
@given(noise=st.lists(st.binary(max_size=60), min_size=7, max_size=7),
       cuts=st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_decoder_any_chunking_any_garbage_between_lines(noise: list[bytes],
                                                         cuts: list[int]) -> None:
    recs = records(6, seed=2)
    # garbage between lines may eat the next line's start only if it holds no `$`/LF...
    gaps = [n.replace(b"$", b"").replace(b"\n", b"") for n in noise]
    stream = b"".join(g + b"\n" + encode_record_line(r) for g, r in zip(gaps, recs,
                                                                        strict=False))
    stream += gaps[-1]
    dec = RecordLineDecoder()
    out: list[WimRecord | RecordFault] = []
    pos = 0
    for i in range(10_000):
        if pos >= len(stream):
            break
        n = cuts[i % len(cuts)]
        out.extend(dec.feed(stream[pos:pos + n]))
        pos += n
    expected = [RecordLineDecoder().feed(encode_record_line(r))[0] for r in recs]
    assert [x for x in out if isinstance(x, WimRecord)] == expected


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000))
def test_decoder_never_raises_on_random_bytes(data: bytes) -> None:
    dec = RecordLineDecoder(max_line_bytes=256)
    out = dec.feed(data) + dec.feed(b"\r\n" + encode_record_line(make_record(5)))
    assert isinstance(out[-1], WimRecord) and out[-1].seq == 5


def test_check_record_names_the_problem() -> None:
    assert "gross" in check_record(make_record(gross_weight_kg=1.0))
    assert "spacing" in check_record(make_record(axle_spacings_m=(0.1, 1, 7, 1, 1)))
    assert "axle 1 load" in check_record(make_record(axle_loads_kg=(-1.0, *[7000.0] * 5)))
    assert "status" in check_record(make_record(status=0x4000))
    assert set(STATUS_BITS.values()) >= {"data_gap", "reversing"}


def _collect(source: StreamRecordSource | ModbusRecordSource, done: threading.Event,
             timeout_s: float = 20.0) -> list[WimRecord]:
    out: list[WimRecord] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = source.read_record(0.4 if done.is_set() else 0.2)
        if r is not None:
            out.append(r)
        elif done.is_set():
            break
    return out


def check_records(got: list[WimRecord], twin: RecordLineTwin) -> None:
    """Every intact record once, nothing damaged, every discontinuity said."""
    sent = {(s.boot_id, s.seq): s for s in twin.sent}
    keys = [(r.boot_id, r.seq) for r in got]
    assert len(keys) == len(set(keys)), "a record delivered twice"
    delivered = {sent[k].index for k in keys}
    assert delivered == twin.intact_indices()
    for prev, r in zip(got, got[1:], strict=False):
        if r.boot_id != prev.boot_id:
            assert r.gap_before_records == -1 and r.reason == "device_reboot"
        else:
            assert r.gap_before_records == r.seq - prev.seq - 1
            if r.gap_before_records:
                assert r.reason
        orig = twin.records[sent[(r.boot_id, r.seq)].index]
        assert r.axle_loads_kg == orig.axle_loads_kg and r.station_time_utc is not None


SCHEDULE = {
    3: [Fault("corrupt", 3)], 6: [Fault("garbage", 80)], 9: [Fault("oversize")],
    12: [Fault("split", 6)], 15: [Fault("merge")], 16: [Fault("merge")], 20: [Fault("drop")],
    25: [Fault("bad_values")], 30: [Fault("clock_jump", 30.0)], 35: [Fault("reboot", 2)],
    40: [Fault("disconnect", 2)], 45: [Fault("stall", 0.1)],
}


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_stream_records_with_faults(link: str) -> None:
    injector = FaultInjector(schedule=SCHEDULE, seed=5)
    twin = RecordLineTwin(records(60), link=link, injector=injector)
    with StreamRecordSource.from_url(twin.url + ("?baud_rate=115200" if link == "pty" else ""),
                                     timeouts=Timeouts(1.0),
                                     backoff=Backoff(0.02, 0.2)) as source:
        source.open()
        with twin:
            got = _collect(source, twin.done)
        h = source.health_snapshot()
    check_records(got, twin)
    c = h.counters
    assert c["crc_errors"] + c.get("bytes_discarded", 0) >= 1
    assert c["oversize_frames"] == 1 and c["bad_values"] == 1 and c["reboots"] == 1
    assert c["clock_jumps"] == 1 and c["sequence_gaps"] >= 3
    assert [e for r in got for e in r.events] == ["clock_jump"]
    assert got[0].reason == "start"
    if link == "tcp":
        assert c["reconnects"] == 1 and any(r.reason == "reconnect" for r in got)


def test_random_record_fault_soak_over_pty() -> None:
    rates = {"corrupt": 0.05, "garbage": 0.05, "split": 0.1, "merge": 0.05, "drop": 0.03,
             "reboot": 0.01, "bad_values": 0.02, "oversize": 0.02}
    injector = FaultInjector(rates=rates, seed=12)
    twin = RecordLineTwin(records(400, seed=3), link="pty", injector=injector)
    with StreamRecordSource.from_url(twin.url, timeouts=Timeouts(1.0)) as source:
        source.open()
        with twin:
            got = _collect(source, twin.done)
    check_records(got, twin)
    assert injector.injected.total() > 50 and len(got) > 300


def test_random_bytes_are_counted_not_fatal() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        rng = np.random.default_rng(1)
        with conn:
            for _ in range(40):
                conn.sendall(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
            conn.sendall(encode_record_line(make_record(0)))
            time.sleep(1.0)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with open_device("records", f"tcp://127.0.0.1:{port}") as source:
        assert isinstance(source, StreamRecordSource)
        got = source.records(max_records=1, timeout_s=3.0)
        c = source.health_snapshot().counters
    t.join(3)
    server.close()
    assert [r.seq for r in got] == [0]
    assert c["bytes_discarded"] > 10_000
    with pytest.raises(DeviceClosedError):
        source.read_record(0.1)


def test_stalled_controller_with_heartbeat_is_reconnected() -> None:
    injector = FaultInjector(schedule={3: [Fault("stall", 0.8)]})
    twin = RecordLineTwin(records(8), link="tcp", injector=injector)
    with StreamRecordSource.from_url(twin.url + "?stall_timeout_s=0.3", timeouts=Timeouts(1.0),
                                     backoff=Backoff(0.02, 0.1)) as source:
        source.open()
        with twin:
            got = _collect(source, twin.done)
        c = source.health_snapshot().counters
    check_records(got, twin)
    assert len(got) == 8 and c["stalls"] >= 1 and c["reconnects"] >= 1
    assert any(r.reason == "reconnect" and r.gap_before_records == 0 for r in got)


def test_modbus_record_ring_over_tcp_overrun_and_reboot() -> None:
    recs = records(400, seed=4)
    twin = ModbusRecordTwin(recs, ring_slots=8, interval_s=0.02)
    with twin, ModbusRecordSource.from_url(twin.url, poll_interval_s=0.01,
                                           timeouts=Timeouts(1.0)) as source:
        got = source.records(max_records=10, timeout_s=5)
        twin.advance(40)  # a platoon: 40 records at once overrun the 8-slot ring
        got += source.records(max_records=8, timeout_s=5)
        twin.reboot(lost_records=3)
        got += source.records(max_records=20, timeout_s=5)
        h = source.health_snapshot()
    keys = [(r.boot_id, r.seq) for r in got]
    assert len(keys) == len(set(keys))
    reasons = {r.reason for r in got}
    assert {"start", "fifo_overrun", "device_reboot"} <= reasons
    overrun = next(r for r in got if r.reason == "fifo_overrun")
    assert overrun.gap_before_records > 0
    for r in got:
        index = r.seq if r.boot_id == 1 else twin._index_at_boot + r.seq
        assert r.axle_loads_kg == tuple(float(round(a)) for a in recs[index].axle_loads_kg)
    assert h.counters["reboots"] == 1 and h.info["ring_slots"] == 8


def test_modbus_record_ring_over_rtu_on_a_pty_null_modem() -> None:
    recs = records(20, seed=6)
    with PtyNullModem() as modem:
        twin = ModbusRecordTwin(recs, ring_slots=32, serial_port=modem.path_a,
                                client_port=modem.path_b, baud_rate=115200)
        assert twin.url.startswith("modbus+rtu:///dev/")
        with twin, open_device("records", twin.url, poll_interval_s=0.01,
                               timeouts=Timeouts(1.0)) as source:
            assert isinstance(source, ModbusRecordSource)
            got = source.records(max_records=20, timeout_s=10)
    assert [r.seq for r in got] == list(range(20))
    assert got[0].reason == "start" and all(r.plain for r in got[1:])


def test_tracker_duplicates_versus_a_counter_reset_without_boot_change() -> None:
    from zhichao.devices.health import HealthMonitor
    from zhichao.devices.records import RecordTracker

    health = HealthMonitor("test://", "records")
    tracker = RecordTracker(health)
    now = START_UTC + timedelta(seconds=10)
    rs = records(5)
    out = [tracker.process(r, now, "test://") for r in rs[:4]]
    assert [o.reason if o else None for o in out] == ["start", None, None, None]
    assert tracker.process(rs[2], now, "test://") is None  # resent after a reconnect
    # the controller restarted but keeps no boot counter: seq 0 again, another vehicle
    reset = replace(rs[4], seq=0, device_time_utc=START_UTC + timedelta(seconds=9))
    got = tracker.process(reset, now, "test://")
    assert got is not None and got.reason == "device_reboot" and got.gap_before_records == -1
    c = health.snapshot().counters
    assert c["duplicates"] == 1 and c["reboots"] == 1


def test_modbus_ring_absurd_and_damaged_slots_become_gaps() -> None:
    recs = records(12, seed=8)
    recs[4] = replace(recs[4], speed_kmh=600.0)  # absurd, but a well-formed slot
    twin = ModbusRecordTwin(recs, ring_slots=16)
    twin.damaged_slots = {7}  # its CRC never matches: read again, then rejected
    with twin, ModbusRecordSource.from_url(twin.url, poll_interval_s=0.01,
                                           timeouts=Timeouts(1.0)) as source:
        got = source.records(max_records=10, timeout_s=5)
        h = source.health_snapshot()
    assert [r.seq for r in got] == [0, 1, 2, 3, 5, 6, 8, 9, 10, 11]
    by_seq = {r.seq: r for r in got}
    assert by_seq[5].gap_before_records == 1 and by_seq[5].reason == "bad_values"
    assert by_seq[8].gap_before_records == 1 and by_seq[8].reason == "bad_values"
    assert h.counters["bad_values"] == 2 and h.counters["torn_reads"] == 3


def test_modbus_record_ring_beyond_register_65535_is_refused_not_raised() -> None:
    """A header claiming 1 000 slots (slots up to register 100 + 1000 × 72 > 65535): a
    protocol error, counted as ``bad_values``; read_record never raises pymodbus's
    ValueError."""
    from zhichao.devices.modbus import u32_to_regs

    class BigRing(ModbusRecordTwin):
        def _refresh(self, regs: list[int], fc: int, address: int, count: int) -> None:
            super()._refresh(regs, fc, address, count)
            regs[4:6] = u32_to_regs(1950)
            regs[6] = 1000

    with BigRing(records(4)) as twin, ModbusRecordSource.from_url(
            twin.url, poll_interval_s=0.01, timeouts=Timeouts(1.0)) as source:
        assert source.read_record(0.3) is None
        h = source.health_snapshot()
    assert h.counters["bad_values"] >= 1 and "65535" in (h.last_error or "")
