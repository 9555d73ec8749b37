"""`zhichao simulate` is deterministic per seed; `zhichao weigh --json` prints the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zhichao.cli import main

REQUIRED = {"time_utc", "lane_id", "speed_kmh", "acceleration_ms2", "axle_count",
            "axle_loads_kg", "wheel_loads_kg", "axle_spacings_m", "axle_groups",
            "gross_weight_kg", "vehicle_class", "limit_kg", "allowance_kg", "excess_kg",
            "excess_after_allowance_kg", "overloaded", "flags", "verdict"}


def test_simulate_is_deterministic_and_weigh_prints_json(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    for d in ("a", "b"):
        assert main(["simulate", "--vehicles", "3", "--seed", "4", "--out",
                     str(tmp_path / d)]) == 0
    a = (tmp_path / "a" / "rec_00001.npz").read_bytes()
    assert a == (tmp_path / "b" / "rec_00001.npz").read_bytes()
    capsys.readouterr()
    assert main(["weigh", "--json", str(tmp_path / "a" / "rec_00001.npz")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert json.loads(line).keys() >= REQUIRED


def test_weigh_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a recording")
    assert main(["weigh", str(bad)]) == 2
    assert "x.npz" in capsys.readouterr().err
