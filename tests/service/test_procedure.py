"""The procedure by the law (issue 17), on SQLite and PostgreSQL: periods from service
(行政处罚法 Art. 44, 61, 64, 85; 民事诉讼法 2023 Art. 95), waiver (Art. 62), texts a court
can read (Art. 44, 59), 公示 and its withdrawal (Art. 48), 抄告 (62号令 Art. 44; 公路安全
保护条例 Art. 66) and retention (个人信息保护法 Art. 19)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import Sealed, new_case, new_user, utc
from zhichao.service import copy_notices, ingest, owners, procedure, retention, workflow
from zhichao.service.db import transaction
from zhichao.service.errors import (
    DeadlineError,
    InvalidInputError,
    PermissionDeniedError,
    WorkflowError,
)
from zhichao.service.models import (
    AuditEntry,
    Case,
    CopyNotice,
    Decision,
    Device,
    Notice,
    Passage,
    User,
)
from zhichao.service.workdays import DeadlinePolicy

POLICY = DeadlinePolicy()
ISSUED = utc(2026, 5, 20, 2)  # Wed 20 May 2026, 10:00 北京时间
DELIVERED = utc(2026, 6, 1, 2)  # Mon 1 June 2026: the post delivers the notice


class Crew:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.tech = new_user(sessions, "technical_reviewer")
        self.legal = new_user(sessions, "legal_reviewer")
        self.boss = new_user(sessions, "decision_maker")


@pytest.fixture(scope="module")
def crew(db: Any) -> Crew:
    from zhichao.service.db import session_factory
    return Crew(session_factory(db))


def act(sessions: sessionmaker[Session], case_id: int, fn: Any, user: User, **kw: Any) -> Any:
    with transaction(sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        result = fn(s, case, s.get(User, user.id), **kw)
        s.flush()
        if isinstance(result, Case):
            s.expunge(result)
        return result


def get(sessions: sessionmaker[Session], case_id: int) -> Case:
    with transaction(sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        return case


def notified(sessions: sessionmaker[Session], sealed: Sealed, crew: Crew, *,
             channel: str = "post", hearing: bool = True, **kw: Any) -> Case:
    case = new_case(sessions, sealed, **kw)
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    act(sessions, case.id, workflow.open_and_notify, crew.boss, channel=channel,
        policy=POLICY, hearing_right=hearing, now=ISSUED)
    return get(sessions, case.id)


def served(sessions: sessionmaker[Session], case_id: int, crew: Crew,
           delivered: datetime = DELIVERED) -> Notice:
    notice: Notice = act(sessions, case_id, procedure.serve_notice, crew.boss,
                         delivered_utc=delivered, proof="邮件单号 EMS0001",
                         policy=POLICY, now=delivered + timedelta(hours=1))
    return notice


def decided(sessions: sessionmaker[Session], sealed: Sealed, crew: Crew, *, outcome: str,
            fine: int, plate: str | None = None, time_utc: datetime | None = None) -> Case:
    """A case walked to a served decision (periods over on 1 July 2026)."""
    case = notified(sessions, sealed, crew, hearing=False, plate=plate)
    if time_utc is not None:
        with transaction(sessions) as s:
            row = s.get(Case, case.id)
            assert row is not None
            passage = s.get(Passage, row.passage_id)
            assert passage is not None
            passage.time_utc = time_utc  # the act's time is its passage's (one month partition)
            s.flush()  # first the passage (PostgreSQL: the case follows, ON UPDATE CASCADE)
            row.time_utc = time_utc
            device = s.get(Device, passage.device_id)
            assert device is not None and device.certificate_valid_to is not None
            # the center's record: the device was re-verified for the later passages
            device.certificate_valid_to = max(device.certificate_valid_to,
                                              time_utc + timedelta(days=365))
    served(sessions, case.id, crew)
    later = utc(2026, 7, 1, 2)
    act(sessions, case.id, workflow.close_statements, crew.legal, now=later)
    act(sessions, case.id, workflow.decide, crew.boss, outcome=outcome, fine_yuan=fine,
        reasons="事实清楚，证据确凿。", policy=POLICY, now=later)
    act(sessions, case.id, workflow.serve, crew.boss, channel="post", policy=POLICY,
        now=later + timedelta(days=1))
    return get(sessions, case.id)


# ---- Art. 44, 61, 64, 85: the periods run from service ---------------------------------

def test_periods_run_from_postal_delivery_not_from_issue(sessions: sessionmaker[Session],
                                                         sealed: Sealed, crew: Crew) -> None:
    case = notified(sessions, sealed, crew)
    assert case.statement_due is None and case.hearing_request_due is None
    assert case.decision_due == date(2026, 8, 18)  # Art. 60: 90 days from 立案 (20 May)
    with pytest.raises(DeadlineError, match="not been served"):
        act(sessions, case.id, workflow.close_statements, crew.legal, now=utc(2026, 7, 1))
    notice = served(sessions, case.id, crew)
    assert notice.served_on == date(2026, 6, 1) and notice.channel == "post"
    # Art. 64(1) + Art. 85: 5 working days after 1 June → Mon 8 June; statement 15 days
    assert notice.hearing_request_due == date(2026, 6, 8)
    assert notice.statement_due == date(2026, 6, 16)
    # counted from issue (20 May) the hearing period would have ended on 27 May; a request
    # on 5 June is in time because the notice arrived on 1 June
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        workflow.add_statement(s, c, kind="hearing_request", text="申请听证", contact=None,
                               actor_label="owner", max_chars=100, now=utc(2026, 6, 5, 2))
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        with pytest.raises(DeadlineError):
            workflow.add_statement(s, c, kind="hearing_request", text="再次申请", contact=None,
                                   actor_label="owner", max_chars=100, now=utc(2026, 6, 8, 16))
    with pytest.raises(DeadlineError, match="statement|陈述"):
        act(sessions, case.id, workflow.close_statements, crew.legal, now=utc(2026, 6, 16, 2))


def test_announcement_is_served_thirty_days_after_publication(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    """民事诉讼法 2023 Art. 95: 自发出公告之日起，经过三十日，即视为送达."""
    case = notified(sessions, sealed, crew, channel="announcement")
    notice = served(sessions, case.id, crew, delivered=utc(2026, 6, 1, 2))
    assert notice.served_on == date(2026, 7, 1)
    assert notice.hearing_request_due == date(2026, 7, 8)  # Thu 2 … Wed 8 July
    assert notice.statement_due == date(2026, 7, 16)
    with pytest.raises(DeadlineError):  # before the announcement even counts as served
        act(sessions, case.id, workflow.close_statements, crew.legal, now=utc(2026, 6, 20))


def test_post_returned_then_announced(sessions: sessionmaker[Session], sealed: Sealed,
                                      crew: Crew) -> None:
    """Sent by post, returned undelivered, then announced (浙江省公路条例 Art. 40): served
    30 days after the announcement (民事诉讼法 Art. 95)."""
    case = notified(sessions, sealed, crew, channel="post")
    with pytest.raises(InvalidInputError):
        act(sessions, case.id, procedure.serve_notice, crew.boss, delivered_utc=DELIVERED,
            proof="x", policy=POLICY, channel="pigeon", now=DELIVERED)
    notice = act(sessions, case.id, procedure.serve_notice, crew.boss,
                 delivered_utc=DELIVERED, proof="浙江政务服务网公告 2026-001", policy=POLICY,
                 channel="announcement", now=DELIVERED)
    assert notice.channel == "announcement" and notice.served_on == date(2026, 7, 1)


def test_statement_before_service_is_accepted(sessions: sessionmaker[Session], sealed: Sealed,
                                             crew: Crew) -> None:
    case = notified(sessions, sealed, crew)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        workflow.add_statement(s, c, kind="statement", text="已知悉，申辩如下。", contact=None,
                               actor_label="owner", max_chars=100, now=utc(2026, 5, 25))


@pytest.mark.parametrize(("delivered", "ok"), [
    (utc(2026, 5, 19), False),  # before the notice was issued
    (utc(2030, 1, 1), False),  # in the future
    (ISSUED, True),
])
def test_service_time_must_be_between_issue_and_now(sessions: sessionmaker[Session],
                                                    sealed: Sealed, crew: Crew,
                                                    delivered: datetime, ok: bool) -> None:
    case = notified(sessions, sealed, crew)
    call = {"delivered_utc": delivered, "proof": "回证 01", "policy": POLICY,
            "now": utc(2026, 6, 1)}
    if not ok:
        with pytest.raises(InvalidInputError):
            act(sessions, case.id, procedure.serve_notice, crew.boss, **call)
        return
    act(sessions, case.id, procedure.serve_notice, crew.boss, **call)
    with pytest.raises(WorkflowError, match="already served"):
        act(sessions, case.id, procedure.serve_notice, crew.boss, **call)


# ---- Art. 62: waiver in a recorded act -------------------------------------------------

def test_recorded_waiver_allows_an_early_decision(sessions: sessionmaker[Session],
                                                 sealed: Sealed, crew: Crew) -> None:
    case = notified(sessions, sealed, crew)
    served(sessions, case.id, crew)
    early = utc(2026, 6, 2, 2)
    with pytest.raises(PermissionDeniedError):  # the table: legal reviewer records it
        act(sessions, case.id, procedure.waive, crew.boss, scope="all", record="声明",
            document_ref="F-000")
    with pytest.raises(InvalidInputError):
        act(sessions, case.id, procedure.waive, crew.legal, scope="statement", record="  ",
            document_ref="F-000")
    act(sessions, case.id, procedure.waive, crew.legal, scope="statement",
        record="当事人签署《放弃陈述申辩权利声明》", document_ref="F-001", now=early)
    with pytest.raises(DeadlineError, match="听证"):  # the hearing period still runs
        act(sessions, case.id, workflow.close_statements, crew.legal, now=early)
    act(sessions, case.id, procedure.waive, crew.legal, scope="hearing",
        record="当事人书面放弃听证", document_ref="F-002", now=early)
    act(sessions, case.id, workflow.close_statements, crew.legal, now=early)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None and c.state == "statements_closed"
        assert c.statement_waived_utc and c.hearing_waived_utc and c.waiver_record_zh
        actions = s.scalars(select(AuditEntry.action).where(
            AuditEntry.object_id == str(case.id))).all()
        assert actions.count("case.waiver") == 2


def test_requested_hearing_cannot_be_waived_by_the_office(sessions: sessionmaker[Session],
                                                         sealed: Sealed, crew: Crew) -> None:
    case = notified(sessions, sealed, crew)
    served(sessions, case.id, crew)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        workflow.add_statement(s, c, kind="hearing_request", text="申请听证", contact=None,
                               actor_label="owner", max_chars=100, now=utc(2026, 6, 2))
    with pytest.raises(WorkflowError, match="requested"):
        act(sessions, case.id, procedure.waive, crew.legal, scope="all", record="电话",
            document_ref="F-003")


# ---- Art. 44, 59: the served texts -----------------------------------------------------

def test_notice_and_decision_texts_state_the_art44_facts(sessions: sessionmaker[Session],
                                                         sealed: Sealed, crew: Crew) -> None:
    case = notified(sessions, sealed, crew, plate="浙J1T001")
    with transaction(sessions) as s:
        text = s.scalars(select(Notice.text_zh).where(Notice.case_id == case.id)).one()
    facts = sealed.manifest["case"]
    for expected in ("北京时间", "2025年06月01日 10:03:04", facts["site"]["name_zh"],
                     facts["site"]["road_zh"], facts["site"]["stake_zh"], "第2车道",
                     "六轴汽车列车", "62000", "7000", "11000", "限定标准为49000",
                     "计量允差", "超限", "浙J1T001", "陈述和申辩", "5个工作日",
                     "自收到本通知书之日起15日内", "第八十五条", "第六十二条"):
        assert expected in text, expected
    assert "combination_" not in text and "UTC" not in text
    assert "ZJ-G60-K123" not in text.split("证据包编号")[0]  # a place, not a site id


def test_decision_text_states_art59_items(sessions: sessionmaker[Session], sealed: Sealed,
                                          crew: Crew) -> None:
    case = decided(sessions, sealed, crew, outcome="reduced", fine=500)
    with transaction(sessions) as s:
        text = s.scalars(select(Decision.text_zh).where(Decision.case_id == case.id)).one()
    assert text is not None
    for expected in ("当事人", "六轴汽车列车", "证据包", "罚款人民币500元", "事实清楚",
                     "十五日内", "行政复议", "行政诉讼", "北京时间", "第五十九条"):
        assert expected in text, expected


# ---- Art. 48: 公示 --------------------------------------------------------------------

def test_only_fines_are_published_within_the_configured_period(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    warned = decided(sessions, sealed, crew, outcome="warning", fine=0)
    assert warned.publish_due is None
    with pytest.raises(WorkflowError, match="not published"):
        act(sessions, warned.id, workflow.publish, crew.boss)
    act(sessions, warned.id, workflow.archive, crew.boss)

    fined = decided(sessions, sealed, crew, outcome="reduced", fine=300)
    assert fined.publish_due == date(2026, 7, 10)  # 7 working days after Wed 1 July
    with pytest.raises(WorkflowError, match="公示"):
        act(sessions, fined.id, workflow.archive, crew.boss)
    with transaction(sessions) as s:
        late = [o for o in workflow.overdue_cases(s, now=utc(2026, 7, 11, 2))
                if o.case_id == fined.id]
        assert any("公示" in o.what_zh for o in late)
    act(sessions, fined.id, workflow.publish, crew.boss)


def test_revoked_decision_is_withdrawn_with_its_reason(sessions: sessionmaker[Session],
                                                       sealed: Sealed, crew: Crew) -> None:
    case = decided(sessions, sealed, crew, outcome="reduced", fine=300)
    act(sessions, case.id, workflow.publish, crew.boss)
    with transaction(sessions) as s:
        assert case.id in {d["case_id"] for d in owners.public_disclosures(s)}
    with pytest.raises(InvalidInputError):
        act(sessions, case.id, procedure.revoke, crew.boss, kind="revoked", reason="")
    act(sessions, case.id, procedure.revoke, crew.boss, kind="revoked",
        reason="行政复议决定撤销原处罚决定")
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None and c.state == "revoked"
        assert c.publication_withdrawn_utc is not None
        assert c.withdrawal_reason_zh and "行政复议" in c.withdrawal_reason_zh
        assert case.id not in {d["case_id"] for d in owners.public_disclosures(s)}
    act(sessions, case.id, workflow.archive, crew.boss)


# ---- 62号令 Art. 44: 抄告; 公路安全保护条例 Art. 66: referral --------------------------

def test_copy_notice_is_queued_sent_and_acknowledged(sessions: sessionmaker[Session],
                                                     sealed: Sealed, crew: Crew) -> None:
    case = decided(sessions, sealed, crew, outcome="reduced", fine=300, plate="浙J2C001")
    with transaction(sessions) as s:
        copy = s.scalars(select(CopyNotice).where(CopyNotice.case_id == case.id)).one()
        assert copy.due == date(2026, 7, 13)  # served Thu 2 July + 7 working days
        assert copy.authority_zh.startswith("浙江省浙J") and not copy.referral
        data = copy_notices.export_json(copy)
        assert data["format"] == "zhichao.copy-notice/1"
        assert data["plate"] == "浙J2C001" and data["vehicle_type_zh"] == "六轴汽车列车"
        assert "未采集" in data["driver_zh"] and "未采集" in data["loading_source_zh"]
        assert "罚款人民币300元" in data["decision"]["text_zh"]
        assert copy_notices.export_pdf(copy).startswith(b"%PDF")
        late = [o for o in workflow.overdue_cases(s, now=utc(2026, 7, 14, 2))
                if o.case_id == case.id]
        assert any("抄告" in o.what_zh for o in late)
        with pytest.raises(WorkflowError):
            copy_notices.mark(s, copy, what="acknowledged", actor="t", now=utc(2026, 7, 3))
        copy_notices.mark(s, copy, what="sent", actor="t", now=utc(2026, 7, 3))
        copy_notices.mark(s, copy, what="acknowledged", actor="t", now=utc(2026, 7, 6))
        assert not [o for o in workflow.overdue_cases(s, now=utc(2026, 7, 14, 2))
                    if o.case_id == case.id and "抄告" in o.what_zh]


def test_no_copy_for_education_and_referral_after_three(sessions: sessionmaker[Session],
                                                        sealed: Sealed, crew: Crew) -> None:
    educated = decided(sessions, sealed, crew, outcome="education", fine=0, plate="浙J3R000")
    with transaction(sessions) as s:
        assert s.scalars(select(CopyNotice).where(CopyNotice.case_id == educated.id)).first() \
            is None
    revoked = decided(sessions, sealed, crew, outcome="warning", fine=0, plate="浙J3R001",
                      time_utc=utc(2026, 2, 10, 2))
    act(sessions, revoked.id, procedure.revoke, crew.boss, kind="revoked", reason="复议撤销")
    referrals = []
    for month in (1, 3, 5, 6):  # four violations within one year (a revoked one not counted)
        case = decided(sessions, sealed, crew, outcome="warning", fine=0, plate="浙J3R001",
                       time_utc=utc(2026, month, 10, 2))
        with transaction(sessions) as s:
            copy = s.scalars(select(CopyNotice).where(CopyNotice.case_id == case.id)).one()
            referrals.append((copy.payload["violations_in_year"], copy.referral))
    assert referrals == [(1, False), (2, False), (3, False), (4, True)]


# ---- 个人信息保护法 Art. 19: retention --------------------------------------------------

def test_plates_of_passages_that_are_not_cases_are_removed(sessions: sessionmaker[Session],
                                                           sealed: Sealed, crew: Crew) -> None:
    case = new_case(sessions, sealed, plate="浙J4P001")
    record = dict(sealed.manifest["case"]["vehicle"], overloaded=False)
    now = utc(2026, 9, 1)
    with transaction(sessions) as s:
        old = ingest.register_passage(s, dict(record, time_utc="2026-07-01T00:00:00Z"),
                                      station_id="S001", plate="浙J4P002", plate_colour="黄",
                                      source_key="ret-old")
        new = ingest.register_passage(s, dict(record, time_utc="2026-08-20T00:00:00Z"),
                                      station_id="S001", plate="浙J4P003", plate_colour="黄",
                                      source_key="ret-new")
        case_row = s.get(Case, case.id)
        assert case_row is not None
        case_passage = s.get(Passage, case_row.passage_id)
        assert case_passage is not None
        case_passage.time_utc = utc(2026, 1, 1)
        ids = old.id, new.id, case_passage.id
    manifest = (sealed.directory / "manifest.json").read_bytes()
    with transaction(sessions) as s:
        with pytest.raises(InvalidInputError):
            retention.remove_expired_plates(s, retention_days=0, actor="t", now=now)
        count = retention.remove_expired_plates(s, retention_days=30, actor="cli:t", now=now)
        assert count >= 1
    with transaction(sessions) as s:
        rows = [s.get(Passage, i) for i in ids]
        assert rows[0] is not None and rows[0].plate is None and rows[0].plate_removed_utc
        assert rows[0].gross_weight_kg  # statistics keep the weights
        assert rows[1] is not None and rows[1].plate == "浙J4P003"
        assert rows[2] is not None and rows[2].plate == "浙J4P001"  # a case: untouched
        entry = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "retention.plates_removed").order_by(AuditEntry.id.desc())
        ).first()
        assert entry is not None and entry.detail["count"] == count
    assert (sealed.directory / "manifest.json").read_bytes() == manifest


def test_retention_command_removes_and_audits(tmp_path: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``zhichao retention run``: the periodic job (cron) of 个人信息保护法 Art. 19."""
    from zhichao.cli import main
    from zhichao.service.db import make_engine, session_factory, upgrade
    from zhichao.testing.cases import vehicle_dict

    url = f"sqlite:///{tmp_path / 'retention.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with transaction(session_factory(engine)) as s:
        ingest.register_passage(s, vehicle_dict(time_utc="2020-01-01T00:00:00Z"),
                                station_id="S001", plate="浙J4C001", plate_colour="黄")
    assert main(["retention", "run", "--db", url, "--days", "30"]) == 0
    assert "已删除 1 条" in capsys.readouterr().out
    assert main(["retention", "run", "--db", url, "--days", "0"]) == 1
    assert "保存期限" in capsys.readouterr().err
    with transaction(session_factory(engine)) as s:
        assert s.scalars(select(Passage.plate)).all() == [None]
        assert len(s.scalars(select(AuditEntry).where(
            AuditEntry.action == "retention.plates_removed")).all()) == 1
    engine.dispose()
