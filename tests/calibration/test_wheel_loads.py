"""Static wheel loads in REF.csv (``wheel_loads_kg``): the left/right split measured, not
assumed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.calibration.conftest import CREATED, Session
from zhichao.calibration.errors import ReferenceFileError
from zhichao.calibration.fit import calibrate
from zhichao.calibration.reference import read_reference
from zhichao.devices.sim.lane import read_truth

HEADER = "recording,gross_weight_kg,axle_loads_kg,wheel_loads_kg\n"


def _ref(tmp_path: Path, *rows: str) -> Path:
    p = tmp_path / "ref.csv"
    p.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


def test_wheel_loads_are_read_and_optional_per_row(tmp_path: Path) -> None:
    refs = read_reference(_ref(tmp_path, "a.npz,16000,6400;9600,3200/3200;4700/4900",
                               "b.npz,16000,6400;9600,"))
    assert refs["a.npz"].wheel_loads_kg == ((3200.0, 3200.0), (4700.0, 4900.0))
    assert refs["a.npz"].left_share == pytest.approx(7900 / 16000)
    assert refs["b.npz"].wheel_loads_kg is None and refs["b.npz"].left_share is None


@pytest.mark.parametrize(("value", "message"), [
    ("3200/3200", r"ref\.csv:2: wheel_loads_kg has 1 axles but axle_loads_kg has 2"),
    ("3200/3200;4800", r"ref\.csv:2: wheel_loads_kg\[2\]: '4800' is not LEFT/RIGHT"),
    ("3200/3200;4800/x", r"ref\.csv:2: wheel_loads_kg\[2\] right: 'x' is not a number"),
    ("3200/3200;-4800/4800", r"ref\.csv:2: wheel_loads_kg\[2\] left: must be a positive"),
    ("3200/3200;4000/4000", r"ref\.csv:2: wheel_loads_kg\[2\]: wheels sum to 8000 kg but "
                            r"the axle load is 9600 kg"),
])
def test_bad_wheel_loads_are_refused_with_file_and_line(tmp_path: Path, value: str,
                                                        message: str) -> None:
    with pytest.raises(ReferenceFileError, match=message):
        read_reference(_ref(tmp_path, f"a.npz,16000,6400;9600,{value}"))


def _with_wheel_loads(session: Session, out: Path, every: int = 1) -> Path:
    """The session's reference file plus the trucks' static wheel loads (rounded to the
    10 kg scale interval) on every ``every``-th row."""
    with session.cal_ref.open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    lines = [rows[0] + ["wheel_loads_kg"]]
    for i, r in enumerate(rows[1:]):
        value = ""
        if i % every == 0:
            wheels = read_truth(session.cal_ref.parent / r[0])["vehicles"][0]["wheel_loads_kg"]
            value = ";".join(f"{round(a / 10) * 10:.0f}/{round(b / 10) * 10:.0f}"
                             for a, b in wheels)
        lines.append(r + [value])
    with out.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(lines)
    return out


def _channel_errors(session: Session, profile: dict) -> np.ndarray:
    truth = {c["name"]: c for c in read_truth(session.cal[0])["channels"]}
    return np.array([ch["sensitivity_per_n"] / 1e-4 / (1 + truth[n]["sensitivity_error"]) - 1
                     for n, ch in sorted(profile["channels"].items())])


def test_static_wheel_loads_fix_the_left_right_split(session4: Session, tmp_path: Path
                                                     ) -> None:
    ref = _with_wheel_loads(session4, tmp_path / "ref_wheels.csv")
    res = calibrate(session4.cal, ref, created_utc=CREATED)
    fit = res.profile["fit"]
    assert fit["left_right_basis"] == "static_wheel_loads"
    assert fit["passes_with_wheel_loads"] == len(res.used)
    assert all(sd > 0 for _, sd in fit["left_share_sd_by_speed_pct"])
    assert res.profile["profile_id"] != session4.result.profile["profile_id"]  # data hash
    with_wheels = np.abs(_channel_errors(session4, res.profile))
    assumed = np.abs(_channel_errors(session4, session4.result.profile))
    print("per-channel sensitivity error, max %: assumed balance",
          round(100 * assumed.max(), 2), "static wheel loads", round(100 * with_wheels.max(), 2))
    # every half-strip to within a fraction of a per cent (the ±10 % sensors, the 1 %
    # variation along a strip and the scale interval remain)
    assert with_wheels.max() < 0.006
    assert with_wheels.max() <= assumed.max() + 0.001
    # the gross weight does not depend on how the rows split
    assert fit["pass_gross_error_sd_pct"] == pytest.approx(
        session4.result.profile["fit"]["pass_gross_error_sd_pct"], abs=0.1)


def test_wheel_loads_on_some_passes_are_used_with_the_assumption_on_the_rest(
        session4: Session, tmp_path: Path) -> None:
    ref = _with_wheel_loads(session4, tmp_path / "ref_some.csv", every=3)
    res = calibrate(session4.cal, ref, created_utc=CREATED)
    fit = res.profile["fit"]
    assert fit["left_right_basis"] == "mixed"
    assert 0 < fit["passes_with_wheel_loads"] < len(res.used)
    assert any("static wheel loads on" in n for n in fit["notes"])
    assert np.abs(_channel_errors(session4, res.profile)).max() < 0.01
