"""The console's 抄告 outbox (62号令 Art. 44): copy notices and their withdrawals (撤回抄告)
listed by state, overdue first; each downloaded as the API's JSON export and PDF, and
recorded as sent (how, and its 文号 or 邮件单号) and acknowledged.

Roles: ``duties.COPY_NOTICES``, as for the API. Routes are thin: every answer comes from
``copy_notices`` (the outbox, ``export_pdf``, ``mark``) or the API's
``documents.copy_notice_out``; every POST is CSRF-checked and runs in one transaction.
The outbox rows carry no version: recording a sending or an acknowledgement twice (a
stale form, two officers at once) is refused by ``copy_notices.mark`` (409, zh-CN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import accounts, copy_notices, duties
from zhichao.service.api.documents import copy_notice_out
from zhichao.service.errors import InvalidInputError, ServiceError
from zhichao.service.models import Case, CopyNotice, User
from zhichao.service.web.pages import CONSOLE, Csrf, PagesDep
from zhichao.service.workdays import china_date

router = APIRouter(include_in_schema=False)
OUTBOX = f"{CONSOLE}/copy-notices"
CopyId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
KINDS_ZH = {"copy": "抄告", "withdrawal": "撤回抄告"}
DONE_ZH = {"sent": "已记录发送", "acknowledged": "已记录对方确认收到（回执）"}


@dataclass(frozen=True)
class Row:
    """One outbox row as the page shows it."""

    copy: CopyNotice
    case: Case
    state: str  # a key of copy_notices.STATES_ZH
    overdue: bool


def outbox_rows(session: Session, wanted: str | None, case_id: int | None, today: date,
                offset: int, limit: int) -> list[Row]:
    """A page of the outbox (``copy_notices.outbox``), one state or all, optionally one
    case's: overdue ones first, then by due date."""
    copies = copy_notices.outbox(session, wanted, case_id=case_id, overdue_first_on=today,
                                 offset=offset, limit=limit)
    cases = {c.id: c for c in session.scalars(
        select(Case).where(Case.id.in_({c.case_id for c in copies})))}
    rows = []
    for copy in copies:
        rows.append(Row(copy, cases[copy.case_id], copy_notices.state(copy),
                        copy_notices.is_overdue(copy, today)))
    return rows


def _wanted(state: str | None) -> str | None:
    if not state:
        return None
    if state not in copy_notices.STATES_ZH:
        raise InvalidInputError(f"state {state!r} unknown", "抄告状态无效")
    return state


def _case_id(text: str | None) -> int | None:
    """The case filter as typed (blank: every case)."""
    text = (text or "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) < 2**31:
        raise InvalidInputError(f"case_id {text!r}", "案件编号应为正整数")
    return int(text)


@router.get(OUTBOX)
def outbox(request: Request, pages: PagesDep,
           state: Annotated[str | None, Query(max_length=16)] = None,
           case_id: Annotated[str | None, Query(max_length=10)] = None,
           done: Annotated[str | None, Query(max_length=16)] = None,
           offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    user: User | None = None
    size = pages.web.queue_page_size
    try:
        with pages.staff_tx(request, *duties.COPY_NOTICES) as (session, user):
            today = china_date(utc_now())
            rows = outbox_rows(session, _wanted(state), _case_id(case_id), today, offset,
                               size + 1)
            page = pages.render(
                request, "copy_notices.html", user=user, csrf=pages.staff_csrf(request),
                rows=rows[:size], more=len(rows) > size, offset=offset, page_size=size,
                today=today, f={"state": state or "", "case_id": (case_id or "").strip()},
                copy_states_zh=copy_notices.STATES_ZH, kinds_zh=KINDS_ZH,
                sent_channels_zh=copy_notices.SENT_CHANNELS_ZH,
                reference_max=copy_notices.REFERENCE_MAX_CHARS,
                done_zh=DONE_ZH.get(done or ""))
        return page
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user, back=OUTBOX)


@router.get(f"{OUTBOX}/{{copy_id}}/json")
def outbox_json(request: Request, pages: PagesDep, copy_id: CopyId) -> Response:
    """The API's JSON export (``GET /api/v1/copy-notices/{id}``) as a file."""
    try:
        with pages.staff_tx(request, *duties.COPY_NOTICES) as (session, _user):
            data = copy_notice_out(copy_notices.get(session, copy_id)).model_dump(mode="json")
    except ServiceError as exc:
        return pages.error_page(request, exc, back=OUTBOX)
    body = json.dumps(data, ensure_ascii=False, indent=2).encode()
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="copy-notice-{copy_id}.json"'})


@router.get(f"{OUTBOX}/{{copy_id}}/pdf")
def outbox_pdf(request: Request, pages: PagesDep, copy_id: CopyId) -> Response:
    """The letter (``copy_notices.export_pdf``, as the API's PDF); none for a cancelled copy."""
    try:
        with pages.staff_tx(request, *duties.COPY_NOTICES) as (session, _user):
            data = copy_notices.export_pdf(copy_notices.get(session, copy_id))
    except ServiceError as exc:
        return pages.error_page(request, exc, back=OUTBOX)
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="copy-notice-{copy_id}.pdf"'})


def _record(request: Request, pages: PagesDep, copy_id: int, what: str,
            csrf_given: str | None, channel: str | None = None,
            reference: str | None = None) -> Response:
    user: User | None = None
    try:
        pages.check_staff_csrf(request, csrf_given)
        if what == "sent" and not (channel or "").strip():
            raise InvalidInputError("channel missing", "请选择发送方式")
        with pages.staff_tx(request, *duties.COPY_NOTICES) as (session, user):
            copy_notices.mark(session, copy_notices.get(session, copy_id), what=what,
                              actor=accounts.user_label(user), now=utc_now(),
                              channel=channel, reference=reference)
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user, back=OUTBOX)
    return RedirectResponse(f"{OUTBOX}?done={what}#copy-{copy_id}", status_code=303)


@router.post(f"{OUTBOX}/{{copy_id}}/sent")
def outbox_sent(request: Request, pages: PagesDep, copy_id: CopyId,
                channel: Annotated[str | None, Form(max_length=32)] = None,
                reference: Annotated[str | None, Form(max_length=200)] = None,
                csrf_token: Csrf = None) -> Response:
    return _record(request, pages, copy_id, "sent", csrf_token, channel, reference)


@router.post(f"{OUTBOX}/{{copy_id}}/acknowledged")
def outbox_acknowledged(request: Request, pages: PagesDep, copy_id: CopyId,
                        csrf_token: Csrf = None) -> Response:
    return _record(request, pages, copy_id, "acknowledged", csrf_token)
