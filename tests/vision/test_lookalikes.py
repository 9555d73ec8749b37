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


def test_zero_and_o_never_share_a_position() -> None:
    # what makes counting them together sound: 0 only in the serial, O only as the
    # issuing letter (粤O…); a pair that shares a position is refused
    assert ctc.SHARED_LOOKALIKES == (("0", "O"),)
    assert ctc.exclusive_pairs(ctc.SHARED_LOOKALIKES)
    assert not ctc.exclusive_pairs((("0", "D"),))
    probs = _steps(_spelled("浙A0D384"))
    for bad in ((("0", "D"),), (("0", "0"),), (("0", "I"),), (("0",),)):
        with pytest.raises(ValueError, match="look-alikes"):
            ctc.char_probabilities(probs, "浙A0D384", bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="look-alikes"):
            ctc.decode(probs, shared_lookalikes=bad)  # type: ignore[arg-type]


def test_a_serial_zero_split_with_o_is_as_sure_as_both() -> None:
    rows = _spelled("浙DX0L19")
    rows[6] = {"0": 0.52, "O": 0.45}  # the serial's first character, split 0 / O
    probs = _steps(rows)
    plain = ctc.decode(probs)
    shared = ctc.decode(probs, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    assert plain.text == shared.text == "浙DX0L19"  # the decoding is the same
    assert plain.alternatives == shared.alternatives
    assert plain.char_probabilities[3] == pytest.approx(0.52)
    assert shared.char_probabilities[3] == pytest.approx(0.97)
    others = [i for i in range(7) if i != 3]
    assert [shared.char_probabilities[i] for i in others] == [
        plain.char_probabilities[i] for i in others]
    assert shared == ctc.decode_reference(probs, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    # an issuing-letter O split with 0 likewise
    rows = _spelled("粤O1234D")
    rows[2] = {"O": 0.5, "0": 0.47}
    read = ctc.decode(_steps(rows), shared_lookalikes=ctc.SHARED_LOOKALIKES)
    assert read.text == "粤O1234D" and read.char_probabilities[1] == pytest.approx(0.97)


def test_an_issuing_o_lends_nothing_to_the_next_zero() -> None:
    # 粤O01234 with a long O: the serial 0's confidence is its own steps' (the alignment
    # is the plain one), not the O's steps spent a second time
    rows = [{"粤": 0.97}, {}, {"O": 0.9, "0": 0.05}, {"O": 0.9, "0": 0.05}, {"O": 0.6, "0": 0.3},
            {}, {"0": 0.5, "D": 0.45}, {}]
    rows += _spelled("1234")
    probs = _steps(rows)
    read = ctc.decode(probs, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    assert read.text == "粤O01234"
    assert read.char_probabilities[2] == pytest.approx(0.5)  # its own step: 0 0.5, O 0


def test_one_glyph_split_over_o_and_zero_is_not_counted_twice() -> None:
    # 粤O1234D whose O is split over O and 0 steps with no blank between: decoded as the
    # NEV 粤O01234D, and both the O and the 0 must stay as unsure as they were (summed,
    # each would count the same glyph: 0.95 / 0.95)
    rows = [{"粤": 0.97}, {}, {"O": 0.75, "0": 0.20}, {"O": 0.35, "0": 0.60}, {}]
    rows += _spelled("1234D")
    probs = _steps(rows)
    plain = ctc.decode(probs)
    shared = ctc.decode(probs, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    assert plain.text == shared.text == "粤O01234D"
    assert shared.char_probabilities == plain.char_probabilities
    assert shared.char_probabilities[1:3] == pytest.approx((0.75, 0.60))
    assert shared == ctc.decode_reference(probs, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    # with a character between them, each is its own glyph again
    rows = [{"粤": 0.97}, {}, {"O": 0.5, "0": 0.47}, {}, {"1": 0.97}, {}, {"0": 0.5, "O": 0.47}, {}]
    rows += _spelled("234")
    read = ctc.decode(_steps(rows), shared_lookalikes=ctc.SHARED_LOOKALIKES)
    assert read.text == "粤O10234"
    assert read.char_probabilities[1] == read.char_probabilities[3] == pytest.approx(0.97)


def test_a_pair_is_checked_against_the_templates_in_use() -> None:
    from zhichao.vision.grammar import Template

    both = (Template("odd", (frozenset("浙"), frozenset("0O"), frozenset("12"))),)
    probs = _steps(_spelled("浙01"))
    assert ctc.decode(probs, both).text == "浙01"
    with pytest.raises(ValueError, match="look-alikes"):
        ctc.decode(probs, both, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    with pytest.raises(ValueError, match="look-alikes"):
        ctc.char_probabilities(probs, "浙01", ctc.SHARED_LOOKALIKES, both)
    with pytest.raises(ValueError, match="look-alikes"):
        ctc.decode(probs, shared_lookalikes=[["0", "O"]])  # type: ignore[arg-type]


def test_a_shared_confidence_is_at_most_one() -> None:
    rows = _spelled("浙DX0L19")
    rows[6] = {"0": 0.6, "O": 0.45}  # rounding (bfloat16) can make a row sum above 1
    probs = _steps(rows)
    probs[6, 0] = 0.0
    read = ctc.decode(probs, shared_lookalikes=ctc.SHARED_LOOKALIKES)
    assert read.char_probabilities[3] == 1.0


def test_shared_char_probabilities_equal_the_reference() -> None:
    rng = np.random.default_rng(12)
    for text in ("浙A0D384", "粤O01234", "皖AD10066", "使014578"):
        for n_steps in (len(text), 25, 40):
            logits = rng.normal(0.0, 2.0, size=(n_steps, 1 + len(ALPHABET)))
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
            assert ctc.char_probabilities(
                probs, text, ctc.SHARED_LOOKALIKES
            ) == ctc.char_probabilities_reference(probs, text, ctc.SHARED_LOOKALIKES)
