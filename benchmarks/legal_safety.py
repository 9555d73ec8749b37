"""Legal safety and detection of the overload verdict, per lane layout and road.

For each road (smooth, rough) and number of sensor rows (2, 3, 4), one persistent simulated
lane (fixed sensors, ±1 % sensitivity error as the simulator makes them):

1. **History** (the site's pooled history, :func:`zhichao.weighing.overload.estimate_scatter`):
   a reference-truck session (3 trucks × 4 speeds × 3 temperatures, static weights known)
   and ``--history`` in-service trucks (their rows' spread); σ(v) per 10 km/h band.
2. **Calibration**: a profile fitted on the reference session (``zhichao calibrate``).
3. **Legal trucks**: ``--legal`` trucks loaded to 85–100 % of their limit, driven normally,
   over the whole speed range; each is weighed uncalibrated and calibrated with the site's
   σ(v). Counted: legal trucks reported ``overloaded`` (must be 0); legal trucks whose
   measurement error exceeds the deduction (``gross − tolerance > true gross``: they would
   have been reported overloaded had they been loaded exactly to their limit); and records
   whose limit is stricter than the truth's lawful limit (must be 0).
4. **Overloaded trucks**: ``--over`` trucks loaded to 100–160 %; the share of those more
   than 10 % over their limit reported ``overloaded`` (target ≥ 85 %), and how the rest
   were reported.
5. ``--defaults``: the same trucks weighed uncalibrated with the shipped configuration (no
   site history: the conservative default σ(v)).

    nice -n 10 python3 benchmarks/legal_safety.py [--legal 1667] [--over 500] [--workers 2]

The default ``--legal`` gives 10 000 legal trucks over the six layouts (each weighed twice).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zhichao.calibration.fit import calibrate
from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.devices.sim.lane import read_truth
from zhichao.devices.sim.reference import make_fleet, simulate_reference_session
from zhichao.weighing.calibration_profile import CalibrationProfile, parse_profile
from zhichao.weighing.config import OverloadConfig, WeighingConfig
from zhichao.weighing.evaluation import match_vehicles
from zhichao.weighing.overload import HistoryPassage, ScatterBand, estimate_scatter
from zhichao.weighing.stream import weigh_recording

ABNORMAL_FOR_REVIEW = {"speed_out_of_range", "acceleration", "reversing", "wheel_off_sensor",
                       "straddling", "rows_disagree", "close_following",
                       "possible_merged_vehicles"}


def _weigh(paths: list[Path], cfg: WeighingConfig,
           profile: CalibrationProfile | None) -> list[tuple[dict[str, Any], Any]]:
    out = []
    for p in paths:
        truth = read_truth(p)["vehicles"]
        for m in match_vehicles(truth, weigh_recording(read_recording(p), cfg, profile)):
            out.append((m.truth, m.weighed))
    return out


def _history(d: Path, opts: SimOptions, ref_paths: list[Path], n: int,
             profile: CalibrationProfile | None) -> tuple[ScatterBand, ...]:
    refs = {row.split(",")[0]: float(row.split(",")[1]) for row in
            (d / "cal" / "reference.csv").read_text().splitlines()[1:] if row}
    passages: list[HistoryPassage] = []
    for p in ref_paths:
        for w in weigh_recording(read_recording(p), None, profile):
            if w.gross_weight_kg is not None and w.speed_kmh is not None:
                passages.append(HistoryPassage(w.speed_kmh, w.row_gross_weights_kg,
                                               refs.get(p.name)))
    hist_opts = replace(opts, load_profile="mixed", abnormal_fraction=0.0)
    for p in simulate(n, 41, d / "hist", hist_opts, 50):
        for w in weigh_recording(read_recording(p), None, profile):
            if w.gross_weight_kg and w.speed_kmh is not None and w.axle_count >= 2:
                passages.append(HistoryPassage(w.speed_kmh, w.row_gross_weights_kg))
    return estimate_scatter(passages)


def _cfg(bands: tuple[ScatterBand, ...], k: float) -> WeighingConfig:
    return WeighingConfig(overload=OverloadConfig(
        scatter_bands_kmh_sd=tuple((b.speed_max_kmh, b.relative_sd) for b in bands),
        scatter_source="benchmark: site history", coverage_factor=k))


def run(road: str, rows: int, n_legal: int, n_over: int, n_hist: int, k: float,
        seed: int, defaults: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    opts = SimOptions(n_rows=rows, road=road, sensor_seed=100 + seed, trucks_only=True,
                      abnormal_fraction=0.0)
    out: dict[str, Any] = {"road": road, "rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cal = simulate_reference_session(d / "cal", seed, opts, make_fleet(seed),
                                         [20, 40, 60, 80], [0, 20, 40])
        prof = parse_profile(calibrate(cal, d / "cal" / "reference.csv",
                                       created_utc=datetime(2026, 1, 5, tzinfo=UTC)).profile)
        legal = simulate(n_legal, seed + 1, d / "legal",
                         replace(opts, load_profile="near_limit"), 50)
        over = simulate(n_over, seed + 2, d / "over", replace(opts, load_profile="overloaded"), 50)
        for label, profile in (("uncalibrated", None), ("calibrated", prof)):
            bands = _history(d, opts, cal, n_hist, profile)
            cfg = _cfg(bands, k)
            res = _count(_weigh(legal, cfg, profile), _weigh(over, cfg, profile))
            res["sigma_by_band"] = [[b.speed_max_kmh, round(b.relative_sd, 4)] for b in bands]
            out[label] = res
        if defaults:  # no site history yet: the shipped conservative σ(v) and k
            out["no_history"] = _count(_weigh(legal, WeighingConfig(), None),
                                       _weigh(over, WeighingConfig(), None))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _count(legal: list[tuple[dict[str, Any], Any]],
           over: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    n_legal = sum(1 for t, _ in legal if t["gross_weight_kg"] <= t["limit_kg"])
    false = [t["config"] for t, w in legal
             if t["gross_weight_kg"] <= t["limit_kg"] and w is not None and w.overloaded]
    stricter = sum(1 for t, w in legal + over if w is not None and w.limit_kg is not None
                   and w.limit_kg < t["limit_kg"])
    unweighed = sum(1 for _, w in legal if w is None)
    # the stronger test: would the truck be reported overloaded had it been loaded exactly to
    # its limit (same relative error)? i.e. its measurement error exceeds the deduction
    at_limit = sum(1 for t, w in legal if w is not None and w.gross_weight_kg is not None
                   and w.allowance_kg is not None and len(w.row_gross_weights_kg) >= 2
                   and w.gross_weight_kg - w.allowance_kg > t["gross_weight_kg"])
    target = [(t, w) for t, w in over if t["gross_weight_kg"] > 1.1 * t["limit_kg"]]
    verdicts = Counter("missed" if w is None else w.verdict for _, w in target)
    detected = verdicts.get("overloaded", 0)
    flagged = sum(1 for _, w in target if w is not None and w.overloaded
                  and set(w.flags) & ABNORMAL_FOR_REVIEW)
    return {"legal": n_legal, "legal_reported_overloaded": len(false),
            "false_configs": dict(Counter(false)), "legal_unweighed": unweighed,
            "error_beyond_tolerance": at_limit,
            "limit_stricter_than_truth": stricter,
            "over_10pct": len(target), "detected": detected,
            "detection_pct": round(100.0 * detected / max(1, len(target)), 1),
            "detected_but_flagged_for_review": flagged,
            "verdicts_over_10pct": dict(verdicts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--legal", type=int, default=1667, help="legal trucks per layout")
    ap.add_argument("--over", type=int, default=500, help="overloaded trucks per layout")
    ap.add_argument("--history", type=int, default=600, help="in-service history per layout")
    ap.add_argument("--k", type=float, default=OverloadConfig().coverage_factor)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--defaults", action="store_true",
                    help="also weigh uncalibrated with the shipped defaults (no site history)")
    ap.add_argument("--layouts", nargs="*", default=["smooth:2", "smooth:3", "smooth:4",
                                                      "rough:2", "rough:3", "rough:4"])
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()
    jobs = [(lay.split(":")[0], int(lay.split(":")[1])) for lay in a.layouts]
    with ProcessPoolExecutor(a.workers) as pool:
        futures = [pool.submit(run, road, rows, a.legal, a.over, a.history, a.k, 10 * i + 3,
                               a.defaults)
                   for i, (road, rows) in enumerate(jobs)]
        results = [f.result() for f in futures]
    total = {"legal": 0, "false": 0, "stricter": 0}
    for r in results:
        for label in ("uncalibrated", "calibrated", "no_history"):
            if label not in r:
                continue
            x = r[label]
            total["legal"] += x["legal"]
            total["false"] += x["legal_reported_overloaded"]
            total["stricter"] += x["limit_stricter_than_truth"]
            print(f"{r['road']:6} {r['rows']} rows {label:12}: legal {x['legal']:5d}, reported "
                  f"overloaded {x['legal_reported_overloaded']} (error beyond the tolerance: "
                  f"{x['error_beyond_tolerance']}); limit stricter than the law "
                  f"{x['limit_stricter_than_truth']}; >10 % over: {x['detected']}/"
                  f"{x['over_10pct']} = {x['detection_pct']} % overloaded "
                  f"({x['detected_but_flagged_for_review']} of them flagged for review); "
                  f"{x['verdicts_over_10pct']}")
    print(f"total: {total['legal']} legal weighings, {total['false']} reported overloaded, "
          f"{total['stricter']} limits stricter than the law; k = {a.k}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
