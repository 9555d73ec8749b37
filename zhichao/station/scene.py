"""Synthetic camera frames for the simulated lane: GA 36 plates in vehicle-front and -rear
scenes.

Plates are drawn to GA 36 geometry: single-row 440 × 140 mm (characters 45 × 90 mm; 12 mm
between characters, 34 mm with a dot after the 2nd), blue with white characters for small
vehicles, yellow with black for large ones; a large vehicle's rear plate is the yellow
double-row one (440 × 220 mm, :func:`render_double_plate`); CJK glyphs from the evidence stage's
DroidSansFallback font and Latin glyphs from DejaVu Sans. Each frame varies the plate's
scale, position, perspective and the lighting, and is slightly blurred, so the shipped
detector and recogniser read it as they would read a camera frame (not one fixed picture).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

import zhichao.evidence
from zhichao.station.errors import StationError
from zhichao.vision.plate_image import GA36_DOUBLE_BOXES_MM, GA36_SINGLE_BOXES_MM, BoxMm

ImageBGR = npt.NDArray[np.uint8]
FONT_DIR = Path(zhichao.evidence.__file__).resolve().parent / "fonts"  # shipped with evidence
# provinces and letters used for simulated plates (GA 36 letters exclude I and O)
PROVINCES = "浙苏沪皖鲁豫冀赣闽湘鄂粤京津晋辽吉黑川渝陕"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
BLUE_BGR = (200, 60, 0)
YELLOW_BGR = (0, 190, 230)
WHITE_BGR = (255, 255, 255)
BLACK_BGR = (0, 0, 0)


def _font_path(cjk: bool) -> Path:
    patterns = ("DroidSansFallback*.ttf", "NotoSansCJK*.otf") if cjk else ("DejaVuSans*.ttf",)
    for pattern in patterns:
        found = sorted(FONT_DIR.glob(pattern))
        if found:
            return found[0]
    raise StationError(f"{FONT_DIR}: no {'CJK' if cjk else 'Latin'} font to draw plates with")


def plate_colour_for(is_truck: bool) -> str:
    """GA 36: large goods vehicles carry yellow plates, small vehicles blue ones."""
    return "yellow" if is_truck else "blue"


def random_plate(rng: np.random.Generator) -> str:
    """An ordinary GA 36 plate: province, issuing-office letter, five letters/digits with
    at least three digits (so it parses unambiguously)."""
    tail = [str(rng.choice(list(DIGITS))) for _ in range(5)]
    for i in rng.choice(5, size=int(rng.integers(0, 3)), replace=False):
        tail[int(i)] = str(rng.choice(list(LETTERS)))
    return str(rng.choice(list(PROVINCES))) + str(rng.choice(list(LETTERS))) + "".join(tail)


@lru_cache(maxsize=1024)
def _glyph(ch: str, fg: tuple[int, int, int], bg: tuple[int, int, int],
           size_mm: tuple[int, int] = (45, 90)) -> ImageBGR:
    """``ch`` drawn to fill a box of ``size_mm`` (width, height) at 1 px per mm."""
    font = ImageFont.truetype(str(_font_path(ord(ch) > 127)), 200)
    im = Image.new("RGB", (260, 260), bg)
    ImageDraw.Draw(im).text((130, 130), ch, font=font, fill=fg, anchor="mm")
    a = np.array(im)
    mask = np.abs(a.astype(np.int32) - np.array(bg)).sum(axis=2) > 60
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise StationError(f"the font has no glyph for {ch!r}")
    a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return np.ascontiguousarray(cv2.resize(a, size_mm, interpolation=cv2.INTER_AREA))


@lru_cache(maxsize=256)
def render_plate(text: str, colour: str) -> ImageBGR:
    """The single-row plate at 1 px per mm (440 × 140), BGR."""
    im, (bg, fg) = _blank_plate(text, colour, 140, "single-row"), _plate_colours(colour)
    _draw_characters(im, text, GA36_SINGLE_BOXES_MM, fg, bg)
    cv2.circle(im, (int(15.5 + 2 * 45 + 12 + 11), 70), 5, fg, -1)
    return im


@lru_cache(maxsize=256)
def render_double_plate(text: str, colour: str) -> ImageBGR:
    """The double-row plate at 1 px per mm (440 × 220), BGR (large vehicles' rear plate)."""
    im, (bg, fg) = _blank_plate(text, colour, 220, "double-row"), _plate_colours(colour)
    _draw_characters(im, text, GA36_DOUBLE_BOXES_MM, fg, bg)
    return im


def _draw_characters(
    im: ImageBGR,
    text: str,
    boxes: tuple[BoxMm, ...],
    fg: tuple[int, int, int],
    bg: tuple[int, int, int],
) -> None:
    """Each character of ``text`` into its GA 36 box (1 px per mm, corner rounded down)."""
    for ch, (x, y, w, h) in zip(text, boxes, strict=True):
        im[int(y):int(y) + int(h), int(x):int(x) + int(w)] = _glyph(ch, fg, bg, (int(w), int(h)))


def _blank_plate(text: str, colour: str, height_mm: int, layout: str) -> ImageBGR:
    """A 440 mm wide plate of ``colour`` with its rim, no characters yet (1 px per mm)."""
    if len(text) != 7:
        raise StationError(f"plate {text!r}: only 7-character {layout} plates are drawn")
    bg, fg = _plate_colours(colour)
    im = np.empty((height_mm, 440, 3), np.uint8)
    im[:] = bg
    cv2.rectangle(im, (4, 4), (435, height_mm - 5), fg, 3)
    return im


def _plate_colours(colour: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(background, characters) of a ``blue`` or ``yellow`` plate."""
    return (BLUE_BGR, WHITE_BGR) if colour == "blue" else (YELLOW_BGR, BLACK_BGR)


@lru_cache(maxsize=4)
def _noise_texture(w: int, h: int) -> npt.NDArray[np.uint8]:
    """Road/background noise (mean 90, sd 12), twice the frame size; frames crop it."""
    rng = np.random.default_rng(12345)
    return np.clip(rng.normal(90, 12, (2 * h, 2 * w)), 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, w: int, h: int) -> ImageBGR:
    noise = _noise_texture(w, h)
    ox, oy = int(rng.integers(0, w)), int(rng.integers(0, h))
    base = int(rng.uniform(70, 120))
    grey = cv2.add(noise[oy:oy + h, ox:ox + w], base - 90)
    return np.ascontiguousarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), dtype=np.uint8)


def _paste_plate(scene: ImageBGR, plate: ImageBGR, px: int, py: int, pw: int,
                 rng: np.random.Generator) -> None:
    """Paste ``plate`` with its top-left corner near (px, py), ``pw`` pixels wide; the
    corners move a little (perspective: the camera is above and to the side of the lane)."""
    h, w = scene.shape[:2]
    plate_h_mm, plate_w_mm = plate.shape[:2]
    ph = int(pw * plate_h_mm / plate_w_mm)
    src = np.array([[0, 0], [plate_w_mm, 0], [plate_w_mm, plate_h_mm], [0, plate_h_mm]],
                   dtype=np.float32)
    jitter = rng.uniform(-0.04, 0.04, (4, 2)) * np.array([pw, ph])
    dst = np.array([[px, py], [px + pw, py], [px + pw, py + ph], [px, py + ph]],
                   dtype=np.float32) + jitter
    x0, y0 = int(np.floor(dst[:, 0].min())), int(np.floor(dst[:, 1].min()))
    x1, y1 = int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    local = (dst - np.array([x0, y0], dtype=np.float32)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, local)
    size_roi = (x1 - x0, y1 - y0)
    warped = cv2.warpPerspective(plate, m, size_roi, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((plate_h_mm, plate_w_mm), 255, np.uint8), m,
                               size_roi) > 128
    roi = scene[y0:y1, x0:x1]
    roi[mask] = warped[mask]


def _light(scene: ImageBGR, rng: np.random.Generator) -> ImageBGR:
    """Exposure, brightness and a slight blur drawn from ``rng``."""
    lit = cv2.convertScaleAbs(scene, alpha=float(rng.uniform(0.75, 1.2)),
                              beta=float(rng.uniform(-15, 15)))
    blurred = cv2.GaussianBlur(lit, (3, 3), float(rng.uniform(0.5, 0.9)))
    return np.ascontiguousarray(blurred, dtype=np.uint8)


def front_scene(text: str, colour: str, rng: np.random.Generator, *, is_truck: bool,
                size: tuple[int, int] = (960, 540)) -> ImageBGR:
    """A vehicle-front frame with the plate pasted in with perspective, scale, position
    and lighting drawn from ``rng``. The plate's centre lies at x = w/2 ± (0.15 w + 40 px)
    and y = 0.68 … 0.8 h plus half the plate's height (27 … 38 px)."""
    w, h = size
    scene = _background(rng, w, h)
    cx = int(w / 2 + rng.uniform(-0.15, 0.15) * w)
    body = (55, 60, 70) if is_truck else tuple(int(c) for c in rng.integers(40, 200, 3))
    bw = int(w * (0.55 if is_truck else 0.45))
    top = int(h * (0.08 if is_truck else 0.3))
    cv2.rectangle(scene, (cx - bw // 2, top), (cx + bw // 2, h - 10), body, -1)
    cv2.rectangle(scene, (cx - bw // 2 + 30, top + 30), (cx + bw // 2 - 30, top + int(h * 0.3)),
                  (150, 170, 180), -1)
    plate = render_plate(text, colour)
    pw = int(rng.uniform(170, 240))
    ph = int(pw * 140 / 440)
    px = int(np.clip(cx - pw / 2 + rng.uniform(-40, 40), 10, w - pw - 10))
    py = int(np.clip(h * rng.uniform(0.68, 0.8), 10, h - ph - 10))
    _paste_plate(scene, plate, px, py, pw, rng)
    return _light(scene, rng)


def side_scene(axle_offsets_m: list[float], rng: np.random.Generator,
               size: tuple[int, int] = (640, 360)) -> ImageBGR:
    """A side view: the vehicle's body and one wheel per axle (axles are countable)."""
    w, h = size
    scene = np.full((h, w, 3), int(rng.uniform(90, 130)), np.uint8)
    length = max(axle_offsets_m[-1] + 3.0, 5.0)
    scale = (w - 40) / length
    x0 = 20 + 1.4 * scale
    cv2.rectangle(scene, (20, int(h * 0.25)), (int(20 + length * scale), int(h * 0.75)),
                  (60, 70, 80), -1)
    for off in axle_offsets_m:
        cv2.circle(scene, (int(x0 + off * scale), int(h * 0.78)), int(0.5 * scale),
                   (20, 20, 20), -1)
    return scene


def rear_scene(text: str, colour: str, rng: np.random.Generator, *, is_truck: bool,
               size: tuple[int, int] = (960, 540)) -> ImageBGR:
    """A vehicle-rear frame: a truck carries the GA 36 double-row plate (440 × 220 mm), a
    car its single-row plate, 180 … 240 px wide (in a 640 × 360 frame the shipped detector
    places a double-row plate's corners worse: 48 of 60 seeded trucks read exactly, against
    54 in 960 × 540), with perspective and lighting drawn from
    ``rng`` as in :func:`front_scene`. The plate's centre lies at x = w/2 ± (0.1 w + 30 px)
    and y = 0.62 … 0.74 h."""
    w, h = size
    scene = _background(rng, w, h)
    cx = int(w / 2 + rng.uniform(-0.1, 0.1) * w)
    body = (70, 60, 60) if is_truck else tuple(int(c) for c in rng.integers(40, 200, 3))
    bw = int(w * (0.6 if is_truck else 0.45))
    top = int(h * (0.05 if is_truck else 0.3))
    cv2.rectangle(scene, (cx - bw // 2, top), (cx + bw // 2, h - 10), body, -1)
    plate = render_double_plate(text, colour) if is_truck else render_plate(text, colour)
    pw = int(rng.uniform(180, 240))
    ph = int(pw * plate.shape[0] / plate.shape[1])
    px = int(cx - pw / 2 + rng.uniform(-30, 30))
    py = int(h * rng.uniform(0.62, 0.74) - ph / 2)
    _paste_plate(scene, plate, px, py, pw, rng)
    return _light(scene, rng)
