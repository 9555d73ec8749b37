"""不予立案 after both reviews approved (``withdraw``): an approved case the record can no
longer support (a later no-penalty re-weighing, the register's device or site, the Art. 36
limitation; 行政处罚法 Art. 40) is refused ``notify`` and must not stay stuck. The decision
maker records 不予立案 with a reason: ``approved`` → ``rejected``, audited, with an
evidence-log event, then archived as any rejection (both backends)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import PASSWORD, Api, Sealed, new_case, new_user
from tests.service.test_review_gates import (
    NOTIFY_AT,
    POLICY,
    Crew,
    act,
    attach_no_penalty_reweigh,
    crew,
    own_device_and_site,
    register,
    state,
    to_approved,
    to_closed,
)
from tests.service.test_web_common import Web, csrf_of, version_of
from tests.service.test_web_pages import act as console_act
from tests.service.test_web_pages import case_state, login, web
from zhichao.service import accounts, duties, workflow
from zhichao.service.db import transaction
from zhichao.service.errors import InvalidInputError, PermissionDeniedError, WorkflowError
from zhichao.service.models import AuditEntry, Case, CaseEvent, EvidenceEvent, User

__all__ = ["crew", "web"]  # fixtures shared with the review-gate and console tests

REASON = "静态复检认定未超限，违法事实不清，依《行政处罚法》第四十条不予立案"


def _audit(s: Session, case_id: int) -> list[AuditEntry]:
    return list(s.scalars(select(AuditEntry).where(
        AuditEntry.object_type == "case", AuditEntry.object_id == str(case_id),
        AuditEntry.action == "case.transition").order_by(AuditEntry.id)))


def _stuck(sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> int:
    """The reviewer's scenario: approved, then a static re-weighing proposing no penalty."""
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    attach_no_penalty_reweigh(sessions, case_id)
    return case_id


def test_the_table_has_withdraw_from_approved_for_the_decision_maker() -> None:
    row = duties.duty("withdraw")
    assert row.from_states == ("approved",)
    assert row.roles == ("decision_maker",)
    assert row.barred == duties.DECIDING
    assert not row.confirmed
    assert "第四十条" in row.source_zh and "第五十四条" in row.source_zh
    assert [a for a, d in duties.DUTIES.items() if "approved" in d.from_states] == [
        "notify", "withdraw"]


def test_a_stuck_approved_case_is_withdrawn_then_archived(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = _stuck(sessions, sealed, crew)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, hearing_right=False, now=NOTIFY_AT)
    assert "静态复检" in refused.value.message_zh
    with transaction(sessions) as s:  # listed, and told what to do
        listed = [o for o in workflow.overdue_cases(s, now=NOTIFY_AT) if o.case_id == case_id]
        assert listed and "不予立案" in listed[0].what_zh, listed
        assert "须人工处理" not in listed[0].what_zh
        boss = s.get(User, crew.boss.id)
        case = s.get(Case, case_id)
        assert boss is not None and case is not None
        assert duties.may("withdraw", boss, case)

    for blank in ("", "  \n "):
        with pytest.raises(InvalidInputError) as no_reason:
            act(sessions, case_id, workflow.withdraw, crew.boss, reason=blank, now=NOTIFY_AT)
        assert no_reason.value.message_zh == "请填写理由"
    assert state(sessions, case_id) == "approved"

    act(sessions, case_id, workflow.withdraw, crew.boss, reason=REASON, policy=POLICY,
        now=NOTIFY_AT)
    assert state(sessions, case_id) == "rejected"
    with transaction(sessions) as s:
        last = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id)
                         .order_by(CaseEvent.id.desc())).first()
        assert last is not None
        assert (last.from_state, last.to_state, last.actor_id) == (
            "approved", "rejected", crew.boss.id)
        assert last.reason_zh == f"不予立案：{REASON}"
        entry = _audit(s, case_id)[-1]
        assert entry.detail["from"] == "approved" and entry.detail["to"] == "rejected"
        assert entry.detail["withdrawn"] is True
        assert entry.detail["reason"] == f"不予立案：{REASON}"
        assert any("静态复检" in b for b in entry.detail["blockers"]), entry.detail
        assert entry.actor.startswith(f"user:{crew.boss.id}:")
        event = s.scalars(select(EvidenceEvent).where(EvidenceEvent.case_id == case_id)
                          .order_by(EvidenceEvent.id.desc())).first()
        assert event is not None
        assert (event.event_type, event.outcome) == ("rejection", "rejected")
        assert event.reason_zh == f"不予立案：{REASON}"
        assert event.details["state"] == "rejected"
        assert not [o for o in workflow.overdue_cases(s, now=NOTIFY_AT)
                    if o.case_id == case_id]
    act(sessions, case_id, workflow.archive, crew.boss, now=NOTIFY_AT)
    assert state(sessions, case_id) == "archived"


def test_a_lapsed_certificate_in_the_register_is_withdrawn_too(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = register(sessions, own_device_and_site(
        sealed, cert_to="2025-05-01T00:00:00+08:00"), sealed)  # passage: 1 June 2025
    with transaction(sessions) as s:  # approved before the register showed the lapse
        case = s.get(Case, case_id)
        assert case is not None
        case.state = "approved"
        case.technical_reviewer_id, case.legal_reviewer_id = crew.tech.id, crew.legal.id
    with pytest.raises(WorkflowError, match="device or site"):
        act(sessions, case_id, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, hearing_right=False, now=NOTIFY_AT)
    act(sessions, case_id, workflow.withdraw, crew.boss, reason="采集时计量检定证书已失效",
        now=NOTIFY_AT)
    assert state(sessions, case_id) == "rejected"
    with transaction(sessions) as s:
        assert any("计量检定证书不在有效期内" in b
                   for b in _audit(s, case_id)[-1].detail["blockers"])


def test_withdraw_without_a_blocker_is_refused(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    """One person may not drop an approved case on free text alone: with nothing barring
    its notice, 不予立案 is refused (the way not to punish is notice, statements and a
    不予行政处罚 decision)."""
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, workflow.withdraw, crew.boss, reason="经复查号牌识别有误",
            now=NOTIFY_AT)
    assert "不予行政处罚决定" in refused.value.message_zh
    assert state(sessions, case_id) == "approved"


def test_the_reviewers_of_the_case_may_not_withdraw_it(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    tech_boss = new_user(sessions, "technical_reviewer", "decision_maker")
    legal_boss = new_user(sessions, "legal_reviewer", "decision_maker")
    case_id = new_case(sessions, sealed).id
    act(sessions, case_id, workflow.technical_review, tech_boss, approve=True)
    act(sessions, case_id, workflow.legal_review, legal_boss, approve=True)
    attach_no_penalty_reweigh(sessions, case_id)
    for user, part_zh in ((tech_boss, "技术审核人"), (legal_boss, "法制审核人")):
        with pytest.raises(PermissionDeniedError) as barred:
            act(sessions, case_id, workflow.withdraw, user, reason=REASON, now=NOTIFY_AT)
        assert part_zh in barred.value.message_zh and "不予立案" in barred.value.message_zh
        assert "职责分离" in barred.value.message_zh
    for user in (crew.tech, crew.legal):  # without the decision maker's role
        with pytest.raises(PermissionDeniedError):
            act(sessions, case_id, workflow.withdraw, user, reason=REASON, now=NOTIFY_AT)
    assert state(sessions, case_id) == "approved"


def test_withdraw_is_only_from_approved(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    fresh = new_case(sessions, sealed).id
    with pytest.raises(WorkflowError) as refused:
        act(sessions, fresh, workflow.withdraw, crew.boss, reason=REASON, now=NOTIFY_AT)
    assert "审核通过，待立案告知" in refused.value.message_zh
    closed = new_case(sessions, sealed).id
    to_approved(sessions, crew, closed)
    to_closed(sessions, crew, closed)
    with pytest.raises(WorkflowError):
        act(sessions, closed, workflow.withdraw, crew.boss, reason=REASON)
    assert (state(sessions, fresh), state(sessions, closed)) == (
        "technical_review", "statements_closed")


# ---- the JSON API ---------------------------------------------------------------------------

def _approved_over_api(api: Api) -> int:
    case = new_case(api.sessions, api.sealed)
    for role, action in (("technical_reviewer", "technical-review"),
                         ("legal_reviewer", "legal-review")):
        version = api.client.get(f"/api/v1/cases/{case.id}",
                                 headers=api.auth("auditor")).json()["version"]
        r = api.client.post(f"/api/v1/cases/{case.id}/{action}", headers=api.auth(role),
                            json={"approve": True, "expected_version": version})
        assert r.status_code == 200, r.text
    attach_no_penalty_reweigh(api.sessions, case.id)
    return case.id


def _post(api: Api, case_id: int, role: str, body: dict[str, Any]) -> Any:
    return api.client.post(f"/api/v1/cases/{case_id}/withdraw", headers=api.auth(role),
                           json=body)


def test_the_api_withdraws_with_reason_and_version(api: Api) -> None:
    case_id = _approved_over_api(api)
    detail = api.client.get(f"/api/v1/cases/{case_id}",
                            headers=api.auth("decision_maker")).json()
    assert any("静态复检" in b for b in detail["blockers_zh"]), detail["blockers_zh"]
    version = detail["version"]

    r = _post(api, case_id, "decision_maker", {"reason": REASON})
    assert r.status_code == 422, r.text
    assert r.json()["message_zh"] == "输入有误：请填写案件版本号"
    r = _post(api, case_id, "decision_maker", {"expected_version": version})
    assert r.status_code == 422, r.text
    assert r.json()["message_zh"] == "输入有误：请填写理由"
    r = _post(api, case_id, "decision_maker", {"reason": "   ", "expected_version": version})
    assert r.status_code == 422, r.text
    assert "理由" in r.json()["message_zh"]
    for role in ("technical_reviewer", "legal_reviewer", "auditor", "station_operator"):
        r = _post(api, case_id, role, {"reason": REASON, "expected_version": version})
        assert r.status_code == 403, (role, r.text)
        assert "角色" in r.json()["message_zh"]
    r = _post(api, case_id, "decision_maker", {"reason": REASON,
                                               "expected_version": version + 5})
    assert r.status_code == 409, r.text
    assert state(api.sessions, case_id) == "approved"

    r = _post(api, case_id, "decision_maker", {"reason": REASON, "expected_version": version})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "rejected"
    r = _post(api, case_id, "decision_maker", {"reason": REASON,
                                               "expected_version": r.json()["version"]})
    assert r.status_code == 409 and "审核通过，待立案告知" in r.json()["message_zh"], r.text
    r = api.client.post(f"/api/v1/cases/{case_id}/archive", headers=api.auth("legal_reviewer"),
                        json={"expected_version": api.client.get(
                            f"/api/v1/cases/{case_id}",
                            headers=api.auth("auditor")).json()["version"]})
    assert r.status_code == 200 and r.json()["state"] == "archived", r.text


def test_the_api_bars_the_cases_reviewer(api: Api) -> None:
    with transaction(api.sessions) as s:
        dual = accounts.create_user(
            s, username=f"wd{uuid.uuid4().hex[:8]}", password=PASSWORD,
            display_name_zh="法制审核兼决定", roles=["legal_reviewer", "decision_maker"])
        dual_name = dual.username
    token = api.client.post("/api/v1/auth/login", json={
        "username": dual_name, "password": PASSWORD}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    case = new_case(api.sessions, api.sealed)
    r = api.client.post(f"/api/v1/cases/{case.id}/technical-review",
                        headers=api.auth("technical_reviewer"),
                        json={"approve": True, "expected_version": case.version})
    assert r.status_code == 200, r.text
    r = api.client.post(f"/api/v1/cases/{case.id}/legal-review", headers=headers,
                        json={"approve": True, "expected_version": r.json()["version"]})
    assert r.status_code == 200, r.text
    r = api.client.post(f"/api/v1/cases/{case.id}/withdraw", headers=headers,
                        json={"reason": REASON, "expected_version": r.json()["version"]})
    assert r.status_code == 403, r.text
    assert "法制审核人" in r.json()["message_zh"] and "职责分离" in r.json()["message_zh"]
    assert state(api.sessions, case.id) == "approved"


def test_the_openapi_documents_withdraw_from_the_table(api: Api) -> None:
    op = api.client.get("/openapi.json").json()["paths"][
        "/api/v1/cases/{case_id}/withdraw"]["post"]
    row = duties.duty("withdraw")
    assert op["summary"] == row.label_zh
    assert op["x-roles"] == ["decision_maker"] and op["x-separation"] == list(duties.DECIDING)
    assert op["x-legal-source"] == row.source_zh and op["x-confirmed"] is False


# ---- the console ----------------------------------------------------------------------------

def test_the_console_offers_withdraw_with_the_blockers(web: Web) -> None:
    case_id = web.cases[2].id
    for role, action in (("technical_reviewer", "technical-review"),
                         ("legal_reviewer", "legal-review")):
        r = console_act(login(web, role), case_id, action, verdict="approve")
        assert getattr(r, "status_code", None) == 303
    attach_no_penalty_reweigh(web.sessions, case_id)
    assert case_state(web, case_id)[0] == "approved"

    legal = login(web, "legal_reviewer")  # the legal reviewer is not offered the form
    assert 'id="form-withdraw"' not in legal.get(f"/console/cases/{case_id}").text
    boss = login(web, "decision_maker")
    page = boss.get(f"/console/cases/{case_id}")
    assert 'id="form-withdraw"' in page.text and 'id="form-notify"' in page.text
    form = page.text.split('id="form-withdraw"', 1)[1].split("</form>", 1)[0]
    assert "静态复检" in form and 'name="reason"' in form and 'name="csrf_token"' in form
    state = case_state(web, case_id)
    r = boss.post(f"/console/cases/{case_id}/withdraw", follow_redirects=False, data={
        "expected_version": str(version_of(page.text)), "reason": REASON})
    assert r.status_code != 303 and case_state(web, case_id) == state  # no CSRF token
    r = boss.post(f"/console/cases/{case_id}/withdraw", follow_redirects=False, data={
        "csrf_token": csrf_of(page.text), "expected_version": str(version_of(page.text)),
        "reason": " "})
    assert r.status_code == 422 and "理由" in r.text
    assert case_state(web, case_id) == state
    r = boss.post(f"/console/cases/{case_id}/withdraw", follow_redirects=False, data={
        "csrf_token": csrf_of(page.text), "expected_version": str(version_of(page.text)),
        "reason": REASON})
    assert r.status_code == 303, r.text
    assert case_state(web, case_id)[0] == "rejected"
    done = boss.get(r.headers["location"])
    assert "不予立案" in done.text and 'id="form-archive"' in done.text
    assert 'id="form-withdraw"' not in done.text


def test_an_approved_case_without_a_plate_can_be_withdrawn(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    """A MANUAL_REVIEW case with no plate, approved by both reviews with reasons, is
    refused notice (没有号牌): that is a blocker, so 不予立案 is its way out (it was refused
    too: stuck for good)."""
    case = new_case(sessions, sealed, plate="", status="MANUAL_REVIEW")
    assert case.plate is None
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True,
        reason="号牌由人工从照片辨认")
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    with pytest.raises(WorkflowError):
        act(sessions, case.id, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, hearing_right=False, now=NOTIFY_AT)
    act(sessions, case.id, workflow.withdraw, crew.boss, reason="无号牌，无法确定当事人",
        policy=POLICY, now=NOTIFY_AT)
    assert state(sessions, case.id) == "rejected"
