"""WIM sample source over real TCP sockets and pseudo-terminals, with injected faults."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from tests.devices.conftest import START_UTC, check_no_silent_loss, collect, make_samples
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.errors import DeviceClosedError
from zhichao.devices.faults import Fault, FaultInjector
from zhichao.devices.samples import StreamSampleSource
from zhichao.devices.twins.samples import SampleStreamTwin


def _source(url: str, **kw: object) -> StreamSampleSource:
    kw.setdefault("timeouts", Timeouts(1.0))
    kw.setdefault("backoff", Backoff(initial_s=0.02, max_s=0.2))
    return StreamSampleSource.from_url(url, **kw)


def test_clean_stream_over_tcp(samples_8ch: np.ndarray) -> None:
    with SampleStreamTwin(samples_8ch, 5000, START_UTC, speed=0) as twin, \
            _source(twin.url) as source:
        blocks = collect(source, twin)
    check_no_silent_loss(blocks, twin)
    assert blocks[0].reason == "start" and blocks[0].first_index == 0
    assert blocks[0].device_time_utc == START_UTC
    assert all(b.plain for b in blocks[1:])
    h = source.health_snapshot()
    assert h.counters["samples"] == samples_8ch.shape[0] and h.error_count == 0
    assert h.info["n_channels"] == 8


SCHEDULE = {
    5: [Fault("corrupt", 4)], 9: [Fault("garbage", 50)], 12: [Fault("oversize")],
    15: [Fault("split", 5)], 18: [Fault("merge")], 19: [Fault("merge")], 22: [Fault("drop")],
    30: [Fault("disconnect", 3)], 40: [Fault("clock_jump", 42.0)], 45: [Fault("stall", 0.1)],
    50: [Fault("bad_values")], 60: [Fault("reboot", 4)], 70: [Fault("drop"), Fault("split", 2)],
    80: [Fault("clock_jump", -3600.0)], 90: [Fault("reboot", 2)],
}


@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_every_fault_is_reported_and_nothing_is_lost_silently(link: str) -> None:
    data = make_samples(100 * 120, 8, seed=2)
    injector = FaultInjector(schedule=SCHEDULE, seed=3)
    twin = SampleStreamTwin(data, 5000, START_UTC, link=link, speed=0, injector=injector)
    # open the port before the device talks: opening a serial port flushes its input
    with _source(twin.url) as source:
        source.open()  # the listening socket or pty exists before the twin runs
        with twin:
            blocks = collect(source, twin)
    check_no_silent_loss(blocks, twin)
    reasons = [b.reason for b in blocks if b.reason]
    assert reasons.count("device_reboot") == 2
    assert "bad_values" in reasons and "sequence_gap" in reasons
    if link == "tcp":
        assert "reconnect" in reasons
    events = [e for b in blocks for e in b.events]
    assert events.count("clock_jump") == 2
    c = source.health_snapshot().counters
    assert c["crc_errors"] >= 1 and c["oversize_frames"] == 1 and c["bad_values"] == 1
    assert c["reboots"] == 2 and c["clock_jumps"] == 2
    assert c["sequence_gaps"] >= 3
    # after a reboot the station index continues: reboot losses estimated from the clock
    reboot_blocks = [b for b in blocks if b.reason == "device_reboot"]
    assert all(b.gap_before_samples == -1 for b in reboot_blocks)


def test_random_fault_soak_over_tcp() -> None:
    data = make_samples(100 * 800, 4, seed=4)
    rates = {"corrupt": 0.01, "garbage": 0.01, "split": 0.02, "merge": 0.02, "drop": 0.01,
             "disconnect": 0.004, "reboot": 0.003, "clock_jump": 0.003, "bad_values": 0.003}
    injector = FaultInjector(rates=rates, seed=11)
    with SampleStreamTwin(data, 5000, START_UTC, speed=0, injector=injector) as twin, \
            _source(twin.url) as source:
        blocks = collect(source, twin, timeout_s=40)
    delivered = check_no_silent_loss(blocks, twin)
    assert sum(injector.injected.values()) > 20
    assert delivered.sum() > 0.9 * data.shape[0]


def test_stall_makes_the_driver_reconnect() -> None:
    data = make_samples(100 * 40, 2, seed=5)
    injector = FaultInjector(schedule={10: [Fault("stall", 1.0)]})
    with SampleStreamTwin(data, 5000, START_UTC, speed=0, injector=injector) as twin, \
            _source(twin.url, stall_timeout_s=0.3) as source:
        blocks = collect(source, twin)
    check_no_silent_loss(blocks, twin, exact=False)
    c = source.health_snapshot().counters
    assert c["stalls"] >= 1 and c["reconnects"] >= 1
    assert any(b.reason == "reconnect" for b in blocks)


def test_pty_clean_stream_int16() -> None:
    data = np.round(make_samples(6000, 8, seed=6) * 100) / 100
    twin = SampleStreamTwin(data.astype(np.float32), 5000, START_UTC, link="pty", speed=0,
                            encoding=1, scale=0.01)
    with _source(twin.url + "?baud_rate=921600") as source:
        source.open()
        with twin:
            blocks = collect(source, twin)
    got = np.concatenate([b.samples for b in blocks])
    np.testing.assert_allclose(got, data, atol=0.006)
    assert source.health_snapshot().error_count == 0


def test_unreachable_device_backs_off_and_never_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with _source(f"tcp://127.0.0.1:{port}") as source:
        t0 = time.monotonic()
        assert source.read_block(0.5) is None
        assert time.monotonic() - t0 < 1.5
        h = source.health_snapshot()
        assert not h.connected and 2 <= h.counters["connect_failures"] <= 10
    with pytest.raises(DeviceClosedError):
        source.read_block(0.1)
    source.close()  # idempotent


def test_random_bytes_from_a_device_are_counted_not_fatal() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        rng = np.random.default_rng(0)
        with conn:
            for _ in range(50):
                if stop.is_set():
                    break
                conn.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
                time.sleep(0.002)
            stop.wait(2)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with _source(f"tcp://127.0.0.1:{port}") as source:
        assert source.read_block(0.6) is None
        c = source.health_snapshot().counters
    stop.set()
    t.join(3)
    server.close()
    assert c["bytes_discarded"] > 100_000 and c.get("frames", 0) == 0
