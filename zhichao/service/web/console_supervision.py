"""The console's supervision pages (issue 22): 案卷评查 campaigns (open, sample, score,
close, report), monthly statistics and the 年报 with bar charts, typical cases and their
masked compilation. Roles from ``duties.SUPERVISION_DUTIES``; every POST is CSRF-checked
and calls one function of ``supervision.py`` in a transaction (which audits it). Times are
shown in 北京时间, labelled (the ``bj`` filter).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from jinja2 import Environment
from markupsafe import Markup, escape
from sqlalchemy import select

from zhichao.common import utc_now
from zhichao.service import duties, monthly, supervision, workflow
from zhichao.service import supervision_reports as reports
from zhichao.service.errors import InvalidInputError, ServiceError
from zhichao.service.models import CampaignScore, Case, ReviewCampaign, TypicalCase, User
from zhichao.service.report_pdf import beijing
from zhichao.service.web.pages import CONSOLE, Csrf, PagesDep, Text2000, parse_date
from zhichao.service.workdays import CHINA_TZ

router = APIRouter(include_in_schema=False)
SUP = f"{CONSOLE}/supervision"
CampaignId = Annotated[int, Query(ge=1, le=2**31 - 1)]
Short = Annotated[str, Form(max_length=200)]
Year = Annotated[int | None, Query(ge=2000, le=2100)]
Month = Annotated[str | None, Query(max_length=2, description="1–12；留空为年报")]
Format = Annotated[str, Query(pattern="^(csv|pdf)$")]


def install(env: Environment) -> None:
    """The template helpers of these pages (called once by ``create_console_app``)."""
    env.filters["bj"] = beijing
    env.globals.update(dimensions_zh=supervision.DIMENSIONS_ZH,
                       checklist=supervision.CHECKLIST, grade_zh=supervision.grade_zh,
                       supervision_duties=duties.SUPERVISION_DUTIES)


def bars_svg(items: list[tuple[str, float]], unit: str = "") -> Markup:
    """A horizontal bar chart (presentation attributes only, text escaped)."""
    top = max((v for _l, v in items), default=0) or 1
    rows = []
    for i, (label, value) in enumerate(items):
        y, width = 22 * i, 360 * value / top
        rows.append(f'<text x="0" y="{y + 14}" font-size="12">{escape(label)}</text>'
                    f'<rect x="150" y="{y + 3}" width="{width:.1f}" height="14" '
                    f'fill="#1f5fa8"/><text x="{156 + width:.1f}" y="{y + 14}" '
                    f'font-size="12">{value:,.0f}{escape(unit)}</text>')
    height = max(22 * len(items), 22)
    return Markup(f'<svg class="figure" xmlns="http://www.w3.org/2000/svg" width="600" '
                  f'height="{height}" viewBox="0 0 600 {height}" role="img">'
                  + "".join(rows) + "</svg>")


def _reviewer_choices(session: Any) -> list[User]:
    roles = duties.SUPERVISION_DUTIES["score"].roles
    return [u for u in session.scalars(select(User).where(User.active.is_(True))
                                       .order_by(User.id)) if u.role_set.intersection(roles)]


def _page(request: Request, pages: PagesDep, template: str, roles: tuple[str, ...],
          build: Any) -> Response:
    user: User | None = None
    try:
        with pages.staff_tx(request, *roles) as (session, user):
            page = pages.render(request, template, user=user, csrf=pages.staff_csrf(request),
                                done=request.query_params.get("done"),
                                **build(session, user))
        return page
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user, back=f"{SUP}")


def _post(request: Request, pages: PagesDep, csrf: str | None, roles: tuple[str, ...],
          back: str, do: Any) -> Response:
    user: User | None = None
    try:
        pages.check_staff_csrf(request, csrf)
        with pages.staff_tx(request, *roles) as (session, user):
            target = do(session, user) or back
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user, back=back)
    return RedirectResponse(target, status_code=303)


def _file(body: str | bytes, name: str, format: str) -> Response:
    media = "text/csv; charset=utf-8" if format == "csv" else "application/pdf"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'})


READ = duties.SUPERVISION_READ
ROLE = {k: v.roles for k, v in duties.SUPERVISION_DUTIES.items()}


@router.get(f"{SUP}")
def overview(request: Request, pages: PagesDep) -> Response:
    def build(session: Any, user: User) -> dict[str, Any]:
        campaigns = list(session.scalars(select(ReviewCampaign)
                                         .order_by(ReviewCampaign.id.desc())))
        year = utc_now().astimezone(CHINA_TZ).year
        held = any(c.opened_utc.astimezone(CHINA_TZ).year == year for c in campaigns)
        return {"campaigns": campaigns, "reviewers": _reviewer_choices(session),
                "this_year": year, "held_this_year": held,
                "states_all": workflow.STATES_ZH,
                "may_open": bool(user.role_set.intersection(ROLE["open-campaign"]))}
    return _page(request, pages, "supervision.html", READ, build)


@router.post(f"{SUP}/campaigns")
def open_campaign(request: Request, pages: PagesDep, title: Short,
                  period_start: Annotated[str, Form(max_length=10)],
                  period_end: Annotated[str, Form(max_length=10)],
                  reviewer_ids: Annotated[list[int], Form()],
                  site_ids: Annotated[str, Form(max_length=500)] = "",
                  states: Annotated[list[str] | None, Form()] = None,
                  min_sample: Annotated[int, Form(ge=1, le=10000)] = supervision.MIN_SAMPLE,
                  seed: Annotated[str, Form(max_length=64)] = "",
                  csrf_token: Csrf = None) -> Response:
    def do(session: Any, user: User) -> str:
        start, end = parse_date(period_start, "period_start"), parse_date(period_end, "period_end")
        if start is None or end is None:
            raise InvalidInputError("period required", "请填写评查期间")
        c = supervision.open_campaign(
            session, user, title=title, period_start=start, period_end=end,
            site_ids=[s.strip() for s in site_ids.replace("，", ",").split(",") if s.strip()],
            states=states or [], reviewer_ids=reviewer_ids, min_sample=min_sample,
            seed=seed.strip() or None)
        return f"{SUP}/campaign?campaign_id={c.id}&done=open"
    return _post(request, pages, csrf_token, ROLE["open-campaign"], SUP, do)


@router.get(f"{SUP}/campaign")
def campaign(request: Request, pages: PagesDep, campaign_id: CampaignId) -> Response:
    def build(session: Any, user: User) -> dict[str, Any]:
        c = supervision.get_campaign(session, campaign_id)
        scored: dict[int, list[CampaignScore]] = {}
        for s in session.scalars(select(CampaignScore).where(
                CampaignScore.campaign_id == c.id).order_by(CampaignScore.id)):
            scored.setdefault(s.case_id, []).append(s)
        rows = [(r, session.get(Case, r.case_id)) for r in supervision.sample(session, c)]
        may = {case.id: supervision.may_score(session, c, user, case)
               and user.id not in [s.reviewer_id for s in scored.get(case.id, [])]
               for _r, case in rows}
        return {"c": c, "rows": rows, "scored": scored, "may": may,
                "outstanding": supervision.outstanding(session, c) if c.state == "open"
                else [],
                "report": reports.campaign_report(session, c),
                "is_supervisor": bool(user.role_set.intersection(ROLE["close-campaign"]))}
    return _page(request, pages, "supervision_campaign.html", READ, build)


@router.post(f"{SUP}/campaign/add")
def add_case(request: Request, pages: PagesDep, campaign_id: Annotated[int, Form(ge=1)],
             case_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
             csrf_token: Csrf = None) -> Response:
    back = f"{SUP}/campaign?campaign_id={campaign_id}"
    return _post(request, pages, csrf_token, ROLE["add-case"], back + "&done=add",
                 lambda s, u: supervision.add_case(
                     s, supervision.get_campaign(s, campaign_id), u, case_id=case_id)
                 and None)


@router.get(f"{SUP}/campaign/score")
def score_form(request: Request, pages: PagesDep, campaign_id: CampaignId,
               case_id: CampaignId) -> Response:
    def build(session: Any, user: User) -> dict[str, Any]:
        del user
        return {"c": supervision.get_campaign(session, campaign_id),
                "case": workflow.get_case(session, case_id)}
    return _page(request, pages, "supervision_score.html", ROLE["score"], build)


@router.post(f"{SUP}/campaign/score")
async def score(request: Request, pages: PagesDep) -> Response:
    form = await request.form()
    try:
        campaign_id = int(str(form.get("campaign_id", "")))
        case_id = int(str(form.get("case_id", "")))
    except ValueError:
        campaign_id = case_id = 0
    back = f"{SUP}/campaign?campaign_id={campaign_id}"
    checklist = {k: form.get(f"item:{k}") == "met" if form.get(f"item:{k}") in ("met", "unmet")
                 else None for k in supervision.CHECKLIST}

    def do(session: Any, user: User) -> None:
        if campaign_id < 1 or case_id < 1:
            raise InvalidInputError("campaign_id / case_id", "评查活动或案卷编号无效")
        if any(v is None for v in checklist.values()):
            raise InvalidInputError("checklist incomplete", "评查表须逐项选择“符合”或“不符合”")
        supervision.score_case(
            session, supervision.get_campaign(session, campaign_id), user, case_id=case_id,
            checklist={k: bool(v) for k, v in checklist.items()},
            problems=str(form.get("problems") or "")[:2000] or None,
            correction=str(form.get("correction") or "")[:2000] or None)
    csrf = form.get("csrf_token")
    return await run_in_threadpool(_post, request, pages,
                                   csrf if isinstance(csrf, str) else None, ROLE["score"],
                                   back + "&done=score", do)


@router.post(f"{SUP}/campaign/close")
def close(request: Request, pages: PagesDep, campaign_id: Annotated[int, Form(ge=1)],
          csrf_token: Csrf = None) -> Response:
    back = f"{SUP}/campaign?campaign_id={campaign_id}"
    return _post(request, pages, csrf_token, ROLE["close-campaign"], back + "&done=close",
                 lambda s, u: supervision.close_campaign(
                     s, supervision.get_campaign(s, campaign_id), u) and None)


@router.get(f"{SUP}/campaign/report")
def campaign_file(request: Request, pages: PagesDep, campaign_id: CampaignId,
                  format: Format) -> Response:
    try:
        with pages.staff_tx(request, *READ) as (session, _user):
            data = reports.campaign_report(session, supervision.get_campaign(session,
                                                                             campaign_id))
        body = reports.campaign_csv(data) if format == "csv" else reports.campaign_pdf(data)
        return _file(body, f"case-file-review-{campaign_id}", format)
    except ServiceError as exc:
        return pages.error_page(request, exc, back=SUP)


def _month(text: str | None) -> int | None:
    """The month of the form (empty: the annual report)."""
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 12:
        raise InvalidInputError(f"month {text!r}", "月份须为 1–12，留空为年报")
    return int(text)


def _period(session: Any, year: int, month: int | None) -> dict[str, Any]:
    if month is None:
        return monthly.annual_report(session, year)
    return monthly.monthly_report(session, year, month)


@router.get(f"{SUP}/statistics")
def statistics(request: Request, pages: PagesDep, year: Year = None,
               month_text: Annotated[Month, Query(alias="month")] = None) -> Response:
    def build(session: Any, user: User) -> dict[str, Any]:
        del user
        month = _month(month_text)
        if year is None:
            last = utc_now().astimezone(CHINA_TZ).replace(day=1).date().toordinal() - 1
            prev = date.fromordinal(last)
            return {"data": None, "year": prev.year, "month": prev.month}
        data = _period(session, year, month)
        charts = {"sites": bars_svg([(s, b["figures"]["passages"])
                                     for s, b in data["sites"].items()]),
                  "classes": bars_svg(list(data["total"]["overloads_by_class"].items()))}
        if data["kind"] == "annual":
            charts["months"] = bars_svg([(f"{i}月", m["passages"])
                                         for i, m in enumerate(data["months"], 1)])
        return {"data": data, "year": year, "month": month, "charts": charts}
    return _page(request, pages, "supervision_statistics.html", ROLE["statistics"], build)


@router.get(f"{SUP}/statistics/file")
def statistics_file(request: Request, pages: PagesDep, format: Format,
                    year: Annotated[int, Query(ge=2000, le=2100)],
                    month_text: Annotated[Month, Query(alias="month")] = None) -> Response:
    try:
        month = _month(month_text)
        with pages.staff_tx(request, *ROLE["statistics"]) as (session, _user):
            data = _period(session, year, month)
        body = monthly.report_csv(data) if format == "csv" else monthly.report_pdf(data)
        name = f"statistics-{year}" + (f"-{month:02d}" if month else "")
        return _file(body, name, format)
    except ServiceError as exc:
        return pages.error_page(request, exc, back=f"{SUP}/statistics")


@router.get(f"{SUP}/typical")
def typical(request: Request, pages: PagesDep) -> Response:
    def build(session: Any, user: User) -> dict[str, Any]:
        marked = list(session.scalars(select(TypicalCase).order_by(TypicalCase.id)))
        return {"marked": marked, "rows": reports.typical_rows(session),
                "may_mark": bool(user.role_set.intersection(ROLE["mark-typical"]))}
    return _page(request, pages, "supervision_typical.html", READ, build)


@router.post(f"{SUP}/typical")
def mark_typical(request: Request, pages: PagesDep, case_id: Annotated[int, Form(ge=1)],
                 title: Annotated[str, Form(max_length=100)], summary: Text2000 = None,
                 csrf_token: Csrf = None) -> Response:
    return _post(request, pages, csrf_token, ROLE["mark-typical"],
                 f"{SUP}/typical?done=typical",
                 lambda s, u: supervision.mark_typical(
                     s, workflow.get_case(s, case_id), u, title=title,
                     summary=summary or "") and None)


@router.get(f"{SUP}/typical/file")
def typical_file(request: Request, pages: PagesDep, format: Format) -> Response:
    try:
        with pages.staff_tx(request, *READ) as (session, _user):
            rows = reports.typical_rows(session)
        body = reports.typical_csv(rows) if format == "csv" else reports.typical_pdf(rows)
        return _file(body, "typical-cases", format)
    except ServiceError as exc:
        return pages.error_page(request, exc, back=f"{SUP}/typical")
