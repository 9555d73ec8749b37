"""Choosing the detector's input size and resize method on the training set (issue #20, latency).

Run from the repository root (needs ../shared beside it):

    python3 benchmarks/vision_detector_choice.py          # train: every variant, the choice
    python3 benchmarks/vision_detector_choice.py --json
    python3 benchmarks/vision_detector_choice.py --backend onnxruntime --precision f32  # as in docs

The figures in ``docs/vision.md`` (*Latency*, run 2) were measured with onnxruntime in
float32, the default then; the models now run on OpenVINO in bfloat16 by default.

The detector's cost grows with its input's pixel count (≈ 14 ms at 457 × 512 on one thread,
≈ 9.4 ms at 372 × 416), and ``cv2.INTER_AREA`` downscaling costs ≈ 3.5 ms a frame against
≈ 0.5 ms for ``INTER_LINEAR``. Both change what the detector sees, so what is read and
accepted may change: the choice is made here, on frames built from the **training set
only** (``shared/data/plates/train``; its 16 CCPD scenes, 720 × 1160), never on dev:

- the 16 scenes as they are;
- each cut to a 650 × 580 window around its plate (the size of most dev toll-station
  frames, which the 512 px input barely shrinks);
- the stress set of :mod:`zhichao.vision.hazards` on them (a second plate pasted beside,
  province swapped, province blurred, shrunk so the plate is 60–140 px wide), for both;
- each shrunk so the plate is 60, 70, …, 120 px wide, as ``vision_accept.py --fit`` does.

The plates' corners come from the shipped reader's reads of the clean images, so every
variant reads the same frames. Each frame is decided as one frame of one camera by the
default :class:`~zhichao.vision.policy.PlatePolicy`.

The rule (fixed before any dev figure of a variant was seen): a variant qualifies if, on
this set, it accepts **no wrong plate**, reads **at least as many** plates exactly and
accepts **at least as many** as the shipped setting (512 px, ``area``). Of the qualifying
variants the one with the smallest (first-stage) input is chosen (``linear`` before ``area``
at the same size, as it is cheaper). The three two-stage variants were added after the
one-stage ones had been run (none qualified); the rule is the same for them. Dev figures
of a chosen variant would then come from ``benchmarks/vision_accept.py`` and
``benchmarks/vision_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from zhichao.vision.evaluate import LabelledImage, ReadImage, read_images, score
from zhichao.vision.hazards import downscale_to_width, stress_images
from zhichao.vision.image import load_image
from zhichao.vision.policy import PlatePolicy
from zhichao.vision.reader import PlateReader, VisionConfig
from zhichao.vision.runtime import add_inference_arguments

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "plates"
SHIPPED = (512, "area", 0)
VARIANTS: tuple[tuple[int, str, int], ...] = (
    (512, "area", 0),
    (512, "linear", 0),
    (448, "area", 0),
    (448, "linear", 0),
    (416, "area", 0),
    (416, "linear", 0),
    (384, "area", 0),
    (384, "linear", 0),
    (512, "area", 320),
    (512, "linear", 320),
    (512, "linear", 384),
)
"""(max_side_px, resize_interpolation, coarse_side_px): the last three are two-stage (a
first pass at coarse_side_px, each plate detected again on a crop where it is 120 px wide)."""
WINDOW_W_PX, WINDOW_H_PX = 650, 580
"""Most dev toll-station frames are 650 × 580 px."""
WIDTHS_PX = (60, 70, 80, 90, 100, 110, 120)


def train_scenes() -> list[LabelledImage]:
    from zhichao.vision.evaluate import read_labels

    folder = SHARED / "train"
    out: list[LabelledImage] = []
    for row in read_labels(folder):
        if (row.get("kind") or "scene") != "scene":
            continue
        image = load_image(folder / row["file"])
        out.append(LabelledImage(row["file"], row["plate"], "scene", row["colour"], image))
    return out


def _corners(read: ReadImage) -> tuple[tuple[float, float], ...] | None:
    valid = [r for r in read.reads if r.text is not None]
    return valid[0].detection.corners_px if valid else None


def window(base: LabelledImage, corners: tuple[tuple[float, float], ...]) -> LabelledImage:
    """A 650 × 580 window of the scene with the plate centred across, 70 % down."""
    assert base.image is not None
    height, width = base.image.shape[:2]
    xs = [x for x, _ in corners]
    ys = [y for _, y in corners]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    w, h = min(WINDOW_W_PX, width), min(WINDOW_H_PX, height)
    left = int(np.clip(round(cx - w / 2), 0, width - w))
    top = int(np.clip(round(cy - 0.7 * h), 0, height - h))
    image = np.ascontiguousarray(base.image[top : top + h, left : left + w])
    return replace(base, file=f"{base.file}@window", image=image)


def build_set(reader: PlateReader) -> list[LabelledImage]:
    """The training-derived frames (see the module docstring), read once by ``reader``."""
    scenes = train_scenes()
    reads = read_images(scenes, reader)
    windows = [window(r.labelled, c) for r in reads if (c := _corners(r)) is not None]
    window_reads = read_images(windows, reader)
    frames = scenes + windows
    frames += stress_images(reads) + stress_images(window_reads)
    for r in reads + window_reads:
        corners = _corners(r)
        if corners is None or r.labelled.image is None:
            continue
        for width_px in WIDTHS_PX:
            small = downscale_to_width(r.labelled.image, corners, width_px)
            if small is not r.labelled.image:
                name = f"{r.labelled.file}@{width_px}"
                frames.append(replace(r.labelled, file=name, image=small))
    return frames


def run_variant(
    frames: list[LabelledImage],
    side_px: int,
    interpolation: str,
    coarse_px: int,
    config: VisionConfig,
) -> tuple[dict[str, Any], dict[str, tuple[str | None, bool]]]:
    detector = replace(
        config.detector,
        max_side_px=side_px,
        resize_interpolation=interpolation,
        coarse_side_px=coarse_px,
    )
    reader = PlateReader(replace(config, detector=detector))
    reader.warm_up()
    start = time.process_time()
    reads = read_images(frames, reader)
    cpu_s = time.process_time() - start
    report = score(reads, PlatePolicy())
    decisions = {i.file: (i.read, i.accepted) for i in report.items}
    group = report.group("all")
    return (
        {
            "max_side_px": side_px,
            "resize": interpolation,
            "two_stage_coarse_px": coarse_px,
            "n": group.count,
            "exact": group.exact,
            "accepted": group.accepted,
            "wrong_accepted": group.wrong_accepted,
            "nothing_read": sum(1 for i in report.items if i.read is None),
            "wrong_accepted_files": [i.file for i in report.items if i.accepted and not i.correct],
            "cpu_ms_per_frame": round(cpu_s * 1000 / max(1, len(frames)), 1),
        },
        decisions,
    )


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    shipped = next(
        r for r in rows if (r["max_side_px"], r["resize"], r["two_stage_coarse_px"]) == SHIPPED
    )
    qualifying = [
        r
        for r in rows
        if r["wrong_accepted"] == 0
        and r["exact"] >= shipped["exact"]
        and r["accepted"] >= shipped["accepted"]
    ]
    if not qualifying:
        return None
    return min(
        qualifying,
        key=lambda r: (r["two_stage_coarse_px"] or r["max_side_px"], r["resize"] != "linear"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    add_inference_arguments(parser)
    args = parser.parse_args()
    runtime = VisionConfig(inference_backend=args.backend, inference_precision=args.precision)
    frames = build_set(PlateReader(runtime))
    rows: list[dict[str, Any]] = []
    all_decisions: list[dict[str, tuple[str | None, bool]]] = []
    for side_px, interpolation, coarse_px in VARIANTS:
        row, decisions = run_variant(frames, side_px, interpolation, coarse_px, runtime)
        rows.append(row)
        all_decisions.append(decisions)
    shipped = all_decisions[VARIANTS.index(SHIPPED)]
    for row, decisions in zip(rows, all_decisions, strict=True):
        row["decisions_changed"] = sum(decisions[f] != shipped[f] for f in shipped)
    chosen = choose(rows)
    result = {"frames": len(frames), "variants": rows, "chosen": chosen}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"training-derived frames: {len(frames)} (from {SHARED / 'train'})")
    header = ("max_side_px", "resize", "two_stage_coarse_px", "n", "exact", "accepted")
    header = (*header, "wrong_accepted")
    columns = (*header, "nothing_read", "decisions_changed", "cpu_ms_per_frame")
    print("".join(f"{h:>18}" for h in columns))
    for row in rows:
        print("".join(f"{row[h]!s:>18}" for h in columns))
    print(f"chosen: {json.dumps(chosen, ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
