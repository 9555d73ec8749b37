"""Owner queries at provincial scale (issue 21 item 4): 10 M passages and 1 M cases on
PostgreSQL (passages partitioned by month), a smaller set on SQLite; queries per second,
latency percentiles, and the database's share of each query.

    python3 benchmarks/owner_queries.py [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--database zhichao_bench] [--passages 10000000] [--cases 1000000]
        [--vehicles 800000] [--queries 4000] [--procs 1,2,4] [--servers 2] [--clients 4]
        [--sqlite-passages 1000000] [--sqlite-cases 100000] [--skip-sqlite]
        [--skip-postgresql] [--keep] [--reuse]

PostgreSQL: a dedicated database (``--database``, dropped and made afresh, dropped again at
the end unless ``--keep``), migrated to head, filled with COPY (``cursor.copy``), then
VACUUM ANALYZE. Every case points at one sealed package (the manifest is read per record
shown: the page cache holds it, as it would hold a hot package). Queries: half with the
right VIN, a quarter with a wrong one, a quarter for plates with no vehicle; the
response-time floor is off (``owner_query_min_duration_ms=0``) so the figures show the work.

Two drivers, both several OS processes (one Python process is the limit otherwise, the GIL):

* ``direct``: P processes call ``owners.owner_query`` in their own transaction; per query
  the total time and the database time (every ``cursor.execute`` plus the COMMIT) are
  recorded, so the Python share is the difference. A separate sealer process seals the
  owner access log every second meanwhile (``access_log.seal_pending``, as the service's
  background sealer does), and after the run everything is sealed and verified.
* ``http``: S real server processes (uvicorn, the service's app, each sealing every
  second as in production) and C client processes (httpx, keep-alive) posting
  ``/api/v1/owner/query``: the HTTP time per query.

Per direct query the *read part* (start to the lock request of the access-log write: the
query's own statements and Python) and the *write part* (lock request to the end of
COMMIT) are split; the write holds only a shared lock (``access_log.py``). With code from
before the access log (the entry appended to the audit chain under its global lock) the
same split names the audit append. ``--reuse`` migrates the kept database to head first.

SQLite: the same queries on a file database of ``--sqlite-*`` size (SQLite is the station's
embedded database; one writer at a time, so the direct driver with 1 and 2 processes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from zhichao.service import access_log, owners, partitions  # noqa: E402
from zhichao.service.db import make_engine, session_factory, transaction, upgrade  # noqa: E402
from zhichao.service.settings import Settings  # noqa: E402
from zhichao.testing.cases import seal_plain_case  # noqa: E402

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP_S = 3  # 10 M passages every 3 s: January to mid-December 2026, 12 partitions
STATES = ("notified", "decided", "technical_review", "published", "served")
SECRET = "owner-bench-" + "x" * 32


def plate(i: int) -> str:
    return f"{PROVINCES[i % 31]}{LETTERS[(i // 31) % 24]}{(i // 744) % 100000:05d}"


def vin(i: int) -> str:
    return f"LFWAD{i:012d}"


def bench_settings(url: str) -> Settings:
    return Settings(database_url=url, migrate_on_start=False, secret_key=SECRET,
                    owner_query_min_duration_ms=0, owner_query_per_client_per_minute=10**9,
                    owner_query_per_plate_per_hour=10**9)


def rows(n_passages: int, n_cases: int, n_vehicles: int, package: str
         ) -> tuple[Any, Any, Any]:
    """Generators of vehicle, passage and case rows; every ``stride``-th passage is a case."""
    stride = max(1, n_passages // n_cases)

    def vehicles() -> Any:
        for i in range(n_vehicles):
            yield (plate(i), "yellow", vin(i), f"3301{i:08d}", "某某物流公司", T0)

    def passages() -> Any:
        rng = random.Random(7)
        for i in range(1, n_passages + 1):
            k = i // stride
            case_row = i % stride == 0 and k <= n_cases
            v = (k - 1) % n_vehicles if case_row else rng.randrange(n_vehicles * 3)
            gross = 62000.0 if case_row else 15000.0 + (i % 34000)
            yield (i, f"b:{i}", "S001", "ZJ-G60-K123", "2", "WIM-ZJ-0007",
                   T0 + timedelta(seconds=i * STEP_S), plate(v), "yellow", 60.0, 6, gross,
                   "combination_6_axle", 49000.0, gross - 49000.0,
                   "overloaded" if case_row else "ok", case_row, "[]",
                   "ENFORCEABLE" if case_row else None, f"bench-{k}" if case_row else None, T0)

    def cases() -> Any:
        for k in range(1, n_cases + 1):
            i = k * stride
            yield (k, 1, i, f"bench-{k}", "0" * 64, package, "S001", "ZJ-G60-K123", "CN-ZJ",
                   T0 + timedelta(seconds=i * STEP_S), plate((k - 1) % n_vehicles), "yellow",
                   STATES[k % len(STATES)], "ENFORCEABLE", "fine", 6000, "yes",
                   "《浙江省公路条例》第五十三条", False, False, T0, T0,
                   None if STATES[k % len(STATES)] == "technical_review" else T0)

    return vehicles(), passages(), cases()


VEHICLE_COLS = "plate, plate_colour, vin, licence_file_number, owner_name_zh, updated_utc"
PASSAGE_COLS = ("id, source_key, station_id, site_id, lane_code, device_id, time_utc, plate, "
                "plate_colour, speed_kmh, axle_count, gross_weight_kg, vehicle_class, "
                "limit_kg, excess_kg, verdict, overloaded, flags, eligibility_status, "
                "package_id, received_utc")
CASE_COLS = ("id, version, passage_id, package_id, manifest_sha256, package_path, station_id, "
             "site_id, jurisdiction, time_utc, plate, plate_colour, state, "
             "eligibility_status, proposed_outcome, proposed_fine_yuan, hearing_right, "
             "legal_basis_zh, manual_override, hearing_requested, created_utc, updated_utc, "
             "opened_utc")


def load_postgresql(engine: Any, n_passages: int, n_cases: int, n_vehicles: int,
                    package: str) -> dict[str, float]:
    last = T0 + timedelta(seconds=n_passages * STEP_S)
    with engine.begin() as conn:
        partitions.ensure_months(conn, partitions.months_between(
            partitions.month_of(T0), partitions.month_of(last)))
    vehicles, passages, cases = rows(n_passages, n_cases, n_vehicles, package)
    took: dict[str, float] = {}
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            for table, cols, source in (("vehicles", VEHICLE_COLS, vehicles),
                                        ("passages", PASSAGE_COLS, passages),
                                        ("cases", CASE_COLS, cases)):
                t = time.perf_counter()
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                    for row in source:
                        cp.write_row(row)
                took[f"copy_{table}_s"] = time.perf_counter() - t
                print(f"  COPY {table}: {took[f'copy_{table}_s']:.0f} s", flush=True)
            for table in ("passages", "cases"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        t = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        took["vacuum_analyze_s"] = time.perf_counter() - t
    finally:
        raw.close()
    return took


def load_sqlite(path: Path, n_passages: int, n_cases: int, n_vehicles: int,
                package: str) -> None:
    vehicles, passages, cases = rows(n_passages, n_cases, n_vehicles, package)

    def naive(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's form
                     if isinstance(v, datetime) else v for v in row)

    db = sqlite3.connect(path)
    for table, cols, source in (("vehicles", VEHICLE_COLS, vehicles),
                                ("passages", PASSAGE_COLS, passages),
                                ("cases", CASE_COLS, cases)):
        marks = ", ".join("?" * len(cols.split(",")))
        db.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                       (naive(r) for r in source))
    db.commit()
    db.execute("ANALYZE")
    db.close()


def jobs(n: int, n_vehicles: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        i = rng.randrange(n_vehicles)
        if k % 4 == 3:  # no such vehicle
            out.append((plate(n_vehicles * 2 + i), vin(i)[-6:]))
        else:
            out.append((plate(i), vin(i)[-6:] if k % 2 == 0 else "000000"))
    return out


def _direct_worker(url: str, work: list[tuple[str, str]], start_at: float, wid: int
                   ) -> tuple[list[tuple[float, float, int, float, float, float]],
                              tuple[float, float]]:
    """(total s, database s, records, lock hold s, read s, lock wait s) per query, in this
    process, and the CPU seconds of this process and of its PostgreSQL backend over the
    run. The lock wait is from the lock request to its grant (behind the sealer's barrier
    when it waits for the exclusive lock).
    The hold is from the access-log write's lock grant (``pg_advisory_xact_lock_shared``
    returned; shared, so queries share it) to the end of COMMIT; the read part is from the
    start to the lock request (the query's own work, Python included)."""
    engine = make_engine(url)
    db_s = [0.0]
    locked_at = [0.0]
    lock_asked = [0.0]

    @event.listens_for(engine, "before_cursor_execute")
    def _before(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        db_s.append(time.perf_counter())
        if statement.startswith("SELECT pg_advisory_xact_lock"):
            lock_asked[0] = db_s[-1]

    @event.listens_for(engine, "after_cursor_execute")
    def _after(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        now = time.perf_counter()
        db_s[0] += now - db_s.pop()
        if statement.startswith("SELECT pg_advisory_xact_lock"):
            locked_at[0] = now

    factory = session_factory(engine)
    settings = bench_settings(url)
    limiter = owners.RateLimiter()
    with factory() as warm:  # the pool's connection is made before the clock starts
        backend = warm.execute(text("SELECT pg_backend_pid()")).scalar() \
            if engine.dialect.name == "postgresql" else None
    while time.time() < start_at:
        time.sleep(0.005)
    cpu_python, cpu_pg = time.process_time(), _cpu_s(backend)
    out = []
    for j, (p, secret) in enumerate(work):
        db_s[0] = locked_at[0] = lock_asked[0] = 0.0
        t = time.perf_counter()
        session = factory()
        session.begin()
        answer = owners.owner_query(session, settings, limiter, client_id=f"w{wid}-{j}",
                                    plate=p, plate_colour="黄", vin_last6=secret, pad=False)
        c = time.perf_counter()
        session.commit()
        done = time.perf_counter()
        session.close()
        out.append((done - t, db_s[0] + done - c, len(answer["records"]),
                    done - locked_at[0] if locked_at[0] else 0.0,
                    lock_asked[0] - t if lock_asked[0] else c - t,
                    locked_at[0] - lock_asked[0] if locked_at[0] else 0.0))
    cpu = (time.process_time() - cpu_python, _cpu_s(backend) - cpu_pg)
    engine.dispose()
    return out, cpu


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of a local process so far (the query's PostgreSQL
    backend; the server runs on this machine); 0.0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(label: str, laps: list[float], wall_s: float, **extra: Any) -> dict[str, Any]:
    out = {"driver": label, "queries": len(laps), "qps": round(len(laps) / wall_s, 1),
           "p50_ms": round(1000 * statistics.median(laps), 2),
           "p99_ms": round(1000 * pct(laps, 0.99), 2),
           "max_ms": round(1000 * max(laps), 2), **extra}
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return out


def _sealer(url: str, interval_s: float, stop: Any, out: Any) -> None:
    """The service's sealer in its own process: seal every ``interval_s`` until ``stop``;
    puts (seals, rows sealed, barrier s per round, seal s per round) on ``out``."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as warm:  # the connection is made before the first timed round
        warm.execute(text("SELECT 1"))
    seals = rows = 0
    barrier_s: list[float] = []
    seal_s: list[float] = []
    while not stop.is_set():
        t = time.perf_counter()
        through = access_log.barrier_max_id(sessions)
        b = time.perf_counter()
        with transaction(sessions) as session:
            seal = access_log.seal_through(session, through) if through else None
        barrier_s.append(b - t)
        seal_s.append(time.perf_counter() - b)
        if seal is not None:
            seals += 1
            rows += seal.count
        stop.wait(interval_s)
    engine.dispose()
    out.put((seals, rows, barrier_s, seal_s))


def _seal_and_verify(url: str) -> dict[str, Any]:
    """Seal what is left, then verify the chain and the access log."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    access_log.seal_pending(sessions)
    with transaction(sessions) as session:
        check = access_log.verify_all(session)
    engine.dispose()
    return {"problems": len(check.problems), "access_entries": check.access.entries,
            "seals": check.access.seals, "unsealed": check.access.unsealed}


def run_direct(url: str, n_queries: int, n_vehicles: int, procs: int) -> dict[str, Any]:
    work = jobs(n_queries, n_vehicles, seed=procs)
    parts = [work[k::procs] for k in range(procs)]
    start_at = time.time() + 3.0
    ctx = mp.get_context("spawn")
    stop, box = ctx.Event(), ctx.Queue()
    sealer = ctx.Process(target=_sealer, args=(url, 1.0, stop, box))
    sealer.start()
    try:
        with ctx.Pool(procs) as pool:
            results = pool.starmap(_direct_worker,
                                   [(url, parts[k], start_at, k) for k in range(procs)])
        wall = max(0.001, time.time() - start_at)
    finally:
        stop.set()
        seals, sealed_rows, barrier_s, seal_s = box.get(timeout=120)
        sealer.join(timeout=30)
    flat = [r for part, _ in results for r in part]
    cpu_python = sum(cpu[0] for _, cpu in results)
    cpu_pg = sum(cpu[1] for _, cpu in results)
    found = sum(1 for r in flat if r[2])
    hold = [r[3] for r in flat if r[3] > 0]
    mean_hold = statistics.fmean(hold) if hold else 0.0
    write = [r[0] - r[4] for r in flat]
    out = summarise(f"direct x{procs}", [r[0] for r in flat], wall, found=found,
                    db_p50_ms=round(1000 * statistics.median(r[1] for r in flat), 2),
                    db_p99_ms=round(1000 * pct([r[1] for r in flat], 0.99), 2),
                    db_share=round(sum(r[1] for r in flat) / sum(r[0] for r in flat), 2),
                    read_p50_ms=round(1000 * statistics.median(r[4] for r in flat), 2),
                    read_p99_ms=round(1000 * pct([r[4] for r in flat], 0.99), 2),
                    write_p50_ms=round(1000 * statistics.median(write), 2),
                    write_p99_ms=round(1000 * pct(write, 0.99), 2),
                    lock_hold_mean_ms=round(1000 * mean_hold, 2),
                    lock_wait_p99_ms=round(1000 * pct([r[5] for r in flat], 0.99), 2),
                    lock_wait_max_ms=round(1000 * max(r[5] for r in flat), 2),
                    cpu_python_ms_per_query=round(1000 * cpu_python / len(flat), 2),
                    cpu_pg_backend_ms_per_query=round(1000 * cpu_pg / len(flat), 2),
                    sealer={"rounds": len(barrier_s), "seals": seals, "rows": sealed_rows,
                            "barrier_p50_ms": round(1000 * statistics.median(barrier_s), 2)
                            if barrier_s else None,
                            "barrier_max_ms": round(1000 * max(barrier_s, default=0), 2),
                            "seal_max_ms": round(1000 * max(seal_s, default=0), 2)})
    print(json.dumps({"after direct": _seal_and_verify(url)}), flush=True)
    return out


def serve(url: str, port: int) -> None:
    """One server process: the service's app under uvicorn, the benchmark's settings."""
    import uvicorn

    from zhichao.service.app import create_app
    uvicorn.run(create_app(bench_settings(url)), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def _http_worker(ports: list[int], work: list[tuple[str, str]], start_at: float
                 ) -> list[tuple[float, int]]:
    import httpx
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]
    for c in clients:
        c.get("/api/v1/health")
    while time.time() < start_at:
        time.sleep(0.005)
    out = []
    for j, (p, secret) in enumerate(work):
        t = time.perf_counter()
        r = clients[j % len(clients)].post("/api/v1/owner/query", json={
            "plate": p, "plate_colour": "黄", "vin_last6": secret})
        out.append((time.perf_counter() - t, len(r.json()["records"])))
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
    return out


def run_http(url: str, n_queries: int, n_vehicles: int, servers: int,
             clients: int) -> dict[str, Any]:
    import httpx
    ports = [18700 + k for k in range(servers)]
    procs = [subprocess.Popen([sys.executable, __file__, "serve", url, str(p)])
             for p in ports]
    try:
        for p in ports:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{p}/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
        work = jobs(n_queries, n_vehicles, seed=100 + servers)
        parts = [work[k::clients] for k in range(clients)]
        start_at = time.time() + 3.0
        with mp.get_context("spawn").Pool(clients) as pool:
            results = pool.starmap(_http_worker, [(ports, parts[k], start_at)
                                                  for k in range(clients)])
        wall = max(0.001, time.time() - start_at)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    flat = [r for part in results for r in part]
    out = summarise(f"http {servers} servers x {clients} clients", [r[0] for r in flat],
                    wall, found=sum(1 for r in flat if r[1]))
    print(json.dumps({"after http": _seal_and_verify(url)}), flush=True)
    return out


def round_trips(engine: Any, n: int = 300) -> None:
    """What one round trip and one commit cost on this machine right now: ``insert +
    commit`` into a temporary table (no WAL: a round trip's cost), ``insert + durable
    commit`` into a plain table (the WAL flush every owner query's commit waits for)."""
    laps: dict[str, list[float]] = {"select 1": [], "insert + commit": [],
                                    "insert + durable commit": []}
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE rt_probe (x int)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS rt_probe_durable (x int)"))
        conn.commit()
        for _ in range(n):
            t = time.perf_counter()
            conn.execute(text("SELECT 1")).all()
            laps["select 1"].append(time.perf_counter() - t)
            for name, table in (("insert + commit", "rt_probe"),
                                ("insert + durable commit", "rt_probe_durable")):
                t = time.perf_counter()
                conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
                conn.commit()
                laps[name].append(time.perf_counter() - t)
        conn.execute(text("DROP TABLE rt_probe_durable"))
        conn.commit()
    print(json.dumps({k: {"p50_ms": round(1000 * statistics.median(v), 3),
                          "p90_ms": round(1000 * pct(v, 0.9), 3)} for k, v in laps.items()}),
          flush=True)


def explain(engine: Any, n_vehicles: int) -> None:
    """EXPLAIN ANALYZE of the query's statements for one vehicle with cases."""
    p = plate(5)
    statements = {
        "vehicle": ("SELECT id, vin, licence_file_number FROM vehicles "
                    "WHERE plate = :p AND plate_colour = 'yellow'"),
        "cases page": ("SELECT id, time_utc FROM cases WHERE plate = :p AND plate_colour = "
                       "'yellow' AND state IN ('notified','statements_closed','decided',"
                       "'served','published','revoked','archived') "
                       "AND opened_utc IS NOT NULL ORDER BY time_utc DESC, id DESC LIMIT 21"),
        "records": ("SELECT cases.id, passages.lane_code, passages.gross_weight_kg, "
                    "sites.name_zh, decisions.outcome FROM cases LEFT JOIN passages ON "
                    "passages.id = cases.passage_id AND passages.time_utc = cases.time_utc "
                    "LEFT JOIN sites ON sites.site_id = cases.site_id LEFT JOIN decisions "
                    "ON decisions.case_id = cases.id WHERE cases.id IN "
                    "(SELECT id FROM cases WHERE plate = :p AND plate_colour = 'yellow')"),
    }
    with engine.connect() as conn:
        for name, sql in statements.items():
            plan = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"),
                                {"p": p}).scalars().all()
            print(f"--- plan: {name}\n" + "\n".join(plan), flush=True)


def postgresql(args: argparse.Namespace, package: str) -> None:
    admin = make_engine(args.admin_url).execution_options(isolation_level="AUTOCOMMIT")
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}"'))
            conn.execute(text(f'CREATE DATABASE "{args.database}"'))
    url = make_url(args.admin_url).set(database=args.database).render_as_string(False)
    try:
        engine = make_engine(url)
        if args.reuse:  # a database kept by --keep: point its cases at this run's package
            upgrade(engine)  # (and bring it to this code's schema)
            with engine.begin() as conn:
                conn.execute(text("UPDATE cases SET package_path = :p"), {"p": package})
        else:
            upgrade(engine)
            print(f"PostgreSQL: {args.passages} passages, {args.cases} cases, "
                  f"{args.vehicles} vehicles into {args.database}", flush=True)
            t = time.perf_counter()
            took = load_postgresql(engine, args.passages, args.cases, args.vehicles, package)
            print(json.dumps({"load_total_s": round(time.perf_counter() - t),
                              **{k: round(v) for k, v in took.items()}}), flush=True)
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_size_pretty(pg_database_size("
                                     "current_database()))")).scalar()
            print(f"database size: {size}", flush=True)
        explain(engine, args.vehicles)
        round_trips(engine)
        engine.dispose()
        for procs in args.procs:
            run_direct(url, args.queries, args.vehicles, procs)
        if args.servers:
            run_http(url, args.queries, args.vehicles, args.servers, args.clients)
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" '
                                  "WITH (FORCE)"))
            print(f"dropped database {args.database}", flush=True)
        admin.dispose()


def sqlite(args: argparse.Namespace, package: str, tmp: Path) -> None:
    path = tmp / f"owners-{secrets.token_hex(3)}.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    vehicles = max(1, args.vehicles * args.sqlite_cases // args.cases)
    print(f"SQLite: {args.sqlite_passages} passages, {args.sqlite_cases} cases, "
          f"{vehicles} vehicles", flush=True)
    t = time.perf_counter()
    load_sqlite(path, args.sqlite_passages, args.sqlite_cases, vehicles, package)
    print(f"  load {time.perf_counter() - t:.0f} s, file {path.stat().st_size / 2**20:.0f} "
          "MiB", flush=True)
    for procs in (1, 2):
        run_direct(url, args.queries // 2, vehicles, procs)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--database", default="zhichao_bench")
    ap.add_argument("--passages", type=int, default=10_000_000)
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--vehicles", type=int, default=800_000)
    ap.add_argument("--queries", type=int, default=4000)
    ap.add_argument("--procs", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 2, 4])
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--sqlite-passages", type=int, default=1_000_000)
    ap.add_argument("--sqlite-cases", type=int, default=100_000)
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--skip-postgresql", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    ap.add_argument("--reuse", action="store_true",
                    help="query the database a --keep run left (no load)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        package = str(seal_plain_case(tmp).directory)
        if not args.skip_postgresql:
            postgresql(args, package)
        if not args.skip_sqlite:
            sqlite(args, package, tmp)
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
