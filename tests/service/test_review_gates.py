"""What the center checks itself before a case goes on (review issue of 2026-12): the
device's certificate and the site's publication from its own register, a later static
re-weighing, a waiver only after service and with the party's record, the limitation
period (行政处罚法 Art. 36) and the decision period (Art. 60), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import TEST_POLICY, Api, Sealed, new_case, utc, variant
from tests.service.test_workflow import Crew, act, crew
from zhichao.service import ingest, procedure, reweigh, workflow
from zhichao.service.api.cases import case_detail
from zhichao.service.db import transaction
from zhichao.service.errors import DeadlineError, InvalidInputError, WorkflowError
from zhichao.service.models import AuditEntry, Case, Site
from zhichao.service.workdays import DeadlinePolicy

POLICY = TEST_POLICY
NOTIFY_AT = utc(2026, 2, 13, 2)  # decision due 14 May 2026 (Art. 60: 90 days)
AFTER = utc(2026, 3, 9, 2)


__all__ = ["Crew", "act", "crew"]  # the workflow tests' crew, shared with test_withdraw_approved


def state(sessions: sessionmaker[Session], case_id: int) -> str:
    with transaction(sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        return case.state


def register(sessions: sessionmaker[Session], manifest: dict[str, Any],
             sealed: Sealed, now: datetime | None = None) -> int:
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    with transaction(sessions) as s:
        case = ingest.register_ingested_package(s, manifest, sealed.directory,
                                                manifest_sha256=digest, now=now)
        assert isinstance(case, Case)
        return case.id


def own_device_and_site(sealed: Sealed, *, cert_to: str | None = None,
                        published: str | None = "keep") -> dict[str, Any]:
    """The sealed manifest (status ENFORCEABLE, as a station that lowered the gate's
    severities would seal it) on a device and site of its own, so the center's register
    holds exactly these facts."""
    manifest, _ = variant(sealed)
    facts = manifest["case"]
    tag = uuid.uuid4().hex[:8]
    facts["device"]["device_id"] = f"WIM-{tag}"
    facts["site"]["site_id"] = facts["vehicle"]["site_id"] = f"ZJ-{tag}"
    if cert_to is not None:
        facts["device"]["certificate_valid_to"] = cert_to
    if published != "keep":
        facts["site"]["published_utc"] = published
    return manifest


def to_approved(sessions: sessionmaker[Session], crew: Crew, case_id: int) -> None:
    act(sessions, case_id, workflow.technical_review, crew.tech, approve=True)
    act(sessions, case_id, workflow.legal_review, crew.legal, approve=True)


def to_closed(sessions: sessionmaker[Session], crew: Crew, case_id: int,
              policy: DeadlinePolicy = POLICY, notify_at: datetime = NOTIFY_AT,
              closed_at: datetime = AFTER) -> None:
    act(sessions, case_id, workflow.open_and_notify, crew.boss, channel="sms", policy=policy,
        hearing_right=False, now=notify_at)
    act(sessions, case_id, procedure.serve_notice, crew.boss, delivered_utc=notify_at,
        proof="回执", policy=policy, now=notify_at + timedelta(minutes=1))
    act(sessions, case_id, workflow.close_statements, crew.legal, now=closed_at)


# ---- 1a. the center's register, not the station's status ---------------------------------

def test_an_expired_certificate_in_the_register_bars_approval_notice_and_decision(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = register(sessions, own_device_and_site(
        sealed, cert_to="2025-05-01T00:00:00+08:00"), sealed)  # passage: 1 June 2025
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, workflow.technical_review, crew.tech, approve=True,
            reason="看起来没问题")
    assert "计量检定证书不在有效期内" in refused.value.message_zh
    assert "2025-05-01 00:00" in refused.value.message_zh  # the register's period, 北京时间
    assert state(sessions, case_id) == "technical_review"
    with transaction(sessions) as s:  # the API's case detail says why
        case = s.get(Case, case_id)
        assert case is not None
        assert any("计量检定证书不在有效期内" in b for b in case_detail(s, case).blockers_zh)
    with transaction(sessions) as s:  # as if approved before the check existed
        case = s.get(Case, case_id)
        assert case is not None
        case.state = "approved"
    with pytest.raises(WorkflowError, match="device or site"):
        act(sessions, case_id, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, hearing_right=False, now=NOTIFY_AT)


def test_rejecting_a_case_with_an_expired_certificate_stays_possible(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = register(sessions, own_device_and_site(
        sealed, cert_to="2025-05-01T00:00:00+08:00"), sealed)
    act(sessions, case_id, workflow.technical_review, crew.tech, approve=False,
        reason="采集时证书已过期")
    assert state(sessions, case_id) == "rejected"


def test_an_unpublished_or_unknown_site_or_device_bars_approval(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    unpublished = register(sessions, own_device_and_site(sealed, published=None), sealed)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, unpublished, workflow.technical_review, crew.tech, approve=True)
    assert "位置未公布" in refused.value.message_zh
    late = register(sessions, own_device_and_site(
        sealed, published="2025-06-02T00:00:00+08:00"), sealed)
    with pytest.raises(WorkflowError, match="device or site"):
        act(sessions, late, workflow.technical_review, crew.tech, approve=True)
    manifest = own_device_and_site(sealed)
    del manifest["case"]["device"]  # the center has no record of the device
    unknown = register(sessions, manifest, sealed)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, unknown, workflow.technical_review, crew.tech, approve=True)
    assert "没有称重设备" in refused.value.message_zh


def test_a_decision_in_the_register_stops_a_penalty_but_not_a_no_penalty_decision(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    manifest = own_device_and_site(sealed)
    case_id = register(sessions, manifest, sealed)
    to_approved(sessions, crew, case_id)
    to_closed(sessions, crew, case_id)
    with transaction(sessions) as s:  # the register learns the site was never published
        site = s.get(Site, manifest["case"]["site"]["site_id"])
        assert site is not None
        site.announced_utc = None
        fine = s.get(Case, case_id).proposed_fine_yuan  # type: ignore[union-attr]
    with pytest.raises(WorkflowError, match="device or site"):
        act(sessions, case_id, workflow.decide, crew.boss, outcome="fine", fine_yuan=fine,
            reasons="事实清楚", policy=POLICY, now=AFTER)
    act(sessions, case_id, workflow.decide, crew.boss, outcome="no_penalty", fine_yuan=0,
        reasons="监测点未公布，不予处罚", policy=POLICY, now=AFTER)
    assert state(sessions, case_id) == "decided"


def test_a_renewed_certificate_is_registered_and_covers_its_own_passages(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    first = own_device_and_site(sealed, cert_to="2025-05-01T00:00:00+08:00")
    register(sessions, first, sealed)
    renewed, _ = variant(sealed)  # the same device, re-verified: the register adds it
    renewed["case"]["device"] = dict(first["case"]["device"],
                                     certificate_valid_from="2025-05-01T00:00:00+08:00",
                                     certificate_valid_to="2026-05-01T00:00:00+08:00")
    renewed["case"]["site"] = first["case"]["site"]
    renewed["case"]["vehicle"]["site_id"] = first["case"]["vehicle"]["site_id"]
    case_id = register(sessions, renewed, sealed)
    act(sessions, case_id, workflow.technical_review, crew.tech, approve=True)
    with transaction(sessions) as s:
        periods = ingest.device_certificates(s, first["case"]["device"]["device_id"])
        assert len(periods) == 2
        assert s.scalars(select(AuditEntry).where(
            AuditEntry.action == ingest.CERTIFICATE_ACTION)).first() is not None


# ---- 2. a static re-weighing attached after the reviews --------------------------------

def attach_no_penalty_reweigh(sessions: sessionmaker[Session], case_id: int) -> None:
    with transaction(sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        reweigh.register_reweigh(s, {
            "format": "zhichao.reweigh/1", "package_id": f"S001-RW-{uuid.uuid4().hex[:6]}",
            "station": {"station_id": "S001"},
            "case": {"kind": "static_reweigh",
                     "original": {"package_id": case.package_id,
                                  "manifest_sha256": case.manifest_sha256},
                     "reading": {"weight_kg": "48500", "reading_utc": "2025-06-01T02:40:00Z"},
                     "decision": {"eligibility": {"status": "ENFORCEABLE",
                                                  "assessment": {"verdict": "within_limit"}},
                                  "penalty": {"outcome": "none"}}}},
            # recorded only, never read: a name beside the case's own package
            Path(case.package_path).with_name("rw.zip"), manifest_sha256=uuid.uuid4().hex * 2)


def test_a_later_reweighing_without_penalty_stops_notice(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    attach_no_penalty_reweigh(sessions, case_id)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, hearing_right=False, now=NOTIFY_AT)
    assert "静态复检" in refused.value.message_zh and "立案告知" in refused.value.message_zh
    with transaction(sessions) as s:
        listed = [o for o in workflow.overdue_cases(s, now=NOTIFY_AT) if o.case_id == case_id]
        assert listed and "静态复检" in listed[0].what_zh


def test_a_later_reweighing_without_penalty_stops_a_penalty_decision(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    to_closed(sessions, crew, case_id)
    attach_no_penalty_reweigh(sessions, case_id)
    for outcome, fine in (("fine", 600), ("warning", 0), ("education", 0)):
        with pytest.raises(WorkflowError, match="re-weighing"):
            act(sessions, case_id, workflow.decide, crew.boss, outcome=outcome,
                fine_yuan=fine, reasons="事实清楚", policy=POLICY, now=AFTER)
    act(sessions, case_id, workflow.decide, crew.boss, outcome="no_penalty", fine_yuan=0,
        reasons="静态复检未超限", policy=POLICY, now=AFTER)
    act(sessions, case_id, workflow.serve, crew.boss, channel="post", policy=POLICY,
        now=AFTER + timedelta(hours=1))
    assert state(sessions, case_id) == "served"


def test_a_decided_penalty_with_a_later_reweighing_is_listed_and_not_served(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    to_closed(sessions, crew, case_id)
    act(sessions, case_id, workflow.decide, crew.boss, outcome="warning", fine_yuan=0,
        reasons="事实清楚", policy=POLICY, now=AFTER)
    attach_no_penalty_reweigh(sessions, case_id)
    with transaction(sessions) as s:
        listed = [o for o in workflow.overdue_cases(s, now=AFTER) if o.case_id == case_id]
        assert len(listed) == 1 and "变更或撤销" in listed[0].what_zh
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, workflow.serve, crew.boss, channel="post", policy=POLICY,
            now=AFTER + timedelta(hours=1))
    assert "不得送达处罚决定" in refused.value.message_zh
    act(sessions, case_id, procedure.revoke, crew.boss, kind="revoked", reason="静态复检未超限",
        policy=POLICY, now=AFTER + timedelta(hours=2))
    with transaction(sessions) as s:
        assert not [o for o in workflow.overdue_cases(s, now=AFTER) if o.case_id == case_id]


# ---- 3. a waiver only after service, naming the party's record -----------------------------

def test_a_waiver_needs_service_and_the_partys_record(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    act(sessions, case_id, workflow.open_and_notify, crew.boss, channel="post", policy=POLICY,
        hearing_right=False, now=NOTIFY_AT)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, procedure.waive, crew.legal, scope="statement",
            record="电话中表示不陈述", document_ref="F-1", now=NOTIFY_AT + timedelta(minutes=5))
    assert "尚未送达" in refused.value.message_zh
    act(sessions, case_id, procedure.serve_notice, crew.boss, delivered_utc=NOTIFY_AT,
        proof="EMS 1", policy=POLICY, now=NOTIFY_AT + timedelta(days=1))
    with pytest.raises(InvalidInputError) as missing:
        act(sessions, case_id, procedure.waive, crew.legal, scope="statement",
            record="当事人签署放弃声明", document_ref=" ")
    assert "书面放弃记录的编号" in missing.value.message_zh
    act(sessions, case_id, procedure.waive, crew.legal, scope="statement",
        record="当事人签署放弃声明", document_ref="附件 F-2025-001",
        now=NOTIFY_AT + timedelta(days=1, hours=1))
    with transaction(sessions) as s:
        entry = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "case.waiver",
            AuditEntry.object_id == str(case_id))).one()
        assert entry.detail["document_ref"] == "附件 F-2025-001"
    act(sessions, case_id, workflow.close_statements, crew.legal,
        now=NOTIFY_AT + timedelta(days=1, hours=2))
    assert state(sessions, case_id) == "statements_closed"


def test_a_waiver_never_stands_in_for_service() -> None:
    case = Case(statement_due=None, hearing_request_due=None, hearing_right="no",
                statement_waived_utc=NOTIFY_AT)
    with pytest.raises(DeadlineError, match="not been served"):
        workflow.check_periods_over(case, date(2026, 2, 13))


# ---- 4. Art. 36 (two years) and Art. 60 (ninety days), on Beijing dates ---------------------

def test_limitation_and_decision_period_are_in_the_deadline_table() -> None:
    policy = DeadlinePolicy()
    assert "第三十六条" in policy.limitation.source_zh and policy.limitation.unit == "years"
    assert policy.limitation_end(date(2025, 6, 1)) == date(2027, 6, 1)
    assert policy.limitation_end(date(2024, 2, 29)) == date(2026, 2, 28)
    assert "第六十条" in policy.decision.source_zh and policy.decision.days == 90


def test_a_passage_discovered_after_two_years_needs_a_recorded_reason(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    # passage 1 June 2025 10:03 北京时间; the last day to discover it is 1 June 2027
    in_time = register(sessions, variant(sealed)[0], sealed, now=utc(2027, 6, 1, 15, 59))
    barred = register(sessions, variant(sealed)[0], sealed, now=utc(2027, 6, 1, 16, 0))
    notify_at = utc(2027, 6, 2, 2)
    for case_id in (in_time, barred):
        to_approved(sessions, crew, case_id)
    act(sessions, in_time, workflow.open_and_notify, crew.boss, channel="sms", policy=POLICY,
        hearing_right=False, now=notify_at)
    with pytest.raises(WorkflowError) as refused:
        act(sessions, barred, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, hearing_right=False, now=notify_at)
    assert "已超过二年" in refused.value.message_zh and "第三十六条" in refused.value.message_zh
    act(sessions, barred, workflow.open_and_notify, crew.boss, channel="sms", policy=POLICY,
        hearing_right=False, limitation_note="法制审核意见 2027-15：违法行为于 2027-05 已被发现",
        now=notify_at)
    act(sessions, barred, procedure.serve_notice, crew.boss, delivered_utc=notify_at,
        proof="回执", policy=POLICY, now=notify_at + timedelta(minutes=1))
    act(sessions, barred, workflow.close_statements, crew.legal,
        now=notify_at + timedelta(days=30))
    act(sessions, barred, workflow.decide, crew.boss, outcome="warning", fine_yuan=0,
        reasons="依法处理", policy=POLICY, now=notify_at + timedelta(days=30))  # recorded once
    with transaction(sessions) as s:
        notes = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "case.period_exception",
            AuditEntry.object_id == str(barred))).all()
        assert [n.detail["rule"] for n in notes] == ["limitation"]
        assert "2027-15" in notes[0].detail["limitation_note"]


def test_a_decision_after_ninety_days_needs_the_extension_reference(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    to_closed(sessions, crew, case_id)  # opened 13 Feb 2026: due 14 May 2026
    late = utc(2026, 5, 14, 16, 0)  # 15 May 00:00 北京时间
    with pytest.raises(WorkflowError) as refused:
        act(sessions, case_id, workflow.decide, crew.boss, outcome="warning", fine_yuan=0,
            reasons="依法处理", policy=POLICY, now=late)
    assert "九十日" in refused.value.message_zh and "延长办案期限" in refused.value.message_zh
    act(sessions, case_id, workflow.decide, crew.boss, outcome="warning", fine_yuan=0,
        reasons="依法处理", extension_reference="延期审批〔2026〕7号", policy=POLICY, now=late)
    with transaction(sessions) as s:
        note = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "case.period_exception",
            AuditEntry.object_id == str(case_id))).one()
        assert note.detail["extension_reference"] == "延期审批〔2026〕7号"


def test_a_decision_on_the_ninetieth_day_in_beijing_is_in_time(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    to_approved(sessions, crew, case_id)
    to_closed(sessions, crew, case_id)
    act(sessions, case_id, workflow.decide, crew.boss, outcome="warning", fine_yuan=0,
        reasons="依法处理", policy=POLICY, now=utc(2026, 5, 14, 15, 59))  # 23:59 北京时间
    assert state(sessions, case_id) == "decided"


# ---- 5. a manually corrected record is approved with reasons ---------------------------------

def test_approving_a_manually_corrected_record_needs_a_reason(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case_id = new_case(sessions, sealed).id
    act(sessions, case_id, workflow.mark_manual_override, crew.operator,
        reason="号牌人工改为浙J12346")
    with pytest.raises(InvalidInputError) as refused:
        act(sessions, case_id, workflow.technical_review, crew.tech, approve=True)
    assert "理由" in refused.value.message_zh
    act(sessions, case_id, workflow.technical_review, crew.tech, approve=True,
        reason="已核对号牌照片，人工修正正确")
    assert state(sessions, case_id) == "legal_review"


# ---- 5. the API requires the version the client saw ------------------------------------------

@pytest.mark.parametrize(("action", "body"), [
    ("technical-review", {"approve": True}), ("legal-review", {"approve": True}),
    ("manual-override", {"reason": "人工修正"}), ("notify", {"channel": "sms"}),
    ("close-statements", {}), ("decision", {"outcome": "warning", "fine_yuan": 0,
                                            "reasons": "理由"}),
    ("waive", {"scope": "all", "record": "声明", "document_ref": "F-1"}),
    ("serve", {"channel": "post"}), ("publish", {}), ("archive", {}),
    ("revoke", {"kind": "revoked", "reason": "理由"}),
    ("serve-notice", {"delivered_utc": "2026-02-13T02:00:00Z", "proof": "回执"}),
])
def test_a_transition_without_expected_version_is_a_zh_422(api: Api, action: str,
                                                           body: dict[str, Any]) -> None:
    case = new_case(api.sessions, api.sealed)
    role = {"technical-review": "technical_reviewer", "manual-override": "station_operator",
            "legal-review": "legal_reviewer", "close-statements": "legal_reviewer",
            "waive": "legal_reviewer"}.get(action, "decision_maker")
    r = api.client.post(f"/api/v1/cases/{case.id}/{action}", headers=api.auth(role),
                        json=body)
    assert r.status_code == 422, r.text
    assert r.json()["message_zh"] == "输入有误：请填写案件版本号"
    assert r.json()["fields"] == ["body.expected_version"]
    assert state(api.sessions, case.id) == "technical_review"


def test_the_case_detail_says_what_blocks_the_case(api: Api) -> None:
    case_id = register(api.sessions, own_device_and_site(api.sealed, published=None),
                       api.sealed)
    detail = api.client.get(f"/api/v1/cases/{case_id}", headers=api.auth("auditor")).json()
    assert any("位置未公布" in b for b in detail["blockers_zh"]), detail["blockers_zh"]
    r = api.client.post(f"/api/v1/cases/{case_id}/technical-review",
                        headers=api.auth("technical_reviewer"),
                        json={"approve": True, "expected_version": detail["version"]})
    assert r.status_code == 409 and "位置未公布" in r.json()["message_zh"]
