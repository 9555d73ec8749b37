"""Replicas in one process, on PostgreSQL: two :class:`CenterStore` objects (each with its
own engine, folder and service hook, as two ``center serve`` processes would have) take
the same uploads from many threads at once. Every passage and package lands once, every
caller gets a receipt (never an error from a lost race), each item reaches the service
tables once, and the audit chain verifies. (With processes, a killed replica and 50
stations: test_replicas.py, slow.)"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.service.sync_helpers import Database, StationKit, database
from zhichao.evidence.signing import generate_key
from zhichao.service.audit import verify_chain
from zhichao.service.center.service_hook import ServiceHook
from zhichao.service.center.store import CenterStore, create_tables, make_engine
from zhichao.service.db import make_engine as service_engine
from zhichao.service.models import Case, Passage
from zhichao.sync.wire import pack_package, read_package_head, sign_passage


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    yield from database("postgresql", tmp_path)


def _replicas(db: Database, tmp_path: Path, count: int) -> list[CenterStore]:
    key = generate_key()
    create_tables(db.engine, db.schema)
    stores = []
    for i in range(count):
        hook = ServiceHook.for_engine(service_engine(db.url, schema=db.schema))
        stores.append(CenterStore(make_engine(db.url), tmp_path / f"store{i}", key,
                                  schema=db.schema, hook=hook, fsync=False))
    return stores


def _passage_items(kit: StationKit, count: int) -> list[dict[str, Any]]:
    items = []
    for record in kit.passages(count):
        data, signature = sign_passage(record, kit.key)
        items.append({"record_b64": base64.b64encode(data).decode(), "signature": signature})
    return items


def test_the_same_passages_from_many_threads_on_two_replicas_land_once(
        db: Database, tmp_path: Path) -> None:
    stores = _replicas(db, tmp_path, 2)
    kit = StationKit(tmp_path / "station")
    stores[0].register_station(kit.station_id, kit.public_pem)
    items = _passage_items(kit, 30)
    start = threading.Barrier(8)

    def send(n: int) -> list[dict[str, Any]]:
        start.wait()
        outcome = stores[n % 2].ingest_passages(kit.station_id, items[n % 3:] + items[:n % 3])
        assert outcome.status == 200, outcome.body
        return list(outcome.body["results"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    for results in answers:
        assert all("receipt_b64" in r for r in results), results
    statuses = [r["status"] for results in answers for r in results]
    assert statuses.count("accepted") == 30 and statuses.count("duplicate") == 7 * 30
    assert stores[1].counts()["passages"] == 30
    _check_service(db, passages=30, cases=0)


def test_the_same_packages_from_many_threads_on_two_replicas_land_once(
        db: Database, tmp_path: Path) -> None:
    stores = _replicas(db, tmp_path, 2)
    kits = [StationKit(tmp_path / f"st{i}", station_id=f"S00{i}") for i in range(3)]
    uploads: list[tuple[bytes, str]] = []
    for i, kit in enumerate(kits):
        stores[0].register_station(kit.station_id, kit.public_pem)
        for folder in kit.seal(1, salt=i + 1):  # one package each: no proofs needed
            data = pack_package(folder)
            uploads.append((data, read_package_head(data, "test").manifest_sha256))
    start = threading.Barrier(12)

    def send(n: int) -> dict[str, Any]:
        data, sha = uploads[n % 3]
        store = stores[n % 2]
        start.wait()
        spooled = store.spool([data])
        assert isinstance(spooled, tuple)
        outcome = store.ingest_package(sha, spooled[0], spooled[1], None)
        assert outcome.status in (200, 201), outcome.body
        return dict(outcome.body)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, range(12)))
    assert sorted(a["status"] for a in answers) == ["accepted"] * 3 + ["duplicate"] * 9
    assert stores[0].counts() | {"stations": 3} == {
        "packages": 3, "passages": 0, "quarantined": 0, "stations": 3, "hook_pending": 0}
    _check_service(db, passages=3, cases=3)


def _check_service(db: Database, *, passages: int, cases: int) -> None:
    engine = service_engine(db.url, schema=db.schema)
    try:
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Passage)) == passages
            assert session.scalar(select(func.count()).select_from(Case)) == cases
            assert verify_chain(session) == []
    finally:
        engine.dispose()
