"""Plate-reading latency on one thread: per scene, per crop, per stage; plates/s per core.

Run from the repository root (needs ../shared beside it, or --dev DIR):

    python3 benchmarks/vision_latency.py            # 3 passes over the 300 dev images
    python3 benchmarks/vision_latency.py --json     # machine-readable

Latency is measured per image from a decoded frame to the accept decision: detection,
every decoding the accept policy needs (PP-OCRv4's read and the plate model's; with
``--before``, PP-OCRv4's read and its two further views, the reader before the plate model)
and the policy itself (JPEG decoding is excluded and reported separately), with every
onnxruntime session on one intra-op thread, after a warm-up pass. "plates/s per core"
is 1000 / mean scene latency: scale with worker processes, one per core. The ``_cpu``
rows are the process's CPU time per scene (``time.process_time``): on a machine shared
with other jobs they stay near what an idle machine's wall time would be.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from zhichao.vision.evaluate import percentile
from zhichao.vision.image import ImageBGR, load_image
from zhichao.vision.reader import PPOCR_VIEWS, PlateReader, VisionConfig
from zhichao.vision.vehicle import VehicleFrame, decide_from_reads

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "plates" / "dev"


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "mean_ms": round(statistics.fmean(values_ms), 2),
        "p50_ms": round(percentile(values_ms, 50), 2),
        "p95_ms": round(percentile(values_ms, 95), 2),
        "max_ms": round(max(values_ms), 2),
        "n": len(values_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every", type=int, default=1, help="every N-th dev image only")
    parser.add_argument(
        "--before",
        action="store_true",
        help="the reader before the plate model: PP-OCRv4 and its two further views",
    )
    parser.add_argument("--detector-side-px", type=int, default=None, help="detector input side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with (args.dev / "labels.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:: args.every]
    decode_ms: list[float] = []
    scenes: list[ImageBGR] = []
    crops: list[ImageBGR] = []
    for row in rows:
        start = time.perf_counter()
        image = load_image(args.dev / row["file"])
        decode_ms.append((time.perf_counter() - start) * 1000)
        (scenes if row["kind"] == "scene" else crops).append(image)

    start = time.perf_counter()
    config = VisionConfig(intra_op_threads=args.threads)
    if args.before:
        config = replace(config, views=PPOCR_VIEWS, use_plate_model=False)
    if args.detector_side_px:
        detector = replace(config.detector, max_side_px=args.detector_side_px)
        config = replace(config, detector=detector)
    reader = PlateReader(config)
    reader.warm_up()
    load_ms = (time.perf_counter() - start) * 1000
    for image in scenes[:20]:
        reader.read_image(image)

    scene_ms: list[float] = []
    scene_cpu_ms: list[float] = []
    detect_ms: list[float] = []
    detect_cpu_ms: list[float] = []
    crop_ms: list[float] = []
    for _ in range(args.passes):
        for image in scenes:
            start, cpu = time.perf_counter(), time.process_time()
            decide_from_reads([(VehicleFrame(image, "bench", T0), reader.read_image(image))])
            scene_ms.append((time.perf_counter() - start) * 1000)
            scene_cpu_ms.append((time.process_time() - cpu) * 1000)
            start, cpu = time.perf_counter(), time.process_time()
            reader.detector.detect(image)
            detect_ms.append((time.perf_counter() - start) * 1000)
            detect_cpu_ms.append((time.process_time() - cpu) * 1000)
        for image in crops:
            start = time.perf_counter()
            reader.read_crop(image)
            crop_ms.append((time.perf_counter() - start) * 1000)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads_per_session": args.threads,
        "reader": "before (PP-OCRv4 + 2 views)" if args.before else "PP-OCRv4 + plate model",
        "detector_max_side_px": config.detector.max_side_px,
        "passes": args.passes,
        "model_load_ms": round(load_ms, 1),
        "jpeg_decode": summary(decode_ms),
        "scene": summary(scene_ms),
        "scene_detect_only": summary(detect_ms),
        "scene_cpu": summary(scene_cpu_ms),
        "scene_detect_only_cpu": summary(detect_cpu_ms),
        "crop": summary(crop_ms),
        "plates_per_s_per_core": round(1000 / statistics.fmean(scene_ms), 1),
        "crops_per_s_per_core": round(1000 / statistics.fmean(crop_ms), 1),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(
        f"machine: {result['machine']}; {args.threads} thread(s) per session; "
        f"{args.passes} passes; model load + warm-up {load_ms:.0f} ms"
    )
    print(f"{'stage':<22}{'n':>6}{'mean ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for name in (
        "scene",
        "scene_detect_only",
        "scene_cpu",
        "scene_detect_only_cpu",
        "crop",
        "jpeg_decode",
    ):
        s = result[name]
        assert isinstance(s, dict)
        print(
            f"{name:<22}{s['n']:>6}{s['mean_ms']:>10}{s['p50_ms']:>9}{s['p95_ms']:>9}"
            f"{s['max_ms']:>9}"
        )
    print(
        f"plates/s per core (scenes): {result['plates_per_s_per_core']}; "
        f"crops/s per core: {result['crops_per_s_per_core']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
