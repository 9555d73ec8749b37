"""Real plates from ``shared/data/plates/train`` (sources and licences: its ``SOURCES.md``).

Every file goes to the training part or the held-out part by a fixed rule on its name
(:func:`is_held_out`, about 15 %): the held-out part is never trained on; it is what the
accept policy's thresholds are fitted on (``benchmarks/vision_accept.py --fit``). The dev
set is never read here.

Crops are taken whole (as ``PlateReader.read_crop`` does); scenes go through the
project's detector, and the detection whose read fits the label best is kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhichao.vision.evaluate import is_held_out
from zhichao.vision.image import load_image

TRAIN_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "plates" / "train"


@dataclass
class RealPlate:
    file: str
    text: str
    image: np.ndarray
    corners: tuple[tuple[float, float], ...]
    double_row: bool


def load_real(train_dir: Path = TRAIN_DIR, held_out: bool = False) -> list[RealPlate]:
    """The training (or held-out) part of the real plates, with their corners."""
    from zhichao.vision.reader import PlateReader, VisionConfig

    reader: PlateReader | None = None
    out: list[RealPlate] = []
    with (train_dir / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if is_held_out(row["file"]) != held_out:
            continue
        image = load_image(train_dir / row["file"])
        h, w = image.shape[:2]
        if row["kind"] == "crop":
            corners = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
            out.append(RealPlate(row["file"], row["plate"], image, corners, False))
            continue
        reader = reader or PlateReader(VisionConfig(use_plate_model=False))
        reads = reader.read_image(image, row["file"])
        match = [r for r in reads if r.text == row["plate"]] or reads[:1]
        if not match:
            continue
        det = match[0].detection
        x0, y0, x1, y1 = det.box_px
        pad = 0.6 * (x1 - x0)
        cx0, cy0 = max(0, int(x0 - pad)), max(0, int(y0 - pad))
        cx1, cy1 = min(w, int(x1 + pad)), min(h, int(y1 + pad))
        crop = image[cy0:cy1, cx0:cx1].copy()
        corners = tuple((x - cx0, y - cy0) for x, y in det.corners_px)
        out.append(RealPlate(row["file"], row["plate"], crop, corners, False))
    return out
