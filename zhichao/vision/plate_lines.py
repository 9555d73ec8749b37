"""The plate recogniser's input line: one grey 32 × 160 image per plate, whatever its layout.

The plate-specific recogniser (:mod:`zhichao.vision.plate_model`) reads one line per plate:

- a single-row plate (blue, yellow, green 8-character, white, black) is warped whole to
  160 × 32 px, with the same margins the PP-OCRv4 line keeps;
- a double-row plate (yellow rear plate of a truck, trailer or coach) is split as
  :func:`~zhichao.vision.plate_image.double_row_lines` does — top row (province + issuing
  letter) and bottom row — and the two rows are put side by side: top row 48 px wide, then
  the bottom row 112 px wide. The model so reads the seven characters left to right, as
  on a single-row plate.

The training script (``training/plates/``) builds its lines with these same functions, so
the model sees at run time what it saw in training.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.vision.image import ImageBGR
from zhichao.vision.plate_image import (
    DOUBLE_PLATE_PX,
    DOUBLE_TOP_COLUMNS,
    double_row_split,
    warp,
)

LINE_HEIGHT_PX = 32
LINE_WIDTH_PX = 160
DOUBLE_TOP_WIDTH_PX = 48
"""Width of the top row (2 characters) in a double-row line; the bottom row gets the rest."""
MARGIN_X = 0.04
MARGIN_Y = 0.06

GreyLine = npt.NDArray[np.uint8]


def _grey(image: ImageBGR) -> GreyLine:
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def single_line(image: ImageBGR, corners_px: tuple[tuple[float, float], ...]) -> GreyLine:
    """A single-row plate warped to one LINE_HEIGHT_PX × LINE_WIDTH_PX grey line."""
    return _grey(warp(image, corners_px, LINE_WIDTH_PX, LINE_HEIGHT_PX, MARGIN_X, MARGIN_Y))


def double_line(image: ImageBGR, corners_px: tuple[tuple[float, float], ...]) -> GreyLine:
    """A double-row plate as one line: top row (48 px) then bottom row (112 px), side by side."""
    plate = warp(image, corners_px, *DOUBLE_PLATE_PX, MARGIN_X / 2, MARGIN_Y / 2)
    (top0, top1), (bottom0, bottom1) = double_row_split(plate)
    top = plate[top0:top1, DOUBLE_TOP_COLUMNS[0]:DOUBLE_TOP_COLUMNS[1]]
    bottom = plate[bottom0:bottom1, :]
    bottom_width = LINE_WIDTH_PX - DOUBLE_TOP_WIDTH_PX
    line = np.concatenate(
        [
            cv2.resize(
                _grey(top), (DOUBLE_TOP_WIDTH_PX, LINE_HEIGHT_PX), interpolation=cv2.INTER_AREA
            ),
            cv2.resize(_grey(bottom), (bottom_width, LINE_HEIGHT_PX), interpolation=cv2.INTER_AREA),
        ],
        axis=1,
    )
    return np.ascontiguousarray(line, dtype=np.uint8)


def plate_line(
    image: ImageBGR, corners_px: tuple[tuple[float, float], ...], double_row: bool
) -> GreyLine:
    return double_line(image, corners_px) if double_row else single_line(image, corners_px)


def to_tensor(lines: list[GreyLine]) -> npt.NDArray[np.float32]:
    """Lines → model input [N, 1, 32, 160], scaled to [-1, 1]."""
    batch = np.stack([line.astype(np.float32) / 127.5 - 1.0 for line in lines])
    return batch[:, None, :, :]
