"""A drift alarm refuses the data from its estimated change point, and only a later
calibration or verification closes it; the closed interval stays refused.

Review findings 2 and 3: the alarm refused only passages from the record that raised it
(not those weighed drifted before), any change of profile closed it (also removing the
profile or putting an older one back), and the closure was retroactive.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from zhichao.calibration.drift import DriftConfig, DriftMonitor
from zhichao.calibration.errors import DriftStateError
from zhichao.calibration.legal import Certificate, DeviceLegalStatus, with_drift_state
from zhichao.common import format_utc, parse_utc
from zhichao.weighing.vehicle import WeighedVehicle

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MIX = [2, 5, 3, 5, 6]  # axle counts in turn: 5-/6-axle tractors feed the steer chart


def truck_time(i: int) -> datetime:
    return T0 + timedelta(minutes=2 * i)


def truck(rng: np.random.Generator, i: int, axles: int, c: float = 1.0) -> WeighedVehicle:
    """A normally driven truck read ``c`` times its load (the reviewer's generator)."""
    gross = rng.uniform(15000, 45000) if axles >= 5 else rng.uniform(6000, 25000)
    steer = (5500 + 0.03 * gross + rng.normal(0, 150)) if axles >= 5 else 0.4 * gross
    rest = (gross - steer) / (axles - 1)
    ax = [steer] + [rest] * (axles - 1)
    share = 0.5 + rng.normal(0, 0.01)
    wheels = [[a * share * c, a * (1 - share) * c] for a in ax]
    ax = [a * c for a in ax]
    rows = [gross * c * (1 + rng.normal(0, 0.01)) for _ in range(4)]
    return WeighedVehicle(
        time_utc=format_utc(truck_time(i)), site_id="S", lane_id="1", speed_kmh=60.0,
        acceleration_ms2=0.0, axle_count=axles, axle_loads_kg=ax, wheel_loads_kg=wheels,
        axle_spacings_m=[3.0] * (axles - 1), axle_groups=[[k + 1] for k in range(axles)],
        gross_weight_kg=float(np.mean(rows)), vehicle_class=f"c{axles}", vehicle_class_zh="",
        limit_kg=None, limit_basis="", limit_candidates_kg=[], allowance_kg=None,
        allowance_basis="", excess_kg=None, excess_after_allowance_kg=None,
        uncertainty_kg=None, coverage_factor=None, verdict="within_limit", overloaded=False,
        flags=[], row_gross_weights_kg=rows, rows_used=[1, 2, 3, 4],
        pavement_temperature_c=20.0, calibration_profile="A", recording=None,
        first_sample=0, last_sample=1)


def _device() -> DeviceLegalStatus:
    return DeviceLegalStatus(
        "D", "S", "1", "platform",
        [Certificate("C", "X", datetime(2025, 1, 1, tzinfo=UTC),
                     datetime(2027, 1, 1, tzinfo=UTC), "5")],
        technical_review_approved=True, technical_review_date=date(2025, 1, 1),
        legal_review_approved=True, legal_review_date=date(2025, 1, 1))


DRIFT_START = 1500


@pytest.fixture(scope="module")
def alarmed() -> tuple[DriftMonitor, int, str]:
    """+6 % on every channel from truck 1500 (the reviewer's case); stops at the alarm.
    Returns the monitor, the alarming truck and the time of the last observation at
    which the alarming chart's CUSUM stood at zero, followed from outside."""
    rng = np.random.default_rng(1)
    mon = DriftMonitor("1", DriftConfig(), profile_id="A")
    last_zero: dict[str, str] = {}
    for i in range(4000):
        v = truck(rng, i, MIX[i % len(MIX)], 1.06 if i >= DRIFT_START else 1.0)
        _, d = mon.process(v)
        for name, ch in mon.charts.items():
            if ch.mean is not None and (ch.s_hi == 0 or name not in last_zero):
                last_zero[name] = v.time_utc
        if d.new_alarms:
            return mon, i, last_zero[d.new_alarms[0].statistic]
    raise AssertionError("a 6 % step on every channel was not alarmed")


def test_alarm_is_backdated_to_the_cusum_change_point(
        alarmed: tuple[DriftMonitor, int, str]) -> None:
    mon, alarm_at, last_zero = alarmed
    alarm = mon.alarms[0]
    assert alarm.direction == "high" and alarm_at > DRIFT_START
    assert alarm.time_utc == format_utc(truck_time(alarm_at))
    # the change point: the last observation at which the CUSUM stood at zero
    assert alarm.since_utc == last_zero and mon.alarm_since_utc == last_zero
    since = parse_utc(last_zero)
    assert since <= truck_time(DRIFT_START)  # every drifted passage is covered
    assert since >= truck_time(DRIFT_START - 200)  # and not the whole history
    dev = with_drift_state(_device(), mon.alarm_open, since)
    for i in range(DRIFT_START, alarm_at + 1):  # drifted, weighed before the alarm
        assert not dev.is_usable_at(truck_time(i)).usable, i
    assert dev.is_usable_at(since - timedelta(seconds=1)).usable


def test_only_a_later_calibration_or_verification_closes_the_alarm(
        alarmed: tuple[DriftMonitor, int, str]) -> None:
    mon = DriftMonitor.from_state(alarmed[0].to_state())
    raised = parse_utc(mon.alarm_raised_utc or "")
    at = format_utc(raised + timedelta(days=2))
    with pytest.raises(DriftStateError, match="removing"):
        mon.reset("calibration", at, profile_id=None)
    with pytest.raises(DriftStateError, match="after"):  # an older profile put back
        mon.reset("calibration", at, profile_id="OLD",
                  profile_created_utc=format_utc(raised - timedelta(days=30)))
    with pytest.raises(DriftStateError, match="no date"):  # nothing shows when it was made
        mon.reset("calibration", at, profile_id="B")
    with pytest.raises(DriftStateError, match="after"):  # verified before the alarm
        mon.reset("verification", format_utc(raised - timedelta(hours=1)))
    assert mon.alarm_open and not mon.history
    mon.reset("calibration", at, profile_id="B",
              profile_created_utc=format_utc(raised + timedelta(days=1)))
    assert not mon.alarm_open and mon.profile_id == "B"
    assert mon.closed_intervals_utc() == [(alarmed[2], at)]


def test_closed_alarm_interval_stays_unusable() -> None:
    a, b = datetime(2026, 3, 3, 1, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
    dev = _device()
    dev.drift_alarm_intervals = [(a, b)]
    inside = dev.is_usable_at(a + timedelta(hours=5))
    assert not inside.usable and [r.code for r in inside.reasons] == ["drift_alarm_interval"]
    assert dev.to_evidence_json(a + timedelta(hours=5))["drift_alarm_open"] is True
    assert dev.is_usable_at(b).usable and dev.is_usable_at(a - timedelta(seconds=1)).usable
    assert dev.to_evidence_json(b)["drift_alarm_open"] is False
    back = DeviceLegalStatus.from_json(dev.to_json())
    assert back.drift_alarm_intervals == [(a, b)]
