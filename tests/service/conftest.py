"""Service fixtures: the same tests on SQLite and on a real PostgreSQL.

PostgreSQL (``ZHICHAO_TEST_PG_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
is skipped with the reason when no server answers, and REQUIRED when ``CI`` is set. Every
database fixture gets its own schema (random name), dropped afterwards, so parallel runs do
not clash.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from zhichao.service import accounts, ingest
from zhichao.service.db import drop_schema, make_engine, session_factory, transaction, upgrade
from zhichao.service.models import Case, User
from zhichao.service.workdays import DeadlinePolicy, YearCalendar
from zhichao.testing.cases import SealedCase, seal_plain_case

PG_URL = os.environ.get("ZHICHAO_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "correct horse battery staple"
# chinese_calendar 1.11 has no 2027 data; tests that run "now" (December 2026) need deadlines
# in 2027, so they load this stand-in. It is TEST DATA (weekends only), not the official
# schedule; a deployment loads the State Council's notice with load_year_calendar.
TEST_2027 = YearCalendar(2027, frozenset(), frozenset(), "测试数据：仅周末休息（非官方安排）")
TEST_POLICY = DeadlinePolicy(supplements=(TEST_2027,))
# Cheap argon2 parameters keep the suite fast on 2 cores (production keeps the defaults).
accounts.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
_pg_state: dict[str, str | None] = {}


def _pg_unavailable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    if "reason" not in _pg_state:
        try:
            probe = make_engine(PG_URL)
            with probe.connect() as conn:
                conn.execute(text("select 1"))
            probe.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # any failure to connect means "no server here"
            _pg_state["reason"] = f"PostgreSQL at {PG_URL} not reachable: {exc!s:.200}"
    return _pg_state["reason"]


def require_postgresql() -> None:
    """Skip the calling test with the reason when no PostgreSQL server answers; fail it
    instead when ``CI`` is set (CI must run every test on both backends)."""
    reason = _pg_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so PostgreSQL is required: {reason}")
        pytest.skip(reason)


def new_engine(backend: str, tmp_path: Path) -> tuple[Engine, str | None]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
        upgrade(engine)
        return engine, None
    require_postgresql()
    schema = f"zt_{secrets.token_hex(6)}"
    engine = make_engine(PG_URL, schema=schema)
    upgrade(engine)
    return engine, schema


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def db(request: pytest.FixtureRequest,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated database shared by one test module (tests create their own rows)."""
    engine, schema = new_engine(request.param, tmp_path_factory.mktemp(request.param))
    yield engine
    if schema is not None:
        drop_schema(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database for one test."""
    engine, schema = new_engine(request.param, tmp_path)
    yield engine
    if schema is not None:
        drop_schema(engine)
    engine.dispose()


@pytest.fixture
def sessions(db: Engine) -> sessionmaker[Session]:
    return session_factory(db)


Sealed = SealedCase


@pytest.fixture(scope="session")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    """One real sealed package (documents skipped for speed) from the evidence stage."""
    return seal_plain_case(tmp_path_factory.mktemp("sealed"))


def variant(sealed: Sealed, *, plate: str | None = None, penalty: Any = "keep",
            status: str | None = None) -> tuple[dict[str, Any], str]:
    """A copy of the sealed manifest under a new package id (for many cases per test)."""
    manifest = copy.deepcopy(sealed.manifest)
    manifest["package_id"] = f"{manifest['package_id']}-{uuid.uuid4().hex[:10]}"
    if plate is not None:
        manifest["case"]["plate"]["text"] = plate
    if penalty != "keep":
        manifest["case"]["penalty"] = penalty
    if status is not None:
        manifest["case"]["eligibility"]["status"] = status
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return manifest, digest


def new_case(sessions: sessionmaker[Session], sealed: Sealed, **kw: Any) -> Case:
    manifest, digest = variant(sealed, **kw)
    with transaction(sessions) as s:
        case = ingest.register_ingested_package(s, manifest, sealed.directory,
                                                manifest_sha256=digest)
    assert isinstance(case, Case)
    return case


def new_user(sessions: sessionmaker[Session], *roles: str,
             station_id: str | None = None) -> User:
    with transaction(sessions) as s:
        return accounts.create_user(
            s, username=f"u{uuid.uuid4().hex[:12]}", password=PASSWORD,
            display_name_zh="测试用户", roles=roles,
            station_id=station_id or ("S009" if "station_operator" in roles else None))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass
class Api:
    client: Any  # fastapi.testclient.TestClient
    sessions: sessionmaker[Session]
    sealed: Sealed
    users: dict[str, User]
    tokens: dict[str, str]
    settings: Any

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_api(backend: str, tmp_path: Path, sealed: Sealed, *, console: bool = False,
             **settings_kw: Any) -> Api:
    """The JSON API (with ``console``: and the console and portal pages, cookies over
    plain HTTP) with one signed-in user per role."""
    from fastapi.testclient import TestClient

    from zhichao.service.app import create_app
    from zhichao.service.settings import Settings
    from zhichao.service.web import WebSettings, create_console_app

    if backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'api.db'}", None
    else:
        require_postgresql()
        url, schema = PG_URL, f"zt_{secrets.token_hex(6)}"
    settings = Settings(database_url=url, database_schema=schema,
                        **{"owner_query_min_duration_ms": 20, "deadlines": TEST_POLICY,
                           **settings_kw})
    app = (create_console_app(settings, web=WebSettings(cookie_secure=False)) if console
           else create_app(settings))
    sessions = app.state.sessions
    users: dict[str, User] = {}
    for role in accounts.ROLES_ZH:
        users[role] = new_user(sessions, role, station_id="S001" if role == "station_operator"
                               else None)
    client = TestClient(app)
    tokens = {}
    for role, user in users.items():
        r = client.post("/api/v1/auth/login", json={"username": user.username,
                                                     "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens[role] = r.json()["token"]
    return Api(client, sessions, sealed, users, tokens, settings)


def versioned(api: Api, case_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the case's current version as ``expected_version`` unless it has one
    (every state-changing call must send it), read as a client reads it after GET."""
    if "expected_version" in body:
        return body
    with transaction(api.sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        return {**body, "expected_version": case.version}


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        sealed: Sealed) -> Iterator[Api]:
    made = make_api(request.param, tmp_path_factory.mktemp("api"), sealed)
    yield made
    engine = made.client.app.state.engine
    if request.param == "postgresql":
        drop_schema(engine)
    engine.dispose()
