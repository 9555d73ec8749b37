"""The simulator's calibration options: persistent sensors, per-channel TC, drift."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.devices.sim.lane import read_truth
from zhichao.devices.sim.reference import make_fleet, simulate_reference_session


def _truths(opts: SimOptions, out: Path, n: int = 6) -> list[dict]:  # type: ignore[type-arg]
    return [read_truth(p) for p in simulate(n, 3, out, opts, vehicles_per_recording=2)]


def test_default_options_keep_per_recording_sensors(tmp_path: Path) -> None:
    t = _truths(SimOptions(sample_rate_hz=1000.0), tmp_path)
    errs = [[c["sensitivity_error"] for c in x["channels"]] for x in t]
    assert errs[0] != errs[1]
    assert all(c["drift_factor"] == 1.0 for x in t for c in x["channels"])


def test_sensor_seed_keeps_sensors_and_traffic(tmp_path: Path) -> None:
    base = SimOptions(sample_rate_hz=1000.0, sensitivity_error_pct=10.0,
                      temperature_coefficient_spread_per_c=0.0002)
    plain = _truths(base, tmp_path / "a")
    lane = _truths(replace(base, sensor_seed=9), tmp_path / "b")
    errs = [[c["sensitivity_error"] for c in x["channels"]] for x in lane]
    assert all(e == errs[0] for e in errs)
    assert max(abs(e) for e in errs[0]) <= 0.10 and max(abs(e) for e in errs[0]) > 0.03
    tcs = [c["temperature_coefficient_per_c"] for c in lane[0]["channels"]]
    assert all(-0.0004 <= a <= 0.0 for a in tcs) and len(set(tcs)) == len(tcs)
    # the traffic does not depend on the sensor options
    assert [x["vehicles"] for x in plain] == [x["vehicles"] for x in lane]


def test_drift_multiplies_the_chosen_channels(tmp_path: Path) -> None:
    base = SimOptions(sample_rate_hz=1000.0, sensor_seed=9)
    start = base.start_utc + timedelta(seconds=1)
    t = _truths(replace(base, drift_pct=3.0, drift_start_utc=start, drift_ramp_h=0.0,
                        drift_channels=("r2L",)), tmp_path)
    first = {c["name"]: c["drift_factor"] for c in t[0]["channels"]}
    later = {c["name"]: c["drift_factor"] for c in t[-1]["channels"]}
    assert all(f == 1.0 for f in first.values())  # recording 1 starts before the drift
    assert later["r2L"] == 1.03 and later["r1L"] == 1.0


def test_reference_session_writes_recordings_truth_and_reference(tmp_path: Path) -> None:
    opts = SimOptions(sample_rate_hz=1000.0, sensor_seed=1)
    fleet = make_fleet(2)
    paths = simulate_reference_session(tmp_path, 4, opts, fleet, [30, 60], [10, 30])
    assert len(paths) == 2 * 2 * len(fleet)
    rows = (tmp_path / "reference.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "recording,gross_weight_kg,axle_loads_kg"
    assert len(rows) == len(paths) + 1
    for p, row in zip(paths, rows[1:], strict=True):
        truth = read_truth(p)
        assert len(truth["vehicles"]) == 1
        v = truth["vehicles"][0]
        name, gross, axles = row.split(",")
        assert name == p.name
        assert abs(float(gross) - v["gross_weight_kg"]) <= 5
        assert len(axles.split(";")) == v["axle_count"]
        assert read_recording(p).meta.pavement_temperature_c in (10.0, 30.0)
    speeds = [read_truth(p)["vehicles"][0]["speed_kmh"] for p in paths]
    assert min(speeds) > 20 and max(speeds) < 70
    gross = {read_truth(p)["reference_truck"]: read_truth(p)["vehicles"][0]["gross_weight_kg"]
             for p in paths}
    assert sorted(np.round(list(gross.values()), -3)) == [16000.0, 25000.0, 40000.0]
