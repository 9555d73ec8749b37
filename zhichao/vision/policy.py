"""The confidence policy: when may a plate read be pre-filled without a reviewer correcting it?

``accepted`` never means "penalise without a human": every case still needs 审核确认
before 处罚 (``shared/reference/law.md`` §4.3). It means the read needs no manual
correction; everything else is routed to manual review with machine-readable
reason codes and zh-CN texts a reviewer reads.

Defaults were calibrated on ``shared/data/plates/dev`` (see ``docs/vision.md``),
the only labelled set available, which was also used for tuning: treat them as a
starting point and re-calibrate on the station's own frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zhichao.vision.plate_image import PlateColour


class ReviewCode(StrEnum):
    NO_PLATE = "no_plate"
    GRAMMAR_INVALID = "grammar_invalid"
    LOW_CONFIDENCE = "low_confidence"
    UNCONFIRMED = "unconfirmed_read"
    LOW_RESOLUTION = "low_resolution"
    COLOUR_UNKNOWN = "colour_unknown"
    COLOUR_KIND_MISMATCH = "colour_kind_mismatch"
    FRAME_DISAGREEMENT = "frame_disagreement"
    CAMERA_DISAGREEMENT = "camera_disagreement"
    TOO_FEW_FRAMES = "too_few_agreeing_frames"
    VEHICLE_CONFLICT = "plate_conflicts_with_weighed_vehicle"
    TRAILER_PLATE_ONLY = "trailer_plate_only"


REVIEW_TEXT_ZH: dict[ReviewCode, str] = {
    ReviewCode.NO_PLATE: "未检测到号牌，需人工识别",
    ReviewCode.GRAMMAR_INVALID: "识别结果不符合号牌编码规则（GA 36），需人工核对",
    ReviewCode.LOW_CONFIDENCE: "号牌识别置信度低，需人工核对",
    ReviewCode.UNCONFIRMED: "号牌识别结果未经第二次识别或其他图像帧确认，需人工核对",
    ReviewCode.LOW_RESOLUTION: "号牌图像分辨率不足，需人工核对",
    ReviewCode.COLOUR_UNKNOWN: "无法判定号牌颜色，需人工核对",
    ReviewCode.COLOUR_KIND_MISMATCH: "号牌颜色与号牌种类不符，需人工核对",
    ReviewCode.FRAME_DISAGREEMENT: "同一相机多帧识别结果不一致，需人工核对",
    ReviewCode.CAMERA_DISAGREEMENT: "前后相机识别结果不一致（可能套牌或误识别），需人工核对",
    ReviewCode.TOO_FEW_FRAMES: "识别结果一致的图像帧数不足，需人工核对",
    ReviewCode.VEHICLE_CONFLICT: "号牌颜色或种类与称重车辆（轴数）不符，需人工核对",
    ReviewCode.TRAILER_PLATE_ONLY: "仅识别到挂车号牌，未识别到牵引车号牌，需人工识别",
}


@dataclass(frozen=True, slots=True)
class ReviewReason:
    """Why a case goes to manual review: a stable machine code and the zh-CN text for officers."""

    code: ReviewCode
    message_zh: str
    detail: str = ""
    """English detail for logs (e.g. the disagreeing texts); not shown to owners."""

    @classmethod
    def of(cls, code: ReviewCode, detail: str = "") -> ReviewReason:
        return cls(code, REVIEW_TEXT_ZH[code], detail)


@dataclass(frozen=True, slots=True)
class PlatePolicy:
    """Thresholds of the confidence policy (all configurable per station)."""

    confident_alone: float = 0.9
    """Per-character probability (lowest character, after voting) at or above which a
    read needs no confirmation, PP-OCRv4 scale."""
    min_confidence: float = 0.3
    """Below ``confident_alone`` and at or above this, a read is accepted only when
    confirmed: its second view (another stretch of the same crop) or another frame
    reads the same plate. Below this, always review."""
    min_plate_width_px: float = 100.0
    """Narrower plates (in source pixels) are too coarse to auto-accept."""
    min_agreeing_frames: int = 1
    """Frames whose reads must agree; 1 lets a single frame decide. Raise to 2 once
    multi-frame agreement has been measured on the lane."""
    large_vehicle_min_axles: int = 3
    """A weighed vehicle with this many axles or more must carry a large-vehicle plate."""
    require_known_colour: bool = True


_NEV_COLOURS = frozenset({PlateColour.GREEN, PlateColour.YELLOW_GREEN, PlateColour.UNKNOWN})
_LARGE_VEHICLE_COLOURS = frozenset(
    {PlateColour.YELLOW, PlateColour.YELLOW_GREEN, PlateColour.BLACK, PlateColour.WHITE}
)


def colour_kind_consistent(colour: PlateColour, kind: str | None) -> bool:
    """False where the plate colour cannot go with the plate kind (e.g. a blue 8-character NEV)."""
    if kind in ("nev_small", "nev_large"):
        return colour in _NEV_COLOURS
    if kind in ("ordinary", "trailer", "coach"):
        return colour is not PlateColour.GREEN
    return True


def vehicle_conflict(
    colour: PlateColour, kind: str | None, axle_count: int | None, policy: PlatePolicy
) -> str | None:
    """English detail if the plate cannot belong to the weighed vehicle, else None.

    A vehicle with ``large_vehicle_min_axles`` or more axles is a large goods vehicle
    and carries a yellow (or yellow-green NEV) plate; a blue plate or a small NEV plate
    on it is suspect (misread, or a plate swapped between vehicles).
    """
    if axle_count is None or axle_count < policy.large_vehicle_min_axles:
        return None
    if kind == "nev_small":
        return f"small NEV plate on a {axle_count}-axle vehicle"
    if colour not in _LARGE_VEHICLE_COLOURS and colour is not PlateColour.UNKNOWN:
        return f"{colour.value} plate on a {axle_count}-axle vehicle"
    return None
