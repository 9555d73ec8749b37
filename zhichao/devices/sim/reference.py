"""Simulated reference-truck sessions: the data a calibration or a verification is made of.

A reference truck is weighed statically on a certified scale (its static gross and axle
loads are the conventional true values) and then driven over the lane repeatedly, at set
speeds and pavement temperatures. Each pass is its own recording with one truck on it; the
session also writes ``reference.csv`` in the layout ``zhichao calibrate`` reads::

    recording,gross_weight_kg,axle_loads_kg
    pass_0001.npz,16020,6410;9610

The static values are the truth rounded to the scale interval (``static_interval_kg``).
Every pass keeps the truck's static loads and geometry and draws its own driving: speed
within ``speed_jitter_kmh`` of the set speed, gentle acceleration, lateral position and
dynamic loads exactly as :func:`zhichao.devices.sim.traffic.make_vehicle` draws them for a
normally driven truck. Use ``SimOptions(sensor_seed=…)`` so that every pass sees the same
sensors.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from zhichao.devices.errors import SimulationError
from zhichao.devices.recording import write_recording
from zhichao.devices.sim.lane import SimOptions, simulate_recording
from zhichao.devices.sim.traffic import CATALOGUE, SimVehicle, make_vehicle

# typical reference vehicles (wim.md §2.5): 2-axle rigid ≈ 16 t, 3-axle rigid ≈ 25 t,
# 5–6-axle articulated ≈ 35–40 t
DEFAULT_FLEET: tuple[tuple[str, float], ...] = (
    ("truck_2_axle", 16000.0),
    ("truck_3_axle", 25000.0),
    ("combination_6_axle", 40000.0),
)


@dataclass(frozen=True)
class ReferenceTruck:
    """A reference truck's static truth."""

    truck_id: str
    config: str
    spacings_m: tuple[float, ...]
    wheel_loads_kg: tuple[tuple[float, float], ...]

    @property
    def axle_loads_kg(self) -> list[float]:
        return [left + right for left, right in self.wheel_loads_kg]

    @property
    def gross_weight_kg(self) -> float:
        return float(sum(self.axle_loads_kg))


def make_fleet(seed: int, fleet: tuple[tuple[str, float], ...] = DEFAULT_FLEET
               ) -> list[ReferenceTruck]:
    """Reference trucks of the given configurations, loaded to the given gross [kg]."""
    rng = np.random.default_rng(seed)
    out: list[ReferenceTruck] = []
    for i, (code, gross_kg) in enumerate(fleet):
        if code not in CATALOGUE:
            raise SimulationError(f"unknown vehicle configuration {code!r}")
        if gross_kg <= 0:
            raise SimulationError(f"reference truck {code}: gross must be > 0 kg")
        v = make_vehicle(rng, CATALOGUE[code], speed_kmh=50.0, load_profile="mixed",
                         road="smooth", abnormal=None)
        wheels = v.wheel_loads_kg * (gross_kg / v.gross_weight_kg)
        out.append(ReferenceTruck(
            truck_id=f"REF{i + 1:02d}", config=code,
            spacings_m=tuple(round(float(s), 3) for s in v.spacings_m),
            wheel_loads_kg=tuple((round(float(a), 1), round(float(b), 1)) for a, b in wheels)))
    return out


def _pass_vehicle(rng: np.random.Generator, truck: ReferenceTruck, speed_kmh: float,
                  road: str) -> SimVehicle:
    v = make_vehicle(rng, CATALOGUE[truck.config], speed_kmh=speed_kmh, load_profile="mixed",
                     road=road, abnormal=None)
    v.spacings_m = np.array(truck.spacings_m)
    v.wheel_loads_kg = np.array(truck.wheel_loads_kg, dtype=float)
    return v


def simulate_reference_session(
        out_dir: str | Path, seed: int, opts: SimOptions, fleet: list[ReferenceTruck],
        speeds_kmh: list[float], temperatures_c: list[float], passes: int = 1,
        speed_jitter_kmh: float = 3.0, static_interval_kg: float = 10.0,
        prefix: str = "pass", hours_between_temperatures: float = 6.0) -> list[Path]:
    """Drive every truck ``passes`` times at every speed and temperature; one recording each.

    Writes ``<prefix>_NNNN.npz`` + ``.truth.json`` and ``reference.csv`` into ``out_dir``;
    returns the recording paths. Deterministic per seed.
    """
    if passes < 1 or not speeds_kmh or not temperatures_c or not fleet:
        raise SimulationError("a reference session needs trucks, speeds, temperatures and "
                              "at least one pass")
    if static_interval_kg <= 0:
        raise SimulationError("static_interval_kg must be > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.default_rng(seed)
    paths: list[Path] = []
    rows: list[tuple[str, float, list[float]]] = []
    k = 0
    for ti, temperature in enumerate(temperatures_c):
        start = opts.start_utc + timedelta(hours=hours_between_temperatures * ti)
        for _ in range(passes):
            for speed in speeds_kmh:
                for truck in fleet:
                    rng = np.random.default_rng(root.integers(2**63))
                    v_set = float(speed) + float(rng.uniform(-speed_jitter_kmh,
                                                             speed_jitter_kmh))
                    vehicle = _pass_vehicle(rng, truck, max(v_set, 1.0), opts.road)
                    rec_opts = SimOptions(**{**asdict(opts), "start_utc": start,
                                             "temperature_c": (temperature, temperature),
                                             "abnormal_fraction": 0.0})
                    samples, meta, truth = simulate_recording(rng, [vehicle], rec_opts)
                    k += 1
                    name = f"{prefix}_{k:04d}"
                    path = write_recording(out / f"{name}.npz", samples, meta)
                    truth["recording"] = path.name
                    truth["reference_truck"] = truck.truck_id
                    (out / f"{name}.truth.json").write_text(
                        json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
                    paths.append(path)
                    q = static_interval_kg
                    rows.append((path.name, round(truck.gross_weight_kg / q) * q,
                                 [round(a / q) * q for a in truck.axle_loads_kg]))
                    start = start + timedelta(seconds=samples.shape[0] / opts.sample_rate_hz
                                              + 60.0)
    write_reference_csv(out / "reference.csv", rows)
    return paths


def write_reference_csv(path: str | Path, rows: list[tuple[str, float, list[float]]]) -> Path:
    """``recording,gross_weight_kg,axle_loads_kg`` (axle loads ``;``-separated, front first)."""
    p = Path(path)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["recording", "gross_weight_kg", "axle_loads_kg"])
        for name, gross, axles in rows:
            w.writerow([name, _num(gross), ";".join(_num(a) for a in axles)])
    return p


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"
