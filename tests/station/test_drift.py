"""The drift monitor and the device register in a real station process.

The simulated lane's row-1 strips step up by 15 % (``simulation.drift_pct``) some minutes
of lane time after the start; the monitor's baseline is shortened to 30 trucks
(``drift.baseline_n``; the CUSUM parameters are the calibration stage's defaults) so the
test stays short. The station is SIGKILLed once under traffic and restarted. Checked: the
alarm is raised once (zh-CN, in the alarms, ``zhichao status``), every passage from the
alarming one on carries ``calibration_drift`` and the device's reasons, every case after it
is sealed with the drift alarm open in its device status and refused as evidence by the
gate, none before; and the monitor's stored state is exactly what an offline monitor fed
the stored passages once each, in order, ends with (nothing lost or repeated by the kill).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.station.conftest import query, reference_vehicles
from zhichao.calibration.drift import DriftConfig, DriftMonitor
from zhichao.station.config import load_config
from zhichao.station.launcher import SimulatorProcess
from zhichao.weighing.vehicle import WeighedVehicle

N_VEHICLES = 110


def _config(tmp_path: Path, drift: bool) -> Path:
    lines = "" if not drift else """
drift_pct = 15.0
drift_start_utc = "2026-03-02T08:02:30Z"
drift_channels = ["r1L", "r1R"]
"""
    path = tmp_path / "station.toml"
    path.write_text(f"""
[station]
data_dir = "{tmp_path / 'station'}"
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
[drift]
baseline_n = 30
[simulation]
speed = 25.0
speed_kmh = [30.0, 90.0]
seed = 4
max_vehicles = {N_VEHICLES}
trucks_only = true
abnormal_fraction = 0.0
start_utc = "2026-03-02T08:00:00Z"
{lines}""", encoding="utf-8")
    return path


def _vehicle(record: dict[str, Any]) -> WeighedVehicle:
    """A stored record back as the core's output (null → NaN, the drift mark removed)."""
    # the stored record's own keys (flags_zh, and what the station adds: wim_source of a
    # record lane, frame_link_unsettled of a vehicle linked with unsettled clock offsets)
    names = {f.name for f in dataclasses.fields(WeighedVehicle)}
    raw = {k: v for k, v in record.items() if k in names}
    raw["flags"] = [f for f in raw["flags"] if f != "calibration_drift"]
    raw["notes"] = [n for n in raw.get("notes", []) if "漂移" not in n]
    raw["wheel_loads_kg"] = [[math.nan if x is None else x for x in w]
                             for w in raw["wheel_loads_kg"]]
    raw["row_gross_weights_kg"] = [math.nan if x is None else x
                                   for x in raw["row_gross_weights_kg"]]
    return WeighedVehicle(**raw)


@pytest.mark.slow
def test_injected_drift_raises_the_alarm_and_flags_what_follows(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, drift=True)
    cfg = load_config(cfg_path)
    data = cfg.data_dir
    sim = SimulatorProcess(cfg)
    cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--attach",
           "--no-view"]
    try:
        with open(tmp_path / "run1.log", "w") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # kill once some trucks are committed
                db = data / "station.db"
                try:
                    if db.exists() and query(db, "SELECT COUNT(*) FROM passages")[0][0] >= 25:
                        break
                except sqlite3.Error:  # the schema is being created
                    pass
                time.sleep(0.1)
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        final = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    finally:
        sim.stop()
    db = data / "station.db"
    alarms = query(db, "SELECT code, message_zh, detail, active FROM alarms")
    assert len(alarms) == 1, alarms
    code, message_zh, detail, active = alarms[0]
    assert code == "calibration_drift" and active == 1
    assert "复核" in message_zh and "第 1 排" in message_zh  # row 1 is the drifting one
    alarm = json.loads(detail)
    assert alarm["direction"] == "high" and alarm["estimated_factor"] > 1.05
    assert alarm["time_utc"] >= "2026-03-02T08:02:30"  # not before the drift began
    rows = query(db, "SELECT time_utc, flags, device_reasons, review_required, record, "
                     "passage_key FROM passages ORDER BY first_sample")
    after = [r for r in rows if r[0] >= alarm["time_utc"]]
    before = [r for r in rows if r[0] < alarm["time_utc"]]
    assert len(after) >= 10 and len(before) >= 30
    for t, flags, reasons, review, _, _ in after:
        assert "calibration_drift" in json.loads(flags), t
        assert "drift_alarm_open" in [x["code"] for x in json.loads(reasons)], t
        assert review == 1
    for t, flags, reasons, _, _, _ in before:
        assert "calibration_drift" not in json.loads(flags), t
        assert json.loads(reasons) == [], t
    cases = query(db, "SELECT c.passage_key, c.status, c.eligibility, c.eligibility_reasons, "
                      "c.package_dir, p.time_utc FROM cases c JOIN passages p USING "
                      "(passage_key)")
    late = [c for c in cases if c[5] >= alarm["time_utc"]]
    early = [c for c in cases if c[5] < alarm["time_utc"]]
    assert late and early
    for _, status, elig, reasons, pkg, _ in late:
        manifest = json.loads((Path(pkg) / "manifest.json").read_text(encoding="utf-8"))
        assert status == "sealed" and manifest["case"]["device"]["drift_alarm_open"] is True
        assert "calibration_drift" in manifest["case"]["flags"]
        assert elig == "UNUSABLE" and "drift_alarm_open" in json.loads(reasons)
    for _, _, _, reasons, pkg, _ in early:
        manifest = json.loads((Path(pkg) / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["case"]["device"]["drift_alarm_open"] is False
        assert "drift_alarm_open" not in json.loads(reasons)
    # The stored monitor = an offline monitor fed every stored passage once, in order.
    state = json.loads(query(db, "SELECT value FROM meta WHERE key = 'drift_state'")[0][0])
    offline = DriftMonitor(cfg.lane.lane_id, DriftConfig(baseline_n=30))
    for r in rows:
        offline.observe(_vehicle(json.loads(r[4])))
    assert offline.trucks_seen == state["trucks_seen"]
    assert [a.time_utc for a in offline.alarms] == [a["time_utc"] for a in state["alarms"]]
    for name, chart in offline.to_state()["charts"].items():
        assert chart["n"] == state["charts"][name]["n"], name
        assert math.isclose(chart["s_hi"], state["charts"][name]["s_hi"], abs_tol=1e-9)
    status = subprocess.run([sys.executable, "-m", "zhichao", "status", "--config",
                             str(cfg_path)], capture_output=True, text=True, timeout=60)
    assert "calibration_drift" in status.stdout and message_zh in status.stdout
    print(f"\nDRIFT: alarm {alarm['statistic']} at {alarm['time_utc']} after "
          f"{alarm['trucks_seen']} trucks, factor {alarm['estimated_factor']:.3f}; "
          f"{len(before)} passages before, {len(after)} flagged after; cases "
          f"{len(early)} before / {len(late)} refused after")


def test_no_alarm_without_drift(tmp_path: Path) -> None:
    """The control: the very same traffic without the injected drift, weighed offline as an
    uninterrupted station would (the simulator is deterministic per seed), through a
    monitor with the same short baseline: no alarm. (The station's own monitor path is the
    test above; the 1 000-vehicle end-to-end run checks that it raises none on 750 trucks.)"""
    cfg = load_config(_config(tmp_path, drift=False))
    monitor = DriftMonitor(cfg.lane.lane_id, DriftConfig(baseline_n=30))
    for v in reference_vehicles(cfg, N_VEHICLES, tmp_path / "ref"):
        marked, decision = monitor.process(v)
        assert decision.new_alarms == [] and "calibration_drift" not in marked.flags
    assert monitor.trucks_seen >= 60 and not monitor.alarm_open
