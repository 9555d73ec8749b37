
"""How long the station's σ(v) pool holds the pipeline thread (issue 16).

    python3 benchmarks/site_scatter_pool.py [--passages 20000] [--repeat 5]

Fills a temporary station database with ``--passages`` weighed trucks (simulated 4-row
recordings, the same vehicles stored again under later times, the station's default window
cap being 20 000), then times (:meth:`SiteScatter.pool`: window read, history, bands, file)

* a *cold* pool: a fresh :class:`SiteScatter` (the first pool after a start) reads the
  whole window;
* a *steady* pool: 200 more passages stored (``wim.pool_every_passages``), the next pool
  reads only those;
* for comparison, the window read parsing whole stored records, as the pool did before the
  store extracted the fields it needs and kept the window between pools.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.devices.recording import read_recording  # noqa: E402
from zhichao.devices.sim import SimOptions, simulate  # noqa: E402
from zhichao.station.config import StationConfig  # noqa: E402
from zhichao.station.device import weighing_config  # noqa: E402
from zhichao.station.site_scatter import SiteScatter  # noqa: E402
from zhichao.station.store import PassageRow, StationStore  # noqa: E402
from zhichao.weighing.scatter import pooled_bands, pooling_records  # noqa: E402
from zhichao.weighing.stream import weigh_recording  # noqa: E402
from zhichao.weighing.vehicle import WeighedVehicle  # noqa: E402


def vehicles(tmp: Path) -> list[WeighedVehicle]:
    opts = SimOptions(n_rows=4, trucks_only=True, abnormal_fraction=0.0, sensor_seed=5,
                      speed_kmh=(40.0, 80.0))
    return [v for p in simulate(200, 31, tmp, opts, 50) for v in weigh_recording(read_recording(p))]


def fill(store: StationStore, lane: str, start: int, n: int,
         vehicles: list[WeighedVehicle]) -> None:
    t0 = datetime.now(UTC) - timedelta(days=20)
    with store.transaction() as con:
        for i in range(start, start + n):
            v = vehicles[i % len(vehicles)]
            t = (t0 + timedelta(seconds=60 * i)).isoformat().replace("+00:00", "Z")
            record = v.to_dict() | {"time_utc": t}
            store.insert_passage(con, PassageRow(
                f"P{i}", v.site_id, lane, t, i * 10_000, i * 10_000 + 5_000, v.axle_count,
                v.gross_weight_kg, v.vehicle_class, v.limit_kg, v.verdict, v.overloaded,
                v.flags, record, "linked", [], None, None, None, None, []))


def whole_records(store: StationStore, lane: str, cap: int) -> list[dict[str, object]]:
    return [json.loads(r[0]) for r in store.db.execute(
        "SELECT record FROM passages WHERE lane_id = ? ORDER BY id DESC LIMIT ?", (lane, cap))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = StationConfig(base_dir=str(tmp / "station"))
        cfg = replace(cfg, wim=replace(cfg.wim, pool_max_passages=args.passages))
        cfg.data_dir.mkdir(parents=True)
        store = StationStore(cfg.data_dir / "station.db")
        fleet = vehicles(tmp / "rec")
        fill(store, cfg.lane.lane_id, 0, args.passages, fleet)
        colds, steadies, wholes = [], [], []
        stored = args.passages
        for _ in range(args.repeat):
            scatter = SiteScatter(cfg, store, weighing_config(cfg), None)
            t = time.perf_counter()
            scatter.pool()
            colds.append(time.perf_counter() - t)
            fill(store, cfg.lane.lane_id, stored, 200, fleet)
            stored += 200
            t = time.perf_counter()
            scatter.pool()
            steadies.append(time.perf_counter() - t)
            t = time.perf_counter()
            pooled_bands(pooling_records(whole_records(store, cfg.lane.lane_id,
                                                       args.passages)))
            wholes.append(time.perf_counter() - t)
        store.close()
    print(f"passages stored: {args.passages}; pooled: {scatter.pooled_passages}")
    for name, times in (("cold pool (first after a start)", colds),
                        ("steady pool (200 new passages)", steadies),
                        ("before: whole records, every pool", wholes)):
        print(f"{name:35s} median {statistics.median(times) * 1000:6.0f} ms, "
              f"max {max(times) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
