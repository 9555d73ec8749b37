"""A center in process (ASGI client) on SQLite and on PostgreSQL, and a station kit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.sync_helpers import Center, Database, StationKit, database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from database(request.param, tmp_path)


@pytest.fixture
def center(db: Database, tmp_path: Path) -> Center:
    return Center(db, tmp_path / "center")


@pytest.fixture
def kit(tmp_path: Path, center: Center) -> StationKit:
    station = StationKit(tmp_path / "station")
    center.store.register_station(station.station_id, station.public_pem)
    return station
