"""Per-vehicle decisions on real dev frames (front and rear cameras)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from zhichao.vision.errors import FrameError
from zhichao.vision.image import ImageBGR, load_image
from zhichao.vision.policy import PlatePolicy, ReviewCode
from zhichao.vision.reader import PlateReader
from zhichao.vision.vehicle import (
    VehicleFrame,
    WeighedVehicleFacts,
    decide_from_reads,
    decide_vehicle,
)

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def frame(dev_dir: Path, name: str, camera: str, offset_ms: int = 0) -> VehicleFrame:
    image: ImageBGR = load_image(dev_dir / name)
    return VehicleFrame(image, camera, T0 + timedelta(milliseconds=offset_ms))


def codes(decision: object) -> set[str]:
    return set(decision.review_codes)  # type: ignore[attr-defined]


def test_two_agreeing_frames_are_accepted(reader: PlateReader, dev_dir: Path) -> None:
    front = frame(dev_dir, "toll_0074.jpg", "front")
    later = VehicleFrame(
        np.ascontiguousarray(cv2.GaussianBlur(front.image, (3, 3), 0), dtype=np.uint8),
        "front",
        T0 + timedelta(seconds=0.2),
    )
    decision = decide_vehicle([front, later], reader, WeighedVehicleFacts(axle_count=5))
    assert decision.plate == "浙E13183"
    assert decision.accepted, decision.review_reasons
    assert decision.colour.value == "yellow"
    assert decision.agreeing_frames == 2
    assert {s.frame_index for s in decision.sources} == {0, 1}
    assert decision.sources[0].crops[0].shape[0] == 48
    assert 0.5 <= decision.confidence <= 1.0


def test_front_and_rear_disagreeing_go_to_review(reader: PlateReader, dev_dir: Path) -> None:
    decision = decide_vehicle(
        [frame(dev_dir, "toll_0004.jpg", "front"), frame(dev_dir, "toll_0001.jpg", "rear", 300)],
        reader,
    )
    assert not decision.accepted
    assert ReviewCode.CAMERA_DISAGREEMENT.value in codes(decision)
    assert {a.text for a in decision.alternatives} & {"沪B74992", "川QEZ982"}
    assert any("前后相机" in r.message_zh for r in decision.review_reasons)


def test_blue_plate_on_five_axle_truck_goes_to_review(reader: PlateReader, dev_dir: Path) -> None:
    decision = decide_vehicle(
        [frame(dev_dir, "toll_0008.jpg", "front")], reader, WeighedVehicleFacts(axle_count=5)
    )
    assert decision.plate == "沪CT8805"
    assert codes(decision) == {ReviewCode.VEHICLE_CONFLICT.value}
    two_axle = decide_vehicle(
        [frame(dev_dir, "toll_0008.jpg", "front")], reader, WeighedVehicleFacts(axle_count=2)
    )
    assert two_axle.accepted


def test_no_plate_goes_to_review(reader: PlateReader) -> None:
    empty = VehicleFrame(np.full((480, 640, 3), 128, dtype=np.uint8), "front", T0)
    decision = decide_vehicle([empty], reader)
    assert decision.plate is None and not decision.accepted
    assert codes(decision) == {ReviewCode.NO_PLATE.value}
    assert decision.review_reasons[0].message_zh == "未检测到号牌，需人工识别"


def test_low_confidence_read_goes_to_review(reader: PlateReader, dev_dir: Path) -> None:
    decision = decide_vehicle([frame(dev_dir, "toll_0200.jpg", "front")], reader)
    assert ReviewCode.LOW_CONFIDENCE.value in codes(decision)


def test_more_frames_can_be_required(reader: PlateReader, dev_dir: Path) -> None:
    decision = decide_vehicle(
        [frame(dev_dir, "toll_0074.jpg", "front")],
        reader,
        policy=PlatePolicy(min_agreeing_frames=2),
    )
    assert codes(decision) == {ReviewCode.TOO_FEW_FRAMES.value}


def test_trailer_plate_is_kept_apart_from_the_tractor(reader: PlateReader, dev_dir: Path) -> None:
    front = frame(dev_dir, "toll_0074.jpg", "front")
    rear = frame(dev_dir, "toll_0001.jpg", "rear", 800)
    front_reads = reader.read_image(front.image)
    rear_read = reader.read_image(rear.image)[0]
    assert rear_read.text == "川QEZ982"
    trailer_read = replace(rear_read, text="川QEZ98挂", kind="trailer")
    decision = decide_from_reads([(front, front_reads), (rear, [trailer_read])])
    assert decision.plate == "浙E13183"
    assert decision.trailer_plate == "川QEZ98挂"
    assert decision.accepted
    only_trailer = decide_from_reads([(rear, [trailer_read])])
    assert only_trailer.plate is None
    assert codes(only_trailer) == {ReviewCode.TRAILER_PLATE_ONLY.value}


@pytest.mark.parametrize(
    "captured_at",
    [
        datetime(2026, 11, 22, 8, 0, 0),
        datetime(2026, 11, 22, 16, 0, tzinfo=timezone(timedelta(hours=8))),
    ],
)
def test_frames_need_utc_times(reader: PlateReader, captured_at: datetime) -> None:
    with pytest.raises(FrameError, match="UTC"):
        decide_vehicle([VehicleFrame(np.zeros((8, 8, 3), np.uint8), "front", captured_at)], reader)
