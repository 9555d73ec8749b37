"""Drift monitoring: how many trucks until an injected 3 % drift is alarmed, and false alarms.

Simulates a persistent lane (``SimOptions(sensor_seed=…)``) carrying normally driven
trucks, weighs them, and feeds the records to :class:`zhichao.calibration.drift.DriftMonitor`
with its default settings. Cases: no drift (false alarms over ``--trucks`` trucks), and a
3 % sensitivity drift starting after the baseline — of every channel, of the left
half-strips, of one row — as a step and as a slow linear ramp. Reports the number of trucks
from the start of the drift to the alarm, and the estimated correction.

    python3 benchmarks/calibration_drift.py [--trucks 10000] [--drift-trucks 4000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from zhichao.calibration.drift import DriftMonitor
from zhichao.common import parse_utc
from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.weighing.stream import weigh_recording

BASE = SimOptions(trucks_only=True, abnormal_fraction=0.0, sensor_seed=2024,
                  sensitivity_error_pct=1.0, sample_rate_hz=2000.0, speed_kmh=(20.0, 90.0))
PER_REC = 100


def _weighed(opts: SimOptions, n: int, seed: int, out: Path) -> list[Any]:
    recs = []
    for p in simulate(n, seed, out, opts, vehicles_per_recording=PER_REC):
        recs.extend(weigh_recording(read_recording(p)))
        p.unlink()
    return recs


def _run(args: tuple[str, dict[str, Any], int, int, str | None, float]) -> dict[str, Any]:
    name, drift, n, seed, start_text, hours_per_truck = args
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        opts = BASE
        start_utc = parse_utc(start_text) if start_text else None
        if drift:
            opts = replace(BASE, drift_pct=3.0, drift_start_utc=start_utc,
                           drift_ramp_h=drift.get("ramp_trucks", 0) * hours_per_truck,
                           drift_channels=tuple(drift.get("channels", ())))
        records = _weighed(opts, n, seed, Path(tmp) / "run")
        mon = DriftMonitor("1")
        first = None
        trucks_after = 0
        for v in records:
            if start_utc is not None and parse_utc(v.time_utc) >= start_utc:
                trucks_after += 1
            d = mon.observe(v)
            if d.new_alarms and first is None:
                first = (d.new_alarms[0], trucks_after, mon.trucks_seen)
        return {
            "case": name, "trucks": len(records), "seconds": round(time.perf_counter() - t0, 1),
            "alarm": None if first is None else {
                "statistic": first[0].statistic,
                "trucks_after_drift_start": first[1],
                "trucks_since_reset": first[2],
                "estimated_factor": round(first[0].estimated_factor, 4),
                "all_alarms": [a.statistic for a in mon.alarms]},
        }


def _hours_per_truck(records: list[Any]) -> float:
    t0, t1 = parse_utc(records[0].time_utc), parse_utc(records[-1].time_utc)
    return (t1 - t0) / timedelta(hours=1) / max(len(records) - 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trucks", type=int, default=10_000)
    ap.add_argument("--drift-trucks", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    start = 2000  # drift begins after every baseline (500 tractors ≈ 1 050 trucks) is set
    # the traffic does not depend on the drift options: find when truck `start` passes on
    # the undrifted lane, then drift from there
    with tempfile.TemporaryDirectory() as tmp:
        plain = _weighed(BASE, start + 200, 8, Path(tmp))
    start_text = plain[start].time_utc
    hpt = _hours_per_truck(plain)
    jobs: list[tuple[str, dict[str, Any], int, int, str | None, float]] = [
        ("no drift", {}, a.trucks, 7, None, hpt)]
    for label, chans in (("all channels", ()),
                         ("left half-strips", ("r1L", "r2L", "r3L", "r4L")),
                         ("row 2", ("r2L", "r2R"))):
        jobs.append((f"{label}, step 3 %", {"channels": chans}, a.drift_trucks, 8, start_text,
                     hpt))
        jobs.append((f"{label}, ramp to 3 % over 1000 trucks",
                     {"channels": chans, "ramp_trucks": 1000}, a.drift_trucks, 8, start_text,
                     hpt))
    with ProcessPoolExecutor(a.workers) as pool:
        results = list(pool.map(_run, jobs))
    for r in results:
        print(json.dumps(r, ensure_ascii=False))
    if a.json:
        a.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
