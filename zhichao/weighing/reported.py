"""Vehicle records reported by a vendor WIM controller → the core's :class:`WeighedVehicle`.

A controller that does its own signal processing reports loads, spacings, speed and
status bits (:class:`zhichao.devices.records.WimRecord`). zhichao never takes its
verdict. It applies, exactly as to its own measurements:

* its calibration correction: the profile's speed factor k(v), and the temperature
  divisor 1 + α·(T − T0) of the profile channel named :data:`REPORTED_CHANNEL` (a
  controller has no strip channels of its own; see ``docs/devices.md``)::

      load = reported_load · k(v) / (1 + α·(T − T0))

* the core's axle grouping, 62号令 classification (:func:`classify`), and
  uncertainty-aware overload check (:func:`check_overload`) with the per-row gross
  weights the controller reports (without them the passage's scatter is unknown and any
  apparent overload is ``uncertain``, as for a one-row lane);
* the core's quality rules on what the record shows (speed range, acceleration, rows
  disagreeing, wheel imbalance beyond ``max_wheel_imbalance``, merged vehicles), plus the
  flags its status bits raise. The core's pulse-shape test for a smaller imbalance needs
  the signals; for records the controller's own ``wheel_off_sensor`` bit stands in.

The profile is applied only while in force at the record's device time, and a speed or
temperature outside its operating range is flagged, exactly as for the core's own passages
(:func:`zhichao.weighing.calibration_profile.not_in_force_reason`,
:func:`~zhichao.weighing.calibration_profile.outside_range_reasons`).

A status bit zhichao cannot interpret (``calibration_invalid``) becomes a flag of that
name, which the evidence gate does not know and therefore sends to manual review.
``first_sample``/``last_sample`` are −1: a record has no samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zhichao.common import format_utc
from zhichao.devices.records import WimRecord
from zhichao.weighing.assemble import Measured, assemble_vehicle
from zhichao.weighing.calibration_profile import (
    NOT_IN_FORCE_FLAG,
    OUTSIDE_RANGE_FLAG,
    CalibrationProfile,
    not_in_force_reason,
    outside_range_reasons,
)
from zhichao.weighing.classification import KnownAttributes
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import CalibrationProfileError
from zhichao.weighing.vehicle import WeighedVehicle

#: the calibration-profile channel whose temperature coefficient applies to reported loads
REPORTED_CHANNEL = "reported"

#: status bits → the core's own flags (same meaning); others keep their status name
_STATUS_FLAGS: dict[str, str] = {
    "speed_out_of_range": "speed_out_of_range",
    "acceleration": "acceleration",
    "wheel_off_sensor": "wheel_off_sensor",
    "straddling": "straddling",
    "reversing": "reversing",
    "close_following": "close_following",
    "incomplete": "incomplete",
    "missing_channel": "missing_channel",
    "saturation": "saturation",
    "axle_count_mismatch": "axle_count_mismatch",
    "irregular_motion": "irregular_motion",
    "data_gap": "data_gap",
    "unweighable": "unweighable",
    "calibration_invalid": "calibration_invalid",
}


@dataclass(frozen=True)
class Correction:
    """The factors applied to one record's loads."""

    speed_factor: float
    temperature_divisor: float
    notes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    applied: bool = True  # False: no profile, or one not in force (uncorrected)

    @property
    def factor(self) -> float:
        return self.speed_factor / self.temperature_divisor


def check_profile_for_records(profile: CalibrationProfile, site_id: str, lane_id: str) -> None:
    """Refuse a profile made for another lane, or for strip channels (not a controller)."""
    unknown = set(profile.channels) - {REPORTED_CHANNEL}
    if unknown:
        raise CalibrationProfileError(
            f"profile {profile.profile_id} names channels {sorted(unknown)}; a record source "
            f"only has the channel {REPORTED_CHANNEL!r}")
    for key, mine in (("site_id", site_id), ("lane_id", lane_id)):
        theirs = getattr(profile, key)
        if theirs is not None and theirs != mine:
            raise CalibrationProfileError(
                f"profile {profile.profile_id} is for {key} {theirs!r}, lane is {mine!r}")


def correction_for(record: WimRecord, profile: CalibrationProfile | None,
                   temperature_c: float | None = None) -> Correction:
    """The correction of one record; ``temperature_c`` is the pavement temperature to use
    (default: the record's own). A profile not in force at the record's device time is not
    applied (flag ``calibration_not_in_force``); a speed or temperature outside its operating
    range is flagged ``outside_calibration_range``."""
    if profile is None:
        return Correction(1.0, 1.0, applied=False)
    why = not_in_force_reason(profile, record.device_time_utc)
    if why is not None:
        return Correction(1.0, 1.0, (why,), (NOT_IN_FORCE_FLAG,), applied=False)
    temp = record.pavement_temperature_c if temperature_c is None else temperature_c
    outside = outside_range_reasons(profile, record.speed_kmh, temp)
    flags = (OUTSIDE_RANGE_FLAG,) if outside else ()
    k = profile.speed_factor(record.speed_kmh)
    ch = profile.channels.get(REPORTED_CHANNEL)
    if ch is None or ch.temperature_coefficient_per_c == 0:
        return Correction(k, 1.0, tuple(outside), flags)
    if temp is None:
        # the correction needs the temperature: never guess it
        return Correction(k, 1.0, ("控制器未上报路面温度，未作温度修正", *outside), flags)
    return Correction(k, profile.temperature_divisor(REPORTED_CHANNEL, temp), tuple(outside),
                      flags)


def weigh_reported(record: WimRecord, *, site_id: str, lane_id: str | None = None,
                   config: WeighingConfig | None = None,
                   profile: CalibrationProfile | None = None,
                   known: KnownAttributes | None = None,
                   recording: str | None = None,
                   pavement_temperature_c: float | None = None) -> WeighedVehicle:
    """The core's weighed-vehicle record for one controller record.

    ``lane_id`` defaults to the record's own; ``recording`` names where the record came
    from (default: the device URL on the record); ``pavement_temperature_c`` is the
    station's own reading, used when the record carries none (NaN in the result when
    neither is known).
    """
    temp = record.pavement_temperature_c
    if temp is None:
        temp = pavement_temperature_c
    cfg = config or WeighingConfig()
    q = cfg.quality
    lane = lane_id if lane_id is not None else record.lane_id
    if profile is not None:
        check_profile_for_records(profile, site_id, lane)
    corr = correction_for(record, profile, temp)
    f = corr.factor
    flags: list[str] = list(corr.flags)
    notes: list[str] = [f"由称重控制器上报（设备序号 {record.boot_id}/{record.seq}）",
                        *corr.notes]
    for name in record.status_names:
        flags.append(_STATUS_FLAGS.get(name, name))
    if record.gap_before_records or record.events:
        # the record itself is whole; missing records before it are the station's concern
        notes.append("此记录之前设备链路曾中断或设备曾重启")
    if "clock_jump" in record.events:
        flags.append("clock_jump")
        notes.append("设备时钟跳变，过车时间须人工核对")

    axle_loads = [a * f for a in record.axle_loads_kg]
    wheel_loads = [[lw * f, rw * f] for lw, rw in record.wheel_loads_kg]
    spacings = [float(s) for s in record.axle_spacings_m]
    row_gross = [g * f for g in record.row_gross_weights_kg]
    n_axles = record.n_axles
    gross: float | None = float(sum(axle_loads)) if axle_loads else None
    if gross is not None and not math.isfinite(gross):
        gross = None
    if gross is None and "unweighable" not in flags:
        flags.append("unweighable")

    # the core's quality rules, on what the record shows
    speed = record.speed_kmh
    if not q.min_speed_kmh <= abs(speed) <= q.max_speed_kmh:
        flags.append("speed_out_of_range")
    if record.acceleration_ms2 is not None and \
            abs(record.acceleration_ms2) > q.max_abs_acceleration_ms2:
        flags.append("acceleration")
    if row_gross and gross:
        if max(abs(g / gross - 1.0) for g in row_gross) > q.max_row_deviation:
            flags.append("rows_disagree")
    for lft, rgt in wheel_loads:
        if lft + rgt > 0 and abs(lft - rgt) / (lft + rgt) > q.max_wheel_imbalance \
                and "straddling" not in flags:
            flags.append("wheel_off_sensor")
            break
    for i, s in enumerate(spacings[:-1]):
        if s >= q.merge_gap_m and (q.trailer_group_spacing_m <= spacings[i + 1]
                                   < q.articulation_gap_min_m):
            flags.append("possible_merged_vehicles")
            break

    return assemble_vehicle(Measured(
        time_utc=format_utc(record.device_time_utc),
        site_id=site_id,
        lane_id=lane,
        speed_kmh=round(speed, 2),
        acceleration_ms2=None if record.acceleration_ms2 is None else round(
            record.acceleration_ms2, 3),
        axle_count=n_axles,
        axle_loads_kg=[round(a) for a in axle_loads],
        wheel_loads_kg=[[round(w) for w in pair] for pair in wheel_loads],
        axle_spacings_m=spacings,
        gross_weight_kg=gross,
        row_gross_weights_kg=row_gross,
        rows_used=list(range(1, len(row_gross) + 1)),
        flags=flags,
        notes=notes,
        pavement_temperature_c=temp,
        calibration_profile=profile.profile_id if profile and corr.applied else None,
        recording=recording if recording is not None else (record.source or None),
        first_sample=-1,
        last_sample=-1,
    ), cfg, known)
