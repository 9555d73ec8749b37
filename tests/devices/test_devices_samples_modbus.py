"""WIM sample source polling a sample ring on a real pymodbus server."""

from __future__ import annotations

import time

import numpy as np

from tests.devices.conftest import START_UTC, make_samples
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.samples import ModbusSampleSource, SampleBlock
from zhichao.devices.twins.samples import ModbusSampleRingTwin


def _read(source: ModbusSampleSource, until_index: int, timeout_s: float) -> list[SampleBlock]:
    blocks: list[SampleBlock] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        b = source.read_block(0.2)
        if b is not None:
            blocks.append(b)
            if b.end_index >= until_index:
                break
    return blocks


def test_ring_polling_reboot_and_overrun() -> None:
    data = np.round(make_samples(4000, 4, seed=7), 3)
    twin = ModbusSampleRingTwin(data, 1000, START_UTC, ring_samples=256, scale=0.001, speed=2)
    with twin, ModbusSampleSource.from_url(twin.url, poll_interval_s=0.01,
                                           timeouts=Timeouts(1.0),
                                           backoff=Backoff(0.02, 0.2)) as source:
        blocks = _read(source, 800, 5.0)
        # a pause longer than the ring: the driver must report an overrun, not hide it
        time.sleep(0.3)
        blocks += _read(source, 1600, 5.0)
        twin.reboot(lost_samples=100)
        blocks += _read(source, 3500, 8.0)
        health = source.health_snapshot()
    expected = data.astype(np.float32)
    prev_end = None
    seen: set[int] = set()
    for b in blocks:
        np.testing.assert_allclose(b.samples, expected[b.first_index:b.end_index], atol=6e-4)
        assert not seen & set(range(b.first_index, b.end_index))
        seen |= set(range(b.first_index, b.end_index))
        if prev_end is not None and b.first_index != prev_end:
            assert b.gap_before_samples != 0 and b.reason
        prev_end = b.end_index
    reasons = {b.reason for b in blocks}
    assert {"start", "fifo_overrun", "device_reboot"} <= reasons
    assert health.counters["reboots"] == 1 and health.info["n_channels"] == 4


def test_a_new_driver_resumes_where_the_reader_left_off() -> None:
    """A restarted reader gives the driver its resume point: in the same power-up, while
    the ring holds it, the first block starts there (nothing sent twice, nothing lost);
    a point of another power-up or one the ring no longer holds is not used (the latter
    is an overrun)."""
    data = np.round(make_samples(6000, 4, seed=3), 3)
    twin = ModbusSampleRingTwin(data, 1000, START_UTC, ring_samples=2048, scale=0.001, speed=1)

    def first_block(resume: tuple[int, int] | None) -> SampleBlock:
        with ModbusSampleSource.from_url(twin.url, poll_interval_s=0.01,
                                         timeouts=Timeouts(1.0),
                                         backoff=Backoff(0.02, 0.2)) as source:
            if resume is not None:
                source.resume_at(*resume)
            blocks = _read(source, 0, 5.0)
        assert blocks
        return blocks[0]

    with twin:
        plain = first_block(None)  # the twin's clock starts with this first request
        time.sleep(1.2)  # about 1 200 samples in the ring
        resumed = first_block((twin.boot_id, 300))
        other_boot = first_block((twin.boot_id + 1, 300))
        time.sleep(1.5)  # sample 300 has left the ring's safe part
        too_old = first_block((twin.boot_id, 300))
    assert plain.first_index == 0 and plain.reason == "start"
    assert resumed.first_index == 300 and resumed.reason == "start"
    np.testing.assert_allclose(resumed.samples, data[300:300 + resumed.n_samples], atol=6e-4)
    assert other_boot.first_index == 0
    assert too_old.first_index > 300 and too_old.reason == "fifo_overrun"
