"""The owner access log (``access_log.py``): an owner query writes one access row and no
audit-chain entry; sealing folds the committed rows into one chained entry; verify checks
every row and every seal, so an altered, removed or inserted row is found; concurrent
queries and concurrent sealers (two "replicas") seal every row exactly once (PostgreSQL);
the app seals in the background; the CLI seals and verifies. Both backends where the
database's behaviour matters."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import Api, require_postgresql
from zhichao.cli import main
from zhichao.service import access_log, audit, owners
from zhichao.service.app import create_app
from zhichao.service.db import session_factory, transaction
from zhichao.service.models import AuditEntry, OwnerAccessEntry, Vehicle
from zhichao.service.settings import Settings

PLATE, VIN = "浙A5K321", "LFWAD0000000Q7X88"


def _settings() -> Settings:
    return Settings(database_url="sqlite://", migrate_on_start=False,
                    owner_query_min_duration_ms=0, owner_query_per_client_per_minute=10**6,
                    owner_query_per_plate_per_hour=10**6)


def _query(sessions: sessionmaker[Session], vin_last6: str = "000000", *,
           before_commit: Callable[[], None] | None = None) -> None:
    with transaction(sessions) as s:
        owners.owner_query(s, _settings(), owners.RateLimiter(), client_id="t", plate=PLATE,
                           plate_colour="黄", vin_last6=vin_last6, pad=False)
        if before_commit is not None:
            before_commit()


def _count(sessions: sessionmaker[Session], *where: object) -> int:
    with transaction(sessions) as s:
        return int(s.scalar(select(func.count()).select_from(OwnerAccessEntry).where(*where))
                   or 0)


def _seals(sessions: sessionmaker[Session]) -> list[AuditEntry]:
    with transaction(sessions) as s:
        return list(s.scalars(select(AuditEntry).where(
            AuditEntry.action == access_log.SEALED_ACTION).order_by(AuditEntry.id)))


def _check(sessions: sessionmaker[Session]) -> access_log.AuditCheck:
    with transaction(sessions) as s:
        return access_log.verify_all(s)


def test_a_query_writes_an_access_row_and_sealing_chains_it(fresh_db: Engine) -> None:
    sessions = session_factory(fresh_db)
    with transaction(sessions) as s:
        s.add(Vehicle(plate=PLATE, plate_colour="yellow", vin=VIN))
    _query(sessions)  # wrong VIN
    _query(sessions, VIN[-6:])  # right VIN, no case
    with transaction(sessions) as s:
        rows = list(s.scalars(select(OwnerAccessEntry).order_by(OwnerAccessEntry.id)))
        chain = list(s.scalars(select(AuditEntry)))
    assert [r.detail for r in rows] == [
        {"matched": False, "by": "vin", "evidence_viewed_case_ids": []}] * 2
    assert all(r.actor == "owner" and len(r.object_id) == 16 for r in rows)
    assert all(r.entry_sha256 == access_log.entry_hash(r.time_utc, r.actor, r.object_id,
                                                       r.detail) for r in rows)
    assert chain == []  # nothing in the audit chain until sealed
    check = _check(sessions)
    assert check.problems == [] and (check.access.entries, check.access.unsealed) == (2, 2)

    seal = access_log.seal_pending(sessions)
    assert seal is not None and (seal.first_id, seal.last_id, seal.count) == (
        rows[0].id, rows[1].id, 2)
    assert access_log.seal_pending(sessions) is None  # nothing new: no empty seal
    [entry] = _seals(sessions)
    assert entry.id == seal.audit_entry_id and entry.actor == access_log.SEALER_ACTOR
    assert entry.detail == {"first_id": rows[0].id, "last_id": rows[1].id, "count": 2,
                            "digest_sha256": access_log.batch_digest(
                                [r.entry_sha256 for r in rows])}
    _query(sessions)
    check = _check(sessions)
    assert check.problems == [] and (check.access.seals, check.access.unsealed) == (1, 1)
    second = access_log.seal_pending(sessions)
    assert second is not None and (second.first_id, second.count) == (rows[1].id + 1, 1)
    with transaction(sessions) as s:
        assert audit.verify_chain(s) == []
    assert _check(sessions).access.unsealed == 0


def test_a_sealer_behind_another_seals_only_what_lies_beyond(fresh_db: Engine) -> None:
    """Two replicas' sealers with barrier ids M1 < M2, in either order under the chain's
    lock: the ranges stay contiguous, no row twice."""
    sessions = session_factory(fresh_db)
    for _ in range(2):
        _query(sessions)
    m1 = access_log.barrier_max_id(sessions)
    _query(sessions)
    m2 = access_log.barrier_max_id(sessions)
    assert m2 > m1
    with transaction(sessions) as s:  # the later barrier seals first ...
        first = access_log.seal_through(s, m2)
    with transaction(sessions) as s:  # ... so the earlier one finds nothing left
        assert access_log.seal_through(s, m1) is None
        assert access_log.seal_through(s, m2) is None
    assert first is not None and (first.first_id, first.count) == (1, 3)
    _query(sessions)
    m3 = access_log.barrier_max_id(sessions)
    with transaction(sessions) as s:
        later = access_log.seal_through(s, m3)
    assert later is not None and (later.first_id, later.last_id, later.count) == (m2 + 1, m3, 1)
    assert _check(sessions).problems == []


@pytest.mark.parametrize("statement", [
    "UPDATE owner_access_log SET actor = 'mallory'",
    "DELETE FROM owner_access_log",
])
def test_the_database_refuses_changes_to_access_rows(fresh_db: Engine,
                                                     statement: str) -> None:
    sessions = session_factory(fresh_db)
    _query(sessions)
    with pytest.raises(Exception, match="append-only"), fresh_db.begin() as conn:
        conn.execute(text(statement))
    if fresh_db.dialect.name == "postgresql":
        with pytest.raises(Exception, match="append-only"), fresh_db.begin() as conn:
            conn.execute(text("TRUNCATE owner_access_log"))
    assert _count(sessions) == 1


def _tamper(engine: Engine, statement: str) -> None:
    """As an attacker with raw database access: the triggers off, then the change."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS owner_access_log_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS owner_access_log_no_delete"))
        else:
            conn.execute(text("ALTER TABLE owner_access_log "
                              "DISABLE TRIGGER owner_access_log_append_only"))
        conn.execute(text(statement))


@pytest.mark.parametrize("kind", ["alter", "alter_and_rehash", "remove", "insert"])
def test_tampering_with_a_sealed_row_is_found(fresh_db: Engine, kind: str) -> None:
    sessions = session_factory(fresh_db)
    for _ in range(3):
        _query(sessions)
    seal = access_log.seal_pending(sessions)
    assert seal is not None and _check(sessions).problems == []
    middle = seal.first_id + 1
    if kind == "alter":
        _tamper(fresh_db, f"UPDATE owner_access_log SET actor = 'mallory' WHERE id = {middle}")
    elif kind == "alter_and_rehash":  # the row's own hash recomputed: the seal still differs
        with transaction(sessions) as s:
            row = s.get(OwnerAccessEntry, middle)
            assert row is not None
            new_hash = access_log.entry_hash(row.time_utc, "mallory", row.object_id,
                                             row.detail)
        _tamper(fresh_db, f"UPDATE owner_access_log SET actor = 'mallory', "
                          f"entry_sha256 = '{new_hash}' WHERE id = {middle}")
    elif kind == "remove":
        _tamper(fresh_db, f"DELETE FROM owner_access_log WHERE id = {middle}")
    else:  # a row slipped into the sealed range (a removed one's place)
        _tamper(fresh_db, f"DELETE FROM owner_access_log WHERE id = {middle}")
        assert _check(sessions).problems  # (the removal alone is found)
        with transaction(sessions) as s:
            forged_id = access_log.record_owner_access(
                s, actor="owner", object_id="f" * 16,
                detail={"matched": False, "by": "vin", "evidence_viewed_case_ids": []})
        _tamper(fresh_db, f"INSERT INTO owner_access_log (id, time_utc, actor, object_id, "
                          f"detail, entry_sha256) SELECT {middle}, time_utc, actor, "
                          f"object_id, detail, entry_sha256 FROM owner_access_log "
                          f"WHERE id = {forged_id}")
    problems = _check(sessions).problems
    by_table = {(p.table, p.entry_id) for p in problems}
    if kind == "alter":
        assert ("owner_access_log", middle) in by_table  # its own hash fails
    else:
        assert ("audit_log", seal.audit_entry_id) in by_table  # the seal no longer matches
    with transaction(sessions) as s:
        assert audit.verify_chain(s) == []  # the chain itself is intact: the seal catches it


def test_concurrent_queries_and_sealers_seal_every_row_exactly_once(tmp_path: Path) -> None:
    """PostgreSQL: 4 threads of owner queries, each holding its transaction open a random
    few milliseconds (up to 10) after its INSERT (ids are handed out in one order, committed in
    another), while two sealers (two replicas) loop. Every row must end in exactly one
    seal: no seal may close a range over a row still in flight. (Without the writers'
    shared lock this failed 4 runs in 4: a seal's count fell short of its range's rows.)"""
    require_postgresql()
    from tests.service.conftest import new_engine
    from zhichao.service.db import drop_schema

    engine, _schema = new_engine("postgresql", tmp_path)
    try:
        sessions = session_factory(engine)
        stop = threading.Event()
        errors: list[BaseException] = []
        seals: list[access_log.Seal] = []

        def writer(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(60):
                    _query(sessions, before_commit=lambda: time.sleep(rng.uniform(0, 0.01)))
            except BaseException as exc:
                errors.append(exc)

        def sealer(polite_s: float) -> None:
            try:
                while not stop.is_set():
                    if (seal := access_log.seal_pending(sessions,
                                                        polite_s=polite_s)) is not None:
                        seals.append(seal)
                    time.sleep(0.001)
            except BaseException as exc:
                errors.append(exc)

        writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        # one sealer waits for the exclusive lock at once, the other tries it first
        sealers = [threading.Thread(target=sealer, args=(p,)) for p in (0.0, 0.05)]
        for t in sealers + writers:
            t.start()
        for t in writers:
            t.join(timeout=300)
        stop.set()
        for t in sealers:
            t.join(timeout=60)
        assert errors == []
        if (last := access_log.seal_pending(sessions)) is not None:
            seals.append(last)
        total = _count(sessions)
        assert total == 240
        assert len(seals) >= 3  # the sealers ran during the queries, not only at the end
        ranges = sorted((s.first_id, s.last_id) for s in seals)
        assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert sum(s.count for s in seals) == total
        check = _check(sessions)
        assert check.problems == [] and check.access.unsealed == 0
        assert check.access.seals == len(seals)
    finally:
        drop_schema(engine)
        engine.dispose()


def _shared_lock_ms(sessions: sessionmaker[Session], *, lock_timeout_ms: int) -> float:
    """Milliseconds one writer's shared lock took (raises if over ``lock_timeout_ms``)."""
    with transaction(sessions) as s:
        s.execute(text(f"SET LOCAL lock_timeout = '{lock_timeout_ms}ms'"))
        t = time.perf_counter()
        access_log.record_owner_access(s, actor="owner", object_id="0" * 16, detail={})
        return 1000 * (time.perf_counter() - t)


def test_the_barrier_tries_before_it_waits(tmp_path: Path) -> None:
    """PostgreSQL: while the barrier only tries the exclusive lock, a new query's shared
    lock is granted at once; once it waits for it, new queries queue behind it; the
    barrier's M covers the writer it waited for."""
    require_postgresql()
    from tests.service.conftest import new_engine
    from zhichao.service.db import drop_schema

    engine, _schema = new_engine("postgresql", tmp_path)
    holder: Session | None = None
    try:
        sessions = session_factory(engine)
        holder = sessions()
        holder.begin()
        held_id = access_log.record_owner_access(holder, actor="owner", object_id="h" * 16,
                                                 detail={})
        result: list[int] = []
        barrier = threading.Thread(target=lambda: result.append(
            access_log.barrier_max_id(sessions, polite_s=2.0)))
        barrier.start()
        time.sleep(0.2)  # the barrier is trying
        assert _shared_lock_ms(sessions, lock_timeout_ms=5000) < 500
        time.sleep(2.5)  # now it waits for the holder: a new query queues behind it
        with pytest.raises(Exception, match="lock timeout"):
            _shared_lock_ms(sessions, lock_timeout_ms=100)
        assert barrier.is_alive()
        holder.commit()
        holder.close()
        barrier.join(timeout=30)
        assert result and result[0] >= held_id
    finally:
        if holder is not None:  # a failed check must not leave its lock and rows held
            holder.close()
        drop_schema(engine)
        engine.dispose()


def test_the_access_locks_are_per_schema(tmp_path: Path) -> None:
    """PostgreSQL: a writer's shared lock holds back the barrier of its own schema only;
    another deployment's (another schema of the same database) takes its lock at once."""
    require_postgresql()
    from tests.service.conftest import new_engine
    from zhichao.service.db import drop_schema

    mine, _ = new_engine("postgresql", tmp_path / "a")
    other, _ = new_engine("postgresql", tmp_path / "b")
    holder: Session | None = None
    try:
        holder = session_factory(mine)()
        holder.begin()
        access_log.record_owner_access(holder, actor="owner", object_id="h" * 16, detail={})
        for engine, free in ((other, True), (mine, False)):
            with transaction(session_factory(engine)) as s:
                got = s.execute(access_log._TRY_EXCLUSIVE_LOCK,
                                {"k": access_log._PG_ACCESS_LOCK_KEY}).scalar_one()
            assert got is free
    finally:
        if holder is not None:
            holder.close()
        for engine in (mine, other):
            drop_schema(engine)
            engine.dispose()


def test_the_api_query_goes_to_the_access_log_and_verify_counts_unsealed(api: Api) -> None:
    c, sessions = api.client, api.sessions
    access_log.seal_pending(sessions)  # what earlier tests of this module left
    before = _count(sessions)
    chain_before = len(_seals(sessions))
    r = c.post("/api/v1/owner/query", json={"plate": PLATE, "plate_colour": "黄",
                                             "vin_last6": "000000"})
    assert r.status_code == 200 and r.json()["owner_token"] is None
    assert _count(sessions) == before + 1
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "owner.query")) == 0
    answer = c.get("/api/v1/audit/verify", headers=api.auth("auditor")).json()
    assert answer["ok"] is True and "1 条尚未封存" in answer["message_zh"]
    assert answer["access_log"] == {"entries": before + 1, "seals": chain_before,
                                    "unsealed": 1}
    access_log.seal_pending(sessions)
    assert len(_seals(sessions)) == chain_before + 1
    answer = c.get("/api/v1/audit/verify", headers=api.auth("auditor")).json()
    assert answer == {"ok": True, "message_zh": "审计日志链完整", "problems": [],
                      "access_log": {"entries": before + 1, "seals": chain_before + 1,
                                     "unsealed": 0}}


def test_the_app_seals_in_the_background(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}",
                        owner_query_min_duration_ms=0, owner_access_seal_interval_s=0.05)
    app = create_app(settings)
    with TestClient(app) as client:  # the lifespan starts the sealer
        r = client.post("/api/v1/owner/query", json={"plate": PLATE, "plate_colour": "黄",
                                                      "vin_last6": "000000"})
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while not _seals(app.state.sessions) and time.monotonic() < deadline:
            time.sleep(0.05)
    [seal] = _seals(app.state.sessions)
    assert seal.detail["count"] == 1
    assert app.state.access_sealer.failures == 0
    off = create_app(Settings(database_url=settings.database_url,
                              owner_access_seal_interval_s=0))
    assert off.state.access_sealer is None
    app.state.engine.dispose()
    off.state.engine.dispose()


def test_a_sealer_that_keeps_failing_turns_the_health_degraded(tmp_path: Path) -> None:
    """Failures are loud: two failed rounds in a row and ``/api/v1/health`` says degraded,
    naming the sealer in zh-CN; the first round that succeeds again clears it."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}",
                        owner_query_min_duration_ms=0, owner_access_seal_interval_s=0.05)
    app = create_app(settings)
    sealer = app.state.access_sealer

    def wait(what: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not what() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert what()

    with TestClient(app) as client:
        assert client.get("/api/v1/health").json()["status"] == "ok"
        with app.state.engine.begin() as conn:  # the table the sealer reads is gone
            conn.execute(text("ALTER TABLE owner_access_log RENAME TO owner_access_away"))
        wait(lambda: sealer.failing_rounds >= 2)
        health = client.get("/api/v1/health").json()
        assert health["status"] == "degraded"
        assert any("车主查询记录封存连续" in p for p in health["problems_zh"])
        with app.state.engine.begin() as conn:
            conn.execute(text("ALTER TABLE owner_access_away RENAME TO owner_access_log"))
        wait(lambda: sealer.failing_rounds == 0)
        health = client.get("/api/v1/health").json()
        assert health == {"status": "ok", "version": health["version"], "problems_zh": []}
    assert sealer.failures >= 2
    app.state.engine.dispose()


def test_settings_refuse_a_negative_seal_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    from zhichao.service.errors import ConfigError
    with pytest.raises(ConfigError, match="owner_access_seal_interval_s"):
        Settings(owner_access_seal_interval_s=-1)
    monkeypatch.setenv("ZHICHAO_OWNER_ACCESS_SEAL_INTERVAL_S", "2.5")
    assert Settings.from_env().owner_access_seal_interval_s == 2.5
    monkeypatch.setenv("ZHICHAO_OWNER_ACCESS_SEAL_INTERVAL_S", "often")
    with pytest.raises(ConfigError, match="not a number"):
        Settings.from_env()


def test_cli_seals_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["audit", "seal", "--db", db]) == 0
    assert "没有待封存" in capsys.readouterr().out
    from zhichao.service.db import make_engine
    engine = make_engine(db)
    sessions = session_factory(engine)
    _query(sessions)
    _query(sessions)
    assert main(["audit", "verify", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "尚未封存 2 条" in out and "审计日志链完整" in out
    assert main(["audit", "verify", "--seal", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "已封存批次 1 个，尚未封存 0 条" in out
    _tamper(engine, "DELETE FROM owner_access_log WHERE id = 1")
    assert main(["audit", "verify", "--db", db]) == 1
    out = capsys.readouterr().out
    assert "1 rows now, 2 sealed" in out and "校验失败" in out
    engine.dispose()
