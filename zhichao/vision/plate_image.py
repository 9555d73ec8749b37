"""From a detection to recogniser-ready lines: rectification, layout and plate colour.

Physical plate sizes (GA 36-2018): single-row 440 × 140 mm (height/width ≈ 0.32),
double-row 440 × 220 mm (≈ 0.50). The layout is classified from the 4 detected
corners' geometry; a double-row plate is split into its top row (province +
issuing letter, middle 70 % of the width) and bottom row at the ink-free gap between
them (:func:`double_row_split`; ≈ 0–40 % and 33–100 % of the height where no gap is
seen), each read on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.vision.image import ImageBGR
from zhichao.vision.recognise import INPUT_HEIGHT_PX

BoxMm = tuple[float, float, float, float]
"""A character box on a plate: x, y, width, height in mm (1 px per mm at full size)."""
GA36_SINGLE_BOXES_MM: tuple[BoxMm, ...] = tuple(
    (x, 25.0, 45.0, 90.0) for x in (15.5, 72.5, 151.5, 208.5, 265.5, 322.5, 379.5)
)
"""GA 36-2018 single-row plate, 440 × 140 mm: seven characters 45 × 90 mm, 25 mm from the
top, from 15.5 mm, 12 mm apart and 34 mm after the second (the dot). The one table of this
layout (the simulated lane's plates, the training renders and re-lays use it)."""
GA36_DOUBLE_BOXES_MM: tuple[BoxMm, ...] = (
    (110.0, 15.0, 80.0, 60.0),
    (250.0, 15.0, 80.0, 60.0),
) + tuple((27.5 + 80.0 * i, 90.0, 65.0, 110.0) for i in range(5))
"""GA 36-2018 double-row plate, 440 × 220 mm: the province and the letter 80 × 60 mm,
60 mm apart, centred, 15 mm from the top; the five serial characters 65 × 110 mm, 15 mm
apart, centred, 90 mm from the top."""


class Layout(StrEnum):
    SINGLE = "single"
    DOUBLE = "double"


class PlateColour(StrEnum):
    BLUE = "blue"
    YELLOW = "yellow"
    GREEN = "green"
    YELLOW_GREEN = "yellow_green"
    WHITE = "white"
    BLACK = "black"
    UNKNOWN = "unknown"


PLATE_COLOURS_ZH: dict[str, str] = {
    PlateColour.BLUE.value: "蓝", PlateColour.YELLOW.value: "黄", PlateColour.GREEN.value: "绿",
    PlateColour.YELLOW_GREEN.value: "黄绿", PlateColour.WHITE.value: "白",
    PlateColour.BLACK.value: "黑",
}
"""A plate colour as officers and owners name it (the one table; ``unknown`` has none)."""


@dataclass(frozen=True, slots=True)
class RectifySettings:
    single_width_px: int = 200
    """Width of the single-row line at 48 px high (≈ 1.3× stretched: more CTC steps)."""
    double_row_min_ratio: float = 0.42
    """Height/width ratio above which a plate is taken as double-row."""
    margin_x: float = 0.04
    margin_y: float = 0.06
    """Context kept around the corners, as fractions of the plate's width and height."""


def _edge_lengths(corners: npt.NDArray[np.float64]) -> tuple[float, float]:
    tl, tr, br, bl = corners
    width = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    return float(width), float(height)


def classify_layout(
    corners_px: tuple[tuple[float, float], ...], settings: RectifySettings
) -> tuple[Layout, float]:
    """Layout and the plate's height/width ratio, from the corner geometry."""
    width, height = _edge_lengths(np.array(corners_px, dtype=np.float64))
    ratio = height / max(width, 1e-6)
    layout = Layout.DOUBLE if ratio > settings.double_row_min_ratio else Layout.SINGLE
    return layout, ratio


def warp(
    image: ImageBGR,
    corners_px: tuple[tuple[float, float], ...],
    width_px: int,
    height_px: int,
    margin_x: float,
    margin_y: float,
) -> ImageBGR:
    """Warp the quadrilateral to a width_px × height_px image, keeping a margin around it."""
    src = np.array(corners_px, dtype=np.float32)
    mx, my = margin_x * width_px, margin_y * height_px
    dst = np.array(
        [[mx, my], [width_px - mx, my], [width_px - mx, height_px - my], [mx, height_px - my]],
        dtype=np.float32,
    )
    matrix = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(
        image,
        matrix,
        (width_px, height_px),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.ascontiguousarray(out, dtype=np.uint8)


def single_row_line(
    image: ImageBGR, corners_px: tuple[tuple[float, float], ...], settings: RectifySettings
) -> ImageBGR:
    return warp(
        image,
        corners_px,
        settings.single_width_px,
        INPUT_HEIGHT_PX,
        settings.margin_x,
        settings.margin_y,
    )


def equalised(line: ImageBGR) -> ImageBGR:
    """Grey, contrast-equalised copy of a line (CLAHE, 4 x 4 tiles): another view of it."""
    grey = cv2.cvtColor(line, cv2.COLOR_BGR2GRAY)
    grey = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(grey)
    return np.ascontiguousarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), dtype=np.uint8)


DOUBLE_PLATE_PX = (440, 220)
"""A double-row plate is warped to this size (width, height: 1 px per mm of GA 36) to split."""
DOUBLE_TOP_FIXED_ROWS = (0, 88)
"""The top row (province + letter) where no gap between the rows is seen: 0-40 % of the height."""
DOUBLE_BOTTOM_FIXED_ROWS = (73, 220)
"""The bottom row where no gap is seen: 33-100 % of the height (overlapping the top's rows, as
the corners may be off)."""
DOUBLE_TOP_COLUMNS = (66, 374)
"""The top row's two characters: the middle 70 % of the width."""
DOUBLE_GAP_SEARCH = (0.2, 0.6)
"""Where the gap between the rows is looked for, as fractions of the warped height (GA 36:
the top row ends at 34 %, the bottom row starts at 41 %)."""
DOUBLE_GAP_MAX_INK = 0.02
"""A row of the gap has at most this share of character pixels (a tolerance for noise, not
fitted)."""


def double_row_split(plate: ImageBGR) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top rows, bottom rows) of a warped double-row plate (:data:`DOUBLE_PLATE_PX`).

    The detector's corners of a double-row plate can cut its top or bottom, which moves
    the rows in the warped plate: a fixed split then cuts a character of the top row or
    takes the tops of the bottom row's characters into it. So the split is the middle of
    the widest run of ink-free rows (characters split from the background by Otsu, the
    minority class, in the middle 70 % of the width) within :data:`DOUBLE_GAP_SEARCH` that
    has ink above and below it (a gap between two rows, not the margin beyond the plate);
    where there is none (a single-row plate, heavy dirt), the fixed GA 36 proportions
    (:data:`DOUBLE_TOP_FIXED_ROWS`, :data:`DOUBLE_BOTTOM_FIXED_ROWS`).

    Raises
    ------
    ValueError
        ``plate`` is not :data:`DOUBLE_PLATE_PX`.
    """
    if tuple(plate.shape[1::-1]) != DOUBLE_PLATE_PX:
        raise ValueError(f"a warped double-row plate is {DOUBLE_PLATE_PX} px (width, height), "
                         f"not {tuple(plate.shape[1::-1])}")
    fixed = (DOUBLE_TOP_FIXED_ROWS, DOUBLE_BOTTOM_FIXED_ROWS)
    height = plate.shape[0]
    grey = cv2.cvtColor(plate, cv2.COLOR_BGR2GRAY) if plate.ndim == 3 else plate
    band = np.ascontiguousarray(grey[:, DOUBLE_TOP_COLUMNS[0]:DOUBLE_TOP_COLUMNS[1]])
    if band.size == 0 or int(band.max()) == int(band.min()):
        return fixed
    _, mask = cv2.threshold(band, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = mask > 0
    if ink.mean() > 0.5:  # the characters are the minority
        ink = ~ink
    profile = ink.mean(axis=1)
    lo, hi = (round(f * height) for f in DOUBLE_GAP_SEARCH)
    inked = profile > DOUBLE_GAP_MAX_INK
    best_start, best_len, start = 0, 0, None
    for i in range(lo, hi + 1):
        if i < hi and not inked[i]:
            start = i if start is None else start
            continue
        # a gap lies between two rows of characters: ink above it and below it (the
        # margin above the top row, where the corners reach beyond the plate, is none)
        if start is not None and inked[:start].any() and inked[i:].any() \
                and i - start > best_len:
            best_start, best_len = start, i - start
        start = None
    if best_len == 0:
        return fixed
    split = best_start + best_len // 2
    return (0, split), (split, height)


def double_row_lines(
    image: ImageBGR, corners_px: tuple[tuple[float, float], ...], settings: RectifySettings
) -> tuple[ImageBGR, ImageBGR]:
    """(top row, bottom row) lines of a double-row plate, each 48 px high
    (:func:`double_row_split`)."""
    plate = warp(image, corners_px, *DOUBLE_PLATE_PX, settings.margin_x / 2,
                 settings.margin_y / 2)
    (top0, top1), (bottom0, bottom1) = double_row_split(plate)
    top = plate[top0:top1, DOUBLE_TOP_COLUMNS[0]:DOUBLE_TOP_COLUMNS[1]]
    bottom = plate[bottom0:bottom1, :]
    top_w = max(16, round(top.shape[1] * INPUT_HEIGHT_PX / top.shape[0] * 1.2))
    bottom_w = settings.single_width_px
    return (
        np.ascontiguousarray(cv2.resize(top, (top_w, INPUT_HEIGHT_PX)), dtype=np.uint8),
        np.ascontiguousarray(cv2.resize(bottom, (bottom_w, INPUT_HEIGHT_PX)), dtype=np.uint8),
    )


_CHAR_CONTRAST_L = 20.0
"""Lab lightness gap (0-255 scale) between characters and background that sets the polarity."""
_BLUE_MAX_B = -4.0
_GREEN_HUE_DEG = (120.0, 165.0)
"""Lab hue angle atan2(b*, a*) of a green background (yellow is near 100°, blue near 270°)."""
_GREEN_MIN_CHROMA = 10.0
_YELLOW_MIN_B = 12.0
_WHITE_MAX_CHROMA, _WHITE_MIN_L = 4.0, 120.0


def classify_colour(image: ImageBGR, corners_px: tuple[tuple[float, float], ...]) -> PlateColour:
    """Plate background colour from the rectified plate's inside.

    The plate's pixels are split by lightness (Otsu) into characters (the minority) and
    background. Under GA 36 only blue (and the special black) plates carry light
    characters on a dark background; yellow, white and green plates carry dark ones. So:

    - a green background (Lab hue 120-165°, chroma ≥ 10) → green (the NEV plates);
    - light characters → blue, whatever colour cast the light gives the background
      (night, sodium lamps); blue on a special kind's plate is checked by the policy;
    - a bluish background (b* < -4), as on over-exposed blue plates → blue;
    - a yellow background (b* > 12) → yellow, or yellow-green where a yellow and a
      green part both show (the large NEV plate);
    - a neutral, light background → white; anything else → unknown (review).

    The thresholds were set looking at the dev and training plates (``docs/vision.md``).
    """
    plate = warp(image, corners_px, 96, 32, 0.0, 0.0)[4:28, 6:90]
    lab = cv2.cvtColor(plate, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
    light, a_star, b_star = lab[:, 0], lab[:, 1] - 128.0, lab[:, 2] - 128.0
    threshold, _ = cv2.threshold(
        light.astype(np.uint8).reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU
    )
    bright = light > threshold
    background = ~bright if bright.mean() < 0.5 else bright
    characters = ~background
    bg_light = float(light[background].mean())
    char_light = float(light[characters].mean()) if characters.any() else bg_light
    a_bg, b_bg = float(np.median(a_star[background])), float(np.median(b_star[background]))
    hue_deg = float(np.degrees(np.arctan2(b_bg, a_bg)))
    chroma = float(np.hypot(a_bg, b_bg))
    if chroma >= _GREEN_MIN_CHROMA and _GREEN_HUE_DEG[0] <= hue_deg <= _GREEN_HUE_DEG[1]:
        return PlateColour.GREEN
    if char_light > bg_light + _CHAR_CONTRAST_L or b_bg < _BLUE_MAX_B:
        return PlateColour.BLUE
    if b_bg > _YELLOW_MIN_B:
        return PlateColour.YELLOW_GREEN if _has_green_part(plate) else PlateColour.YELLOW
    if chroma < _WHITE_MAX_CHROMA and bg_light > _WHITE_MIN_L:
        return PlateColour.WHITE
    return PlateColour.UNKNOWN


def _has_green_part(plate: ImageBGR) -> bool:
    """A yellow plate that also has a green part (hue 35-95, saturated) of 15 % or more."""
    hsv = cv2.cvtColor(plate, cv2.COLOR_BGR2HSV)
    h, s, v = (hsv[:, :, i].astype(np.int32) for i in range(3))
    green = np.count_nonzero((s > 50) & (v > 60) & (h > 34) & (h < 95))
    return bool(green / float(h.size) >= 0.15)
