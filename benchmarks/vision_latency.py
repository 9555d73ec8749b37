"""Plate-reading latency on one thread: per scene, per crop, per stage; plates/s per core.

Run from the repository root (needs ../shared beside it, or --dev DIR):

    python3 benchmarks/vision_latency.py            # 3 passes over the 300 dev images
    python3 benchmarks/vision_latency.py --json     # machine-readable
    mkdir /tmp/before && git archive REV | tar -x -C /tmp/before   # another version, then:
    python3 benchmarks/vision_latency.py --compare /tmp/before --rounds 4 --every 3

Latency is measured per image from a decoded frame to the accept decision: detection,
every decoding the accept policy needs (PP-OCRv4's read and the plate model's; with
``--before``, PP-OCRv4's read and its two further views, the reader before the plate model)
and the policy itself (JPEG decoding is excluded and reported separately), with every
model on one inference thread, after a warm-up pass. "plates/s per core"
is 1000 / mean scene latency: scale with worker processes, one per core. The ``_cpu``
rows are the process's CPU time per scene (``time.process_time``): on a machine shared
with other jobs they stay near what an idle machine's wall time would be.

The models run on OpenVINO in bfloat16 by default (``--backend``, ``--precision``; the
runtime used is printed).

``--compare DIR`` measures two versions of the code on a shared machine: it runs this
benchmark (one pass each) alternately from ``DIR`` (another checkout, "before": its own
``benchmarks/vision_latency.py`` with ``PYTHONPATH=DIR``) and from this checkout ("after"),
``--rounds`` times, each in a fresh process, so that load from other jobs falls on both
alike. It prints each round and the mean of the rounds, with the load average. With
``--compare . --before-args '--backend onnxruntime --precision f32'`` it compares two
runtimes of this checkout.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from zhichao.vision.evaluate import percentile
from zhichao.vision.image import ImageBGR, load_image
from zhichao.vision.reader import PPOCR_VIEWS, PlateReader, VisionConfig
from zhichao.vision.runtime import add_inference_arguments
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
    parser.add_argument(
        "--compare", type=Path, default=None, help="another checkout to alternate with"
    )
    parser.add_argument("--rounds", type=int, default=4, help="--compare: rounds of each")
    parser.add_argument(
        "--before-args",
        default="",
        help="--compare: more arguments for the before side (e.g. with --compare . : "
        "'--backend onnxruntime --precision f32')",
    )
    add_inference_arguments(parser)
    parser.add_argument(
        "--stages", action="store_true", help="also time each step inside a scene (wall ms)"
    )
    args = parser.parse_args()
    if args.compare is not None:
        return compare(args)

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
    config = VisionConfig(
        intra_op_threads=args.threads,
        inference_backend=args.backend,
        inference_precision=args.precision,
    )
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
        "runtime": reader.model_ids()["runtime"],
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
    if args.stages:
        # a separate pass over the scenes, after the measured ones: the wrappers cost a little
        stage_s: collections.Counter[str] = collections.Counter()
        time_stages(reader, stage_s)
        for image in scenes:
            reader.read_image(image)
        result["stages_ms_per_scene"] = {
            k: round(v * 1000 / len(scenes), 2) for k, v in stage_s.most_common()
        }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(
        f"machine: {result['machine']}; {result['runtime']}, {args.threads} thread(s) per session; "
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
    for name, value in dict(result.get("stages_ms_per_scene", {})).items():  # type: ignore[call-overload]
        print(f"  step {name:<34}{value:>8} ms per scene")
    print(
        f"plates/s per core (scenes): {result['plates_per_s_per_core']}; "
        f"crops/s per core: {result['crops_per_s_per_core']}"
    )
    return 0


def time_stages(reader: PlateReader, totals: collections.Counter[str]) -> None:
    """Wrap the steps of a scene read so each adds its wall time to ``totals``."""
    import zhichao.vision.reader as reader_module
    from zhichao.vision import ctc, detect

    def timed(owner: object, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(reader.detector_model, "run", "detector: inference")
    timed(detect.cv2, "resize", "detector: resize (cv2)")
    timed(detect, "input_tensor", "detector: input tensor")
    timed(reader.recogniser_model, "run", "PP-OCRv4: inference")
    timed(reader.plate_model, "run", "plate model: inference")
    timed(ctc, "decode", "CTC decoding (both)")
    timed(reader_module, "classify_colour", "colour")
    timed(reader_module, "single_row_line", "PP-OCRv4 line warp")
    timed(reader, "read_image", "read_image (all of the above and more)")


STAGES = ("scene", "scene_detect_only", "scene_cpu", "scene_detect_only_cpu", "crop")


def compare(args: argparse.Namespace) -> int:
    """Alternate one pass of ``args.compare``'s code ("before") and this checkout's ("after")."""
    here = Path(__file__).resolve().parents[1]
    sides = {"before": args.compare.resolve(), "after": here}
    common = ["--json", "--passes", "1", "--every", str(args.every), "--dev", str(args.dev)]
    common += ["--threads", str(args.threads)]
    extra = {
        "before": shlex.split(args.before_args),
        "after": ["--backend", args.backend, "--precision", args.precision],
    }
    runs: dict[str, list[dict[str, object]]] = {"before": [], "after": []}
    for round_no in range(args.rounds):
        for side, root in sides.items():
            env = dict(os.environ, PYTHONPATH=str(root))
            script = root / "benchmarks" / "vision_latency.py"
            done = subprocess.run(
                [sys.executable, str(script), *common, *extra[side]],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["load_average_1min"] = round(os.getloadavg()[0], 2)
            runs[side].append(result)
            if not args.json:
                scene = result["scene"]
                assert isinstance(scene, dict)
                print(
                    f"round {round_no + 1} {side:<7} scene wall mean {scene['mean_ms']:>6} ms, "
                    f"p95 {scene['p95_ms']:>6} ms; load average {result['load_average_1min']}"
                )
    means = {
        side: {
            stage: round(statistics.fmean(float(r[stage]["mean_ms"]) for r in results), 2)  # type: ignore[index]
            for stage in STAGES
        }
        for side, results in runs.items()
    }
    if args.json:
        print(json.dumps({"rounds": runs, "mean_of_rounds": means}, ensure_ascii=False))
        return 0
    print(f"{'mean of rounds, ms':<24}{'before':>10}{'after':>10}")
    for stage in STAGES:
        print(f"{stage:<24}{means['before'][stage]:>10}{means['after'][stage]:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
