"""Helpers for the station tests: configurations, truth matching, offline reference."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.service.station.config import StationConfig, load_config
from zhichao.service.station.runtime import lane_meta
from zhichao.service.station.simlane import SimulatedLane
from zhichao.weighing.stream import LaneProcessor
from zhichao.weighing.vehicle import WeighedVehicle


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


def reference_vehicles(cfg: StationConfig, n_vehicles: int, work: Path) -> list[WeighedVehicle]:
    """The same simulated stream, regenerated (it is deterministic per seed) and weighed
    in one uninterrupted pass: what a station that never crashed would have weighed."""
    lane = SimulatedLane(cfg, work)
    try:
        proc = LaneProcessor(lane_meta(cfg, lane.epoch))
        out: list[WeighedVehicle] = []
        index, k = 0, 0
        tail: npt.NDArray[np.float64] | None = None
        while lane.vehicles_out < n_vehicles:
            n = min(cfg.simulation.batch_vehicles, n_vehicles - lane.vehicles_out)
            samples, _ = lane._batch(k, index, n, tail)
            k += 1
            for i in range(0, samples.shape[0], 4000):
                out.extend(proc.feed(samples[i:i + 4000]))
            tail = np.median(samples[-500:], axis=0).astype(np.float64)
            index += samples.shape[0]
        assert tail is not None
        quiet = (tail[None, :] + np.zeros((50_000, len(tail)))).astype(np.float32)
        out.extend(proc.feed(quiet))
        return out
    finally:
        lane.close()
