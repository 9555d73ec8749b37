"""Service load benchmark on PostgreSQL: owner queries per second and p99 latency with
1 000 000 passages and 100 000 cases, and the center's package registration rate.

    python3 benchmarks/service_load.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--passages 1000000] [--cases 100000] [--queries 2000] [--ingest 1000]

Tables go into a fresh schema (dropped at the end). Bulk data is loaded with COPY. Owner
queries run with the response-time floor off (``owner_query_min_duration_ms=0``) so the
figures show the real work; in production every answer is padded to the floor. Half the
queries match (right plate + colour + VIN), half do not (wrong VIN / no such vehicle).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.evidence.verify import verify_package  # noqa: E402
from zhichao.service import audit, ingest, owners, partitions  # noqa: E402
from zhichao.service.db import session_factory, transaction  # noqa: E402
from zhichao.service.settings import Settings  # noqa: E402
from zhichao.testing.cases import seal_plain_case  # noqa: E402  (a real case, photos)
from zhichao.testing.databases import scratch_database  # noqa: E402

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
BASIS = "《浙江省公路条例》第五十三条"


def plate(i: int) -> str:
    return f"{PROVINCES[i % 31]}{LETTERS[(i // 31) % 24]}{i % 100000:05d}"


def vin(i: int) -> str:
    return f"LFWAD{i:012d}"


def bulk_load(engine: Any, n_passages: int, n_cases: int, n_vehicles: int,
              package_dir: Path) -> None:
    rng = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:  # COPY bypasses the ORM hook that makes missing months
        if partitions.is_partitioned(conn):
            partitions.ensure_months(conn, partitions.months_between(
                partitions.month_of(t0),
                partitions.month_of(t0 + timedelta(seconds=n_passages * 20))))
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            with cur.copy("COPY vehicles (plate, plate_colour, vin, licence_file_number, "
                          "owner_name_zh, updated_utc) FROM STDIN") as cp:
                for i in range(n_vehicles):
                    cp.write_row((plate(i), "yellow", vin(i), f"3301{i:08d}", "某某物流公司", t0))
            with cp_timer("passages"), cur.copy(
                    "COPY passages (id, source_key, station_id, site_id, lane_code, device_id, "
                    "time_utc, plate, plate_colour, speed_kmh, axle_count, gross_weight_kg, "
                    "vehicle_class, limit_kg, excess_kg, verdict, overloaded, flags, "
                    "eligibility_status, package_id, received_utc) FROM STDIN") as cp:
                for i in range(1, n_passages + 1):
                    case_row = i <= n_cases
                    v = (i - 1) % n_vehicles if case_row else rng.randrange(n_vehicles * 3)
                    gross = 62000.0 if case_row else rng.uniform(15000, 49000)
                    cp.write_row((i, f"bench:{i}", "S001", "ZJ-G60-K123", "2", "WIM-ZJ-0007",
                                  t0 + timedelta(seconds=i * 20), plate(v), "yellow",
                                  rng.uniform(40, 90), 6, gross, "combination_6_axle", 49000.0,
                                  gross - 49000.0, "overloaded" if case_row else "ok",
                                  case_row, "[]", "ENFORCEABLE" if case_row else None,
                                  f"bench-{i}" if case_row else None, t0))
            with cp_timer("cases"), cur.copy(
                    "COPY cases (id, version, passage_id, package_id, manifest_sha256, "
                    "package_path, station_id, site_id, jurisdiction, time_utc, plate, "
                    "plate_colour, state, eligibility_status, proposed_outcome, "
                    "proposed_fine_yuan, hearing_right, legal_basis_zh, manual_override, "
                    "hearing_requested, created_utc, updated_utc, opened_utc) FROM STDIN"
                    ) as cp:
                states = ("technical_review", "notified", "decided", "published")
                for i in range(1, n_cases + 1):
                    cp.write_row((i, 1, i, f"bench-{i}", "0" * 64, str(package_dir), "S001",
                                  "ZJ-G60-K123", "CN-ZJ", t0 + timedelta(seconds=i * 20),
                                  plate((i - 1) % n_vehicles), "yellow", states[i % 4],
                                  "ENFORCEABLE", "fine", 6000, "yes", BASIS, False, False,
                                  t0, t0, None if states[i % 4] == "technical_review" else t0))
            for table in ("passages", "cases"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
            cur.execute("ANALYZE")
        conn.commit()
    finally:
        raw.close()


class cp_timer:  # noqa: N801 (used as a context manager name)
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        print(f"  COPY {self.what}: {time.perf_counter() - self.t:.1f} s", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def owner_bench(factory: Any, settings: Settings, n_queries: int, n_vehicles: int,
                threads: int) -> dict[str, float]:
    limiter = owners.RateLimiter()
    rng = random.Random(11)
    jobs = []
    for k in range(n_queries):
        i = rng.randrange(n_vehicles)
        secret = vin(i)[-6:] if k % 2 == 0 else "000000"
        jobs.append((plate(i) if k % 4 != 3 else plate(n_vehicles * 5 + k), secret))
    latencies: list[float] = []
    lock = threading.Lock()
    found = [0]

    def work(part: list[tuple[str, str]], tid: int) -> None:
        for j, (p, secret) in enumerate(part):
            started = time.perf_counter()
            with transaction(factory) as s:
                answer = owners.owner_query(s, settings, limiter, client_id=f"c{tid}-{j}",
                                            plate=p, plate_colour="黄", vin_last6=secret)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                found[0] += bool(answer["records"])

    parts = [jobs[t::threads] for t in range(threads)]
    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(parts[t], t)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    return {"threads": threads, "queries": n_queries, "found": found[0],
            "qps": n_queries / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * pct(latencies, 0.99), "max_ms": 1000 * max(latencies)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--vehicles", type=int, default=80_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--ingest", type=int, default=1000)
    args = ap.parse_args()
    with scratch_database(args.url) as (engine, schema), \
            tempfile.TemporaryDirectory() as tmp:
        factory = session_factory(engine)
        settings = Settings(database_url=args.url, database_schema=schema,
                            migrate_on_start=False, owner_query_min_duration_ms=0,
                            owner_query_per_client_per_minute=10**9,
                            owner_query_per_plate_per_hour=10**9)
        sealed = seal_plain_case(Path(tmp))
        package_dir, manifest = sealed.directory, sealed.manifest
        print(f"bulk load: {args.passages} passages, {args.cases} cases, "
              f"{args.vehicles} vehicles", flush=True)
        t = time.perf_counter()
        bulk_load(engine, args.passages, args.cases, args.vehicles, package_dir)
        print(f"  total {time.perf_counter() - t:.1f} s", flush=True)
        results = [owner_bench(factory, settings, args.queries, args.vehicles, threads)
                   for threads in (1, 4)]
        for r in results:
            print("owner query:", json.dumps({k: round(v, 2) for k, v in r.items()}),
                  flush=True)
        # The floor under both: one audit entry + COMMIT (the WAL fsync of this disk).
        laps = []
        for _ in range(200):
            t = time.perf_counter()
            with transaction(factory) as s:
                audit.append(s, actor="bench", action="bench.commit",
                             object_type="bench", object_id="0")
            laps.append(time.perf_counter() - t)
        print(f"commit floor (audit append + COMMIT): p50 "
              f"{1000 * statistics.median(laps):.1f} ms, p99 {1000 * pct(laps, 0.99):.1f} ms",
              flush=True)
        # Center ingest: registration of verified packages (one transaction each).
        t = time.perf_counter()
        for k in range(args.ingest):
            m = copy.deepcopy(manifest)
            m["package_id"] = f"{manifest['package_id']}-{k}"
            with transaction(factory) as s:
                ingest.register_ingested_package(s, m, package_dir,
                                                 manifest_sha256=f"{k:064x}")
        reg = args.ingest / (time.perf_counter() - t)
        n_verify = min(200, args.ingest)
        t = time.perf_counter()
        for _ in range(n_verify):
            assert verify_package(package_dir).ok
        ver = n_verify / (time.perf_counter() - t)
        print(f"ingest: register {reg:.0f} packages/s; verify {ver:.0f} packages/s; "
              f"verify+register ≈ {1 / (1 / reg + 1 / ver):.0f} packages/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
