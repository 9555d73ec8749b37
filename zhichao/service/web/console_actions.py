"""The console's case actions: one form POST per workflow step, CSRF-checked. Roles come
from ``duties.DUTIES``; the workflow function checks roles and separation of duties on the
case, exactly as for the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from zhichao.service import duties, procedure, workflow
from zhichao.service.errors import InvalidInputError, ServiceError
from zhichao.service.inputs import parse_beijing_time
from zhichao.service.models import Case, User
from zhichao.service.web.pages import (
    CONSOLE,
    CaseId,
    Csrf,
    PagesDep,
    StatementId,
    Text2000,
    Ver,
)

router = APIRouter(include_in_schema=False)
Step = Callable[[Session, Case, User], Any]


def act(request: Request, pages: PagesDep, case_id: int, action: str,
        csrf_given: str | None, do: Step) -> Response:
    """Check CSRF and the action's roles, run ``do`` in one transaction, go back to the
    case page (with the outcome, or the zh-CN reason on an error page)."""
    user: User | None = None
    back = f"{CONSOLE}/cases/{case_id}"
    try:
        pages.check_staff_csrf(request, csrf_given)
        with pages.staff_tx(request, *duties.duty(action).roles) as (session, user):
            do(session, workflow.get_case(session, case_id), user)
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user, back=back)
    return RedirectResponse(f"{back}?done={action}", status_code=303)


def _approve(value: str) -> bool:
    if value not in ("approve", "reject"):
        raise InvalidInputError(f"decision {value!r}", "请选择“通过”或“不通过”")
    return value == "approve"


Verdict = Annotated[str, Form(max_length=10)]
Channel = Annotated[str, Form(max_length=32)]
Text2000Required = Annotated[str, Form(max_length=2000)]


@router.post(f"{CONSOLE}/cases/{{case_id}}/technical-review")
def technical_review(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
                     verdict: Verdict, reason: Text2000 = None,
                     csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "technical-review", csrf_token,
               lambda s, c, u: workflow.technical_review(
                   s, c, u, approve=_approve(verdict), reason=reason,
                   expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/legal-review")
def legal_review(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
                 verdict: Verdict, reason: Text2000 = None, csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "legal-review", csrf_token,
               lambda s, c, u: workflow.legal_review(
                   s, c, u, approve=_approve(verdict), reason=reason,
                   expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/manual-override")
def manual_override(request: Request, pages: PagesDep, case_id: CaseId,
                    expected_version: Ver, reason: Text2000Required,
                    csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "manual-override", csrf_token,
               lambda s, c, u: workflow.mark_manual_override(
                   s, c, u, reason=reason, expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/notify")
def notify(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
           channel: Channel, hearing_right: Annotated[str | None, Form(max_length=3)] = None,
           limitation_note: Text2000 = None, csrf_token: Csrf = None) -> Response:
    right = {"yes": True, "no": False}.get(hearing_right or "")
    return act(request, pages, case_id, "notify", csrf_token,
               lambda s, c, u: workflow.open_and_notify(
                   s, c, u, channel=channel, policy=pages.settings.deadlines,
                   hearing_right=right, limitation_note=limitation_note,
                   expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/withdraw")
def withdraw(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
             reason: Text2000Required, csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "withdraw", csrf_token,
               lambda s, c, u: workflow.withdraw(s, c, u, reason=reason,
                                                 policy=pages.settings.deadlines,
                                                 expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/serve-notice")
def serve_notice(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
                 delivered: Annotated[str, Form(max_length=32)],
                 proof: Annotated[str, Form(max_length=500)],
                 channel: Annotated[str | None, Form(max_length=32)] = None,
                 csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "serve-notice", csrf_token,
               lambda s, c, u: procedure.serve_notice(
                   s, c, u, delivered_utc=parse_beijing_time(delivered, "delivered"), proof=proof,
                   policy=pages.settings.deadlines, channel=channel or None,
                   expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/waive")
def waive(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
          scope: Annotated[str, Form(max_length=16)], record: Text2000Required,
          document_ref: Annotated[str, Form(max_length=200)], csrf_token: Csrf = None
          ) -> Response:
    return act(request, pages, case_id, "waive", csrf_token,
               lambda s, c, u: procedure.waive(s, c, u, scope=scope, record=record,
                                               document_ref=document_ref,
                                               expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/revoke")
def revoke(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
           kind: Annotated[str, Form(max_length=16)], reason: Text2000Required,
           csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "revoke", csrf_token,
               lambda s, c, u: procedure.revoke(s, c, u, kind=kind, reason=reason,
                                                policy=pages.settings.deadlines,
                                                expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/statements/{{statement_id}}/answer")
def answer(request: Request, pages: PagesDep, case_id: CaseId, statement_id: StatementId,
           response: Text2000Required, csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "answer", csrf_token,
               lambda s, c, u: workflow.answer_statement(
                   s, c, u, statement_id=statement_id, response=response))


@router.post(f"{CONSOLE}/cases/{{case_id}}/hearing")
def hearing(request: Request, pages: PagesDep, case_id: CaseId,
            held_utc: Annotated[str, Form(max_length=32)], summary: Text2000Required,
            csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "hearing", csrf_token,
               lambda s, c, u: workflow.record_hearing(
                   s, c, u, held_utc=parse_beijing_time(held_utc, "held_utc"), summary=summary))


@router.post(f"{CONSOLE}/cases/{{case_id}}/close-statements")
def close_statements(request: Request, pages: PagesDep, case_id: CaseId,
                     expected_version: Ver, csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "close-statements", csrf_token,
               lambda s, c, u: workflow.close_statements(
                   s, c, u, expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/decision")
def decision(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
             outcome: Annotated[str, Form(max_length=16)],
             fine_yuan: Annotated[int, Form(ge=0, le=10_000_000)],
             reasons: Text2000Required, limitation_note: Text2000 = None,
             extension_reference: Annotated[str | None, Form(max_length=500)] = None,
             csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "decision", csrf_token,
               lambda s, c, u: workflow.decide(
                   s, c, u, outcome=outcome, fine_yuan=fine_yuan, reasons=reasons,
                   limitation_note=limitation_note, extension_reference=extension_reference,
                   expected_version=expected_version, policy=pages.settings.deadlines))


@router.post(f"{CONSOLE}/cases/{{case_id}}/serve")
def serve(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
          channel: Channel, csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "serve", csrf_token,
               lambda s, c, u: workflow.serve(s, c, u, channel=channel,
                                              expected_version=expected_version,
                                              policy=pages.settings.deadlines))


@router.post(f"{CONSOLE}/cases/{{case_id}}/publish")
def publish(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
            csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "publish", csrf_token,
               lambda s, c, u: workflow.publish(s, c, u, expected_version=expected_version))


@router.post(f"{CONSOLE}/cases/{{case_id}}/archive")
def archive(request: Request, pages: PagesDep, case_id: CaseId, expected_version: Ver,
            csrf_token: Csrf = None) -> Response:
    return act(request, pages, case_id, "archive", csrf_token,
               lambda s, c, u: workflow.archive(s, c, u, expected_version=expected_version))
