"""Controller records → WeighedVehicle (zhichao/weighing/reported.py): the core's own
classification, limit and overload code, and its calibration correction."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from tests.devices.test_devices_records import make_record
from zhichao.devices.records import WimRecord
from zhichao.devices.sim.lane import SimOptions, plan_traffic, simulate_recording
from zhichao.devices.twins.records import records_from_truth
from zhichao.weighing.calibration_profile import parse_profile
from zhichao.weighing.errors import CalibrationProfileError
from zhichao.weighing.reported import weigh_reported
from zhichao.weighing.stream import LaneProcessor
from zhichao.weighing.vehicle import WeighedVehicle

#: flags the core derives from what a record also shows (the rest need the signals;
#: wheel_off_sensor partly: the core also tests pulse shapes below the imbalance limit)
RECORD_VISIBLE_FLAGS = {"speed_out_of_range", "acceleration", "rows_disagree",
                        "possible_merged_vehicles", "class_undecidable"}


@pytest.fixture(scope="module")
def lane() -> tuple[list[WeighedVehicle], dict[str, object]]:
    opts = SimOptions(n_rows=4, sample_rate_hz=1000.0, speed_kmh=(20.0, 60.0),
                      trucks_only=True, load_profile="mixed", abnormal_fraction=0.0)
    rng = np.random.default_rng(33)
    vehicles = plan_traffic(rng, 80, opts)
    samples, meta, truth = simulate_recording(rng, vehicles, opts)
    proc = LaneProcessor(meta)
    return proc.feed(samples) + proc.finish(), truth


def record_of(v: WeighedVehicle, seq: int) -> WimRecord:
    """What a controller measuring exactly what the core measured would report."""
    from datetime import datetime

    assert v.speed_kmh is not None and v.gross_weight_kg is not None
    return WimRecord(
        boot_id=1, seq=seq, device_time_utc=datetime.fromisoformat(v.time_utc),
        lane_id=v.lane_id, speed_kmh=v.speed_kmh, acceleration_ms2=v.acceleration_ms2,
        axle_loads_kg=tuple(v.axle_loads_kg), wheel_loads_kg=tuple(
            (w[0], w[1]) for w in v.wheel_loads_kg),
        axle_spacings_m=tuple(v.axle_spacings_m), gross_weight_kg=float(v.gross_weight_kg),
        row_gross_weights_kg=tuple(v.row_gross_weights_kg), status=0,
        pavement_temperature_c=v.pavement_temperature_c)


def test_records_get_the_cores_class_limit_and_verdict(
        lane: tuple[list[WeighedVehicle], dict[str, object]]) -> None:
    vehicles, _ = lane
    checked = 0
    verdicts = set()
    for i, v in enumerate(vehicles):
        if v.gross_weight_kg is None or "unweighable" in v.flags:
            continue
        r = weigh_reported(record_of(v, i), site_id=v.site_id)
        assert r.vehicle_class == v.vehicle_class and r.limit_kg == v.limit_kg
        assert r.limit_basis == v.limit_basis and r.axle_groups == v.axle_groups
        assert r.limit_candidates_kg == v.limit_candidates_kg
        assert r.verdict == v.verdict and r.overloaded == v.overloaded, v.time_utc
        assert r.gross_weight_kg is not None and abs(r.gross_weight_kg - v.gross_weight_kg) <= 2
        assert r.allowance_kg is not None and v.allowance_kg is not None
        assert abs(r.allowance_kg - v.allowance_kg) <= 1
        assert r.uncertainty_kg is not None and v.uncertainty_kg is not None
        assert math.isclose(r.uncertainty_kg, v.uncertainty_kg, abs_tol=1.0)
        assert set(r.flags) & RECORD_VISIBLE_FLAGS == set(v.flags) & RECORD_VISIBLE_FLAGS
        assert r.time_utc == v.time_utc and r.first_sample == -1
        verdicts.add(v.verdict)
        checked += 1
    assert checked >= 70 and {"within_limit", "overloaded"} <= verdicts


def test_calibration_correction_speed_and_temperature(
        lane: tuple[list[WeighedVehicle], dict[str, object]]) -> None:
    _, truth = lane
    records = records_from_truth(truth, load_factor=1.04, seed=1)
    profile = parse_profile({
        "format": "zhichao.calibration/1", "profile_id": "ctl-1", "site_id": "S1",
        "speed_factors": [[0, 1 / 1.04], [200, 1 / 1.04]],
        "channels": {"reported": {"sensitivity_per_n": 1.0,
                                  "temperature_coefficient_per_c": -0.0002}},
        "reference_temperature_c": 20.0})
    vehicles = truth["vehicles"]
    assert isinstance(vehicles, list)
    for rec, tv in zip(records, vehicles, strict=True):
        out = weigh_reported(rec, site_id="S1", profile=profile)
        assert rec.pavement_temperature_c is not None
        divisor = 1 - 0.0002 * (rec.pavement_temperature_c - 20.0)
        for got, true in zip(out.axle_loads_kg, tv["axle_loads_kg"], strict=True):
            assert abs(got - true / divisor) <= 1.0
        assert out.calibration_profile == "ctl-1"
    # without a temperature the temperature correction is not guessed, and it says so
    out = weigh_reported(replace(records[0], pavement_temperature_c=None), site_id="S1",
                         profile=profile)
    assert any("温度" in n for n in out.notes) and out.pavement_temperature_c is None
    assert json.loads(out.to_json())["pavement_temperature_c"] is None  # valid JSON, no NaN
    assert abs(out.axle_loads_kg[0] - vehicles[0]["axle_loads_kg"][0]) <= 1.0
    # the station's own thermometer stands in for a controller that reports none
    station = weigh_reported(replace(records[0], pavement_temperature_c=None), site_id="S1",
                             profile=profile, pavement_temperature_c=45.0)
    assert station.pavement_temperature_c == 45.0
    assert abs(station.axle_loads_kg[0] - vehicles[0]["axle_loads_kg"][0]
               / (1 - 0.0002 * 25.0)) <= 1.0


def test_profiles_for_strips_or_other_lanes_are_refused() -> None:
    strips = parse_profile({"format": "zhichao.calibration/1", "profile_id": "p",
                            "channels": {"r1L": {"sensitivity_per_n": 1e-4}}})
    with pytest.raises(CalibrationProfileError, match="r1L"):
        weigh_reported(make_record(), site_id="S1", profile=strips)
    other = parse_profile({"format": "zhichao.calibration/1", "profile_id": "p",
                           "lane_id": "9"})
    with pytest.raises(CalibrationProfileError, match="lane_id"):
        weigh_reported(make_record(), site_id="S1", profile=other)


def test_status_bits_events_and_missing_rows() -> None:
    # 80 t on a 43 t limit at 20 km/h: over even after the default (no site history)
    # scatter deduction, which grows with speed
    rec = make_record(n_axles=5, gross_kg=80_000.0, speed_kmh=20.0,
                      status=0x0010 | 0x0800 | 0x8000,
                      events=("clock_jump",), row_gross_weights_kg=(79_800.0, 80_200.0))
    out = weigh_reported(rec, site_id="S1")
    assert {"reversing", "data_gap", "calibration_invalid", "clock_jump"} <= set(out.flags)
    assert out.verdict == "overloaded" and out.lane_id == "2"
    assert out.flags_zh[out.flags.index("data_gap")] == "过车期间数据中断"
    # without per-row weights the passage cannot be checked for an anomaly: uncertain (the
    # uncertainty itself comes from the site's pooled history, not from the passage)
    no_rows = weigh_reported(replace(rec, row_gross_weights_kg=()), site_id="S1")
    assert no_rows.verdict == "uncertain" and not no_rows.overloaded
    fast = weigh_reported(replace(make_record(), speed_kmh=130.0, acceleration_ms2=2.0),
                          site_id="S1")
    assert {"speed_out_of_range", "acceleration"} <= set(fast.flags)
    two = weigh_reported(make_record(n_axles=2, gross_kg=17_000.0), site_id="S1")
    assert two.vehicle_class == "truck_2_axle" and two.verdict == "within_limit"
