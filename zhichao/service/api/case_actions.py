"""Every workflow step of a case, one POST each; roles, separation of duties and legal
source come from ``duties.DUTIES`` (route summary, description, ``x-roles``,
``x-separation``, ``x-legal-source``), and the workflow function checks them again on the
case itself, so the console and the CLI cannot differ from the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Path
from sqlalchemy.orm import Session

from zhichao.service import duties, procedure, workflow
from zhichao.service.api.cases import case_out
from zhichao.service.api.deps import API, CaseId, SessionDep, SettingsDep, staff_for
from zhichao.service.api.schemas import (
    STAFF_ERRORS,
    AnswerIn,
    CaseOut,
    DecisionIn,
    HearingIn,
    NoticeServiceIn,
    NotifyIn,
    OverrideIn,
    ReviewIn,
    RevokeIn,
    ServeIn,
    VersionIn,
    WaiveIn,
    WithdrawIn,
)
from zhichao.service.models import Case, User

router = APIRouter(prefix=API, tags=["case actions"], responses=STAFF_ERRORS)
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
StatementId = Annotated[int, Path(ge=1, le=2**31 - 1, description="陈述申辩编号")]


def _action(action: str, path: str | None = None) -> Callable[[F], F]:
    """``POST /cases/{case_id}/<action>`` documented from the duties table."""
    return router.post(f"/cases/{{case_id}}/{path or action}",
                       summary=duties.duty(action).label_zh,
                       description=duties.description_zh(action),
                       openapi_extra=duties.openapi_extra(action))


def _run(session: Session, case_id: int,
         step: Callable[Concatenate[Session, Case, User, P], object], user: User,
         *args: P.args, **kwargs: P.kwargs) -> CaseOut:
    """Run the workflow ``step`` on the case as ``user`` and answer the case as it now is."""
    case = workflow.get_case(session, case_id)
    step(session, case, user, *args, **kwargs)
    session.flush()  # the new version is what the client sends back next time
    return case_out(case)


@_action("manual-override")
def manual_override(case_id: CaseId, body: OverrideIn, session: SessionDep,
                    user: Annotated[User, Depends(staff_for("manual-override"))]) -> CaseOut:
    return _run(session, case_id, workflow.mark_manual_override, user, reason=body.reason,
                expected_version=body.expected_version)


@_action("technical-review")
def technical_review(case_id: CaseId, body: ReviewIn, session: SessionDep,
                     user: Annotated[User, Depends(staff_for("technical-review"))]
                     ) -> CaseOut:
    return _run(session, case_id, workflow.technical_review, user, approve=body.approve,
                reason=body.reason, expected_version=body.expected_version)


@_action("legal-review")
def legal_review(case_id: CaseId, body: ReviewIn, session: SessionDep,
                 user: Annotated[User, Depends(staff_for("legal-review"))]) -> CaseOut:
    return _run(session, case_id, workflow.legal_review, user, approve=body.approve,
                reason=body.reason, expected_version=body.expected_version)


@_action("notify")
def notify(case_id: CaseId, body: NotifyIn, session: SessionDep, settings: SettingsDep,
           user: Annotated[User, Depends(staff_for("notify"))]) -> CaseOut:
    return _run(session, case_id, workflow.open_and_notify, user, channel=body.channel,
                policy=settings.deadlines, hearing_right=body.hearing_right,
                limitation_note=body.limitation_note, expected_version=body.expected_version)


@_action("withdraw")
def withdraw(case_id: CaseId, body: WithdrawIn, session: SessionDep, settings: SettingsDep,
             user: Annotated[User, Depends(staff_for("withdraw"))]) -> CaseOut:
    return _run(session, case_id, workflow.withdraw, user, reason=body.reason,
                policy=settings.deadlines, expected_version=body.expected_version)


@_action("serve-notice")
def serve_notice(case_id: CaseId, body: NoticeServiceIn, session: SessionDep,
                 settings: SettingsDep,
                 user: Annotated[User, Depends(staff_for("serve-notice"))]) -> CaseOut:
    return _run(session, case_id, procedure.serve_notice, user,
                delivered_utc=body.delivered_utc, proof=body.proof, policy=settings.deadlines,
                channel=body.channel, expected_version=body.expected_version)


@_action("waive")
def waive(case_id: CaseId, body: WaiveIn, session: SessionDep,
          user: Annotated[User, Depends(staff_for("waive"))]) -> CaseOut:
    return _run(session, case_id, procedure.waive, user, scope=body.scope,
                record=body.record, document_ref=body.document_ref,
                expected_version=body.expected_version)


@_action("answer", "statements/{statement_id}/answer")
def answer(case_id: CaseId, statement_id: StatementId, body: AnswerIn, session: SessionDep,
           user: Annotated[User, Depends(staff_for("answer"))]) -> CaseOut:
    return _run(session, case_id, workflow.answer_statement, user, statement_id=statement_id,
                response=body.response)


@_action("hearing")
def hearing(case_id: CaseId, body: HearingIn, session: SessionDep,
            user: Annotated[User, Depends(staff_for("hearing"))]) -> CaseOut:
    return _run(session, case_id, workflow.record_hearing, user, held_utc=body.held_utc,
                summary=body.summary)


@_action("close-statements")
def close_statements(case_id: CaseId, body: VersionIn, session: SessionDep,
                     user: Annotated[User, Depends(staff_for("close-statements"))]
                     ) -> CaseOut:
    return _run(session, case_id, workflow.close_statements, user,
                expected_version=body.expected_version)


@_action("decision")
def decision(case_id: CaseId, body: DecisionIn, session: SessionDep, settings: SettingsDep,
             user: Annotated[User, Depends(staff_for("decision"))]) -> CaseOut:
    return _run(session, case_id, workflow.decide, user, outcome=body.outcome,
                fine_yuan=body.fine_yuan, reasons=body.reasons,
                limitation_note=body.limitation_note,
                extension_reference=body.extension_reference,
                expected_version=body.expected_version, policy=settings.deadlines)


@_action("serve")
def serve(case_id: CaseId, body: ServeIn, session: SessionDep, settings: SettingsDep,
          user: Annotated[User, Depends(staff_for("serve"))]) -> CaseOut:
    return _run(session, case_id, workflow.serve, user, channel=body.channel,
                served_utc=body.served_utc, expected_version=body.expected_version,
                policy=settings.deadlines)


@_action("publish")
def publish(case_id: CaseId, body: VersionIn, session: SessionDep,
            user: Annotated[User, Depends(staff_for("publish"))]) -> CaseOut:
    return _run(session, case_id, workflow.publish, user, expected_version=body.expected_version)


@_action("revoke")
def revoke(case_id: CaseId, body: RevokeIn, session: SessionDep, settings: SettingsDep,
           user: Annotated[User, Depends(staff_for("revoke"))]) -> CaseOut:
    return _run(session, case_id, procedure.revoke, user, kind=body.kind,
                reason=body.reason, policy=settings.deadlines,
                expected_version=body.expected_version)


@_action("archive")
def archive(case_id: CaseId, body: VersionIn, session: SessionDep,
            user: Annotated[User, Depends(staff_for("archive"))]) -> CaseOut:
    return _run(session, case_id, workflow.archive, user, expected_version=body.expected_version)
