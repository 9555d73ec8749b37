"""A real station process killed with SIGKILL repeatedly under traffic, then restarted.

The simulated lane runs in its own process (as real devices do, it outlives the station).
The station is killed at random moments 2–6 s after each start, five times, then left to
finish the traffic. The result is compared with an uninterrupted, offline weighing of the
very same sample stream (the simulator is deterministic per seed): no vehicle lost, none
duplicated, weights identical, every case sealed once into a package that verifies, and no
half-written file left. Samples that were in the kernel's socket buffers when the station
died are lost to it; they are recorded as gaps, and only vehicles touching a gap may differ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.station.conftest import write_config
from zhichao.station.crashcheck import compare, reference_vehicles
from zhichao.station.launcher import SimulatorProcess

pytestmark = [
    pytest.mark.slow,  # minutes of simulated traffic or processes
    # the whole-lane tests run on one worker, one after the other: side by side on a
    # 2-core machine one starved the other once (docs/station.md, known weaknesses)
    pytest.mark.xdist_group("whole_lane"),
]

N_VEHICLES = 150
KILLS = 5
GAP_MARGIN_S = 5.0  # after a real gap the detector's averages missed the lost samples


def test_sigkill_repeatedly_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "station"
    cfg_path = tmp_path / "station.toml"
    cfg = write_config(cfg_path, data, vehicles=N_VEHICLES, seed=11,
                       extra='start_utc = "2026-03-02T08:00:00Z"')
    fs = cfg.wim.sensor.sample_rate_hz
    rng = np.random.default_rng(5)
    sim = SimulatorProcess(cfg)
    cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--attach",
           "--no-view"]
    kills = 0
    try:
        for i in range(KILLS):
            with open(tmp_path / f"run{i}.log", "w") as log:
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                time.sleep(float(rng.uniform(2.0, 6.0)))
                if p.poll() is not None:
                    break
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                kills += 1
        final = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    finally:
        sim.stop()
    assert kills == KILLS
    ref = reference_vehicles(cfg, N_VEHICLES, tmp_path / "ref")
    rep = compare(data, ref, fs, margin_s=GAP_MARGIN_S)
    print(f"\nCRASH: {kills} SIGKILLs; {rep.as_dict()}")
    for line in rep.differ:
        print("DIFFER", line)
    for name in ("lost", "duplicated", "phantom", "cases_unsealed", "packages_failing",
                 "leftovers"):
        assert getattr(rep, name) == [], (name, getattr(rep, name))
    # the journal replay resumes with the lane processor's exact state: bit for bit
    assert rep.differ == []
    assert rep.packages_on_disk == rep.cases
    assert rep.passages >= rep.reference - rep.near_gap
