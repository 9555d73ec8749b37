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


# --- the compiled kernels against the plain-Python reference --------------------------


def peaky(rng: np.random.Generator, n_steps: int, spread: float = 2.0) -> np.ndarray:
    """Random softmax rows with one dominant column each, like a recogniser's output."""
    logits = rng.normal(0.0, spread, size=(n_steps, 1 + len(ALPHABET)))
    logits[np.arange(n_steps), rng.integers(0, 1 + len(ALPHABET), n_steps)] += rng.uniform(
        0.0, 12.0, n_steps
    )
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n_steps", [1, 3, 25, 40])
@pytest.mark.parametrize("beam_width", [1, 8, 12])
def test_compiled_decode_equals_the_reference_exactly(n_steps: int, beam_width: int) -> None:
    from zhichao.vision.grammar import split_templates

    rng = np.random.default_rng(n_steps * 100 + beam_width)
    for templates in (TEMPLATES, *split_templates(TEMPLATES)):
        for spread in (0.5, 2.0, 4.0):
            for _ in range(10):
                probs = peaky(rng, n_steps, spread)
                fast = ctc.decode(probs, templates, beam_width)
                slow = ctc.decode_reference(probs, templates, beam_width)
                assert fast == slow  # texts, kinds, every probability bit for bit


def test_compiled_decode_equals_the_reference_on_ties_and_zeros() -> None:
    # equal totals (ties keep the reference's order) and rows of exact zeros
    steps = spelled("浙A0D384")
    steps[6] = {"D": 0.45, "0": 0.45}
    steps[8] = {"3": 0.5, "8": 0.5}
    probs = matrix(steps)
    assert ctc.decode(probs) == ctc.decode_reference(probs)
    zeros = np.zeros((6, 1 + len(ALPHABET)))
    assert ctc.decode(zeros) == ctc.decode_reference(zeros)
    assert ctc.decode(zeros).text is None
    prune_none = ctc.decode(probs, prune_probability=0.0)
    assert prune_none == ctc.decode_reference(probs, prune_probability=0.0)


def test_compiled_char_probabilities_equal_the_reference() -> None:
    rng = np.random.default_rng(11)
    for text in ("浙A0D384", "皖AD1166", "粤BD12345", "使014578", "AA"):
        for n_steps in (len(text), 25, 40):
            probs = peaky(rng, n_steps)
            assert ctc.char_probabilities(probs, text) == ctc.char_probabilities_reference(
                probs, text
            )
    assert ctc.char_probabilities(peaky(rng, 5), "") == ()


def test_decode_refuses_malformed_probabilities() -> None:
    with pytest.raises(ValueError, match="steps"):
        ctc.decode(np.zeros((5, 10)))
    with pytest.raises(ValueError, match="steps"):
        ctc.decode(np.zeros(1 + len(ALPHABET)))
    bad = matrix(spelled("浙A0D384"))
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ctc.decode(bad)
    with pytest.raises(ValueError, match="beam_width"):
        ctc.decode(matrix(spelled("浙A0D384")), beam_width=0)
