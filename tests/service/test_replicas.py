"""Stateless center replicas on one PostgreSQL: three real ``zhichao center serve``
processes, 50 stations uploading at once through the real sync client (each thread an
:class:`~zhichao.station.uploader.Uploader` on its own outbox), ten of them twice at the
same moment through two replicas (duplicate retries racing each other), and one replica
killed with SIGKILL while uploads are under way; the stations go on with the next replica,
and a fresh replica started afterwards takes over what the dead one had not handed to the
service. The replicas share nothing but the database and an S3-compatible bucket (a
moto server process on loopback): each has its own store folder, as on separate machines.
At the end every package and every passage is in the center exactly once (sync
tables and service tables), every outbox item holds a receipt that verifies, and the
audit chain verifies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.service.sync_helpers import CenterProcess, Database, StationKit, database, wait_for
from zhichao.common import Backoff
from zhichao.evidence.signing import generate_key
from zhichao.service.audit import verify_chain
from zhichao.service.center.store import create_tables, register_station
from zhichao.service.models import AuditEntry, Case, Passage
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.sync.wire import check_receipt
from zhichao.testing.objectstore import CREDENTIALS, MotoServer
from zhichao.testing.sync import free_port

pytestmark = pytest.mark.slow  # several processes and a few hundred uploads

BUCKET = "zhichao-replicas"
STATIONS = 50
TWINS = 10  # stations whose items a second outbox sends at the same time
PACKAGES = 2  # per station
PASSAGES = 6  # per station


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    yield from database("postgresql", tmp_path)


def _station_thread(kit: StationKit, outbox_path: Path, urls: list[str], first: int,
                    center_pub: object, report: dict[str, int], stop_at: float) -> None:
    """Drain one outbox; whenever a replica fails (or a pass ends), go on with the next."""
    turn = first
    with Outbox(outbox_path) as outbox:
        while outbox.depth() > 0 and time.monotonic() < stop_at:
            uploader = Uploader(outbox, urls[turn % len(urls)], center_pub,  # type: ignore[arg-type]
                                log_dir=kit.log_dir, timeout_s=15.0,
                                backoff=Backoff(initial_s=0.05, max_s=0.2))
            try:
                summary = uploader.run(until_empty=True, max_runtime_s=4.0, poll_s=0.05)
            finally:
                uploader.close()
            report["center_failures"] += summary.center_failures
            report["refused"] += summary.refused
            turn += 1


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    server = MotoServer(free_port(), tmp_path / "moto.log")
    server.start()
    server.make_bucket(BUCKET)
    for name, value in CREDENTIALS.items():  # inherited by the replica processes
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def test_three_replicas_fifty_stations_duplicates_and_a_killed_replica(
        db: Database, s3: MotoServer, tmp_path: Path) -> None:
    assert db.schema is not None
    create_tables(db.engine, db.schema)
    center_key = generate_key()
    shared = ("--object-store", f"s3://{BUCKET}/packages/", "--s3-endpoint-url", s3.url)
    replicas = [CenterProcess(db, tmp_path / f"store{i}", center_key,
                              _workdir(tmp_path, f"r{i}"), extra_args=shared)
                for i in range(4)]
    kits: list[StationKit] = []
    outboxes: list[tuple[StationKit, Path]] = []
    for i in range(STATIONS):
        kit = StationKit(tmp_path / f"st{i:02d}", station_id=f"S{i:03d}")
        register_station(db.engine, kit.station_id, kit.public_pem, schema=db.schema)
        folders = kit.seal(PACKAGES, salt=i + 1)
        records = kit.passages(PASSAGES, start=1000 * i)
        copies = 2 if i < TWINS else 1
        for c in range(copies):
            path = kit.root / f"outbox{c}.sqlite"
            with Outbox(path) as outbox:
                for folder in folders:
                    outbox.enqueue_package(folder)
                for record in records:
                    outbox.enqueue_passage(record, kit.station_id, kit.key)
            outboxes.append((kit, path))
        kits.append(kit)
    for replica in replicas[:3]:
        replica.start(timeout_s=60)
    center_pub = center_key.public_key()
    urls = [r.url for r in replicas[:3]]
    report = {"center_failures": 0, "refused": 0}
    stop_at = time.monotonic() + 240
    threads = [threading.Thread(target=_station_thread, args=(
        kit, path, urls, n % 3 if not path.name.startswith("outbox1") else n % 3 + 1,
        center_pub, report, stop_at), daemon=True) for n, (kit, path) in enumerate(outboxes)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: _count(db, "sync_package") >= 15, timeout_s=120,
                 what="uploads under way")
        replicas[0].kill()  # SIGKILL mid-upload: its in-flight requests are cut
        for thread in threads:
            thread.join(timeout=max(1.0, stop_at - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "stations did not drain in time"
        replicas[3].start(timeout_s=60)  # a fresh replica redelivers what the dead one left
        wait_for(lambda: replicas[3].health()["hook_pending"] == 0, timeout_s=60,
                 what="the service hook to take every accepted item")
        health = replicas[3].health()
    finally:
        for replica in replicas:
            replica.kill()
    assert report["center_failures"] >= 1  # some station met the killed replica
    assert report["refused"] == 0
    for replica in replicas:  # races were answered, not failed: no 500, no hook failure
        log = replica.log_path.read_text()
        assert "Exception in ASGI application" not in log, log[-3000:]
        assert "accept hook failed" not in log, log[-3000:]
    _check_exactly_once(db, kits, outboxes, health, center_pub)
    with db.engine.connect() as conn:
        locations = conn.execute(text(
            f'SELECT stored_path, content_sha256 FROM "{db.schema}".sync_package')).all()
    objects = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="packages/")["Contents"]
    assert sorted(o["Key"] for o in objects) == sorted(
        f"packages/{sha[:2]}/{sha}.zip" for _path, sha in locations)
    assert all(path == f"s3://{BUCKET}/packages/{sha[:2]}/{sha}.zip"
               for path, sha in locations)


def _workdir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f'SELECT count(*) FROM "{db.schema}".{table}')).scalar_one())


def _check_exactly_once(db: Database, kits: list[StationKit],
                        outboxes: list[tuple[StationKit, Path]], health: dict[str, int],
                        center_pub: object) -> None:
    packages, passages = STATIONS * PACKAGES, STATIONS * PASSAGES
    assert (health["packages"], health["passages"], health["quarantined"]) == (
        packages, passages, 0)
    with db.engine.connect() as conn:
        per_station = conn.execute(text(
            f'SELECT station_id, count(*), count(DISTINCT log_index) FROM "{db.schema}".'
            f'sync_package GROUP BY station_id')).all()
    assert sorted(per_station) == [(k.station_id, PACKAGES, PACKAGES) for k in kits]
    for kit, path in outboxes:  # every item on both ends, with a receipt that verifies
        with Outbox(path) as outbox:
            items = outbox.items()
        assert len(items) == PACKAGES + PASSAGES
        for item in items:
            assert item["state"] == "done", item
            check_receipt(item["receipt_b64"], item["receipt_sig"],
                          center_pub, item_sha256=item["item_sha256"],  # type: ignore[arg-type]
                          station_id=kit.station_id)
    engine = db.engine.execution_options(schema_translate_map={None: db.schema})
    with Session(engine) as session:
        # the service tables: one passage per record and per package (unique source keys),
        # one case per package (every sealed test case proposes a penalty)
        assert session.scalar(select(func.count()).select_from(Passage)) == packages + passages
        assert session.scalar(select(func.count(func.distinct(Passage.source_key)))) == \
            packages + passages
        assert session.scalar(select(func.count()).select_from(Case)) == packages
        assert session.scalar(select(func.count(func.distinct(Case.package_id)))) == packages
        assert session.scalar(select(func.count()).where(
            AuditEntry.action == "package.registered")) == packages
        assert verify_chain(session) == []
