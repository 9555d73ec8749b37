"""Accuracy of the weighing core against simulator truth, per lane layout and road.

Run: ``python3 benchmarks/weighing_accuracy.py [--vehicles 400]``. For 4 rows / smooth,
2 rows / smooth and 4 rows / rough it prints: axle count right, speed within ±1 km/h,
share of normally driven trucks within ±3 % / ±5 % gross, the 95th percentile of |error|,
legal trucks reported overloaded (must be 0), and how true overloads (more than 5 % over)
were reported — the cost of the uncertainty rule and of undecidable classes.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter

import numpy as np

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.devices.sim.lane import read_truth
from zhichao.weighing.evaluation import match_vehicles
from zhichao.weighing.stream import weigh_recording


def run(n: int, rows: int, road: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ms = []
        for p in simulate(n, 2025, tmp, SimOptions(n_rows=rows, road=road,
                                                   abnormal_fraction=0.0), 25):
            ms += match_vehicles(read_truth(p)["vehicles"], weigh_recording(read_recording(p)))
    ok_axles = np.mean([m.weighed is not None and m.weighed.axle_count == m.truth["axle_count"]
                        for m in ms])
    speed = np.mean([m.weighed is not None and m.weighed.speed_kmh is not None
                     and abs(m.weighed.speed_kmh - m.truth["speed_kmh"]) <= 1.0 for m in ms])
    err = np.array([m.gross_error for m in ms if m.truth["is_truck"]
                    and m.gross_error is not None])
    legal = [m for m in ms if m.truth["is_truck"] and m.weighed is not None
             and m.truth["gross_weight_kg"] <= m.truth["limit_kg"]]
    over = [m for m in ms if m.truth["is_truck"] and m.weighed is not None
            and m.truth["gross_weight_kg"] > 1.05 * m.truth["limit_kg"]]
    verdicts = Counter(m.weighed.verdict for m in over if m.weighed is not None)
    print(f"{rows} rows, {road:6} road: axles {ok_axles:.1%}, speed ±1 km/h {speed:.1%}, "
          f"gross ±3 % {np.mean(np.abs(err) <= 0.03):.1%}, ±5 % {np.mean(np.abs(err) <= 0.05):.1%}"
          f", p95 |err| {np.percentile(np.abs(err), 95):.2%}; legal reported overloaded "
          f"{sum(m.weighed.overloaded for m in legal if m.weighed)}/{len(legal)}; "
          f">5 % over: {dict(verdicts)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=400)
    n = ap.parse_args().vehicles
    run(n, 4, "smooth")
    run(n, 2, "smooth")
    run(n, 4, "rough")


if __name__ == "__main__":
    main()
