"""Compare weighed vehicles with ground truth (simulated or reference-truck sessions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from zhichao.common import parse_utc
from zhichao.devices.sim import CATALOGUE, SimOptions
from zhichao.devices.sim.lane import _trajectory
from zhichao.devices.sim.traffic import SimVehicle
from zhichao.weighing.vehicle import WeighedVehicle

# which weighing flags answer which abnormal behaviour
EXPECTED_FLAGS: dict[str, frozenset[str]] = {
    "acceleration": frozenset({"acceleration"}),
    "braking": frozenset({"acceleration"}),
    "speed_out_of_range": frozenset({"speed_out_of_range"}),
    "lateral_offset": frozenset({"wheel_off_sensor", "straddling"}),
    "reversing": frozenset({"reversing"}),
    "close_following": frozenset({"close_following", "possible_merged_vehicles"}),
}


@dataclass
class Match:
    truth: dict[str, Any]
    weighed: WeighedVehicle | None
    merged: bool = False

    @property
    def normal(self) -> bool:
        return not self.truth["abnormal"]

    @property
    def gross_error(self) -> float | None:
        if self.weighed is None or self.weighed.gross_weight_kg is None:
            return None
        return float(self.weighed.gross_weight_kg / self.truth["gross_weight_kg"] - 1.0)


def match_vehicles(truth: list[dict[str, Any]], weighed: list[WeighedVehicle],
                   tolerance_s: float = 0.5) -> list[Match]:
    """Pair every truth vehicle with the weighed vehicle nearest in first-axle time."""
    times = [parse_utc(w.time_utc) for w in weighed]
    used: set[int] = set()
    out: list[Match] = []
    for t in truth:
        t0: datetime = parse_utc(t["first_axle_time_utc"])
        best, best_dt = None, tolerance_s
        for i, tw in enumerate(times):
            if i in used:
                continue
            dt = abs((tw - t0).total_seconds())
            if dt <= best_dt:
                best, best_dt = i, dt
        if best is not None:
            used.add(best)
            out.append(Match(t, weighed[best]))
        else:
            out.append(Match(t, None))
    # a vehicle read together with its neighbour is "merged into" the record that spans it
    for m in out:
        if m.weighed is None:
            k = m.truth["first_axle_sample"]
            for w in weighed:
                if w.first_sample - 50 <= k <= w.last_sample + 50:
                    m.weighed, m.merged = w, True
                    break
    return out


def flag_hit(m: Match) -> bool:
    """Does a weighed abnormal vehicle carry a flag that answers its behaviour?"""
    if m.weighed is None:
        return False
    got = set(m.weighed.flags)
    return all(bool(EXPECTED_FLAGS[k] & got) for k in m.truth["abnormal"])


def backward_row_crossings(truth: dict[str, Any], opts: SimOptions) -> int:
    """How many times an axle of a simulated vehicle crossed a sensor row backwards,
    recomputed from the simulator's own trajectory model (the truth file does not say).

    The simulator's "reversing" vehicles stop with their middle axle 1 m past the array and
    back up 3–6 m, so every one now backs an axle over at least one row (before 2026-12 a
    trajectory ended when the last axle first cleared the array, so 2-axle vehicles never
    reversed over a sensor). Only vehicles with crossings > 0 are expected to carry
    ``reversing``: no sensor can see a reversal that stays off the array.
    """
    rows = opts.rows_m()
    v = SimVehicle(config=CATALOGUE[truth["config"]],
                   spacings_m=np.array(truth["axle_spacings_m"], dtype=float),
                   wheel_loads_kg=np.array(truth["wheel_loads_kg"], dtype=float),
                   tyres=tuple(truth["tyres"]), speed_kmh=truth["speed_kmh"],
                   acceleration_ms2=truth["acceleration_ms2"],
                   lateral_offset_m=truth["lateral_offset_m"],
                   reverse_distance_m=truth["reverse_distance_m"])
    array_end = rows[-1] + opts.strip_width_m
    x = _trajectory(v, opts.sample_rate_hz, 0.0, -3.0, array_end + 0.6, array_end)
    n = 0
    for d in v.axle_offsets_m:
        xa = x - d
        for x_row in rows:
            centre = x_row + opts.strip_width_m / 2
            n += int(np.sum((xa[:-1] > centre) & (xa[1:] <= centre)))
    return n
