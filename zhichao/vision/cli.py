"""``zhichao plates``: read plates in images, or score a labelled folder.

    zhichao plates IMAGE... [--json] [--crop]
    zhichao plates eval DIR [--json] [--limit N]

Exit codes: 0 all images read (a read may still need review), 1 an image could not
be used or a model failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zhichao.vision.errors import ImageError, VisionError
from zhichao.vision.evaluate import EvalReport, evaluate_folder
from zhichao.vision.policy import PlatePolicy
from zhichao.vision.reader import PlateRead, PlateReader, VisionConfig
from zhichao.vision.runtime import add_inference_arguments
from zhichao.vision.vehicle import assess_read


def register(subparsers: Any) -> None:
    """Add the ``plates`` subcommand to the top-level ``zhichao`` parser."""
    parser = subparsers.add_parser(
        "plates",
        help="read licence plates in images (or: plates eval DIR)",
        description="Read plates in images. `zhichao plates eval DIR` scores a labelled folder "
        "(labels.csv with file,plate,kind,colour columns).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or: eval DIR")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--crop", action="store_true", help="images are plate crops: no detection")
    parser.add_argument("--limit", type=int, default=None, help="eval: first N labelled images")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per model")
    parser.add_argument("--detector", default=None, help="path of a plate detector .onnx")
    parser.add_argument("--recogniser", default=None, help="path of a recogniser .onnx")
    add_inference_arguments(parser)
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=PlatePolicy().min_confidence,
        help="policy: voted confidence below which a read is low_confidence",
    )
    parser.set_defaults(handler=run)


def _reader(args: argparse.Namespace) -> PlateReader:
    return PlateReader(
        VisionConfig(
            detector_path=args.detector,
            recogniser_path=args.recogniser,
            intra_op_threads=args.threads,
            inference_backend=args.backend,
            inference_precision=args.precision,
        )
    )


def _plate_json(read: PlateRead, policy: PlatePolicy) -> dict[str, Any]:
    reasons = assess_read(read, policy)
    return {
        "text": read.text,
        "colour": read.colour.value,
        "layout": read.layout.value,
        "confidence": round(read.confidence, 4),
        "accepted": not reasons,
        "box": [round(v, 1) for v in read.box_px],
        "kind": read.kind,
        "raw_text": read.raw_text,
        "joint_text": read.joint_text,
        "review": [r.code.value for r in reasons],
        "alternatives": [a.text for a in read.alternatives],
    }


def run(args: argparse.Namespace) -> int:
    policy = PlatePolicy(min_confidence=args.min_confidence)
    images: list[str] = args.images
    if images[0] == "eval" and not Path("eval").exists():
        if len(images) != 2:
            print("usage: zhichao plates eval DIR", file=sys.stderr)
            return 2
        return _run_eval(args, Path(images[1]), policy)
    reader = _reader(args)
    failed = 0
    for image in images:
        try:
            reads = [reader.read_crop_path(image)] if args.crop else reader.read_path(image)
        except ImageError as exc:
            failed += 1
            if args.json:
                print(
                    json.dumps(
                        {"image": image, "plates": [], "error": str(exc)}, ensure_ascii=False
                    )
                )
            print(f"错误 / error: {exc}", file=sys.stderr)
            continue
        except VisionError as exc:
            print(f"错误 / error: {exc}", file=sys.stderr)
            return 1
        if args.json:
            plates = [_plate_json(r, policy) for r in reads]
            print(json.dumps({"image": image, "plates": plates}, ensure_ascii=False))
            continue
        if not reads:
            print(f"{image}\t未检测到号牌 (no plate)")
        for read in reads:
            info = _plate_json(read, policy)
            state = (
                "自动通过 accepted"
                if info["accepted"]
                else "需人工审核 review: " + ",".join(info["review"])
            )
            print(
                f"{image}\t{read.text or '?' + read.raw_text}\t{read.colour.value}\t"
                f"{read.layout.value}\t{read.confidence:.3f}\t{state}"
            )
    return 1 if failed else 0


def _run_eval(args: argparse.Namespace, folder: Path, policy: PlatePolicy) -> int:
    try:
        report = evaluate_folder(folder, _reader(args), policy, args.limit)
    except VisionError as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report_json(report), ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def report_json(report: EvalReport) -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": g.name,
                "count": g.count,
                "exact": g.exact,
                "exact_rate": round(g.exact_rate, 4),
                "char_accuracy": round(g.char_accuracy, 4),
                "accepted": g.accepted,
                "accept_rate": round(g.accept_rate, 4),
                "accept_precision": round(g.accept_precision, 4),
                "colour_correct": g.colour_correct,
            }
            for g in report.groups
        ],
        "latency_ms": {
            "scene_mean": round(report.scene_latency_mean_ms, 2),
            "scene_p95": round(report.scene_latency_p95_ms, 2),
            "crop_mean": round(report.crop_latency_mean_ms, 2),
            "crop_p95": round(report.crop_latency_p95_ms, 2),
        },
        "misses": [
            {
                "file": i.file,
                "label": i.label,
                "read": i.read,
                "raw": i.raw_read,
                "confidence": round(i.confidence, 4),
                "accepted": i.accepted,
            }
            for i in report.misses
        ],
    }


def format_report(report: EvalReport) -> str:
    lines = [
        f"{'group':<18}{'n':>5}{'exact':>9}{'char':>9}{'accepted':>10}{'precision':>11}"
        f"{'colour ok':>11}"
    ]
    for g in report.groups:
        lines.append(
            f"{g.name:<18}{g.count:>5}{g.exact_rate:>9.1%}{g.char_accuracy:>9.1%}"
            f"{g.accept_rate:>10.1%}{g.accept_precision:>11.1%}{g.colour_correct:>11d}"
        )
    lines.append(
        f"latency per scene: mean {report.scene_latency_mean_ms:.1f} ms, "
        f"p95 {report.scene_latency_p95_ms:.1f} ms; per crop: mean "
        f"{report.crop_latency_mean_ms:.1f} ms, p95 {report.crop_latency_p95_ms:.1f} ms"
    )
    lines.append("misses:")
    for i in report.misses:
        state = "ACCEPTED" if i.accepted else "review"
        lines.append(
            f"  {i.file}\tlabel {i.label}\tread {i.read or '-'} (raw {i.raw_read or '-'})\t"
            f"conf {i.confidence:.3f}\t{state}"
        )
    return "\n".join(lines)
