"""The accept policy: fit its thresholds on the training set, report it on the dev set.

Run from the repository root (needs ../shared beside it):

    python3 benchmarks/vision_accept.py --fit     # thresholds, from shared/data/plates/train only
    python3 benchmarks/vision_accept.py           # dev figures and the dev stress set
    python3 benchmarks/vision_accept.py --before  # the same with the reader before the plate model
    python3 benchmarks/vision_accept.py --widths  # dev accuracy against plate width
    python3 benchmarks/vision_accept.py --colour  # plate colour on dev under lighting casts
    python3 benchmarks/vision_accept.py --json    # any of them, machine-readable
    python3 benchmarks/vision_accept.py --plate-model CANDIDATE.onnx [--fit]  # a new plate
                                                  # model, before it replaces the shipped one
    python3 benchmarks/vision_accept.py --policy '{"min_char_confidence": 0.9}'  # other values
    python3 benchmarks/vision_accept.py --backend onnxruntime --precision f32  # another runtime

Fitting (``--fit``) never reads the dev set. It reads the held-out part of the training set
(``zhichao.vision.evaluate.is_held_out``: about 15 %, never trained on by the plate model)
and its own stress set (province swapped or blurred on the same images), with the
resolution rule off, and tries every (min_char_confidence, min_province_confidence,
min_province_head_confidence) triple of the grids below. Of the triples that accept no
wrong plate it takes the one that accepts the most, then one grid step stricter on each,
(two steps: ``FIT_MARGIN_STEPS``) as a margin. Then, with those thresholds, it shrinks the
training images to each width of ``FIT_WIDTHS_PX`` and takes as ``min_plate_width_px``
the narrowest width from which on no wider width accepted a wrong plate, plus
``FIT_WIDTH_MARGIN_PX``.

The report decides every dev image as one frame of one camera with the default
:class:`~zhichao.vision.policy.PlatePolicy` (the fitted values) and gives exact, accepted
and wrongly accepted per group, per plate width and per character position, the colour
confusion, the review codes, and the same for the stress set built from the dev scenes
(:mod:`zhichao.vision.hazards`).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from zhichao.vision.evaluate import (
    EvalItem,
    EvalReport,
    LabelledImage,
    ReadImage,
    is_held_out,
    read_images,
    read_labels,
    score,
)
from zhichao.vision.hazards import downscale_to_width, hazard_of, stress_images
from zhichao.vision.image import ImageBGR, load_image
from zhichao.vision.plate_image import classify_colour, warp
from zhichao.vision.policy import PlatePolicy
from zhichao.vision.reader import PPOCR_VIEWS, PlateReader, VisionConfig
from zhichao.vision.runtime import add_inference_arguments

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "plates"
CHAR_GRID = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
PROVINCE_GRID = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
HEAD_GRID = (0.5, 0.8, 0.9, 0.95, 0.99)
FIT_MARGIN_STEPS = 2
"""Grid steps added to the loosest safe thresholds: two, as the held-out part is small
(98 images, blue only). Chosen before any dev figure of the plate model was seen."""
FIT_WIDTH_MARGIN_PX = 10.0
FIT_WIDTHS_PX = (60, 70, 80, 90, 100, 110, 120)
WIDTH_BINS_PX = (0, 80, 100, 120, 140, 160, 200, 10_000)
SCENE_WIDTHS_PX = (60, 80, 100, 120, 140)
CROP_WIDTHS_PX = (60, 80)


BEFORE_POLICY = PlatePolicy(
    min_independent_reads=3,
    require_recogniser_agreement=False,
    min_char_confidence=0.95,
    min_province_confidence=0.995,
    min_plate_width_px=80.0,
)
"""The policy before the plate model (PP-OCRv4 and its two further views), for --before."""


def load_set(
    folder: Path, limit: int | None = None, held_out_only: bool = False
) -> list[LabelledImage]:
    out: list[LabelledImage] = []
    for row in read_labels(folder)[:limit]:
        if held_out_only and not is_held_out(row["file"]):
            continue
        image = load_image(folder / row["file"])
        kind = row.get("kind", "scene") or "scene"
        out.append(LabelledImage(row["file"], row["plate"], kind, row["colour"], image))
    return out


def wrong_accepted(report: EvalReport) -> list[EvalItem]:
    return [i for i in report.items if i.accepted and not i.correct]


def fit_confidences(reads: list[ReadImage]) -> tuple[float, float, float, list[dict[str, Any]]]:
    """(min_char_confidence, min_province_confidence, min_province_head_confidence, grid)."""
    grid: list[dict[str, Any]] = []
    for char in CHAR_GRID:
        for province in PROVINCE_GRID:
            for head in HEAD_GRID:
                policy = PlatePolicy(
                    min_char_confidence=char,
                    min_province_confidence=province,
                    min_province_head_confidence=head,
                    min_plate_width_px=0,
                )
                report = score(reads, policy)
                grid.append(
                    {
                        "char": char,
                        "province": province,
                        "head": head,
                        "accepted": report.group("all").accepted,
                        "wrong": len(wrong_accepted(report)),
                    }
                )
    safe = [g for g in grid if g["wrong"] == 0]
    best = max(safe, key=lambda g: (g["accepted"], -g["char"], -g["province"], -g["head"]))

    def stricter(grid_values: tuple[float, ...], value: float) -> float:
        step = grid_values.index(value) + FIT_MARGIN_STEPS
        return grid_values[min(step, len(grid_values) - 1)]

    return (
        stricter(CHAR_GRID, best["char"]),
        stricter(PROVINCE_GRID, best["province"]),
        stricter(HEAD_GRID, best["head"]),
        grid,
    )


def fit_width(
    reader: PlateReader, reads: list[ReadImage], policy: PlatePolicy
) -> tuple[float, list[dict[str, Any]]]:
    """Narrowest width from which on no shrunk training image had a wrong plate accepted."""
    rows: list[dict[str, Any]] = []
    no_width = replace(policy, min_plate_width_px=0)
    for width_px in FIT_WIDTHS_PX:
        images: list[LabelledImage] = []
        for r in reads:
            base = r.labelled
            if not r.reads or base.image is None:
                continue
            small = downscale_to_width(base.image, _corners(r), width_px)
            if small is not base.image:
                images.append(replace(base, file=f"{base.file}@{width_px}", image=small))
        report = score(read_images(images, reader), no_width)
        rows.append(
            {
                "width_px": width_px,
                "n": len(images),
                "exact": report.group("all").exact,
                "accepted": report.group("all").accepted,
                "wrong": len(wrong_accepted(report)),
            }
        )
    safe_from = float(FIT_WIDTHS_PX[-1])
    for row in reversed(rows):
        if row["n"] == 0:  # no evidence either way at this width
            continue
        if row["wrong"]:
            break
        safe_from = float(row["width_px"])
    return safe_from, rows


def run_fit(reader: PlateReader, limit: int | None) -> dict[str, Any]:
    train = load_set(SHARED / "train", limit, held_out_only=True)
    reads = read_images(train, reader)
    hazards = ("province_swap", "province_blur")
    stressed = read_images(stress_images(reads, hazards), reader)
    char, province, head, grid = fit_confidences(reads + stressed)
    policy = PlatePolicy(
        min_char_confidence=char,
        min_province_confidence=province,
        min_province_head_confidence=head,
    )
    safe_width, widths = fit_width(reader, reads, policy)
    width = safe_width + FIT_WIDTH_MARGIN_PX
    return {
        "held_out_train_images": len(train),
        "train_stress_images": len(stressed),
        "min_char_confidence": char,
        "min_province_confidence": province,
        "min_province_head_confidence": head,
        "safe_from_width_px": safe_width,
        "min_plate_width_px": width,
        "plate_model_alone": second_only(reads),
        "grid": grid,
        "widths": widths,
    }


def _counts(items: list[EvalItem]) -> dict[str, Any]:
    return {
        "n": len(items),
        "exact": sum(i.correct for i in items),
        "accepted": sum(i.accepted for i in items),
        "wrong_accepted": sum(i.accepted and not i.correct for i in items),
        # PP-OCRv4 read nothing valid, the plate model did: its read is filled in (review)
        "plate_model_filled": sum(i.plate_model_only for i in items),
        "plate_model_filled_right": sum(i.plate_model_only and i.correct for i in items),
        # the province chosen with the plate model's head, PP-OCRv4 having read another
        "province_joint": sum(i.province_joint for i in items),
        "province_joint_right": sum(i.province_joint and i.correct for i in items),
    }


def per_position(items: list[EvalItem]) -> dict[str, Any]:
    """Character errors per position, over reads as long as their label."""
    errors: collections.Counter[int] = collections.Counter()
    same_length = [i for i in items if i.read is not None and len(i.read) == len(i.label)]
    for i in same_length:
        for pos, (a, b) in enumerate(zip(i.read or "", i.label, strict=True)):
            errors[pos + 1] += a != b
    return {
        "reads_as_long_as_label": len(same_length),
        "other_length_or_none": len(items) - len(same_length),
        "errors_by_position": {str(p): errors[p] for p in sorted(errors)},
    }


def describe(report: EvalReport) -> dict[str, Any]:
    items = list(report.items)
    widths = {}
    for lo, hi in zip(WIDTH_BINS_PX, WIDTH_BINS_PX[1:], strict=False):
        widths[f"{lo}-{hi}"] = _counts(
            [i for i in items if lo <= i.width_px < hi and i.read_colour]
        )
    colours = collections.Counter(f"{i.colour}->{i.read_colour or 'none'}" for i in items)
    codes = collections.Counter(c for i in items for c in i.review_codes)
    return {
        "groups": {
            g.name: {
                "n": g.count,
                "exact": g.exact,
                "accepted": g.accepted,
                "wrong_accepted": g.wrong_accepted,
                "colour_correct": g.colour_correct,
            }
            for g in report.groups
        },
        "by_width_px": widths,
        "by_position": {
            "scene": per_position([i for i in items if i.kind == "scene"]),
            "crop": per_position([i for i in items if i.kind != "scene"]),
        },
        "colour_confusion": dict(sorted(colours.items())),
        "review_codes": dict(codes.most_common()),
        "wrong_accepted": [(i.file, i.label, i.read) for i in wrong_accepted(report)],
        "plate_model_filled": {k: v for k, v in _counts(items).items()
                               if k.startswith("plate_model_filled")},
        "province_joint": {k: v for k, v in _counts(items).items()
                           if k.startswith("province_joint")},
    }


def second_only(reads: list[ReadImage]) -> dict[str, Any]:
    """The plate model on its own: its read of the best detection, exact per group,
    character errors per position and province confusions (label->read; reads as long
    as the label)."""
    groups: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    errors: collections.Counter[int] = collections.Counter()
    provinces: collections.Counter[str] = collections.Counter()
    for r in reads:
        best = r.reads[0] if r.reads else None
        text = best.second.text if best is not None and best.second is not None else None
        label = r.labelled.label
        for name in ("all", f"{r.labelled.kind}/{r.labelled.colour}"):
            groups[name][0] += 1
            groups[name][1] += text == label
        if text is not None and len(text) == len(label):
            for pos, (a, b) in enumerate(zip(text, label, strict=True)):
                errors[pos + 1] += a != b
            if text[0] != label[0]:
                provinces[f"{label[0]}->{text[0]}"] += 1
    return {
        "exact": {k: f"{v[1]}/{v[0]}" for k, v in sorted(groups.items())},
        "errors_by_position": {str(p): errors[p] for p in sorted(errors)},
        "province_confusion": dict(provinces.most_common()),
    }


def run_report(
    reader: PlateReader, limit: int | None, policy: PlatePolicy | None = None
) -> dict[str, Any]:
    policy = policy or PlatePolicy()
    dev = load_set(SHARED / "dev", limit)
    reads = read_images(dev, reader)
    scenes = [r for r in reads if r.labelled.kind == "scene"]
    stressed = score(read_images(stress_images(scenes), reader), policy)
    by_hazard = collections.defaultdict(list)
    for item in stressed.items:
        by_hazard[hazard_of(item.file)].append(item)
    return {
        "policy": {
            k: getattr(policy, k)
            for k in (
                "min_independent_reads",
                "require_recogniser_agreement",
                "min_char_confidence",
                "min_province_confidence",
                "min_province_head_confidence",
                "min_plate_width_px",
            )
        },
        "dev": describe(score(reads, policy)),
        "plate_model_alone": second_only(reads),
        "stress": {
            "by_hazard": {h: _counts(v) for h, v in sorted(by_hazard.items())},
            "wrong_accepted": [(i.file, i.label, i.read) for i in wrong_accepted(stressed)],
            "second_plate_accepted": [i.file for i in by_hazard["second_plate"] if i.accepted],
        },
    }


def run_widths(reader: PlateReader, limit: int | None, every: int = 1) -> dict[str, Any]:
    """Dev scenes and crops shrunk so the plate is N px wide, decided with and without the
    resolution rule (only images whose plate is wider than N take part at N)."""
    dev = load_set(SHARED / "dev", limit)[::every]
    reads = read_images(dev, reader)
    no_width = PlatePolicy(min_plate_width_px=0)
    rows: list[dict[str, Any]] = []
    for kind, widths in (("scene", SCENE_WIDTHS_PX), ("crop", CROP_WIDTHS_PX)):
        of_kind = [r for r in reads if r.labelled.kind == kind and r.reads]
        for width_px in widths:
            images = [
                replace(r.labelled, file=f"{r.labelled.file}@{width_px}", image=small)
                for r in of_kind
                if r.labelled.image is not None
                and (small := downscale_to_width(r.labelled.image, _corners(r), width_px))
                is not r.labelled.image
            ]
            shrunk = read_images(images, reader)
            bare, policy = score(shrunk, no_width), score(shrunk)
            rows.append(
                {
                    "kind": kind,
                    "width_px": width_px,
                    "n": len(images),
                    "exact": bare.group("all").exact,
                    "accepted_without_width_rule": bare.group("all").accepted,
                    "wrong_accepted_without_width_rule": len(wrong_accepted(bare)),
                    "accepted": policy.group("all").accepted,
                    "wrong_accepted": len(wrong_accepted(policy)),
                }
            )
    return {"min_plate_width_px": PlatePolicy().min_plate_width_px, "widths": rows}


COLOUR_CASTS: dict[str, tuple[tuple[float, float, float], float, float]] = {
    # name: (per-channel gain B, G, R; offset; share of grey mixed in)
    "none": ((1.0, 1.0, 1.0), 0.0, 0.0),
    "dark (x0.35)": ((0.35, 0.35, 0.35), 0.0, 0.0),
    "sodium lamp (B x0.6, R x1.15)": ((0.6, 1.0, 1.15), 0.0, 0.0),
    "half desaturated": ((1.0, 1.0, 1.0), 0.0, 0.5),
    "over-exposed (x1.6 + 40)": ((1.6, 1.6, 1.6), 40.0, 0.0),
}


def _cast(
    image: ImageBGR, gains: tuple[float, float, float], offset: float, grey: float
) -> ImageBGR:
    out = image.astype(np.float32)
    if grey:
        mono = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)[:, :, np.newaxis]
        out = (1 - grey) * out + grey * mono
    out = out * np.array(gains, dtype=np.float32) + offset
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


def run_colour(reader: PlateReader, limit: int | None) -> dict[str, Any]:
    """Plate colour on every dev image (its best detection; a crop whole) under casts."""
    dev = load_set(SHARED / "dev", limit)
    plates: list[tuple[str, ImageBGR]] = []
    for item in dev:
        assert item.image is not None
        if item.kind == "scene":
            found = reader.detector.detect(item.image)
            if not found:
                continue
            corners = found[0].corners_px
        else:
            h, w = item.image.shape[:2]
            corners = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
        plates.append((item.colour, warp(item.image, corners, 96, 32, 0.0, 0.0)))
    whole = ((0.0, 0.0), (96.0, 0.0), (96.0, 32.0), (0.0, 32.0))
    result: dict[str, Any] = {}
    for name, (gains, offset, grey) in COLOUR_CASTS.items():
        confusion = collections.Counter(
            f"{label}->{classify_colour(_cast(plate, gains, offset, grey), whole).value}"
            for label, plate in plates
        )
        result[name] = dict(sorted(confusion.items()))
    return result


def _corners(read: ReadImage) -> tuple[tuple[float, float], ...]:
    if read.labelled.kind == "scene":
        return read.reads[0].detection.corners_px
    assert read.labelled.image is not None
    h, w = read.labelled.image.shape[:2]
    return ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="fit the thresholds on train")
    parser.add_argument("--widths", action="store_true", help="dev accuracy against width")
    parser.add_argument("--colour", action="store_true", help="colour under lighting casts")
    parser.add_argument("--every", type=int, default=1, help="--widths: every N-th image")
    parser.add_argument("--limit", type=int, default=None, help="first N images of the set")
    parser.add_argument("--before", action="store_true", help="the reader before the plate model")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--plate-model", type=Path, default=None, help="this ONNX file instead of the shipped one"
    )
    parser.add_argument(
        "--policy", default="{}", help="PlatePolicy fields to change for the report, as JSON"
    )
    parser.add_argument(
        "--province-from-ctc",
        action="store_true",
        help="the plate model's CTC decoding decides its province (before 2026-12-07)",
    )
    parser.add_argument(
        "--no-fold",
        action="store_true",
        help="PP-OCRv4's I not folded into 1 (before 2026-12-07)",
    )
    parser.add_argument(
        "--no-joint-province",
        action="store_true",
        help="no joint province: the plate filled in is always PP-OCRv4's vote "
        "(before 2026-12-08)",
    )
    add_inference_arguments(parser)
    args = parser.parse_args()
    policy = replace(PlatePolicy(), **json.loads(args.policy))
    config = VisionConfig(
        plate_model_province_from_head=not args.province_from_ctc,
        ppocr_fold_lookalikes=not args.no_fold,
        joint_province=not args.no_joint_province,
        inference_backend=args.backend,
        inference_precision=args.precision,
    )
    if args.plate_model is not None:
        digest = hashlib.sha256(args.plate_model.read_bytes()).hexdigest()
        config = replace(config, plate_model_path=str(args.plate_model), plate_model_sha256=digest)
    if args.before:
        before = VisionConfig(
            views=PPOCR_VIEWS,
            use_plate_model=False,
            ppocr_fold_lookalikes=False,
            inference_backend=args.backend,
            inference_precision=args.precision,
        )
        result = run_report(PlateReader(before), args.limit, BEFORE_POLICY)
    else:
        reader = PlateReader(config)
        if args.fit:
            result = run_fit(reader, args.limit)
        elif args.colour:
            result = run_colour(reader, args.limit)
        elif args.widths:
            result = run_widths(reader, args.limit, args.every)
        else:
            result = run_report(reader, args.limit, policy)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for key, value in result.items():
        if key == "grid":
            value = [g for g in value if g["wrong"] == 0][:12]
        print(f"{key}: {json.dumps(value, ensure_ascii=False, indent=1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
