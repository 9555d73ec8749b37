"""Configuration of the weighing core. Every number carries its unit in its name.

The defaults follow the physics and the references in ``shared/reference/wim.md``; values
marked there as unconfirmed (acceleration threshold, allowance) are configurable here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from zhichao.weighing.errors import WeighingConfigError

# what a measured σ(v) band was pooled from (zhichao.weighing.scatter): unknown or both,
# reference-truck runs, in-service passages; a band tuple stores the index
SCATTER_KINDS: tuple[str, ...] = ("", "reference", "in_service")


@dataclass(frozen=True)
class DetectionConfig:
    """Stage 1 and 3: offset tracking, noise estimation and pulse detection."""

    offset_time_constant_s: float = 0.5  # EMA time constant of the offset while idle
    noise_time_constant_s: float = 1.0  # EMA time constant of the noise variance while idle
    start_sigma: float = 5.0  # a pulse candidate starts above this many noise sigmas ...
    start_floor_n: float = 300.0  # ... and above this force
    confirm_sigma: float = 10.0  # a candidate is confirmed above this many sigmas ...
    confirm_floor_n: float = 1500.0  # ... and this force (a light car wheel is ≈ 3 kN)
    end_hold_s: float = 0.001  # a pulse ends after staying below the start level this long
    max_pulse_s: float = 30.0  # a pulse longer than this is cut and marked overlong
    flat_top_samples: int = 3  # identical raw values at the top = clipped (saturated)


@dataclass(frozen=True)
class MatchingConfig:
    """Stage 2 and 4: pulses → row hits → axle tracks → vehicles."""

    min_speed_kmh: float = 1.0  # slowest speed an axle may cross between rows
    max_speed_kmh: float = 200.0  # fastest
    track_tolerance: float = 0.35  # relative tolerance of the predicted row-to-row time
    track_tolerance_s: float = 0.005  # plus this absolute tolerance
    max_axle_spacing_m: float = 9.5  # a larger gap between axles separates vehicles
    max_vehicle_axles: int = 12


@dataclass(frozen=True)
class QualityConfig:
    """Stage 8: when a measurement is flagged."""

    min_speed_kmh: float = 5.0  # the device's operating range (OIML R134 v_min / v_max)
    max_speed_kmh: float = 100.0
    max_abs_acceleration_ms2: float = 1.0  # wim.md §2.9 suggests 0.5–1 m/s² [unconfirmed]
    max_fit_residual_m: float = 0.10  # rigid-body kinematics must fit the hit times this well
    max_wheel_imbalance: float = 0.25  # |L − R| / (L + R) of an axle beyond this: lateral flag
    # between shape_check_imbalance and max_wheel_imbalance the split is checked against the
    # pulse shapes: a genuine load difference makes the heavier tyre's pulse longer (its contact
    # patch grows with load), a wheel partly off its half-strip only loses amplitude. Flag when
    # the relative pulse-length difference is below min_shape_response times the relative load
    # difference. [guesses: tyres give about 0.3–0.6; both values are configurable]
    shape_check_imbalance: float = 0.10
    min_shape_response: float = 0.10
    empty_side_fraction: float = 0.1  # a side carrying < this share of the load is "empty"
    max_row_deviation: float = 0.15  # a row's gross deviating more from the mean: flag
    close_following_gap_m: float = 15.0  # axle gap to the neighbour vehicle below this: flag
    # a passage that starts with an axle coming from downstream within this time after the
    # previous passage is that vehicle backing up [a guess: stopping, backing and setting off
    # again takes seconds to tens of seconds]
    reversing_link_s: float = 30.0
    # two vehicles read as one: a gap of at least merge_gap_m (the shortest rear overhang +
    # bumper gap + front overhang) followed by a spacing that starts a motor vehicle: wider
    # than a trailer axle group, shorter than a tractor-to-trailer gap
    merge_gap_m: float = 3.4
    trailer_group_spacing_m: float = 1.6
    articulation_gap_min_m: float = 6.0


@dataclass(frozen=True)
class OverloadConfig:
    """Stage 7: the tolerance and the verdict (see :mod:`zhichao.weighing.overload`)."""

    # JJG 907 / OIML R134 vehicle-mass class of the device: its in-service MPE is deducted
    accuracy_class: str = "5"
    # (class, in-service MPE %) pairs a deployment set after legal review, replacing the
    # table's unconfirmed entries (zhichao.weighing.overload.ACCURACY_CLASSES)
    class_mpe_in_service_pct: tuple[tuple[str, float], ...] = ()
    # a larger deduction set by the jurisdiction, as a fraction of gross (None: none); only
    # with its source in jurisdiction_basis
    jurisdiction_fraction: float | None = None
    jurisdiction_basis: str = ""
    # σ(v) of the gross weight by speed band, hand-set as (speed_max_kmh, relative sd), each
    # band starting where the previous ends; and as measured (speed_min_kmh, speed_max_kmh,
    # relative sd, passages) from a calibration profile or a zhichao.scatter/1 file
    # (zhichao.weighing.scatter). Where several cover a speed the largest σ applies; where
    # none does, the physics prior for the device's class (no history: conservative).
    scatter_bands_kmh_sd: tuple[tuple[float, float], ...] = ()
    # (each measured band may add axles_min, axles_max: the axle counts it holds for; and
    # then its estimate (−1: none), degrees of freedom and kind: SCATTER_KINDS' index)
    scatter_measured: tuple[tuple[float, ...], ...] = ()
    scatter_source: str = "部署配置值"
    # deduction k · σ(v) · gross: covers the scatter's tail with margin (legal_safety.py)
    coverage_factor: float = 4.0
    group_spacing_m: float = 1.8  # axles closer than this form a group (BrAId; GB 1589)

    @property
    def scatter_bands(self) -> tuple[Any, ...]:
        from zhichao.weighing.scatter import ALL_AXLES, ScatterBand, contiguous_bands

        return contiguous_bands(self.scatter_bands_kmh_sd) + tuple(
            ScatterBand(float(m[1]), float(m[2]), int(m[3]), float(m[0]),
                        estimate=None if len(m) < 9 or m[6] < 0 else float(m[6]),
                        dof=0 if len(m) < 9 else int(m[7]),
                        axles_min=int(m[4]) if len(m) >= 6 else 0,
                        axles_max=int(m[5]) if len(m) >= 6 else ALL_AXLES,
                        kind=SCATTER_KINDS[int(m[8])] if len(m) >= 9 else "")
            for m in self.scatter_measured)

    @property
    def allowance_basis(self) -> str:
        from zhichao.weighing.overload import accuracy_class

        c = accuracy_class(self.accuracy_class, dict(self.class_mpe_in_service_pct))
        text = "" if c is None else (
            f"{c.source_zh} {c.name}级使用中最大允许误差±{c.in_service_pct:g}%（{c.status_zh}）")
        return (f"{text}；与本点历史离散度的k倍及辖区规定扣除取大者，不叠加"
                + (f"（辖区：{self.jurisdiction_basis}）" if self.jurisdiction_basis else ""))


@dataclass(frozen=True)
class ClassConfig:
    """Stage 6: spacing patterns that decide truck vs combination and the drive axle."""

    compact_spacing_m: float = 2.6  # tandem, tridem and twin-steer spacings are below this
    single_steer_min_m: float = 2.8  # a single steer axle is at least this far from the next
    articulation_gap_m: float = 4.5  # tractor→trailer gaps are at least this
    # axles closer than this form a 2- or 3-axle group, which the law presumes dual-tyred
    # (62号令 第三条第二款第（二）项; GB 1589 groups: tandems are 1.3–1.4 m)
    group_spacing_m: float = 1.8
    combination_min_spacing_m: float = 3.0  # 3-axle combination: both spacings at least this
    # Which axle of a 6+-axle combination's tractor drives is not seen by WIM (a single
    # drive axle: 46 t), so the lenient 49 t applies with "46 t if single drive" noted. A
    # tractor whose rear axles form a tandem may drive one (6x2 with a tag axle) or both
    # (6x4): True drops that note for such tractors (the jurisdiction knows its fleet).
    rear_tandem_is_drive_tandem: bool = False
    # 认定标准 notes (law.md §1.2, 🟡 one secondary source, unconfirmed; 0 switches off):
    # +1 t for 3-/4-axle trucks with dual-tyre drive axle and air suspension, and 37 t for a
    # 4-axle articulated combination with air suspension, dual drive tyres and d ≥ 1.8 m
    air_suspension_bonus_kg: int = 1000
    articulated_4_axle_air_limit_kg: int = 37000
    semitrailer_spread_min_m: float = 1.8


@dataclass(frozen=True)
class WeighingConfig:
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    overload: OverloadConfig = field(default_factory=OverloadConfig)
    classes: ClassConfig = field(default_factory=ClassConfig)

    def __post_init__(self) -> None:
        d = self.detection
        if d.offset_time_constant_s <= 0 or d.noise_time_constant_s <= 0:
            raise WeighingConfigError("offset/noise time constants must be > 0 s")
        if not 0 < d.start_sigma <= d.confirm_sigma:
            raise WeighingConfigError("need 0 < start_sigma <= confirm_sigma")
        if not 0 <= d.start_floor_n <= d.confirm_floor_n:
            raise WeighingConfigError("need 0 <= start_floor_n <= confirm_floor_n")
        m = self.matching
        if not 0 < m.min_speed_kmh < m.max_speed_kmh:
            raise WeighingConfigError("need 0 < matching.min_speed_kmh < max_speed_kmh")
        o = self.overload
        from zhichao.weighing.overload import accuracy_class

        if accuracy_class(o.accuracy_class) is None:
            raise WeighingConfigError(f"unknown accuracy class {o.accuracy_class!r}")
        if o.jurisdiction_fraction is not None and (
                not 0 <= o.jurisdiction_fraction < 0.5 or not o.jurisdiction_basis):
            raise WeighingConfigError("jurisdiction_fraction must be in [0, 0.5) and carry "
                                      "its jurisdiction_basis (the rule and its source)")
        if o.coverage_factor <= 0 or any(sd < 0 for _, sd in o.scatter_bands_kmh_sd) or any(
                len(m) not in (4, 6, 9) or m[2] < 0 or not 0 <= m[0] < m[1]
                or (len(m) == 9 and not 0 <= m[8] < len(SCATTER_KINDS))
                for m in o.scatter_measured):
            raise WeighingConfigError("coverage_factor must be > 0, scatter sd >= 0, "
                                      "measured bands 0 <= speed_min_kmh < speed_max_kmh")

    def with_scatter(self, bands: Sequence[Any], source: str) -> WeighingConfig:
        """This configuration with the measured σ(v) ``bands`` (ScatterBand) added."""
        if not bands:
            return self
        o = self.overload
        measured = tuple(o.scatter_measured) + tuple(
            (b.speed_min_kmh, b.speed_max_kmh, b.relative_sd, b.samples, b.axles_min,
             b.axles_max, -1.0 if b.estimate is None else b.estimate, b.dof,
             SCATTER_KINDS.index(b.kind)) for b in bands)
        src = source if not (o.scatter_measured or o.scatter_bands_kmh_sd) else \
            f"{o.scatter_source}；{source}"
        return replace(self, overload=replace(o, scatter_measured=measured, scatter_source=src))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeighingConfig:
        """Build from a nested dict (e.g. a TOML table); unknown keys are refused."""
        parts: dict[str, Any] = {}
        for f in fields(cls):
            section = data.get(f.name, {})
            default = f.default_factory()  # type: ignore[operator]
            known = {g.name for g in fields(default)}
            unknown = set(section) - known
            if unknown:
                raise WeighingConfigError(f"unknown key(s) in [{f.name}]: {sorted(unknown)}")
            parts[f.name] = replace(default, **section)
        unknown_sections = set(data) - {f.name for f in fields(cls)}
        if unknown_sections:
            raise WeighingConfigError(f"unknown section(s): {sorted(unknown_sections)}")
        return cls(**parts)
