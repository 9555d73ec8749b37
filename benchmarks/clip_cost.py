"""CPU cost of passage clips at the default size: ms per frame taken into a recorder's ring
(scale 960×540 → 640×360, BGR → I420) and ms per clip encoded (6 s at 10 fps, 60 frames,
H.264/MP4 with libx264 ``veryfast`` CRF 26, one thread) and decoded (``probe_clip``, what
``zhichao verify`` does), with the clip's size; also the other x264 presets for the choice.
Wall times and the process's CPU time (``time.process_time``, less distorted on a shared
machine; the encoder runs one thread).

    PYTHONPATH=. python3 benchmarks/clip_cost.py [--repeat 5]

Frames are the simulated lane's front camera (a vehicle still from
``zhichao.station.scene`` approaching over the road, as ``sim_streams`` draws it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from zhichao.evidence.clip import encode_clip, probe_clip
from zhichao.station.clips import FrameRing
from zhichao.station.scene import front_scene
from zhichao.station.sim_streams import SimStreams


def frames_960() -> list[np.ndarray]:
    """60 frames, 960 × 540, of one vehicle approaching (the lane's stream drawing)."""
    rng = np.random.default_rng(7)
    still = front_scene("浙A12345", "yellow", rng, is_truck=True)
    ok, jpg = cv2.imencode(".jpg", still)
    assert ok
    streams = SimStreams(["CAM"], fps=1.0, size=(960, 540))
    try:
        streams.set_clock(datetime(2026, 1, 1, tzinfo=UTC), 0.0, 1.0)
        streams.add_vehicle("CAM", 3.0, jpg.tobytes())
        return [streams._frame(streams.cameras["CAM"], i / 10) for i in range(60)]
    finally:
        streams.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    frames = frames_960()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ring_ms: list[float] = []
    ring_cpu: list[float] = []
    ring = FrameRing(keep_s=10.0, fps=10.0, max_width=640)
    for _ in range(args.repeat):
        ring = FrameRing(keep_s=10.0, fps=10.0, max_width=640)
        start, cpu = time.perf_counter(), time.process_time()
        for i, img in enumerate(frames):
            ring.add(t0 + timedelta(seconds=i / 10), img)
        ring_ms.append((time.perf_counter() - start) * 1000 / len(frames))
        ring_cpu.append((time.process_time() - cpu) * 1000 / len(frames))
    window = ring.window(t0, t0 + timedelta(seconds=6))
    print(f"ring: {statistics.median(ring_ms):.2f} ms per frame taken, CPU "
          f"{statistics.median(ring_cpu):.2f} ms (median of "
          f"{args.repeat}); {len(window)} frames, {ring.memory_bytes() / 1e6:.1f} MB held "
          f"(the default ring of 3 + 3 + 4 s holds 102 frames: "
          f"{102 * 640 * 360 * 1.5 / 1e6:.0f} MB per camera)")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("ultrafast", "superfast", "veryfast", "faster", "medium"):
            enc, enc_cpu, dec = [], [], []
            size = 0
            for k in range(args.repeat):
                path = Path(tmp) / f"c{k}.mp4"
                start, cpu = time.perf_counter(), time.process_time()
                encode_clip([((t - t0).total_seconds(), img) for t, img in window], path,
                            fps=10, preset=preset, i420=True)
                enc.append((time.perf_counter() - start) * 1000)
                enc_cpu.append((time.process_time() - cpu) * 1000)
                data = path.read_bytes()
                size = len(data)
                start = time.perf_counter()
                info = probe_clip(data)
                dec.append((time.perf_counter() - start) * 1000)
                assert info.frame_count == len(window)
            note = "  <- default" if preset == "veryfast" else ""
            print(f"{preset:>9}: encode {statistics.median(enc):6.0f} ms per clip, CPU "
                  f"{statistics.median(enc_cpu):5.0f} ms "
                  f"({statistics.median(enc_cpu) / len(window):5.1f} ms/frame), decode "
                  f"{statistics.median(dec):4.0f} ms, {size / 1024:6.0f} KiB{note}")


if __name__ == "__main__":
    main()
