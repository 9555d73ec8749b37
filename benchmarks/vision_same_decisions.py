"""Does a faster reader decide the same as the original? Two readers, one set, every difference.

Run from the repository root (needs ../shared beside it):

    python3 benchmarks/vision_same_decisions.py --set train   # the choice (train only)
    python3 benchmarks/vision_same_decisions.py --set dev     # the report (dev and its stress set)

"Before" is the reader with the original PP-OCRv4 file (``RECOGNISER_PPOCRV4``, byte-identical
to the wheel's), "after" the default reader (the fused graph, ``RECOGNISER_PPOCRV4_FUSED``,
and whatever else the default now is). Every image is decided as one frame of one camera by
the default policy. ``train`` is all 727 images of ``shared/data/plates/train`` plus the 384
frames ``benchmarks/vision_detector_choice.py`` builds from its 16 scenes (windows, hazards,
downscales); ``dev`` is the 300 dev images plus the dev stress set (942). For each image the
script compares the decided text, the accept decision, the review codes, every read's text
and both recognisers' per-character probabilities; it prints how many differ and the largest
probability difference.

The rule for adopting the fused recogniser, fixed before any dev figure of it was seen: on
``train`` no decided text, accept decision or review code may differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from zhichao.vision.evaluate import LabelledImage, ReadImage, read_images, read_labels, score
from zhichao.vision.hazards import stress_images
from zhichao.vision.image import load_image
from zhichao.vision.policy import PlatePolicy
from zhichao.vision.reader import PlateReader, VisionConfig
from zhichao.vision.runtime import RECOGNISER_PPOCRV4, resolve_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vision_detector_choice import build_set

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "plates"


def load_folder(folder: Path) -> list[LabelledImage]:
    out: list[LabelledImage] = []
    for row in read_labels(folder):
        kind = row.get("kind", "scene") or "scene"
        image = load_image(folder / row["file"])
        out.append(LabelledImage(row["file"], row["plate"], kind, row["colour"], image))
    return out


def frames_for(name: str, reader: PlateReader) -> list[LabelledImage]:
    if name == "train":
        return load_folder(SHARED / "train") + build_set(reader)
    dev = load_folder(SHARED / "dev")
    scenes = [r for r in read_images(dev, reader) if r.labelled.kind == "scene"]
    return dev + stress_images(scenes)


def _char_diff(a: ReadImage, b: ReadImage) -> float:
    worst = 0.0
    for ra, rb in zip(a.reads, b.reads, strict=False):
        pairs = [(ra.char_confidences, rb.char_confidences)]
        if ra.second is not None and rb.second is not None:
            pairs.append((ra.second.char_confidences, rb.second.char_confidences))
        for ca, cb in pairs:
            if len(ca) == len(cb):
                worst = max([worst, *(abs(x - y) for x, y in zip(ca, cb, strict=True))])
    return worst


def compare(frames: list[LabelledImage], before: PlateReader, after: PlateReader) -> dict[str, Any]:
    reads_before = read_images(frames, before)
    reads_after = read_images(frames, after)
    items_before = score(reads_before, PlatePolicy()).items
    items_after = score(reads_after, PlatePolicy()).items
    decisions = [
        (a.file, (a.read, a.accepted, a.review_codes), (b.read, b.accepted, b.review_codes))
        for a, b in zip(items_before, items_after, strict=True)
        if (a.read, a.accepted, a.review_codes) != (b.read, b.accepted, b.review_codes)
    ]
    texts = sum(
        [r.text for r in a.reads] != [r.text for r in b.reads]
        or [r.second.text if r.second else None for r in a.reads]
        != [r.second.text if r.second else None for r in b.reads]
        for a, b in zip(reads_before, reads_after, strict=True)
    )
    return {
        "images": len(frames),
        "decisions_differ": len(decisions),
        "differences": decisions[:20],
        "images_with_a_read_text_differing": texts,
        "largest_char_probability_difference": max(
            (_char_diff(a, b) for a, b in zip(reads_before, reads_after, strict=True)),
            default=0.0,
        ),
        "accepted_before": sum(i.accepted for i in items_before),
        "accepted_after": sum(i.accepted for i in items_after),
        "wrong_accepted_before": sum(i.accepted and not i.correct for i in items_before),
        "wrong_accepted_after": sum(i.accepted and not i.correct for i in items_after),
        "exact_before": sum(i.correct for i in items_before),
        "exact_after": sum(i.correct for i in items_after),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("train", "dev"), default="train")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    original, digest = resolve_model(RECOGNISER_PPOCRV4)
    # the two graphs' equivalence is a float32 question: both on onnxruntime in float32
    f32 = VisionConfig(inference_backend="onnxruntime", inference_precision="f32")
    before = PlateReader(replace(f32, recogniser_path=str(original), recogniser_sha256=digest))
    after = PlateReader(f32)
    result = {"set": args.set, **compare(frames_for(args.set, before), before, after)}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for key, value in result.items():
        print(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
