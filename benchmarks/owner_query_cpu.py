"""CPU per owner query, in one process and behind one HTTP server (SQLite, small data).

    python3 benchmarks/owner_query_cpu.py [--queries 1500] [--passages 100000] [--cases 10000]

A scratch SQLite database (``owner_queries.py``'s rows: every case pointing at one sealed
package) is queried (1) by calling ``owners.owner_query`` in this process — wall and CPU
per query — and (2) over HTTP: one uvicorn server process running the service's app
(``owner_queries.py serve``) and one httpx client in this process, one request at a time —
wall per request, the server process's CPU (``/proc/<pid>/stat``) and the client's. The
CPU a query costs, without the contention of many processes that ``owner_queries.py``
measures; each part is warmed with 200 queries first.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
import owner_queries as oq  # noqa: E402

from zhichao.service import owners  # noqa: E402
from zhichao.service.db import make_engine, session_factory, upgrade  # noqa: E402


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def direct(url: str, work: list[tuple[str, str]]) -> None:
    engine = make_engine(url)
    factory = session_factory(engine)
    settings = oq.bench_settings(url)
    limiter = owners.RateLimiter()

    def run(jobs: list[tuple[str, str]]) -> None:
        for j, (plate, secret) in enumerate(jobs):
            with factory() as session, session.begin():
                owners.owner_query(session, settings, limiter, client_id=f"c{j}",
                                   plate=plate, plate_colour="黄", vin_last6=secret, pad=False)

    run(work[:200])
    t, cpu = time.perf_counter(), time.process_time()
    run(work)
    n = len(work)
    print(f"direct: {(time.perf_counter() - t) / n * 1000:.2f} ms wall, "
          f"{(time.process_time() - cpu) / n * 1000:.2f} ms CPU per query")
    engine.dispose()


def http(url: str, work: list[tuple[str, str]], port: int) -> None:
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "owner_queries.py"),
                               "serve", url, str(port)])
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        for _ in range(150):
            try:
                client.get("/api/v1/health")
                break
            except httpx.TransportError:
                time.sleep(0.2)

        def run(jobs: list[tuple[str, str]]) -> None:
            for plate, secret in jobs:
                r = client.post("/api/v1/owner/query", json={
                    "plate": plate, "plate_colour": "黄", "vin_last6": secret})
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")

        run(work[:200])
        s0, c0, t0 = _cpu_s(server.pid), time.process_time(), time.perf_counter()
        run(work)
        n = len(work)
        print(f"http: {(time.perf_counter() - t0) / n * 1000:.2f} ms wall, server "
              f"{(_cpu_s(server.pid) - s0) / n * 1000:.2f} ms CPU, client "
              f"{(time.process_time() - c0) / n * 1000:.2f} ms CPU per request")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=1500)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=18790)
    args = ap.parse_args()
    vehicles = max(1, args.cases * 8 // 10)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        package = str(oq.seal_plain_case(tmp).directory)
        path = tmp / "owners.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        oq.load_sqlite(path, args.passages, args.cases, vehicles, package)
        work = oq.jobs(args.queries, vehicles, 1)
        print(f"SQLite {args.passages} passages, {args.cases} cases, {vehicles} vehicles; "
              f"{args.queries} queries; load average {os.getloadavg()[0]:.1f}")
        direct(url, work)
        http(url, work, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
