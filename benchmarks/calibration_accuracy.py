"""Calibration accuracy: fit on one reference session, verify on another.

A persistent simulated lane whose half-strips are off nominal by up to ±10 % with their own
temperature coefficients (−0.02 ± 0.02 %/°C). Calibration session: three reference trucks
(2-axle 16 t, 3-axle 25 t, 6-axle 40 t), 3 passes each at 20/40/60/80 km/h at 0/20/40 °C.
Test session: 2 passes each at 30/50/70 km/h at 5/12/28/35 °C (other speeds and
temperatures). Prints, for 4 and 2 rows (smooth road) and 4 rows on a rough road, the gross
error before and after calibration and the achieved classes.

``ideal``: the same test traffic (same seed, same draws) over a lane with *ideal* sensors
(exact nominal sensitivity, no temperature effect, no noise, offset or drift), weighed
without a profile: the floor that no calibration can go below — what remains is the
dynamic load as the rows sample it, plus the core's pulse integration. ``after − ideal``
per pass is what the calibration itself leaves.

``--dynamics N``: N passes per speed of the reference trucks, the simulator's dynamic-load
model (``traffic.make_vehicle``: body bounce and axle hop) evaluated at the times each axle
crosses each row at constant speed; the gross error the mean over the rows makes, and how
often it exceeds ±2.5 % (the class-5 MPE at initial verification). No signals, no sensors:
the dynamic sampling error of the row layout alone.

``--chain``: the test session's passes weighed with the *true* sensitivities (from the
simulator's truth, temperature included) and no profile, against the simulator's own
dynamic wheel forces at the instants each axle crosses each row (the vehicles' dynamic
parameters are recovered by replaying the session's random draws; each replay is checked
against the truth file): what the core's pulse detection and area integration add, by speed.

    python3 benchmarks/calibration_accuracy.py [--sample-rate-hz 5000] [--seeds 0 1 2]
    python3 benchmarks/calibration_accuracy.py --layouts 4:smooth --seeds 1
    python3 benchmarks/calibration_accuracy.py --dynamics 2000 --layouts 4:smooth 4:rough
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.calibration.accuracy import verify_accuracy
from zhichao.calibration.fit import calibrate
from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions
from zhichao.devices.sim.lane import default_row_positions_m, read_truth
from zhichao.devices.sim.reference import ReferenceTruck, make_fleet, simulate_reference_session
from zhichao.devices.sim.traffic import CATALOGUE, make_vehicle
from zhichao.weighing.calibration_profile import (
    CalibrationProfile,
    ChannelCalibration,
    parse_profile,
)
from zhichao.weighing.stream import ABNORMAL_FLAGS, weigh_recording


def _ideal(opts: SimOptions) -> SimOptions:
    """The same lane and traffic with ideal sensors (the traffic's draws are unchanged)."""
    return replace(opts, sensitivity_error_pct=0.0, sensitivity_along_length_pct=0.0,
                   temperature_coefficient_per_c=0.0, temperature_coefficient_spread_per_c=0.0,
                   noise_units=0.0, offset_units=0.0, drift_units_per_sqrt_s=0.0)


def _errors(passes: list[Any]) -> dict[str, float]:
    return {p.recording: float(p.gross_error_pct) for p in passes
            if p.gross_error_pct is not None}


def _summary(errors: list[float]) -> dict[str, Any]:
    e = np.array(errors)
    return {"mean_pct": round(float(e.mean()), 2), "sd_pct": round(float(e.std(ddof=1)), 2),
            "max_abs_pct": round(float(np.abs(e).max()), 2),
            "within_2_5_pct": round(float((np.abs(e) <= 2.5).mean()), 3)}


def run(n_rows: int, road: str, seed: int, fs: float, floor: bool = True) -> dict[str, Any]:
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
                               "cal_rejected": [f"{p.reason}" for p in res.rejected],
                               "pass_sd_by_speed_pct": [
                                   [k, round(v, 2)] for k, v in
                                   res.profile["fit"]["pass_error_sd_by_speed_pct"]],
                               "row_contrast_sd_by_speed_pct": [
                                   [k, round(v, 2)] for k, v in
                                   res.profile["fit"]["row_contrast_sd_by_speed_pct"]],
                               "speed_factors": [[k, round(f, 4)]
                                                 for k, f in res.profile["speed_factors"]]}
        after: dict[str, float] = {}
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
                "class_5_initial_speed_range": a.speed_ranges["initial"].get("5"),
            }
            if label == "after":
                after = _errors(a.valid)
        if floor:
            ideal = simulate_reference_session(d / "ideal", 10 * seed + 2, _ideal(opts), fleet,
                                               [30, 50, 70], [5, 12, 28, 35], passes=2,
                                               prefix="test")
            a = verify_accuracy(ideal, d / "ideal" / "reference.csv", None)
            e_ideal = _errors(a.valid)
            both = sorted(set(e_ideal) & set(after))
            out["ideal"] = {**_summary([e_ideal[r] for r in both]),
                            "class_initial": a.gross_class["initial"].achieved,
                            "by_speed_class_initial": {b["band"]: b["class_initial"]
                                                       for b in a.bands["speed"]}}
            out["after_minus_ideal"] = _summary([after[r] - e_ideal[r] for r in both])
            worst = max(both, key=lambda r: abs(after[r]))
            out["worst_after"] = {"recording": worst, "after_pct": round(after[worst], 2),
                                  "ideal_pct": round(e_ideal[worst], 2)}
    return out


def _mc_vehicle_error(rng: np.random.Generator, truck: ReferenceTruck, speed_kmh: float,
                      road: str, rows_m: npt.NDArray[np.float64]) -> float:
    v = make_vehicle(rng, CATALOGUE[truck.config], speed_kmh=speed_kmh, load_profile="mixed",
                     road=road, abnormal=None)
    static = np.array(truck.axle_loads_kg)
    offsets = np.concatenate([[0.0], np.cumsum(truck.spacings_m)])
    t = float(rng.uniform(0.0, 100.0)) + (rows_m[None, :] + offsets[:, None]) / (speed_kmh / 3.6)
    dyn = (1.0 + v.body_amp[:, None] * np.sin(2 * np.pi * v.body_hz[:, None] * t
                                              + v.body_phase[:, None])
           + v.hop_amp[:, None] * np.sin(2 * np.pi * v.hop_hz[:, None] * t
                                         + v.hop_phase[:, None]))
    return float(((static[:, None] * dyn).sum(axis=0).mean() / static.sum() - 1.0) * 100)


def _dyn_factor(v: Any, j: int, t: float) -> float:
    return float(1.0 + v.body_amp[j] * np.sin(2 * np.pi * v.body_hz[j] * t + v.body_phase[j])
                 + v.hop_amp[j] * np.sin(2 * np.pi * v.hop_hz[j] * t + v.hop_phase[j]))


def chain(n_rows: int, road: str, seed: int, fs: float) -> list[dict[str, Any]]:
    opts = SimOptions(n_rows=n_rows, road=road, sensor_seed=7 + seed,
                      sensitivity_error_pct=10.0, temperature_coefficient_spread_per_c=0.0002,
                      sample_rate_hz=fs)
    fleet = make_fleet(3 + seed)
    speeds, temps, passes = [30.0, 50.0, 70.0], [5.0, 12.0, 28.0, 35.0], 2
    rows_m = default_row_positions_m(n_rows)
    by_band: dict[int, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        paths = simulate_reference_session(d, 10 * seed + 2, opts, fleet, speeds, temps,
                                           passes=passes, prefix="test")
        # replay simulate_reference_session's draws: one generator per pass, its first
        # draws are the speed jitter and the vehicle (traffic.make_vehicle)
        root = np.random.default_rng(10 * seed + 2)
        k = 0
        for _t in temps:
            for _p in range(passes):
                for speed in speeds:
                    for truck in fleet:
                        rng = np.random.default_rng(root.integers(2**63))
                        v_set = float(speed) + float(rng.uniform(-3.0, 3.0))
                        veh = make_vehicle(rng, CATALOGUE[truck.config],
                                           speed_kmh=max(v_set, 1.0), load_profile="mixed",
                                           road=road, abnormal=None)
                        path = paths[k]
                        k += 1
                        truth = read_truth(path)
                        tv = truth["vehicles"][0]
                        if abs(tv["acceleration_ms2"] - round(veh.acceleration_ms2, 4)) > 1e-9:
                            raise SystemExit(f"{path.name}: replay does not match the truth")
                        prof = CalibrationProfile("true", {
                            c["name"]: ChannelCalibration(c["sensitivity_true_per_n"], 0.0)
                            for c in truth["channels"]})
                        weighed = weigh_recording(read_recording(path), None, prof)
                        if len(weighed) != 1 or weighed[0].gross_weight_kg is None or set(
                                weighed[0].flags) & ABNORMAL_FLAGS:
                            continue
                        static = np.array(truck.axle_loads_kg)
                        offsets = np.concatenate([[0.0], np.cumsum(truck.spacings_m)])
                        t0 = tv["first_axle_sample"] / fs
                        v0 = tv["speed_kmh"] / 3.6
                        a = tv["acceleration_ms2"]
                        rows_load = []
                        for x in rows_m:
                            total = 0.0
                            for j in range(len(static)):
                                dx = x - rows_m[0] + offsets[j]
                                tt = dx / v0 if abs(a) < 1e-9 else (
                                    -v0 + math.sqrt(v0 * v0 + 2 * a * dx)) / a
                                total += static[j] * _dyn_factor(veh, j, t0 + tt)
                            rows_load.append(total)
                        dyn_pct = (float(np.mean(rows_load)) / static.sum() - 1) * 100
                        err_pct = (weighed[0].gross_weight_kg / static.sum() - 1) * 100
                        band = int(abs(weighed[0].speed_kmh or 0.0) // 20.0 * 20)
                        by_band.setdefault(band, []).append((err_pct - dyn_pct, dyn_pct))
    out = []
    for band in sorted(by_band):
        ch = np.array([c for c, _ in by_band[band]])
        dy = np.array([x for _, x in by_band[band]])
        out.append({"rows": n_rows, "road": road, "seed": seed,
                    "speed_band_kmh": f"{band}–{band + 20}",
                    "n": len(ch), "chain_mean_pct": round(float(ch.mean()), 3),
                    "chain_sd_pct": round(float(ch.std(ddof=1)), 3),
                    "chain_max_abs_pct": round(float(np.abs(ch).max()), 3),
                    "dynamic_sd_pct": round(float(dy.std(ddof=1)), 2),
                    "dynamic_max_abs_pct": round(float(np.abs(dy).max()), 2)})
    return out


def dynamics(n_rows: int, road: str, n: int,
             rows_at_m: list[float] | None = None) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1234)
    fleet = [t for s in range(3) for t in make_fleet(3 + s)]
    rows_m = np.array(rows_at_m if rows_at_m is not None else default_row_positions_m(n_rows))
    out = []
    for speed in range(20, 101, 10):
        e = np.array([_mc_vehicle_error(rng, fleet[int(rng.integers(len(fleet)))],
                                        float(speed), road, rows_m) for _ in range(n)])
        p = float(np.mean(np.abs(e) > 2.5))
        out.append({"rows": n_rows, "rows_at_m": [float(x) for x in rows_m], "road": road,
                    "speed_kmh": speed, "n": n,
                    "sd_pct": round(float(e.std()), 2),
                    "p_beyond_2_5_pct": round(100 * p, 2),
                    "max_abs_pct": round(float(np.abs(e).max()), 2),
                    # chance that a test of 24 passes (one band of the test session) has
                    # every pass within ±2.5 %
                    "p_24_all_within": round((1 - p) ** 24, 2)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample-rate-hz", type=float, default=5000.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--layouts", nargs="+", default=["4:smooth", "2:smooth", "4:rough"],
                    help="ROWS:ROAD, e.g. 4:smooth")
    ap.add_argument("--no-floor", action="store_true", help="skip the ideal-sensor lane")
    ap.add_argument("--chain", action="store_true",
                    help="only the core's integration error against the true dynamic forces")
    ap.add_argument("--dynamics", type=int, default=0, metavar="N",
                    help="only the dynamic sampling error, N passes per speed")
    ap.add_argument("--rows-at-m", default=None, metavar="X,X,...",
                    help="with --dynamics: row positions [m] instead of the default layout "
                         "(e.g. 0,3,7,12; the count must match the layout's rows)")
    a = ap.parse_args()
    layouts = []
    for item in a.layouts:
        rows, _, road = item.partition(":")
        if not rows.isdigit() or road not in ("smooth", "rough"):
            ap.error(f"--layouts: {item!r} is not ROWS:smooth or ROWS:rough")
        layouts.append((int(rows), road))
    for rows_n, road in layouts:
        if a.chain:
            for seed in a.seeds:
                for line in chain(rows_n, road, seed, a.sample_rate_hz):
                    print(json.dumps(line, ensure_ascii=False))
            continue
        if a.dynamics > 0:
            rows_at = None
            if a.rows_at_m:
                try:
                    rows_at = [float(x) for x in a.rows_at_m.split(",")]
                except ValueError:
                    ap.error(f"--rows-at-m: {a.rows_at_m!r} is not a list of numbers")
                if len(rows_at) != rows_n:
                    ap.error(f"--rows-at-m gives {len(rows_at)} rows, the layout has {rows_n}")
            for line in dynamics(rows_n, road, a.dynamics, rows_at):
                print(json.dumps(line, ensure_ascii=False))
            continue
        for seed in a.seeds:
            print(json.dumps(run(rows_n, road, seed, a.sample_rate_hz, not a.no_floor),
                             ensure_ascii=False))


if __name__ == "__main__":
    main()
