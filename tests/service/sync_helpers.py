"""The sync tests' database fixture helper; everything else is shared with the benchmarks
in :mod:`zhichao.testing.sync`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zhichao.evidence.signing import generate_key
from zhichao.service.center.server import create_center_app
from zhichao.service.center.store import Accepted, CenterStore, make_engine
from zhichao.testing.sync import (
    ROOT,
    CenterProcess,
    Database,
    HoldingProxy,
    PushProcess,
    StationKit,
    free_port,
    postgres_url,
    sync_cmd,
    wait_for,
    zhichao_cmd,
)

__all__ = ["ROOT", "CenterProcess", "Database", "HoldingProxy", "PushProcess", "StationKit",
           "database", "free_port", "postgres_url", "sync_cmd", "wait_for", "zhichao_cmd"]


def database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database for the center: SQLite file, or a random PostgreSQL schema.

    PostgreSQL is skipped with the reason when no server answers, and required (the test
    fails) when the environment variable ``CI`` is set.
    """
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'center.sqlite'}"
        db = Database(url, None, make_engine(url))
    else:
        url_or_none = postgres_url()
        if url_or_none is None:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL on 127.0.0.1:5432 (database test) is required on CI "
                            "(CI is set) but no server answers")
            pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test, "
                        "user postgres or root)")
        db = Database(url_or_none, f"sync_test_{uuid.uuid4().hex[:12]}",
                      make_engine(url_or_none))
    try:
        yield db
    finally:
        db.drop()


class Center:
    """A center in process (ASGI test client) on ``db``, its store under ``root``; the
    packages and passages its hook was given in ``hooked``."""

    def __init__(self, db: Database, root: Path, hook: Any = None) -> None:
        self.db = db
        self.root = root
        self.key = generate_key()
        self.hooked: list[Accepted] = []
        self.app = create_center_app(db.url, root / "store", self.key, schema=db.schema,
                                     hook=hook or self.hooked.append)
        self.store: CenterStore = self.app.state.sync_store
        self.client = TestClient(self.app)

    def reopen(self, hook: Any) -> Center:
        """A new app on the same database and store (a center restart)."""
        other = Center.__new__(Center)
        other.db, other.root, other.key, other.hooked = self.db, self.root, self.key, []
        other.app = create_center_app(self.db.url, self.root / "store", self.key,
                                      schema=self.db.schema, hook=hook)
        other.store = other.app.state.sync_store
        other.client = TestClient(other.app)
        return other
