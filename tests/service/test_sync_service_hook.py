"""Center → service: every package the center accepts becomes a case in the center's
service database (technical review), every passage a passage; exactly once.

In process (ASGI client): the hook on both backends, called again for the same items and
redelivered, the case's package read from the stored zip. With real processes on loopback:
a station outbox pushes to ``zhichao center serve`` (hook on by default, same database),
the service database refuses writes for a while (a trigger: the hook fails, the center still
accepts and receipts), everything is uploaded again from a second outbox, the center is
restarted after the database recovers, and the technical-review queue of the service API
holds every case exactly once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from tests.service.conftest import PASSWORD, TEST_POLICY, new_user
from tests.service.sync_helpers import (
    ROOT,
    CenterProcess,
    Database,
    PushProcess,
    StationKit,
    database,
    sync_cmd,
    wait_for,
)
from zhichao.common import Backoff
from zhichao.evidence.signing import generate_key
from zhichao.service import events, owners
from zhichao.service.center.server import create_center_app
from zhichao.service.center.service_hook import ServiceHook
from zhichao.service.center.store import Accepted, CenterStore, create_tables, register_station
from zhichao.service.db import make_engine, session_factory, transaction
from zhichao.service.errors import IngestError
from zhichao.service.ingest import read_package_manifest, register_ingested_package
from zhichao.service.models import Case, Passage
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from database(request.param, tmp_path)


def service_engine(db: Database) -> Engine:
    """The service core's engine on the center's database (same URL and schema)."""
    return make_engine(db.url, schema=db.schema)


def cases_by_package(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Case.package_id, Case.state)).all()
    out: dict[str, list[str]] = {}
    for package_id, state in rows:
        out.setdefault(package_id, []).append(state)
    return out


def passage_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Passage)).scalar_one())


def package_ids(folders: list[Path]) -> list[str]:
    return [json.loads((f / "manifest.json").read_bytes())["package_id"] for f in folders]


def refuse_service_writes(engine: Engine, on: bool) -> None:
    """Make the service database refuse new passages (a real failure of the hook's
    transaction; the sync tables are not affected)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            if on:
                conn.execute(text(
                    "CREATE TRIGGER zt_refuse_passages BEFORE INSERT ON passages BEGIN "
                    "SELECT RAISE(ABORT, 'test: service database refuses writes'); END"))
            else:
                conn.execute(text("DROP TRIGGER zt_refuse_passages"))
        elif on:
            conn.execute(text(
                "CREATE FUNCTION zt_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'test: service database refuses writes'; END $$"))
            conn.execute(text("CREATE TRIGGER zt_refuse_passages BEFORE INSERT ON passages "
                              "FOR EACH ROW EXECUTE FUNCTION zt_refuse()"))
        else:
            conn.execute(text("DROP TRIGGER zt_refuse_passages ON passages"))
            conn.execute(text("DROP FUNCTION zt_refuse()"))


def review_queue(db: Database, tmp_path: Path) -> list[dict[str, Any]]:
    """The technical-review queue as a technical reviewer sees it through the service API."""
    from zhichao.service.app import create_app
    from zhichao.service.settings import Settings

    app = create_app(Settings(database_url=db.url, database_schema=db.schema,
                              deadlines=TEST_POLICY))
    try:
        reviewer = new_user(app.state.sessions, "technical_reviewer")
        client = TestClient(app)
        token = client.post("/api/v1/auth/login", json={"username": reviewer.username,
                                                         "password": PASSWORD}).json()["token"]
        answer = client.get("/api/v1/cases", params={"state": "technical_review",
                                                     "limit": 500},
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        cases: list[dict[str, Any]] = answer.json()["cases"]
        if cases:  # the stored zip is what a reviewer downloads
            first = cases[0]
            got = client.get(f"/api/v1/cases/{first['id']}/package",
                             headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200
            assert hashlib.sha256(got.content).hexdigest() == stored_zip_sha(
                app.state.engine, first["id"])
        return cases
    finally:
        app.state.engine.dispose()


def stored_zip_sha(engine: Engine, case_id: int) -> str:
    with engine.connect() as conn:
        path = conn.execute(select(Case.package_path).where(Case.id == case_id)).scalar_one()
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------ in process


def test_hook_registers_each_item_once_even_when_called_again(db: Database,
                                                              tmp_path: Path) -> None:
    service = service_engine(db)
    hook = ServiceHook.for_engine(service)
    seen: list[Accepted] = []

    def recording(item: Accepted) -> None:
        hook(item)
        seen.append(item)

    key = generate_key()
    app = create_center_app(db.url, tmp_path / "store", key, schema=db.schema, hook=recording)
    store: CenterStore = app.state.sync_store
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    folders = kit.seal(3)
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        for folder in folders:
            outbox.enqueue_package(folder)
        for record in kit.passages(4):
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = Uploader(outbox, "http://testserver", key.public_key(),
                            log_dir=kit.log_dir, backoff=Backoff(0.01, 0.05),
                            client=TestClient(app))
        summary = uploader.run(until_empty=True, max_runtime_s=60)
    assert summary.accepted == 7 and summary.refused == 0
    expected = {pid: ["technical_review"] for pid in package_ids(folders)}
    assert cases_by_package(service) == expected
    assert passage_count(service) == 3 + 4
    # the hook called again for the same items (at-least-once delivery): nothing new
    assert len(seen) == 7
    for item in seen:
        hook(item)
    # and a redelivery (as if the center died before marking them delivered)
    with db.engine.begin() as conn:
        prefix = f'"{db.schema}".' if db.schema else ""
        conn.execute(text(f"UPDATE {prefix}sync_package SET hook_delivered = false"))
        conn.execute(text(f"UPDATE {prefix}sync_passage SET hook_delivered = false"))
    assert store.redeliver() == 7
    assert store.redeliver() == 0
    assert cases_by_package(service) == expected
    assert passage_count(service) == 7
    # the case points at the stored zip, and everything that reads a package reads it
    sessions = session_factory(service)
    with transaction(sessions) as s:
        case = s.scalars(select(Case).order_by(Case.id)).first()
        assert case is not None
        path = Path(case.package_path)
        assert path.is_absolute() and path.suffix == ".zip"
        assert path.parent.parent == (tmp_path / "store" / "packages").resolve()
        assert owners.read_manifest(case.package_path)["package_id"] == case.package_id
        name, data = owners.package_zip(case)
        assert data == path.read_bytes() and name.endswith(".zip")
        photo = next(f["path"] for f in owners.read_manifest(case.package_path)["files"]
                     if str(f.get("role", "")).startswith("image_"))
        assert owners.package_file(case, photo)[0] == "image/jpeg"
        assert events.package_log_position(case.package_path) == ("zhichao/station/S001",
                                                                   0)
        from zhichao.service.web.evidence_view import integrity
        check = integrity(case)  # the case page's integrity check on the stored zip
        assert check.ok, check.checks
    service.dispose()


def test_register_ingested_package_reads_the_manifest_from_a_zip(db: Database,
                                                                 tmp_path: Path) -> None:
    key = generate_key()
    app = create_center_app(db.url, tmp_path / "store", key, schema=db.schema)
    store: CenterStore = app.state.sync_store
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    (folder,) = kit.seal(1)
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        outbox.enqueue_package(folder)
        Uploader(outbox, "http://testserver", key.public_key(), log_dir=kit.log_dir,
                 client=TestClient(app)).run(until_empty=True, max_runtime_s=30)
    (zip_path,) = (tmp_path / "store" / "packages").rglob("*.zip")
    raw = (folder / "manifest.json").read_bytes()
    manifest, digest = read_package_manifest(zip_path)
    assert digest == hashlib.sha256(raw).hexdigest() == zip_path.stem
    assert manifest == json.loads(raw)
    with pytest.raises(IngestError, match="expected"):
        read_package_manifest(zip_path, expected_sha256="0" * 64)
    not_zip = tmp_path / "garbage.zip"
    not_zip.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(IngestError, match="manifest unreadable"):
        read_package_manifest(not_zip)
    service = service_engine(db)
    with transaction(session_factory(service)) as s:
        case = register_ingested_package(s, None, zip_path, manifest_sha256=digest)
        assert isinstance(case, Case) and case.manifest_sha256 == digest
        again = register_ingested_package(s, None, zip_path)
        assert again.id == case.id
    service.dispose()


def test_vehicles_sent_as_records_and_packages_are_one_passage_each(
        db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A station sends every vehicle as a passage record and the overloaded ones also as a
    package: one passage per vehicle, linked to its package, whatever the order. A batch
    holding a record the service refuses falls back to one by one: the others go in."""
    service = service_engine(db)
    key = generate_key()
    app = create_center_app(db.url, tmp_path / "store", key, schema=db.schema,
                            hook=ServiceHook.for_engine(service))
    store: CenterStore = app.state.sync_store
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    folders = kit.seal(2)
    vehicles = [json.loads((f / "manifest.json").read_bytes())["case"]["vehicle"]
                for f in folders]
    unknown_format = {**kit.passages(1, start=50)[0], "format": "zhichao.vehicle/9"}
    client = TestClient(app)
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        outbox.enqueue_passage(vehicles[0], kit.station_id, kit.key)  # record first
        outbox.enqueue_passage(unknown_format, kit.station_id, kit.key)
        for record in kit.passages(2):
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        for folder in folders:
            outbox.enqueue_package(folder)
        outbox.enqueue_passage(vehicles[1], kit.station_id, kit.key)  # package first
        with caplog.at_level("WARNING", logger="zhichao.service.center.store"):
            summary = Uploader(outbox, "http://testserver", key.public_key(),
                               log_dir=kit.log_dir, client=client).run(
                until_empty=True, max_runtime_s=60)
    assert summary.accepted == 7 and summary.refused == 0
    assert "delivering them one by one" in caplog.text
    assert "zhichao.vehicle/1" in caplog.text  # the refused record's reason is logged
    with service.connect() as conn:
        rows = conn.execute(select(Passage.package_id)).scalars().all()
    assert sorted(p for p in rows if p) == sorted(package_ids(folders))
    assert len(rows) == 2 + 2  # two vehicles with packages, two without; nothing twice
    assert len(cases_by_package(service)) == 2
    with db.engine.connect() as conn:
        prefix = f'"{db.schema}".' if db.schema else ""
        left = conn.execute(text(f"SELECT count(*) FROM {prefix}sync_passage "
                                 "WHERE NOT hook_delivered")).scalar()
    assert left == 1  # only the record the service refuses, offered again at start-up
    assert store.counts()["hook_pending"] == 1
    service.dispose()


# ------------------------------------------------------------------------ real processes


@pytest.mark.slow
def test_center_process_puts_every_package_in_the_review_queue_once(db: Database,
                                                                    tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    center_key = generate_key()
    center = CenterProcess(db, tmp_path / "store", center_key, tmp_path)
    create_tables(db.engine, db.schema)
    register_station(db.engine, kit.station_id, kit.public_pem, schema=db.schema)
    service = service_engine(db)
    outbox_path = tmp_path / "outbox.sqlite"
    first = kit.seal(4)
    passages = kit.passages(5)
    with Outbox(outbox_path) as outbox:
        for folder in first:
            outbox.enqueue_package(folder)
        for record in passages[:3]:
            outbox.enqueue_passage(record, kit.station_id, kit.key)
    center.start()
    try:
        done = PushProcess(outbox_path, center.url, center.pub_path, kit.log_dir, tmp_path,
                           until_empty=True).wait()
        assert done["rc"] == 0 and done["accepted"] == 7, done
        assert cases_by_package(service) == {p: ["technical_review"]
                                             for p in package_ids(first)}
        assert passage_count(service) == 4 + 3
        # The service database refuses writes: the center still accepts and receipts.
        refuse_service_writes(service, True)
        second = kit.seal(3, salt=1)
        with Outbox(outbox_path) as outbox:
            for folder in second:
                outbox.enqueue_package(folder)
            for record in passages[3:]:
                outbox.enqueue_passage(record, kit.station_id, kit.key)
        done = PushProcess(outbox_path, center.url, center.pub_path, kit.log_dir, tmp_path,
                           until_empty=True).wait()
        assert done["rc"] == 0 and done["accepted"] == 5, done
        assert center.health()["packages"] == 7
        assert len(cases_by_package(service)) == 4  # the hook failed for the new ones
        assert center.health()["hook_pending"] == 5  # and the center shows it
        assert "sync accept hook failed" in center.log_path.read_text()
        # A second outbox sends everything again: duplicates never reach the hook.
        outbox2 = tmp_path / "outbox2.sqlite"
        with Outbox(outbox2) as again:
            for folder in [*first, *second]:
                again.enqueue_package(folder)
            for record in passages:
                again.enqueue_passage(record, kit.station_id, kit.key)
        dup = PushProcess(outbox2, center.url, center.pub_path, kit.log_dir, tmp_path,
                          until_empty=True).wait()
        assert dup["rc"] == 0 and dup["duplicates"] == 12 and dup["accepted"] == 0, dup
        # The database recovers; the restarted center redelivers what the hook missed.
        center.kill()
        refuse_service_writes(service, False)
        center.start()
        wait_for(lambda: len(cases_by_package(service)) == 7, what="redelivered cases")
        center.kill()
        center.start()  # nothing left to redeliver: a second restart adds nothing
        health = center.health()
    finally:
        center.kill()
    assert (health["packages"], health["passages"], health["quarantined"],
            health["hook_pending"]) == (7, 5, 0, 0)
    expected = {p: ["technical_review"] for p in package_ids([*first, *second])}
    assert cases_by_package(service) == expected
    assert passage_count(service) == 7 + 5
    with db.engine.connect() as conn:
        prefix = f'"{db.schema}".' if db.schema else ""
        undelivered = conn.execute(text(
            f"SELECT (SELECT count(*) FROM {prefix}sync_package WHERE NOT hook_delivered) + "
            f"(SELECT count(*) FROM {prefix}sync_passage WHERE NOT hook_delivered)")).scalar()
    assert undelivered == 0
    queue = review_queue(db, tmp_path)
    assert sorted(c["package_id"] for c in queue) == sorted(expected)
    service.dispose()


def test_center_serve_help_says_how_to_turn_the_hook_off() -> None:
    result = subprocess.run(sync_cmd("center", "serve", "--help"), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--no-service-hook" in result.stdout and "service database" in result.stdout
