"""Plate detection with ``clp_det`` (a RetinaFace-style detector: box + 4 corners).

Our own pre/post-processing, from the model's documented I/O: BGR minus
(104, 117, 123), unscaled, NCHW float32; outputs ``loc`` [1, N, 4], ``conf``
[1, N, 2] (softmax) and ``landms`` [1, N, 8] decoded against SSD priors
(min sizes [[24, 48], [96, 192], [384, 768]], steps [8, 16, 32], variance
[0.1, 0.2]). Priors depend only on the input size, so they are built with numpy
once per size and cached. Frames whose longest side exceeds ``max_side_px`` are
downscaled first; boxes and corners come back in the original frame's pixels.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.vision.image import ImageBGR
from zhichao.vision.runtime import OnnxModel

FloatArray = npt.NDArray[np.float64]

_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_MIN_SIZES_PX = ((24, 48), (96, 192), (384, 768))
_STEPS_PX = (8, 16, 32)
_VARIANCE = (0.1, 0.2)
_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected plate, in the original frame's pixel coordinates.

    ``corners_px`` is (4, 2): top-left, top-right, bottom-right, bottom-left.
    """

    box_px: tuple[float, float, float, float]
    corners_px: tuple[tuple[float, float], ...]
    score: float


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    max_side_px: int = 512
    """Frames with a longer side are downscaled to this before detection."""
    retry_max_side_px: int = 960
    """If nothing is found, detect once more at this size (0 disables the retry)."""
    score_threshold: float = 0.5
    nms_iou: float = 0.4
    max_plates: int = 8
    min_width_px: float = 16.0
    prior_cache_size: int = 16
    resize_interpolation: str = "area"
    """How a frame is downscaled for detection: ``"area"`` (cv2.INTER_AREA) or ``"linear"``."""
    coarse_side_px: int = 0
    """Two stages when > 0 (not the default; measured in ``docs/vision.md``): find plates at
    this input size, then detect each again on a crop around it scaled so the plate is
    ``refine_plate_width_px`` wide; a frame where the first stage finds nothing goes the
    one-stage way (``max_side_px``, then the retry)."""
    refine_plate_width_px: float = 120.0
    refine_margin: tuple[float, float] = (1.0, 1.5)
    """Crop around a first-stage box: plate widths left and right, plate heights above and below."""

    def __post_init__(self) -> None:
        if self.resize_interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"resize_interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                f"not {self.resize_interpolation!r}"
            )


def build_priors(height_px: int, width_px: int) -> FloatArray:
    """SSD priors (cx, cy, w, h), normalised to the input size, in the model's order."""
    parts: list[FloatArray] = []
    for step, min_sizes in zip(_STEPS_PX, _MIN_SIZES_PX, strict=True):
        rows, cols = math.ceil(height_px / step), math.ceil(width_px / step)
        cy, cx = np.meshgrid(
            (np.arange(rows) + 0.5) * step / height_px,
            (np.arange(cols) + 0.5) * step / width_px,
            indexing="ij",
        )
        per_size = []
        for size in min_sizes:
            per_size.append(
                np.stack(
                    [
                        cx,
                        cy,
                        np.full_like(cx, size / width_px),
                        np.full_like(cy, size / height_px),
                    ],
                    axis=-1,
                )
            )
        # order: for each cell, each min size
        parts.append(np.stack(per_size, axis=2).reshape(-1, 4))
    return np.concatenate(parts, axis=0)


def input_tensor(image: ImageBGR) -> npt.NDArray[np.float32]:
    """The model input: BGR minus the mean, float32 NCHW [1, 3, H, W].

    Written channel by channel into the output (no float HWC copy and transpose): the
    same float32 subtraction, so the same values as
    ``(image.astype(np.float32) - _MEAN_BGR).transpose(2, 0, 1)[np.newaxis]``.
    """
    height, width = image.shape[:2]
    tensor = np.empty((1, 3, height, width), dtype=np.float32)
    for channel in range(3):
        np.subtract(image[:, :, channel], _MEAN_BGR[channel], out=tensor[0, channel])
    return tensor


def _nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> list[int]:
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def order_corners(points: FloatArray) -> FloatArray:
    """Order 4 points as top-left, top-right, bottom-right, bottom-left."""
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    ordered = points[np.argsort(angles)]  # clockwise from the left in image coordinates
    start = int(np.argmin(ordered.sum(axis=1)))  # top-left has the smallest x + y
    return np.roll(ordered, -start, axis=0)


class PlateDetector:
    """Finds plates in a frame. The session is lazy; use one detector per worker thread
    (the prior cache is not locked)."""

    def __init__(self, model: OnnxModel, settings: DetectorSettings | None = None) -> None:
        self.model = model
        self.settings = settings or DetectorSettings()
        self._priors: OrderedDict[tuple[int, int], FloatArray] = OrderedDict()

    def _priors_for(self, height_px: int, width_px: int) -> FloatArray:
        key = (height_px, width_px)
        priors = self._priors.get(key)
        if priors is None:
            priors = build_priors(height_px, width_px)
            self._priors[key] = priors
            while len(self._priors) > self.settings.prior_cache_size:
                self._priors.popitem(last=False)
        return priors

    def detect(self, image: ImageBGR) -> list[Detection]:
        """Detect plates, best score first; retry at a larger size when none is found."""
        if self.settings.coarse_side_px > 0:
            coarse = self.detect_at(image, self.settings.coarse_side_px)
            if coarse:
                refined = [self._refine(image, d) for d in coarse]
                return sorted(refined, key=lambda d: d.score, reverse=True)
        found = self.detect_at(image, self.settings.max_side_px)
        retry = self.settings.retry_max_side_px
        longest = max(image.shape[:2])
        if not found and retry > self.settings.max_side_px and longest > self.settings.max_side_px:
            found = self.detect_at(image, retry)
        return found

    def _refine(self, image: ImageBGR, detection: Detection) -> Detection:
        """Detect again on a crop around ``detection`` with the plate larger in the input;
        the refined detection that overlaps it most, or ``detection`` if none does."""
        height, width = image.shape[:2]
        x1, y1, x2, y2 = detection.box_px
        w, h = x2 - x1, y2 - y1
        mx, my = self.settings.refine_margin
        left, top = max(0, int(x1 - mx * w)), max(0, int(y1 - my * h))
        right, bottom = min(width, math.ceil(x2 + mx * w)), min(height, math.ceil(y2 + my * h))
        crop = image[top:bottom, left:right]
        scale = min(1.0, self.settings.refine_plate_width_px / max(w, 1.0))
        side = max(16, round(max(crop.shape[:2]) * scale))
        best, best_iou = detection, 0.3
        for found in self.detect_at(np.ascontiguousarray(crop), side):
            fx1, fy1, fx2, fy2 = found.box_px
            box = (fx1 + left, fy1 + top, fx2 + left, fy2 + top)
            iou = _iou(box, detection.box_px)
            if iou > best_iou:
                corners = tuple((x + left, y + top) for x, y in found.corners_px)
                best, best_iou = Detection(box, corners, found.score), iou
        return best

    def detect_at(self, image: ImageBGR, max_side_px: int) -> list[Detection]:
        """Detect plates after downscaling the frame to at most ``max_side_px``."""
        settings = self.settings
        height, width = image.shape[:2]
        scale = min(1.0, max_side_px / max(height, width))
        if scale < 1.0:
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            interpolation = _INTERPOLATIONS[settings.resize_interpolation]
            small: ImageBGR = np.asarray(
                cv2.resize(image, (new_w, new_h), interpolation=interpolation), dtype=np.uint8
            )
        else:
            small = image
        h_in, w_in = small.shape[:2]
        loc, conf, landms = self.model.run(input_tensor(small))
        priors = self._priors_for(h_in, w_in)
        scores = conf[0, :, 1].astype(np.float64)
        candidates = np.flatnonzero(scores > settings.score_threshold)
        if candidates.size == 0:
            return []
        p = priors[candidates]
        loc_c = loc[0, candidates].astype(np.float64)
        lm_c = landms[0, candidates].astype(np.float64)
        centre = p[:, :2] + loc_c[:, :2] * _VARIANCE[0] * p[:, 2:]
        size = p[:, 2:] * np.exp(loc_c[:, 2:] * _VARIANCE[1])
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        boxes *= np.array([w_in, h_in, w_in, h_in]) / scale
        points = p[:, np.newaxis, :2] + lm_c.reshape(-1, 4, 2) * _VARIANCE[0] * p[:, np.newaxis, 2:]
        points *= np.array([w_in, h_in]) / scale
        keep = _nms(boxes, scores[candidates], settings.nms_iou)
        detections: list[Detection] = []
        for i in keep[: settings.max_plates]:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(width), x2), min(float(height), y2)
            if x2 - x1 < settings.min_width_px or y2 <= y1:
                continue
            corners = order_corners(points[i])
            detections.append(
                Detection(
                    box_px=(x1, y1, x2, y2),
                    corners_px=tuple((float(x), float(y)) for x, y in corners),
                    score=float(scores[candidates[i]]),
                )
            )
        return detections
