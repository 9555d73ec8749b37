"""WIM sample source polling a sample ring on a real pymodbus server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.devices.conftest import START_UTC, make_samples
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts, parse_device_url
from zhichao.devices.modbus import f32_to_regs, u64_to_regs
from zhichao.devices.sample_ring import SAMPLE_MAGIC, SAMPLE_RING_BASE
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


class _RingTwin(ModbusSampleRingTwin):
    """The sample-ring twin, with a unit that restarts keeping its boot id, a header that
    may claim another ring size, and replies that may be slow (an RTU line)."""

    claimed_ring: int | None = None
    reply_delay_s = 0.0

    def restart_keeping_boot_id(self) -> None:
        with self.server.lock:
            self._rec_at_boot += self._available()
            self._written = 0

    def _refresh(self, regs: list[int], fc: int, address: int, count: int) -> None:
        super()._refresh(regs, fc, address, count)
        if self.claimed_ring is not None:
            regs[16] = self.claimed_ring
        if self.reply_delay_s:
            time.sleep(self.reply_delay_s)


def _source(twin: ModbusSampleRingTwin, **kw: object) -> ModbusSampleSource:
    return ModbusSampleSource.from_url(twin.url, poll_interval_s=0.01, timeouts=Timeouts(1.0),
                                       backoff=Backoff(0.02, 0.2), **kw)


@pytest.mark.parametrize("keep_boot_id", [False, True])
def test_a_new_power_up_is_read_from_its_first_row_the_ring_holds(keep_boot_id: bool) -> None:
    """The unit restarts (a new boot id while the link is down; or, keeping its boot id,
    while the driver polls): the new power-up is delivered from its row 0, still in the
    ring, after a ``device_reboot`` gap — none of it skipped or taken for duplicates."""
    data = np.round(make_samples(20_000, 2, seed=5), 3)
    twin = _RingTwin(data, 1000, START_UTC, ring_samples=4096, scale=0.001, speed=1)
    with twin, _source(twin) as source:
        # kept boot id: the counter must fall below the pointer; a new boot id: the new
        # power-up runs past the old pointer before the driver reads again
        blocks = _read(source, 1500 if keep_boot_id else 300, 5.0)
        n_old = len(blocks)
        if keep_boot_id:
            twin.restart_keeping_boot_id()
            time.sleep(0.3)
        else:
            source._link_lost("cable pulled (test)")
            twin.reboot(lost_samples=0)
            time.sleep(1.2)  # the unit runs 1.2 s in its new power-up, unread
        at_boot = twin._rec_at_boot
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            b = source.read_block(0.2)
            if b is not None:
                blocks.append(b)
                if len(blocks) > n_old and b.device_index + b.n_samples >= 1500:
                    break
        c = source.health_snapshot().counters
    old, new = blocks[:n_old], blocks[n_old:]
    assert new and new[0].device_index == 0, [(b.device_index, b.reason) for b in new[:3]]
    assert new[0].reason == "device_reboot" and new[0].gap_before_samples == -1
    assert new[0].first_index >= old[-1].end_index
    delivered = np.zeros(data.shape[0], dtype=np.int64)
    for i, b in enumerate(blocks):
        row = b.device_index + (at_boot if i >= n_old else 0)
        np.testing.assert_allclose(b.samples, data[row:row + b.n_samples], atol=6e-4)
        delivered[row:row + b.n_samples] += 1
        if i > n_old:
            assert b.device_index == blocks[i - 1].device_index + blocks[i - 1].n_samples
    assert delivered.max() == 1
    assert c["reboots"] == 1 and "duplicates" not in c


def test_a_ring_beyond_register_65535_is_refused_not_raised() -> None:
    """A header whose ring (R rows × C channels from register 100) would pass register
    65535 is a protocol error, counted; read_block never raises pymodbus's ValueError."""
    data = np.round(make_samples(2000, 8, seed=2), 3)
    twin = _RingTwin(data, 1000, START_UTC, ring_samples=1024, scale=0.001, speed=1)
    twin.claimed_ring = 8192  # 100 + 8192 × 8 > 65536
    with twin, _source(twin) as source:
        time.sleep(0.2)
        assert source.read_block(0.3) is None
        h = source.health_snapshot()
    assert h.counters["bad_values"] >= 1 and "65535" in (h.last_error or "")


def test_read_holding_turns_a_refused_request_into_a_protocol_error() -> None:
    from zhichao.devices.errors import DeviceProtocolError
    from zhichao.devices.modbus import ModbusLink

    class Refusing:
        def read_holding_registers(self, address: int, count: int, device_id: int) -> None:
            raise ValueError(f"0 <= address {address} <= 65535 !")

    link = ModbusLink(parse_device_url("modbus+tcp://127.0.0.1:1"), timeout_s=0.1)
    link._client = Refusing()
    with pytest.raises(DeviceProtocolError):
        link.read_holding(65530, 10)  # beyond the address space: refused before pymodbus
    with pytest.raises(DeviceProtocolError, match="65535"):
        link.read_holding(100, 10)  # pymodbus's own ValueError, translated


class _ScriptedLink:
    """Holding registers from a list; the second read of ``total_samples`` (after the
    rows) returns ``total_after``, as if the unit wrote rows meanwhile."""

    def __init__(self, regs: list[int], total_after: int) -> None:
        self.regs = regs
        self.total_after = total_after
        self.total_reads = 0

    def read_holding(self, address: int, count: int) -> list[int]:
        if address == 8 and count == 4:
            self.total_reads += 1
            return u64_to_regs(self.total_after)
        return self.regs[address:address + count]


def test_the_row_the_unit_may_be_writing_is_not_kept() -> None:
    """After the rows are read the counter says total_after: the unit may be writing row
    total_after into the slot of row total_after − R, so rows from total_after − R + 1 on
    are kept and the rest is a ``fifo_overrun`` gap."""
    ring, n_ch, total = 16, 1, 100
    regs = [0] * (SAMPLE_RING_BASE + ring * n_ch)
    regs[0:6] = [SAMPLE_MAGIC, 1, n_ch, 1000, 1, 1]
    regs[6:8] = f32_to_regs(1.0)
    regs[8:12] = u64_to_regs(total)
    regs[12:16] = u64_to_regs(round(START_UTC.timestamp() * 1e6))
    regs[16] = ring
    for i in range(total - ring, total):
        regs[SAMPLE_RING_BASE + i % ring] = i
    source = ModbusSampleSource("modbus+tcp://127.0.0.1:1?device_id=1")
    link = _ScriptedLink(regs, total_after=total + 4)
    source._modbus._link = link  # type: ignore[assignment]
    try:
        (frame,) = source._read_frames_internal(0.05)
    finally:
        source._modbus._link = None
        source.close()
    # the driver starts at the oldest safe row, 100 − (16 − 4) = 88; the unit wrote rows
    # 100 … 103 meanwhile and may be writing row 104 into the slot of row 88
    assert frame.sample_index == total + 4 - ring + 1 == 89
    assert frame.samples[:, 0].tolist() == list(range(89, 100))
    assert source.tracker._pending_reason == "fifo_overrun"


def test_int16_full_scale_rows_of_the_ring_are_flagged_saturation() -> None:
    data = np.round(make_samples(600, 2, seed=9), 3)
    data[100, 0] = 50.0  # beyond 32767 counts × 0.001: the unit's ADC saturated
    data[101, 1] = -50.0
    twin = _RingTwin(data, 1000, START_UTC, ring_samples=1024, scale=0.001, speed=2)
    with twin, _source(twin) as source:
        blocks = _read(source, 600, 5.0)
        h = source.health_snapshot()
    flagged = [b for b in blocks if "saturation" in b.events]
    # the two rows may fall in one block or two (where a poll ends depends on timing):
    # every flagged block holds one of them, and the flagged blocks hold both
    held = [{r for r in (100, 101) if b.first_index <= r < b.end_index} for b in flagged]
    assert flagged and all(held) and set().union(*held) == {100, 101}
    assert sum(b.n_samples for b in blocks) == 600
    assert h.counters["saturated_samples"] == 2


def test_a_poll_on_a_slow_link_returns_near_the_deadline() -> None:
    """3 000 rows × 8 channels waiting (200 requests) on a link with 5 ms replies: no
    read_block call holds the caller for the whole backlog (about 1 s); all rows arrive,
    once, in order."""
    n = 3000
    data = np.round(make_samples(n, 8, seed=4), 3)
    twin = _RingTwin(data, 1000, START_UTC, ring_samples=4096, scale=0.001, speed=1)
    twin._t0 = time.monotonic() - 10.0  # the unit has acquired the whole recording
    twin.reply_delay_s = 0.005
    longest_s = 0.0
    blocks: list[SampleBlock] = []
    with twin, _source(twin) as source:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and (not blocks or blocks[-1].end_index < n):
            t = time.monotonic()
            b = source.read_block(0.05)
            longest_s = max(longest_s, time.monotonic() - t)
            if b is not None:
                blocks.append(b)
    assert blocks and blocks[-1].end_index == n
    assert [b.first_index for b in blocks[1:]] == [b.end_index for b in blocks[:-1]]
    np.testing.assert_allclose(np.concatenate([b.samples for b in blocks]), data, atol=6e-4)
    assert longest_s < 0.5, longest_s
