"""Helpers for the station tests: configurations, truth matching, offline reference."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zhichao.station.config import StationConfig, load_config
from zhichao.station.crashcheck import reference_vehicles
from zhichao.station.diskspace import RESERVE_NAME
from zhichao.weighing.vehicle import WeighedVehicle

__all__ = ["passages", "query", "reference_vehicles", "truth", "write_config"]


def write_config(path: Path, data_dir: Path, *, vehicles: int, speed: float = 25.0,
                 seed: int = 7, extra: str = "") -> StationConfig:
    path.write_text(f"""
[station]
data_dir = "{data_dir}"
[evidence]
render_documents = false
[http]
metrics_port = 0
console_port = 0
[simulation]
speed = {speed}
speed_kmh = [30.0, 90.0]
seed = {seed}
max_vehicles = {vehicles}
{extra}
""", encoding="utf-8")
    return load_config(path)


def passages(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM passages ORDER BY first_sample")]
    con.close()
    return rows


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    rows = [tuple(r) for r in con.execute(sql)]
    con.close()
    return rows


def truth(data_dir: Path) -> list[dict[str, Any]]:
    lines = (data_dir / "sim" / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def collect_until(stage: Any, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Let a sealing stage's pipeline side collect outcomes until ``done()`` (or fail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stage.collect()
        if done():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def weighed_vehicle(time_utc: str = "2026-12-07T14:02:55Z", *, speed_kmh: float = 72.0,
                    verdict: str = "overloaded") -> WeighedVehicle:
    """A weighed two-axle truck as the core emits it (only what linking reads matters)."""
    return WeighedVehicle(
        time_utc=time_utc, site_id="S", lane_id="1", speed_kmh=speed_kmh,
        acceleration_ms2=0.0, axle_count=2, axle_loads_kg=[8000.0, 12000.0],
        wheel_loads_kg=[[4000.0, 4000.0], [6000.0, 6000.0]], axle_spacings_m=[4.0],
        axle_groups=[[1], [2]], gross_weight_kg=20000.0, vehicle_class="truck_2_axle",
        vehicle_class_zh="二轴货车", limit_kg=18000, limit_basis="test",
        limit_candidates_kg=[18000], allowance_kg=500, allowance_basis="test",
        excess_kg=2000, excess_after_allowance_kg=1500, uncertainty_kg=200.0,
        coverage_factor=2.0, verdict=verdict, overloaded=verdict == "overloaded", flags=[],
        row_gross_weights_kg=[20000.0], rows_used=[0], pavement_temperature_c=None,
        calibration_profile=None, recording=None, first_sample=0, last_sample=100)


@pytest.fixture(autouse=True)
def _no_disk_reserve_left(tmp_path: Path) -> Iterator[None]:
    """Every station makes a disk reserve (``station.disk_reserve_mb``, 64 MiB by default)
    in its data folder; pytest keeps the folders of recent runs, so it is removed."""
    yield
    for p in tmp_path.rglob(RESERVE_NAME):
        p.unlink(missing_ok=True)


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[Any]:
    """A station data folder with its store and sealer (``test_retention.Lane``), as the
    retention, set-aside and unusable-originals tests fill it."""
    from tests.station.test_retention import Lane, _config
    from zhichao.station.sealing import Sealer
    from zhichao.station.store import StationStore

    cfg = _config(tmp_path)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    yield Lane(cfg, store, sealer)
    sealer.close()
    store.close()
