"""Retention of personal data of passages that are not cases (个人信息保护法 Art. 19: kept
no longer than the purpose needs).

Every weighed vehicle is a ``Passage`` (statistics and drift need all of them); its plate
identifies a person. After ``Settings.passage_plate_retention_days`` (default 30 days:
UNCONFIRMED, no legal period was found, see ``../shared/reference/law.md`` §4.4) the plate
of a passage without a case is removed (``plate`` set to null, ``plate_removed_utc``
set); weights, class and verdict stay for statistics. The center keeps no images of
passages (only the sealed packages of cases hold images); a case's passage and its sealed
package are never touched (cases follow the archive rules, Art. 47). Each run writes one
audit entry with the count and the cut-off.

Whole months (PostgreSQL, passages partitioned by month, migration 0006): where
``Settings.passage_row_retention_days`` is set (default unset: the rows are kept for the
monthly statistics), a month's partition whose every passage is older than that period
and none of which is a case's passage is detached and dropped in one step instead of
being rewritten row by row; one audit entry per dropped month (name, range, row count). A
month with a case is left whole and its plates are removed row by row as above. SQLite
has no partitions: the row-by-row rule only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import audit, partitions
from zhichao.service.errors import InvalidInputError
from zhichao.service.models import Case, Passage

DEFAULT_RETENTION_DAYS = 30  # unconfirmed: configurable, marked in docs/service.md
SOURCE_ZH = "《个人信息保护法》第十九条（保存期限为实现处理目的所必要的最短时间）"


@dataclass(frozen=True)
class DroppedMonth:
    partition: str
    start_utc: datetime
    end_utc: datetime
    rows: int


def remove_expired_plates(session: Session, *, retention_days: int, actor: str,
                          now: datetime | None = None,
                          row_retention_days: int | None = None) -> int:
    """Remove the plates of non-case passages older than ``retention_days``; the count of
    plates removed row by row (rows of dropped months: see :func:`drop_expired_months`)."""
    if retention_days < 1:
        raise InvalidInputError("retention_days must be >= 1", "保存期限须至少为 1 天")
    now = now or utc_now()
    if row_retention_days is not None:
        drop_expired_months(session, row_retention_days=row_retention_days,
                            plate_retention_days=retention_days, actor=actor, now=now)
    cutoff = now - timedelta(days=retention_days)
    result = session.execute(
        update(Passage)
        .where(Passage.time_utc < cutoff, Passage.plate.is_not(None),
               Passage.id.not_in(select(Case.passage_id)))
        .values(plate=None, plate_removed_utc=now)
        .execution_options(synchronize_session=False))
    count = int(getattr(result, "rowcount", 0) or 0)
    audit.append(session, actor=actor, action="retention.plates_removed",
                 object_type="passage", object_id="*", now=now,
                 detail={"count": count, "cutoff_utc": cutoff.isoformat(),
                         "retention_days": retention_days, "source": SOURCE_ZH})
    return count


def drop_expired_months(session: Session, *, row_retention_days: int,
                        plate_retention_days: int, actor: str,
                        now: datetime | None = None) -> list[DroppedMonth]:
    """Drop the month partitions past ``row_retention_days`` that hold no case's passage
    (PostgreSQL); also make the partitions of the coming months. Elsewhere: nothing."""
    if row_retention_days < plate_retention_days:
        raise InvalidInputError("row retention shorter than plate retention",
                                "过车记录保存期限不得短于号牌保存期限")
    now = now or utc_now()
    conn = session.connection()
    if not partitions.is_partitioned(conn):
        return []
    partitions.ensure_ahead(conn, now)
    cutoff = now - timedelta(days=row_retention_days)
    dropped = []
    for year, month in partitions.list_partitions(conn):
        start, end = partitions.month_range(year, month)
        if end > cutoff:  # some passage in it may still be within the period
            continue
        if _cases_between(session, start, end):
            continue  # a case's passage: the month stays; its plates go row by row
        dropped.append(_drop(conn, year, month))
        audit.append(session, actor=actor, action="retention.month_dropped",
                     object_type="passage_partition", object_id=dropped[-1].partition,
                     now=now, detail={"rows": dropped[-1].rows, "start_utc": start.isoformat(),
                                      "end_utc": end.isoformat(),
                                      "cutoff_utc": cutoff.isoformat(),
                                      "row_retention_days": row_retention_days,
                                      "source": SOURCE_ZH})
    return dropped


def _cases_between(session: Session, start: datetime, end: datetime) -> int:
    # a case's time_utc is its passage's (the foreign key names both)
    return int(session.scalar(select(func.count()).select_from(Case).where(
        Case.time_utc >= start, Case.time_utc < end)) or 0)


def _drop(conn: Connection, year: int, month: int) -> DroppedMonth:
    name = partitions.partition_name(year, month)
    start, end = partitions.month_range(year, month)
    rows = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
    # DETACH checks that no case references a row in it (the foreign key), then DROP.
    conn.execute(text(f"ALTER TABLE passages DETACH PARTITION {name}"))
    conn.execute(text(f"DROP TABLE {name}"))
    partitions.forget(name)
    return DroppedMonth(name, start, end, rows)
