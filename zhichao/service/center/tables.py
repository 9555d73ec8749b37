"""The center's database: engine, migrations, and the register of station keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

from zhichao.common import format_utc
from zhichao.evidence.errors import EvidenceError
from zhichao.evidence.signing import key_fingerprint, load_public_key_bytes, public_pem
from zhichao.evidence.verify_log import station_log_origin
from zhichao.service.center.models import SyncStation, SyncStationKey
from zhichao.sync.errors import SyncError


def make_engine(database_url: str) -> Engine:
    """An engine for the sync tables; SQLite files get WAL, ``synchronous=FULL`` and a busy
    timeout (PostgreSQL URLs: ``postgresql+psycopg://user@host:5432/db``)."""
    engine = create_engine(database_url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    return engine


def utc_text(moment: datetime) -> str:
    """A database timestamp as RFC 3339 UTC (stored UTC; SQLite gives it back naive)."""
    return format_utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str | None) -> None:
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise SyncError(f"schema name {schema!r}: use 1–63 lowercase letters, digits or _")


def create_tables(engine: Engine, schema: str | None = None) -> None:
    """Bring the center database to the newest shipped migration (and create the
    PostgreSQL ``schema`` if missing).

    The sync tables come from the service's Alembic chain (revision 0003), so the same
    database (and ``schema``) also holds the service core's tables that the accept hook
    writes cases into. Sync tables made by ``create_all`` before the migration existed are
    adopted as they are (see the migration).
    """
    from zhichao.service.db import make_engine as service_engine
    from zhichao.service.db import upgrade

    check_schema(schema)
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        raise SyncError("the center needs a database file or server, not in-memory SQLite")
    migrating = service_engine(engine.url.render_as_string(hide_password=False), schema=schema)
    try:
        upgrade(migrating)
    finally:
        migrating.dispose()


def register_station(engine: Engine, station_id: str, public_key_pem: bytes, *,
                     schema: str | None = None, key_name: str | None = None,
                     replace_key: bool = False,
                     previous_key_valid_below: int | None = None) -> None:
    """Trust ``public_key_pem`` for ``station_id`` (a key obtained independently of any
    package: the agency's key list or the device register).

    Replacing a key (``replace_key``) keeps the replaced one trusted for what it sealed:
    the station's log entries below ``previous_key_valid_below`` (the log size when the
    station changed keys; default the size the center has accepted, which leaves packages
    sealed before the change but not yet uploaded refused — give the size to accept them).

    Raises
    ------
    SyncError
        If the key is not an Ed25519 public key, or the station is registered with
        another key and ``replace_key`` is false.
    """
    if schema is not None:
        engine = engine.execution_options(schema_translate_map={None: schema})
    try:
        key = load_public_key_bytes(public_key_pem, f"key of station {station_id}")
    except EvidenceError as exc:
        raise SyncError(str(exc)) from None
    fingerprint = key_fingerprint(key)
    with Session(engine) as session, session.begin():
        row = session.get(SyncStation, station_id)
        if row is not None:
            if row.key_sha256 != fingerprint and not replace_key:
                raise SyncError(f"station {station_id} is registered with key "
                                f"{row.key_sha256}; refusing to replace it with "
                                f"{fingerprint} (pass replace_key)")
            if row.key_sha256 != fingerprint:
                _keep_replaced_key(session, row, previous_key_valid_below)
                again = session.get(SyncStationKey, (station_id, fingerprint))
                if again is not None:  # a replaced key made current again
                    session.delete(again)
            row.public_key_pem = public_pem(key).decode()
            row.key_sha256 = fingerprint
            row.key_name = key_name or row.key_name
            return
        session.add(SyncStation(
            station_id=station_id, key_name=key_name or f"zhichao-station-{station_id}",
            public_key_pem=public_pem(key).decode(), key_sha256=fingerprint,
            log_origin=station_log_origin(station_id), registered_utc=datetime.now(UTC),
            accepted_size=0))


def _keep_replaced_key(session: Session, row: SyncStation, valid_below: int | None) -> None:
    below = row.accepted_size if valid_below is None else valid_below
    if below < 0:
        raise SyncError(f"station {row.station_id}: previous_key_valid_below {below} < 0")
    old = session.get(SyncStationKey, (row.station_id, row.key_sha256))
    if old is None:
        session.add(SyncStationKey(
            station_id=row.station_id, key_sha256=row.key_sha256, key_name=row.key_name,
            public_key_pem=row.public_key_pem, replaced_utc=datetime.now(UTC),
            valid_below_log_size=below))
    else:
        old.valid_below_log_size = below


def trusted_key(session: Session, station_id: str | None, key_sha256: str | None,
                log_index: int | None, checkpoint_size: int | None = None
                ) -> tuple[bytes, str] | None:
    """(PEM, key name) of the key the center trusts for a package of ``station_id`` whose
    manifest names ``key_sha256``, whose log entry is ``log_index`` and whose checkpoint
    covers ``checkpoint_size`` entries: a replaced key of the station with that fingerprint
    where both lie within its ``valid_below_log_size`` (a replaced key signs no log head
    beyond it: one that did could move the center's accepted head), else the current key
    (a package signed otherwise then fails ``key.mismatch``); ``None`` if the station is
    not registered."""
    if station_id is None:
        return None
    row = session.get(SyncStation, station_id)
    if row is None:
        return None
    if key_sha256 is not None and key_sha256 != row.key_sha256 and log_index is not None:
        old = session.get(SyncStationKey, (station_id, key_sha256))
        if old is not None and 0 <= log_index < old.valid_below_log_size and (
                checkpoint_size is None or checkpoint_size <= old.valid_below_log_size):
            return old.public_key_pem.encode(), old.key_name
    return row.public_key_pem.encode(), row.key_name


__all__ = ["check_schema", "create_tables", "make_engine", "register_station",
           "trusted_key", "utc_text"]
