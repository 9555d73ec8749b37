"""Why a delivered block or record is not a plain continuation: one set for every stream.

Sample blocks (:class:`~zhichao.devices.sample_source.SampleBlock`) and controller records
(:class:`~zhichao.devices.record_source.WimRecord`) carry one ``reason`` from this set, and
``events`` for things that happened without losing data (a device clock step).
"""

from __future__ import annotations

REASON_START = "start"  # the first block/record this driver delivers
REASON_SEQUENCE_GAP = "sequence_gap"  # the device counter skipped: exactly that many lost
REASON_RECONNECT = "reconnect"  # the link was re-established (with or without loss)
REASON_REBOOT = "device_reboot"  # the device restarted: an unknown number lost (-1)
REASON_OVERRUN = "fifo_overrun"  # the driver fell behind the device's ring buffer
REASON_BAD_VALUES = "bad_values"  # frames or records were rejected as absurd
REASON_FORMAT_CHANGE = "format_change"  # sample rate or channel count changed (samples)
EVENT_CLOCK_JUMP = "clock_jump"  # the device clock stepped (no data lost)

#: every reason, in the order of the table in ``docs/devices.md``
REASONS: tuple[str, ...] = (
    REASON_START, REASON_SEQUENCE_GAP, REASON_RECONNECT, REASON_REBOOT, REASON_OVERRUN,
    REASON_BAD_VALUES, REASON_FORMAT_CHANGE)
