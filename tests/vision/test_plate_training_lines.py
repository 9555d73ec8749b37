"""The plate model's real training lines (``training/plates/real.py``): province
transplants between real plates and the inverted (yellow-polarity) lines of the fourth run.

No torch needed. Uses real crops of ``shared/data/plates/train`` (its ``SOURCES.md``).
"""

from __future__ import annotations

import collections
import csv
import random
from pathlib import Path

import numpy as np
import pytest

from training.plates import real
from training.plates.real import (
    RealPlate,
    double_row_line,
    load_real,
    real_line,
    relay_double_row,
    transplant_line,
)
from zhichao.station.scene import render_double_plate, render_plate
from zhichao.vision.detect import Detection
from zhichao.vision.evaluate import is_held_out
from zhichao.vision.hazards import swap_province
from zhichao.vision.image import load_image
from zhichao.vision.plate_image import Layout
from zhichao.vision.plate_lines import LINE_HEIGHT_PX, LINE_WIDTH_PX
from zhichao.vision.reader import PlateReader


@pytest.fixture(scope="module")
def crops(dev_dir: Path) -> list[RealPlate]:
    """A few real training crops: every non-皖 one and the first 20 皖 ones."""
    train = dev_dir.parent / "train"
    with (train / "labels.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "crop"]
    chosen = [r for r in rows if r["plate"][0] != "皖"] + [
        r for r in rows if r["plate"][0] == "皖"
    ][:20]
    out = []
    for row in chosen:
        image = load_image(train / row["file"])
        h, w = image.shape[:2]
        corners = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
        out.append(RealPlate(row["file"], row["plate"], image, corners, False))
    return out


def test_transplant_changes_the_province_and_its_label_only(
    crops: list[RealPlate], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The label's province is the donor's (the glyph pasted in), the rest the recipient's;
    donors of a province are drawn with weight √(its plates)."""
    donors: list[str] = []

    def recording_swap(
        image: np.ndarray, corners: object, donor: np.ndarray, donor_corners: object
    ) -> np.ndarray:
        donors.append(next(p.text for p in crops if p.image is donor))
        return swap_province(image, corners, donor, donor_corners)  # type: ignore[arg-type]

    monkeypatch.setattr(real, "swap_province", recording_swap)
    rng = random.Random(3)
    provinces: collections.Counter[str] = collections.Counter()
    for plate in [p for p in crops if p.text[0] == "皖"][:10]:
        for _ in range(30):
            line, text = transplant_line(plate, crops, rng)
            assert line.shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX) and line.dtype == np.uint8
            assert text[0] == donors[-1][0] != plate.text[0] and text[1:] == plate.text[1:]
            provinces[text[0]] += 1
    present = collections.Counter(p.text[0] for p in crops if p.text[0] != "皖")
    assert set(provinces) == set(present)
    # √ weights: 苏 (most plates) drawn clearly more often than a one-plate province
    rare = min(present, key=lambda k: present[k])
    common = max(present, key=lambda k: present[k])
    assert present[common] >= 4 * present[rare]
    assert provinces[common] > 1.4 * provinces[rare]


def test_transplant_touches_only_the_province_columns(crops: list[RealPlate]) -> None:
    """The transplanted image, cut with the same corner jitter as the plain one, differs
    from it in the province character's columns, hardly elsewhere."""
    plate = next(p for p in crops if p.text[0] == "皖")
    donor = next(p for p in crops if p.text[0] != "皖")
    image = swap_province(plate.image, plate.corners, donor.image, donor.corners)
    moved = real_line(plate, random.Random(7), image)
    plain = real_line(plate, random.Random(7))
    diff = np.abs(moved.astype(int) - plain.astype(int)).mean(axis=0)
    province_cols = LINE_WIDTH_PX * 64 // 440 + 8  # GA 36: the province ends by 64 mm
    assert diff[:province_cols].mean() > 3 * diff[province_cols:].mean()


def test_no_transplant_without_another_province(crops: list[RealPlate]) -> None:
    only_anhui = [p for p in crops if p.text[0] == "皖"]
    line, text = transplant_line(only_anhui[0], only_anhui, random.Random(1))
    assert text == only_anhui[0].text and line.shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX)


def test_a_relaid_double_row_plate_is_read_by_the_runtime_double_row_path(
    reader: PlateReader, dev_dir: Path
) -> None:
    """relay_double_row puts the rows where GA 36 and the runtime's split expect them:
    a real high-resolution plate re-laid is read whole by PP-OCRv4's double-row path."""
    image = load_image(dev_dir / "toll_0004.jpg")
    single = reader.read_image(image)[0]
    assert single.text == "沪B74992"
    plate = relay_double_row(image, single.detection.corners_px, random.Random(0))
    assert plate.shape == (220, 440, 3)
    frame = np.full((400, 700, 3), 90, dtype=np.uint8)
    frame[100:320, 130:570] = plate
    corners = ((130.0, 100.0), (570.0, 100.0), (570.0, 320.0), (130.0, 320.0))
    read = reader.read_detections(frame, [Detection((130.0, 100.0, 570.0, 320.0), corners, 1.0)])
    assert read[0].layout is Layout.DOUBLE and read[0].text == "沪B74992"


def test_double_row_lines_are_inverted_and_keep_or_transplant_the_label(
    crops: list[RealPlate],
) -> None:
    rng = random.Random(5)
    plate = next(p for p in crops if p.text[0] == "皖")
    kept, text = double_row_line(plate, crops, rng, transplant=0.0)
    assert text == plate.text and kept.shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX)
    # a blue plate's light characters come out dark on light: the line is mostly bright
    assert float(np.median(kept)) > 127
    moved = {double_row_line(plate, crops, rng, transplant=1.0)[1] for _ in range(10)}
    assert all(t[1:] == plate.text[1:] and t[0] != "皖" for t in moved)


def test_relaid_characters_sit_in_their_ga36_double_row_boxes() -> None:
    """A clean single-row plate re-laid without jitter puts every character where the
    GA 36 double-row plate (as the simulated lane draws it) has it, within 2 px (mm)."""
    single = render_plate("沪B74992", "blue")
    full = ((0.0, 0.0), (440.0, 0.0), (440.0, 140.0), (0.0, 140.0))
    relaid = relay_double_row(single, full, random.Random(0), jitter_mm=0.0)
    expected = render_double_plate("沪B74992", "blue")
    boxes = [(110, 15, 80, 60), (250, 15, 80, 60)] + [
        (int(27.5 + 80 * i), 90, 65, 110) for i in range(5)
    ]
    for x, y, w, h in boxes:
        window = (slice(max(8, y - 8), min(212, y + h + 8)), slice(max(8, x - 8), x + w + 8))
        got = np.argwhere(relaid[window].min(axis=2) > 160)
        want = np.argwhere(expected[window].min(axis=2) > 160)
        assert got.size and want.size
        assert np.abs(got.min(axis=0) - want.min(axis=0)).max() <= 2
        assert np.abs(got.max(axis=0) - want.max(axis=0)).max() <= 2


def test_held_out_plates_never_enter_the_training_part() -> None:
    trained = load_real()
    held_out = load_real(held_out=True)
    assert trained and held_out
    assert not any(is_held_out(p.file) for p in trained)
    assert all(is_held_out(p.file) for p in held_out)
    assert {p.file for p in trained}.isdisjoint(p.file for p in held_out)
