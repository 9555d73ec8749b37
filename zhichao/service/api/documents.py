"""The served documents and the 抄告 outbox: the notice and decision as PDFs made from the
recorded text (``notices.text_pdf``), copy notices and their withdrawals (撤回抄告) as JSON
and PDF with their sent and acknowledged times, and the retention run."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from sqlalchemy import select

from zhichao.common import utc_now
from zhichao.service import accounts, copy_notices, duties, notices, owners, retention, workflow
from zhichao.service.api.deps import (
    API,
    CaseId,
    EvidenceReader,
    SessionDep,
    SettingsDep,
    staff_with,
)
from zhichao.service.api.schemas import (
    STAFF_ERRORS,
    CopyNoticeOut,
    CopyNoticesOut,
    CopySentIn,
    RetentionOut,
    media_answer,
)
from zhichao.service.errors import NotFoundError
from zhichao.service.models import CopyNotice, Decision, Notice, User

router = APIRouter(prefix=API, tags=["documents"], responses=STAFF_ERRORS)
PDF = media_answer("PDF（中文，时间为北京时间）", "application/pdf")
CopyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="抄告编号")]
OutboxState = Annotated[Literal["pending", "sent", "acknowledged", "cancelled"] | None, Query(
    description="只列出此状态：pending（待发送）| sent | acknowledged | cancelled（已作废）")]
CopyClerk = Annotated[User, Depends(staff_with(*duties.COPY_NOTICES))]
RetentionAdmin = Annotated[User, Depends(staff_with(*duties.RETENTION_RUN))]


def _pdf(name: str, data: bytes) -> Response:
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/cases/{case_id}/notice.pdf", summary="违法行为通知书（送达文本）",
            openapi_extra=duties.openapi_extra(roles=duties.EVIDENCE_READ),
            response_class=Response, responses=PDF)
def notice_pdf(case_id: CaseId, session: SessionDep, user: EvidenceReader) -> Response:
    case = workflow.get_case(session, case_id)
    notice = session.scalars(select(Notice).where(Notice.case_id == case.id)
                             .order_by(Notice.id.desc())).first()
    if notice is None:
        raise NotFoundError(f"case {case_id} has no notice", "本案尚未告知")
    owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                             what="notice")
    return _pdf(f"notice-{case.id}.pdf", notices.text_pdf(notices.NOTICE_TITLE_ZH,
                                                          notice.text_zh))


@router.get("/cases/{case_id}/decision.pdf", summary="行政处罚决定书（送达文本）",
            openapi_extra=duties.openapi_extra(roles=duties.EVIDENCE_READ),
            response_class=Response, responses=PDF)
def decision_pdf(case_id: CaseId, session: SessionDep, user: EvidenceReader) -> Response:
    case = workflow.get_case(session, case_id)
    decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).first()
    if decision is None or not decision.text_zh:
        raise NotFoundError(f"case {case_id} has no decision text", "本案尚无决定书")
    owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                             what="decision")
    return _pdf(f"decision-{case.id}.pdf", notices.text_pdf(notices.DECISION_TITLE_ZH,
                                                            decision.text_zh))


def copy_notice_out(copy: CopyNotice) -> CopyNoticeOut:
    """The JSON export of one copy notice (the API's answer and the console's download)."""
    return CopyNoticeOut.model_validate(copy_notices.export_json(copy))



@router.get("/copy-notices", summary="抄告发件箱（含撤回抄告）",
            openapi_extra=duties.openapi_extra(roles=duties.COPY_NOTICES))
def list_copy_notices(session: SessionDep, user: CopyClerk,
                      state: OutboxState = None) -> CopyNoticesOut:
    del user
    return CopyNoticesOut(copy_notices=[copy_notice_out(c)
                                        for c in copy_notices.outbox(session, state)])


@router.get("/copy-notices/{copy_id}", summary="抄告（JSON 导出）",
            openapi_extra=duties.openapi_extra(roles=duties.COPY_NOTICES))
def get_copy_notice(copy_id: CopyId, session: SessionDep, user: CopyClerk) -> CopyNoticeOut:
    del user
    return copy_notice_out(copy_notices.get(session, copy_id))


@router.get("/copy-notices/{copy_id}/pdf", summary="抄告函或撤回抄告函（PDF；已作废的抄告无）",
            openapi_extra=duties.openapi_extra(roles=duties.COPY_NOTICES),
            response_class=Response, responses=PDF)
def copy_notice_pdf(copy_id: CopyId, session: SessionDep, user: CopyClerk) -> Response:
    del user
    copy = copy_notices.get(session, copy_id)
    return _pdf(f"copy-notice-{copy.id}.pdf", copy_notices.export_pdf(copy))


@router.post("/copy-notices/{copy_id}/sent", summary="记录抄告已发送",
             openapi_extra=duties.openapi_extra(roles=duties.COPY_NOTICES))
def copy_notice_sent(copy_id: CopyId, session: SessionDep, user: CopyClerk,
                     body: CopySentIn | None = None) -> CopyNoticeOut:
    sent = body or CopySentIn()
    copy = copy_notices.mark(session, copy_notices.get(session, copy_id), what="sent",
                             actor=accounts.user_label(user), now=utc_now(),
                             channel=sent.channel, reference=sent.reference)
    return copy_notice_out(copy)


@router.post("/copy-notices/{copy_id}/acknowledged", summary="记录抄告已获回执",
             openapi_extra=duties.openapi_extra(roles=duties.COPY_NOTICES))
def copy_notice_acknowledged(copy_id: CopyId, session: SessionDep,
                             user: CopyClerk) -> CopyNoticeOut:
    copy = copy_notices.mark(session, copy_notices.get(session, copy_id),
                             what="acknowledged", actor=accounts.user_label(user),
                             now=utc_now())
    return copy_notice_out(copy)


@router.post("/retention/run", summary="删除超过保存期限的非案件过车号牌",
             openapi_extra=duties.openapi_extra(roles=duties.RETENTION_RUN))
def run_retention(session: SessionDep, settings: SettingsDep,
                  user: RetentionAdmin) -> RetentionOut:
    days = settings.passage_plate_retention_days
    removed = retention.remove_expired_plates(
        session, retention_days=days, actor=accounts.user_label(user),
        row_retention_days=settings.passage_row_retention_days)
    return RetentionOut(removed=removed, retention_days=days)
