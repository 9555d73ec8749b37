"""What one WIM block costs the clock-offset estimator (``linking.OffsetEstimator``).

    python3 benchmarks/station_offset_estimator.py

Feeds 15 minutes of 50 blocks a second (simulated arrival times, so it runs in seconds)
and prints the mean cost of one observation over each 50 s, first and last, and how many
buckets the estimator keeps. Before 2026-12-07 it kept every block after the first 0.2 s
and recomputed its maximum over all of them once its 10-minute window was full.
"""

from __future__ import annotations

import time

from zhichao.station.linking import OffsetEstimator


def main() -> None:
    est = OffsetEstimator()
    n = 50 * 900
    started = last = time.perf_counter()
    per_add_us: list[float] = []
    for i in range(n):
        est.add(-0.01 * ((i * 7919) % 13), at_s=i * 0.02)
        if i % 2500 == 2499:
            now = time.perf_counter()
            per_add_us.append((now - last) / 2500 * 1e6)
            last = now
    total_s = time.perf_counter() - started
    print(f"{n} blocks at 50/s: {est.n} buckets kept; mean per block over the first 50 s "
          f"{per_add_us[0]:.1f} µs, over the last 50 s {per_add_us[-1]:.1f} µs; "
          f"{total_s:.2f} s in all")


if __name__ == "__main__":
    main()
