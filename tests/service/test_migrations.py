"""The Alembic chain builds a center database (service core + sync tables) on both backends.

* A database migrated to head equals the models' metadata of the service core (``Base``)
  and of the sync (``SyncBase``): ``compare_metadata`` finds nothing, each on its own and
  both together.
* A database at 0002 holding service data is upgraded to head without losing a row, and the
  sync store then works on it.
* Sync tables made by ``create_all`` (before revision 0003 existed) holding rows are adopted;
  a database with only some of them is refused.
* ``CenterStore.create_tables`` and ``zhichao center add-station`` migrate (no
  ``create_all`` any more), also into a PostgreSQL schema.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, text

from tests.service.conftest import PG_URL, Sealed, new_user, require_postgresql
from zhichao.evidence.signing import generate_key, public_pem
from zhichao.service import audit
from zhichao.service.center import store as sync_store
from zhichao.service.center.models import SyncBase
from zhichao.service.db import (
    alembic_config,
    drop_schema,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from zhichao.service.models import AuditEntry, Base, Case, CaseHolder, Passage, User
from zhichao.service.partitions import include_object

HEAD = ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).get_current_head()


@dataclass
class Bare:
    """An empty database (no tables) and how to reach it."""

    url: str
    schema: str | None
    engine: Engine  # the service engine (search_path on PostgreSQL)


@pytest.fixture(params=["sqlite", "postgresql"])
def bare(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bare]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'center.db'}"
        made = Bare(url, None, make_engine(url))
    else:
        require_postgresql()
        schema = f"zt_{secrets.token_hex(6)}"
        made = Bare(PG_URL, schema, make_engine(PG_URL, schema=schema))
        with made.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield made
    if made.schema is not None:
        drop_schema(made.engine)
    made.engine.dispose()


def _diff(engine: Engine, metadata: MetaData | list[MetaData], *,
          only: MetaData | None = None) -> list[object]:
    """``compare_metadata``; with ``only``, the database's tables outside it are ignored."""
    opts: dict[str, object] = {"include_object": include_object}  # monthly partitions
    if only is not None:
        names = set(only.tables)
        opts["include_name"] = lambda name, type_, _parent: (
            type_ != "table" or name in names)
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=opts), metadata))


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


SYNC_TABLES = {"sync_station", "sync_package", "sync_passage", "sync_quarantine"}


def test_head_equals_both_metadata(bare: Bare) -> None:
    upgrade(bare.engine)
    assert _version(bare.engine) == HEAD
    assert _diff(bare.engine, [Base.metadata, SyncBase.metadata]) == []
    # each metadata on its own, over its own tables
    assert _diff(bare.engine, Base.metadata, only=Base.metadata) == []
    assert _diff(bare.engine, SyncBase.metadata, only=SyncBase.metadata) == []
    assert SYNC_TABLES | set(Base.metadata.tables) <= _tables(bare.engine)


def test_upgrade_from_0002_keeps_service_data(bare: Bare, sealed: Sealed,
                                              tmp_path: Path) -> None:
    upgrade(bare.engine, "0002")
    assert not _tables(bare.engine) & SYNC_TABLES
    sessions = session_factory(bare.engine)
    user = new_user(sessions, "technical_reviewer")
    # the Case model is at head, so the old-schema rows are written in SQL
    with bare.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO passages (source_key, site_id, lane_code, time_utc, overloaded, flags,"
            " received_utc) VALUES ('old-1', 'S', '1', '2026-01-01 00:00:00', true, '[]',"
            " '2026-01-01 00:00:00')"))
        passage_id = conn.execute(text("SELECT id FROM passages")).scalar_one()
        conn.execute(text(
            "INSERT INTO cases (version, passage_id, package_id, manifest_sha256, package_path,"
            " site_id, time_utc, state, eligibility_status, manual_override, hearing_requested,"
            " created_utc, updated_utc) VALUES (1, :p, 'old-pkg', :sha, '/x', 'S',"
            " '2026-01-01 00:00:00', 'technical_review', 'ENFORCEABLE', false, false,"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"), {"p": passage_id, "sha": "a" * 64})
        case_id = conn.execute(text("SELECT id FROM cases")).scalar_one()
    with transaction(sessions) as s:
        audit.append(s, actor="test", action="test.entry", object_type="test", object_id="1")
        before = s.query(AuditEntry).count()

    upgrade(bare.engine)

    assert _version(bare.engine) == HEAD
    assert _diff(bare.engine, [Base.metadata, SyncBase.metadata]) == []
    with transaction(sessions) as s:
        assert s.get(User, user.id) is not None
        kept = s.get(Case, case_id)
        assert kept is not None and kept.state == "technical_review"
        assert kept.manifest_sha256 == "a" * 64 and kept.publish_due is None
        assert s.query(AuditEntry).count() == before
        assert audit.verify_chain(s) == []
    # the triggers of 0001 still hold after the upgrade
    with pytest.raises(Exception, match="append-only"), bare.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    # and the sync store works on the upgraded database
    center = sync_store.CenterStore(sync_store.make_engine(bare.url), tmp_path / "store",
                                    generate_key(), schema=bare.schema)
    center.create_tables()  # already at head: nothing to do
    center.register_station("S001", public_pem(generate_key().public_key()))
    assert center.counts() == {"packages": 0, "passages": 0, "quarantined": 0, "stations": 1,
                               "hook_pending": 0}
    center.engine.dispose()


def test_sync_tables_made_by_create_all_are_adopted(bare: Bare) -> None:
    upgrade(bare.engine, "0002")
    legacy = sync_store.make_engine(bare.url)
    if bare.schema is not None:
        legacy = legacy.execution_options(schema_translate_map={None: bare.schema})
    with legacy.begin() as conn:  # what the center did before revision 0003: its 4 tables
        SyncBase.metadata.create_all(conn, tables=[
            SyncBase.metadata.tables[name] for name in
            ("sync_station", "sync_package", "sync_passage", "sync_quarantine")])
    sync_store.register_station(legacy, "S001", public_pem(generate_key().public_key()))

    sync_store.create_tables(sync_store.make_engine(bare.url), bare.schema)

    assert _version(bare.engine) == HEAD
    assert _diff(bare.engine, [Base.metadata, SyncBase.metadata]) == []
    with bare.engine.connect() as conn:
        assert conn.execute(text("SELECT station_id FROM sync_station")).scalars().all() == [
            "S001"]
    legacy.dispose()


def test_some_sync_tables_only_is_refused(bare: Bare) -> None:
    upgrade(bare.engine, "0002")
    with bare.engine.begin() as conn:
        SyncBase.metadata.tables["sync_station"].create(conn)
    with pytest.raises(RuntimeError, match="only some sync tables exist"):
        upgrade(bare.engine)
    assert _version(bare.engine) == "0002"


def test_center_store_migrates_into_its_schema(bare: Bare, tmp_path: Path) -> None:
    center = sync_store.CenterStore(sync_store.make_engine(bare.url), tmp_path / "store",
                                    generate_key(), schema=bare.schema)
    center.create_tables()
    assert _version(bare.engine) == HEAD
    assert SYNC_TABLES | set(Base.metadata.tables) <= _tables(bare.engine)
    if bare.schema is not None:  # in the store's own schema
        assert set(inspect(bare.engine).get_table_names(schema=bare.schema)) >= SYNC_TABLES
    center.engine.dispose()


def test_0010_binds_existing_cases_to_their_plates_vin(bare: Bare, sealed: Sealed) -> None:
    """An existing center database starts: its cases get (``case_holders``) the VIN their
    plate's registry row holds; a case of a plate the registry does not know stays
    unbound. Downgrade is refused once a plate has passed to another vehicle."""
    upgrade(bare.engine, "0009_copy_notice_channel")
    sessions = session_factory(bare.engine)
    with transaction(sessions) as s:  # the Passage model is unchanged since (partitions)
        passages = [Passage(source_key=f"old-{k}", site_id="S", lane_code="1",
                            time_utc=datetime(2026, 1, 1, tzinfo=UTC), overloaded=True,
                            flags=[]) for k in range(2)]
        s.add_all(passages)
        s.flush()
        passage_ids = [p.id for p in passages]
    with bare.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO vehicles (plate, plate_colour, vin, updated_utc) VALUES "
            "('浙A10001', 'yellow', 'LFWADRJF1J0000001', '2026-01-01 00:00:00')"))
        for k, plate in enumerate(("浙A10001", "浙A10002")):
            passage_id = passage_ids[k]
            conn.execute(text(
                "INSERT INTO cases (version, passage_id, package_id, manifest_sha256,"
                " package_path, site_id, time_utc, plate, plate_colour, state,"
                " eligibility_status, manual_override, hearing_requested, created_utc,"
                " updated_utc) VALUES (1, :p, :pkg, :sha, '/x', 'S', '2026-01-01 00:00:00',"
                " :plate, 'yellow', 'notified', 'ENFORCEABLE', false, false,"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                {"p": passage_id, "pkg": f"old-pkg-{k}", "sha": "a" * 64, "plate": plate})
    upgrade(bare.engine)
    assert _diff(bare.engine, [Base.metadata, SyncBase.metadata]) == []
    with transaction(sessions) as s:
        holders = {h.case_id: h.vin for h in s.query(CaseHolder).all()}
        bound = {c.plate: holders.get(c.id) for c in s.query(Case).all()}
        assert bound == {"浙A10001": "LFWADRJF1J0000001", "浙A10002": None}
    with bare.engine.begin() as conn:
        conn.execute(text("UPDATE vehicles SET vin = 'LSGBL5334HF000002'"))
    with pytest.raises(Exception, match="0010 downgrade refused"):
        command.downgrade(alembic_config(bare.engine), "0009_copy_notice_channel")
