"""The plate model's province head decides its first character (issue #20 item 2).

Hand-built CTC and head outputs, so each case is exact; ``decode`` never runs the network.
"""

from __future__ import annotations

import numpy as np
import pytest

from zhichao.vision.grammar import ALPHABET, TEMPLATES
from zhichao.vision.plate_model import PROVINCE_CLASSES, PlateModelRecogniser, with_province
from zhichao.vision.runtime import RECOGNISER_PLATE_CRNN, OnnxModel

COL = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def ctc_probs(text: str, province_row: dict[str, float]) -> np.ndarray:
    """40 steps: the province step has ``province_row``, each other character 0.95."""
    rows: list[dict[str, float]] = [province_row, {}]
    for ch in text[1:]:
        rows += [{ch: 0.95}, {}]
    rows += [{}] * (40 - len(rows))
    probs = np.zeros((40, 1 + len(ALPHABET)))
    for t, row in enumerate(rows):
        for ch, p in row.items():
            probs[t, COL[ch]] = p
        probs[t, 0] = 1.0 - probs[t].sum()
    return probs


def head(answer: str, p: float) -> np.ndarray:
    out = np.full(len(PROVINCE_CLASSES), (1.0 - p) / (len(PROVINCE_CLASSES) - 1))
    out[PROVINCE_CLASSES.index(answer)] = p
    return out


def recogniser(from_head: bool = True) -> PlateModelRecogniser:
    # decode() never runs the network: the model is named, not loaded
    return PlateModelRecogniser(OnnxModel(RECOGNISER_PLATE_CRNN, None, None, 1), from_head)


def test_head_answer_replaces_a_different_ctc_province() -> None:
    probs = ctc_probs("甘B74992", {"甘": 0.84, "沪": 0.1})
    read = recogniser().decode(probs, head("沪", 0.998), TEMPLATES)
    assert read.text == "沪B74992"
    assert read.char_confidences[0] == pytest.approx(0.998)
    assert read.char_confidences[1:] == pytest.approx((0.95,) * 6)
    assert (read.province, read.province_confidence) == ("沪", pytest.approx(0.998))


def test_a_surer_ctc_province_is_not_overridden() -> None:
    # the CTC reads 甘 at 0.985, the head 沪 at 0.95: the read stays 甘 (the policy then
    # sees a head not naming the read's province, and a sure other read still dissents)
    probs = ctc_probs("甘B74992", {"甘": 0.985, "沪": 0.01})
    for head_p in (0.95, 0.35):
        read = recogniser().decode(probs, head("沪", head_p), TEMPLATES)
        assert read.text == "甘B74992"
        assert read.char_confidences[0] == pytest.approx(0.985)
        assert (read.province, read.province_confidence) == ("沪", pytest.approx(head_p))


def test_ctc_decides_when_switched_off() -> None:
    probs = ctc_probs("甘B74992", {"甘": 0.84, "沪": 0.1})
    read = recogniser(from_head=False).decode(probs, head("沪", 0.998), TEMPLATES)
    assert read.text == "甘B74992"
    assert read.char_confidences[0] == pytest.approx(0.84)
    assert read.province == "沪"


def test_agreeing_province_carries_the_heads_probability() -> None:
    probs = ctc_probs("浙A0D384", {"浙": 0.6})
    read = recogniser().decode(probs, head("浙", 0.93), TEMPLATES)
    assert read.text == "浙A0D384"
    assert read.char_confidences[0] == pytest.approx(0.93)


def test_head_answer_without_a_path_leaves_the_ctc_read() -> None:
    # the CTC gives 沪 nothing at all (below the decoder's pruning): no valid path through it
    probs = ctc_probs("甘B74992", {"甘": 0.9})
    read = recogniser().decode(probs, head("沪", 0.99), TEMPLATES)
    assert read.text == "甘B74992"
    assert read.char_confidences[0] == pytest.approx(0.9)
    assert read.province == "沪"  # the policy sees the head not naming the read's province


def test_head_answering_embassy_narrows_to_the_embassy_template() -> None:
    assert [t.kind for t in with_province(TEMPLATES, "使")] == ["embassy"]
    assert "embassy" not in [t.kind for t in with_province(TEMPLATES, "沪")]
    # an ordinary read cannot become 使 + letters: the CTC read stays
    probs = ctc_probs("京A12345", {"京": 0.7, "使": 0.2})
    read = recogniser().decode(probs, head("使", 0.95), TEMPLATES)
    assert read.text == "京A12345"


def test_no_valid_read_keeps_no_text() -> None:
    probs = ctc_probs("甘B7", {"甘": 0.84, "沪": 0.1})
    read = recogniser().decode(probs, head("沪", 0.998), TEMPLATES)
    assert read.text is None and read.char_confidences == ()

