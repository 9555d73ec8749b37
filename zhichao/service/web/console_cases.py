"""The review queue and the case page with its photos and sealed package."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import accounts, copy_notices, duties, legal_checks, owners, workflow
from zhichao.service.errors import InvalidInputError, NotFoundError, ServiceError
from zhichao.service.models import (
    AuditEntry,
    Case,
    Decision,
    Device,
    Notice,
    Passage,
    Site,
    Statement,
    User,
)
from zhichao.service.web.evidence_view import (
    evidence_view,
    integrity,
    plate_read_crop,
    unavailable_view,
)
from zhichao.service.web.pages import (
    CONSOLE,
    DONE_ZH,
    CaseId,
    Pages,
    PagesDep,
    parse_date,
    visible_case,
)
from zhichao.service.workdays import china_date, end_of_china_day_utc

router = APIRouter(include_in_schema=False)


def _queue_query(session: Session, user: User, state: str | None, site_id: str | None,
                 lane: str | None, date_from: str | None, date_to: str | None) -> Any:
    if state and state not in workflow.STATES_ZH:
        raise InvalidInputError(f"state {state!r} unknown", "案件状态无效")
    start, end = parse_date(date_from, "date_from"), parse_date(date_to, "date_to")
    stmt = (select(Case, Passage.lane_code).join(Passage, Passage.id == Case.passage_id)
            .order_by(Case.time_utc, Case.id))
    if state:
        stmt = stmt.where(Case.state == state)
    if site_id:
        stmt = stmt.where(Case.site_id == site_id)
    if lane:
        stmt = stmt.where(Passage.lane_code == lane)
    if start is not None:  # dates are 北京时间 dates, as the pages show them
        stmt = stmt.where(Case.time_utc >= end_of_china_day_utc(start - timedelta(days=1)))
    if end is not None:
        stmt = stmt.where(Case.time_utc < end_of_china_day_utc(end))
    if user.role_set == {"station_operator"}:
        stmt = stmt.where(Case.station_id == user.station_id)
    return stmt


@router.get(f"{CONSOLE}/")
def queue(request: Request, pages: PagesDep,
          state: Annotated[str | None, Query(max_length=32)] = None,
          site_id: Annotated[str | None, Query(max_length=64)] = None,
          lane: Annotated[str | None, Query(max_length=16)] = None,
          date_from: Annotated[str | None, Query(max_length=10)] = None,
          date_to: Annotated[str | None, Query(max_length=10)] = None,
          overdue: Annotated[str | None, Query(max_length=1)] = None,
          offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    user: User | None = None
    size = pages.web.queue_page_size
    try:
        with pages.staff_tx(request, *duties.CASE_READ) as (session, user):
            stmt = _queue_query(session, user, state, site_id, lane, date_from, date_to)
            late = {o.case_id: o for o in workflow.overdue_cases(session)}
            if overdue == "1":
                stmt = stmt.where(Case.id.in_(list(late) or [-1]))
            rows = session.execute(stmt.limit(size + 1).offset(offset)).all()
            sites = session.scalars(select(Site.site_id).order_by(Site.site_id)).all()
            page = pages.render(
                request, "queue.html", user=user, csrf=pages.staff_csrf(request),
                rows=rows[:size], late=late, sites=sites, more=len(rows) > size,
                offset=offset, page_size=size,
                f={"state": state or "", "site_id": site_id or "", "lane": lane or "",
                   "date_from": date_from or "", "date_to": date_to or "",
                   "overdue": overdue == "1"})
        return page
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user)


def actions_for(user: User, case: Case) -> tuple[dict[str, bool], dict[str, str]]:
    """What the case page offers ``user``, from the duties table: the actions they may do
    now, and for the others their roles allow in this state, why they may not."""
    may = {action: duties.may(action, user, case) for action in duties.DUTIES}
    barred: dict[str, str] = {}
    for action, row in duties.DUTIES.items():
        part = duties.barred_by(action, user, case)
        if part is not None and case.state in row.from_states \
                and user.role_set.intersection(row.roles):
            barred[action] = (f"您是本案的{duties.PRIOR_ZH[part]}，不得办理“{row.label_zh}”"
                              f"（职责分离：{row.source_zh}）")
    return may, barred


def case_context(pages: Pages, session: Session, user: User, case: Case) -> dict[str, Any]:
    passage = session.get(Passage, case.passage_id)
    device = None if passage is None or passage.device_id is None else session.get(
        Device, passage.device_id)
    try:
        evidence = evidence_view(case, waveform_max_points=pages.web.waveform_max_points)
    except NotFoundError as exc:  # package missing or unreadable: show the rest
        evidence = unavailable_view(f"证据包无法读取：{exc.message_zh}（须人工核查）")
    decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).first()
    names = {u.id: u.display_name_zh for u in session.scalars(select(User).where(
        User.id.in_([i for i in (case.technical_reviewer_id, case.legal_reviewer_id,
                                 case.manual_override_by,
                                 None if decision is None else decision.decided_by)
                     if i is not None])))}
    may, barred = actions_for(user, case)
    return {"case": case, "passage": passage, "site": session.get(Site, case.site_id),
            "device": device, "ev": evidence, "integrity": integrity(case),
            "statements": session.scalars(select(Statement).where(
                Statement.case_id == case.id).order_by(Statement.id)).all(),
            "decision": decision,
            "notices": session.scalars(select(Notice).where(Notice.case_id == case.id)
                                       .order_by(Notice.id)).all(),
            "history": session.scalars(select(AuditEntry).where(
                AuditEntry.object_type == "case", AuditEntry.object_id == str(case.id))
                .order_by(AuditEntry.id)).all(),
            "events": case.events, "names": names,
            "late": [o for o in workflow.overdue_cases(session) if o.case_id == case.id],
            "blockers": legal_checks.blockers_zh(session, case,
                                                 policy=pages.settings.deadlines,
                                                 today=china_date(utc_now())),
            "may": may, "barred": barred,
            "evidence_read": bool(user.role_set.intersection(duties.EVIDENCE_READ)),
            "copies": [(c, copy_notices.state(c)) for c in copy_notices.outbox(
                session, case_id=case.id)],
            "copy_read": bool(user.role_set.intersection(duties.COPY_NOTICES)),
            "copy_states_zh": copy_notices.STATES_ZH,
            "today": date.today().isoformat()}


def done_zh(done: str | None) -> str | None:
    """The flash after an action: ``DONE_ZH``'s text, else the duty's label."""
    if not done:
        return None
    if done in DONE_ZH:
        return DONE_ZH[done]
    row = duties.DUTIES.get(done)
    return None if row is None else f"已办理：{row.label_zh}"


@router.get(f"{CONSOLE}/cases/{{case_id}}")
def case_page(request: Request, case_id: CaseId, pages: PagesDep,
              done: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    user: User | None = None
    try:
        with pages.staff_tx(request, *duties.CASE_READ) as (session, user):
            case = visible_case(session, user, case_id)
            owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                     what="case_page")
            page = pages.render(request, "case.html", user=user,
                                csrf=pages.staff_csrf(request), done_zh=done_zh(done),
                                **case_context(pages, session, user, case))
        return page
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user, back=f"{CONSOLE}/")


@router.get(f"{CONSOLE}/cases/{{case_id}}/files/{{name:path}}")
def case_file(request: Request, case_id: CaseId, pages: PagesDep,
              name: Annotated[str, PathParam(max_length=200)]) -> Response:
    try:
        with pages.staff_tx(request, *duties.CASE_READ) as (session, user):
            case = visible_case(session, user, case_id)
            media_type, data = owners.package_file(case, name)
            if not (media_type.startswith("image/") or media_type == "video/mp4"):
                raise NotFoundError(f"{name}: not an image or clip", "文件不存在")
            owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                     what=name)
        return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})
    except ServiceError as exc:
        return pages.error_page(request, exc)


@router.get(f"{CONSOLE}/cases/{{case_id}}/plate-reads/{{n}}")
def case_plate_read(request: Request, case_id: CaseId, pages: PagesDep,
                    n: Annotated[int, PathParam(ge=0, le=999)]) -> Response:
    """A plate read's close-up, cut from the package photo it was read on."""
    try:
        with pages.staff_tx(request, *duties.CASE_READ) as (session, user):
            case = visible_case(session, user, case_id)
            data = plate_read_crop(case, n)
            owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                     what=f"plate_read/{n}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
    except ServiceError as exc:
        return pages.error_page(request, exc)


@router.get(f"{CONSOLE}/cases/{{case_id}}/package")
def case_package(request: Request, case_id: CaseId, pages: PagesDep) -> Response:
    try:
        with pages.staff_tx(request, *duties.EVIDENCE_READ) as (session, user):
            case = workflow.get_case(session, case_id)
            filename, data = owners.package_zip(case)
            owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                     what="package")
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{quote(filename)}"'})
    except ServiceError as exc:
        return pages.error_page(request, exc)
