"""The zhichao Modbus sample ring: register map of a WIM unit polled over Modbus.

Holding registers, 0-based; multi-register values most significant word first (the table
is in ``docs/devices.md``). Sample row ``i``, channel ``c`` is the int16 count at register
``SAMPLE_RING_BASE + (i mod R) * C + c``; value = count × scale.
"""

from __future__ import annotations

#: Holding-register map of the zhichao Modbus sample ring (0-based register addresses).
SAMPLE_REGISTERS: dict[str, tuple[int, int]] = {
    # name: (address, count)
    "magic": (0, 1),            # 0x5A43 ("ZC")
    "map_version": (1, 1),      # 1
    "n_channels": (2, 1),
    "sample_rate_hz": (3, 1),   # [Hz], integer
    "boot_id": (4, 1),          # +1 at each power-up
    "status": (5, 1),           # bit 0 acquiring, bit 1 ADC fault, bit 2 clock not synced
    "scale": (6, 2),            # float32, output units per count, high word first
    "total_samples": (8, 4),    # u64 samples written since power-up, high word first
    "newest_time_us": (12, 4),  # i64 device clock at sample total-1 [µs since 1970 UTC]
    "ring_samples": (16, 1),    # ring capacity R [samples]
}
SAMPLE_MAGIC = 0x5A43
SAMPLE_RING_BASE = 100  # sample i, channel c at SAMPLE_RING_BASE + (i mod R) * C + c (int16)
STATUS_COUNT = 17  # registers 0 … 16: the ring's header

#: bits of the status register (5)
SAMPLE_STATUS_BITS: dict[int, str] = {
    0x0001: "acquiring",
    0x0002: "adc_fault",
    0x0004: "clock_not_synced",
}
#: the status bits that are faults (shown, counted, logged; the samples still flow)
SAMPLE_STATUS_FAULTS = 0x0002 | 0x0004
