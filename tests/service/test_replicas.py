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

Then two ``zhichao serve`` replicas on the same database, Redis and evidence-log folder
(both running the background flusher) take the technical review of every case at once,
ten reviewers' threads alternating between them with one sign-in token: each case's review
event is in the evidence log exactly once, the log opens (its structure checks) and the
audit chain still verifies.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import PASSWORD
from tests.service.sync_helpers import (
    ROOT,
    CenterProcess,
    Database,
    StationKit,
    database,
    wait_for,
    zhichao_cmd,
)
from zhichao.common import Backoff
from zhichao.evidence.events import find_events
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.signing import generate_key, private_pem
from zhichao.service import accounts
from zhichao.service.audit import verify_chain
from zhichao.service.center.store import create_tables, register_station
from zhichao.service.db import make_engine, session_factory, transaction
from zhichao.service.models import AuditEntry, Case, EvidenceEvent, Passage
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.sync.wire import check_receipt
from zhichao.testing.objectstore import CREDENTIALS, MotoServer
from zhichao.testing.sync import free_port

pytestmark = pytest.mark.slow  # several processes and a few hundred uploads

BUCKET = "zhichao-replicas"
REDIS_URL = os.environ.get("ZHICHAO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
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
    serve = _start_service_replicas(db, s3, tmp_path)  # starting meanwhile (for phase 2)
    _start_all(replicas[:3])
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
    except BaseException:
        _stop(serve[0])
        raise
    finally:
        for replica in replicas:
            replica.kill()
    try:  # a failed check below still stops the two service replicas started for phase 2
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
    except BaseException:
        _stop(serve[0])
        raise
    _review_on_two_service_replicas(db, serve, tmp_path)


def _start_all(replicas: list[CenterProcess]) -> None:
    """Start replicas side by side (each start waits for its health answer)."""
    with ThreadPoolExecutor(len(replicas)) as pool:
        for future in [pool.submit(r.start, 90.0) for r in replicas]:
            future.result()


Serve = tuple[list["subprocess.Popen[bytes]"], list[str], Path]


def _start_service_replicas(db: Database, s3: MotoServer, tmp_path: Path) -> Serve:
    """Two ``zhichao serve`` processes on the center's database, one Redis and one evidence
    log folder, each with the background flusher (not yet waited for)."""
    key_path = tmp_path / "center-log.key"
    key_path.write_bytes(private_pem(generate_key()))
    log_dir = tmp_path / "center-log"
    env = {**os.environ, "ZHICHAO_SECRET_KEY": "r" * 40, "ZHICHAO_S3_ENDPOINT_URL": s3.url,
           "ZHICHAO_OBJECT_CACHE": str(tmp_path / "serve-cache")}
    ports = [free_port(), free_port()]
    procs = []
    for n, port in enumerate(ports):
        with (tmp_path / f"serve{n}.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [*zhichao_cmd("serve", "--db", db.url, "--schema", str(db.schema), "--port",
                              str(port), "--evidence-log", str(log_dir), "--evidence-key",
                              str(key_path), "--evidence-key-name", "zhichao-center",
                              "--evidence-log-origin", "zhichao/center/replicas",
                              "--events-flush-interval-s", "0.3", "--redis-url",
                              REDIS_URL)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env))
    return procs, [f"http://127.0.0.1:{port}/api/v1" for port in ports], log_dir


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(20)


def _review_on_two_service_replicas(db: Database, serve: Serve, tmp_path: Path) -> None:
    procs, bases, log_dir = serve
    engine = make_engine(db.url, schema=db.schema)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        accounts.create_user(session, username="reviewer1", password=PASSWORD,
                             display_name_zh="审核员", roles=["technical_reviewer"])
        cases = [(c.id, c.manifest_sha256) for c in session.scalars(select(Case))]
    try:
        for base in bases:
            wait_for(lambda b=base: _up(b), timeout_s=90, what="zhichao serve")
        r = httpx.post(bases[0] + "/auth/login", json={"username": "reviewer1",
                                                       "password": PASSWORD}, timeout=30)
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}  # valid on every replica

        def review(part: list[tuple[int, str]], first: int) -> None:
            with httpx.Client(timeout=30) as client:
                for i, (case_id, _sha) in enumerate(part):
                    base = bases[(first + i) % 2]
                    seen = client.get(f"{base}/cases/{case_id}", headers=auth)
                    assert seen.status_code == 200, seen.text
                    answer = client.post(f"{base}/cases/{case_id}/technical-review",
                                         headers=auth,
                                         json={"approve": True,
                                               "expected_version": seen.json()["version"]})
                    assert answer.status_code == 200, answer.text

        with ThreadPoolExecutor(10) as pool:
            for future in [pool.submit(review, cases[t::10], t) for t in range(10)]:
                future.result()
        wait_for(lambda: _unlogged(sessions) == 0, timeout_s=90,
                 what="every review event in the evidence log")
    finally:
        _stop(procs)
    for n in range(len(procs)):
        log = (tmp_path / f"serve{n}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    with MerkleLog(log_dir, read_only=True) as merkle:  # opening checks the log's structure
        assert merkle.size == len(cases)
        for _case_id, sha in cases:
            assert [e.event_type.value for _i, _b, e in find_events(merkle, sha)] == [
                "technical_review"]
    with Session(engine) as session:
        assert verify_chain(session) == []
    engine.dispose()


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _unlogged(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(EvidenceEvent).where(
            EvidenceEvent.log_index.is_(None))) or 0)


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
