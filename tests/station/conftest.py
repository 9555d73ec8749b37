"""Helpers for the station tests: configurations, truth matching, offline reference."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from zhichao.station.config import StationConfig, load_config
from zhichao.station.crashcheck import reference_vehicles

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
