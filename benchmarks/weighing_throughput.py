"""Throughput of the weighing chain on one core: numba kernels vs the reference.

Run: ``python3 benchmarks/weighing_throughput.py [--vehicles 200]``. Prints samples per
second through (a) the pulse kernel alone, (b) the whole chain (pulses → vehicles, records
built) fed in 1 s chunks as a live stream, (c) the slow reference kernel, and the
real-time factor for an 8-channel 5 kHz lane (40 000 samples/s).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.weighing.pulses import detect_pulses
from zhichao.weighing.reference import detect_pulses_reference
from zhichao.weighing.stream import weigh_recording

LANE_SAMPLES_PER_S = 8 * 5000


def _best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate(args.vehicles, 3, tmp, SimOptions(abnormal_fraction=0.0),
                        vehicles_per_recording=args.vehicles)[0]
        rec = read_recording(path)
    n = rec.samples.size
    sens = [c.sensitivity_per_n for c in rec.meta.channels]
    fs = rec.meta.sample_rate_hz
    detect_pulses(rec.samples[:1000], sens, fs)  # compile / load the cache
    weigh_recording(rec, chunk_samples=5000)
    t_kernel = _best(lambda: detect_pulses(rec.samples, sens, fs), 3)
    t_chain = _best(lambda: weigh_recording(rec, chunk_samples=5000), 3)
    t_chain_small = _best(lambda: weigh_recording(rec, chunk_samples=500), 2)
    n_vehicles = len(weigh_recording(rec, chunk_samples=5000))
    ref_slice = rec.samples[:20000]
    t_ref = _best(lambda: detect_pulses_reference(ref_slice, sens, fs), 1)
    print(f"recording: {rec.samples.shape[0]} samples x {rec.samples.shape[1]} channels "
          f"({rec.duration_s:.0f} s of lane, {n_vehicles} vehicles)")
    rows = [("pulse kernel (numba)", n / t_kernel),
            ("whole chain, 1 s chunks (numba + Python)", n / t_chain),
            ("whole chain, 0.1 s chunks (numba + Python)", n / t_chain_small),
            ("reference kernel (pure Python)", ref_slice.size / t_ref)]
    for name, rate in rows:
        print(f"{name:<46} {rate / 1e6:10.2f} M samples/s   "
              f"real-time factor {rate / LANE_SAMPLES_PER_S:10.0f}x (8 ch, 5 kHz)")
    print(f"numba kernel / reference: {rows[0][1] / rows[-1][1]:.0f}x; "
          f"whole chain per vehicle: {t_chain / max(n_vehicles, 1) * 1e3:.2f} ms")
    _ = np


if __name__ == "__main__":
    main()
