"""Engines, sessions and start-up migrations.

SQLite (the station default) gets WAL journaling, foreign keys and a busy timeout on
every connection, and every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a
time; reads in a transaction see one snapshot); PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``).
``schema`` (PostgreSQL only) puts every table in its own schema via ``search_path``, so
parallel test runs do not clash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, TextClause, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from zhichao.service.errors import ConcurrentUpdateError, ConfigError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_SCHEMAS: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def make_engine(url: str, *, schema: str | None = None, sqlite_busy_timeout_ms: int = 5000,
                echo: bool = False) -> Engine:
    """An engine for ``url`` with the per-connection settings this service relies on."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is malformed: {exc}",
                          "数据库地址格式错误") from exc
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = sqlite_busy_timeout_ms / 1000
        connect_args["check_same_thread"] = False
    elif backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ConfigError(f"database URL {url!r}: use the psycopg 3 driver "
                              "(postgresql+psycopg://)", "PostgreSQL 须使用 psycopg 3 驱动")
        if schema is not None:
            if not _SCHEMA_NAME.match(schema):
                raise ConfigError(f"schema name {schema!r} is not a plain identifier")
            connect_args["options"] = f"-csearch_path={schema}"
    else:
        raise ConfigError(f"database URL {url!r}: only sqlite and postgresql are supported",
                          "仅支持 SQLite 与 PostgreSQL")
    engine = create_engine(parsed, connect_args=connect_args, echo=echo)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    elif schema is not None:
        _SCHEMAS[engine] = schema
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit transactions start only at the first INSERT/UPDATE, so two
    # sessions could both read the audit log's head and fork the chain. We open every
    # transaction ourselves with BEGIN IMMEDIATE instead (_sqlite_on_begin): one writer
    # at a time, the others wait up to the busy timeout.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped migrations up to ``revision`` (start-up calls this)."""
    if engine.dialect.name == "postgresql":
        schema = _search_path_schema(engine)
        if schema is not None:
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    command.upgrade(alembic_config(engine), revision)


def drop_schema(engine: Engine) -> None:
    """Drop the engine's own PostgreSQL schema (tests); refuses the ``public`` schema."""
    schema = _search_path_schema(engine)
    if schema is None or schema == "public":
        raise ConfigError("drop_schema: the engine has no private schema")
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _search_path_schema(engine: Engine) -> str | None:
    return _SCHEMAS.get(engine)


def advisory_lock_sql(function: str) -> TextClause:
    """``SELECT function(:k, <this schema>)`` for one of PostgreSQL's two-key advisory-lock
    functions: every lock the service takes is keyed by its int4 class key ``:k`` and by
    the schema its tables are in. Advisory locks are database-wide: without the schema,
    deployments in other schemas of one database (and parallel test runs, one schema each)
    wait for each other's locks, and a transaction left open in one can hang another (seen
    in a CI-like run on 2026-12-07: two test workers' access-log locks queued behind each
    other until nothing moved)."""
    return text(f"SELECT {function}(CAST(:k AS integer), hashtext(current_schema()))")


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception.

    A lost optimistic-lock race (another session changed the row first) surfaces as
    :class:`ConcurrentUpdateError`: ``StaleDataError`` on PostgreSQL, and on SQLite the
    ``database is locked`` / stale-snapshot error of the losing writer.
    """
    try:
        with factory() as session, session.begin():
            yield session
    except StaleDataError as exc:
        raise ConcurrentUpdateError(f"concurrent update: {exc}") from exc
    except OperationalError as exc:
        text_ = str(exc.orig) if exc.orig is not None else str(exc)
        if "database is locked" in text_ or "could not serialize" in text_:
            raise ConcurrentUpdateError(f"concurrent update: {text_}") from exc
        raise
