"""PP-OCRv4's I against the plate grammar: added to 1 (no GA 36 plate has an I)."""

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


def test_only_characters_no_plate_has_are_folded() -> None:
    # a folded character that is also a plate character would count twice: an issuing
    # letter O lasting several steps could be spent as O and then as a serial 0
    assert READ_AS == {"I": "1"}
    assert all(source not in ALPHABET and target in ALPHABET
               for source, target in READ_AS.items())
    assert all("I" not in allowed for t in TEMPLATES for allowed in t.positions)


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


def test_dictionary_i_is_added_to_one() -> None:
    rows = _spelled("苏EK1S57")
    rows[6] = {"1": 0.546}
    probs = _steps(rows)
    full = np.zeros((len(rows), 2))
    full[6, 1] = 0.445  # the dictionary's I, at the step of the 1
    before = probs.copy()
    fold_lookalikes(probs, full, [(1, COL["1"])])
    assert ctc.decode(before).char_probabilities[3] == pytest.approx(0.546)
    assert ctc.decode(probs).char_probabilities[3] == pytest.approx(0.991)
    others = [c for c in range(probs.shape[1]) if c != COL["1"]]
    assert np.array_equal(probs[:, others], before[:, others])


def test_a_long_issuing_letter_o_stays_one_character() -> None:
    # 粤O1234D with its O over three steps: read as it is, not as the NEV 粤O01234D
    rows = [{"粤": 0.97}, {}, {"O": 0.95}, {"O": 0.95}, {"O": 0.95}, {}]
    rows += _spelled("1234D")
    probs = _steps(rows)
    # the fold as configured, with the plate columns standing in for the dictionary's
    read_as = [(COL[s], COL[t]) for s, t in READ_AS.items() if s in COL]
    fold_lookalikes(probs, probs.copy(), read_as)
    assert ctc.decode(probs).text == "粤O1234D"


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
    others = [c for c in range(folded.shape[1]) if c != COL["1"]]
    assert np.array_equal(folded[:, others], before[:, others])
