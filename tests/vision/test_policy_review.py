"""Ways a wrong plate was accepted that a review of the accept policy found (2026-12-07),
each built from synthetic reads: the frame showing the vehicle's real plate is the one the
policy used to ignore (a front frame linked from another vehicle, or cloned plates)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from zhichao.vision.detect import Detection
from zhichao.vision.grammar import plate_kind
from zhichao.vision.plate_image import Layout, PlateColour
from zhichao.vision.plate_model import SecondRead
from zhichao.vision.policy import colour_kind_consistent, colours_disagree
from zhichao.vision.reader import PlateRead, ViewRead
from zhichao.vision.vehicle import VehicleFrame, WeighedVehicleFacts, decide_from_reads

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
IMAGE = np.zeros((1200, 1600, 3), dtype=np.uint8)
PLATE = "沪CT8805"


def det(x: int = 700, y: int = 900, w: int = 200, h: int = 60,
        score: float = 0.95) -> Detection:
    return Detection((x, y, x + w, y + h), ((x, y), (x + w, y), (x + w, y + h), (x, y + h)),
                     score)


def second(text: str | None, chars: tuple[float, ...] | None = None,
           province: str | None = None, province_p: float = 0.99) -> SecondRead:
    if text is not None and chars is None:
        chars = (0.99,) * len(text)
    return SecondRead(text, chars or (), province or (text[0] if text else "京"), province_p,
                      False)


SAME = second(None)  # marker: the plate model reads what PP-OCRv4 reads


def read(text: str | None, chars: tuple[float, ...] | None = None,
         other: SecondRead | None = SAME, colour: PlateColour = PlateColour.BLUE,
         d: Detection | None = None, raw: str | None = None) -> PlateRead:
    if text is not None and chars is None:
        chars = (0.99,) * len(text)
    return PlateRead(text=text, kind=plate_kind(text) if text else None, colour=colour,
                     layout=Layout.SINGLE, confidence=min(chars) if chars else 0.0,
                     probability=0.9, char_confidences=chars or (),
                     raw_text=raw if raw is not None else (text or ""), alternatives=(),
                     detection=d or det(), height_width_ratio=0.3, line_images=(),
                     second=second(text) if other is SAME else other)


def frame(camera: str, i: int, reads: list[PlateRead]) -> tuple[VehicleFrame, list[PlateRead]]:
    return VehicleFrame(IMAGE, camera, T0 + timedelta(milliseconds=200 * i)), reads


def test_the_control_is_accepted() -> None:
    d = decide_from_reads([frame("front", 0, [read(PLATE)]), frame("rear", 1, [read(PLATE)])])
    assert d.accepted and d.plate == PLATE


def test_a_sure_plate_model_read_on_the_other_camera_is_not_ignored() -> None:
    # rear: PP-OCRv4 reads nothing valid, the plate model surely another plate
    for rear_second in (second("沪CT8806"), second("苏CT8805"), second("沪CD88051"),
                        second("苏E12345")):
        d = decide_from_reads([frame("front", 0, [read(PLATE)]),
                               frame("rear", 1, [read(None, raw="沪CT880",
                                                      other=rear_second)])])
        assert not d.accepted, rear_second.text
        assert rear_second.text in {a.text for a in d.alternatives}
    # an unsure plate-model read there neither confirms nor vetoes, as before
    unsure = second("苏E12345", chars=(0.4,) * 7, province_p=0.4)
    d = decide_from_reads([frame("front", 0, [read(PLATE)]),
                           frame("rear", 1, [read(None, raw="x", other=unsure)])])
    assert d.accepted


def test_another_plate_the_plate_model_reads_surely_is_a_rival() -> None:
    # rear: PP-OCRv4 unsure (0.25 < min_confidence) of another plate the plate model reads
    rival = read("苏E12345", chars=(0.99, 0.99, 0.99, 0.25, 0.99, 0.99, 0.99))
    d = decide_from_reads([frame("front", 0, [read(PLATE)]), frame("rear", 1, [rival])])
    assert not d.accepted and "camera_disagreement" in d.review_codes


def test_two_detections_of_one_plate_never_make_an_unsure_plate_model_sure() -> None:
    pm = second(PLATE, chars=(0.99, 0.99, 0.3, 0.99, 0.99, 0.99, 0.99))
    a = read(PLATE, other=pm, d=det(700, 900, 200, 60))
    b = read(PLATE, other=pm, d=det(700, 880, 260, 110, score=0.6))  # overlapping boxes
    d = decide_from_reads([frame("front", 0, [a, b])])
    assert not d.accepted and "low_confidence" in d.review_codes
    # nor do PP-OCRv4's views on one frame
    views = (ViewRead("narrow", PLATE, (0.99,) * 7), ViewRead("equalised", PLATE, (0.99,) * 7))
    d = decide_from_reads([frame("front", 0, [replace(read(PLATE, other=pm), views=views)])])
    assert not d.accepted and "low_confidence" in d.review_codes


def test_front_and_rear_colours_that_disagree_go_to_review() -> None:
    front = read(PLATE, colour=PlateColour.BLUE)
    rear = read(PLATE, colour=PlateColour.YELLOW, chars=(0.995,) * 7)
    three = decide_from_reads([frame("front", 0, [front]), frame("rear", 1, [rear])],
                              WeighedVehicleFacts(3))
    assert not three.accepted
    assert {"colour_disagreement", "plate_conflicts_with_weighed_vehicle"} <= set(
        three.review_codes)
    two = decide_from_reads([frame("front", 0, [front]), frame("rear", 1, [rear])],
                            WeighedVehicleFacts(2))
    assert not two.accepted and "colour_disagreement" in two.review_codes
    assert colours_disagree({PlateColour.BLUE, PlateColour.YELLOW})
    assert not colours_disagree({PlateColour.YELLOW, PlateColour.YELLOW_GREEN,
                                 PlateColour.UNKNOWN})


def test_a_trailer_plate_never_takes_the_tractor_plate_or_a_rival() -> None:
    facts = WeighedVehicleFacts(5)
    tractor = read("鲁H12345", colour=PlateColour.YELLOW)
    trailer = read("鲁H1234挂", colour=PlateColour.YELLOW, d=det(100, 100))
    d = decide_from_reads([frame("front", 0, [tractor]), frame("rear", 1, [trailer])], facts)
    assert d.plate == "鲁H12345" and d.trailer_plate == "鲁H1234挂" and d.accepted
    # a rival plate on the rear similar to the trailer plate is still a rival
    rival = read("鲁H12388", colour=PlateColour.YELLOW, d=det(1000, 900))
    d = decide_from_reads([frame("front", 0, [read("苏E99999", colour=PlateColour.YELLOW)]),
                           frame("rear", 1, [trailer, rival])], facts)
    assert not d.accepted and "camera_disagreement" in d.review_codes


def test_a_coach_plate_is_yellow() -> None:
    assert colour_kind_consistent(PlateColour.YELLOW, "coach")
    assert not colour_kind_consistent(PlateColour.BLUE, "coach")
