"""The zhichao Modbus record ring: register map and the codec of one record slot.

Holding registers, 0-based, multi-register values most significant word first (the
tables are in ``docs/devices.md``). A slot's last register is the CRC-16/MODBUS of its
registers 0 … 70 taken as big-endian bytes (high byte of each register first), stored as
one register whose value is the CRC (so the CRC's high byte is the register's high byte).
"""

from __future__ import annotations

from datetime import timedelta

from zhichao.devices.base import EPOCH
from zhichao.devices.crc import crc16_modbus
from zhichao.devices.data import MAX_AXLES, MAX_ROWS, WimRecord
from zhichao.devices.modbus import regs_to_i64, regs_to_u32, u32_to_regs, u64_to_regs

#: Holding-register map of the zhichao Modbus record ring (0-based addresses).
RECORD_REGISTERS: dict[str, tuple[int, int]] = {
    "magic": (0, 1),            # 0x5A52 ("ZR")
    "map_version": (1, 1),      # 1
    "boot_id": (2, 1),          # +1 at each power-up
    "status": (3, 1),           # b0 running, b1 sensor fault, b2 clock not synced
    "total_records": (4, 2),    # u32 records since power-up (seq of the newest + 1)
    "ring_slots": (6, 1),       # R
    "slot_registers": (7, 1),   # S = 72
    "device_time_us": (8, 4),   # i64 device clock now [µs since 1970 UTC]
}
RECORD_MAGIC = 0x5A52
#: bits of the header's status register (3)
RING_STATUS_BITS: dict[int, str] = {
    0x0001: "running",
    0x0002: "sensor_fault",
    0x0004: "clock_not_synced",
}
#: the status bits that are faults (shown, counted, logged; the records still flow)
RING_STATUS_FAULTS = 0x0002 | 0x0004
RECORD_RING_BASE = 100  # record seq in slot seq mod R at RECORD_RING_BASE + slot * S
SLOT_REGISTERS = 72
HEADER_COUNT = 12  # registers 0 … 11: the ring's header
_NONE16 = 0x8000  # "not reported" for the signed 16-bit fields

#: layout of one record slot (offsets inside the slot)
SLOT_LAYOUT: dict[str, tuple[int, int]] = {
    "seq": (0, 2),                 # u32
    "time_us": (2, 4),             # i64 device clock at the first axle
    "speed_centi_kmh": (6, 1),     # u16 speed × 100
    "accel_milli_ms2": (7, 1),     # i16 acceleration × 1000, 0x8000 = not reported
    "n_axles": (8, 1),
    "status": (9, 1),
    "temperature_deci_c": (10, 1),  # i16 × 10, 0x8000 = not reported
    "n_rows": (11, 1),             # rows whose gross follows (0 … 4)
    "gross_kg": (12, 2),           # u32
    "axle_loads_kg": (14, 12),     # u16 each, axles 1 … 12
    "spacings_mm": (26, 11),       # u16 each
    "row_gross_kg": (37, 8),       # u32 each, rows 1 … 4
    "wheel_loads_kg": (45, 24),    # u16 (left, right) per axle; all 0 = not reported
    "lane": (69, 1),               # lane number
    "reserved": (70, 1),
    "crc": (71, 1),                # CRC-16/MODBUS over the slot's registers 0 … 70, big-endian
}


def _s16(v: int) -> int | None:
    if v == _NONE16:
        return None
    return v - 0x10000 if v & 0x8000 else v


def _u16_of(v: int | None) -> int:
    return _NONE16 if v is None else v & 0xFFFF


def slot_crc(regs: list[int]) -> int:
    """CRC-16/MODBUS of a slot's registers 0 … 70, each as two bytes, high byte first."""
    return crc16_modbus(b"".join(r.to_bytes(2, "big") for r in regs[:SLOT_REGISTERS - 1]))


def encode_record_slot(r: WimRecord) -> list[int]:
    """The 72 registers of a record slot (for twins and tests)."""
    if r.n_axles > MAX_AXLES or len(r.row_gross_weights_kg) > MAX_ROWS:
        raise ValueError("too many axles or rows for a record slot")
    regs = [0] * SLOT_REGISTERS
    regs[0:2] = u32_to_regs(r.seq)
    us = round((r.device_time_utc - EPOCH) / timedelta(microseconds=1))
    regs[2:6] = u64_to_regs(us)
    regs[6] = min(0xFFFF, round(r.speed_kmh * 100))
    regs[7] = _u16_of(None if r.acceleration_ms2 is None else round(r.acceleration_ms2 * 1000))
    regs[8] = r.n_axles
    regs[9] = r.status & 0xFFFF
    regs[10] = _u16_of(None if r.pavement_temperature_c is None
                       else round(r.pavement_temperature_c * 10))
    regs[11] = len(r.row_gross_weights_kg)
    regs[12:14] = u32_to_regs(round(r.gross_weight_kg))
    for i, a in enumerate(r.axle_loads_kg):
        regs[14 + i] = min(0xFFFF, max(0, round(a)))
    for i, s in enumerate(r.axle_spacings_m):
        regs[26 + i] = min(0xFFFF, max(0, round(s * 1000)))
    for i, g in enumerate(r.row_gross_weights_kg):
        regs[37 + 2 * i:39 + 2 * i] = u32_to_regs(round(g))
    for i, (lw, rw) in enumerate(r.wheel_loads_kg):
        regs[45 + 2 * i] = min(0xFFFF, max(0, round(lw)))
        regs[46 + 2 * i] = min(0xFFFF, max(0, round(rw)))
    try:
        regs[69] = int(r.lane_id) & 0xFFFF
    except ValueError:
        regs[69] = 0
    regs[71] = slot_crc(regs)
    return regs


def decode_record_slot(regs: list[int], boot_id: int) -> WimRecord:
    """A record from its 72 slot registers; raises ValueError when torn or malformed."""
    if len(regs) != SLOT_REGISTERS:
        raise ValueError(f"{len(regs)} registers, expected {SLOT_REGISTERS}")
    if slot_crc(regs) != regs[71]:
        raise ValueError("slot CRC mismatch (torn read or damaged slot)")
    n = regs[8]
    n_rows = regs[11]
    if not 1 <= n <= MAX_AXLES or n_rows > MAX_ROWS:
        raise ValueError(f"slot says {n} axles, {n_rows} rows")
    wheels_raw = regs[45:45 + 2 * n]
    wheels = tuple((float(wheels_raw[2 * i]), float(wheels_raw[2 * i + 1]))
                   for i in range(n)) if any(wheels_raw) else ()
    accel = _s16(regs[7])
    temp = _s16(regs[10])
    us = min(max(regs_to_i64(regs[2:6]), 0), 4_102_444_800_000_000)  # clamp: 1970 … 2100
    return WimRecord(
        boot_id=boot_id, seq=regs_to_u32(regs[0:2]),
        device_time_utc=EPOCH + timedelta(microseconds=us),
        lane_id=str(regs[69]), speed_kmh=regs[6] / 100,
        acceleration_ms2=None if accel is None else accel / 1000,
        axle_loads_kg=tuple(float(x) for x in regs[14:14 + n]),
        wheel_loads_kg=wheels,
        axle_spacings_m=tuple(x / 1000 for x in regs[26:26 + n - 1]),
        gross_weight_kg=float(regs_to_u32(regs[12:14])),
        row_gross_weights_kg=tuple(float(regs_to_u32(regs[37 + 2 * i:39 + 2 * i]))
                                   for i in range(n_rows)),
        status=regs[9], pavement_temperature_c=None if temp is None else temp / 10)
