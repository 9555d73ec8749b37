"""PP-OCRv4's I and O against the plate grammar: added to 1 and 0 (no GA 36 serial has them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zhichao.vision import ctc
from zhichao.vision.grammar import ALPHABET, TEMPLATES
from zhichao.vision.image import load_image
from zhichao.vision.plate_image import single_row_line
from zhichao.vision.reader import PlateReader
from zhichao.vision.recognise import READ_AS, LineRecogniser, fold_lookalikes

COL = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def test_no_position_allows_a_folded_character_beside_its_target() -> None:
    # where the target (1, 0) may stand, the folded character (I, O) may not
    assert READ_AS == {"I": "1", "O": "0"}
    for template in TEMPLATES:
        for allowed in template.positions:
            for source, target in READ_AS.items():
                assert not (source in allowed and target in allowed), (template.kind, source)
    assert "I" not in ALPHABET


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
    fold_lookalikes(probs, probs.copy(), [(COL["O"], COL["0"])])
    result = ctc.decode(probs)
    assert result.text == "皖A0N718"
    assert result.char_probabilities[2] == pytest.approx(0.996)


def test_the_issuing_letter_o_is_not_raised() -> None:
    # O as issuing letter (粤O…) keeps its own probability: nothing is added to O, so a
    # 0-glyph there (a D misread, say) never becomes a sure O
    rows = _spelled("粤O1234警")
    rows[2] = {"0": 0.6, "O": 0.3}
    probs = _steps(rows)
    fold_lookalikes(probs, probs.copy(), [(COL["O"], COL["0"])])
    result = ctc.decode(probs)
    assert result.text == "粤O1234警"
    assert result.char_probabilities[1] == pytest.approx(0.3)


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
    assert np.allclose(folded[:, COL["0"]], before[:, COL["0"]] + before[:, COL["O"]])
    others = [c for c in range(folded.shape[1]) if c not in (COL["1"], COL["0"])]
    assert np.array_equal(folded[:, others], before[:, others])
