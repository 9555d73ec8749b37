"""Drift monitoring on real simulated traffic weighed by the core."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from zhichao.calibration.drift import DRIFT_FLAG, DriftMonitor
from zhichao.calibration.errors import DriftStateError
from zhichao.calibration.legal import Certificate, DeviceLegalStatus, with_drift_state
from zhichao.common import parse_utc
from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.weighing.stream import weigh_recording
from zhichao.weighing.vehicle import WeighedVehicle

pytestmark = pytest.mark.slow  # minutes of simulated traffic or processes

LANE = SimOptions(trucks_only=True, abnormal_fraction=0.0, sensor_seed=2024,
                  sensitivity_error_pct=1.0, sample_rate_hz=2000.0, speed_kmh=(20.0, 90.0))
N_TRUCKS = 1100
DRIFT_AFTER_S = 700 * 2.3  # about 700 trucks into the run (≈ 2.3 s per truck)


def _weigh(opts: SimOptions, out: Path) -> list[WeighedVehicle]:
    recs: list[WeighedVehicle] = []
    for p in simulate(N_TRUCKS, 5, out, opts, vehicles_per_recording=100):
        recs.extend(weigh_recording(read_recording(p)))
    return recs


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[WeighedVehicle], int]:
    """Left half-strips read 3 % high from DRIFT_AFTER_S on (a step)."""
    start = LANE.start_utc + timedelta(seconds=DRIFT_AFTER_S)
    opts = replace(LANE, drift_pct=3.0, drift_start_utc=start,
                   drift_channels=("r1L", "r2L", "r3L", "r4L"))
    recs = _weigh(opts, tmp_path_factory.mktemp("drift"))
    # drift applies per recording (from its start); the first drifted record:
    first = next(i for i, v in enumerate(recs) if parse_utc(v.time_utc) >= start)
    return recs, first


def test_left_side_drift_is_alarmed_and_records_are_marked(
        drifted: tuple[list[WeighedVehicle], int]) -> None:
    recs, first_drifted = drifted
    mon = DriftMonitor("1")
    marked: list[WeighedVehicle] = []
    alarm_at = None
    for i, v in enumerate(recs):
        out, d = mon.process(v)
        marked.append(out)
        if d.new_alarms and alarm_at is None:
            alarm_at = i
            alarm = d.new_alarms[0]
    assert mon.charts["balance"].mean is not None  # the baseline was complete before drift
    assert alarm_at is not None, "3 % drift of the left half-strips not alarmed"
    # measured: about 40 trucks after the drift starts; no alarm before it
    assert first_drifted <= alarm_at <= first_drifted + 150
    assert alarm.statistic == "balance" and alarm.direction == "high"
    # left/right: the left side now reads ≈ 3 % more than the right
    assert alarm.estimated_factor == pytest.approx(1.03, abs=0.012)
    assert "复核" in alarm.message_zh
    assert all(DRIFT_FLAG not in v.flags for v in marked[:alarm_at])
    assert all(DRIFT_FLAG in v.flags for v in marked[alarm_at:])
    assert all(DRIFT_FLAG not in v.flags for v in recs)  # the core's records are untouched
    # the device's legal status follows the monitor: data from the estimated change point
    # (the CUSUM's last zero before the alarm) on are unusable, not only from the alarm
    dev = DeviceLegalStatus(
        "WIM-1", "SIM-SITE-01", "1", "platform", technical_review_approved=True,
        technical_review_date=date(2025, 1, 1), legal_review_approved=True,
        legal_review_date=date(2025, 1, 1),
        certificates=[Certificate("C-1", "某计量院", LANE.start_utc - timedelta(days=1),
                                  LANE.start_utc + timedelta(days=300), "5")])
    assert mon.alarm_since_utc is not None
    since = parse_utc(mon.alarm_since_utc)
    assert since < parse_utc(alarm.time_utc) and since == parse_utc(alarm.since_utc)
    dev = with_drift_state(dev, mon.alarm_open, since)
    assert dev.is_usable_at(since - timedelta(seconds=1)).usable
    for v in recs[max(first_drifted, 0):alarm_at + 1]:  # drifted before the alarm too
        if parse_utc(v.time_utc) >= since:
            after = dev.is_usable_at(parse_utc(v.time_utc))
            assert [r.code for r in after.reasons] == ["drift_alarm_open"]
    assert parse_utc(recs[first_drifted].time_utc) >= since - timedelta(hours=1)


def test_state_survives_a_restart_and_reset_closes_the_alarm(
        drifted: tuple[list[WeighedVehicle], int]) -> None:
    recs, _ = drifted
    whole = DriftMonitor("1")
    for v in recs:
        whole.observe(v)
    half = DriftMonitor("1")
    for v in recs[:600]:
        half.observe(v)
    restarted = DriftMonitor.from_state(json.loads(json.dumps(half.to_state())))
    for v in recs[600:]:
        restarted.observe(v)
    assert restarted.to_state() == whole.to_state()
    assert restarted.alarm_open
    with pytest.raises(DriftStateError, match="after"):  # a profile older than the alarm
        restarted.reset("calibration", "2026-01-06T00:00:00.000000Z", profile_id="CAL-NEW",
                        profile_created_utc="2020-01-01T00:00:00Z")
    restarted.reset("calibration", "2099-01-06T00:00:00.000000Z", profile_id="CAL-NEW",
                    profile_created_utc="2099-01-05T00:00:00Z")
    assert not restarted.alarm_open
    assert restarted.mark(recs[-1]).flags == recs[-1].flags
    assert restarted.history[-1]["closed_alarms"][0]["statistic"] == "balance"
    with pytest.raises(DriftStateError, match="reason"):
        restarted.reset("because", "2026-01-06T00:00:00.000000Z")
    with pytest.raises(DriftStateError, match="format"):
        DriftMonitor.from_state({"format": "x"})


def test_abnormal_and_light_vehicles_are_not_observed(
        drifted: tuple[list[WeighedVehicle], int]) -> None:
    recs, _ = drifted
    mon = DriftMonitor("1")
    v = recs[0]
    flagged = replace(v, flags=[*v.flags, "acceleration"])
    light = replace(v, gross_weight_kg=2000.0)
    assert mon._values(flagged) == {} and mon._values(light) == {}
    assert mon._values(v)
