"""`zhichao calibrate` and `zhichao accuracy`, end to end; `zhichao weigh --calibration`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.calibration.conftest import Session
from zhichao.cli import main


def test_calibrate_then_accuracy_then_weigh(session4: Session, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "profile.json"
    assert main(["calibrate", *map(str, session4.cal), "--reference", str(session4.cal_ref),
                 "--out", str(profile), "--created-utc", "2026-01-05T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "校准参数" in out and "剔除" in out
    prof = json.loads(profile.read_text(encoding="utf-8"))
    assert prof["profile_id"] == session4.result.profile["profile_id"]
    report = tmp_path / "acc.html"
    res_json = tmp_path / "acc.json"
    assert main(["accuracy", str(session4.test[0].parent), "--reference",
                 str(session4.test_ref), "--calibration", str(profile), "--report", str(report),
                 "--json", str(res_json)]) == 0
    out = capsys.readouterr().out
    assert "首次检定" in out and "COST 323" in out
    res = json.loads(res_json.read_text(encoding="utf-8"))
    assert res["profile_id"] == prof["profile_id"]
    assert res["passes_total"] == len(session4.test)
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # the core applies the profile
    assert main(["weigh", "--json", "--calibration", str(profile), str(session4.test[0])]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert json.loads(line)["calibration_profile"] == prof["profile_id"]


def test_cli_reports_bad_input(session4: Session, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "ref.csv"
    bad.write_text("recording,gross_weight_kg\n", encoding="utf-8")
    assert main(["calibrate", str(session4.cal[0]), "--reference", str(bad), "--out",
                 str(tmp_path / "p.json")]) == 2
    assert "ref.csv" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
    tables = tmp_path / "t.json"
    tables.write_text('{"oiml_r134": {}}', encoding="utf-8")
    assert main(["accuracy", str(session4.test[0]), "--reference", str(session4.test_ref),
                 "--tables", str(tables), "--report", str(tmp_path / "r.html")]) == 2
    assert "t.json" in capsys.readouterr().err
