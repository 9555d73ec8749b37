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

from training.plates.real import RealPlate, real_line, transplant_line
from zhichao.vision.hazards import swap_province
from zhichao.vision.image import load_image
from zhichao.vision.plate_lines import LINE_HEIGHT_PX, LINE_WIDTH_PX


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


def test_transplant_changes_the_province_and_its_label_only(crops: list[RealPlate]) -> None:
    rng = random.Random(3)
    provinces: collections.Counter[str] = collections.Counter()
    for plate in [p for p in crops if p.text[0] == "皖"][:10]:
        for _ in range(20):
            line, text = transplant_line(plate, crops, rng)
            assert line.shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX) and line.dtype == np.uint8
            assert text[0] != plate.text[0] and text[1:] == plate.text[1:]
            provinces[text[0]] += 1
    present = {p.text[0] for p in crops} - {"皖"}
    assert set(provinces) <= present
    # donors weighted by √(plates of the province): a one-plate province is not a third
    singles = [p for p in present if sum(q.text[0] == p for q in crops) == 1]
    for province in singles:
        assert provinces[province] < 0.25 * sum(provinces.values())


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
