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
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import audit
from zhichao.service.errors import InvalidInputError
from zhichao.service.models import Case, Passage

DEFAULT_RETENTION_DAYS = 30  # unconfirmed: configurable, marked in docs/service.md
SOURCE_ZH = "《个人信息保护法》第十九条（保存期限为实现处理目的所必要的最短时间）"


def remove_expired_plates(session: Session, *, retention_days: int, actor: str,
                          now: datetime | None = None) -> int:
    """Remove the plates of non-case passages older than ``retention_days``; the count."""
    if retention_days < 1:
        raise InvalidInputError("retention_days must be >= 1", "保存期限须至少为 1 天")
    now = now or utc_now()
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
