"""From a detection to recogniser-ready lines: rectification, layout and plate colour.

Physical plate sizes (GA 36-2018): single-row 440 × 140 mm (height/width ≈ 0.32),
double-row 440 × 220 mm (≈ 0.50). The layout is classified from the 4 detected
corners' geometry; a double-row plate is split into its top row (province +
issuing letter, ≈ 0–40 % of the height, middle 70 % of the width) and bottom
row (≈ 33–100 % of the height), each read on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.vision.image import ImageBGR
from zhichao.vision.recognise import INPUT_HEIGHT_PX


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


def double_row_lines(
    image: ImageBGR, corners_px: tuple[tuple[float, float], ...], settings: RectifySettings
) -> tuple[ImageBGR, ImageBGR]:
    """(top row, bottom row) lines of a double-row plate, each 48 px high."""
    plate = warp(image, corners_px, 440, 220, settings.margin_x / 2, settings.margin_y / 2)
    top = plate[0:88, 66:374]  # 0-40 % of the height, middle 70 % of the width
    bottom = plate[73:220, :]  # 33-100 % of the height
    top_w = max(16, round(top.shape[1] * INPUT_HEIGHT_PX / top.shape[0] * 1.2))
    bottom_w = settings.single_width_px
    return (
        np.ascontiguousarray(cv2.resize(top, (top_w, INPUT_HEIGHT_PX)), dtype=np.uint8),
        np.ascontiguousarray(cv2.resize(bottom, (bottom_w, INPUT_HEIGHT_PX)), dtype=np.uint8),
    )


def classify_colour(image: ImageBGR, corners_px: tuple[tuple[float, float], ...]) -> PlateColour:
    """Plate background colour from the HSV histogram of the rectified plate's inside."""
    plate = warp(image, corners_px, 96, 32, 0.0, 0.0)[4:28, 6:90]
    hsv = cv2.cvtColor(plate, cv2.COLOR_BGR2HSV)
    h = hsv[:, :, 0].astype(np.int32)
    s = hsv[:, :, 1].astype(np.int32)
    v = hsv[:, :, 2].astype(np.int32)
    n = float(h.size)
    chroma = (s > 70) & (v > 60)
    # Blue plates range to violet when over-exposed and stay saturated when dark.
    blue = float(np.count_nonzero((s > 70) & (v > 35) & (h >= 95) & (h <= 140))) / n
    yellow = float(np.count_nonzero(chroma & (h >= 12) & (h <= 34))) / n
    green = float(np.count_nonzero((s > 50) & (v > 60) & (h > 34) & (h < 95))) / n
    white = float(np.count_nonzero((s < 45) & (v > 150))) / n
    black = float(np.count_nonzero((v < 70) & (s < 90))) / n
    if blue >= 0.25 and blue >= yellow:
        return PlateColour.BLUE
    if yellow >= 0.25 and green >= 0.15:
        return PlateColour.YELLOW_GREEN
    if yellow >= 0.25:
        return PlateColour.YELLOW
    if green >= 0.2:
        return PlateColour.GREEN
    if white >= 0.45:
        return PlateColour.WHITE
    if black >= 0.45:
        return PlateColour.BLACK
    return PlateColour.UNKNOWN
