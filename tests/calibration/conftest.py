"""Simulated reference sessions on a persistent lane with badly known sensors.

Every half-strip's true sensitivity is off from nominal by up to ±10 % and has its own
temperature coefficient (−0.02 %/°C ± 0.02 %/°C). The calibration session drives three
reference trucks (2-axle 16 t, 3-axle 25 t, 6-axle 40 t) three times at 20/40/60/80 km/h at
0/20/40 °C; the test session drives them twice at 30/50/70 km/h at 5/12/28/35 °C — other
speeds and temperatures than the fit saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zhichao.calibration.fit import CalibrationResult, calibrate
from zhichao.devices.sim import SimOptions
from zhichao.devices.sim.reference import make_fleet, simulate_reference_session

CREATED = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def lane_options(n_rows: int) -> SimOptions:
    return SimOptions(n_rows=n_rows, sensor_seed=7, sensitivity_error_pct=10.0,
                      temperature_coefficient_spread_per_c=0.0002, sample_rate_hz=2000.0)


@dataclass
class Session:
    rows: int
    cal: list[Path]
    cal_ref: Path
    test: list[Path]
    test_ref: Path
    result: CalibrationResult


def _session(tmp: Path, n_rows: int) -> Session:
    opts = lane_options(n_rows)
    fleet = make_fleet(3)
    cal = simulate_reference_session(tmp / "cal", 1, opts, fleet, [20, 40, 60, 80], [0, 20, 40],
                                     passes=3)
    test = simulate_reference_session(tmp / "test", 2, opts, fleet, [30, 50, 70],
                                      [5, 12, 28, 35], passes=2, prefix="test")
    result = calibrate(cal, tmp / "cal" / "reference.csv", created_utc=CREATED)
    return Session(n_rows, cal, tmp / "cal" / "reference.csv", test,
                   tmp / "test" / "reference.csv", result)


@pytest.fixture(scope="session")
def session4(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return _session(tmp_path_factory.mktemp("cal4"), 4)


@pytest.fixture(scope="session")
def session2(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return _session(tmp_path_factory.mktemp("cal2"), 2)
