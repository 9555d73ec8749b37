"""Constrained CTC decoding on hand-built probability matrices (exact, deterministic)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from zhichao.vision import ctc
from zhichao.vision.grammar import ALPHABET, TEMPLATES, Template

COL = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def matrix(steps: list[dict[str, float]]) -> np.ndarray:
    """Rows of {char or '' for blank: probability}; the rest of each row's mass goes to blank."""
    probs = np.zeros((len(steps), 1 + len(ALPHABET)))
    for t, row in enumerate(steps):
        for ch, p in row.items():
            probs[t, 0 if ch == "" else COL[ch]] = p
        probs[t, 0] += 1.0 - probs[t].sum()
    return probs


def spelled(text: str, p: float = 0.95) -> list[dict[str, float]]:
    steps: list[dict[str, float]] = []
    for ch in text:
        steps += [{ch: p}, {"": 1.0}]
    return steps


def test_clear_read_is_decoded_with_high_probability() -> None:
    result = ctc.decode(matrix(spelled("浙A0D384")))
    assert result.text == "浙A0D384"
    assert result.kind == "ordinary"
    assert min(result.char_probabilities) == pytest.approx(0.95)


def test_constraint_chooses_a_valid_character_over_a_likelier_invalid_one() -> None:
    steps = spelled("浙A0D384")
    steps[4] = {"O": 0.6, "0": 0.3}  # third character: O is never a serial character
    result = ctc.decode(matrix(steps))
    assert ctc.greedy_text(matrix(steps)) == "浙AOD384"
    assert result.text == "浙A0D384"
    assert result.char_probabilities[2] == pytest.approx(0.3)


def test_repeated_characters_need_a_blank_between_them() -> None:
    # "11" seen as one run of steps with no blank between: CTC can only read one "1"
    steps = spelled("皖AD") + [{"1": 0.9}, {"1": 0.9}, {"": 1.0}] + spelled("166")
    probs = matrix(steps)
    result = ctc.decode(probs)
    assert result.text == "皖AD1166"
    assert ctc.label_probability(probs, "皖AD11166") == 0.0


def test_no_valid_plate_gives_none_and_keeps_the_raw_read() -> None:
    result = ctc.decode(matrix(spelled("AB12")))
    assert result.text is None
    assert result.greedy_text == "AB12"


def test_alternatives_are_valid_and_ordered() -> None:
    steps = spelled("浙A0D384")
    steps[6] = {"D": 0.55, "0": 0.4}
    result = ctc.decode(matrix(steps))
    assert result.text == "浙A0D384"
    assert result.alternatives[0].text == "浙A00384"
    assert all(a.probability <= result.probability for a in result.alternatives)


def test_label_probability_matches_brute_force_sum_over_alignments() -> None:
    rng = np.random.default_rng(7)
    alphabet = "AB"
    templates = (Template("tiny", (frozenset("AB"), frozenset("AB"))),)
    probs = np.zeros((4, 1 + len(ALPHABET)))
    raw = rng.dirichlet(np.ones(3), size=4)
    probs[:, 0] = raw[:, 0]
    probs[:, COL["A"]] = raw[:, 1]
    probs[:, COL["B"]] = raw[:, 2]

    def collapse(path: tuple[str, ...]) -> str:
        out, prev = [], ""
        for ch in path:
            if ch != prev and ch != "":
                out.append(ch)
            prev = ch
        return "".join(out)

    totals: dict[str, float] = {}
    for path in itertools.product(["", *alphabet], repeat=4):
        p = float(np.prod([probs[t, 0 if ch == "" else COL[ch]] for t, ch in enumerate(path)]))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    for text in ("AB", "AA", "BA"):
        assert ctc.label_probability(probs, text) == pytest.approx(totals[text])
    best = ctc.decode(probs, templates, beam_width=16, prune_probability=0.0)
    two_char = {k: v for k, v in totals.items() if len(k) == 2}
    assert best.text == max(two_char, key=lambda k: two_char[k])
    assert best.probability == pytest.approx(two_char[best.text])


def test_every_template_can_be_decoded() -> None:
    for text in ("鲁H1234挂", "使014578", "粤BFA1234", "粤B12345D", "粤Z1234港"):
        result = ctc.decode(matrix(spelled(text)), TEMPLATES)
        assert result.text == text
