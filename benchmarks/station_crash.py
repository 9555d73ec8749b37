"""Kill a station under traffic again and again, then check what it lost.

A simulated lane (its own process, outliving the station, as devices do) carries
``--vehicles`` vehicles; the station (`zhichao run --attach`) is SIGKILLed ``--kills``
times: a third at random moments 1.5–6 s after a start, a third aimed at sealing (the
instant a ``.partial`` package folder appears, plus 0–250 ms, so kills land in every step
of a seal and of its evidence-log append), a third in the stream's first second. Then a
last run finishes the traffic. The result is compared with an uninterrupted weighing of
the same stream (:mod:`zhichao.station.crashcheck`): vehicles lost, duplicated or
weighed differently outside recorded gaps, cases sealed and verified, and processes left
behind by each killed station (its plate workers and the multiprocessing resource
tracker, checked 2 s after the kill).

    python3 benchmarks/station_crash.py [--kills 21] [--vehicles 200] [--speed 3]
                                        [--seed 11] [--slow] [--json OUT.json]

The simulated WIM unit buffers 30 s of samples while no station reads it; at a low
``--speed`` a restart (a few seconds of wall time) costs only what was in the kernel's
socket buffers, at a high one the rest of the downtime is a recorded gap. Enough vehicles
must be left for the last kill (a station that ends normally stops its lane).

``--slow`` draws speeds from 3.6 km/h instead of 30 (slow trucks are on the array for many
seconds, so kills land while one is crossing).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zhichao.station.config import load_config
from zhichao.station.crashcheck import compare, reference_vehicles
from zhichao.station.launcher import SimulatorProcess
from zhichao.testing.procs import alive, descendants

CONFIG = """
[station]
data_dir = "{data}"
[http]
metrics_port = 0
console_port = 0
[simulation]
speed = {speed}
speed_kmh = [{vmin}, 90.0]
seed = {seed}
max_vehicles = {vehicles}
start_utc = "2026-03-02T08:00:00Z"
"""


def wait_partial(packages: Path, deadline: float, p: subprocess.Popen[bytes]) -> bool:
    while time.monotonic() < deadline and p.poll() is None:
        if packages.is_dir() and any(x.name.endswith(".partial") for x in packages.iterdir()):
            return True
        time.sleep(0.002)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=21)
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--speed", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--slow", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: temporary)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="zhichao-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "station"
    cfg_path = work / "station.toml"
    cfg_path.write_text(CONFIG.format(data=data, speed=args.speed, seed=args.seed,
                                      vehicles=args.vehicles,
                                      vmin=3.6 if args.slow else 30.0), encoding="utf-8")
    cfg = load_config(cfg_path)
    rng = np.random.default_rng(args.seed)
    cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--attach",
           "--no-view"]
    kinds = ["random", "sealing", "first_second"]
    done = {k: 0 for k in kinds}
    leftover: list[int] = []
    failed_starts = 0
    ended = False
    t0 = time.monotonic()
    sim = SimulatorProcess(cfg)
    try:
        for i in range(args.kills):
            kind = kinds[i % 3]
            with open(work / f"run{i:02d}.log", "wb") as log:
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                if kind == "random":
                    time.sleep(float(rng.uniform(1.5, 6.0)))
                elif kind == "first_second":
                    time.sleep(float(rng.uniform(0.3, 1.5)))
                else:
                    packages = data / "evidence" / "packages"
                    if wait_partial(packages, time.monotonic() + 30.0, p):
                        time.sleep(float(rng.uniform(0.0, 0.25)))
                    else:
                        kind = "random"  # no case came within 30 s
                if p.poll() is not None:  # ended by itself: the traffic is over, or it failed
                    ended = True
                    if p.returncode != 0:
                        failed_starts += 1
                    break
                below = descendants(p.pid)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                done[kind] += 1
                time.sleep(2.0)
                leftover += [c for c in below if alive(c)]
        if not ended:  # a last run finishes the traffic
            final = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if final.returncode != 0:
                failed_starts += 1
                print(final.stdout[-2000:], final.stderr[-3000:], file=sys.stderr)
    finally:
        sim.stop()
    elapsed = time.monotonic() - t0
    fs = cfg.wim.sensor.sample_rate_hz
    ref = reference_vehicles(cfg, args.vehicles, work / "ref")
    rep = compare(data, ref, fs, margin_s=5.0)
    result = {"kills": done, "kills_total": sum(done.values()), "failed_starts": failed_starts,
              "processes_left_over": len(leftover), "elapsed_s": round(elapsed, 1),
              "vehicles": args.vehicles, "speed": args.speed, "slow": args.slow,
              "seed": args.seed, **rep.as_dict()}
    print(json.dumps(result, indent=1))
    for line in rep.differ:
        print("DIFFER", line)
    for name in ("lost", "duplicated", "phantom"):
        if getattr(rep, name):
            print(name.upper(), getattr(rep, name))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    ok = rep.clean and failed_starts == 0 and not leftover
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
