"""Fitting a profile to reference trucks, and what it achieves on other traffic."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.calibration.conftest import CREATED, Session, lane_options
from zhichao.calibration.accuracy import verify_accuracy
from zhichao.calibration.errors import CalibrationError, ReferenceFileError
from zhichao.calibration.fit import calibrate, write_profile
from zhichao.calibration.measure import measure_recording, sha256_file
from zhichao.calibration.reference import read_reference
from zhichao.devices.sim.lane import read_truth
from zhichao.devices.sim.reference import make_fleet, simulate_reference_session
from zhichao.weighing.calibration_profile import load_profile, parse_profile


def test_split_into_half_strips_matches_the_truth(session4: Session) -> None:
    """The two-weighing split gives each half-strip's load: compare with the simulator's
    forces (true wheel loads × true sensitivity / nominal)."""
    for path in session4.cal[:12]:
        truth = read_truth(path)
        (loads,) = measure_recording(path)
        wheels = np.array(truth["vehicles"][0]["wheel_loads_kg"])
        sens = {c["name"]: c["sensitivity_true_per_n"] / 1e-4 for c in truth["channels"]}
        for r in loads.complete_rows:
            for s, side in enumerate("LR"):
                expected = wheels[:, s].sum() * sens[f"r{r + 1}{side}"]
                # dynamic loads scatter one row's reading by a few per cent
                assert loads.side_loads_kg[r, s] == pytest.approx(expected, rel=0.12)
        row_sum = np.nansum(loads.side_loads_kg, axis=1)
        assert np.allclose(row_sum[loads.complete_rows],
                           np.array(loads.vehicle.row_gross_weights_kg), atol=1.0)


def test_profile_is_complete_and_accepted_by_the_core(session4: Session, tmp_path: Path
                                                      ) -> None:
    prof = session4.result.profile
    path = write_profile(prof, tmp_path / "p.json")
    core = load_profile(path)
    assert core.profile_id == prof["profile_id"]
    assert set(core.channels) == {f"r{r}{s}" for r in range(1, 5) for s in "LR"}
    assert len(core.speed_factors) >= 3
    assert prof["created_utc"] == "2026-01-05T00:00:00.000000Z"
    assert prof["valid_until_utc"] > prof["valid_from_utc"]
    assert prof["data"]["reference_file"]["sha256"] == sha256_file(session4.cal_ref)
    hashes = {p["recording"]: p["sha256"] for p in prof["data"]["passes"]}
    assert hashes == {p.name: sha256_file(p) for p in session4.cal}
    for p in prof["data"]["passes"]:
        assert p["used"] or (p["reason"] and p["reason_zh"])
    assert prof["fit"]["temperature_coefficients_fitted"] is True
    for ch in prof["channels"].values():
        assert ch["sensitivity_u_rel"] > 0
    # versioned files: another profile does not overwrite this one
    other = json.loads(json.dumps(prof))
    other["profile_id"] = prof["profile_id"] + "-x"
    with pytest.raises(CalibrationError, match="another profile"):
        write_profile(other, path)


def test_fitted_rows_match_the_true_sensors(session4: Session) -> None:
    truth = {c["name"]: c for c in read_truth(session4.cal[0])["channels"]}
    prof = session4.result.profile["channels"]
    for r in range(1, 5):
        names = [f"r{r}L", f"r{r}R"]
        # the gross weight fixes each row's mean gain well (left/right rests on balance)
        true_gain = np.mean([1.0 / (1 + truth[n]["sensitivity_error"]) for n in names])
        fit_gain = np.mean([1e-4 / prof[n]["sensitivity_per_n"] for n in names])
        assert fit_gain == pytest.approx(true_gain, rel=0.01)
        # a row's temperature coefficient is known only to its stated uncertainty (one row's
        # dynamic scatter over a 40 °C span)
        true_tc = np.mean([truth[n]["temperature_coefficient_per_c"] for n in names])
        fit_tc = np.mean([prof[n]["temperature_coefficient_per_c"] for n in names])
        u_tc = np.hypot(*[prof[n]["temperature_coefficient_u_per_c"] for n in names]) / 2
        assert abs(fit_tc - true_tc) < 3 * u_tc
        for n in names:
            assert abs(prof[n]["sensitivity_per_n"] / 1e-4 - 1 - truth[n]["sensitivity_error"]
                       ) < 0.03
    # the lane as a whole (what the gross weight sees) is known better: ≈ 0.8 % per pass
    # over 106 passes spanning ±20 °C gives σ ≈ 5e-5 /°C
    all_true = np.mean([c["temperature_coefficient_per_c"] for c in truth.values()])
    all_fit = np.mean([c["temperature_coefficient_per_c"] for c in prof.values()])
    assert abs(all_fit - all_true) < 1.5e-4


def test_calibrated_lane_matches_an_ideal_lane_4_rows(session4: Session,
                                                       tmp_path: Path) -> None:
    """The issue's acceptance, as far as calibration can decide it. The same test traffic
    (same seed, same draws) over a lane with ideal sensors, weighed without a profile, is
    the floor: its errors are the dynamic loads as 4 rows sample them. After calibration
    every pass must be close to that floor, and within class 5 (±2.5 %) wherever the floor
    leaves a margin. The floor itself exceeds ±2.5 % in about 1 % of passes at 30–60 km/h
    and 3–7 % at 70–80 km/h (benchmarks/calibration_accuracy.py --dynamics), so the class
    of the whole set is reported, not asserted."""
    opts = replace(lane_options(4), sensitivity_error_pct=0.0, sensitivity_along_length_pct=0.0,
                   temperature_coefficient_per_c=0.0, temperature_coefficient_spread_per_c=0.0,
                   noise_units=0.0, offset_units=0.0, drift_units_per_sqrt_s=0.0)
    ideal_paths = simulate_reference_session(tmp_path / "ideal", 2, opts, make_fleet(3),
                                             [30, 50, 70], [5, 12, 28, 35], passes=2,
                                             prefix="test")
    profile = parse_profile(session4.result.profile)
    before = verify_accuracy(session4.test, session4.test_ref, None)
    after = verify_accuracy(session4.test, session4.test_ref, profile)
    ideal = verify_accuracy(ideal_paths, tmp_path / "ideal" / "reference.csv", None)
    assert len(after.valid) >= 0.95 * len(session4.test)
    print("4 rows: before", before.gross_class["initial"], "after",
          after.gross_class["initial"], "ideal lane", ideal.gross_class["initial"])
    e_ideal = {p.recording: float(p.gross_error_pct or 0.0) for p in ideal.valid}
    e_after = {p.recording: float(p.gross_error_pct or 0.0) for p in after.valid}
    both = sorted(set(e_ideal) & set(e_after))
    assert len(both) >= 0.95 * len(session4.test)
    diff = np.array([e_after[r] - e_ideal[r] for r in both])
    # what the calibration leaves: a small fraction of the dynamic scatter (≈ 0.8 %)
    assert float(np.std(diff)) < 0.3
    assert float(np.max(np.abs(diff))) < 0.75
    for r in both:
        if abs(e_ideal[r]) <= 2.0:
            assert abs(e_after[r]) <= 2.5, (r, e_after[r], e_ideal[r])
    e_before = np.array([p.gross_error_pct for p in before.valid])
    e_after_all = np.array([p.gross_error_pct for p in after.valid])
    assert float(np.mean(np.abs(e_after_all) <= 2.5)) >= 0.95
    assert abs(e_after_all.mean()) < 0.5  # the bias of the ±10 % sensors is gone
    assert abs(e_before.mean()) > 1.0
    assert after.gross_class["in_service"].achieved in ("0.2", "0.5", "1", "2", "5")
    # without calibration the ±10 % sensors are not class 5 at initial verification
    assert before.gross_class["initial"].achieved not in ("0.2", "0.5", "1", "2", "5")


def test_two_rows_improve_and_the_class_is_reported(session2: Session) -> None:
    profile = parse_profile(session2.result.profile)
    before = verify_accuracy(session2.test, session2.test_ref, None)
    after = verify_accuracy(session2.test, session2.test_ref, profile)
    print("2 rows: before", before.gross_class, "after", after.gross_class)
    assert after.gross_class["initial"].n > 0
    e_before = np.abs([p.gross_error_pct for p in before.valid])
    e_after = np.abs([p.gross_error_pct for p in after.valid])
    assert e_after.mean() < e_before.mean()


def test_outlier_pass_is_rejected_with_its_reason(session4: Session, tmp_path: Path) -> None:
    """A pass whose static weight was mis-entered (+8 %) is rejected as an outlier."""
    rows = session4.cal_ref.read_text(encoding="utf-8").splitlines()
    name, gross, axles = rows[5].split(",")
    bad_gross = float(gross) * 1.08
    bad_axles = ";".join(f"{float(a) * 1.08:.0f}" for a in axles.split(";"))
    rows[5] = f"{name},{bad_gross:.0f},{bad_axles}"
    ref = tmp_path / "ref.csv"
    ref.write_text("\n".join(rows) + "\n", encoding="utf-8")
    res = calibrate(session4.cal, ref, created_utc=CREATED)
    rejected = {p.recording: p for p in res.rejected}
    assert name in rejected
    assert rejected[name].reason == "outlier"
    assert "%" in rejected[name].detail
    assert res.profile["profile_id"] != session4.result.profile["profile_id"]


def test_bad_reference_files_are_refused_with_file_and_line(tmp_path: Path,
                                                            session4: Session) -> None:
    p = tmp_path / "r.csv"
    p.write_text("recording,gross_weight_kg\nx.npz,100\n", encoding="utf-8")
    with pytest.raises(ReferenceFileError, match="missing column.*axle_loads_kg"):
        read_reference(p)
    p.write_text("recording,gross_weight_kg,axle_loads_kg\nx.npz,abc,1;2\n", encoding="utf-8")
    with pytest.raises(ReferenceFileError, match=r"r\.csv:2: gross_weight_kg"):
        read_reference(p)
    p.write_text("recording,gross_weight_kg,axle_loads_kg\nx.npz,16000,6000;5000\n",
                 encoding="utf-8")
    with pytest.raises(ReferenceFileError, match="sum to 11000"):
        read_reference(p)
    p.write_text("recording,gross_weight_kg,axle_loads_kg\nx.npz,16000,6000;10000\n",
                 encoding="utf-8")
    with pytest.raises(CalibrationError, match="no reference weights for pass_0001"):
        calibrate(session4.cal[:3], p)
    with pytest.raises(ReferenceFileError, match="no such reference file"):
        read_reference(tmp_path / "missing.csv")
