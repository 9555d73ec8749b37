"""A revoked or void decision reaches its 抄告 (62号令 Art. 44; 行政处罚法 Art. 48 para. 2;
公路安全保护条例 Art. 66), on SQLite and PostgreSQL: an unsent copy is cancelled (never sent,
not overdue, not pending); a sent one gets a withdrawal (撤回抄告) in the same outbox,
exported as JSON and a zh-CN PDF, overdue, sent and acknowledged like any copy; a case
without a copy changes nothing; the vehicle's referral marks are recounted (a sent
referral withdrawn, an unsent count corrected; a withdrawal of referrals only names no
unsent copy); a changed decision or one declared unlawful (not revoked) keeps its copy,
sent or pending, and its count; the same through the HTTP API; migration 0008 keeps old
rows, allows one copy and one withdrawal per case, and refuses a downgrade that would
lose a withdrawal or revive a cancelled copy."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, datetime
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import Api, new_case, utc
from tests.service.test_procedure import Crew, act, decided
from tests.service.test_procedure import crew as crew  # the module's fixture
from tests.service.test_procedure_api import (
    pdf_text,
    post,
    reviewed_and_notified,
    served_and_waived,
)
from zhichao.service import copy_notices, procedure, workflow
from zhichao.service.db import alembic_config, session_factory, transaction, upgrade
from zhichao.service.errors import WorkflowError
from zhichao.service.models import AuditEntry, CopyNotice
from zhichao.service.workdays import DeadlinePolicy

POLICY = DeadlinePolicy()
SENT = utc(2026, 7, 3, 2)  # Fri 3 July 2026: the copy leaves the office
REVOKED = utc(2026, 7, 6, 2)  # Mon 6 July 2026, 10:00 北京时间: the decision is revoked


def copies(s: Session, case_id: int) -> dict[str, CopyNotice]:
    rows = s.scalars(select(CopyNotice).where(CopyNotice.case_id == case_id)).all()
    return {c.kind: c for c in rows}


def actions(s: Session, case_id: int) -> list[str]:
    return list(s.scalars(select(AuditEntry.action).where(
        AuditEntry.object_type == "case", AuditEntry.object_id == str(case_id),
        AuditEntry.action.like("copy_notice.%")).order_by(AuditEntry.id)).all())


def send(sessions: sessionmaker[Session], copy_id: int, when: datetime = SENT) -> None:
    with transaction(sessions) as s:
        copy_notices.mark(s, copy_notices.get(s, copy_id), what="sent", actor="t", now=when)


def revoke(sessions: sessionmaker[Session], case_id: int, crew: Crew, kind: str,
           reason: str, now: datetime = REVOKED) -> None:
    act(sessions, case_id, procedure.revoke, crew.boss, kind=kind, reason=reason,
        policy=POLICY, now=now)


def head(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def overdue_what(s: Session, case_id: int, day: datetime) -> list[str]:
    return [o.what_zh for o in workflow.overdue_cases(s, now=day) if o.case_id == case_id]


def pdf_as_text(data: bytes) -> str:
    """The PDF's text: poppler's pdftotext when installed, else pdfium."""
    if shutil.which("pdftotext"):
        done = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", "-", "-"], input=data,
                              capture_output=True, check=True, timeout=60)
        return "".join(done.stdout.decode("utf-8").split())
    return "".join(pdf_text(data).split())


def test_revoke_before_sending_cancels_the_copy(sessions: sessionmaker[Session],
                                                sealed: Any, crew: Crew) -> None:
    case = decided(sessions, sealed, crew, outcome="reduced", fine=300, plate="浙J7C001")
    revoke(sessions, case.id, crew, "void", "复议机关确认处罚决定无效")
    with transaction(sessions) as s:
        rows = copies(s, case.id)
        assert set(rows) == {"copy"}  # nothing was sent: no withdrawal
        copy = rows["copy"]
        assert copy.cancelled_utc == REVOKED and copy.sent_utc is None
        assert copy.cancel_reason_zh == "处理决定被确认无效：复议机关确认处罚决定无效"
        data = copy_notices.export_json(copy)
        assert (data["state"], data["kind"], data["cancelled_utc"]) == (
            "cancelled", "copy", REVOKED.isoformat())
        assert copy.id not in {c.id for c in copy_notices.outbox(s, "pending")}
        assert copy.id in {c.id for c in copy_notices.outbox(s, "cancelled")}
        assert overdue_what(s, case.id, utc(2026, 7, 14, 2)) == []  # was due 13 July
        with pytest.raises(WorkflowError, match="cancelled"):
            copy_notices.mark(s, copy, what="sent", actor="t", now=REVOKED)
        with pytest.raises(WorkflowError, match="cancelled"):
            copy_notices.export_pdf(copy)
        assert actions(s, case.id) == ["copy_notice.queued", "copy_notice.cancelled"]


def test_revoke_after_sending_queues_a_withdrawal(sessions: sessionmaker[Session],
                                                  sealed: Any, crew: Crew) -> None:
    case = decided(sessions, sealed, crew, outcome="reduced", fine=300, plate="浙J7W001")
    with transaction(sessions) as s:
        original_id = copies(s, case.id)["copy"].id
    send(sessions, original_id)
    revoke(sessions, case.id, crew, "revoked", "行政复议决定撤销原处罚决定")
    with transaction(sessions) as s:
        rows = copies(s, case.id)
        original, withdrawal = rows["copy"], rows["withdrawal"]
        assert original.cancelled_utc is None and copy_notices.state(original) == "sent"
        assert withdrawal.withdraws_id == original.id
        assert withdrawal.authority_zh == original.authority_zh
        assert withdrawal.due == date(2026, 7, 15)  # Mon 6 July + 7 working days
        data = copy_notices.export_json(withdrawal)
        assert data["format"] == "zhichao.copy-notice-withdrawal/1"
        assert (data["kind"], data["state"], data["referral"]) == ("withdrawal", "pending",
                                                                   False)
        assert data["withdraws_copy_notice_id"] == original.id
        assert data["withdrawn"] == {
            "copy_notice_id": original.id, "format": "zhichao.copy-notice/1",
            "sent_utc": SENT.isoformat(), "sent_zh": "2026年07月03日 10:00:00（北京时间）"}
        assert data["revocation"] == {
            "kind": "revoked", "kind_zh": "撤销", "reason_zh": "行政复议决定撤销原处罚决定",
            "time_utc": REVOKED.isoformat(), "time_zh": "2026年07月06日 10:00:00（北京时间）"}
        assert data["referrals_withdrawn"] == [] and data["due_confirmed"] is False
        assert "未经确认" in data["due_source_zh"] and data["plate"] == "浙J7W001"
        assert withdrawal.id in {c.id for c in copy_notices.outbox(s, "pending")}

        words = pdf_as_text(copy_notices.export_pdf(withdrawal))
        for expected in ("撤回抄告函", "北京时间", f"抄告编号{original.id}",
                         "2026年07月03日10:00:00", "被撤销", "行政复议决定撤销原处罚决定",
                         "浙J7W001（黄色）", "原抄告函现予撤回"):
            assert expected in words, expected
        for internal in ("revoked", "withdrawal", "reduced", "yellow", "None"):
            assert internal not in words, internal
        copy_words = pdf_as_text(copy_notices.export_pdf(original))
        assert "浙J7W001（黄色）" in copy_words and "yellow" not in copy_words

        assert overdue_what(s, case.id, utc(2026, 7, 15, 2)) == []
        late = overdue_what(s, case.id, utc(2026, 7, 16, 2))
        assert late == ["撤回抄告已超过期限未发送（参照62号令第四十四条，期限未经确认）"]
        with pytest.raises(WorkflowError):
            copy_notices.mark(s, withdrawal, what="acknowledged", actor="t", now=REVOKED)
        copy_notices.mark(s, withdrawal, what="sent", actor="t", now=utc(2026, 7, 7, 2))
        copy_notices.mark(s, withdrawal, what="acknowledged", actor="t", now=utc(2026, 7, 8))
        assert copy_notices.state(withdrawal) == "acknowledged"
        assert overdue_what(s, case.id, utc(2026, 7, 16, 2)) == []
        assert actions(s, case.id) == [
            "copy_notice.queued", "copy_notice.sent", "copy_notice.withdrawal_queued",
            "copy_notice.sent", "copy_notice.acknowledged"]


def test_revoke_of_a_case_without_copy_changes_nothing(sessions: sessionmaker[Session],
                                                       sealed: Any, crew: Crew) -> None:
    case = decided(sessions, sealed, crew, outcome="education", fine=0, plate="浙J7N001")
    with transaction(sessions) as s:
        before = s.scalar(select(CopyNotice.id).order_by(CopyNotice.id.desc()).limit(1))
    revoke(sessions, case.id, crew, "void", "原决定确认无效")
    with transaction(sessions) as s:
        assert copies(s, case.id) == {} and actions(s, case.id) == []
        assert s.scalar(select(CopyNotice.id).order_by(CopyNotice.id.desc()).limit(1)) == before


def test_referral_marks_follow_the_revocation(sessions: sessionmaker[Session], sealed: Any,
                                              crew: Crew) -> None:
    plate = "浙J7R001"
    made = {name: decided(sessions, sealed, crew, outcome="warning", fine=0, plate=plate,
                          time_utc=when)
            for name, when in (("jan", utc(2026, 1, 10, 2)), ("mar", utc(2026, 3, 10, 2)),
                               ("may", utc(2026, 5, 10, 2)), ("jun", utc(2026, 6, 10, 2)),
                               ("late_jun", utc(2026, 6, 20, 2)))}
    with transaction(sessions) as s:
        rows = {name: copies(s, case.id)["copy"] for name, case in made.items()}
        ids = {name: copy.id for name, copy in rows.items()}
        marks = {name: (copy.payload["violations_in_year"], copy.referral)
                 for name, copy in rows.items()}
    assert marks == {"jan": (1, False), "mar": (2, False), "may": (3, False),
                     "jun": (4, True), "late_jun": (5, True)}
    send(sessions, ids["jun"])  # the fourth went out with its referral suggestion

    revoke(sessions, made["mar"].id, crew, "void", "法院判决确认无效")
    with transaction(sessions) as s:
        mar = copies(s, made["mar"].id)
        assert mar["copy"].cancelled_utc is not None  # unsent: cancelled
        jun, late = s.get(CopyNotice, ids["jun"]), s.get(CopyNotice, ids["late_jun"])
        assert jun is not None and late is not None
        # sent: unmarked, the letter as sent kept; its suggestion withdrawn by the withdrawal
        assert not jun.referral and jun.payload["referral"] is True
        assert jun.payload["violations_in_year"] == 4
        assert copy_notices.export_json(jun)["referral"] is False
        # unsent: corrected (four, still more than three)
        assert late.referral and late.payload["violations_in_year"] == 4
        assert copies(s, made["jan"].id)["copy"].payload["violations_in_year"] == 1
        assert copies(s, made["may"].id)["copy"].payload["violations_in_year"] == 2
        withdrawal = mar["withdrawal"]
        data = copy_notices.export_json(withdrawal)
        # the cancelled copy never left: the withdrawal names the referral copies only
        assert data["withdrawn"] is None and withdrawal.withdraws_id is None
        assert data["withdraws_copy_notice_id"] is None
        assert data["revocation"]["kind_zh"] == "确认无效"
        assert data["referrals_withdrawn"] == [{
            "copy_notice_id": jun.id, "case_id": made["jun"].id,
            "sent_utc": SENT.isoformat(), "sent_zh": "2026年07月03日 10:00:00（北京时间）",
            "violations_in_year_before": 4, "violations_in_year": 3}]
        words = pdf_as_text(copy_notices.export_pdf(withdrawal))
        assert f"抄告编号{jun.id}" in words and "处理建议一并撤回" in words
        assert "被确认无效" in words and "原抄告函现予撤回" not in words
        queued = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "copy_notice.withdrawal_queued",
            AuditEntry.object_id == str(made["mar"].id))).one()
        assert queued.detail["withdraws_id"] is None
        assert queued.detail["referrals_withdrawn"] == [jun.id]
        assert actions(s, made["jun"].id)[-1] == "copy_notice.referral_unmarked"
        assert actions(s, made["late_jun"].id)[-1] == "copy_notice.recounted"
        assert actions(s, made["mar"].id)[-2:] == ["copy_notice.cancelled",
                                                   "copy_notice.withdrawal_queued"]
        recounted = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "copy_notice.referral_unmarked",
            AuditEntry.object_id == str(made["jun"].id))).one()
        assert recounted.detail["revoked_case_id"] == made["mar"].id
        # the revoked case no longer counts for a new one either
        assert copy_notices.violations_in_year(s, made["late_jun"]) == 4

    # the fifth revoked too: its own referral falls, nothing sent, so no withdrawal
    revoke(sessions, made["late_jun"].id, crew, "revoked", "复议撤销", now=utc(2026, 7, 7, 2))
    with transaction(sessions) as s:
        late_rows = copies(s, made["late_jun"].id)
        assert set(late_rows) == {"copy"} and not late_rows["copy"].referral
        assert late_rows["copy"].cancelled_utc is not None
        assert actions(s, made["late_jun"].id)[-2:] == ["copy_notice.referral_unmarked",
                                                        "copy_notice.cancelled"]


@pytest.mark.parametrize("kind", ["changed", "unlawful"])
def test_changed_or_unlawful_keeps_the_copy_and_the_count(
        sessions: sessionmaker[Session], sealed: Any, crew: Crew, kind: str) -> None:
    """A 变更 (a penalty still) or a 确认违法 without 撤销 (行政诉讼法 Art. 74: the act stays
    in force): the copy stands, sent or pending, and the case keeps counting."""
    plate = {"changed": "浙J7K001", "unlawful": "浙J7K002"}[kind]
    made = {name: decided(sessions, sealed, crew, outcome="warning", fine=0, plate=plate,
                          time_utc=when)
            for name, when in (("jan", utc(2026, 1, 10, 2)), ("mar", utc(2026, 3, 10, 2)),
                               ("may", utc(2026, 5, 10, 2)), ("jun", utc(2026, 6, 10, 2)))}
    with transaction(sessions) as s:
        ids = {name: copies(s, case.id)["copy"].id for name, case in made.items()}
    send(sessions, ids["jun"])  # the fourth, sent with its referral suggestion
    revoke(sessions, made["mar"].id, crew, kind, "复议或判决")  # unsent
    revoke(sessions, made["jun"].id, crew, kind, "复议或判决",  # sent
           now=utc(2026, 7, 7, 2))
    with transaction(sessions) as s:
        mar, jun = copies(s, made["mar"].id), copies(s, made["jun"].id)
        assert set(mar) == {"copy"} and set(jun) == {"copy"}  # no withdrawal
        assert mar["copy"].cancelled_utc is None and copy_notices.state(mar["copy"]) == "pending"
        assert mar["copy"].id in {c.id for c in copy_notices.outbox(s, "pending")}
        assert copy_notices.export_pdf(mar["copy"]).startswith(b"%PDF")  # sendable as is
        assert copy_notices.state(jun["copy"]) == "sent" and jun["copy"].referral
        assert jun["copy"].payload["violations_in_year"] == 4
        for name in ("mar", "jun"):
            assert actions(s, made[name].id)[-1] == "copy_notice.kept"
            kept = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "copy_notice.kept",
                AuditEntry.object_id == str(made[name].id))).one()
            assert kept.detail["kind"] == kind and kept.detail["corrected_copy"] is False
        assert [copy_notices.violations_in_year(s, made[n]) for n in made] == [1, 2, 3, 4]
        assert copies(s, made["may"].id)["copy"].payload["violations_in_year"] == 3
    send(sessions, ids["mar"], utc(2026, 7, 8, 2))  # the pending copy goes out as it is
    with transaction(sessions) as s:
        assert copy_notices.state(copies(s, made["mar"].id)["copy"]) == "sent"
    # a fifth violation still counts the changed or unlawful ones: five, a referral
    fifth = decided(sessions, sealed, crew, outcome="warning", fine=0, plate=plate,
                    time_utc=utc(2026, 6, 20, 2))
    with transaction(sessions) as s:
        copy = copies(s, fifth.id)["copy"]
        assert copy.payload["violations_in_year"] == 5 and copy.referral


# ---- through the HTTP API ---------------------------------------------------------------

def _served_fine(api: Api, plate: str) -> int:
    case_id = reviewed_and_notified(api, plate)
    served_and_waived(api, case_id)
    detail = api.client.get(f"/api/v1/cases/{case_id}", headers=api.auth("legal_reviewer"))
    post(api, "decision_maker", case_id, "decision",
         {"outcome": "fine", "fine_yuan": detail.json()["proposed_fine_yuan"],
          "reasons": "事实清楚，证据确凿。"})
    post(api, "decision_maker", case_id, "serve", {"channel": "post"})
    return case_id


def _outbox(api: Api, case_id: int, state: str | None = None) -> dict[str, dict[str, Any]]:
    r = api.client.get("/api/v1/copy-notices", params={"state": state} if state else None,
                       headers=api.auth("decision_maker"))
    assert r.status_code == 200, r.text
    return {c["kind"]: c for c in r.json()["copy_notices"] if c["case_id"] == case_id}


def test_withdrawal_and_cancellation_through_http(api: Api) -> None:
    clerk = api.auth("decision_maker")
    sent_case = _served_fine(api, "浙J7H001")
    copy = _outbox(api, sent_case)["copy"]
    url = f"/api/v1/copy-notices/{copy['copy_notice_id']}"
    assert api.client.post(f"{url}/sent", headers=clerk).status_code == 200
    post(api, "decision_maker", sent_case, "revoke",
         {"kind": "revoked", "reason": "复议机关撤销原决定"})
    rows = _outbox(api, sent_case)
    assert rows["copy"]["state"] == "sent" and rows["copy"]["cancelled_utc"] is None
    withdrawal = rows["withdrawal"]
    assert withdrawal["format"] == "zhichao.copy-notice-withdrawal/1"
    assert withdrawal["withdrawn"]["copy_notice_id"] == copy["copy_notice_id"]
    assert withdrawal["revocation"]["kind_zh"] == "撤销" and withdrawal["state"] == "pending"
    assert set(_outbox(api, sent_case, "pending")) == {"withdrawal"}
    wurl = f"/api/v1/copy-notices/{withdrawal['copy_notice_id']}"
    assert api.client.get(wurl, headers=clerk).json()["kind"] == "withdrawal"
    pdf = api.client.get(f"{wurl}/pdf", headers=clerk)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "撤回抄告函" in pdf_text(pdf.content) and "北京时间" in pdf_text(pdf.content)
    assert api.client.get(f"{wurl}/pdf", headers=api.auth("auditor")).status_code == 403
    assert api.client.post(f"{wurl}/acknowledged", headers=clerk).status_code == 409
    assert api.client.post(f"{wurl}/sent", headers=clerk).json()["state"] == "sent"
    assert api.client.post(f"{wurl}/acknowledged", headers=clerk).json()["state"] \
        == "acknowledged"

    unsent_case = _served_fine(api, "浙J7H002")
    post(api, "decision_maker", unsent_case, "revoke",
         {"kind": "void", "reason": "复议机关确认原决定无效"})
    rows = _outbox(api, unsent_case)
    assert set(rows) == {"copy"} and rows["copy"]["state"] == "cancelled"
    assert "确认无效" in rows["copy"]["cancel_reason_zh"]
    assert _outbox(api, unsent_case, "pending") == {}
    assert set(_outbox(api, unsent_case, "cancelled")) == {"copy"}
    curl = f"/api/v1/copy-notices/{rows['copy']['copy_notice_id']}"
    for r in (api.client.get(f"{curl}/pdf", headers=clerk),
              api.client.post(f"{curl}/sent", headers=clerk)):
        assert r.status_code == 409 and "已作废" in r.json()["message_zh"]
    changed_case = _served_fine(api, "浙J7H003")  # a 变更: the copy stays pending
    post(api, "decision_maker", changed_case, "revoke",
         {"kind": "changed", "reason": "复议机关变更原决定"})
    rows = _outbox(api, changed_case)
    assert set(rows) == {"copy"} and rows["copy"]["state"] == "pending"
    assert rows["copy"]["cancel_reason_zh"] is None
    assert api.client.get("/api/v1/copy-notices", params={"state": "lost"},
                          headers=clerk).status_code == 422

    schema = api.client.get("/openapi.json").json()
    out = schema["components"]["schemas"]["CopyNoticeOut"]["properties"]
    assert {"kind", "state", "cancelled_utc", "withdrawn", "revocation",
            "referrals_withdrawn"} <= set(out)
    for name in ("CopyWithdrawnOut", "RevocationOut", "ReferralWithdrawnOut"):
        assert schema["components"]["schemas"][name]["properties"]
    params = schema["paths"]["/api/v1/copy-notices"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["state"]


# ---- migration 0008 -----------------------------------------------------------------------

def test_migration_0008_keeps_copies_and_allows_one_withdrawal(fresh_db: Engine,
                                                               sealed: Any) -> None:
    engine = fresh_db
    command.downgrade(alembic_config(engine), "0007_owner_access_log")
    sessions = session_factory(engine)
    case = new_case(sessions, sealed, plate="浙J7M001")
    insert = text("INSERT INTO copy_notices (case_id, authority_zh, due, referral, payload, "
                  "created_utc) VALUES (:c, '浙江省', '2026-07-13', false, '{}', "
                  "'2026-07-02 02:00:00')")
    with engine.begin() as conn:
        conn.execute(insert, {"c": case.id})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"c": case.id})  # 0007: one row per case

    upgrade(engine)
    with transaction(sessions) as s:
        (old,) = s.scalars(select(CopyNotice).where(CopyNotice.case_id == case.id)).all()
        assert (old.kind, old.withdraws_id, old.cancelled_utc) == ("copy", None, None)
        s.add(CopyNotice(case_id=case.id, kind="withdrawal", withdraws_id=old.id,
                         authority_zh="浙江省", due=date(2026, 7, 15), referral=False,
                         payload={}, created_utc=utc(2026, 7, 6)))
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(CopyNotice(case_id=case.id, kind="withdrawal", authority_zh="浙江省",
                         due=date(2026, 7, 15), referral=False, payload={},
                         created_utc=utc(2026, 7, 6)))

    # a withdrawal is a legal record: the downgrade that would delete it is refused
    with pytest.raises(WorkflowError, match="0008 downgrade refused: 1 ") as refused:
        command.downgrade(alembic_config(engine), "0007_owner_access_log")
    assert "拒绝降级" in refused.value.message_zh
    # nothing of 0008 ran; PostgreSQL rolls back the whole downgrade (one transaction),
    # SQLite keeps 0009's own step down
    newest = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head(engine) == (newest if engine.dialect.name == "postgresql"
                            else "0008_copy_notice_withdrawal")
    with engine.begin() as conn:  # a cancelled copy would be sendable again: refused too
        conn.execute(text("DELETE FROM copy_notices WHERE kind = 'withdrawal'"))
        conn.execute(text("UPDATE copy_notices SET cancelled_utc = :t WHERE case_id = :c"),
                     {"t": utc(2026, 7, 6), "c": case.id})
    with pytest.raises(WorkflowError, match="0008 downgrade refused"):
        command.downgrade(alembic_config(engine), "0007_owner_access_log")
    with engine.begin() as conn:
        conn.execute(text("UPDATE copy_notices SET cancelled_utc = NULL"))
    command.downgrade(alembic_config(engine), "0007_owner_access_log")
    assert head(engine) == "0007_owner_access_log"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM copy_notices WHERE case_id = :c"),
                            {"c": case.id}).scalar_one() == 1
    upgrade(engine)
