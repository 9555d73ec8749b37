"""The 1 000-vehicle fault scenario of ``tests/devices/test_devices_acceptance.py``, with its
figures: faults injected, data lost, and what became of every vehicle.

A 2-row 1 kHz lane, 1 000 vehicles at 20–60 km/h, streamed as ZSF/1 over TCP loopback as
fast as the link takes, with about 250 scheduled faults of every kind. The weighing core
(``LaneProcessor``) is fed the driver's blocks as the station would, and its records are
compared with those of the clean recording.

Run: ``python3 benchmarks/devices_faults.py``
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.faults import FaultInjector
from zhichao.devices.samples import SampleBlock, StreamSampleSource
from zhichao.devices.sim.lane import SimOptions, plan_traffic, simulate_recording
from zhichao.devices.twins.samples import SampleStreamTwin
from zhichao.testing.device_faults import (
    FRAME_SAMPLES,
    N_VEHICLES,
    RATE_HZ,
    fault_schedule,
    feed,
    lost_ranges,
    same_result,
)
from zhichao.weighing.stream import LaneProcessor


def main() -> None:
    opts = SimOptions(n_rows=2, sample_rate_hz=RATE_HZ, speed_kmh=(20.0, 60.0),
                      abnormal_fraction=0.0)
    rng = np.random.default_rng(2026)
    samples, meta, _ = simulate_recording(rng, plan_traffic(rng, N_VEHICLES, opts), opts)
    proc = LaneProcessor(meta)
    clean = proc.feed(samples) + proc.finish()
    n_frames = -(-samples.shape[0] // FRAME_SAMPLES)
    injector = FaultInjector(schedule=fault_schedule(n_frames, seed=7), seed=8)
    twin = SampleStreamTwin(samples, RATE_HZ, meta.start_utc, speed=0,
                            samples_per_frame=FRAME_SAMPLES, injector=injector)
    blocks: list[SampleBlock] = []
    t0 = time.perf_counter()
    with StreamSampleSource.from_url(twin.url, timeouts=Timeouts(1.0),
                                     backoff=Backoff(0.01, 0.1), stall_timeout_s=1.0) as src:
        src.open()
        with twin:
            while True:
                b = src.read_block(0.2 if not twin.done.is_set() else 0.5)
                if b is not None:
                    blocks.append(b)
                elif twin.done.is_set():
                    break
        counters = dict(src.health_snapshot().counters)
    wall = time.perf_counter() - t0
    lost = lost_ranges(twin)
    print(f"recording: {samples.shape[0]} rows x {samples.shape[1]} ch "
          f"({samples.shape[0] / RATE_HZ:.0f} s of traffic), {len(clean)} vehicles; "
          f"streamed with faults in {wall:.1f} s")
    print("faults injected:", dict(sorted(injector.injected.items())))
    print(f"samples lost: {sum(b - a for a, b in lost)} in {len(lost)} runs "
          f"({100 * sum(b - a for a, b in lost) / samples.shape[0]:.2f} %)")
    print("blocks by reason:", dict(Counter(b.reason for b in blocks if b.reason)))
    print("driver counters:", {k: v for k, v in sorted(counters.items()) if v})
    faulty = feed(LaneProcessor(meta), blocks)
    margin = int(RATE_HZ)
    touched = [any(v.first_sample - margin <= b and v.last_sample + margin >= a
                   for a, b in lost) for v in clean]
    same = flagged = other = 0
    for v, t in zip(clean, touched, strict=True):
        near = [o for o in faulty if abs(o.first_sample - v.first_sample) < 50]
        if not t and len(near) == 1 and not same_result(near[0], v):
            same += 1
        elif t and near and all("data_gap" in o.flags for o in near):
            flagged += 1
        else:
            other += 1
    n_touched = sum(touched)
    print(f"vehicles: {len(clean) - n_touched} passed while the link was up, {n_touched} "
          f"within 1 s of lost data")
    print(f"weighed as clean: {same}; touched and kept flagged data_gap: {flagged}; "
          f"neither (lost, mis-assembled or differing): {other}; records from the faulty "
          f"stream: {len(faulty)}, of them {sum('data_gap' in o.flags for o in faulty)} "
          f"flagged data_gap, {sum(o.axle_count >= 12 for o in faulty)} with 12 axles")


if __name__ == "__main__":
    main()
