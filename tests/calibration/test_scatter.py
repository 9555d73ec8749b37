"""σ(v) from what a site runs: the calibration profile carries its reference runs' scatter,
``zhichao weigh --calibration`` uses it, ``zhichao scatter`` pools in-service passages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.calibration.conftest import Session, lane_options
from zhichao.calibration.fit import write_profile
from zhichao.cli import main
from zhichao.devices.sim import simulate
from zhichao.weighing.calibration_profile import load_profile, parse_profile
from zhichao.weighing.scatter import profile_scatter, read_scatter, scatter_at


def test_the_profile_carries_sigma_by_speed(session4: Session) -> None:
    prof = session4.result.profile
    block = prof["site_scatter"]
    assert block["method"] == "reference_runs" and block["confidence"] == 0.95
    bands = profile_scatter(prof)
    assert bands, "a session at 20/40/60/80 km/h gives bands around its knots"
    for b in bands:
        # an upper bound on few passes lies above its estimate
        assert b.estimate is not None and b.relative_sd > b.estimate
        assert b.samples >= 8 and b.speed_max_kmh - b.speed_min_kmh == 20.0
    # the core accepts the profile, and its digest covers the block
    assert parse_profile(prof).sha256


def test_weigh_with_the_profile_uses_its_sigma(session4: Session, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write_profile(session4.result.profile, tmp_path / "profile.json")
    bands = profile_scatter(load_profile(path).raw)
    rec = session4.test[0]
    assert main(["weigh", "--json", "--calibration", str(path), str(rec)]) == 0
    with_profile = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert main(["weigh", "--json", str(rec)]) == 0
    without = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    sigma = scatter_at(with_profile["speed_kmh"], bands)
    assert sigma is not None  # the test session drives at 30/50/70 km/h, inside the bands
    assert with_profile["uncertainty_kg"] == pytest.approx(
        sigma * with_profile["gross_weight_kg"], abs=1.0)
    # without the profile: the prior, larger than what the site measured
    assert without["uncertainty_kg"] > with_profile["uncertainty_kg"]


def test_scatter_command_pools_in_service_passages(session4: Session, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    recs = simulate(200, 9, tmp_path / "traffic", lane_options(4), 50)
    out = tmp_path / "scatter.json"
    assert main(["scatter", *map(str, recs), "--out", str(out), "--min-passages", "10",
                 "--band-kmh", "20"]) == 0
    assert "本点总重离散已写入" in capsys.readouterr().out
    doc, bands = read_scatter(out)
    assert doc["method"] == "in_service_rows" and doc["passages"] >= 100 and bands
    for b in bands:
        assert b.samples >= 10 and b.estimate is not None and b.relative_sd >= b.estimate
    # zhichao weigh --scatter uses the file
    assert main(["weigh", "--json", "--scatter", str(out), str(recs[0])]) == 0
    v = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    sigma = scatter_at(v["speed_kmh"], bands, v["axle_count"])
    if sigma is not None:
        assert v["uncertainty_kg"] == pytest.approx(sigma * v["gross_weight_kg"], abs=1.0)
    # bad input: a clear error, exit 2
    assert main(["scatter", str(recs[0]), "--out", str(tmp_path / "x.json"),
                 "--confidence", "2"]) == 2
    assert main(["weigh", "--scatter", str(tmp_path / "missing.json"), str(recs[0])]) == 2
