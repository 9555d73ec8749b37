"""Supervision of the enforcement itself (issue 22): 案卷评查 campaigns, monthly statistics
and the 年报, typical cases. Roles from ``duties.SUPERVISION_DUTIES``; the rules are in
``supervision.py``, ``monthly.py`` and ``supervision_reports.py``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.service import duties, monthly, supervision, workflow
from zhichao.service import supervision_reports as reports
from zhichao.service.api.deps import API, CaseId, SessionDep, staff_with
from zhichao.service.api.schemas import STAFF_ERRORS, SafeStr, _In, media_answer
from zhichao.service.inputs import PlausibleDate
from zhichao.service.models import CampaignScore, ReviewCampaign, User

router = APIRouter(prefix=f"{API}/supervision", tags=["supervision"], responses=STAFF_ERRORS)
CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1, description="评查活动编号")]
Format = Annotated[str, Query(pattern="^(json|csv|pdf)$")]
FILES = media_answer("format=csv 或 pdf：文件", "text/csv", "application/pdf")


def _who(action: str) -> Any:
    return Depends(staff_with(*duties.SUPERVISION_DUTIES[action].roles))


def _extra(action: str) -> dict[str, Any]:
    row = duties.SUPERVISION_DUTIES[action]
    return {"x-roles": list(row.roles), "x-separation": list(row.barred),
            "x-legal-source": row.source_zh, "x-effective": row.effective.isoformat(),
            "x-confirmed": row.confirmed}


Reader = Annotated[User, Depends(staff_with(*duties.SUPERVISION_READ))]
READ_EXTRA = duties.openapi_extra(roles=duties.SUPERVISION_READ)


class CampaignIn(_In):
    title: SafeStr = Field(min_length=1, max_length=200)
    period_start: PlausibleDate
    period_end: PlausibleDate
    site_ids: list[SafeStr] = Field(default_factory=list, max_length=100)
    states: list[SafeStr] = Field(default_factory=list, max_length=20)
    reviewer_ids: list[int] = Field(min_length=1, max_length=50)
    min_sample: int = Field(default=supervision.MIN_SAMPLE, ge=supervision.MIN_SAMPLE,
                            le=10000)
    seed: SafeStr | None = Field(default=None, max_length=64)


class AddCaseIn(_In):
    case_id: int = Field(ge=1, le=2**31 - 1)


class ScoreIn(_In):
    case_id: int = Field(ge=1, le=2**31 - 1)
    checklist: dict[SafeStr, bool] = Field(description="检查项 → 是否符合（须逐项填写）")
    problems: SafeStr | None = Field(default=None, max_length=2000)
    correction: SafeStr | None = Field(default=None, max_length=2000)


class TypicalIn(_In):
    title: SafeStr = Field(min_length=1, max_length=100)
    summary: SafeStr = Field(min_length=1, max_length=500)


class SampleOut(BaseModel):
    case_id: int
    how: str = Field(description="random（随机抽取）| chosen（指定评查）")
    rank: int | None
    scored_by: list[int]


class CampaignOut(BaseModel):
    id: int
    title_zh: str
    period_start: str
    period_end: str
    site_ids: list[str]
    states: list[str]
    seed: str
    min_sample: int
    reviewer_ids: list[int]
    state: str
    opened_utc: str
    closed_utc: str | None
    report_sha256: str | None
    sample: list[SampleOut]


class CampaignsOut(BaseModel):
    campaigns: list[CampaignOut]


class ChecklistItemOut(BaseModel):
    key: str
    dimension: str
    dimension_zh: str
    text_zh: str
    source_zh: str


class ChecklistOut(BaseModel):
    points_per_dimension: int
    items: list[ChecklistItemOut]


class ScoreOut(BaseModel):
    campaign_id: int
    case_id: int
    scores: dict[str, int]
    total: int
    grade_zh: str


class TypicalOut(BaseModel):
    case_id: int
    title_zh: str
    message_zh: str


class CampaignReportOut(BaseModel):
    """The campaign report (``zhichao.case-file-review/1``; the sealed one once closed)."""

    model_config = ConfigDict(extra="allow")
    format: str
    campaign_id: int
    title_zh: str
    draft: bool
    report_sha256: str | None
    cases: list[dict[str, Any]]
    problems_by_kind: list[dict[str, Any]]
    dimension_means: dict[str, float | None]


class PeriodReportOut(BaseModel):
    """Monthly figures or the 年报 (``zhichao.monthly/1``): total, by site, labels."""

    model_config = ConfigDict(extra="allow")
    format: str
    kind: str = Field(description="monthly | annual")
    year: int
    month: int | None
    title_zh: str
    total: dict[str, Any]
    sites: dict[str, Any]
    labels_zh: dict[str, str]


class TypicalListOut(BaseModel):
    cases: list[dict[str, Any]] = Field(description="去除号牌、姓名、案件编号的典型案例")


def campaign_out(session: Session, c: ReviewCampaign) -> CampaignOut:
    scored: dict[int, list[int]] = {}
    for case_id, reviewer_id in session.execute(select(
            CampaignScore.case_id, CampaignScore.reviewer_id).where(
            CampaignScore.campaign_id == c.id)):
        scored.setdefault(case_id, []).append(reviewer_id)
    return CampaignOut(
        id=c.id, title_zh=c.title_zh, period_start=c.period_start.isoformat(),
        period_end=c.period_end.isoformat(), site_ids=c.site_ids, states=c.states,
        seed=c.seed, min_sample=c.min_sample, reviewer_ids=c.reviewer_ids, state=c.state,
        opened_utc=c.opened_utc.isoformat(),
        closed_utc=None if c.closed_utc is None else c.closed_utc.isoformat(),
        report_sha256=c.report_sha256,
        sample=[SampleOut(case_id=r.case_id, how=r.how, rank=r.rank,
                          scored_by=scored.get(r.case_id, []))
                for r in supervision.sample(session, c)])


def file_answer(body: str | bytes, name: str, format: str) -> Response:
    media = "text/csv; charset=utf-8" if format == "csv" else "application/pdf"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'})


@router.get("/checklist", summary="案卷评查表（五个维度，各项附依据）",
            openapi_extra=READ_EXTRA)
def checklist(user: Reader) -> ChecklistOut:
    del user
    return ChecklistOut(points_per_dimension=supervision.DIMENSION_POINTS, items=[
        ChecklistItemOut(key=i.key, dimension=i.dimension,
                         dimension_zh=supervision.DIMENSIONS_ZH[i.dimension],
                         text_zh=i.text_zh, source_zh=i.source_zh)
        for i in supervision.CHECKLIST.values()])


@router.get("/campaigns", summary="评查活动列表", openapi_extra=READ_EXTRA)
def campaigns(session: SessionDep, user: Reader) -> CampaignsOut:
    del user
    rows = session.scalars(select(ReviewCampaign).order_by(ReviewCampaign.id.desc()))
    return CampaignsOut(campaigns=[campaign_out(session, c) for c in rows])


@router.post("/campaigns", summary="发起案卷评查（随机抽样，记录种子）",
             openapi_extra=_extra("open-campaign"))
def open_campaign(body: CampaignIn, session: SessionDep,
                  user: Annotated[User, _who("open-campaign")]) -> CampaignOut:
    c = supervision.open_campaign(
        session, user, title=body.title, period_start=body.period_start,
        period_end=body.period_end, site_ids=body.site_ids, states=body.states,
        reviewer_ids=body.reviewer_ids, min_sample=body.min_sample, seed=body.seed)
    return campaign_out(session, c)


@router.get("/campaigns/{campaign_id}", summary="评查活动详情与样本", openapi_extra=READ_EXTRA)
def campaign(campaign_id: CampaignId, session: SessionDep, user: Reader) -> CampaignOut:
    del user
    return campaign_out(session, supervision.get_campaign(session, campaign_id))


@router.post("/campaigns/{campaign_id}/cases", summary="指定评查案卷（集中评查）",
             openapi_extra=_extra("add-case"))
def add_case(campaign_id: CampaignId, body: AddCaseIn, session: SessionDep,
             user: Annotated[User, _who("add-case")]) -> CampaignOut:
    c = supervision.get_campaign(session, campaign_id)
    supervision.add_case(session, c, user, case_id=body.case_id)
    return campaign_out(session, c)


@router.post("/campaigns/{campaign_id}/scores", summary="案卷评分（不得评查本人办理的案卷）",
             openapi_extra=_extra("score"))
def score(campaign_id: CampaignId, body: ScoreIn, session: SessionDep,
          user: Annotated[User, _who("score")]) -> ScoreOut:
    c = supervision.get_campaign(session, campaign_id)
    row = supervision.score_case(session, c, user, case_id=body.case_id,
                                 checklist=dict(body.checklist), problems=body.problems,
                                 correction=body.correction)
    return ScoreOut(campaign_id=c.id, case_id=row.case_id, scores=row.scores, total=row.total,
                    grade_zh=supervision.grade_zh(row.total))


@router.post("/campaigns/{campaign_id}/close", summary="结束评查，封存报告",
             openapi_extra=_extra("close-campaign"))
def close(campaign_id: CampaignId, session: SessionDep,
          user: Annotated[User, _who("close-campaign")]) -> CampaignOut:
    c = supervision.get_campaign(session, campaign_id)
    supervision.close_campaign(session, c, user)
    return campaign_out(session, c)


@router.get("/campaigns/{campaign_id}/report", summary="评查报告（JSON、CSV 或 PDF）",
            openapi_extra=READ_EXTRA, responses=FILES, response_model=CampaignReportOut)
def report(campaign_id: CampaignId, session: SessionDep, user: Reader,
           format: Format = "json") -> Any:
    del user
    data = reports.campaign_report(session, supervision.get_campaign(session, campaign_id))
    if format == "json":
        return data
    body = reports.campaign_csv(data) if format == "csv" else reports.campaign_pdf(data)
    return file_answer(body, f"case-file-review-{campaign_id}", format)


StatsReader = Annotated[User, _who("statistics")]


@router.get("/statistics/{year}/{month}", summary="月度统计（次月1日起提供；JSON、CSV 或 PDF）",
            openapi_extra=_extra("statistics"), responses=FILES,
            response_model=PeriodReportOut)
def month_statistics(year: Annotated[int, Path(ge=2000, le=2100)],
                     month: Annotated[int, Path(ge=1, le=12)], session: SessionDep,
                     user: StatsReader, format: Format = "json") -> Any:
    del user
    data = monthly.monthly_report(session, year, month)
    if format == "json":
        return data
    body = monthly.report_csv(data) if format == "csv" else monthly.report_pdf(data)
    return file_answer(body, f"statistics-{year}-{month:02d}", format)


@router.get("/annual/{year}", summary="年报（次年1月1日起提供；JSON、CSV 或 PDF）",
            openapi_extra=_extra("statistics"), responses=FILES,
            response_model=PeriodReportOut)
def annual(year: Annotated[int, Path(ge=2000, le=2100)], session: SessionDep,
           user: StatsReader, format: Format = "json") -> Any:
    del user
    data = monthly.annual_report(session, year)
    if format == "json":
        return data
    body = monthly.report_csv(data) if format == "csv" else monthly.report_pdf(data)
    return file_answer(body, f"annual-report-{year}", format)


@router.post("/typical/{case_id}", summary="列为典型案例（仅已作出决定的案件）",
             openapi_extra=_extra("mark-typical"))
def mark_typical(case_id: CaseId, body: TypicalIn, session: SessionDep,
                 user: Annotated[User, _who("mark-typical")]) -> TypicalOut:
    case = workflow.get_case(session, case_id)
    row = supervision.mark_typical(session, case, user, title=body.title, summary=body.summary)
    return TypicalOut(case_id=case_id, title_zh=row.title_zh, message_zh="已列为典型案例")


@router.get("/typical", summary="典型案例汇编（去除号牌、姓名；JSON、CSV 或 PDF）",
            openapi_extra=READ_EXTRA, responses=FILES, response_model=TypicalListOut)
def typical(session: SessionDep, user: Reader, format: Format = "json") -> Any:
    del user
    rows = reports.typical_rows(session)
    if format == "json":
        return {"cases": rows}
    body = reports.typical_csv(rows) if format == "csv" else reports.typical_pdf(rows)
    return file_answer(body, "typical-cases", format)
