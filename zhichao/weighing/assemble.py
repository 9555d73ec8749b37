"""Stage 5, shared by both sources of records: measured quantities → a :class:`WeighedVehicle`.

The weighing core's own stream (:mod:`zhichao.weighing.stream`) and a controller's reported
records (:mod:`zhichao.weighing.reported`) measure differently but decide the same way: axle
groups from the spacings, the vehicle class and its limit, the overload verdict with the
allowance and the measurement uncertainty. This module is that decision, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhichao.weighing.classification import KnownAttributes, axle_groups, classify
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.overload import check_overload
from zhichao.weighing.vehicle import WeighedVehicle

# the zh-CN note for a vehicle over every limit its class could have
EXCEEDS_ALL_CANDIDATES_ZH = "按所有候选限值均超限，需人工核定车型后认定"


@dataclass(frozen=True)
class Measured:
    """What a source measured of one vehicle, already rounded as it is to be recorded.

    ``flags`` and ``notes`` are the source's own; classification adds to copies of them.
    """

    time_utc: str
    site_id: str
    lane_id: str
    speed_kmh: float | None
    acceleration_ms2: float | None
    axle_count: int
    axle_loads_kg: list[float]
    wheel_loads_kg: list[list[float]]
    axle_spacings_m: list[float]
    gross_weight_kg: float | None  # unrounded: the overload check uses it as measured
    row_gross_weights_kg: list[float]  # unrounded, for the rows' agreement
    rows_used: list[int]  # 1-based
    flags: list[str]
    notes: list[str]
    pavement_temperature_c: float | None
    calibration_profile: str | None
    recording: str | None
    first_sample: int
    last_sample: int


RULE_ZH = "器具误差、本点离散度的k倍与辖区规定扣除取大者，不叠加"


def assemble_vehicle(m: Measured, cfg: WeighingConfig,
                     known: KnownAttributes | None = None) -> WeighedVehicle:
    """Classify, find the limit, decide the verdict and build the record."""
    flags = list(m.flags)
    notes = list(m.notes)
    n_axles = m.axle_count
    spacings = m.axle_spacings_m
    groups = axle_groups(spacings, cfg.overload.group_spacing_m) if spacings else (
        [[1]] if n_axles else [])
    cls = classify(spacings, cfg.classes, known or KnownAttributes()) if n_axles >= 2 else None
    if cls is not None:
        flags.extend(cls.flags)
        notes.extend(cls.notes)
    limit = cls.limit_kg if cls else None
    gross = m.gross_weight_kg
    if gross is not None:
        res = check_overload(gross, limit, m.row_gross_weights_kg, cfg.overload,
                             cls.candidates_kg if cls else (), speed_kmh=m.speed_kmh,
                             axle_count=n_axles)
        verdict, overloaded = res.verdict, res.overloaded
        if res.exceeds_all_candidates:
            notes.append(EXCEEDS_ALL_CANDIDATES_ZH)
    else:
        res = None
        verdict, overloaded = "undecidable", False
    # a verdict stands as measured; abnormal-driving flags send it to manual review
    return WeighedVehicle(
        time_utc=m.time_utc,
        site_id=m.site_id,
        lane_id=m.lane_id,
        speed_kmh=m.speed_kmh,
        acceleration_ms2=m.acceleration_ms2,
        axle_count=n_axles,
        axle_loads_kg=m.axle_loads_kg,
        wheel_loads_kg=m.wheel_loads_kg,
        axle_spacings_m=[round(s, 3) for s in spacings],
        axle_groups=groups,
        gross_weight_kg=None if gross is None else round(gross),
        vehicle_class=cls.vehicle_class if cls else None,
        vehicle_class_zh=cls.name_zh if cls else None,
        limit_kg=limit,
        limit_basis=cls.basis if cls else "",
        limit_candidates_kg=list(cls.candidates_kg) if cls else [],
        allowance_kg=res.allowance_kg if res else None,
        allowance_basis=(cfg.overload.allowance_basis if res is None or res.tolerance is None
                         else f"{res.tolerance.basis_zh}（{RULE_ZH}）"),
        excess_kg=res.excess_kg if res else None,
        excess_after_allowance_kg=res.excess_after_allowance_kg if res else None,
        uncertainty_kg=None if res is None or res.uncertainty_kg is None else round(
            res.uncertainty_kg, 1),
        coverage_factor=None if res is None or res.coverage_factor is None else round(
            res.coverage_factor, 3),
        verdict=verdict,
        overloaded=overloaded,
        flags=list(dict.fromkeys(flags)),
        row_gross_weights_kg=[round(g) for g in m.row_gross_weights_kg],
        rows_used=m.rows_used,
        pavement_temperature_c=m.pavement_temperature_c,
        calibration_profile=m.calibration_profile,
        recording=m.recording,
        first_sample=m.first_sample,
        last_sample=m.last_sample,
        notes=notes,
    )
