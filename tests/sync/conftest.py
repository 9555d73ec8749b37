"""A center in process (ASGI client) on SQLite and on PostgreSQL, and a station kit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.sync_helpers import Database, StationKit, database
from zhichao.evidence.signing import generate_key
from zhichao.service.center.server import create_center_app
from zhichao.service.center.store import Accepted, CenterStore


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from database(request.param, tmp_path)


class Center:
    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.key = generate_key()
        self.hooked: list[Accepted] = []
        self.app = create_center_app(db.url, root / "store", self.key, schema=db.schema,
                                     hook=self.hooked.append)
        self.store: CenterStore = self.app.state.sync_store
        self.client = TestClient(self.app)


@pytest.fixture
def center(db: Database, tmp_path: Path) -> Center:
    return Center(db, tmp_path / "center")


@pytest.fixture
def kit(tmp_path: Path, center: Center) -> StationKit:
    station = StationKit(tmp_path / "station")
    center.store.register_station(station.station_id, station.public_pem)
    return station
