"""The weighed-vehicle record (``zhichao.vehicle/1``), the core's output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from zhichao import __version__

VEHICLE_FORMAT = "zhichao.vehicle/1"

# every flag the core can raise, with the zh-CN text a reviewer reads
FLAGS_ZH: dict[str, str] = {
    "speed_out_of_range": "车速超出设备工作范围",
    "acceleration": "过秤时加速或制动",
    "irregular_motion": "过秤时运动不规则（停车、走走停停等）",
    "reversing": "在传感器上倒车",
    "wheel_off_sensor": "车轮部分偏离本侧称重传感器（压线或偏出）",
    "straddling": "车辆骑跨左右传感器分界线",
    "rows_disagree": "各排传感器测量结果差异超限",
    "close_following": "与前后车距离过近",
    "possible_merged_vehicles": "可能为两车连在一起过秤",
    "saturation": "传感器信号饱和",
    "missing_channel": "传感器通道缺失或失效",
    "axle_count_mismatch": "各排传感器检测到的轴数不一致",
    "class_undecidable": "车型无法由轴距判定，限值需人工核定",
    "data_gap": "过车期间数据中断",
    "incomplete": "过车记录不完整（记录开始或结束时车辆仍在传感器上）",
    "stopped_on_sensor": "车辆停在传感器上",
    "unweighable": "数据不足，无法称重",
    # set by other stages on records they pass through (devices, calibration)
    "clock_jump": "设备时钟发生跳变，过车时间需人工核对",
    "calibration_invalid": "称重设备报告标定无效",
    "calibration_drift": "称重设备存在标定漂移报警，记录需人工复核",
    # the calibration profile at the passage (zhichao.weighing.calibration_profile)
    "calibration_not_in_force": "过车时标定参数不在有效期内，按未修正数据称重，不得作为处罚证据",
    "outside_calibration_range": "车速或路面温度超出标定参数的拟合范围（修正为外推），需人工复核",
}

# flags about the calibration profile at the passage: not in force (weighed uncorrected), or
# extrapolated beyond the speeds and temperatures it was fitted on
CALIBRATION_FLAGS: frozenset[str] = frozenset({
    "calibration_not_in_force", "outside_calibration_range"})


# flags that mean the passage was not driven normally: the record can never be enforced
# without a human (the eligibility gate reads them)
ABNORMAL_FLAGS: frozenset[str] = frozenset({
    "speed_out_of_range", "acceleration", "irregular_motion", "reversing", "wheel_off_sensor",
    "straddling", "rows_disagree", "close_following", "possible_merged_vehicles",
    "saturation", "missing_channel", "axle_count_mismatch", "data_gap", "incomplete",
    "stopped_on_sensor", "unweighable",
})


@dataclass
class WeighedVehicle:
    """One vehicle passage as weighed by the core. Times are UTC, loads in kg."""

    time_utc: str
    site_id: str
    lane_id: str
    speed_kmh: float | None
    acceleration_ms2: float | None
    axle_count: int
    axle_loads_kg: list[float]
    wheel_loads_kg: list[list[float]]
    axle_spacings_m: list[float]
    axle_groups: list[list[int]]
    gross_weight_kg: float | None
    vehicle_class: str | None
    vehicle_class_zh: str | None
    limit_kg: int | None
    limit_basis: str
    limit_candidates_kg: list[int]
    allowance_kg: int | None
    allowance_basis: str
    excess_kg: int | None
    excess_after_allowance_kg: int | None
    uncertainty_kg: float | None
    coverage_factor: float | None
    verdict: str
    overloaded: bool
    flags: list[str]
    row_gross_weights_kg: list[float]
    rows_used: list[int]
    pavement_temperature_c: float | None  # None: unknown (a controller record without it)
    calibration_profile: str | None
    recording: str | None
    first_sample: int
    last_sample: int
    notes: list[str] = field(default_factory=list)
    software_version: str = __version__
    format: str = VEHICLE_FORMAT

    @property
    def flags_zh(self) -> list[str]:
        return [FLAGS_ZH.get(f, f) for f in self.flags]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags_zh"] = self.flags_zh
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
