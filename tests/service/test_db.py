"""Schema, migrations, append-only audit log and undeletable cases, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError

from tests.service.conftest import Sealed, new_case
from zhichao.service import audit
from zhichao.service.center.models import SyncBase
from zhichao.service.db import session_factory, transaction
from zhichao.service.models import AuditEntry, Base
from zhichao.service.partitions import include_object


def test_migrated_schema_equals_models(db: Engine) -> None:
    with db.connect() as conn:  # the service core and (from 0003) the center's sync tables
        diff = compare_metadata(MigrationContext.configure(  # monthly partitions on PG
            conn, opts={"include_object": include_object}),
                                [Base.metadata, SyncBase.metadata])
    assert diff == []


def test_sqlite_connections_use_wal_and_foreign_keys(db: Engine) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with db.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'mallory'",
    "DELETE FROM audit_log",
    "UPDATE audit_log SET detail = '{}' WHERE id = (SELECT max(id) FROM audit_log)",
])
def test_database_refuses_changes_to_the_audit_log(db: Engine, statement: str) -> None:
    factory = session_factory(db)
    with transaction(factory) as s:
        audit.append(s, actor="test", action="test.entry", object_type="test", object_id="1")
    with db.connect() as conn:
        before = conn.execute(text("SELECT count(*), max(entry_sha256) FROM audit_log")).one()
    with pytest.raises(DatabaseError, match="append-only"), db.begin() as conn:
        conn.execute(text(statement))
    with db.connect() as conn:
        after = conn.execute(text("SELECT count(*), max(entry_sha256) FROM audit_log")).one()
    assert after == before


def test_database_refuses_truncating_the_audit_log(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists on PostgreSQL only")
    with pytest.raises(DatabaseError, match="append-only"), db.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))


def test_cases_are_never_deleted(db: Engine, sealed: Sealed) -> None:
    factory = session_factory(db)
    case = new_case(factory, sealed)
    with pytest.raises(DatabaseError, match="append-only"), db.begin() as conn:
        conn.execute(text("DELETE FROM cases WHERE id = :id"), {"id": case.id})
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cases WHERE id = :id"),
                            {"id": case.id}).scalar() == 1


def test_audit_chain_links_and_detects_tampering(fresh_db: Engine) -> None:
    factory = session_factory(fresh_db)
    with transaction(factory) as s:
        for i in range(5):
            audit.append(s, actor="tester", action="test.entry", object_type="test",
                         object_id=str(i), detail={"i": i, "text": "审核"})
    with transaction(factory) as s:
        assert audit.verify_chain(s) == []
        entries = s.query(AuditEntry).order_by(AuditEntry.id).all()
        assert entries[0].prev_sha256 == audit.GENESIS_SHA256
        assert all(b.prev_sha256 == a.entry_sha256 for a, b in zip(entries, entries[1:],
                                                                   strict=False))
    # Someone with raw access to the database file disables the trigger and edits a row:
    # the chain shows it.
    with fresh_db.begin() as conn:
        if fresh_db.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        else:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE object_id = '2'"))
    with transaction(factory) as s:
        problems = audit.verify_chain(s)
    assert [p.problem.split(" ")[0] for p in problems] == ["entry_sha256"]


def test_concurrent_appenders_keep_one_chain(fresh_db: Engine) -> None:
    """Four threads append at once; the chain has no fork and verifies."""
    import threading

    from zhichao.service.errors import ConcurrentUpdateError

    factory = session_factory(fresh_db)
    written: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(10):
            for _attempt in range(50):  # SQLite: a writer that lost the race retries
                try:
                    with transaction(factory) as s:
                        audit.append(s, actor=f"t{k}", action="test.entry",
                                     object_type="test", object_id=f"{k}-{i}")
                    break
                except ConcurrentUpdateError:
                    continue
            with lock:
                written.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with transaction(factory) as s:
        entries = s.query(AuditEntry).order_by(AuditEntry.id).all()
        assert len(entries) == 40
        assert len({e.prev_sha256 for e in entries}) == 40  # no two share a parent
        assert audit.verify_chain(s) == []
