"""Ingest with 1, 2 and 3 center replicas on one PostgreSQL (issue 21 item 6).

    python3 benchmarks/center_replicas.py [--stations 30] [--packages 4] [--passages 40]
                                          [--replicas 1,2,3] [--object-store]
                                          [--profile-packages 40] [--no-service-hook]

For each replica count N: a fresh PostgreSQL schema, N real ``zhichao center serve``
processes on loopback (service hook on, the default: every package also becomes a case in
technical review with an audit entry), and ``--stations`` stations, each a thread with its
own outbox and the real sync client (:class:`~zhichao.station.uploader.Uploader`), station
i sending to replica i mod N. Two phases, timed from the first request to the last
receipt: the packages (``--packages`` per station, sealed once before), then the passage
records (``--passages`` per station, in batches of 200). Reported per phase:

* packages/s or passages/s, end to end (the stations run on the same machine);
* replica CPU per item: user + system CPU of the replica processes (``/proc/<pid>/stat``)
  over the phase, divided by the items;
* PostgreSQL CPU per item: the same for the server processes (backends) serving the
  replicas' connections (found by their ``application_name``, sampled every 0.1 s so that
  short-lived connections count too; other users of the server are left out);
* the stations' CPU per item (this process: the 30 uploader threads and their outboxes).

Then "where the time goes": one replica's work (``CenterStore.ingest_package`` with the
service hook, no HTTP) run in this process under cProfile for ``--profile-packages``
packages, with the time spent waiting for the database measured by SQLAlchemy cursor
events (statement execution and commits), and the profile's cumulative times grouped by
stage (verification, receipt signing, database, spool/files, service hook).

``--object-store`` keeps the packages in an S3-compatible bucket served by a moto server
process on loopback (an emulator: it says nothing about a real store's latency).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.common import Backoff  # noqa: E402
from zhichao.evidence.merkle import MerkleLog  # noqa: E402
from zhichao.evidence.signing import generate_key  # noqa: E402
from zhichao.service.center.service_hook import ServiceHook  # noqa: E402
from zhichao.service.center.store import (  # noqa: E402
    CenterStore,
    ProofClaim,
    create_tables,
    make_engine,
    register_station,
)
from zhichao.service.db import make_engine as service_engine  # noqa: E402
from zhichao.station.sync_outbox import Outbox  # noqa: E402
from zhichao.station.uploader import Uploader  # noqa: E402
from zhichao.sync.wire import pack_package, read_package_head  # noqa: E402
from zhichao.testing.objectstore import CREDENTIALS, MotoServer  # noqa: E402
from zhichao.testing.sync import CenterProcess, Database, StationKit, free_port, postgres_url  # noqa: E402

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
BUCKET = "zhichao-bench"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving the replicas (their connections carry
    ``application_name``), sampled every ``period_s`` from ``pg_stat_activity`` and
    ``/proc`` so that backends closed during a phase still count (up to their last
    sample). Other users of the same server are not counted."""

    def __init__(self, engine: Engine, application_name: str, period_s: float = 0.1) -> None:
        self.engine = engine
        self.application_name = application_name
        self.period_s = period_s
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        with self.engine.connect() as conn:
            pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE "
                                     "application_name = :a"),
                                {"a": self.application_name}).scalars().all()
        for pid in pids:
            seconds = cpu_s(int(pid))
            if seconds:
                self.last[int(pid)] = seconds

    def start(self) -> dict[int, float]:
        self._sample()
        baseline = dict(self.last)
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.period_s):
                self._sample()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return baseline

    def stop(self, baseline: dict[int, float]) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return sum(v - baseline.get(pid, 0.0) for pid, v in self.last.items())


def new_database(url: str, application_name: str | None = None) -> Database:
    if application_name is not None:
        url = f"{url}?application_name={application_name}"
    return Database(url, f"replica_bench_{uuid.uuid4().hex[:10]}", make_engine(url))


def run_phase(stations: list[tuple[StationKit, Path]], urls: list[str], center_pub: Any
              ) -> float:
    """Drain every outbox (station i → replica i mod N); wall seconds."""
    errors: list[BaseException] = []

    def one(i: int, kit: StationKit, path: Path) -> None:
        try:
            with Outbox(path) as outbox:
                uploader = Uploader(outbox, urls[i % len(urls)], center_pub,
                                    log_dir=kit.log_dir, backoff=Backoff(0.05, 0.5),
                                    timeout_s=120.0)
                summary = uploader.run(until_empty=True, max_runtime_s=900, poll_s=0.05)
                uploader.close()
                if summary.refused or outbox.depth():
                    raise RuntimeError(f"{kit.station_id}: {summary.as_dict()}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, kit, path))
               for i, (kit, path) in enumerate(stations)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def bench_replicas(n: int, url: str, kits: list[StationKit], folders: dict[str, list[Path]],
                   records: dict[str, list[dict[str, Any]]], work: Path,
                   s3: MotoServer | None, hook: bool = True) -> dict[str, Any]:
    app_name = f"zhichao-bench-{uuid.uuid4().hex[:8]}"
    db = new_database(url, app_name)
    backends = BackendCpu(make_engine(url), app_name)
    center_key = generate_key()
    extra: tuple[str, ...] = () if hook else ("--no-service-hook",)
    if s3 is not None:
        extra += ("--object-store", f"s3://{BUCKET}/n{n}-{uuid.uuid4().hex[:6]}/",
                 "--s3-endpoint-url", s3.url)
    replicas = [CenterProcess(db, work / f"n{n}-store{i}", center_key,
                              _mkdir(work / f"n{n}-r{i}"), extra_args=extra) for i in range(n)]
    try:
        create_tables(db.engine, db.schema)
        for kit in kits:
            register_station(db.engine, kit.station_id, kit.public_pem, schema=db.schema)
        threads = [threading.Thread(target=r.start, args=(120.0,)) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        urls = [r.url for r in replicas]
        result: dict[str, Any] = {"replicas": n}
        for phase in ("packages", "passages"):
            stations = []
            for kit in kits:
                path = work / f"n{n}-{phase}-{kit.station_id}.sqlite"
                with Outbox(path) as outbox:
                    if phase == "packages":
                        for folder in folders[kit.station_id]:
                            outbox.enqueue_package(folder)
                    else:
                        for record in records[kit.station_id]:
                            outbox.enqueue_passage(record, kit.station_id, kit.key)
                stations.append((kit, path))
            items = sum(len((folders if phase == "packages" else records)[k.station_id])
                        for k in kits)
            pids = [r.proc.pid for r in replicas if r.proc is not None]
            cpu0, pg_base = sum(cpu_s(p) for p in pids), backends.start()
            own0 = time.process_time()
            wall = run_phase(stations, urls, center_key.public_key())
            own = time.process_time() - own0
            pg_s = backends.stop(pg_base)
            cpu1 = sum(cpu_s(p) for p in pids)
            result[phase] = {"items": items, "wall_s": round(wall, 2),
                             "per_s": round(items / wall, 1),
                             "replica_cpu_ms_per_item": round((cpu1 - cpu0) / items * 1e3, 2),
                             "postgres_cpu_ms_per_item": round(pg_s / items * 1e3, 2),
                             "stations_cpu_ms_per_item": round(own / items * 1e3, 2)}
        health = replicas[0].health()
        assert (health["packages"], health["passages"]) == (
            result["packages"]["items"], result["passages"]["items"]), health
        return result
    finally:
        for replica in replicas:
            replica.kill()
        backends.engine.dispose()
        db.drop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class DbTimer:
    """Wall time spent in statement execution and commits on ``engine``'s connections."""

    def __init__(self, engine: Engine) -> None:
        self.seconds = 0.0
        self.statements = 0
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, *_args: Any) -> None:
        self._started[id(conn)] = time.perf_counter()

    def _after(self, conn: Any, *_args: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop(id(conn), time.perf_counter())
        self.statements += 1


def timed_commits(engine: Engine, timer: DbTimer) -> None:
    """Add the DBAPI commit's duration to ``timer`` (pool connections' commit wrapped)."""

    @event.listens_for(engine, "connect")
    def _wrap(dbapi_conn: Any, _record: Any) -> None:
        original: Callable[[], None] = dbapi_conn.commit

        def commit() -> None:
            t0 = time.perf_counter()
            try:
                original()
            finally:
                timer.seconds += time.perf_counter() - t0

        with contextlib.suppress(AttributeError):  # a driver that cannot be patched
            dbapi_conn.commit = commit


STAGES = {  # profile functions whose cumulative time stands for a stage
    "offline verification (verify_package)": ("zhichao/evidence/verify.py", "verify_package"),
    "reading the zip (read_package)": ("zhichao/evidence/reader.py", "read_package"),
    "service hook (passage, case, audit)": ("zhichao/service/center/service_hook.py",
                                            "deliver_many"),
    "commit of the sync row (station lock, insert, commit)": (
        "zhichao/service/center/store.py", "_commit_package_once"),
    "keeping the file (fsync, rename)": ("zhichao/service/objectstore.py", "keep"),
    "receipt signing (sign_receipt)": ("zhichao/sync/wire.py", "sign_receipt"),
    "spooling the upload (spool)": ("zhichao/service/center/store.py", "spool"),
}


def profile_one_replica(url: str, count: int, work: Path) -> dict[str, Any]:
    """One replica's ingest work in this process, profiled; database wait measured."""
    kit = StationKit(work / "profile-station", station_id="P001")
    folders = kit.seal(count, salt=7)
    blobs = [pack_package(f) for f in folders]
    db = new_database(url)
    service = service_engine(db.url, schema=db.schema)
    timer = DbTimer(db.engine)
    timed_commits(db.engine, timer)
    service_timer = DbTimer(service)
    timed_commits(service, service_timer)
    try:
        create_tables(db.engine, db.schema)
        store = CenterStore(db.engine, work / "profile-store", generate_key(),
                            schema=db.schema, hook=ServiceHook.for_engine(service))
        store.register_station(kit.station_id, kit.public_pem)
        timer.seconds = service_timer.seconds = 0.0
        timer.statements = service_timer.statements = 0
        profiler = cProfile.Profile()
        accepted = 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        with MerkleLog(kit.log_dir, read_only=True) as log:
            for data in blobs:
                head = read_package_head(data, "bench")
                proof = None
                if accepted and head.checkpoint_size != accepted:
                    proof = ProofClaim(accepted, head.checkpoint_size,
                                       log.consistency_proof(accepted, head.checkpoint_size))
                profiler.enable()
                spooled = store.spool([data])
                assert not isinstance(spooled, type(None))
                path, sha = spooled  # type: ignore[misc]
                outcome = store.ingest_package(head.manifest_sha256, path, sha, proof)
                profiler.disable()
                assert outcome.status == 201, outcome.body
                accepted = head.checkpoint_size
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stats = pstats.Stats(profiler)
        stages: dict[str, float] = {}
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        for label, (file_end, name) in STAGES.items():
            stages[label] = round(sum(v[3] for k, v in raw.items()
                                      if k[0].endswith(file_end) and k[2] == name)
                                  / count * 1e3, 2)
        db_s = timer.seconds + service_timer.seconds
        return {"packages": count, "wall_ms_per_package": round(wall / count * 1e3, 2),
                "cpu_ms_per_package": round(cpu / count * 1e3, 2),
                "database_wait_ms_per_package": round(db_s / count * 1e3, 2),
                "statements_per_package": round(
                    (timer.statements + service_timer.statements) / count, 1),
                "cumulative_ms_per_package": stages}
    finally:
        service.dispose()
        db.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=30)
    parser.add_argument("--packages", type=int, default=4, help="per station")
    parser.add_argument("--passages", type=int, default=40, help="per station")
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--object-store", action="store_true",
                        help="packages in a moto S3 server on loopback instead of folders")
    parser.add_argument("--profile-packages", type=int, default=40)
    parser.add_argument("--no-service-hook", action="store_true",
                        help="replicas only store and receipt (no cases, no audit entries)")
    args = parser.parse_args()
    url = postgres_url()
    if url is None:
        print("no PostgreSQL on 127.0.0.1:5432 (database test): nothing to measure")
        return 1
    print(f"Python {platform.python_version()}, {platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPU(s) available, load average "
          f"{os.getloadavg()[0]:.1f} (stations, replicas and PostgreSQL share them)")
    with tempfile.TemporaryDirectory(prefix="zhichao-replicas-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        s3 = None
        if args.object_store:
            s3 = MotoServer(free_port(), work / "moto.log")
            s3.start()
            stack.callback(s3.stop)
            s3.make_bucket(BUCKET)
            os.environ.update(CREDENTIALS)
        kits = [StationKit(work / f"st{i:03d}", station_id=f"B{i:03d}")
                for i in range(args.stations)]
        folders = {k.station_id: k.seal(args.packages, salt=i + 1) for i, k in enumerate(kits)}
        records = {k.station_id: k.passages(args.passages, start=10_000 * i)
                   for i, k in enumerate(kits)}
        results = []
        for n in (int(x) for x in args.replicas.split(",")):
            result = bench_replicas(n, url, kits, folders, records, work, s3,
                                    hook=not args.no_service_hook)
            results.append(result)
            print(json.dumps(result), flush=True)
        profile = profile_one_replica(url, args.profile_packages, work)
        print(json.dumps({"profile_one_replica": profile}, ensure_ascii=False), flush=True)
    print("\n| replicas | packages/s | CPU ms/package: replicas, PostgreSQL, stations "
          "| passages/s | CPU ms/passage: replicas, PostgreSQL, stations |")
    print("|---|---|---|---|---|")
    for r in results:
        pk, ps = r["packages"], r["passages"]
        print(f"| {r['replicas']} | {pk['per_s']} | {pk['replica_cpu_ms_per_item']}, "
              f"{pk['postgres_cpu_ms_per_item']}, {pk['stations_cpu_ms_per_item']} | "
              f"{ps['per_s']} | {ps['replica_cpu_ms_per_item']}, "
              f"{ps['postgres_cpu_ms_per_item']}, {ps['stations_cpu_ms_per_item']} |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
