"""Package ingest rate at the center (packages/s, every package fully verified).

    python3 benchmarks/sync_ingest.py [--packages 200] [--passages 2000] [--documents]
                                      [--backends sqlite,postgresql]

Seals ``--packages`` real packages (documents skipped unless ``--documents``) into a
station log, then measures for each database backend:

* ``store``: :meth:`CenterStore.ingest_package` called directly (spool + fsync, offline
  verification against the registered key, consistency with the accepted checkpoint,
  atomic rename + directory fsync, row + signed receipt commit), one after another; and
  again without the file fsyncs (the database still commits durably) to show their share;
* ``store`` + service hook: the same with :class:`ServiceHook` (what ``center serve``
  installs by default): each package also becomes a passage, a case in technical review
  and an audit entry in the service tables of the same database;
* ``http``: the station uploader (:class:`Uploader`, outbox in SQLite WAL) draining to a
  real ``center serve`` process over loopback — the end-to-end rate, including the
  outbox's own fsync'd commits; with the service hook (the default) and without it;
* ``duplicates``: the same packages sent again from a second outbox (answered from the
  stored receipt, no re-verification);
* ``passages``: signed passage records in batches of 200 over HTTP.

PostgreSQL is used when a server answers on 127.0.0.1:5432 (database ``test``), in a
random schema dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.common import Backoff  # noqa: E402
from zhichao.evidence.merkle import MerkleLog  # noqa: E402
from zhichao.evidence.signing import generate_key  # noqa: E402
from zhichao.evidence.verify import verify_package  # noqa: E402
from zhichao.service.center.service_hook import ServiceHook  # noqa: E402
from zhichao.service.center.store import (  # noqa: E402
    CenterStore,
    ProofClaim,
    create_tables,
    make_engine,
    register_station,
)
from zhichao.service.db import make_engine as service_engine  # noqa: E402
from zhichao.service.db import upgrade as service_upgrade  # noqa: E402
from zhichao.station.sync_outbox import Outbox  # noqa: E402
from zhichao.station.uploader import Uploader  # noqa: E402
from zhichao.sync.wire import pack_package, read_package_head  # noqa: E402
from zhichao.testing.sync import (  # noqa: E402
    CenterProcess,
    Database,
    StationKit,
    postgres_url,
)


def new_db(kind: str, work: Path) -> Database | None:
    if kind == "sqlite":
        url = f"sqlite:///{work / f'center-{uuid.uuid4().hex[:6]}.sqlite'}"
        return Database(url, None, make_engine(url))
    url_pg = postgres_url()
    if url_pg is None:
        print("  (no PostgreSQL on 127.0.0.1:5432: skipped)")
        return None
    return Database(url_pg, f"sync_bench_{uuid.uuid4().hex[:10]}", make_engine(url_pg))


def bench_store(kind: str, kit: StationKit, blobs: list[bytes], work: Path, *,
                fsync: bool = True, hook: bool = False) -> None:
    db = new_db(kind, work)
    if db is None:
        return
    service = None
    try:
        accept_hook = None
        if hook:  # what `center serve` installs by default: a case per package
            service = service_engine(db.url, schema=db.schema)
            service_upgrade(service)
            accept_hook = ServiceHook.for_engine(service)
        store = CenterStore(db.engine, work / f"store-{kind}-{fsync}-{hook}", generate_key(),
                            schema=db.schema, fsync=fsync, hook=accept_hook)
        store.create_tables()
        store.register_station(kit.station_id, kit.public_pem)
        per: list[float] = []
        accepted = 0
        start = time.perf_counter()
        cpu_start = time.process_time()
        with MerkleLog(kit.log_dir, read_only=True) as log:
            for data in blobs:
                head = read_package_head(data, "bench")
                proof = None
                if accepted and head.checkpoint_size != accepted:
                    proof = ProofClaim(accepted, head.checkpoint_size,
                                       log.consistency_proof(accepted, head.checkpoint_size))
                t0 = time.perf_counter()
                spooled = store.spool([data])
                assert not isinstance(spooled, type(None))
                path, sha = spooled  # type: ignore[misc]
                outcome = store.ingest_package(head.manifest_sha256, path, sha, proof)
                per.append(time.perf_counter() - t0)
                assert outcome.status == 201, outcome.body
                accepted = head.checkpoint_size
        total = time.perf_counter() - start
        cpu_ms = (time.process_time() - cpu_start) / len(blobs) * 1e3
        label = ("" if fsync else ", no file fsync") + (
            ", + service hook (passage, case, audit entry)" if hook else "")
        print(f"  store/{kind}{label}: {len(blobs) / total:7.1f} packages/s  "
              f"(median {statistics.median(per) * 1e3:.1f} ms, "
              f"p95 {sorted(per)[int(0.95 * len(per)) - 1] * 1e3:.1f} ms; "
              f"CPU {cpu_ms:.1f} ms/package in this process)")
        if service is not None:
            with service.connect() as conn:
                cases = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
            assert cases == len(blobs), cases
    finally:
        if service is not None:
            service.dispose()
        db.drop()


def bench_http(kind: str, kit: StationKit, folders: list[Path], records: list[dict[str, object]],
               work: Path, *, hook: bool = True) -> None:
    db = new_db(kind, work)
    if db is None:
        return
    center_key = generate_key()
    center = CenterProcess(db, work / f"hstore-{kind}-{hook}", center_key, work,
                           extra_args=() if hook else ("--no-service-hook",))
    hook_label = " with the service hook" if hook else ", --no-service-hook"
    try:
        create_tables(db.engine, db.schema)
        register_station(db.engine, kit.station_id, kit.public_pem, schema=db.schema)
        center.start()
        for label in ("http", "duplicates"):
            outbox_path = work / f"outbox-{kind}-{label}-{hook}.sqlite"
            with Outbox(outbox_path) as outbox:
                for folder in folders:
                    outbox.enqueue_package(folder)
                uploader = Uploader(outbox, center.url, center_key.public_key(),
                                    log_dir=kit.log_dir, backoff=Backoff(0.05, 0.5))
                t0 = time.perf_counter()
                summary = uploader.run(until_empty=True, max_runtime_s=600)
                elapsed = time.perf_counter() - t0
                uploader.close()
                expect = summary.accepted if label == "http" else summary.duplicates
                assert expect == len(folders), summary
                print(f"  {label}/{kind}: {len(folders) / elapsed:7.1f} packages/s "
                      f"(station uploader → center process, loopback{hook_label})")
        if records:
            with Outbox(work / f"outbox-{kind}-passages-{hook}.sqlite") as outbox:
                for record in records:
                    outbox.enqueue_passage(record, kit.station_id, kit.key)
                uploader = Uploader(outbox, center.url, center_key.public_key(),
                                    log_dir=kit.log_dir)
                t0 = time.perf_counter()
                summary = uploader.run(until_empty=True, max_runtime_s=600)
                elapsed = time.perf_counter() - t0
                uploader.close()
                assert summary.accepted == len(records), summary
                print(f"  passages/{kind}: {len(records) / elapsed:7.0f} records/s "
                      f"(batches of 200, each signature verified{hook_label})")
        health = center.health()
        print(f"  center counts ({kind}): {health}")
    finally:
        center.kill()
        db.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--documents", action="store_true",
                        help="seal with the zh-CN HTML+PDF documents (slow to seal)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPU(s) available, load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="zhichao-sync-bench-") as tmp:
        work = Path(tmp)
        kit = StationKit(work / "station")
        t0 = time.perf_counter()
        if args.documents:
            from zhichao.evidence.documents import render_all
            from zhichao.evidence.inputs import CaseInputs
            from zhichao.evidence.package import Station, seal_package
            from zhichao.testing.cases import case_dict, vehicle_dict
            station = Station(kit.station_id, kit.key_name, kit.key)
            folders = []
            with MerkleLog(kit.log_dir, origin=station.origin, create=True, fsync=False) as log:
                for n in range(args.packages):
                    case = CaseInputs.from_json(case_dict(kit.inputs, vehicle=vehicle_dict(
                        first_sample=1000 + n)))
                    folder = kit.packages / f"doc-{n:05d}"
                    seal_package(case, folder, station=station, log=log, base_dir=kit.inputs,
                                 renderer=render_all)
                    folders.append(folder)
        else:
            folders = kit.seal(args.packages)
        blobs = [pack_package(f) for f in folders]
        size_kb = statistics.mean(len(b) for b in blobs) / 1024
        print(f"sealed {len(folders)} packages in {time.perf_counter() - t0:.1f} s, "
              f"mean packed size {size_kb:.0f} kB"
              f"{' (with documents)' if args.documents else ' (documents skipped)'}")
        t0, c0 = time.perf_counter(), time.process_time()
        for f in folders[: min(50, len(folders))]:
            assert verify_package(f, key=kit.key.public_key()).ok
        per = (time.perf_counter() - t0) / min(50, len(folders))
        cpu = (time.process_time() - c0) / min(50, len(folders))
        print(f"verify_package alone: {1 / per:7.1f} packages/s (CPU {cpu * 1e3:.1f} ms each)")
        records = kit.passages(args.passages)
        for kind in args.backends.split(","):
            print(f"[{kind}]")
            bench_store(kind, kit, blobs, work)
            bench_store(kind, kit, blobs, work, fsync=False)
            bench_store(kind, kit, blobs, work, hook=True)
            bench_http(kind, kit, folders, records, work)
            bench_http(kind, kit, folders, records, work, hook=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
