"""A migrated review-service database for a benchmark run: on PostgreSQL in a fresh schema
of its own (random name), dropped afterwards, so runs never touch each other's tables."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from zhichao.service.db import drop_schema, make_engine, upgrade


@contextmanager
def scratch_database(url: str) -> Iterator[tuple[Engine, str | None]]:
    """The migrated engine for ``url`` and its schema (None on SQLite)."""
    schema = f"scratch_{secrets.token_hex(4)}" if url.startswith("postgresql") else None
    engine = make_engine(url, schema=schema)
    try:
        upgrade(engine)
        yield engine, schema
    finally:
        if schema is not None:
            drop_schema(engine)
        engine.dispose()
