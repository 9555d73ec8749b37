"""Monthly partitions of ``passages`` on PostgreSQL (migration 0006); SQLite has none.

On PostgreSQL ``passages`` is RANGE-partitioned on ``time_utc``, one partition per UTC
month named ``passages_pYYYYMM``. What partitioning costs, and how it is handled:

* Every primary key and unique constraint must contain the partition key: the primary key
  is ``(id, time_utc)`` and ``source_key`` is unique together with ``time_utc``. A
  ``source_key`` is derived from the record it names (the SHA-256 of the record, the
  package id, the sync item's hash), and the record carries its ``time_utc``, so one key
  never comes with two times and ``(source_key, time_utc)`` refuses what ``source_key``
  alone refused. ``id`` stays unique because only the sequence assigns it. An
  ``INSERT ... ON CONFLICT`` must name ``(source_key, time_utc)``.
* ``cases.passage_id`` cannot reference ``passages(id)`` alone: the foreign key is
  ``(passage_id, time_utc) → passages(id, time_utc)``; a case's ``time_utc`` is its
  passage's (``ingest.register_ingested_package`` copies it). The ORM keeps the one-column
  key (``Case.passage_id``, ``session.get(Passage, id)``), which is what SQLite has;
  :func:`include_object` tells Alembic's comparison about these three differences.
* A month without a partition refuses inserts ("no partition of relation found"), so
  partitions are made ahead (the migration and every retention run: up to
  :data:`MONTHS_AHEAD` months past now) and on demand: before an ORM insert of a
  ``Passage`` whose month has none, :func:`ensure_month` makes it in a side connection
  (``CREATE TABLE`` + ``ATTACH PARTITION``, which takes only a SHARE UPDATE EXCLUSIVE lock
  on ``passages``, so it runs beside open transactions that read or write passages; it
  also locks ``cases`` (SHARE ROW EXCLUSIVE: the foreign key), so where the inserting
  transaction itself has written a case already, the month is made inside that
  transaction instead, and other writers of ``cases`` wait for its commit).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError

from zhichao.service.errors import ServiceError
from zhichao.service.models import Passage

MONTHS_AHEAD = 3
_NAME = re.compile(r"^passages_p(\d{4})(\d{2})$")
_PG_SOURCE_KEY_UNIQUE = "uq_passages_source_key_time"
_PG_CASE_PASSAGE_FK = "fk_cases_passage_month"
_known: set[tuple[str, str]] = set()  # (engine identity, partition name) seen to exist
_known_lock = threading.Lock()


class PartitionError(ServiceError):
    """A month's partition could not be made; the insert would fail."""


def partition_name(year: int, month: int) -> str:
    return f"passages_p{year:04d}{month:02d}"


def month_of(moment: datetime | date) -> tuple[int, int]:
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC)
    return moment.year, moment.month


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_range(year: int, month: int) -> tuple[datetime, datetime]:
    """The partition's bounds: [first instant of the month, first of the next) in UTC."""
    ny, nm = next_month(year, month)
    return datetime(year, month, 1, tzinfo=UTC), datetime(ny, nm, 1, tzinfo=UTC)


def months_between(first: tuple[int, int], last: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    current = first
    while current <= last:
        out.append(current)
        current = next_month(*current)
    return out


def parse_name(name: str) -> tuple[int, int] | None:
    found = _NAME.match(name)
    return None if found is None else (int(found.group(1)), int(found.group(2)))


def is_partitioned(conn: Connection) -> bool:
    """True where ``passages`` is a partitioned table (PostgreSQL after 0006)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = to_regclass('passages')"
    )).scalar())


def list_partitions(conn: Connection) -> list[tuple[int, int]]:
    """The months that have a partition, oldest first."""
    names = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('passages')")).scalars().all()
    return sorted(m for m in (parse_name(n) for n in names) if m is not None)


def create_partition_sql(year: int, month: int) -> list[str]:
    """The statements that make and attach one month's partition (idempotent)."""
    name = partition_name(year, month)
    start, end = month_range(year, month)
    return [
        f"CREATE TABLE IF NOT EXISTS {name} (LIKE passages INCLUDING DEFAULTS)",
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (time_utc IS NOT NULL AND "
        f"time_utc >= '{start.isoformat()}' AND time_utc < '{end.isoformat()}')",
        f"ALTER TABLE passages ATTACH PARTITION {name} FOR VALUES FROM "
        f"('{start.isoformat()}') TO ('{end.isoformat()}')",
        f"ALTER TABLE {name} DROP CONSTRAINT {name}_range",
    ]


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar() is True


def ensure_months(conn: Connection, months: Iterable[tuple[int, int]]) -> list[str]:
    """Make the missing partitions of ``months`` on ``conn`` (in its transaction); the
    names made. The CHECK added before ATTACH lets PostgreSQL skip the scan."""
    made = []
    for year, month in months:
        name = partition_name(year, month)
        if _exists(conn, name):
            continue
        for statement in create_partition_sql(year, month):
            conn.execute(text(statement))
        made.append(name)
    return made


def ensure_ahead(conn: Connection, now: datetime, *, months_ahead: int = MONTHS_AHEAD
                 ) -> list[str]:
    """Partitions from the current month to ``months_ahead`` months later."""
    last = month_of(now)
    for _ in range(months_ahead):
        last = next_month(*last)
    return ensure_months(conn, months_between(month_of(now), last))


def ensure_month(engine: Engine, moment: datetime, *, lock_timeout_ms: int = 500,
                 within: Connection | None = None) -> None:
    """The partition for ``moment``'s month exists after this: made in a side connection
    and committed at once; where that cannot get its locks in ``lock_timeout_ms`` (the
    caller's own open transaction has written ``cases``, whose foreign key ATTACH must
    extend), made inside ``within`` (the caller's transaction, in a savepoint) instead.
    A replica making it at the same time is fine; a failure is loud."""
    year, month = month_of(moment)
    name = partition_name(year, month)
    key = (f"{id(engine)}:{engine.url}", name)
    with _known_lock:
        if key in _known:
            return
    # the caller's own connection answers "exists?" (no second connection per insert: a
    # pool of N connections would otherwise serve only N/2 concurrent transactions)
    made = within is not None and _exists(within, name)
    if not made:
        made = _make_aside(engine, year, month, lock_timeout_ms, must=within is None)
    if not made and within is not None:
        try:
            with within.begin_nested():
                ensure_months(within, [(year, month)])
        except DBAPIError as exc:
            raise PartitionError(f"cannot create partition {name}: {exc}",
                                 "过车记录分区创建失败，请联系系统管理员") from exc
        return  # not cached: it exists only if the caller's transaction commits
    if month_range(year, month)[1] > datetime.now(UTC):
        # only months not yet over are cached: retention drops past months only, so a
        # cached name never goes stale in another replica; a past month costs one lookup
        with _known_lock:
            _known.add(key)


def _make_aside(engine: Engine, year: int, month: int, lock_timeout_ms: int, *,
                must: bool) -> bool:
    """Make the month's partition in a connection of its own, committed at once; whether
    it exists now. ``must``: a failure raises instead of returning False."""
    name = partition_name(year, month)
    with engine.connect() as conn:
        if _exists(conn, name):
            return True
        try:
            # SET LOCAL: ends with this transaction. A plain SET would stay on the pooled
            # connection and time out a later transaction's wait for the audit lock
            conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
            ensure_months(conn, [(year, month)])
            conn.commit()
            return True
        except DBAPIError as exc:
            conn.rollback()
            if _exists(conn, name):  # made by a peer meanwhile
                return True
            if must:
                raise PartitionError(f"cannot create partition {name}: {exc}",
                                     "过车记录分区创建失败，请联系系统管理员") from exc
            return False


def forget(name: str) -> None:
    """Drop ``name`` from the cache of partitions known to exist (after dropping it)."""
    with _known_lock:
        for key in [k for k in _known if k[1] == name]:
            _known.discard(key)


@event.listens_for(Passage, "before_insert")
@event.listens_for(Passage, "before_update")  # a passage moved to another month (a correction)
def _partition_for_insert(_mapper: Any, connection: Connection, target: Passage) -> None:
    if connection.dialect.name != "postgresql" or target.time_utc is None:
        return
    engine = connection.engine
    year, month = month_of(target.time_utc)
    key = (f"{id(engine)}:{engine.url}", partition_name(year, month))
    with _known_lock:
        if key in _known:
            return
    if not is_partitioned(connection):  # before migration 0006 (or a plain table)
        return
    ensure_month(engine, target.time_utc, within=connection)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Alembic comparison filter: leave out what partitioning changes on PostgreSQL (the
    month partitions, the unique key with ``time_utc``, the two-column foreign key)."""
    if type_ == "table" and name is not None and parse_name(name) is not None:
        return False
    table = getattr(getattr(obj, "table", None), "name", None) or getattr(
        getattr(obj, "parent", None), "name", None)
    if type_ == "unique_constraint" and table == "passages":
        return {c.name for c in obj.columns} not in ({"source_key"},
                                                     {"source_key", "time_utc"})
    if type_ == "foreign_key_constraint" and table == "cases":
        referred = obj.referred_table.name  # PostgreSQL lists one per partition as well
        return referred != "passages" and parse_name(referred) is None
    return True
