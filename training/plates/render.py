"""Synthetic Chinese plates after GA 36-2018, degraded like road camera images.

Geometry (mm; 1 px per mm at full size):

- single-row 440 × 140: 7 characters 45 × 90, top at 25; x = 15.5, 72.5, then a dot and
  151.5, 208.5, 265.5, 322.5, 379.5 (12 mm gaps, 34 mm around the dot);
- NEV 480 × 140: 8 characters 43 × 90; x = 15.5, 67.5, then 164.5 + 52·i (i = 0…5);
- double-row 440 × 220: top row 2 characters 80 × 60 at x = 110 and 250, y = 15; bottom
  row 5 characters 65 × 110 at x = 27.5 + 80·i, y = 90.

Colours: blue (white characters), yellow (black), white (black, police 警 red), black
(white), green NEV (white→green gradient, black), yellow-green large NEV (yellow left,
green right, black). Letters and digits come from DejaVu / Liberation; province and
special characters (挂, 学, 警, 港, 澳, 领, 使) from one CJK font drawn per plate out of
:data:`CJK_FONTS` (heavy 黑体-like faces first, as GA 36's engineering font is), with its
own stroke weight and a horizontal squeeze, all condensed into the GA 36 boxes. Only the
shipped DroidSansFallback is required; the others are used where the system has them
(Debian: ``fonts-noto-cjk fonts-noto-cjk-extra fonts-wqy-zenhei fonts-wqy-microhei
fonts-arphic-uming fonts-arphic-ukai``).

A sample is a plate placed in a random surrounding, warped in perspective to 60–260 px
wide, degraded (motion blur, noise, JPEG, night infrared / low contrast, dirt, rust,
bolts, frames, small occlusions), then cut out with jittered corners (a detector is not
exact) by the runtime's own :func:`zhichao.vision.plate_lines.plate_line`.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zhichao.vision.grammar import ALPHABET, LETTERS, PROVINCES, SERIAL, plate_kind
from zhichao.vision.plate_image import GA36_DOUBLE_BOXES_MM, GA36_SINGLE_BOXES_MM, BoxMm
from zhichao.vision.plate_lines import plate_line

ROOT = Path(__file__).resolve().parents[2]
CJK_FONT = ROOT / "zhichao" / "evidence" / "fonts" / "DroidSansFallback-GB2312.ttf"
LATIN_FONTS = [
    ROOT / "zhichao" / "evidence" / "fonts" / "DejaVuSans-Latin.ttf",
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
]
"""The first is shipped with the project; the others are used when the system has them."""


@dataclass(frozen=True, slots=True)
class CjkFont:
    """A CJK face: file, face index in a ``.ttc``, draw weight, PIL stroke widths at 160 px."""

    path: Path
    index: int
    weight: float
    strokes: tuple[int, ...]


_NOTO = Path("/usr/share/fonts/opentype/noto")
_WQY = Path("/usr/share/fonts/truetype/wqy")
_ARPHIC = Path("/usr/share/fonts/truetype/arphic")
CJK_FONTS: tuple[CjkFont, ...] = (
    CjkFont(CJK_FONT, 0, 1.0, (0, 2, 4)),
    # face 2 of Noto Sans CJK is the Simplified Chinese one (SC)
    CjkFont(_NOTO / "NotoSansCJK-Black.ttc", 2, 3.0, (0, 0, 2)),
    CjkFont(_NOTO / "NotoSansCJK-Bold.ttc", 2, 2.0, (0, 2, 4)),
    CjkFont(_NOTO / "NotoSansCJK-Medium.ttc", 2, 1.0, (2, 4, 6)),
    CjkFont(_NOTO / "NotoSansCJK-Regular.ttc", 2, 0.5, (4, 6)),
    CjkFont(_WQY / "wqy-zenhei.ttc", 0, 2.0, (0, 2, 4)),
    CjkFont(_WQY / "wqy-microhei.ttc", 0, 1.0, (2, 4, 6)),
    CjkFont(_ARPHIC / "uming.ttc", 0, 0.5, (4, 6, 8)),
    CjkFont(_ARPHIC / "ukai.ttc", 0, 0.5, (4, 6, 8)),
)
"""Province and special glyphs: heavy sans (黑体-like) faces weigh most; Ming and Kai add
other stroke shapes, drawn thicker. The first is shipped; a missing file is skipped, as is
a face lacking any character the plates need (checked once per process)."""

DIGITS = "0123456789"
SERIAL_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

# BGR
BLUE_BG = (150, 60, 10)
YELLOW_BG = (20, 190, 235)
WHITE_BG = (235, 235, 235)
BLACK_BG = (25, 25, 25)
GREEN_BG = (80, 200, 60)
INK_DARK = (20, 20, 20)
INK_LIGHT = (245, 245, 245)
RED = (30, 30, 200)


@dataclass(frozen=True, slots=True)
class PlateSpec:
    text: str
    style: str  # blue, yellow, yellow_double, green, yellow_green, white, black
    double_row: bool


SERIAL_Q_SHARE = 0.0
"""Seventh run (``shards.py --serial-q-share P``): a serial letter is Q with probability P
(else uniform over the serial letters, Q among them); 0 draws as every earlier run did."""


def _serial(rng: random.Random, n: int) -> str:
    out = []
    letters = rng.random() < 0.5
    for _ in range(n):
        if letters and rng.random() < 0.3:
            if SERIAL_Q_SHARE and rng.random() < SERIAL_Q_SHARE:
                out.append("Q")
                continue
            out.append(rng.choice(SERIAL_LETTERS))
        else:
            out.append(rng.choice(DIGITS))
    return "".join(out)


YUE_WEIGHT = 0.35
"""粤 is drawn less as a plain province because 粤Z…港/澳 plates (2.1 % of renders) add to
it: with 0.35 against 1 for the others, each of the 31 provinces is ≈ 3.2 % of renders."""


def _province(rng: random.Random) -> str:
    weights = [YUE_WEIGHT if p == "粤" else 1.0 for p in PROVINCES]
    return rng.choices(PROVINCES, weights)[0]


def random_spec(rng: random.Random) -> PlateSpec:
    """A random plate; provinces balanced (31 classes), styles as a weigh station sees them."""
    r = rng.random()
    p, letter = _province(rng), rng.choice(LETTERS)
    if r < 0.30:
        return PlateSpec(p + letter + _serial(rng, 5), "blue", False)
    if r < 0.48:
        return PlateSpec(p + letter + _serial(rng, 5), "yellow", False)
    if r < 0.70:
        tail = rng.random()
        if tail < 0.5:
            text = p + letter + _serial(rng, 5)
        elif tail < 0.85:
            text = p + letter + _serial(rng, 4) + "挂"
        else:
            text = p + letter + _serial(rng, 4) + "学"
        return PlateSpec(text, "yellow_double", True)
    if r < 0.80:
        mark = rng.choice("DF")
        text = (
            p + letter + mark + rng.choice(SERIAL) + "".join(rng.choice(DIGITS) for _ in range(4))
        )
        return PlateSpec(text, "green", False)
    if r < 0.86:
        text = p + letter + "".join(rng.choice(DIGITS) for _ in range(5)) + rng.choice("DF")
        return PlateSpec(text, "yellow_green", False)
    if r < 0.93:
        return PlateSpec(p + letter + _serial(rng, 4) + "警", "white", False)
    kind = rng.random()
    if kind < 0.3:
        text = "粤Z" + _serial(rng, 4) + rng.choice("港澳")
    elif kind < 0.55:
        text = p + letter + _serial(rng, 4) + "领"
    elif kind < 0.75:
        text = "使" + "".join(rng.choice(DIGITS) for _ in range(6))
    else:
        text = p + letter + _serial(rng, 5)
    return PlateSpec(text, "black", False)


@functools.lru_cache(maxsize=32)
def _font(path: str, index: int = 0) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, 160, index=index)


def _ink(ch: str, font: ImageFont.FreeTypeFont, stroke: int = 0) -> np.ndarray:
    canvas = Image.new("L", (260, 260), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((30, 10), ch, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return np.array(canvas)


@functools.lru_cache(maxsize=1)
def available_cjk_fonts() -> tuple[CjkFont, ...]:
    """The :data:`CJK_FONTS` present here that draw every CJK character of the alphabet.

    A character a face lacks comes out as its missing-glyph box, the same ink as a
    private-use code point's; such a face is left out.
    """
    needed = [ch for ch in ALPHABET if ord(ch) > 127]
    out = []
    for face in CJK_FONTS:
        if not face.path.exists():
            continue
        font = _font(str(face.path), face.index)
        missing = _ink("\ue000", font)
        if all(
            (ink := _ink(ch, font)).max() > 0 and not np.array_equal(ink, missing) for ch in needed
        ):
            out.append(face)
    return tuple(out)


GA36_Q = False
"""Seventh run (``shards.py --ga36-q``): draw Q as GA 36's plate font does, the ring of O
with a short tail at its lower right inside the character box (:func:`_ga36_q`), instead
of the fonts' Q, whose long tail below the baseline, squeezed into the box, looks like no
real plate's Q (the plate model read real Q as 0)."""


def _ga36_q(font_index: int, box_w: int, box_h: int) -> np.ndarray:
    """Q as on a plate: the font's O condensed into the box, with a short diagonal tail
    from inside the ring's lower right out to its edge.

    The tail's width is twice the largest distance from the O's ink to its background,
    measured inside the box; where the condensed ring touches the box's edges the whole
    stroke counts, so the tail comes out about 1.3–2 × as wide as the ring's sides, and
    its round start cap reaches into the ring's hole. The seventh run was trained on
    exactly this (``docs/vision.md``, *Seventh run*), so it stays as it is."""
    ring = _glyph("O", font_index, box_w, box_h).copy()
    inked = (ring > 127).astype(np.uint8)
    stroke = max(2, int(round(2 * cv2.distanceTransform(inked, cv2.DIST_L2, 3).max())))
    start = (int(round(0.55 * box_w)), int(round(0.72 * box_h)))
    end = (box_w - 1 - stroke // 3, box_h - 1 - stroke // 3)
    cv2.line(ring, start, end, 255, stroke, lineType=cv2.LINE_AA)
    return ring


@functools.lru_cache(maxsize=16384)
def _glyph(
    ch: str, font_index: int, box_w: int, box_h: int, stroke: int = 0, ga36_q: bool = False
) -> np.ndarray:
    """A glyph's ink (0-255 mask) condensed into a box_w × box_h box.

    ``font_index`` indexes the available Latin fonts for ASCII characters and
    :func:`available_cjk_fonts` for the others; ``stroke`` thickens the outline (px at
    160 px, before condensing). With ``ga36_q`` (the renderer passes :data:`GA36_Q`, so
    the cache keys on it), Q is :func:`_ga36_q`.
    """
    if ch == "Q" and ga36_q:
        return _ga36_q(font_index, box_w, box_h)
    cjk = ord(ch) > 127
    if cjk:
        face = available_cjk_fonts()[font_index]
        font = _font(str(face.path), face.index)
    else:
        font = _font(str([f for f in LATIN_FONTS if f.exists()][font_index]))
    mask = _ink(ch, font, stroke)
    ys, xs = np.nonzero(mask > 40)
    ink = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = ink.shape
    out = np.zeros((box_h, box_w), np.uint8)
    aspect = w / h
    if not cjk and aspect * box_h < 0.55 * box_w:  # narrow glyphs (1, I, J): keep their width
        new_w = max(4, int(round(aspect * box_h * 1.15)))
        x0 = (box_w - new_w) // 2
        out[:, x0 : x0 + new_w] = cv2.resize(ink, (new_w, box_h), interpolation=cv2.INTER_AREA)
    else:
        out[:, :] = cv2.resize(ink, (box_w, box_h), interpolation=cv2.INTER_AREA)
    return out


GLYPH_JITTER = False
"""Second run (``shards.py --glyph-jitter``): vary each glyph's stroke width, width and
position in its box, and warp it slightly, so the model leans less on one font's shapes."""


def _jitter_glyph(mask: np.ndarray, rng: random.Random) -> np.ndarray:
    h, w = mask.shape
    k = rng.choice([0, 0, 3, 5])
    if k and rng.random() < 0.5:
        mask = cv2.dilate(mask, np.ones((k, k), np.uint8))
    elif k:
        mask = cv2.erode(mask, np.ones((k - 2, k - 2), np.uint8))
    sx, sy = rng.uniform(0.8, 1.05), rng.uniform(0.9, 1.02)
    src = np.float32([[0, 0], [w, 0], [0, h]])
    dx, dy = (1 - sx) * w / 2 + rng.uniform(-2, 2), (1 - sy) * h / 2 + rng.uniform(-2, 2)
    shear = rng.uniform(-0.06, 0.06) * w
    dst = np.float32([[dx + shear, dy], [dx + sx * w + shear, dy], [dx, dy + sy * h]])
    return cv2.warpAffine(mask, cv2.getAffineTransform(src, dst), (w, h))


def _cjk_glyph(
    ch: str, font_index: int, stroke: int, box_w: int, box_h: int, rng: random.Random
) -> np.ndarray:
    """A province or special glyph (0-1) in its box: squeezed to 78-100 % of the box
    width (plate characters are tall and narrow), centred, sometimes a little thinner or
    thicker again after condensing."""
    mask = _glyph(ch, font_index, box_w, box_h, stroke).astype(np.float32) / 255.0
    squeeze = rng.uniform(0.78, 1.0)
    if squeeze < 0.98:
        new_w = max(4, int(round(box_w * squeeze)))
        x0 = (box_w - new_w) // 2
        out = np.zeros_like(mask)
        out[:, x0 : x0 + new_w] = cv2.resize(mask, (new_w, box_h), interpolation=cv2.INTER_AREA)
        mask = out
    weight = rng.random()
    if weight < 0.15:
        mask = cv2.erode(mask, np.ones((2, 2), np.uint8))
    elif weight < 0.3:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    return mask


def _layout(spec: PlateSpec) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """(width, height, character boxes x, y, w, h) in mm = px."""
    n = len(spec.text)
    if spec.double_row:
        return 440, 220, [_px(box) for box in GA36_DOUBLE_BOXES_MM]
    if n == 8:
        boxes = [(15, 25, 43, 90), (67, 25, 43, 90)]
        boxes += [(164 + 52 * i, 25, 43, 90) for i in range(6)]
        return 480, 140, boxes
    return 440, 140, [_px(box) for box in GA36_SINGLE_BOXES_MM]


def _px(box: BoxMm) -> tuple[int, int, int, int]:
    """A GA 36 box in whole pixels at 1 px per mm (the corner rounded down)."""
    x, y, w, h = box
    return int(x), int(y), int(w), int(h)


def _background(spec: PlateSpec, w: int, h: int, rng: random.Random) -> np.ndarray:
    style = spec.style
    img = np.zeros((h, w, 3), np.float32)
    if style == "blue":
        img[:] = BLUE_BG
    elif style in ("yellow", "yellow_double"):
        img[:] = YELLOW_BG
    elif style == "white":
        img[:] = WHITE_BG
    elif style == "black":
        img[:] = BLACK_BG
    elif style == "green":
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img[:] = (1 - t) * np.array((230, 245, 230), np.float32) + t * np.array(
            GREEN_BG, np.float32
        )
    else:  # yellow_green: yellow left, green right
        img[:] = YELLOW_BG
        img[:, int(w * 0.27) :] = GREEN_BG
    jitter = np.array([rng.uniform(-25, 25) for _ in range(3)], np.float32)
    return np.clip(img + jitter, 0, 255)


def render_plate(spec: PlateSpec, rng: random.Random) -> np.ndarray:
    """The clean plate at 1 px per mm (BGR), with rim, dot and bolts."""
    w, h, boxes = _layout(spec)
    img = _background(spec, w, h, rng)
    dark_ink = spec.style not in ("blue", "black")
    ink = np.array(INK_DARK if dark_ink else INK_LIGHT, np.float32)
    n_fonts = len([f for f in LATIN_FONTS if f.exists()])
    font_index = rng.randrange(n_fonts)
    cjk_fonts = available_cjk_fonts()
    cjk_index = rng.choices(range(len(cjk_fonts)), [f.weight for f in cjk_fonts])[0]
    cjk_stroke = rng.choice(cjk_fonts[cjk_index].strokes)
    bold = rng.random() < 0.5
    for i, (ch, (x, y, bw, bh)) in enumerate(zip(spec.text, boxes, strict=True)):
        if ord(ch) > 127:
            mask = _cjk_glyph(ch, cjk_index, cjk_stroke, bw, bh, rng)
        else:
            mask = _glyph(ch, font_index, bw, bh, ga36_q=GA36_Q).astype(np.float32) / 255.0
            if bold:
                mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        if GLYPH_JITTER:
            mask = _jitter_glyph(mask, rng)
        colour = ink
        if ch == "警" or (spec.style == "white" and i == 0 and rng.random() < 0.1):
            colour = np.array(RED, np.float32)
        region = img[y : y + bh, x : x + bw]
        region[:] = region * (1 - mask[:, :, None]) + colour * mask[:, :, None]
    rim = tuple(int(v) for v in ink)
    cv2.rectangle(img, (3, 3), (w - 4, h - 4), rim, 2)
    if not spec.double_row and len(spec.text) == 7:
        cv2.circle(img, (136, 70), 5, rim, -1)
    elif spec.double_row:
        cv2.circle(img, (220, 45), 5, rim, -1)
    if rng.random() < 0.6:  # bolts
        by = 12 if not spec.double_row else 10
        for bx in (int(w * 0.25), int(w * 0.75)):
            shade = rng.uniform(120, 220)
            cv2.circle(img, (bx, by), 6, (shade, shade, shade), -1)
    return img.astype(np.uint8)


def _dirt(img: np.ndarray, rng: random.Random) -> None:
    h, w = img.shape[:2]
    for _ in range(rng.randint(1, 6)):
        cx, cy = rng.randrange(w), rng.randrange(h)
        r = rng.randint(w // 40 + 1, w // 10 + 2)
        colour = (rng.uniform(30, 90), rng.uniform(50, 110), rng.uniform(70, 130))
        overlay = img.copy()
        cv2.circle(overlay, (cx, cy), r, colour, -1)
        alpha = rng.uniform(0.15, 0.5)
        img[:] = cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0)


def _rust(img: np.ndarray, rng: random.Random) -> None:
    h, w = img.shape[:2]
    noise = np.random.default_rng(rng.randrange(1 << 30)).random((h // 8 + 1, w // 8 + 1))
    noise = cv2.resize(noise.astype(np.float32), (w, h))
    edge = np.ones((h, w), np.float32)
    edge[h // 6 : h - h // 6, w // 12 : w - w // 12] = 0.3
    mask = np.clip((noise - 0.6) * 3, 0, 1) * edge * rng.uniform(0.3, 0.8)
    rust = np.array((30, 60, 120), np.float32)
    img[:] = (img * (1 - mask[:, :, None]) + rust * mask[:, :, None]).astype(np.uint8)


def _surround(plate: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Put the plate (with a frame, sometimes) on a random surrounding; return image, corners."""
    h, w = plate.shape[:2]
    pad = int(w * 0.35)
    base = np.array([rng.uniform(0, 255) for _ in range(3)], np.float32)
    small = np.random.default_rng(rng.randrange(1 << 30)).normal(
        0, rng.uniform(2, 25), ((h + 2 * pad) // 6 + 1, (w + 2 * pad) // 6 + 1, 3)
    )
    canvas = cv2.resize(
        np.clip(small + base, 0, 255).astype(np.uint8),
        (w + 2 * pad, h + 2 * pad),
        interpolation=cv2.INTER_NEAREST,
    )
    if rng.random() < 0.3:  # a grille or bumper edge
        for _ in range(rng.randint(1, 4)):
            y = rng.randrange(canvas.shape[0])
            shade = rng.uniform(0, 255)
            cv2.line(
                canvas, (0, y), (canvas.shape[1], y), (shade, shade, shade), rng.randint(2, 12)
            )
    if rng.random() < 0.5:  # plate frame
        t = rng.randint(4, 14)
        shade = rng.choice([rng.uniform(0, 60), rng.uniform(150, 230)])
        cv2.rectangle(
            canvas, (pad - t, pad - t), (pad + w + t, pad + h + t), (shade, shade, shade), -1
        )
    canvas[pad : pad + h, pad : pad + w] = plate
    corners = np.array([[pad, pad], [pad + w, pad], [pad + w, pad + h], [pad, pad + h]], np.float32)
    return canvas, corners


def _degrade(img: np.ndarray, rng: random.Random) -> np.ndarray:
    out = img.astype(np.float32)
    if rng.random() < 0.4:  # motion blur
        k = rng.randint(2, 6)
        kernel = np.zeros((k, k), np.float32)
        if rng.random() < 0.7:
            kernel[k // 2, :] = 1
        else:
            np.fill_diagonal(kernel, 1)
        out = cv2.filter2D(out, -1, kernel / kernel.sum())
    elif rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.3))
    mode = rng.random()
    if mode < 0.15:  # night infrared: grey, strong light, low contrast, noise
        grey = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(
            np.float32
        )
        if rng.random() < 0.5:
            grey = 255 - grey
        grey = grey * rng.uniform(0.3, 0.8) + rng.uniform(20, 120)
        out = np.repeat(grey[:, :, None], 3, axis=2)
    elif mode < 0.4:  # low contrast / haze / dark
        out = out * rng.uniform(0.3, 0.8) + rng.uniform(0, 90)
    else:
        out = out * rng.uniform(0.8, 1.25) + rng.uniform(-30, 30)
    gamma = rng.uniform(0.6, 1.6)
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    out += np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(0, 10), out.shape)
    out8 = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.8:
        ok, buf = cv2.imencode(".jpg", out8, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(15, 90)])
        if ok:
            out8 = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out8


def render_sample(rng: random.Random) -> tuple[np.ndarray, str, bool]:
    """One training line (grey 32 × 160), its label and whether it is double-row."""
    spec = random_spec(rng)
    plate = render_plate(spec, rng)
    if rng.random() < 0.3:
        _dirt(plate, rng)
    if rng.random() < 0.15:
        _rust(plate, rng)
    canvas, corners = _surround(plate, rng)
    pw = plate.shape[1]
    target_w = rng.choice([rng.uniform(60, 110), rng.uniform(80, 260)])
    scale = target_w / pw
    # perspective: jitter each corner, rotate a little
    angle = np.radians(rng.uniform(-10, 10))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    centre = corners.mean(axis=0)
    dst = (corners - centre) @ rot.T * scale
    dst += np.array(
        [
            [rng.uniform(-0.07, 0.07) * target_w, rng.uniform(-0.07, 0.07) * target_w]
            for _ in range(4)
        ],
        np.float32,
    )
    if rng.random() < 0.3:  # horizontal squeeze (seen from the side)
        dst[:, 0] *= rng.uniform(0.7, 1.0)
    ch, cw = canvas.shape[:2]
    src_full = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    matrix0 = cv2.getPerspectiveTransform(corners, dst.astype(np.float32))
    full_dst = cv2.perspectiveTransform(src_full[None], matrix0)[0]
    offset = -full_dst.min(axis=0)
    matrix = cv2.getPerspectiveTransform(corners, (dst + offset).astype(np.float32))
    size = np.ceil(full_dst.max(axis=0) + offset).astype(int) + 1
    scene = cv2.warpPerspective(
        canvas,
        matrix,
        (int(size[0]), int(size[1])),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    plate_corners = dst + offset
    scene = _degrade(scene, rng)
    if rng.random() < 0.15:  # small occlusion at an edge (tow bar, hook, shadow)
        x0, y0 = plate_corners.min(axis=0)
        x1, y1 = plate_corners.max(axis=0)
        pw_s, ph_s = x1 - x0, y1 - y0
        shade = rng.uniform(0, 255)
        if rng.random() < 0.5:
            yy = int(y0 + rng.uniform(0.75, 0.95) * ph_s)
            cv2.rectangle(
                scene,
                (int(x0 + rng.uniform(0, 0.6) * pw_s), yy),
                (int(x0 + rng.uniform(0.3, 1) * pw_s), int(y1 + 5)),
                (shade, shade, shade),
                -1,
            )
        else:
            xx = int(x0 + rng.uniform(-0.02, 0.03) * pw_s)
            cv2.rectangle(scene, (0, 0), (max(0, xx), scene.shape[0]), (shade, shade, shade), -1)
    # detector error: corners off by a few % of the plate size
    size_w = float(np.linalg.norm(plate_corners[1] - plate_corners[0]))
    size_h = float(np.linalg.norm(plate_corners[3] - plate_corners[0]))
    noisy = plate_corners + np.array(
        [[rng.gauss(0, 0.02) * size_w, rng.gauss(0, 0.04) * size_h] for _ in range(4)], np.float32
    )
    corners_t = tuple((float(x), float(y)) for x, y in noisy)
    line = plate_line(scene, corners_t, spec.double_row)
    assert plate_kind(spec.text) is not None, spec.text
    return line, spec.text, spec.double_row


if __name__ == "__main__":
    import sys

    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    out_dir = Path(sys.argv[2])  # python3 training/plates/render.py SEED OUT_DIR: a 40-line grid
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [render_sample(rng)[0] for _ in range(40)]
    cv2.imwrite(
        str(out_dir / "grid.png"),
        np.concatenate([np.concatenate(rows[i : i + 4], axis=1) for i in range(0, 40, 4)], axis=0),
    )
