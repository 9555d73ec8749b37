"""Simulated traffic: vehicle configurations, static loads, kinematics and driving behaviour.

The catalogue follows the 62号令 Art. 3 / GB 1589 configurations (2-axle truck … 6-axle
tractor-semitrailer), plus cars and vans. Spacing ranges are typical Chinese vehicle
dimensions; they are the simulator's assumptions, not the core's.

The simulator knows the truth (configuration, drive axle, static loads) and writes it to
the ground-truth file; the weighing core sees only the sensor signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# behaviours a vehicle may be driven with; "normal" vehicles have none
ABNORMAL_KINDS: tuple[str, ...] = (
    "acceleration",
    "braking",
    "speed_out_of_range",
    "lateral_offset",
    "reversing",
    "close_following",
)

Tyre = Literal["single", "dual"]
Role = Literal["steer", "drive", "tag", "trailer"]


@dataclass(frozen=True)
class AxleSpec:
    spacing_m: tuple[float, float]  # range of the spacing to the previous axle (0 for axle 1)
    role: Role
    tyre: Tyre
    tare_share: float  # share of the empty mass on this axle (normalised per vehicle)
    payload_share: float  # share of the payload on this axle (normalised per vehicle)
    unit: int = 0  # 0 = motor vehicle, 1 = (semi)trailer


@dataclass(frozen=True)
class VehicleConfig:
    code: str
    legal_class: str | None  # what 62号令 Art. 3 calls it (None: not a goods vehicle class)
    limit_kg: int  # truth total-mass limit under 62号令 Art. 3
    drive_axle: Literal["single", "tandem"]
    axles: tuple[AxleSpec, ...]
    tare_kg: tuple[float, float]
    max_payload_kg: float  # a nominal full load
    track_m: float  # lateral distance between left and right wheel centres
    is_truck: bool = True


def _a(lo: float, hi: float, role: Role, tyre: Tyre, tare: float, pay: float,
       unit: int = 0) -> AxleSpec:
    return AxleSpec((lo, hi), role, tyre, tare, pay, unit)


CATALOGUE: dict[str, VehicleConfig] = {
    c.code: c
    for c in (
        VehicleConfig("car", "truck_2_axle", 18000, "single",
                      (_a(0, 0, "steer", "single", 0.55, 0.4),
                       _a(2.5, 2.9, "drive", "single", 0.45, 0.6)),
                      (1200, 1900), 400, 1.55, is_truck=False),
        VehicleConfig("van", "truck_2_axle", 18000, "single",
                      (_a(0, 0, "steer", "single", 0.5, 0.35),
                       _a(3.0, 3.6, "drive", "dual", 0.5, 0.65)),
                      (2000, 2600), 1500, 1.65, is_truck=False),
        VehicleConfig("truck_2_axle", "truck_2_axle", 18000, "single",
                      (_a(0, 0, "steer", "single", 0.55, 0.3),
                       _a(3.8, 5.6, "drive", "dual", 0.45, 0.7)),
                      (5000, 7000), 10000, 1.85),
        VehicleConfig("truck_3_axle", "truck_3_axle", 25000, "tandem",
                      (_a(0, 0, "steer", "single", 0.42, 0.2),
                       _a(3.2, 4.6, "drive", "dual", 0.29, 0.4),
                       _a(1.3, 1.4, "drive", "dual", 0.29, 0.4)),
                      (9000, 12000), 14000, 1.9),
        VehicleConfig("truck_3_axle_twin_steer", "truck_3_axle", 25000, "single",
                      (_a(0, 0, "steer", "single", 0.3, 0.2),
                       _a(1.8, 2.0, "steer", "single", 0.3, 0.2),
                       _a(3.6, 4.8, "drive", "dual", 0.4, 0.6)),
                      (9000, 11500), 14000, 1.9),
        VehicleConfig("combination_3_axle", "combination_3_axle", 27000, "single",
                      (_a(0, 0, "steer", "single", 0.45, 0.15),
                       _a(3.4, 3.9, "drive", "dual", 0.35, 0.4),
                       _a(6.0, 8.0, "trailer", "dual", 0.2, 0.45, 1)),
                      (10000, 12500), 15000, 1.9),
        VehicleConfig("truck_4_axle", "truck_4_axle", 31000, "tandem",
                      (_a(0, 0, "steer", "single", 0.26, 0.15),
                       _a(1.8, 2.0, "steer", "single", 0.26, 0.15),
                       _a(3.0, 5.5, "drive", "dual", 0.24, 0.35),
                       _a(1.3, 1.4, "drive", "dual", 0.24, 0.35)),
                      (12000, 15000), 17000, 1.9),
        VehicleConfig("combination_4_axle", "combination_4_axle", 36000, "single",
                      (_a(0, 0, "steer", "single", 0.35, 0.1),
                       _a(3.4, 3.9, "drive", "dual", 0.3, 0.3),
                       _a(6.0, 7.5, "trailer", "dual", 0.175, 0.3, 1),
                       _a(1.3, 1.4, "trailer", "dual", 0.175, 0.3, 1)),
                      (13000, 16000), 21000, 1.9),
        VehicleConfig("combination_5_axle", "combination_5_axle", 43000, "single",
                      (_a(0, 0, "steer", "single", 0.3, 0.08),
                       _a(3.4, 3.9, "drive", "dual", 0.28, 0.26),
                       _a(6.0, 7.5, "trailer", "dual", 0.14, 0.22, 1),
                       _a(1.3, 1.32, "trailer", "dual", 0.14, 0.22, 1),
                       _a(1.3, 1.32, "trailer", "dual", 0.14, 0.22, 1)),
                      (14000, 17000), 27000, 1.9),
        VehicleConfig("combination_6_axle", "combination_6_axle", 49000, "tandem",
                      (_a(0, 0, "steer", "single", 0.25, 0.08),
                       _a(3.2, 3.6, "drive", "dual", 0.19, 0.18),
                       _a(1.3, 1.4, "drive", "dual", 0.19, 0.18),
                       _a(6.5, 7.5, "trailer", "dual", 0.123, 0.187, 1),
                       _a(1.3, 1.32, "trailer", "dual", 0.123, 0.187, 1),
                       _a(1.3, 1.32, "trailer", "dual", 0.123, 0.187, 1)),
                      (15000, 18000), 32000, 1.9),
        VehicleConfig("combination_6_axle_single_drive", "combination_6_axle_single_drive",
                      46000, "single",
                      (_a(0, 0, "steer", "single", 0.21, 0.07),
                       _a(1.8, 2.0, "steer", "single", 0.21, 0.07),
                       _a(2.6, 3.0, "drive", "dual", 0.21, 0.3),
                       _a(6.5, 7.5, "trailer", "dual", 0.123, 0.187, 1),
                       _a(1.3, 1.32, "trailer", "dual", 0.123, 0.187, 1),
                       _a(1.3, 1.32, "trailer", "dual", 0.123, 0.187, 1)),
                      (15000, 18000), 30000, 1.9),
    )
}

TRAFFIC_MIX: dict[str, float] = {
    "car": 0.12, "van": 0.05, "truck_2_axle": 0.15, "truck_3_axle": 0.08,
    "truck_3_axle_twin_steer": 0.04, "combination_3_axle": 0.03, "truck_4_axle": 0.09,
    "combination_4_axle": 0.04, "combination_5_axle": 0.08, "combination_6_axle": 0.22,
    "combination_6_axle_single_drive": 0.10,
}

# load profiles: (probability, low, high) of gross/limit for trucks, "empty" = tare only
LOAD_PROFILES: dict[str, tuple[tuple[str, float, float, float], ...]] = {
    "mixed": (("empty", 0.20, 0.0, 0.0), ("normal", 0.45, 0.55, 0.95),
              ("near_limit", 0.15, 0.95, 1.05), ("overloaded", 0.20, 1.05, 1.6)),
    "near_limit": (("near_limit", 1.0, 0.85, 1.0),),
    "overloaded": (("overloaded", 1.0, 1.0, 1.6),),
}


@dataclass
class SimVehicle:
    """Truth for one simulated vehicle (static loads and how it was driven)."""

    config: VehicleConfig
    spacings_m: np.ndarray  # [n_axles - 1]
    wheel_loads_kg: np.ndarray  # [n_axles, 2] static (left, right)
    tyres: tuple[Tyre, ...]
    speed_kmh: float  # speed when the first axle crosses row 1
    acceleration_ms2: float
    lateral_offset_m: float  # + = towards the right half
    abnormal: list[str] = field(default_factory=list)
    reverse_distance_m: float = 0.0  # > 0: stops over the array and backs up this far
    # dynamic-load parameters per axle
    body_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    body_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))
    body_amp: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hop_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hop_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hop_amp: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_axles(self) -> int:
        return int(self.wheel_loads_kg.shape[0])

    @property
    def axle_offsets_m(self) -> np.ndarray:
        """Distance of each axle behind the first one [m]."""
        return np.concatenate([[0.0], np.cumsum(self.spacings_m)])

    @property
    def axle_loads_kg(self) -> np.ndarray:
        return np.asarray(self.wheel_loads_kg.sum(axis=1))

    @property
    def gross_weight_kg(self) -> float:
        return float(self.wheel_loads_kg.sum())

    @property
    def front_overhang_m(self) -> float:
        return 1.0 if not self.config.is_truck else 1.4

    @property
    def rear_overhang_m(self) -> float:
        return 0.9 if not self.config.is_truck else 1.6


def dynamic_amplitude(speed_kmh: float, road: str) -> float:
    """Body-bounce amplitude A1 (fraction of static load) at a speed.

    A1 = 0.003357·v − 0.0193 (wim-sim, after Gajda et al. 2015) for a rough road, and half
    of that for a smooth road; A2 (axle hop) = A1 / 5.
    """
    a1 = max(0.0, 0.003357 * abs(speed_kmh) - 0.0193)
    return a1 * (1.0 if road == "rough" else 0.5)


def make_vehicle(rng: np.random.Generator, config: VehicleConfig, *, speed_kmh: float,
                 load_profile: str, road: str, abnormal: str | None) -> SimVehicle:
    """Draw one vehicle of a configuration with static loads and driving behaviour."""
    n = len(config.axles)
    spacings = np.array([rng.uniform(*a.spacing_m) for a in config.axles[1:]])
    tare = rng.uniform(*config.tare_kg)
    if config.is_truck:
        profiles = LOAD_PROFILES[load_profile]
        probs = np.array([p[1] for p in profiles])
        kind, _, lo, hi = profiles[rng.choice(len(profiles), p=probs / probs.sum())]
        if kind == "empty":
            payload = rng.uniform(0.0, 0.1) * config.max_payload_kg
        else:
            payload = max(0.0, rng.uniform(lo, hi) * config.limit_kg - tare)
    else:
        payload = rng.uniform(0.0, 1.0) * config.max_payload_kg
    tare_share = np.array([a.tare_share for a in config.axles])
    pay_share = np.array([a.payload_share for a in config.axles])
    # load position varies: perturb the payload distribution a little
    pay_share = pay_share * rng.uniform(0.85, 1.15, n)
    axle = tare * tare_share / tare_share.sum() + payload * pay_share / pay_share.sum()
    left_share = np.clip(rng.normal(0.5, 0.02, n), 0.44, 0.56)
    wheels = np.stack([axle * left_share, axle * (1.0 - left_share)], axis=1)
    v = SimVehicle(
        config=config,
        spacings_m=spacings,
        wheel_loads_kg=wheels,
        tyres=tuple(a.tyre for a in config.axles),
        speed_kmh=speed_kmh,
        # gentle speed changes that never bring a normally driven vehicle to a stop
        acceleration_ms2=float(rng.uniform(-1.0, 1.0)
                               * min(0.25, 0.2 * (speed_kmh / 3.6) ** 2 / 60.0)),
        lateral_offset_m=float(np.clip(rng.normal(0.0, 0.12), -0.3, 0.3)),
    )
    if abnormal is not None:
        apply_abnormal(rng, v, abnormal)
    # body bounce per unit, shared by the axles of the unit with a small pitch shift
    units = np.array([a.unit for a in config.axles])
    unit_hz = rng.uniform(1.5, 4.0, 2)
    unit_phase = rng.uniform(0, 2 * np.pi, 2)
    a1 = dynamic_amplitude(v.speed_kmh, road)
    v.body_hz = unit_hz[units]
    v.body_phase = unit_phase[units] + rng.normal(0.0, 0.6, n)
    v.body_amp = a1 * rng.uniform(0.7, 1.3, n)
    v.hop_hz = rng.uniform(8.0, 15.0, n)
    v.hop_phase = rng.uniform(0, 2 * np.pi, n)
    v.hop_amp = a1 / 5.0 * rng.uniform(0.7, 1.3, n)
    return v


def apply_abnormal(rng: np.random.Generator, v: SimVehicle, kind: str) -> None:
    """Make a vehicle drive abnormally in one of :data:`ABNORMAL_KINDS` ways."""
    if kind == "acceleration":
        v.acceleration_ms2 = float(rng.uniform(1.5, 3.0))
        v.speed_kmh = float(rng.uniform(10.0, 50.0))
    elif kind == "braking":
        v.acceleration_ms2 = float(-rng.uniform(1.5, 3.0))
        v.speed_kmh = float(rng.uniform(55.0, 90.0))
    elif kind == "speed_out_of_range":
        v.speed_kmh = float(rng.uniform(1.5, 3.5) if rng.random() < 0.5
                            else rng.uniform(108.0, 130.0))
        v.acceleration_ms2 = 0.0
    elif kind == "lateral_offset":
        sign = 1.0 if rng.random() < 0.5 else -1.0
        # wheels partly off the outer edge of a half-strip, or over the centre seam
        v.lateral_offset_m = sign * float(rng.uniform(0.75, 1.1))
    elif kind == "reversing":
        v.speed_kmh = float(rng.uniform(5.0, 12.0))
        v.acceleration_ms2 = 0.0
        v.reverse_distance_m = float(rng.uniform(3.0, 6.0))
    elif kind == "close_following":
        pass  # arranged by the traffic planner (gap to the previous vehicle)
    else:
        raise ValueError(f"unknown abnormal behaviour {kind!r}")
    v.abnormal.append(kind)
