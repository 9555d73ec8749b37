"""The accept policy: independent agreeing decodings, the province on its own, this lane only."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from zhichao.vision.errors import PolicyError
from zhichao.vision.image import ImageBGR, load_image
from zhichao.vision.plate_image import PlateColour
from zhichao.vision.policy import (
    LaneRegion,
    PlatePolicy,
    ReviewCode,
    both_recognisers_char_confidences,
    colour_kind_consistent,
    evidence_reasons,
    kth_best_char_confidences,
)
from zhichao.vision.reader import PPOCR_VIEWS, PlateRead, PlateReader, VisionConfig
from zhichao.vision.vehicle import (
    VehicleFrame,
    WeighedVehicleFacts,
    assess_read,
    decide_from_reads,
)

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
POLICY = PlatePolicy()


def codes(reasons: object) -> list[ReviewCode]:
    return [r.code for r in reasons]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def sure_read(reader: PlateReader, dev_dir: Path) -> PlateRead:
    read = reader.read_path(dev_dir / "toll_0008.jpg")[0]
    assert read.text == "沪CT8805"
    return read


def test_kth_best_per_position() -> None:
    decodings = [(0.9, 0.5, 1.0), (0.6, 0.99, 0.8), (0.7, 0.7, 0.7)]
    assert kth_best_char_confidences(decodings, 1) == (0.9, 0.99, 1.0)
    assert kth_best_char_confidences(decodings, 2) == (0.7, 0.7, 0.8)
    assert kth_best_char_confidences(decodings[:1], 2) == (0.0, 0.0, 0.0)


def test_evidence_rules_apart() -> None:
    sure = (0.999,) * 7
    assert evidence_reasons(2, sure, POLICY) == []
    assert codes(evidence_reasons(1, sure, POLICY)) == [ReviewCode.UNCONFIRMED]
    weak_province = (POLICY.min_province_confidence - 0.01,) + (0.999,) * 6
    assert codes(evidence_reasons(2, weak_province, POLICY)) == [ReviewCode.PROVINCE_UNCERTAIN]
    weak_letter = (0.999, POLICY.min_char_confidence - 0.01) + (0.999,) * 5
    assert codes(evidence_reasons(2, weak_letter, POLICY)) == [ReviewCode.LOW_CONFIDENCE]


def test_both_recognisers_agreeing_and_sure_is_accepted(sure_read: PlateRead) -> None:
    assert sure_read.second is not None and sure_read.second.text == "沪CT8805"
    assert sure_read.recognisers_agree and sure_read.second.province == "沪"
    assert len(sure_read.agreeing_decodings("沪CT8805")) >= POLICY.min_independent_reads
    assert assess_read(sure_read, POLICY) == ()


def test_one_recogniser_alone_is_never_accepted(sure_read: PlateRead) -> None:
    alone = replace(sure_read, second=None)
    assert codes(assess_read(alone, POLICY)) == [
        ReviewCode.UNCONFIRMED,
        ReviewCode.RECOGNISER_DISAGREEMENT,
    ]


def test_the_plate_model_alone_fills_in_but_is_never_accepted(sure_read: PlateRead) -> None:
    """PP-OCRv4 reads nothing grammar-valid: the plate model's valid read is what the
    reviewer sees (never accepted, whatever its confidence); without one, no plate."""
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    assert sure_read.second is not None
    nothing = replace(sure_read, text=None, alternatives=())
    frame = VehicleFrame(image, "front", T0)
    decision = decide_from_reads([(frame, [nothing])])
    assert decision.plate == sure_read.second.text and not decision.accepted
    assert decision.kind is not None
    assert decision.confidence == pytest.approx(sure_read.second.confidence)
    assert decision.review_codes[:1] == (ReviewCode.PLATE_MODEL_ONLY.value,)
    assert ReviewCode.GRAMMAR_INVALID.value not in decision.review_codes  # the plate is valid
    assert decision.plate_model_only
    assert "plate model alone" in decision.review_reasons[0].detail
    assert "PP-OCRv4 raw reads" in decision.review_reasons[0].detail
    # however sure, over several frames too
    sure_second = replace(sure_read.second, char_confidences=(1.0,) * 7,
                          province_confidence=1.0)
    frames = [(VehicleFrame(image, "front", T0 + timedelta(milliseconds=200 * i)),
               [replace(nothing, second=sure_second)]) for i in range(3)]
    assert not decide_from_reads(frames).accepted
    assert decide_from_reads(frames).plate == sure_read.second.text
    # neither recogniser read a valid plate: nothing is filled in
    none = decide_from_reads([(frame, [replace(nothing, second=replace(
        sure_read.second, text=None))])])
    assert none.plate is None and none.review_codes == (ReviewCode.GRAMMAR_INVALID.value,)
    # a …挂 read of the plate model is not a tractor's plate
    trailer = decide_from_reads([(frame, [replace(nothing, second=replace(
        sure_read.second, text="沪C1234挂"))])])
    assert trailer.plate is None


def test_recognisers_that_disagree_send_to_review(sure_read: PlateRead) -> None:
    assert sure_read.second is not None
    other = replace(sure_read.second, text="沪CT8806")
    assert codes(assess_read(replace(sure_read, second=other), POLICY)) == [
        ReviewCode.UNCONFIRMED,
        ReviewCode.RECOGNISER_DISAGREEMENT,
    ]


def test_uncertain_province_alone_sends_to_review(sure_read: PlateRead) -> None:
    assert sure_read.second is not None

    def weak(chars: tuple[float, ...]) -> tuple[float, ...]:
        return (0.6, *chars[1:])

    read = replace(
        sure_read,
        char_confidences=weak(sure_read.char_confidences),
        second=replace(sure_read.second, char_confidences=weak(sure_read.second.char_confidences)),
    )
    assert codes(assess_read(read, POLICY)) == [ReviewCode.PROVINCE_UNCERTAIN]


def test_province_head_that_names_another_province_sends_to_review(sure_read: PlateRead) -> None:
    assert sure_read.second is not None
    other_head = replace(sure_read.second, province="浙", province_confidence=0.99)
    assert codes(assess_read(replace(sure_read, second=other_head), POLICY)) == [
        ReviewCode.PROVINCE_UNCERTAIN
    ]
    unsure_head = replace(sure_read.second, province_confidence=0.5)
    assert codes(assess_read(replace(sure_read, second=unsure_head), POLICY)) == [
        ReviewCode.PROVINCE_UNCERTAIN
    ]


def test_other_frames_do_not_replace_the_second_recogniser(sure_read: PlateRead) -> None:
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    alone = replace(sure_read, second=None)
    frames = [
        (VehicleFrame(image, "front", T0 + timedelta(milliseconds=200 * i)), [alone])
        for i in range(3)
    ]
    assert decide_from_reads(frames[:1]).review_codes == (
        ReviewCode.UNCONFIRMED.value,
        ReviewCode.RECOGNISER_DISAGREEMENT.value,
    )
    three = decide_from_reads(frames)
    assert three.review_codes == (ReviewCode.RECOGNISER_DISAGREEMENT.value,)
    # with the agreement rule off, other frames are independent evidence on their own
    loose = PlatePolicy(require_recogniser_agreement=False)
    assert decide_from_reads(frames[:1], policy=loose).review_codes == (
        ReviewCode.UNCONFIRMED.value,
    )
    both = decide_from_reads(frames[:2], policy=loose)
    assert both.accepted and both.plate == "沪CT8805" and both.agreeing_frames == 2
    # one frame where the plate model reads otherwise sends the vehicle to review
    assert sure_read.second is not None
    dissent = replace(sure_read, second=replace(sure_read.second, text="沪CT8806"))
    mixed = [(frames[0][0], [sure_read]), (frames[1][0], [dissent])]
    assert ReviewCode.RECOGNISER_DISAGREEMENT.value in decide_from_reads(mixed).review_codes


def _frames(reads: list[PlateRead]) -> list[tuple[VehicleFrame, list[PlateRead]]]:
    """One frame per read, of two cameras in turn (front, rear), 200 ms apart."""
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    return [
        (VehicleFrame(image, ("front", "rear")[i % 2], T0 + timedelta(milliseconds=200 * i)),
         [read])
        for i, read in enumerate(reads)
    ]


def _second_reading(read: PlateRead, text: str | None, chars: tuple[float, ...]) -> PlateRead:
    assert read.second is not None
    return replace(read, second=replace(read.second, text=text, char_confidences=chars))


def test_each_recogniser_must_be_sure_itself() -> None:
    primary = [(0.99, 0.5, 0.99), (0.6, 0.99, 0.99)]
    second = [(0.97, 0.96, 0.8)]
    assert both_recognisers_char_confidences(primary, second) == (0.97, 0.96, 0.8)
    assert both_recognisers_char_confidences(primary, []) == ()
    assert both_recognisers_char_confidences([], second) == ()


def test_an_unsure_or_missing_second_read_on_another_frame_neither_confirms_nor_vetoes(
    sure_read: PlateRead,
) -> None:
    """Item 4: every frame votes. A frame where the plate model reads nothing, or another
    text it is unsure of, does not undo a frame both recognisers read surely; a sure other
    read does (and on one frame both must agree, as before)."""
    text = "沪CT8805"
    sure_chars = sure_read.second.char_confidences if sure_read.second else ()
    unsure_other = _second_reading(sure_read, "沪CT8806", (*sure_chars[:6], 0.3))
    sure_other = _second_reading(sure_read, "沪CT8806", (*sure_chars[:6], 0.97))
    none = _second_reading(sure_read, None, ())
    for other in (unsure_other, none):
        d = decide_from_reads(_frames([sure_read, other]))
        assert d.accepted and d.plate == text, d.review_codes
        alone = decide_from_reads(_frames([other]))
        assert ReviewCode.RECOGNISER_DISAGREEMENT.value in alone.review_codes
    d = decide_from_reads(_frames([sure_read, sure_other]))
    assert not d.accepted and ReviewCode.RECOGNISER_DISAGREEMENT.value in d.review_codes
    # no frame confirmed by both: review, however many frames PP-OCRv4 reads it on
    d = decide_from_reads(_frames([unsure_other, none, unsure_other]))
    assert not d.accepted and ReviewCode.RECOGNISER_DISAGREEMENT.value in d.review_codes
    # a different-length read of the plate model is a sure dissent
    longer = _second_reading(sure_read, "沪CT88056", (*sure_chars, 0.1))
    assert not decide_from_reads(_frames([sure_read, longer])).accepted


def test_the_province_head_of_another_frame_vetoes_when_it_is_sure(sure_read: PlateRead) -> None:
    assert sure_read.second is not None

    def head(read: PlateRead, province: str, p: float) -> PlateRead:
        assert read.second is not None
        return replace(read, second=replace(read.second, province=province,
                                            province_confidence=p))

    no_text = _second_reading(sure_read, None, ())
    for p, accepted in ((0.97, False), (0.6, False), (0.4, True)):
        d = decide_from_reads(_frames([sure_read, head(no_text, "浙", p)]))
        assert d.accepted is accepted, (p, d.review_codes)
        if not accepted:
            assert d.review_codes == (ReviewCode.PROVINCE_UNCERTAIN.value,)
    # a frame both read, whose head names another province just under the threshold:
    # not confirming, and a sure dissent (review found this accepted)
    d = decide_from_reads(_frames([sure_read, head(sure_read, "浙", 0.89)]))
    assert d.review_codes == (ReviewCode.PROVINCE_UNCERTAIN.value,)
    # a frame both read whose head is unsure of the same province confirms nothing: the
    # other frame's unsure letter still counts (review: each alone failed, both passed)
    chars = sure_read.second.char_confidences
    weak_letter = _second_reading(sure_read, "沪CT8805", (chars[0], 0.8, *chars[2:]))
    d = decide_from_reads(_frames([weak_letter, head(sure_read, "沪", 0.6)]))
    assert d.review_codes == (ReviewCode.LOW_CONFIDENCE.value,)


def test_one_frame_keeps_the_one_frame_rule_with_two_reads_in_it(sure_read: PlateRead) -> None:
    """Two overlapping boxes of one plate in one frame (the detector keeps boxes up to IoU
    0.4): every read behind the text must be confirmed, as before."""
    x0, y0, x1, y1 = sure_read.box_px
    shift = (x1 - x0) * 0.45
    box = (x0 + shift, y0, x1 + shift, y1)
    other = _second_reading(sure_read, "沪CT8806", (*sure_read.char_confidences[:6], 0.3))
    other = replace(other, detection=replace(other.detection, box_px=box))
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    d = decide_from_reads([(VehicleFrame(image, "front", T0), [sure_read, other])])
    assert ReviewCode.RECOGNISER_DISAGREEMENT.value in d.review_codes and not d.accepted


def test_only_confirming_frames_count_over_several_frames(sure_read: PlateRead) -> None:
    ppocr_only = _second_reading(sure_read, None, ())
    frames = _frames([sure_read, ppocr_only])
    one_confirms = decide_from_reads(frames)
    assert one_confirms.accepted and one_confirms.agreeing_frames == 1
    two_frames = decide_from_reads(frames, policy=PlatePolicy(min_agreeing_frames=2))
    assert two_frames.review_codes == (ReviewCode.TOO_FEW_FRAMES.value,)
    assert two_frames.agreeing_frames == 1  # the field says what the rule counted
    three_reads = decide_from_reads(frames, policy=PlatePolicy(min_independent_reads=3))
    assert three_reads.review_codes == (ReviewCode.UNCONFIRMED.value,)
    assert decide_from_reads(_frames([sure_read, sure_read]),
                             policy=PlatePolicy(min_agreeing_frames=2)).accepted


def _narrow(read: PlateRead, width_px: float) -> PlateRead:
    """The same read with its plate ``width_px`` wide (corners scaled about the top left)."""
    c = np.array(read.detection.corners_px, dtype=np.float64)
    scale = width_px / float(np.linalg.norm(c[1] - c[0]))
    corners = tuple((float(x), float(y)) for x, y in c[0] + (c - c[0]) * scale)
    x0, y0 = c[0]
    box = (float(x0), float(y0), float(x0 + (read.box_px[2] - read.box_px[0]) * scale),
           float(y0 + (read.box_px[3] - read.box_px[1]) * scale))
    return replace(read, detection=replace(read.detection, corners_px=corners, box_px=box))


def test_width_and_colour_come_from_the_confirming_frames(sure_read: PlateRead) -> None:
    """A frame that counts neither way must not lend the confirming frame its width or its
    colour (second review: a 51 px confirmed plate plus a wide PP-OCRv4-only frame, or a
    blue confirmed plate plus yellow PP-OCRv4-only frames on a truck, were accepted)."""
    narrow = _narrow(sure_read, 51.0)
    ppocr_only = _second_reading(sure_read, None, ())
    assert decide_from_reads(_frames([narrow])).review_codes == (
        ReviewCode.LOW_RESOLUTION.value,)
    d = decide_from_reads(_frames([narrow, ppocr_only]))
    assert not d.accepted and ReviewCode.LOW_RESOLUTION.value in d.review_codes
    truck = WeighedVehicleFacts(axle_count=4)
    yellow = replace(ppocr_only, colour=PlateColour.YELLOW)
    assert sure_read.colour is PlateColour.BLUE
    d = decide_from_reads(_frames([sure_read, yellow, yellow]), truck)
    assert not d.accepted and ReviewCode.VEHICLE_CONFLICT.value in d.review_codes
    unknown = replace(sure_read, colour=PlateColour.UNKNOWN)
    d = decide_from_reads(_frames([unknown, ppocr_only, ppocr_only]))
    assert not d.accepted and ReviewCode.COLOUR_UNKNOWN.value in d.review_codes


def test_a_sure_other_plate_where_ppocr_reads_nothing_vetoes(sure_read: PlateRead) -> None:
    """The next frame of the same camera, tracked with the plate (same box): PP-OCRv4 reads
    nothing valid there and the plate model surely reads another plate: review."""
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    chars = sure_read.char_confidences

    def next_frame(second_text: str | None, p: float) -> list[tuple[VehicleFrame, list[PlateRead]]]:
        other = _second_reading(replace(sure_read, text=None), second_text,
                                (*chars[:6], p) if second_text else ())
        return [(VehicleFrame(image, "front", T0), [sure_read]),
                (VehicleFrame(image, "front", T0 + timedelta(milliseconds=200)), [other])]

    d = decide_from_reads(next_frame("沪CT8806", 0.97))
    assert not d.accepted and ReviewCode.RECOGNISER_DISAGREEMENT.value in d.review_codes
    assert decide_from_reads(next_frame("沪CT8806", 0.3)).accepted
    assert decide_from_reads(next_frame(None, 0.0)).accepted


def test_a_second_read_of_another_text_lends_no_sureness(sure_read: PlateRead) -> None:
    """An overlapping detection in a confirming frame where PP-OCRv4 reads nothing and the
    plate model surely reads another plate must not make the plate model sure of this one."""
    assert sure_read.second is not None
    chars = sure_read.second.char_confidences
    unsure = _second_reading(sure_read, "沪CT8805", (*chars[:3], 0.8, *chars[4:]))
    x0, y0, x1, y1 = sure_read.box_px
    shift = (x1 - x0) * 0.45
    lender = _second_reading(replace(sure_read, text=None), "沪CT8806", (0.999,) * 7)
    lender = replace(lender, detection=replace(lender.detection,
                                               box_px=(x0 + shift, y0, x1 + shift, y1)))
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    frames = [(VehicleFrame(image, "front", T0), [unsure, lender]),
              (VehicleFrame(image, "front", T0 + timedelta(milliseconds=200)), [unsure])]
    d = decide_from_reads(frames)
    assert not d.accepted and ReviewCode.LOW_CONFIDENCE.value in d.review_codes


def test_frames_of_one_recogniser_do_not_make_the_other_sure(sure_read: PlateRead) -> None:
    """Two frames both read, the plate model unsure of a letter on each: PP-OCRv4's two sure
    reads do not stand in for it (the k-th best over all decodings would have let them)."""
    assert sure_read.second is not None
    chars = sure_read.second.char_confidences
    unsure_letter = _second_reading(sure_read, "沪CT8805", (chars[0], 0.8, *chars[2:]))
    d = decide_from_reads(_frames([unsure_letter, unsure_letter]))
    assert d.review_codes == (ReviewCode.LOW_CONFIDENCE.value,)
    one_sure = decide_from_reads(_frames([unsure_letter, sure_read]))
    assert one_sure.accepted


def test_very_low_confidence_is_never_confirmed(reader: PlateReader, dev_dir: Path) -> None:
    read = reader.read_path(dev_dir / "toll_0200.jpg")[0]
    assert read.confidence < POLICY.min_confidence
    assert ReviewCode.LOW_CONFIDENCE in codes(assess_read(read, POLICY))


def test_lane_region_must_be_inside_the_frame() -> None:
    with pytest.raises(PolicyError, match="lane region"):
        LaneRegion(left=0.6, right=0.4)
    with pytest.raises(PolicyError):
        LaneRegion(bottom=1.5)


def test_plate_outside_the_lane_goes_to_review(reader: PlateReader, dev_dir: Path) -> None:
    image = load_image(dev_dir / "toll_0008.jpg")
    reads = reader.read_image(image)
    frame = VehicleFrame(image, "front", T0)
    here = decide_from_reads([(frame, reads)])
    assert here.accepted, here.review_reasons
    elsewhere = PlatePolicy(lane_regions={"front": LaneRegion(left=0.0, right=0.3)})
    decision = decide_from_reads([(frame, reads)], policy=elsewhere)
    assert decision.review_codes == (ReviewCode.OUTSIDE_LANE.value,)
    assert decision.plate == "沪CT8805"  # pre-filled for the reviewer, not accepted
    other_camera = PlatePolicy(lane_regions={"rear": LaneRegion(left=0.0, right=0.3)})
    assert decide_from_reads([(frame, reads)], policy=other_camera).accepted


def _side_by_side(left: ImageBGR, right: ImageBGR) -> ImageBGR:
    height = min(left.shape[0], right.shape[0])

    def fit(image: ImageBGR) -> ImageBGR:
        width = round(image.shape[1] * height / image.shape[0])
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    return np.ascontiguousarray(np.hstack([fit(left), fit(right)]), dtype=np.uint8)


def test_two_plates_in_view_go_to_review(reader: PlateReader, dev_dir: Path) -> None:
    image = _side_by_side(
        load_image(dev_dir / "toll_0001.jpg"), load_image(dev_dir / "toll_0005.jpg")
    )
    reads = reader.read_image(image)
    assert len([r for r in reads if r.text is not None]) >= 2
    frame = VehicleFrame(image, "front", T0)
    decision = decide_from_reads([(frame, reads)])
    assert not decision.accepted
    assert ReviewCode.MULTIPLE_PLATES.value in decision.review_codes
    assert any("多块号牌" in r.message_zh for r in decision.review_reasons)
    # The lane region picks this lane's vehicle: the other plate no longer competes.
    left_lane = PlatePolicy(lane_regions={"front": LaneRegion(right=0.5)})
    mine = decide_from_reads([(frame, reads)], policy=left_lane)
    assert ReviewCode.MULTIPLE_PLATES.value not in mine.review_codes
    assert mine.plate == "川QEZ982"


def test_views_are_skipped_only_where_they_cannot_change_a_decision(dev_dir: Path) -> None:
    with_views = PlateReader(VisionConfig(views=PPOCR_VIEWS, use_plate_model=False))
    unsure = with_views.read_path(dev_dir / "toll_0200.jpg")[0]
    assert unsure.confidence < with_views.config.views_min_confidence and unsure.views == ()
    assert assess_read(unsure, POLICY) != ()


@pytest.mark.parametrize(
    ("colour", "kind", "consistent"),
    [
        (PlateColour.BLUE, "ordinary", True),
        (PlateColour.YELLOW, "trailer", True),
        (PlateColour.WHITE, "ordinary", False),
        (PlateColour.YELLOW_GREEN, "ordinary", False),
        (PlateColour.GREEN, "nev_small", True),
        (PlateColour.BLUE, "nev_small", False),
        (PlateColour.WHITE, "police", True),
        (PlateColour.BLUE, "police", False),
        (PlateColour.BLUE, "embassy", False),
        (PlateColour.BLUE, "hk_macao", False),
    ],
)
def test_colour_goes_with_the_plate_kind(colour: PlateColour, kind: str, consistent: bool) -> None:
    assert colour_kind_consistent(colour, kind) is consistent


def test_the_reads_record_is_what_evidence_accepts(sure_read: PlateRead) -> None:
    """``decision_reads``: JSON data, UTC times, probabilities within [0, 1] (a folded
    look-alike under bfloat16 can exceed 1 by rounding), raw reads cut to a bounded length."""
    import json

    from zhichao.vision.vehicle import READ_TEXT_MAX_CHARS, decision_reads

    assert sure_read.second is not None
    over = replace(sure_read, char_confidences=(1.0039,) + sure_read.char_confidences[1:],
                   raw_text="A" * 300,
                   second=replace(sure_read.second, province_confidence=1.0078))
    image = np.zeros((1200, 1600, 3), dtype=np.uint8)
    decision = decide_from_reads([(VehicleFrame(image, "front", T0), [over])])
    record = decision_reads(decision)
    assert json.loads(json.dumps(record)) == record
    (read,) = record["reads"]
    assert read["captured_utc"] == "2026-11-22T08:00:00Z" and read["camera"] == "front"
    assert read["char_confidences"][0] == 1.0 and all(
        0.0 <= v <= 1.0 for v in read["char_confidences"])
    assert read["plate_model"]["province_confidence"] == 1.0
    assert len(read["raw_text"]) == READ_TEXT_MAX_CHARS
    assert read["text"] == decision.plate and len(read["box_px"]) == 4
