"""Passages partitioned by month (PostgreSQL, migration 0006) and the retention rule that
drops whole months; SQLite keeps one plain table.

* 0005 → 0006 keeps every passage and case (ids, times, plates) and puts each passage in
  its month's partition; 0006 → 0005 puts them back in one table; both backends.
* An ORM insert lands in its month's partition; a month without one gets it on demand.
* Retention drops a month past the row period that holds no case (audit entry with the
  row count), leaves a month holding a case whole (its other plates removed row by row);
  ``zhichao retention run`` does so only with ``--drop-months-after-days``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from tests.service.conftest import PG_URL, require_postgresql
from zhichao.service import partitions, retention
from zhichao.service.db import drop_schema, make_engine, session_factory, transaction, upgrade
from zhichao.service.models import AuditEntry, Case, Passage

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def bare(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (no tables yet)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
        yield engine
    else:
        require_postgresql()
        engine = make_engine(PG_URL, schema=f"zt_{secrets.token_hex(6)}")
        yield engine
        drop_schema(engine)
    engine.dispose()


def _passage(s: Session, key: str, when: datetime, plate: str | None = "浙A12345") -> Passage:
    p = Passage(source_key=key, site_id="S1", lane_code="1", time_utc=when, plate=plate,
                plate_colour="yellow", overloaded=False, flags=[], gross_weight_kg=30000.0)
    s.add(p)
    s.flush()
    return p


def _case(s: Session, passage: Passage) -> Case:
    c = Case(passage_id=passage.id, package_id=f"pkg-{passage.source_key}",
             manifest_sha256="a" * 64, package_path="/nowhere", site_id="S1",
             time_utc=passage.time_utc, plate=passage.plate, plate_colour="yellow",
             state="technical_review", eligibility_status="ENFORCEABLE")
    s.add(c)
    s.flush()
    return c


def _where(engine: Engine, passage_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT tableoid::regclass::text FROM passages "
                                     "WHERE id = :i"), {"i": passage_id}).scalar_one())


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, source_key, time_utc, plate FROM passages ORDER BY id"))]


def test_migration_up_and_down_keeps_rows(bare: Engine) -> None:
    upgrade(bare, "0005_supervision")
    sessions = session_factory(bare)
    with transaction(sessions) as s:
        old = [_passage(s, f"k{i}", datetime(2025, 11 + i, 3, 8, tzinfo=UTC))
               for i in range(2)]  # November and December 2025
        case_id = _case(s, old[1]).id
    before = _rows(bare)

    upgrade(bare)

    assert _rows(bare) == before
    pg = bare.dialect.name == "postgresql"
    with bare.connect() as conn:
        assert partitions.is_partitioned(conn) is pg
        if pg:
            months = partitions.list_partitions(conn)
            assert months[0] == (2025, 11) and (2025, 12) in months
    if pg:
        assert _where(bare, old[0].id) == "passages_p202511"
        assert _where(bare, old[1].id) == "passages_p202512"
    with transaction(sessions) as s:  # the ORM still works by id; the case keeps its passage
        case = s.get(Case, case_id)
        assert case is not None and s.get(Passage, case.passage_id) is not None
        new_id = _passage(s, "k-new", datetime(2026, 1, 5, tzinfo=UTC)).id
    after = _rows(bare)

    _downgrade(bare, "0005_supervision")

    assert _rows(bare) == after and after[-1][0] == new_id
    with bare.connect() as conn:
        assert not partitions.is_partitioned(conn)
    with transaction(sessions) as s:  # the plain table's keys hold again
        _passage(s, "k-after-down", datetime(2026, 2, 1, tzinfo=UTC))
    upgrade(bare)
    assert len(_rows(bare)) == len(after) + 1


def _downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    from zhichao.service.db import alembic_config
    command.downgrade(alembic_config(engine), revision)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Engine]:
    require_postgresql()
    engine = make_engine(PG_URL, schema=f"zt_{secrets.token_hex(6)}")
    upgrade(engine)
    yield engine
    drop_schema(engine)
    engine.dispose()


def test_a_passage_lands_in_its_month_and_a_missing_month_is_made(pg: Engine) -> None:
    sessions = session_factory(pg)
    with pg.connect() as conn:
        assert (2031, 7) not in partitions.list_partitions(conn)
    with transaction(sessions) as s:
        # an open transaction that has read passages already: the partition is made beside it
        s.execute(select(Passage.id).limit(1)).all()
        far = _passage(s, "far", datetime(2031, 7, 31, 23, 59, 59, tzinfo=UTC))
        edge = _passage(s, "edge", datetime(2031, 8, 1, 0, 0, tzinfo=UTC))
        _case(s, far)
    assert _where(pg, far.id) == "passages_p203107"
    assert _where(pg, edge.id) == "passages_p203108"
    with pg.connect() as conn:
        assert {(2031, 7), (2031, 8)} <= set(partitions.list_partitions(conn))


def test_making_a_month_aside_leaves_no_lock_timeout_on_the_pooled_connection(
        pg: Engine) -> None:
    """The side connection's short lock timeout ends with its transaction: left on the
    pooled connection, it timed out a later delivery's wait for the audit lock (CI)."""
    with pg.connect() as conn:
        default = conn.execute(text("SHOW lock_timeout")).scalar_one()
    partitions.ensure_month(pg, datetime(2032, 3, 5, tzinfo=UTC), lock_timeout_ms=321)
    with pg.connect() as conn:
        assert (2032, 3) in partitions.list_partitions(conn)
    for _ in range(pg.pool.size() + 1):  # every pooled connection, whichever made it
        with pg.connect() as conn:
            assert conn.execute(text("SHOW lock_timeout")).scalar_one() == default


def test_retention_drops_an_expired_month_and_keeps_a_month_with_a_case(pg: Engine) -> None:
    sessions = session_factory(pg)
    with transaction(sessions) as s:
        for i in range(3):  # March 2026: no case
            _passage(s, f"mar{i}", datetime(2026, 3, 2 + i, tzinfo=UTC))
        april = [_passage(s, f"apr{i}", datetime(2026, 4, 2 + i, tzinfo=UTC))
                 for i in range(2)]
        _case(s, april[0])
        recent = _passage(s, "recent", datetime(2026, 11, 20, tzinfo=UTC))
    with transaction(sessions) as s:
        removed = retention.remove_expired_plates(s, retention_days=30, actor="test",
                                                  row_retention_days=180, now=NOW)
    with pg.connect() as conn:
        months = partitions.list_partitions(conn)
    assert (2026, 3) not in months and (2026, 4) in months  # April holds a case
    assert (2027, 3) in months  # made ahead
    with transaction(sessions) as s:
        keys = set(s.scalars(select(Passage.source_key)))
        assert keys == {"apr0", "apr1", "recent"}
        plates = {p.source_key: p.plate for p in s.scalars(select(Passage))}
        assert plates == {"apr0": "浙A12345", "apr1": None, "recent": "浙A12345"}
        assert removed == 1
        entries = s.scalars(select(AuditEntry).where(
            AuditEntry.action.like("retention.%")).order_by(AuditEntry.id)).all()
        assert [e.action for e in entries] == ["retention.month_dropped",
                                               "retention.plates_removed"]
        assert entries[0].object_id == "passages_p202603" and entries[0].detail["rows"] == 3
        assert s.get(Passage, recent.id) is not None
    # and the dropped month takes new passages again (made on demand)
    with transaction(sessions) as s:
        back = _passage(s, "mar-late", datetime(2026, 3, 9, tzinfo=UTC))
    assert _where(pg, back.id) == "passages_p202603"


def test_retention_on_sqlite_is_row_by_row(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        _passage(s, "old", datetime(2026, 3, 2, tzinfo=UTC))
    with transaction(sessions) as s:
        assert retention.remove_expired_plates(s, retention_days=30, actor="test",
                                               row_retention_days=180, now=NOW) == 1
        assert [p.plate for p in s.scalars(select(Passage))] == [None]
    with pytest.raises(Exception, match="保存期限|row retention"), \
            transaction(sessions) as s:
        retention.remove_expired_plates(s, retention_days=30, actor="test",
                                        row_retention_days=10, now=NOW)
    engine.dispose()


@pytest.mark.slow  # two CLI processes
def test_the_cli_drops_whole_months_when_asked(pg: Engine) -> None:
    import subprocess
    import sys

    from zhichao.service.db import _search_path_schema
    with transaction(session_factory(pg)) as s:
        _passage(s, "long-ago", datetime(2025, 1, 10, tzinfo=UTC))
    base = [sys.executable, "-m", "zhichao", "retention", "run", "--db", PG_URL, "--schema",
            str(_search_path_schema(pg)), "--days", "30"]
    kept = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0, kept.stderr
    with pg.connect() as conn:  # without the flag the rows stay (statistics)
        assert (2025, 1) in partitions.list_partitions(conn)
    dropped = subprocess.run(base + ["--drop-months-after-days", "180"], capture_output=True,
                             text=True, timeout=120)
    assert dropped.returncode == 0, dropped.stderr
    with pg.connect() as conn:
        assert (2025, 1) not in partitions.list_partitions(conn)
