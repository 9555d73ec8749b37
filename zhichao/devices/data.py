"""The typed data each device kind delivers, and the checks that make it trustworthy.

:class:`SampleBlock`
    a run of consecutive raw samples from a WIM data-acquisition unit (sample sources).
:class:`WimRecord`
    one vehicle as a vendor WIM controller reported it (record sources), with its status
    bits (:data:`STATUS_BITS`) and plausibility limits (:class:`RecordLimits`,
    :func:`check_record`).
:class:`WeightReading`
    one displayed weight of a static weighing indicator, with its status flags and the
    resolution it was displayed at.

Codecs (:mod:`zhichao.devices.framing`, :mod:`~zhichao.devices.zwr`,
:mod:`~zhichao.devices.record_ring`, :mod:`~zhichao.devices.indicator_formats`,
:mod:`~zhichao.devices.indicator_maps`) produce them; the sequence trackers
(:mod:`zhichao.devices.tracking`) annotate them with gaps and reasons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from zhichao.common import utc_now


@dataclass(frozen=True)
class SampleBlock:
    """A run of consecutive samples, as fed to the weighing core.

    Attributes
    ----------
    first_index : station stream index of ``samples[0]``. During the first power-up
        period it equals the device's sample counter; after a reboot it continues the
        station's timeline (estimated from the device clock, else the station clock).
    samples : float32 ``[n, n_channels]`` [output units].
    device_time_utc : device clock at ``samples[0]``.
    station_time_utc : station clock when the data was received.
    gap_before_samples : 0 contiguous with the previous block; > 0 exactly this many
        samples are missing before this block; -1 an unknown number are missing.
    reason : why this block is not a plain continuation (``start``, ``sequence_gap``,
        ``reconnect``, ``device_reboot``, ``fifo_overrun``, ``bad_values``,
        ``format_change``), None otherwise.
    sample_rate_hz : device sample rate [Hz].
    events : other things that happened, e.g. ``clock_jump`` (no samples lost).
    boot_id : the device's power-up counter.
    device_index : the device's own counter for ``samples[0]``.
    """

    first_index: int
    samples: npt.NDArray[np.float32]
    device_time_utc: datetime
    station_time_utc: datetime
    gap_before_samples: int
    reason: str | None
    sample_rate_hz: float
    events: tuple[str, ...] = ()
    boot_id: int = 0
    device_index: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def end_index(self) -> int:
        """Stream index one past the last sample."""
        return self.first_index + self.n_samples

    @property
    def plain(self) -> bool:
        """A plain continuation: no gap, no reason, no event."""
        return self.gap_before_samples == 0 and self.reason is None and not self.events


#: vendor status bits of a record (ZWR/1 and the Modbus record ring share them)
STATUS_BITS: dict[int, str] = {
    0x0001: "speed_out_of_range",
    0x0002: "acceleration",
    0x0004: "wheel_off_sensor",
    0x0008: "straddling",
    0x0010: "reversing",
    0x0020: "close_following",
    0x0040: "incomplete",
    0x0080: "missing_channel",
    0x0100: "saturation",
    0x0200: "axle_count_mismatch",
    0x0400: "irregular_motion",
    0x0800: "data_gap",  # the controller itself lost samples during the passage
    0x1000: "unweighable",
    0x8000: "calibration_invalid",  # the controller says its calibration is not valid
}
STATUS_MASK = sum(STATUS_BITS)


def bit_names(value: int, table: dict[int, str]) -> tuple[str, ...]:
    """Names of the bits of ``value`` set in ``table`` (bit mask -> name), in table order;
    a set bit the table does not know is named by its mask (``0x4000``)."""
    names = [name for bit, name in table.items() if value & bit]
    unknown = value & ~sum(table)
    names.extend(f"{1 << i:#06x}" for i in range(unknown.bit_length()) if unknown >> i & 1)
    return tuple(names)

MAX_AXLES = 12
MAX_ROWS = 4


@dataclass(frozen=True)
class RecordLimits:
    """What a plausible record looks like; beyond these it is rejected as ``bad_values``.

    The bounds are sanity limits against garbage, not measurement rules: they are far
    outside anything a road vehicle produces, and configurable.
    """

    max_speed_kmh: float = 250.0
    max_axle_load_kg: float = 60_000.0
    min_spacing_m: float = 0.3
    max_spacing_m: float = 30.0
    gross_tolerance_kg: float = 10.0  # reported gross vs sum of axle loads, plus 0.5 %
    min_year: int = 2000
    max_year: int = 2100


@dataclass(frozen=True)
class WimRecord:
    """One vehicle as a vendor WIM controller reported it.

    Attributes
    ----------
    boot_id : power-up counter of the controller.
    seq : record counter since power-up (0 for the first record after a power-up).
    device_time_utc : device clock when the first axle crossed the first sensor row.
    lane_id : the controller's lane number or name.
    speed_kmh : measured speed [km/h].
    acceleration_ms2 : measured acceleration [m/s²], None when not reported.
    axle_loads_kg : per axle, front to rear [kg].
    wheel_loads_kg : per axle (left, right) [kg]; empty when not reported.
    axle_spacings_m : between consecutive axles [m] (one fewer than axles).
    gross_weight_kg : the controller's gross weight [kg].
    row_gross_weights_kg : gross weight seen by each sensor row [kg]; empty when not
        reported (then zhichao cannot estimate the passage's scatter).
    status : vendor status bits (:data:`STATUS_BITS`).
    pavement_temperature_c : [°C], None when not reported.
    station_time_utc : station clock when the record was received (set by the driver).
    gap_before_records : 0 contiguous; > 0 exactly this many records missing before this
        one; -1 an unknown number (set by the driver).
    reason : why this record is not a plain continuation, None otherwise.
    events : other things that happened (``clock_jump``).
    source : the device URL it came from.
    """

    boot_id: int
    seq: int
    device_time_utc: datetime
    lane_id: str
    speed_kmh: float
    acceleration_ms2: float | None
    axle_loads_kg: tuple[float, ...]
    wheel_loads_kg: tuple[tuple[float, float], ...]
    axle_spacings_m: tuple[float, ...]
    gross_weight_kg: float
    row_gross_weights_kg: tuple[float, ...]
    status: int
    pavement_temperature_c: float | None
    station_time_utc: datetime | None = None
    gap_before_records: int = 0
    reason: str | None = None
    events: tuple[str, ...] = ()
    source: str = ""

    @property
    def n_axles(self) -> int:
        return len(self.axle_loads_kg)

    @property
    def status_names(self) -> tuple[str, ...]:
        """Names of the status bits set."""
        return bit_names(self.status, STATUS_BITS)

    @property
    def plain(self) -> bool:
        return self.gap_before_records == 0 and self.reason is None and not self.events


def check_record(r: WimRecord, limits: RecordLimits | None = None) -> str:
    """Why a record is absurd, or ``""`` when it is plausible."""
    lim = limits or RecordLimits()
    n = r.n_axles
    if not 1 <= n <= MAX_AXLES:
        return f"{n} axles (1 … {MAX_AXLES})"
    if not (math.isfinite(r.speed_kmh) and 0 < r.speed_kmh <= lim.max_speed_kmh):
        return f"speed {r.speed_kmh} km/h"
    if r.acceleration_ms2 is not None and not (math.isfinite(r.acceleration_ms2)
                                               and abs(r.acceleration_ms2) <= 20):
        return f"acceleration {r.acceleration_ms2} m/s²"
    for i, a in enumerate(r.axle_loads_kg):
        if not (math.isfinite(a) and 0 <= a <= lim.max_axle_load_kg):
            return f"axle {i + 1} load {a} kg"
    if len(r.axle_spacings_m) != n - 1:
        return f"{len(r.axle_spacings_m)} spacings for {n} axles"
    for i, s in enumerate(r.axle_spacings_m):
        if not (math.isfinite(s) and lim.min_spacing_m <= s <= lim.max_spacing_m):
            return f"spacing {i + 1} {s} m"
    total = sum(r.axle_loads_kg)
    if not (math.isfinite(r.gross_weight_kg) and abs(r.gross_weight_kg - total)
            <= lim.gross_tolerance_kg + 0.005 * total):
        return f"gross {r.gross_weight_kg} kg != sum of axle loads {total:.0f} kg"
    if r.wheel_loads_kg:
        if len(r.wheel_loads_kg) != n:
            return f"{len(r.wheel_loads_kg)} wheel pairs for {n} axles"
        for i, (lft, rgt) in enumerate(r.wheel_loads_kg):
            a = r.axle_loads_kg[i]
            if not (math.isfinite(lft) and math.isfinite(rgt) and lft >= 0 and rgt >= 0
                    and abs(lft + rgt - a) <= lim.gross_tolerance_kg + 0.005 * a):
                return f"axle {i + 1} wheels {lft}+{rgt} kg != axle load {a} kg"
    if len(r.row_gross_weights_kg) > MAX_ROWS:
        return f"{len(r.row_gross_weights_kg)} rows (at most {MAX_ROWS})"
    for i, g in enumerate(r.row_gross_weights_kg):
        if not (math.isfinite(g) and 0 <= g <= MAX_AXLES * lim.max_axle_load_kg):
            return f"row {i + 1} gross {g} kg"
    if r.pavement_temperature_c is not None and not (
            math.isfinite(r.pavement_temperature_c) and -60 <= r.pavement_temperature_c <= 90):
        return f"temperature {r.pavement_temperature_c} °C"
    if not lim.min_year <= r.device_time_utc.year <= lim.max_year:
        return f"device time {r.device_time_utc.isoformat()}"
    if r.status & ~STATUS_MASK:
        return f"unknown status bits {r.status & ~STATUS_MASK:#06x}"
    return ""


@dataclass(frozen=True)
class WeightReading:
    """One displayed weight of a weighing indicator.

    Attributes
    ----------
    weight_kg : displayed weight (gross or net, see ``is_net``) [kg]. With ``overload``
        set it is what the display showed, not a weight (see :attr:`is_weight`).
    stable : True/False when the device says so, None when it cannot tell (XK3190).
    is_net : the display shows net weight.
    tare_kg : tare, when the protocol carries it [kg].
    overload : out of range (over or under): the reading is not a weight.
    station_time_utc : station clock when the reading was received.
    raw : the bytes or registers it was decoded from (for logs and evidence).
    decimals : digits after the decimal point of ``weight_kg`` at the device's resolution
        (a display in t with 3 decimals resolves 1 kg: 0); None when the protocol does not
        say (a float register).
    """

    weight_kg: float
    stable: bool | None
    is_net: bool = False
    tare_kg: float | None = None
    overload: bool = False
    station_time_utc: datetime = field(default_factory=utc_now)
    raw: bytes = b""
    decimals: int | None = None

    @property
    def is_weight(self) -> bool:
        """False for an overload (over- or under-range) display: never a weight."""
        return not self.overload

    @property
    def flags(self) -> tuple[str, ...]:
        """The status flags set: ``overload``, ``unstable`` (the device says in motion),
        ``stability_unknown`` (the protocol has no stable bit), ``net``."""
        out: list[str] = []
        if self.overload:
            out.append("overload")
        if self.stable is False:
            out.append("unstable")
        elif self.stable is None:
            out.append("stability_unknown")
        if self.is_net:
            out.append("net")
        return tuple(out)

    def weight_text(self) -> str:
        """The weight in kg at the device's resolution (20500.37 stays 20500.37)."""
        return format_kg(self.weight_kg, self.decimals)


def format_kg(value_kg: float, decimals: int | None) -> str:
    """``value_kg`` with ``decimals`` digits after the point; without them, the shortest
    text that reads back as the same float32 (what a float register can hold)."""
    if not math.isfinite(value_kg):
        return str(value_kg)
    if decimals is not None:
        return f"{value_kg:.{max(0, decimals)}f}"
    return np.format_float_positional(np.float32(value_kg), unique=True, trim="-")
