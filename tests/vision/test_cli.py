from __future__ import annotations

import json
from pathlib import Path

import pytest

from zhichao.cli import main


def test_plates_json_one_object_per_image(
    dev_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(dev_dir / "toll_0074.jpg"), str(dev_dir / "toll_0001.jpg")]
    assert main(["plates", "--json", *images]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["image"] for o in objects] == images
    best = objects[0]["plates"][0]
    assert best["text"] == "浙E13183"
    assert best["colour"] == "yellow" and best["layout"] == "single"
    assert best["accepted"] is True
    assert len(best["box"]) == 4 and 0 < best["confidence"] <= 1
    assert best["joint_text"] is None  # the province head agrees with PP-OCRv4


def test_plates_text_output(dev_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plates", str(dev_dir / "toll_0001.jpg")]) == 0
    assert "川QEZ982" in capsys.readouterr().out


def test_plates_eval(dev_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plates", "eval", str(dev_dir), "--limit", "12", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    names = {g["name"] for g in summary["groups"]}
    assert {"all", "scene", "scene/yellow"} <= names
    assert summary["latency_ms"]["scene_mean"] > 0


def test_plates_eval_on_a_folder_without_labels(tmp_path: Path) -> None:
    assert main(["plates", "eval", str(tmp_path)]) == 1
