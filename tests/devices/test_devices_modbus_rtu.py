"""Modbus RTU on a real pty pair (a null modem between two pseudo-terminals) against a real
pymodbus RTU server: the sample ring, with bytes damaged on the line."""

from __future__ import annotations

import random
import time

import numpy as np

from tests.devices.conftest import START_UTC, make_samples
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.registry import open_device
from zhichao.devices.samples import ModbusSampleSource, SampleBlock
from zhichao.devices.twins.links import PtyNullModem
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


def _check(blocks: list[SampleBlock], expected: np.ndarray) -> set[int]:
    seen: set[int] = set()
    prev_end = None
    for b in blocks:
        np.testing.assert_allclose(b.samples, expected[b.first_index:b.end_index], atol=6e-4)
        idx = set(range(b.first_index, b.end_index))
        assert not seen & idx, "a sample delivered twice"
        seen |= idx
        if prev_end is not None and b.first_index != prev_end:
            assert b.gap_before_samples != 0 and b.reason
        prev_end = b.end_index
    return seen


def test_sample_ring_over_rtu() -> None:
    data = np.round(make_samples(3000, 4, seed=9), 3)
    with PtyNullModem() as modem:
        twin = ModbusSampleRingTwin(data, 500, START_UTC, ring_samples=512, speed=2,
                                    serial_port=modem.path_a, client_port=modem.path_b)
        with twin, open_device("samples", twin.url, poll_interval_s=0.02,
                               timeouts=Timeouts(1.0)) as source:
            assert isinstance(source, ModbusSampleSource)
            blocks = _read(source, 1500, 10.0)
            h = source.health_snapshot()
    seen = _check(blocks, data.astype(np.float32))
    assert blocks[0].reason == "start" and all(b.plain for b in blocks[1:])
    assert seen == set(range(blocks[0].first_index, blocks[-1].end_index))
    assert h.info["n_channels"] == 4 and h.error_count == 0


def test_sample_ring_over_rtu_with_damaged_bytes_loses_nothing() -> None:
    data = np.round(make_samples(3000, 4, seed=10), 3)
    rnd = random.Random(4)
    damaged = 0

    def tamper(direction: str, chunk: bytes) -> bytes:
        nonlocal damaged
        if direction == "a>b" and len(chunk) > 4 and rnd.random() < 0.05:
            buf = bytearray(chunk)
            buf[rnd.randrange(len(buf))] ^= 0x5A
            damaged += 1
            return bytes(buf)
        return chunk

    with PtyNullModem() as modem:
        modem.tamper = tamper
        twin = ModbusSampleRingTwin(data, 500, START_UTC, ring_samples=4096, speed=2,
                                    serial_port=modem.path_a, client_port=modem.path_b)
        with twin, ModbusSampleSource.from_url(twin.url, poll_interval_s=0.02,
                                               timeouts=Timeouts(0.5),
                                               backoff=Backoff(0.02, 0.1)) as source:
            blocks = _read(source, 2500, 20.0)
            h = source.health_snapshot()
    seen = _check(blocks, data.astype(np.float32))
    assert damaged >= 3 and h.counters["disconnects"] >= 1
    # the driver's own read pointer: a damaged reply is read again, no sample is lost
    assert seen == set(range(blocks[0].first_index, blocks[-1].end_index))
    assert all(b.gap_before_samples == 0 for b in blocks[1:])
