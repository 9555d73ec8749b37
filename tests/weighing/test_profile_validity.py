"""A calibration profile is applied only while in force, and extrapolation is flagged.

Review finding 1: an expired or not-yet-valid profile corrected loads silently, and speeds
and temperatures outside the fitted range were extrapolated without a flag.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.devices.test_devices_records import make_record
from zhichao.common import format_utc, parse_utc
from zhichao.devices.recording import Recording, read_recording
from zhichao.weighing.calibration_profile import (
    NOT_IN_FORCE_FLAG,
    OUTSIDE_RANGE_FLAG,
    parse_profile,
)
from zhichao.weighing.errors import CalibrationProfileError
from zhichao.weighing.reported import weigh_reported
from zhichao.weighing.stream import weigh_recording
from zhichao.weighing.vehicle import FLAGS_ZH, WeighedVehicle

GAIN = 1.05  # the profile's sensitivities are 5 % above nominal: loads read 5 % lower


def _profile(rec: Recording, valid_from: datetime, valid_until: datetime,
             speed_kmh: tuple[float, float] = (0.0, 200.0),
             temperature_c: tuple[float, float] = (-50.0, 80.0)) -> dict[str, Any]:
    return {
        "format": "zhichao.calibration/1", "profile_id": "CAL-T",
        "site_id": rec.meta.site_id, "lane_id": rec.meta.lane_id,
        "created_utc": format_utc(valid_from), "valid_from_utc": format_utc(valid_from),
        "valid_until_utc": format_utc(valid_until),
        "channels": {c.name: {"sensitivity_per_n": c.sensitivity_per_n * GAIN}
                     for c in rec.meta.channels},
        "operating_range": {"speed_kmh": list(speed_kmh), "temperature_c": list(temperature_c)},
    }


def _clean(vehicles: list[WeighedVehicle]) -> list[WeighedVehicle]:
    return [v for v in vehicles if v.gross_weight_kg is not None and v.speed_kmh is not None]


@pytest.fixture(scope="module")
def rec(sim_dir: Path) -> Recording:
    return read_recording(sim_dir / "rec_00002.npz")


def test_a_profile_in_force_corrects_and_is_named(rec: Recording) -> None:
    start = rec.meta.start_utc
    prof = parse_profile(_profile(rec, start - timedelta(days=1), start + timedelta(days=1)))
    raw = _clean(weigh_recording(rec))
    cal = _clean(weigh_recording(rec, None, prof))
    assert len(cal) == len(raw) >= 5
    for a, b in zip(raw, cal, strict=True):
        assert b.calibration_profile == "CAL-T"
        assert NOT_IN_FORCE_FLAG not in b.flags and OUTSIDE_RANGE_FLAG not in b.flags
        assert a.gross_weight_kg is not None
        assert b.gross_weight_kg == pytest.approx(a.gross_weight_kg / GAIN, rel=0.01)


@pytest.mark.parametrize("when", ["expired", "not_yet_valid"])
def test_a_profile_not_in_force_is_not_applied_and_flagged(rec: Recording, when: str) -> None:
    start = rec.meta.start_utc
    if when == "expired":  # ran out just before the recording ([from, until): until is out)
        window = (start - timedelta(days=400), start)
    else:
        window = (start + timedelta(days=1), start + timedelta(days=300))
    prof = parse_profile(_profile(rec, *window))
    raw = _clean(weigh_recording(rec))
    out = _clean(weigh_recording(rec, None, prof))
    assert len(out) == len(raw) >= 5
    for a, b in zip(raw, out, strict=True):
        assert NOT_IN_FORCE_FLAG in b.flags, b.flags
        assert b.calibration_profile is None  # nothing was applied
        assert any("CAL-T" in n and "未作标定修正" in n for n in b.notes)
        # weighed uncorrected: as without a profile, not 5 % lower
        assert b.gross_weight_kg == pytest.approx(a.gross_weight_kg, rel=0.002)
    assert NOT_IN_FORCE_FLAG in FLAGS_ZH and OUTSIDE_RANGE_FLAG in FLAGS_ZH


def test_speed_or_temperature_outside_the_fitted_range_is_flagged(rec: Recording) -> None:
    start = rec.meta.start_utc
    window = (start - timedelta(days=1), start + timedelta(days=1))
    base = _clean(weigh_recording(rec))
    speeds = sorted(v.speed_kmh or 0.0 for v in base)
    mid = speeds[len(speeds) // 2]
    prof = parse_profile(_profile(rec, *window, speed_kmh=(0.0, mid)))
    out = _clean(weigh_recording(rec, None, prof))
    for v in out:
        assert v.speed_kmh is not None
        outside = abs(v.speed_kmh) > mid + 0.01
        assert (OUTSIDE_RANGE_FLAG in v.flags) == outside, (v.speed_kmh, mid, v.flags)
        assert v.calibration_profile == "CAL-T"  # applied, extrapolated, flagged
        if outside:
            assert any("km/h" in n and "外推" in n for n in v.notes)
    # a recording's (or a station's) pavement temperature is a configured value, not a
    # measurement: the stream path does not judge it (every passage was flagged, or none)
    t = rec.meta.pavement_temperature_c
    cold = parse_profile(_profile(rec, *window, temperature_c=(t + 1.0, t + 20.0)))
    out = _clean(weigh_recording(rec, None, cold))
    assert out and not any(any("°C" in n for n in v.notes) for v in out)


def test_controller_records_follow_the_same_rules() -> None:
    rec = make_record()
    t = rec.device_time_utc

    def prof(valid_from: datetime, valid_until: datetime, speeds: tuple[float, float]
             ) -> dict[str, Any]:
        return {"format": "zhichao.calibration/1", "profile_id": "ctl", "site_id": "S1",
                "created_utc": format_utc(valid_from), "valid_from_utc": format_utc(valid_from),
                "valid_until_utc": format_utc(valid_until),
                "speed_factors": [[0, 0.9], [200, 0.9]],
                "channels": {"reported": {"sensitivity_per_n": 1.0}},
                "operating_range": {"speed_kmh": list(speeds), "temperature_c": [-40, 60]}}

    plain = weigh_reported(rec, site_id="S1")
    ok = weigh_reported(rec, site_id="S1", profile=parse_profile(
        prof(t - timedelta(days=1), t + timedelta(days=1), (0, 200))))
    assert ok.calibration_profile == "ctl" and not {NOT_IN_FORCE_FLAG, OUTSIDE_RANGE_FLAG} & set(
        ok.flags)
    assert ok.gross_weight_kg == pytest.approx(0.9 * (plain.gross_weight_kg or 0), abs=2)
    expired = weigh_reported(rec, site_id="S1", profile=parse_profile(
        prof(t - timedelta(days=30), t, (0, 200))))
    assert NOT_IN_FORCE_FLAG in expired.flags and expired.calibration_profile is None
    assert expired.gross_weight_kg == plain.gross_weight_kg
    fast = weigh_reported(rec, site_id="S1", profile=parse_profile(
        prof(t - timedelta(days=1), t + timedelta(days=1), (0, abs(rec.speed_kmh) - 5))))
    assert OUTSIDE_RANGE_FLAG in fast.flags and fast.calibration_profile == "ctl"
    # a measured temperature outside the fitted range is flagged; none measured is not
    # judged (a configured or missing value is no measurement)
    hot = weigh_reported(replace(rec, pavement_temperature_c=70.0), site_id="S1",
                         profile=parse_profile(prof(t - timedelta(days=1),
                                                    t + timedelta(days=1), (0, 200))))
    assert OUTSIDE_RANGE_FLAG in hot.flags
    unknown = weigh_reported(replace(rec, pavement_temperature_c=None), site_id="S1",
                             profile=parse_profile(prof(t - timedelta(days=1),
                                                        t + timedelta(days=1), (0, 200))))
    assert OUTSIDE_RANGE_FLAG not in unknown.flags


def test_profile_validity_is_parsed_and_checked() -> None:
    doc = {"format": "zhichao.calibration/1", "profile_id": "p",
           "valid_from_utc": "2026-01-01T00:00:00Z", "valid_until_utc": "2027-01-01T00:00:00Z",
           "operating_range": {"speed_kmh": [20.0, 80.0], "temperature_c": None}}
    p = parse_profile(doc)
    assert p.valid_until_utc == parse_utc("2027-01-01T00:00:00Z")
    assert p.speed_range_kmh == (20.0, 80.0) and p.temperature_range_c is None
    with pytest.raises(CalibrationProfileError, match="valid_until_utc"):
        parse_profile({**doc, "valid_until_utc": "2025-01-01T00:00:00Z"})
    with pytest.raises(CalibrationProfileError, match="valid_from_utc"):
        parse_profile({**doc, "valid_from_utc": "yesterday"})
    with pytest.raises(CalibrationProfileError, match="speed_kmh"):
        parse_profile({**doc, "operating_range": {"speed_kmh": [80.0]}})
