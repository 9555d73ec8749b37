"""The review queue, a case's detail and its sealed package, overdue cases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import accounts, duties, legal_checks, owners, workflow
from zhichao.service.api.deps import (
    API,
    CaseId,
    CaseReader,
    EvidenceReader,
    SessionDep,
    SettingsDep,
    visible_case,
)
from zhichao.service.api.schemas import (
    STAFF_ERRORS,
    CaseDetailOut,
    CaseOut,
    CasesOut,
    OverdueListOut,
    OverdueOut,
    clean_text,
    media_answer,
)
from zhichao.service.errors import InvalidInputError
from zhichao.service.models import Case, Decision, Review, Statement
from zhichao.service.workdays import DeadlinePolicy, china_date

router = APIRouter(prefix=API, tags=["cases"], responses=STAFF_ERRORS)


def _iso(value: Any) -> Any:
    return None if value is None else value.isoformat()


def case_fields(case: Case) -> dict[str, Any]:
    return {
        "id": case.id, "version": case.version, "state": case.state,
        "state_zh": workflow.STATES_ZH[case.state], "package_id": case.package_id,
        "manifest_sha256": case.manifest_sha256, "station_id": case.station_id,
        "site_id": case.site_id, "time_utc": _iso(case.time_utc), "plate": case.plate,
        "plate_colour": case.plate_colour, "eligibility_status": case.eligibility_status,
        "proposed_outcome": case.proposed_outcome,
        "proposed_fine_yuan": case.proposed_fine_yuan, "hearing_right": case.hearing_right,
        "legal_basis_zh": case.legal_basis_zh, "manual_override": case.manual_override,
        "manual_override_reason": case.manual_override_reason,
        "technical_reviewer_id": case.technical_reviewer_id,
        "legal_reviewer_id": case.legal_reviewer_id,
        "hearing_requested": case.hearing_requested,
        "hearing_held_utc": _iso(case.hearing_held_utc), "opened_utc": _iso(case.opened_utc),
        "statement_due": _iso(case.statement_due),
        "hearing_request_due": _iso(case.hearing_request_due),
        "decision_due": _iso(case.decision_due), "serve_due": _iso(case.serve_due),
        "published_utc": _iso(case.published_utc), "publish_due": _iso(case.publish_due),
        "statement_waived_utc": _iso(case.statement_waived_utc),
        "hearing_waived_utc": _iso(case.hearing_waived_utc),
        "publication_withdrawn_utc": _iso(case.publication_withdrawn_utc),
        "withdrawal_reason_zh": case.withdrawal_reason_zh,
    }


def case_out(case: Case) -> CaseOut:
    return CaseOut.model_validate(case_fields(case))


def case_detail(session: Session, case: Case, *,
                policy: DeadlinePolicy | None = None) -> CaseDetailOut:
    out = case_fields(case)
    out["blockers_zh"] = legal_checks.blockers_zh(
        session, case, policy=policy or DeadlinePolicy(), today=china_date(utc_now()))
    out["events"] = [{"from": e.from_state, "to": e.to_state, "actor": e.actor_label,
                      "time_utc": e.time_utc.isoformat(), "reason_zh": e.reason_zh}
                     for e in case.events]
    out["reviews"] = [{"stage": r.stage, "reviewer_id": r.reviewer_id, "approved": r.approved,
                       "reason_zh": r.reason_zh, "time_utc": r.time_utc.isoformat()}
                      for r in session.scalars(select(Review).where(Review.case_id == case.id)
                                               .order_by(Review.id))]
    out["statements"] = [
        {"id": s.id, "kind": s.kind, "text_zh": s.text_zh, "filed_utc": s.filed_utc.isoformat(),
         "response_zh": s.response_zh,
         "attachments": [{"filename": a.filename, "media_type": a.media_type,
                          "size_bytes": a.size_bytes, "sha256": a.sha256}
                         for a in s.attachments]}
        for s in session.scalars(select(Statement).where(Statement.case_id == case.id)
                                 .order_by(Statement.id))]
    decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).first()
    out["decision"] = None if decision is None else {
        "outcome": decision.outcome, "fine_yuan": decision.fine_yuan,
        "reasons_zh": decision.reasons_zh, "decided_by": decision.decided_by,
        "decided_utc": decision.decided_utc.isoformat(),
        "served_utc": _iso(decision.served_utc)}
    return CaseDetailOut.model_validate(out)


def zip_response(filename: str, data: bytes) -> Response:
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


ZIP = media_answer("封存证据包（zip）", "application/zip")


@router.get("/cases", summary="案件列表（审核队列）",
            openapi_extra=duties.openapi_extra(roles=duties.CASE_READ))
def list_cases(session: SessionDep, user: CaseReader,
               state: Annotated[str | None, Query(max_length=32)] = None,
               site_id: Annotated[str | None, Query(max_length=64)] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100,
               offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> CasesOut:
    if state is not None and state not in workflow.STATES_ZH:
        raise InvalidInputError(f"state {state!r} unknown", "案件状态无效")
    stmt = select(Case).order_by(Case.id).limit(limit).offset(offset)
    if state is not None:
        stmt = stmt.where(Case.state == state)
    if site_id is not None:
        stmt = stmt.where(Case.site_id == clean_text(site_id, "site_id"))
    if user.role_set == {"station_operator"}:
        stmt = stmt.where(Case.station_id == user.station_id)
    return CasesOut(cases=[case_out(c) for c in session.scalars(stmt)])


@router.get("/cases/overdue", summary="逾期案件",
            openapi_extra=duties.openapi_extra(roles=duties.EVIDENCE_READ))
def overdue(session: SessionDep, user: EvidenceReader) -> OverdueListOut:
    del user
    return OverdueListOut(overdue=[
        OverdueOut(case_id=o.case_id, state=o.state, due=o.due.isoformat(), what_zh=o.what_zh)
        for o in workflow.overdue_cases(session)])


@router.get("/cases/{case_id}", summary="案件详情",
            openapi_extra=duties.openapi_extra(roles=duties.CASE_READ))
def get_case(case_id: CaseId, session: SessionDep, user: CaseReader,
             settings: SettingsDep) -> CaseDetailOut:
    case = visible_case(session, user, case_id)
    owners.log_evidence_view(session, actor=accounts.user_label(user), case=case, what="case")
    return case_detail(session, case, policy=settings.deadlines)


@router.get("/cases/{case_id}/package", summary="下载证据包",
            openapi_extra=duties.openapi_extra(roles=duties.EVIDENCE_READ),
            response_class=Response, responses=ZIP)
def get_package(case_id: CaseId, session: SessionDep, user: EvidenceReader) -> Response:
    case = workflow.get_case(session, case_id)
    name, data = owners.package_zip(case)
    owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                             what="package")
    return zip_response(name, data)
