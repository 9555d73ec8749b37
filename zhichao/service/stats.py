"""Annual 行政执法 statistics (by China-time year) as JSON and CSV.

Cases are counted in the year their event happened: reviews by review time, openings by
``opened_utc``, decisions and fines by decision time, statements and hearing requests by
filing time, passages by passage time.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhichao.service.errors import InvalidInputError
from zhichao.service.models import Case, Decision, Passage, Review, Statement
from zhichao.service.workdays import CHINA_TZ
from zhichao.service.workflow import OUTCOMES_ZH

LABELS_ZH: dict[str, str] = {
    "passages": "称重检测车次",
    "passages_overloaded": "检测超限车次",
    "cases_registered": "登记待审核案件",
    "technical_reviews": "技术审核（次）",
    "technical_rejections": "技术审核不通过",
    "legal_reviews": "法制审核（次）",
    "legal_rejections": "法制审核不通过",
    "cases_opened": "立案并告知",
    "statements": "陈述申辩（份）",
    "hearing_requests": "听证申请",
    "hearings_held": "举行听证",
    "decisions": "作出处罚决定",
    "fines_yuan": "罚款金额合计（元）",
    **{f"decisions_{k}": f"决定：{v}" for k, v in OUTCOMES_ZH.items()},
}


def year_bounds_utc(year: int) -> tuple[datetime, datetime]:
    if not 2000 <= year <= 2100:
        raise InvalidInputError(f"year {year}: 2000–2100", "年份须在 2000–2100 之间")
    start = datetime(year, 1, 1, tzinfo=CHINA_TZ).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=CHINA_TZ).astimezone(UTC)
    return start, end


def annual_statistics(session: Session, year: int) -> dict[str, Any]:
    start, end = year_bounds_utc(year)

    def count(model: Any, column: Any, *where: Any) -> int:
        stmt = select(func.count()).select_from(model).where(column >= start, column < end,
                                                              *where)
        return int(session.scalar(stmt) or 0)

    figures: dict[str, int] = {
        "passages": count(Passage, Passage.time_utc),
        "passages_overloaded": count(Passage, Passage.time_utc, Passage.overloaded.is_(True)),
        "cases_registered": count(Case, Case.created_utc),
        "technical_reviews": count(Review, Review.time_utc, Review.stage == "technical"),
        "technical_rejections": count(Review, Review.time_utc, Review.stage == "technical",
                                      Review.approved.is_(False)),
        "legal_reviews": count(Review, Review.time_utc, Review.stage == "legal"),
        "legal_rejections": count(Review, Review.time_utc, Review.stage == "legal",
                                  Review.approved.is_(False)),
        "cases_opened": count(Case, Case.opened_utc),
        "statements": count(Statement, Statement.filed_utc, Statement.kind == "statement"),
        "hearing_requests": count(Statement, Statement.filed_utc,
                                  Statement.kind == "hearing_request"),
        "hearings_held": count(Case, Case.hearing_held_utc),
        "decisions": count(Decision, Decision.decided_utc),
    }
    for outcome in OUTCOMES_ZH:
        figures[f"decisions_{outcome}"] = count(Decision, Decision.decided_utc,
                                                Decision.outcome == outcome)
    fines = session.scalar(select(func.coalesce(func.sum(Decision.fine_yuan), 0)).where(
        Decision.decided_utc >= start, Decision.decided_utc < end))
    figures["fines_yuan"] = int(fines or 0)
    return {"format": "zhichao.stats/1", "year": year, "time_zone": "UTC+08:00",
            "figures": figures, "labels_zh": {k: LABELS_ZH[k] for k in figures}}


def statistics_csv(stats: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["year", "metric", "label_zh", "value"])
    for key, value in stats["figures"].items():
        writer.writerow([stats["year"], key, stats["labels_zh"][key], value])
    return out.getvalue()
