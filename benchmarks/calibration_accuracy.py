"""Calibration accuracy: fit on one reference session, verify on another.

A persistent simulated lane whose half-strips are off nominal by up to ±10 % with their own
temperature coefficients (−0.02 ± 0.02 %/°C). Calibration session: three reference trucks
(2-axle 16 t, 3-axle 25 t, 6-axle 40 t), 3 passes each at 20/40/60/80 km/h at 0/20/40 °C.
Test session: 2 passes each at 30/50/70 km/h at 5/12/28/35 °C (other speeds and
temperatures). Prints, for 4 and 2 rows (smooth road) and 4 rows on a rough road, the gross
error before and after calibration and the achieved classes.

    python3 benchmarks/calibration_accuracy.py [--sample-rate-hz 5000] [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from zhichao.calibration.accuracy import verify_accuracy
from zhichao.calibration.fit import calibrate
from zhichao.devices.sim import SimOptions
from zhichao.devices.sim.reference import make_fleet, simulate_reference_session
from zhichao.weighing.calibration_profile import parse_profile


def run(n_rows: int, road: str, seed: int, fs: float) -> dict[str, Any]:
    opts = SimOptions(n_rows=n_rows, road=road, sensor_seed=7 + seed,
                      sensitivity_error_pct=10.0, temperature_coefficient_spread_per_c=0.0002,
                      sample_rate_hz=fs)
    fleet = make_fleet(3 + seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cal = simulate_reference_session(d / "cal", 10 * seed + 1, opts, fleet,
                                         [20, 40, 60, 80], [0, 20, 40], passes=3)
        test = simulate_reference_session(d / "test", 10 * seed + 2, opts, fleet, [30, 50, 70],
                                          [5, 12, 28, 35], passes=2, prefix="test")
        t0 = time.perf_counter()
        res = calibrate(cal, d / "cal" / "reference.csv",
                        created_utc=datetime(2026, 1, 5, tzinfo=UTC))
        fit_s = time.perf_counter() - t0
        out: dict[str, Any] = {"rows": n_rows, "road": road, "seed": seed,
                               "fit_s": round(fit_s, 1),
                               "cal_passes_used": len(res.used),
                               "cal_rejected": [f"{p.reason}" for p in res.rejected]}
        for label, prof in (("before", None), ("after", parse_profile(res.profile))):
            a = verify_accuracy(test, d / "test" / "reference.csv", prof)
            e = np.array([p.gross_error_pct for p in a.valid])
            out[label] = {
                "valid": f"{len(a.valid)}/{len(a.passes)}",
                "gross_mean_pct": round(float(e.mean()), 2),
                "gross_sd_pct": round(float(e.std(ddof=1)), 2),
                "gross_max_abs_pct": round(float(np.abs(e).max()), 2),
                "within_2_5_pct": round(float((np.abs(e) <= 2.5).mean()), 3),
                "class_initial": a.gross_class["initial"].achieved,
                "class_in_service": a.gross_class["in_service"].achieved,
                "axle_class_in_service": a.axle_class["in_service"].achieved,
                "cost323": a.cost323["overall"],
                "by_speed_class_initial": {b["band"]: b["class_initial"]
                                           for b in a.bands["speed"]},
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample-rate-hz", type=float, default=5000.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args()
    for rows, road in ((4, "smooth"), (2, "smooth"), (4, "rough")):
        for seed in a.seeds:
            print(json.dumps(run(rows, road, seed, a.sample_rate_hz), ensure_ascii=False))


if __name__ == "__main__":
    main()
