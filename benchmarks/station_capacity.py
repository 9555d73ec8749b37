"""Station capacity on this machine: ``python3 benchmarks/station_capacity.py``.

Runs a whole station in this process (pipeline, sealer thread, one plate worker process)
against the simulated lane in its own process, for ``--vehicles`` vehicles at ``--speed``×
real time, and reports

* end-to-end throughput (passages committed per wall second, frames rendered, plates read
  by the shipped models from the frames, packages sealed and logged);
* latency per stage from the station's own Prometheus histograms (weighing per block,
  plate decision per vehicle in the worker, sealing per package, database commit per
  passage, linking per vehicle);
* CPU: the station's process and its plate worker (the simulator is not counted);
* lanes one such machine can serve at peak traffic (one truck every 2 s per lane):
  ``cores / (stream CPU per lane-second + 0.5 vehicle/s × (plate + seal cost per
  vehicle))``, with the plate reads and seals per passage of this run's traffic mix, and
  the worst case where every truck is read and sealed. Plate and seal costs are their
  measured single-thread latencies (each runs on one thread).

``--documents`` also renders the zh-CN PDF/HTML documents into each package.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _hist(metrics: Any, name: str, stage: str | None) -> tuple[float, float]:
    """(count, sum) of a histogram series."""
    count = total = 0.0
    for fam in metrics.registry.collect():
        for s in fam.samples:
            if stage is not None and s.labels.get("stage") != stage:
                continue
            if s.name == f"{name}_count":
                count += s.value
            elif s.name == f"{name}_sum":
                total += s.value
    return count, total


def main() -> None:
    from zhichao.station.config import load_config
    from zhichao.station.launcher import start

    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=400)
    ap.add_argument("--speed", type=float, default=25.0)
    ap.add_argument("--read", default="candidates", choices=("all", "candidates"))
    ap.add_argument("--documents", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zhichao-bench-station-"))
    cfg = load_config(None)
    cfg = dataclasses.replace(
        cfg, station=dataclasses.replace(cfg.station, data_dir=str(tmp)),
        simulation=dataclasses.replace(cfg.simulation, speed=args.speed,
                                       max_vehicles=args.vehicles, speed_kmh=(30.0, 90.0)),
        vision=dataclasses.replace(cfg.vision, read=args.read),
        evidence=dataclasses.replace(cfg.evidence, render_documents=args.documents),
        http=dataclasses.replace(cfg.http, metrics_port=0, console_port=0))
    running = start(cfg, log_stderr=False)
    st = running.station
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    st.run(threading.Event(), None, running.traffic_end)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    worker_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = worker_cpu.ru_utime + worker_cpu.ru_stime
    running.stop_service()
    if running.simulator is not None:
        running.simulator.stop()
    h = st.health_snapshot
    c = h["counts"]
    sim_s = st.stream_index / cfg.wim.sensor.sample_rate_hz
    m = st.metrics
    print(f"vehicles {args.vehicles}, speed {args.speed}×, plates read: {args.read}, "
          f"documents: {args.documents}, cores: {os.cpu_count()}")
    print(f"passages {c['passages']} in {wall:.1f} s wall = {c['passages'] / wall:.2f} "
          f"vehicles/s end to end; {sim_s:.0f} s of lane time ({sim_s / wall:.1f}× real time)")
    print(f"overloaded {c['overloaded']}, cases {c['cases']}, sealed {c['sealed']}, "
          f"no front frame {c['no_frame']}")
    rows = {}
    for stage in ("weighing", "linking", "plate", "sealing", "database"):
        n, total = _hist(m, "zhichao_stage_latency_seconds", stage)
        rows[stage] = (n, total)
        mean = 1000 * total / n if n else float("nan")
        print(f"  {stage:9s} n={n:6.0f}  mean {mean:8.2f} ms")
    print(f"CPU: station {cpu:.1f} s, plate worker (+ exited children) {children:.1f} s")
    plate_n, plate_t = rows["plate"]
    seal_n, seal_t = rows["sealing"]
    per_plate = plate_t / plate_n if plate_n else 0.0
    per_seal = seal_t / seal_n if seal_n else 0.0
    stream_cpu = max(cpu - seal_t, 0.0) / max(sim_s, 1e-9)
    n_pass = max(c["passages"], 1)
    mix_cost = stream_cpu + 0.5 * (per_plate * plate_n / n_pass + per_seal * seal_n / n_pass)
    worst_cost = stream_cpu + 0.5 * (per_plate + per_seal)
    cores = os.cpu_count() or 1
    print(f"stream CPU per lane-second {stream_cpu * 1000:.1f} ms; plate {per_plate * 1000:.1f}"
          f" ms, seal {per_seal * 1000:.1f} ms; plates per passage {plate_n / n_pass:.2f}, "
          f"seals per passage {seal_n / n_pass:.3f}")
    print(f"lanes at peak (1 vehicle / 2 s / lane) on {cores} cores: this mix "
          f"{cores / mix_cost:.1f}, worst case (every vehicle read and sealed) "
          f"{cores / worst_cost:.1f}")
    drift_state_cost()


def drift_state_cost(repeats: int = 50) -> None:
    """The drift monitor's state is committed with every truck's passage; this run's lane
    never reaches a full baseline, so the cost at steady state (every chart with its full
    baseline and window) is measured on its own: dump + one SQLite WAL commit (FULL)."""
    import json
    import random
    import sqlite3

    from zhichao.calibration.drift import DriftConfig, DriftMonitor, _Chart

    rng = random.Random(1)
    cfg = DriftConfig()
    mon = DriftMonitor("1", cfg)
    for name in ("steer", "balance", "row1", "row2", "row3", "row4"):
        n, w = cfg.baseline_n, cfg.window_n
        mon.charts[name] = _Chart(
            baseline=[rng.random() for _ in range(n)],
            baseline_gross=[rng.uniform(4e3, 5e4) for _ in range(n)],
            baseline_class=["6:B"] * n, mean=0.5, sd=0.1,
            recent=[rng.random() for _ in range(w)],
            recent_gross=[rng.uniform(4e3, 5e4) for _ in range(w)], recent_class=["6:B"] * w)
    with tempfile.TemporaryDirectory() as d:
        con = sqlite3.connect(Path(d) / "s.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        t0 = time.perf_counter()
        for _ in range(repeats):  # what the station does: DeviceRegister.state_json
            text = json.dumps(mon.to_state(), ensure_ascii=False, separators=(",", ":"))
        t_dump = (time.perf_counter() - t0) / repeats
        t0 = time.perf_counter()
        for _ in range(repeats):
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT OR REPLACE INTO meta VALUES ('drift_state', ?)", (text,))
            con.execute("COMMIT")
        t_commit = (time.perf_counter() - t0) / repeats
        con.close()
    print(f"drift state at a full baseline: {len(text) / 1024:.0f} KiB; per truck: "
          f"to_state + dump {t_dump * 1000:.2f} ms, write + commit {t_commit * 1000:.2f} ms")


if __name__ == "__main__":
    main()
