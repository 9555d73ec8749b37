"""Dev-set figures with the real models on all 300 images, decided by the accept policy.

The policy's thresholds are fitted on the training set (``benchmarks/vision_accept.py
--fit``), never here; these tests hold the dev figures of ``docs/vision.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zhichao.vision.evaluate import EvalReport, evaluate_folder
from zhichao.vision.reader import PlateReader

MIN_SCENES_ACCEPTED = 0.77
"""A few points under the measured share (docs/vision.md), so a regression shows."""


@pytest.fixture(scope="module")
def report(dev_dir: Path, reader: PlateReader) -> EvalReport:
    return evaluate_folder(dev_dir, reader)


def test_scene_exact_match_at_least_98_percent(report: EvalReport) -> None:
    assert report.group("scene").exact_rate >= 0.98


def test_yellow_exact_match_at_least_96_percent(report: EvalReport) -> None:
    # 63 of 64 measured with the joint province (toll_0202: PP-OCRv4 split 0.13 / 0.13
    # between 豫 and 赣, the filled-in province 赣) in bfloat16 and in float32; another CPU's
    # numerics may tip one more near tie, so two under the measured count (docs/vision.md)
    assert report.group("scene/yellow").exact_rate >= 0.96
    assert report.group("colour/yellow").count == 64


def test_no_wrong_plate_is_accepted(report: EvalReport) -> None:
    wrong = [i.file for i in report.items if i.accepted and not i.correct]
    assert wrong == []


def test_scenes_accepted(report: EvalReport) -> None:
    # conservative by design: under any doubt, review (docs/vision.md gives the figure)
    assert report.group("scene").accept_rate >= MIN_SCENES_ACCEPTED


def test_crops_are_read(report: EvalReport) -> None:
    assert report.group("crop").exact_rate >= 0.93
    assert report.group("crop").char_accuracy >= 0.98


def test_plate_colour_classification(report: EvalReport) -> None:
    scenes = report.group("scene")
    assert scenes.colour_correct >= 0.99 * scenes.count
    # blue (scenes and 94 px crops) never comes out unknown, white, black or another colour
    blue = [i for i in report.items if i.colour == "blue"]
    assert [(i.file, i.read_colour) for i in blue if i.read_colour != "blue"] == []


def test_deterministic(dev_dir: Path, reader: PlateReader) -> None:
    first = reader.read_path(dev_dir / "toll_0003.jpg")
    second = reader.read_path(dev_dir / "toll_0003.jpg")
    assert [(r.text, r.confidence, r.box_px) for r in first] == [
        (r.text, r.confidence, r.box_px) for r in second
    ]
