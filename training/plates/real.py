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
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from zhichao.vision.evaluate import is_held_out
from zhichao.vision.hazards import swap_province
from zhichao.vision.image import load_image
from zhichao.vision.plate_image import GA36_DOUBLE_BOXES_MM, GA36_SINGLE_BOXES_MM
from zhichao.vision.plate_lines import plate_line

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
        # the corners the shipped plate model was trained on: onnxruntime in float32
        reader = reader or PlateReader(VisionConfig(
            use_plate_model=False, inference_backend="onnxruntime", inference_precision="f32"))
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


def real_line(plate: RealPlate, rng: random.Random, image: np.ndarray | None = None) -> np.ndarray:
    """A real plate's line, with corner jitter and a little photometric change.

    ``image`` replaces the plate's own image (a transplant of it, same corners).
    """
    c = np.array(plate.corners, np.float32)
    w = float(np.linalg.norm(c[1] - c[0]))
    h = float(np.linalg.norm(c[3] - c[0]))
    noisy = c + np.array(
        [[rng.gauss(0, 0.02) * w, rng.gauss(0, 0.04) * h] for _ in range(4)], np.float32
    )
    source = plate.image if image is None else image
    line = plate_line(source, tuple((float(x), float(y)) for x, y in noisy), plate.double_row)
    out = line.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-40, 40)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.2:
        small_w = rng.randint(50, 100)
        out = cv2.resize(cv2.resize(out, (small_w, 12)), (line.shape[1], line.shape[0]))
    return np.clip(out, 0, 255).astype(np.uint8)


def province_weights(real: list[RealPlate], exponent: float) -> list[float]:
    """Draw weights of the real plates: 1 / (plates of its province) ** ``exponent``.

    The real plates are almost all 皖 (699 of 727); 0 draws them uniformly (all 皖), 0.5
    draws 皖 about two thirds of the time, so the model does not learn that a real-looking
    plate is a 皖 plate.
    """
    counts = Counter(p.text[0] for p in real)
    return [1.0 / counts[p.text[0]] ** exponent for p in real]


@dataclass(frozen=True)
class RealMix:
    """How the real lines of a batch are varied (all off: as the first three runs)."""

    weights: list[float] | None = None
    """Draw weights of the real plates (:func:`province_weights`), or uniform."""
    transplant: float = 0.0
    """Share of real lines whose province character is another real plate's (another
    province, drawn with weight √(its plates), so a one-plate province such as 湘 is not
    drawn as often as 苏 with 9): real glyphs of the rarer provinces on many real plates,
    the label changed with it (:func:`transplant_line`)."""
    invert: float = 0.0
    """Share of real lines inverted: the real blue plates' light-on-dark characters as
    dark-on-light, the polarity of yellow, white and green plates, with real blur,
    noise and compression."""
    double_row: float = 0.0
    """Share of real lines re-laid as yellow double-row plates (:func:`double_row_line`;
    these are always inverted and never inverted again)."""


def _transplanted(
    plate: RealPlate, real: list[RealPlate], rng: random.Random
) -> tuple[np.ndarray, str] | None:
    """``plate``'s image with a real province character of another province, and its
    label; None when no other province is present."""
    counts = Counter(p.text[0] for p in real if p.text[0] != plate.text[0] and not p.double_row)
    if not counts or plate.double_row:
        return None
    provinces = sorted(counts)
    province = rng.choices(provinces, [counts[p] ** 0.5 for p in provinces])[0]
    donor = rng.choice([p for p in real if p.text[0] == province and not p.double_row])
    image = swap_province(plate.image, plate.corners, donor.image, donor.corners)
    return image, province + plate.text[1:]


def transplant_line(
    plate: RealPlate, real: list[RealPlate], rng: random.Random
) -> tuple[np.ndarray, str]:
    """``plate``'s line with the province character of a real plate of another province."""
    moved = _transplanted(plate, real, rng)
    if moved is None:
        return real_line(plate, rng), plate.text
    return real_line(plate, rng, moved[0]), moved[1]


_CELL_MARGIN_MM = 5.0
"""Taken around each single-row character (and scaled with it), so strokes are not cut."""


def relay_double_row(
    image: np.ndarray,
    corners: tuple[tuple[float, float], ...],
    rng: random.Random,
    jitter_mm: float = 3.0,
) -> np.ndarray:
    """A real single-row plate's characters re-laid as a 440 × 220 double-row plate.

    Each character of the single-row plate (its GA 36 box plus a margin) is scaled into
    its double-row box (plus the margin scaled alike; up to ``jitter_mm`` of shift) on
    the plate's own background, pasted with feathered edges, with a rim in the
    characters' brightness: real glyph pixels, blur and noise in the layout of a large
    vehicle's rear plate.
    """
    src = np.array(corners, np.float32)
    dst = np.array([[0, 0], [440, 0], [440, 140], [0, 140]], np.float32)
    flat = cv2.warpPerspective(
        image, cv2.getPerspectiveTransform(src, dst), (440, 140), borderMode=cv2.BORDER_REPLICATE
    ).astype(np.float32)
    grey = cv2.cvtColor(flat, cv2.COLOR_BGR2GRAY)
    background = np.median(flat.reshape(-1, 3), axis=0)
    ink = flat.reshape(-1, 3)[grey.reshape(-1) >= np.percentile(grey, 92)].mean(axis=0)
    canvas = np.empty((220, 440, 3), np.float32)
    canvas[:] = background
    cv2.rectangle(canvas, (4, 4), (435, 215), ink.tolist(), 3)
    m = _CELL_MARGIN_MM
    for (sx, sy, sw, sh), (x, y, w, h) in zip(
        GA36_SINGLE_BOXES_MM, GA36_DOUBLE_BOXES_MM, strict=True
    ):
        cell = flat[int(sy - m) : int(sy + sh + m), int(sx - m) : int(sx + sw + m)]
        mx, my = m * w / sw, m * h / sh
        dx, dy = rng.uniform(-jitter_mm, jitter_mm), rng.uniform(-jitter_mm, jitter_mm)
        x0 = int(round(min(max(x - mx + dx, 7.0), 433.0 - w - 2 * mx)))
        y0 = int(round(min(max(y - my + dy, 7.0), 213.0 - h - 2 * my)))
        tw, th = int(round(w + 2 * mx)), int(round(h + 2 * my))
        scaled = cv2.resize(cell, (tw, th))
        alpha = np.zeros((th, tw), np.float32)
        inset_x, inset_y = max(1, int(mx / 2)), max(1, int(my / 2))
        alpha[inset_y:-inset_y, inset_x:-inset_x] = 1.0
        alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, min(mx, my) / 3))[:, :, None]
        region = canvas[y0 : y0 + th, x0 : x0 + tw]
        canvas[y0 : y0 + th, x0 : x0 + tw] = alpha * scaled + (1 - alpha) * region
    return np.clip(canvas, 0, 255).astype(np.uint8)


def double_row_line(
    plate: RealPlate, real: list[RealPlate], rng: random.Random, transplant: float
) -> tuple[np.ndarray, str]:
    """A real plate re-laid as a double-row plate (province transplanted with probability
    ``transplant``), cut as the runtime cuts a double-row plate, in the dark-on-light
    polarity of the yellow double-row plates."""
    image, text = plate.image, plate.text
    if transplant and rng.random() < transplant:
        moved = _transplanted(plate, real, rng)
        if moved is not None:
            image, text = moved
    relaid = relay_double_row(image, plate.corners, rng)
    corners = ((0.0, 0.0), (440.0, 0.0), (440.0, 220.0), (0.0, 220.0))
    as_double = RealPlate(plate.file, text, relaid, corners, True)
    return 255 - real_line(as_double, rng), text
