"""``docs/devices.md`` states every byte: its worked examples decode as it says, and frames
built here from the docs alone (struct, binascii, a CRC written from the stated
parameters; no zhichao codec) are read by the drivers' decoders."""

from __future__ import annotations

import binascii
import re
import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from zhichao.devices.data import WeightReading, WimRecord
from zhichao.devices.framing import FrameDecoder, SampleFrame
from zhichao.devices.indicator_formats import ToledoDecoder, Xk3190Decoder
from zhichao.devices.indicator_maps import INDICATOR_MAPS, decode_indicator_registers
from zhichao.devices.record_ring import decode_record_slot
from zhichao.devices.zwr import RecordLineDecoder

DOC = (Path(__file__).resolve().parents[2] / "docs" / "devices.md").read_text(encoding="utf-8")
T0_US = 1_777_622_400_000_000  # 2026-05-01T08:00:00Z


def _doc_block(after: str) -> list[str]:
    """The indented block that follows the first line containing ``after``."""
    lines = DOC[DOC.index(after):].splitlines()[1:]
    while lines and not lines[0].startswith("    "):
        lines = lines[1:]
    block: list[str] = []
    for line in lines:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def _crc16_modbus_from_docs(data: bytes) -> int:
    """Reflected polynomial 0xA001, initial value 0xFFFF, no final XOR (as the docs say)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_crc_check_values_stated_in_the_docs() -> None:
    assert "is 0x29B1" in DOC and "= 0x4B37" in DOC
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1
    assert _crc16_modbus_from_docs(b"123456789") == 0x4B37


def test_zsf1_worked_examples() -> None:
    blocks = [_doc_block("device time\n2026-05-01T08:00:00Z"), _doc_block("−500), 46 bytes:")]
    frames = [bytes.fromhex(" ".join(b)) for b in blocks]
    assert [len(f) for f in frames] == [50, 46]
    assert frames[0][-2:] == bytes.fromhex("22 9a")  # CRC 0x9A22, low byte first
    out = FrameDecoder().feed(frames[0] + frames[1])
    assert all(isinstance(f, SampleFrame) for f in out) and len(out) == 2
    a, b = out
    assert isinstance(a, SampleFrame) and isinstance(b, SampleFrame)
    assert (a.boot_id, a.seq, a.sample_index, a.device_time_us, a.sample_rate_hz) == (
        3, 7, 1000, T0_US, 1000.0)
    assert a.samples.tolist() == [[1.5], [-2.0]]
    assert (b.boot_id, b.boot, b.sample_rate_hz) == (1, True, 5000.0)
    np.testing.assert_allclose(b.samples, [[0.25, -0.5]], rtol=1e-6)


@pytest.mark.parametrize("encoding", [0, 1])
def test_zsf1_frame_built_from_the_table(encoding: int) -> None:
    """Header fields at the documented offsets, little-endian, CRC over bytes 2 … end−3
    low byte first."""
    rows = [[10.0, -20.0, 30.5], [1.0, 2.0, -3.0]]
    scale = 0.5 if encoding else 1.0
    if encoding:
        payload = b"".join(struct.pack("<h", round(v / scale)) for row in rows for v in row)
    else:
        payload = b"".join(struct.pack("<f", v) for row in rows for v in row)
    header = (b"\xa5\x5a" + bytes([1, encoding, 3, 0]) + struct.pack("<H", 9)
              + struct.pack("<I", 42) + struct.pack("<H", 2) + b"\0\0"
              + struct.pack("<Q", 123_456) + struct.pack("<q", T0_US)
              + struct.pack("<f", 2000.0) + struct.pack("<f", scale))
    assert len(header) == 40
    body = header + payload
    crc = binascii.crc_hqx(body[2:], 0xFFFF)
    frame = body + bytes([crc & 0xFF, crc >> 8])
    (got,) = FrameDecoder().feed(b"garbage" + frame)[1:]
    assert isinstance(got, SampleFrame)
    assert (got.boot_id, got.seq, got.sample_index, got.device_time_us) == (9, 42, 123_456, T0_US)
    assert got.samples.tolist() == rows
    bad = frame[:-2] + bytes([crc >> 8, crc & 0xFF])  # the CRC high byte first: refused
    assert not any(isinstance(f, SampleFrame) for f in FrameDecoder().feed(bad))


def test_zwr1_example_and_a_line_built_from_the_table() -> None:
    example = re.search(r"`(\$ZWR1,[^`]*)`", DOC)
    assert example is not None
    line = example.group(1).encode("ascii")
    (rec,) = RecordLineDecoder().feed(line + b"\r\n")
    assert isinstance(rec, WimRecord)
    assert (rec.seq, rec.lane_id, rec.speed_kmh, rec.status_names) == (
        0, "2", 61.25, ("close_following",))
    body = "ZWR1,4,17,2026-05-01T08:00:05.5Z,east,80,,2,6000;9000,,4.2,15000,,0000,"
    crc = binascii.crc_hqx(body.encode("ascii"), 0xFFFF)
    (mine,) = RecordLineDecoder().feed(f"${body}*{crc:04x}\n".encode("ascii"))  # lower case
    assert isinstance(mine, WimRecord)
    assert (mine.boot_id, mine.seq, mine.axle_loads_kg, mine.axle_spacings_m) == (
        4, 17, (6000.0, 9000.0), (4.2,))
    assert mine.acceleration_ms2 is None and mine.pavement_temperature_c is None
    assert mine.device_time_utc == datetime(2026, 5, 1, 8, 0, 5, 500_000, tzinfo=UTC)


def test_record_slot_example_and_crc_byte_order() -> None:
    words = " ".join(_doc_block("registers 0 … 71 in hex:")).split()
    regs = [int(w, 16) for w in words]
    assert len(regs) == 72
    data = b"".join(r.to_bytes(2, "big") for r in regs[:71])
    assert _crc16_modbus_from_docs(data) == regs[71] == 0xB101
    rec = decode_record_slot(regs, boot_id=1)
    assert (rec.speed_kmh, rec.acceleration_ms2, rec.pavement_temperature_c) == (
        61.25, -0.125, 31.5)
    assert rec.axle_spacings_m == (3.6, 1.35) and rec.row_gross_weights_kg == (23850, 24150)
    swapped = regs[:71] + [int.from_bytes(regs[71].to_bytes(2, "little"), "big")]
    with pytest.raises(ValueError, match="CRC"):
        decode_record_slot(swapped, boot_id=1)


def test_indicator_examples() -> None:
    xk = Xk3190Decoder().feed(bytes.fromhex("02 2B 30 30 31 32 33 34 32 31 44 03"))
    assert isinstance(xk[0], WeightReading) and xk[0].weight_text() == "12.34"
    assert isinstance(Xk3190Decoder().feed(b"=00.1000-")[0], WeightReading)
    tol = ToledoDecoder().feed(bytes.fromhex(
        "02 2A 30 20 30 33 32 34 35 30 30 30 30 35 30 30 0D 24") + b"\x02")
    assert isinstance(tol[0], WeightReading)
    assert (tol[0].weight_kg, tol[0].tare_kg, tol[0].stable) == (32450, 500, True)
    # the zhichao map, int32 most significant word first, decimals register 5
    counts = -2_050_037 & 0xFFFFFFFF
    regs = [counts >> 16, counts & 0xFFFF, 0, 0, 0x8001, 2]
    r = decode_indicator_registers(regs, 0, INDICATOR_MAPS["zhichao"])
    assert r.weight_text() == "-20500.37" and r.stable is True


# -- Modbus peers written from the register tables (a plain pymodbus server) --------------

def _words(fmt: str, *values: object) -> list[int]:
    """Big-endian bytes as 16-bit registers: most significant word first, as the docs say."""
    raw = struct.pack(">" + fmt, *values)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


class _StaticPeer:
    """A real Modbus TCP server whose holding registers are the list given."""

    def __init__(self, regs: list[int]) -> None:
        from zhichao.devices.twins.modbus import ModbusTwinServer

        self.regs = regs
        self.server = ModbusTwinServer(len(regs), self._refresh)

    def _refresh(self, regs: list[int], _fc: int, _address: int, _count: int) -> None:
        regs[:len(self.regs)] = self.regs

    def __enter__(self) -> _StaticPeer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def test_sample_ring_peer_from_the_docs() -> None:
    from zhichao.devices.base import Timeouts
    from zhichao.devices.registry import open_wim_device
    from zhichao.devices.sample_source import SampleSource

    c, rate, ring, total = 2, 1000, 64, 50
    newest_us = T0_US + (total - 1) * 1000
    regs = [0] * (100 + ring * c)
    regs[0:6] = [0x5A43, 1, c, rate, 7, 0x0001]
    regs[6:8] = _words("f", 0.5)
    regs[8:12] = _words("Q", total)
    regs[12:16] = _words("q", newest_us)
    regs[16] = ring
    for i in range(total):
        for ch in range(c):
            regs[100 + (i % ring) * c + ch] = _words("h", (-1) ** ch * i)[0]
    with _StaticPeer(regs) as peer:
        url = peer.server.url
        with open_wim_device(url, timeouts=Timeouts(1.0)) as dev:
            assert isinstance(dev, SampleSource)
            block = dev.read_block(3.0)
    assert block is not None
    first = total - (ring - max(4, ring // 4))  # the oldest row the driver reads
    assert (block.first_index, block.n_samples, block.boot_id) == (first, total - first, 7)
    rows = np.arange(first, total, dtype=np.float32)
    np.testing.assert_array_equal(block.samples, np.stack([rows * 0.5, -rows * 0.5], axis=1))
    assert block.device_time_utc == datetime.fromtimestamp(
        (newest_us - (total - 1 - first) * 1000) / 1e6, UTC)


def test_record_ring_and_indicator_peers_from_the_docs() -> None:
    from zhichao.devices.base import Timeouts
    from zhichao.devices.interfaces.modbus_indicator import ModbusIndicator
    from zhichao.devices.record_source import RecordSource
    from zhichao.devices.registry import open_wim_device

    ring = 4
    slot = [0] * 72
    slot[0:2] = _words("I", 5)
    slot[2:6] = _words("q", T0_US)
    slot[6] = 4500  # 45.00 km/h
    slot[7] = 0x8000  # acceleration not reported
    slot[8] = 2
    slot[9] = 0x0040  # incomplete
    slot[10] = _words("h", -55)[0]  # −5.5 °C
    slot[11] = 1
    slot[12:14] = _words("I", 15000)
    slot[14:16] = [6000, 9000]
    slot[26] = 4200  # 4.2 m
    slot[37:39] = _words("I", 15010)
    slot[69] = 3
    slot[71] = _crc16_modbus_from_docs(b"".join(r.to_bytes(2, "big") for r in slot[:71]))
    regs = [0] * (100 + ring * 72)
    regs[0:4] = [0x5A52, 1, 2, 0x0001]
    regs[4:6] = _words("I", 6)  # records 0 … 5 written; seq 5 is the newest
    regs[6:8] = [ring, 72]
    regs[100 + (5 % ring) * 72:100 + (5 % ring) * 72 + 72] = slot
    # records 2 … 4 are empty slots (their CRC register 0 is wrong): read again as torn
    # reads, then rejected as gaps; record 5 is the one written here
    peer = _StaticPeer(regs)
    with peer, open_wim_device(peer.server.url + "&kind=records",
                               timeouts=Timeouts(1.0)) as dev:
        assert isinstance(dev, RecordSource)
        got = dev.records(max_records=4, timeout_s=3.0)
    mine = [r for r in got if r.seq == 5]
    assert len(mine) == 1
    r = mine[0]
    assert (r.boot_id, r.lane_id, r.speed_kmh, r.acceleration_ms2) == (2, "3", 45.0, None)
    assert (r.axle_loads_kg, r.axle_spacings_m, r.row_gross_weights_kg) == (
        (6000.0, 9000.0), (4.2,), (15010.0,))
    assert (r.pavement_temperature_c, r.status_names, r.wheel_loads_kg) == (
        -5.5, ("incomplete",), ())
    ind = _words("i", -2_050_037) + _words("i", -2_050_037) + [0x8001, 2]
    with _StaticPeer(ind) as peer, ModbusIndicator.from_url(
            peer.server.url + "&map=zhichao", poll_interval_s=0.01,
            timeouts=Timeouts(1.0)) as scale:
        reading = scale.read(2.0)
    assert reading is not None and reading.weight_text() == "-20500.37" and reading.stable
