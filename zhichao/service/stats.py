"""行政执法 statistics over a China-time period, in total or for one site, as JSON and CSV.

:func:`period_figures` is the one counting function: the annual figures
(:func:`annual_statistics`), the monthly figures and the annual report (年报) of
``monthly.py`` all call it. Events are counted in the period they happened: reviews by
review time, openings by ``opened_utc``, decisions and fines by decision time, statements
and hearing requests by filing time, passages by passage time, cases by registration
time (with the state they are in now). A statutory deadline is counted in the period its
last day falls in: kept when the act (decision, service) happened on or before that China
date, missed otherwise.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from zhichao.service.errors import InvalidInputError
from zhichao.service.models import Case, Decision, Passage, Review, Statement
from zhichao.service.workdays import CHINA_TZ, china_date
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
    "decision_deadlines_kept": "决定期限：按期",
    "decision_deadlines_missed": "决定期限：逾期",
    "serve_deadlines_kept": "送达期限：按期",
    "serve_deadlines_missed": "送达期限：逾期",
}
ANNUAL_KEYS = ("passages", "passages_overloaded", "cases_registered", "technical_reviews",
               "technical_rejections", "legal_reviews", "legal_rejections", "cases_opened",
               "statements", "hearing_requests", "hearings_held", "decisions",
               *(f"decisions_{k}" for k in OUTCOMES_ZH), "fines_yuan")


def year_bounds_utc(year: int) -> tuple[datetime, datetime]:
    if not 2000 <= year <= 2100:
        raise InvalidInputError(f"year {year}: 2000–2100", "年份须在 2000–2100 之间")
    start = datetime(year, 1, 1, tzinfo=CHINA_TZ).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=CHINA_TZ).astimezone(UTC)
    return start, end


def _deadlines(session: Session, start: datetime, end: datetime, site_id: str | None,
               due: Any, done: Any) -> tuple[int, int]:
    """(kept, missed) of the deadlines whose last day is in the period."""
    first, last = china_date(start), china_date(end)
    stmt = (select(due, done).select_from(Case).outerjoin(Decision, Decision.case_id == Case.id)
            .where(due >= first, due < last))
    if site_id is not None:
        stmt = stmt.where(Case.site_id == site_id)
    kept = missed = 0
    for due_day, done_utc in session.execute(stmt):
        if done_utc is not None and china_date(done_utc) <= due_day:
            kept += 1
        else:
            missed += 1
    return kept, missed


def period_figures(session: Session, start: datetime, end: datetime,
                   site_id: str | None = None) -> dict[str, int]:
    """Every count of :data:`LABELS_ZH` over ``[start, end)`` (UTC), for one site or all."""

    def count(model: Any, column: Any, *where: Any) -> int:
        stmt: Select[Any] = select(func.count()).select_from(model).where(
            column >= start, column < end, *where)
        if site_id is not None:
            if model is Passage:
                stmt = stmt.where(Passage.site_id == site_id)
            elif model is Case:
                stmt = stmt.where(Case.site_id == site_id)
            else:
                stmt = stmt.join(Case, Case.id == model.case_id).where(Case.site_id == site_id)
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
    fines = select(func.coalesce(func.sum(Decision.fine_yuan), 0)).where(
        Decision.decided_utc >= start, Decision.decided_utc < end)
    if site_id is not None:
        fines = fines.join(Case, Case.id == Decision.case_id).where(Case.site_id == site_id)
    figures["fines_yuan"] = int(session.scalar(fines) or 0)
    figures["decision_deadlines_kept"], figures["decision_deadlines_missed"] = _deadlines(
        session, start, end, site_id, Case.decision_due, Decision.decided_utc)
    figures["serve_deadlines_kept"], figures["serve_deadlines_missed"] = _deadlines(
        session, start, end, site_id, Case.serve_due, Decision.served_utc)
    return figures


def breakdowns(session: Session, start: datetime, end: datetime,
               site_id: str | None = None) -> dict[str, dict[str, int]]:
    """Overloaded passages by vehicle class, and cases registered in the period by state."""
    by_class = (select(Passage.vehicle_class, func.count())
                .where(Passage.time_utc >= start, Passage.time_utc < end,
                       Passage.overloaded.is_(True)).group_by(Passage.vehicle_class))
    by_state = (select(Case.state, func.count())
                .where(Case.created_utc >= start, Case.created_utc < end).group_by(Case.state))
    if site_id is not None:
        by_class = by_class.where(Passage.site_id == site_id)
        by_state = by_state.where(Case.site_id == site_id)
    return {"overloads_by_class": {str(k or "未分类"): int(n)
                                   for k, n in session.execute(by_class)},
            "cases_by_state": {str(k): int(n) for k, n in session.execute(by_state)}}


def annual_statistics(session: Session, year: int) -> dict[str, Any]:
    start, end = year_bounds_utc(year)
    every = period_figures(session, start, end)
    figures = {k: every[k] for k in ANNUAL_KEYS}
    return {"format": "zhichao.stats/1", "year": year, "time_zone": "UTC+08:00",
            "figures": figures, "labels_zh": {k: LABELS_ZH[k] for k in figures}}


def statistics_csv(stats: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["year", "metric", "label_zh", "value"])
    for key, value in stats["figures"].items():
        writer.writerow([stats["year"], key, stats["labels_zh"][key], value])
    return out.getvalue()
