"""The plate model trained here (the second recogniser): pinned file, real reads, its line."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from zhichao.vision.hazards import swap_province
from zhichao.vision.image import load_image
from zhichao.vision.plate_lines import LINE_HEIGHT_PX, LINE_WIDTH_PX, double_line, single_line
from zhichao.vision.plate_model import PROVINCE_CLASSES
from zhichao.vision.policy import PlatePolicy, ReviewCode
from zhichao.vision.reader import PlateReader
from zhichao.vision.runtime import RECOGNISER_PLATE_CRNN, resolve_model
from zhichao.vision.vehicle import VehicleFrame, assess_read, decide_from_reads

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def test_shipped_plate_model_matches_its_pin() -> None:
    path, digest = resolve_model(RECOGNISER_PLATE_CRNN)
    assert digest == RECOGNISER_PLATE_CRNN.sha256
    assert path.stat().st_size < 5_000_000


def test_lines_have_the_model_input_size() -> None:
    frame = np.full((300, 500, 3), 127, dtype=np.uint8)
    corners = ((50.0, 50.0), (450.0, 60.0), (440.0, 190.0), (55.0, 180.0))
    assert single_line(frame, corners).shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX)
    assert double_line(frame, corners).shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX)


def test_model_outputs_are_distributions(reader: PlateReader) -> None:
    lines = [np.full((LINE_HEIGHT_PX, LINE_WIDTH_PX), v, dtype=np.uint8) for v in (0, 200)]
    for probs, province in reader.second_recogniser.run(lines):
        assert probs.shape == (40, 74)
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        assert province.shape == (len(PROVINCE_CLASSES),)
        assert abs(float(province.sum()) - 1.0) < 1e-4


def _dev_rows(dev_dir: Path, prefix: str, n: int) -> list[dict[str, str]]:
    with (dev_dir / "labels.csv").open(encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["file"].startswith(prefix)]
    return rows[:n]


def test_plate_model_reads_real_dev_crops_and_scenes(reader: PlateReader, dev_dir: Path) -> None:
    crops = _dev_rows(dev_dir, "lprnet_", 12)
    right = 0
    for row in crops:
        read = reader.read_crop_path(dev_dir / row["file"])
        assert read.second is not None
        right += read.second.text == row["plate"]
    assert right >= 8, f"{right} of {len(crops)} crops"  # 9 measured (docs/vision.md)
    yellow = [r for r in _dev_rows(dev_dir, "toll_", 80) if r["colour"] == "yellow"][:6]
    right = 0
    for row in yellow:
        reads = reader.read_path(dev_dir / row["file"])
        right += any(r.second is not None and r.second.text == row["plate"] for r in reads)
    assert right >= 2, f"{right} of {len(yellow)} yellow scenes"  # 3 measured


def test_swapped_province_is_never_accepted_wrong(reader: PlateReader, dev_dir: Path) -> None:
    """hazards.py's province swap on real scenes: a read that is not the new label is refused."""
    rows = [r for r in _dev_rows(dev_dir, "toll_", 30) if r["colour"] == "blue"][:4]
    images = [load_image(dev_dir / r["file"]) for r in rows]
    reads = [reader.read_image(image)[0] for image in images]
    for i, (row, image, read) in enumerate(zip(rows, images, reads, strict=True)):
        donor_i = (i + 1) % len(rows)
        swapped = swap_province(
            image, read.detection.corners_px, images[donor_i], reads[donor_i].detection.corners_px
        )
        label = rows[donor_i]["plate"][0] + row["plate"][1:]
        decision = decide_from_reads(
            [(VehicleFrame(swapped, "front", T0), reader.read_image(swapped))]
        )
        assert not decision.accepted or decision.plate == label, (row["file"], decision.plate)


def test_disagreeing_recognisers_on_a_real_read_go_to_review(
    reader: PlateReader, dev_dir: Path
) -> None:
    read = reader.read_path(dev_dir / "toll_0009.jpg")[0]
    assert read.second is not None and read.text is not None
    swapped = ("京" if read.text[0] != "京" else "津") + read.text[1:]
    other = replace(read, second=replace(read.second, text=swapped))
    assert ReviewCode.RECOGNISER_DISAGREEMENT in [r.code for r in assess_read(other, PlatePolicy())]
