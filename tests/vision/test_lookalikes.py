"""PP-OCRv4's I and O against the plate grammar: I is read as 1, O and 0 are one glyph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zhichao.vision import ctc
from zhichao.vision.grammar import ALPHABET, TEMPLATES
from zhichao.vision.image import load_image
from zhichao.vision.plate_image import single_row_line
from zhichao.vision.reader import PlateReader
from zhichao.vision.recognise import READ_AS, SAME_GLYPH, LineRecogniser, fold_lookalikes

COL = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def test_the_grammar_never_allows_both_of_a_glyph_pair_at_one_position() -> None:
    for template in TEMPLATES:
        for allowed in template.positions:
            assert not set(SAME_GLYPH) <= allowed, (template.kind, sorted(allowed))
    assert not any(ch in ALPHABET for ch in READ_AS)


def _steps(rows: list[dict[str, float]]) -> np.ndarray:
    probs = np.zeros((len(rows), 1 + len(ALPHABET)))
    for t, row in enumerate(rows):
        for ch, p in row.items():
            probs[t, COL[ch]] = p
        probs[t, 0] = 1.0 - probs[t].sum()
    return probs


def _spelled(text: str) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for ch in text:
        rows += [{ch: 0.97}, {}]
    return rows


def test_a_split_zero_is_a_sure_zero_in_the_serial() -> None:
    rows = _spelled("皖A0N718")
    rows[4] = {"O": 0.506, "0": 0.49}
    probs = _steps(rows)
    assert ctc.decode(probs).char_probabilities[2] == pytest.approx(0.49)
    fold_lookalikes(probs, np.zeros((len(rows), 1)), [])
    result = ctc.decode(probs)
    assert result.text == "皖A0N718"
    assert result.char_probabilities[2] == pytest.approx(0.996)


def test_a_zero_glyph_as_issuing_letter_is_o() -> None:
    rows = _spelled("粤O1234警")
    rows[2] = {"0": 0.6, "O": 0.3}
    probs = _steps(rows)
    fold_lookalikes(probs, np.zeros((len(rows), 1)), [])
    result = ctc.decode(probs)
    assert result.text == "粤O1234警"
    assert result.char_probabilities[1] == pytest.approx(0.9)


def test_dictionary_i_is_added_to_one() -> None:
    rows = _spelled("苏EK1S57")
    rows[6] = {"1": 0.546}
    probs = _steps(rows)
    full = np.zeros((len(rows), 2))
    full[6, 1] = 0.445  # the dictionary's I, at the step of the 1
    fold_lookalikes(probs, full, [(1, COL["1"])])
    assert ctc.decode(probs).char_probabilities[3] == pytest.approx(0.991)


def test_the_real_dictionary_folds_i_into_one(reader: PlateReader, dev_dir: Path) -> None:
    model = reader.recogniser_model
    plain = LineRecogniser(model, fold_lookalikes=False)
    image = load_image(dev_dir / "toll_0187.jpg")
    (detection,) = reader.detector.detect(image)[:1]
    line = single_row_line(image, detection.corners_px, reader.config.rectify)
    (folded,) = reader.recogniser.recognise([line])
    (before,) = plain.recognise([line])
    characters = model.metadata()["character"].splitlines()
    x = (line[:, :, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    (full,) = model.run(x)
    i_column = 1 + characters.index("I")
    assert float(full[0][:, i_column].max()) > 0.1  # this plate's 1 is read partly as I
    assert np.allclose(folded[:, COL["1"]], before[:, COL["1"]] + full[0][:, i_column])
    same = before[:, COL["O"]] + before[:, COL["0"]]
    assert np.allclose(folded[:, COL["O"]], same) and np.allclose(folded[:, COL["0"]], same)
    others = [c for c in range(folded.shape[1]) if c not in (COL["1"], COL["O"], COL["0"])]
    assert np.array_equal(folded[:, others], before[:, others])
