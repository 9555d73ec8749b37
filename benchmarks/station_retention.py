"""How long station retention holds the pipeline thread (docs/station.md "Retention").

    python3 benchmarks/station_retention.py [--passages 100000] [--expired 2000]
                                            [--held 10000] [--repeat 5]

Fills a temporary station database with ``--passages`` passages within the period (their
records delivered: outbox items ``done``), ``--expired`` passages 40 days old with two
frame files each (delivered) and ``--held`` passages 40 days old whose outbox item is still
``pending``, then times :meth:`Retention.run` (one batch, what one pipeline step does):

* each batch that purges expired passages (up to 100 passages, 200 files);
* a run with nothing to purge over the whole table (the hourly cost at steady state), with
  the held backlog counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.evidence.signing import generate_key  # noqa: E402
from zhichao.station.config import StationConfig, StationSection  # noqa: E402
from zhichao.station.retention import Retention  # noqa: E402
from zhichao.station.store import PassageRow, StationStore  # noqa: E402
from zhichao.station.sync_outbox import Outbox, insert_passage  # noqa: E402
from zhichao.testing.cases import vehicle_dict  # noqa: E402


def _t(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fill(cfg: StationConfig, store: StationStore, now: datetime, n_recent: int,
         n_expired: int, n_held: int) -> None:
    key = generate_key()
    done: list[str] = []
    frames_dir = cfg.data_dir / "frames"
    plan = ([("recent", now - timedelta(days=29) + timedelta(seconds=20 * i))
             for i in range(n_recent)]
            + [("expired", now - timedelta(days=40, seconds=-10 * i)) for i in range(n_expired)]
            + [("held", now - timedelta(days=45, seconds=-10 * i)) for i in range(n_held)])
    with store.transaction() as con:
        for n, (kind, when) in enumerate(plan):
            pkey = f"BENCH-1-{n}"
            record = vehicle_dict(time_utc=_t(when), first_sample=n, last_sample=n)
            frames = []
            if kind == "expired":
                folder = frames_dir / when.strftime("%Y%m%d") / pkey
                folder.mkdir(parents=True, exist_ok=True)
                for cam in ("CAM-FRONT-1", "CAM-SIDE-1"):
                    path = folder / f"{cam}-{when:%Y%m%dT%H%M%S%f}Z-{n}.jpg"
                    path.write_bytes(b"\xff\xd8" + bytes(30_000) + b"\xff\xd9")
                    frames.append({"camera_id": cam, "role": "front", "path": str(path),
                                   "spool_path": "", "capture_utc": _t(when),
                                   "camera_time_utc": _t(when)})
            store.insert_passage(con, PassageRow(
                pkey, "BENCH", "1", record["time_utc"], n, n, 6, 62000.0,
                "combination_6_axle", 49000.0, "compliant", False, [], record, "linked",
                frames, "浙A12345", "yellow", 0.97, True, []))
            sha = insert_passage(con, record, "BENCH", key)[0]
            if kind != "held":
                done.append(sha)
    with Outbox(cfg.data_dir / "station.db") as box, box.batch():
        for sha in done:
            box.mark_done(sha, "cmVjZWlwdA==", "c2ln")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--expired", type=int, default=2000)
    ap.add_argument("--held", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StationConfig(station=StationSection(data_dir=str(Path(tmp) / "data")),
                            base_dir=tmp)
        store = StationStore(cfg.data_dir / "station.db")
        t0 = time.perf_counter()
        fill(cfg, store, now, args.passages, args.expired, args.held)
        print(f"filled {args.passages} + {args.expired} expired + {args.held} held passages "
              f"in {time.perf_counter() - t0:.1f} s")
        retention = Retention(cfg, store)
        batches: list[float] = []
        purged = 0
        while True:
            t0 = time.perf_counter()
            run = retention.run(now)
            batches.append(time.perf_counter() - t0)
            purged += run.passages_purged
            if not run.more:
                break
        print(f"purging: {purged} passages ({run.frames_removed} frames in the last batch) "
              f"in {len(batches)} batches; per batch (100 passages, 200 files) "
              f"median {statistics.median(batches[:-1] or batches) * 1000:.0f} ms, "
              f"max {max(batches) * 1000:.0f} ms")
        idle: list[float] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            run = retention.run(now)
            idle.append(time.perf_counter() - t0)
        assert run.passages_purged == 0 and run.held_undelivered == args.held
        print(f"nothing to purge ({args.passages + args.expired + args.held} rows, "
              f"{args.held} held): median {statistics.median(idle) * 1000:.1f} ms, "
              f"max {max(idle) * 1000:.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
