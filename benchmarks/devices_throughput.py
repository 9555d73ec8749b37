"""Sustained throughput of the ZSF/1 sample-stream driver, over TCP and over a pty.

The twin streams as fast as the link takes it (speed 0); the driver runs in the main
thread and its CPU time is measured with ``time.thread_time``. Compared with the raw rate
of an 8-channel 5 kHz lane (5 000 sample rows/s = 40 000 values/s; 160 kB/s as float32,
80 kB/s as int16). A pty has no baud-rate limit, so the 921 600-baud line capacity
(92 160 B/s at 10 bits per byte) is stated beside it.

Run: ``python3 benchmarks/devices_throughput.py [--seconds 3]``
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np

from zhichao.devices.base import Timeouts
from zhichao.devices.framing import ENCODING_FLOAT32, ENCODING_INT16, frame_size
from zhichao.devices.samples import StreamSampleSource
from zhichao.devices.twins.samples import SampleStreamTwin

LANE_ROWS_PER_S = 5000
N_CHANNELS = 8
LINE_921600_BYTES_PER_S = 921_600 / 10


def run(link: str, encoding: int, seconds: float, samples_per_frame: int) -> dict[str, float]:
    n = int(LANE_ROWS_PER_S * 60)
    data = (np.random.default_rng(0).standard_normal((n, N_CHANNELS)) * 10).astype(np.float32)
    twin = SampleStreamTwin(data, LANE_ROWS_PER_S, datetime.now(UTC), link=link, speed=0,
                            samples_per_frame=samples_per_frame, encoding=encoding,
                            scale=0.001, loop=True)
    url = twin.url + ("?baud_rate=921600" if link == "pty" else "")
    rows = frames = 0
    with StreamSampleSource.from_url(url, timeouts=Timeouts(2.0),
                                     max_block_samples=samples_per_frame) as source:
        source.open()
        with twin:
            source.read_block(2.0)  # warm up
            t0, c0 = time.perf_counter(), time.thread_time()
            while time.perf_counter() - t0 < seconds:
                block = source.read_block(1.0)
                if block is not None:
                    rows += block.n_samples
            wall = time.perf_counter() - t0
            cpu = time.thread_time() - c0
            frames = source.health.count("frames")
            errors = source.health_snapshot().error_count
    size = frame_size(samples_per_frame, N_CHANNELS, encoding)
    return {"rows_per_s": rows / wall, "frames_per_s": rows / samples_per_frame / wall,
            "values_per_s": rows * N_CHANNELS / wall, "bytes_per_s": rows / samples_per_frame
            * size / wall, "cpu_pct": 100 * cpu / wall, "x_lane": rows / wall / LANE_ROWS_PER_S,
            "frames_total": frames, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--samples-per-frame", type=int, default=100)
    args = parser.parse_args()
    spf = args.samples_per_frame
    print(f"lane: {N_CHANNELS} ch x {LANE_ROWS_PER_S} Hz = {LANE_ROWS_PER_S * N_CHANNELS} "
          f"values/s; frame {spf} rows: float32 {frame_size(spf, N_CHANNELS)} B, int16 "
          f"{frame_size(spf, N_CHANNELS, ENCODING_INT16)} B")
    need_f = LANE_ROWS_PER_S / spf * frame_size(spf, N_CHANNELS)
    need_i = LANE_ROWS_PER_S / spf * frame_size(spf, N_CHANNELS, ENCODING_INT16)
    print(f"lane needs {need_f / 1e3:.1f} kB/s float32, {need_i / 1e3:.1f} kB/s int16; "
          f"921600 baud carries {LINE_921600_BYTES_PER_S / 1e3:.1f} kB/s")
    print(f"{'link':5} {'enc':7} {'frames/s':>9} {'rows/s':>10} {'values/s':>11} "
          f"{'MB/s':>7} {'CPU %':>6} {'x lane':>7} errors")
    for link in ("tcp", "pty"):
        for enc, name in ((ENCODING_FLOAT32, "float32"), (ENCODING_INT16, "int16")):
            r = run(link, enc, args.seconds, spf)
            print(f"{link:5} {name:7} {r['frames_per_s']:9.0f} {r['rows_per_s']:10.0f} "
                  f"{r['values_per_s']:11.0f} {r['bytes_per_s'] / 1e6:7.2f} "
                  f"{r['cpu_pct']:6.1f} {r['x_lane']:7.1f} {r['errors']:.0f}")


if __name__ == "__main__":
    main()
