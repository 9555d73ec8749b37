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
    chosen, p = joint_province(probs, "豫A1", _head(赣=0.9, 豫=0.05), PROVINCES)
    assert chosen == "赣" and 0.5 < p < 1.0
    # a sure PP-OCRv4 read stands against a head that is sure of another province
    sure = _probs([{"豫": 0.99, "赣": 0.001}, {"A": 0.99}, {"1": 0.99}])
    assert joint_province(sure, "豫A1", _head(赣=0.9, 豫=0.001), PROVINCES)[0] == "豫"
    # only the candidates are weighed
    assert joint_province(probs, "豫A1", _head(赣=0.9, 豫=0.05), "豫")[0] == "豫"
    for head, candidates, row in (((0.5,) * 3, PROVINCES, "豫A1"),
                                  (_head(赣=0.9), "", "豫A1"),
                                  (_head(赣=0.9), "A", "豫A1"),
                                  (_head(赣=0.9), PROVINCES, "")):
        with pytest.raises(ValueError):
            joint_province(probs, row, head, candidates)


@pytest.fixture(scope="module")
def blurred(reader: PlateReader, dev_dir: Path) -> tuple[np.ndarray, PlateRead]:
    """A real dev scene (浙A71W58) with its province character blurred away: PP-OCRv4 reads
    another province unsurely, the province head still reads 浙 (docs/vision.md)."""
    image = load_image(dev_dir / "toll_0039.jpg")
    corners = reader.read_image(image)[0].detection.corners_px
    hazy = blur_province(image, corners)
    return hazy, reader.read_image(hazy)[0]


def test_a_blurred_province_is_chosen_with_the_head_and_sent_to_review(
    blurred: tuple[np.ndarray, PlateRead], reader: PlateReader
) -> None:
    image, read = blurred
    assert read.second is not None and read.second.province == "浙"
    assert read.text == "浙A71W58"
    assert read.ppocr_own_text is not None and read.ppocr_own_text[0] != "浙"
    assert read.ppocr_own_text[1:] == read.text[1:]
    assert read.alternatives[0].text == read.ppocr_own_text  # PP-OCRv4's own read kept
    assert read.confidence == min(read.char_confidences)
    decision = decide_from_reads([(VehicleFrame(image, "front", T0), [read])])
    assert decision.plate == "浙A71W58" and not decision.accepted
    assert decision.province_joint
    assert decision.review_codes[0] == ReviewCode.PROVINCE_UNCERTAIN.value
    assert "chosen with the plate model's province head" in decision.review_reasons[0].detail
    assert ReviewCode.PROVINCE_UNCERTAIN in [r.code for r in assess_read(read, PlatePolicy())]
    (record,) = decision_reads(decision)["reads"]
    assert json.loads(json.dumps(record)) == record
    assert record["text"] == "浙A71W58" and record["ppocr_own_text"] == read.ppocr_own_text
    # switched off: PP-OCRv4's own read, as before
    off = PlateReader(replace(reader.config, joint_province=False))
    plain = off.read_image(image)[0]
    assert plain.text == read.ppocr_own_text and plain.ppocr_own_text is None


def test_a_joint_read_is_never_accepted_however_sure(
    blurred: tuple[np.ndarray, PlateRead],
) -> None:
    image, read = blurred
    assert read.second is not None
    sure = replace(
        read,
        char_confidences=(1.0,) * len(read.text or ""),
        confidence=1.0,
        second=replace(read.second, text=read.text, char_confidences=(1.0,) * 7,
                       province_confidence=1.0),
    )
    frames = [(VehicleFrame(image, camera, T0), [sure]) for camera in ("front", "rear")]
    for decision in (decide_from_reads(frames[:1]), decide_from_reads(frames)):
        assert not decision.accepted
        assert ReviewCode.PROVINCE_UNCERTAIN.value in decision.review_codes
    # the same read without the joint choice is accepted: the code is what stops it
    assert decide_from_reads([(frames[0][0], [replace(sure, ppocr_own_text=None)])]).accepted


def test_the_head_must_be_sure_and_disagree(reader: PlateReader, dev_dir: Path) -> None:
    read = reader.read_path(dev_dir / "toll_0008.jpg")[0]
    assert read.text == "沪CT8805" and read.ppocr_own_text is None and read.second is not None
    probs = reader.recogniser.recognise([read.line_images[0]])[0]
    unsure_head = replace(read.second, province="浙", province_confidence=0.49,
                          province_probabilities=_head(浙=0.49))
    unsure = replace(read, second=unsure_head)
    assert reader._with_joint_province(unsure, probs) == unsure
    # a sure head against a sure PP-OCRv4 read: the product keeps PP-OCRv4's province
    sure_head = replace(unsure_head, province_confidence=0.99,
                        province_probabilities=_head(浙=0.99))
    kept = reader._with_joint_province(replace(read, second=sure_head), probs)
    assert kept.text == "沪CT8805" and kept.ppocr_own_text is None
    off = PlateReader(VisionConfig(joint_province=False))
    assert off._with_joint_province(replace(read, second=sure_head), probs).ppocr_own_text is None
