"""The province chosen by both recognisers together where the province head surely names
another one than PP-OCRv4 (``reader.joint_province``): a better pre-fill, never accepted."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from zhichao.vision import ctc
from zhichao.vision.grammar import ALPHABET, PROVINCES
from zhichao.vision.hazards import blur_province
from zhichao.vision.image import load_image
from zhichao.vision.plate_model import PROVINCE_CLASSES
from zhichao.vision.policy import PlatePolicy, ReviewCode
from zhichao.vision.reader import PlateRead, PlateReader, VisionConfig, joint_province
from zhichao.vision.vehicle import (
    VehicleFrame,
    assess_read,
    decide_from_reads,
    decision_reads,
)

T0 = datetime(2026, 12, 8, 8, 0, 0, tzinfo=UTC)
COLUMN = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def _probs(steps: list[dict[str, float]]) -> np.ndarray:
    """CTC output with the given characters' probabilities per step (the rest blank)."""
    out = np.zeros((len(steps), 1 + len(ALPHABET)))
    for t, step in enumerate(steps):
        for ch, p in step.items():
            out[t, COLUMN[ch]] = p
        out[t, 0] = 1.0 - sum(step.values())
    return out


def _head(**probabilities: float) -> tuple[float, ...]:
    head = np.full(len(PROVINCE_CLASSES), 0.0)
    for ch, p in probabilities.items():
        head[PROVINCE_CLASSES.index(ch)] = p
    rest = 1.0 - head.sum()
    head[head == 0.0] = rest / np.count_nonzero(head == 0.0)
    return tuple(float(v) for v in head)


def test_first_character_probabilities_match_the_forward_algorithm() -> None:
    rng = np.random.default_rng(7)
    probs = rng.random((40, 1 + len(ALPHABET))) ** 6
    probs /= probs.sum(axis=1, keepdims=True)
    firsts = PROVINCES + "A"
    for rest in ("A12345", "AA1234", "", "1"):  # a repeated character needs a blank between
        got = ctc.first_character_probabilities(probs, firsts, rest)
        want = [ctc.label_probability(probs, c + rest) for c in firsts]
        assert got == pytest.approx(want, rel=1e-9, abs=0.0)
    with pytest.raises(ValueError):
        ctc.first_character_probabilities(probs, "", "A1")
    with pytest.raises(ValueError):
        ctc.first_character_probabilities(probs, "沪", "a1")
    with pytest.raises(ValueError):
        ctc.first_character_probabilities(probs[:, :5], "沪", "A1")


def test_the_province_both_find_most_probable() -> None:
    # PP-OCRv4 barely prefers 豫 to 赣 (a blurred glyph); the head surely names 赣
    steps = [{"豫": 0.3, "赣": 0.25}, {"A": 0.99}, {"1": 0.99}]
    probs = _probs(steps)
    assert joint_province(probs, "豫A1", _head(赣=0.9, 豫=0.05), PROVINCES) == (
        "赣", pytest.approx(0.25 * 0.9 / (0.25 * 0.9 + 0.3 * 0.05), rel=1e-3))
    # a sure PP-OCRv4 read stands against a head that is sure of another province
    sure = _probs([{"豫": 0.99, "赣": 0.001}, {"A": 0.99}, {"1": 0.99}])
    assert joint_province(sure, "豫A1", _head(赣=0.9, 豫=0.001), PROVINCES) == (
        "豫", pytest.approx(0.99 * 0.001 / (0.99 * 0.001 + 0.001 * 0.9), rel=1e-2))
    # only the candidates are weighed: without 赣, the product of the others decides
    three = _probs([{"豫": 0.3, "赣": 0.25, "皖": 0.2}, {"A": 0.99}, {"1": 0.99}])
    head = _head(赣=0.6, 皖=0.35, 豫=0.01)
    assert joint_province(three, "豫A1", head, PROVINCES) == ("赣", pytest.approx(
        0.15 / (0.15 + 0.07 + 0.003), rel=1e-2))
    assert joint_province(three, "豫A1", head, "豫皖") == ("皖", pytest.approx(
        0.07 / (0.07 + 0.003), rel=1e-2))
    for head, candidates, row in (((0.5,) * 3, PROVINCES, "豫A1"),
                                  (_head(赣=0.9), "", "豫A1"),
                                  (_head(赣=0.9), "A", "豫A1"),
                                  (_head(赣=0.9), PROVINCES, "")):
        with pytest.raises(ValueError):
            joint_province(probs, row, head, candidates)


@pytest.fixture(scope="module")
def blurred(reader: PlateReader, dev_dir: Path) -> tuple[np.ndarray, PlateRead]:
    """A real dev scene (浙A8DW01) with its province character blurred away: PP-OCRv4 reads
    another province unsurely, the province head still reads 浙 (docs/vision.md)."""
    image = load_image(dev_dir / "toll_0043.jpg")
    corners = reader.read_image(image)[0].detection.corners_px
    hazy = blur_province(image, corners)
    return hazy, reader.read_image(hazy)[0]


def test_a_blurred_province_is_chosen_with_the_head_and_sent_to_review(
    blurred: tuple[np.ndarray, PlateRead], reader: PlateReader
) -> None:
    image, read = blurred
    assert read.second is not None and read.second.province == "浙"
    assert read.text is not None and read.text[0] != "浙"  # PP-OCRv4's own read stays
    assert read.joint_text == "浙" + read.text[1:] == "浙A8DW01"
    assert len(read.joint_char_confidences) == 7
    decision = decide_from_reads([(VehicleFrame(image, "front", T0), [read])])
    assert decision.plate == "浙A8DW01" and not decision.accepted
    assert decision.province_joint and decision.kind == read.kind
    assert decision.review_codes[0] == ReviewCode.PROVINCE_JOINT.value
    assert "the plate model's province head together" in decision.review_reasons[0].detail
    assert read.text in [a.text for a in decision.alternatives]  # PP-OCRv4's own read
    assert ReviewCode.PROVINCE_JOINT in [r.code for r in assess_read(read, PlatePolicy())]
    (record,) = decision_reads(decision)["reads"]
    assert json.loads(json.dumps(record)) == record
    assert record["text"] == read.text and record["joint_text"] == "浙A8DW01"
    assert len(record["joint_char_confidences"]) == 7
    # switched off: the same read without the joint plate, decided as before
    off = PlateReader(replace(reader.config, joint_province=False))
    plain = off.read_image(image)[0]
    assert plain.joint_text is None
    assert plain == replace(read, joint_text=None, joint_char_confidences=())
    before = decide_from_reads([(VehicleFrame(image, "front", T0), [plain])])
    assert before.plate == read.text and not before.province_joint
    assert set(before.review_codes) <= set(decision.review_codes)


def _made_sure(read: PlateRead) -> PlateRead:
    """``read`` as if both recognisers read PP-OCRv4's text surely (accepted on its own)."""
    assert read.second is not None and read.text is not None
    return replace(
        read,
        char_confidences=(1.0,) * len(read.text),
        confidence=1.0,
        second=replace(read.second, text=read.text, char_confidences=(1.0,) * 7,
                       province=read.text[0], province_confidence=1.0),
    )


def test_a_joint_plate_is_never_accepted_however_sure(
    blurred: tuple[np.ndarray, PlateRead],
) -> None:
    image, read = blurred
    sure = _made_sure(read)
    plain = replace(sure, joint_text=None, joint_char_confidences=())
    frames = [(VehicleFrame(image, camera, T0), [sure]) for camera in ("front", "rear")]
    for n in (1, 2):
        assert decide_from_reads([(f, [plain]) for f, _ in frames[:n]]).accepted
        decision = decide_from_reads(frames[:n])
        assert not decision.accepted and decision.plate == "浙A8DW01"
        assert decision.review_codes == (ReviewCode.PROVINCE_JOINT.value,)
    assert [r.code for r in assess_read(sure, PlatePolicy())] == [ReviewCode.PROVINCE_JOINT]
    assert assess_read(plain, PlatePolicy()) == ()


def test_the_decision_is_pp_ocrv4s_own_with_at_most_a_reason_more(
    blurred: tuple[np.ndarray, PlateRead], sure_read: PlateRead
) -> None:
    """Whatever the frames, a decision with joint plates is the decision on PP-OCRv4's own
    reads (groups, vote, reasons, confidence, colour, sources) with at most the province of
    the plate filled in changed and ``province_joint`` put first: never accepted where that
    one was not."""
    image, read = blurred
    assert sure_read.second is not None
    front = _made_sure(sure_read)
    others = [read, _made_sure(read)]
    # reads 2 places from the front's (one group), a trailer's, the front's own text; the
    # joint plate's other characters realigned to other probabilities than PP-OCRv4's
    for text in ("沪CT8X0X", "沪CT8X0挂", "沪CT8805", "沪CT8806"):
        rear = replace(front, text=text, confidence=0.2,
                       char_confidences=(0.6, 0.2, *(0.9,) * (len(text) - 2)))
        others.append(replace(rear, joint_text="浙" + text[1:],
                              joint_char_confidences=(0.95, 0.99, *(0.3,) * (len(text) - 2))))
    changed = 0
    for other in others:
        for frames in ([("front", [front]), ("rear", [other])], [("rear", [other])],
                       [("front", [front, other])], [("rear", [other]), ("rear", [front])]):
            with_joint = [(VehicleFrame(image, cam, T0), reads) for cam, reads in frames]
            without = [(f, [replace(r, joint_text=None, joint_char_confidences=())
                            for r in reads]) for f, reads in with_joint]
            after, before = decide_from_reads(with_joint), decide_from_reads(without)
            assert after.accepted <= before.accepted
            for name in ("confidence", "colour", "layout", "alternatives", "trailer_plate",
                         "agreeing_frames", "plate_model_only"):
                if name != "alternatives" or after.plate == before.plate:
                    assert getattr(after, name) == getattr(before, name), name
            assert [s.text for s in after.sources] == [s.text for s in before.sources]
            if after.plate == before.plate:
                assert after.review_reasons == before.review_reasons
                assert not after.province_joint
            else:
                assert before.plate is not None and after.plate is not None
                assert after.plate[1:] == before.plate[1:]  # only the province
                assert after.province_joint and not after.accepted
                assert after.review_codes[0] == ReviewCode.PROVINCE_JOINT.value
                assert after.review_reasons[1:len(before.review_reasons) + 1] == \
                    before.review_reasons
                assert before.plate in [a.text for a in after.alternatives]
                changed += 1
    assert changed >= 6  # the joint plates do change the plate filled in


def _split_row(text: str, first: dict[str, float]) -> np.ndarray:
    """PP-OCRv4-like output for ``text`` (a blank between repeated characters) whose first
    step is split as ``first``, every other character at 0.99."""
    steps: list[dict[str, float]] = [first]
    for prev, ch in zip(text, text[1:], strict=False):
        if ch == prev:
            steps.append({})
        steps.append({ch: 0.99})
    return _probs(steps)


def _with_head(read: PlateRead, province: str, p: float) -> PlateRead:
    assert read.second is not None
    return replace(read, second=replace(read.second, province=province, province_confidence=p,
                                        province_probabilities=_head(**{province: p})))


@pytest.fixture(scope="module")
def sure_read(reader: PlateReader, dev_dir: Path) -> PlateRead:
    read = reader.read_path(dev_dir / "toll_0008.jpg")[0]
    assert read.text == "沪CT8805" and read.joint_text is None and read.second is not None
    return read


def test_the_head_must_be_sure_and_disagree(reader: PlateReader, sure_read: PlateRead) -> None:
    # PP-OCRv4 split between 沪 and 浙: a head naming 浙 at 0.51 chooses it, at 0.49 nothing
    split = _split_row("沪CT8805", {"沪": 0.3, "浙": 0.25})
    headed = _with_head(sure_read, "浙", 0.51)
    chosen = reader._with_joint_province(headed, split)
    assert chosen.joint_text == "浙CT8805"
    assert len(chosen.joint_char_confidences) == 7
    assert 0.5 < chosen.joint_char_confidences[0] < 1.0
    assert chosen.joint_char_confidences[1:] == pytest.approx((0.99,) * 6)
    assert replace(chosen, joint_text=None, joint_char_confidences=()) == headed  # own read kept
    unsure = _with_head(sure_read, "浙", 0.49)
    assert reader._with_joint_province(unsure, split) == unsure
    agreeing = _with_head(sure_read, "沪", 0.9)
    assert reader._with_joint_province(agreeing, split) == agreeing
    # a sure head against a sure PP-OCRv4 read: the product keeps PP-OCRv4's province
    sure = _split_row("沪CT8805", {"沪": 0.99, "浙": 1e-5})
    kept = reader._with_joint_province(_with_head(sure_read, "浙", 0.99), sure)
    assert kept.joint_text is None
    off = PlateReader(VisionConfig(joint_province=False))
    assert off._with_joint_province(_with_head(sure_read, "浙", 0.99), split).joint_text is None
    # nothing to choose by, or a head that is not a distribution: the read stays as it is
    headed = _with_head(sure_read, "浙", 0.99)
    assert headed.second is not None
    head_zero = replace(headed.second, province_probabilities=(0.0,) * 32)
    zero = replace(sure_read, second=head_zero)
    assert reader._with_joint_province(zero, split) == zero
    for bad in ((float("nan"),) * 32, (-0.5,) * 32):  # the confidence itself finite, 0.99
        odd = replace(zero, second=replace(head_zero, province_probabilities=bad))
        assert reader._with_joint_province(odd, split) == odd
    nan = replace(zero, second=replace(head_zero, province_confidence=float("nan")))
    assert reader._with_joint_province(nan, split) == nan
    # a head whose answer cannot start this plate (使 on an ordinary plate)
    embassy = _with_head(sure_read, "使", 0.99)
    assert reader._with_joint_province(embassy, split) == embassy
    assert joint_province(split, "沪CT8805", (0.0,) * 32, PROVINCES) is None


def test_a_double_row_plate_chooses_in_its_top_row(
    reader: PlateReader, sure_read: PlateRead
) -> None:
    """A double-row plate's province is in its top row (province + letter): only that row's
    output is weighed and realigned; the bottom row's characters stay as read."""
    from zhichao.vision.plate_image import Layout

    bottom = (0.97, 0.96, 0.95, 0.94, 0.93)
    double = replace(_with_head(sure_read, "浙", 0.8), layout=Layout.DOUBLE,
                     char_confidences=(0.3, 0.98, *bottom))
    top = _split_row("沪C", {"沪": 0.3, "浙": 0.25})
    chosen = reader._with_joint_province(double, top)
    assert chosen.joint_text == "浙CT8805" and chosen.text == "沪CT8805"
    assert chosen.joint_char_confidences[1] == pytest.approx(0.99)
    assert chosen.joint_char_confidences[2:] == bottom
    assert len(chosen.joint_char_confidences) == 7
