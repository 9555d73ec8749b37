"""Every transition, its permissions and deadlines, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tests.service.conftest import Sealed, new_case, new_user, utc
from zhichao.service import audit, procedure, workflow
from zhichao.service.db import transaction
from zhichao.service.errors import (
    ConcurrentUpdateError,
    DeadlineError,
    InvalidInputError,
    PermissionDeniedError,
    WorkflowError,
)
from zhichao.service.models import (
    AuditEntry,
    Case,
    CaseEvent,
    Decision,
    EvidenceEvent,
    Review,
    User,
)
from zhichao.service.workdays import CHINA_TZ, DeadlinePolicy

POLICY = DeadlinePolicy()
NOTIFY_AT = utc(2026, 2, 13, 2, 0)  # Friday 13 Feb 2026, 10:00 in Beijing
AFTER_DEADLINES = utc(2026, 3, 2, 2, 0)


class Crew:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.tech = new_user(sessions, "technical_reviewer")
        self.tech2 = new_user(sessions, "technical_reviewer")
        self.legal = new_user(sessions, "legal_reviewer")
        self.both = new_user(sessions, "technical_reviewer", "legal_reviewer")
        self.boss = new_user(sessions, "decision_maker")
        self.auditor = new_user(sessions, "auditor")
        self.operator = new_user(sessions, "station_operator", station_id="S001")
        self.local_tech = new_user(sessions, "technical_reviewer", station_id="S001")


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
        return result if not isinstance(result, Case) else case


def serve_notice(sessions: sessionmaker[Session], case_id: int, crew: Crew,
                 delivered: Any = NOTIFY_AT) -> Any:
    """Record service the day the notice was sent (an SMS arriving at once)."""
    return act(sessions, case_id, procedure.serve_notice, crew.boss, delivered_utc=delivered,
               proof="短信送达回执 0001", policy=POLICY, now=delivered + timedelta(minutes=1))


def to_notified(sessions: sessionmaker[Session], sealed: Sealed, crew: Crew,
                **case_kw: Any) -> Case:
    case = new_case(sessions, sealed, **case_kw)
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    act(sessions, case.id, workflow.open_and_notify, crew.boss, channel="sms", policy=POLICY,
        hearing_right=True, now=NOTIFY_AT)
    serve_notice(sessions, case.id, crew)
    with transaction(sessions) as s:
        got = s.get(Case, case.id)
        assert got is not None
        return got


def test_full_walk_logs_every_transition(sessions: sessionmaker[Session], sealed: Sealed,
                                         crew: Crew) -> None:
    case = new_case(sessions, sealed)
    assert case.state == "technical_review"
    assert case.proposed_outcome == "fine" and case.proposed_fine_yuan
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True,
        expected_version=case.version)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    notice = act(sessions, case.id, workflow.open_and_notify, crew.boss, channel="sms",
                 policy=POLICY, hearing_right=False, now=NOTIFY_AT)
    assert notice.statement_due is None  # Art. 44: the periods run from service
    assert "陈述和申辩" in notice.text_zh and "北京时间" in notice.text_zh
    notice = serve_notice(sessions, case.id, crew)
    assert notice.statement_due == date(2026, 2, 28) and notice.hearing_request_due is None
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None and c.decision_due == date(2026, 5, 14)  # 13 Feb + 90 days
        st = workflow.add_statement(s, c, kind="statement", text="车辆未超载，请复核。",
                                    contact=None, actor_label="owner", max_chars=5000,
                                    now=NOTIFY_AT + timedelta(days=3))
        statement_id = st.id
    with pytest.raises(WorkflowError, match="not answered"):
        act(sessions, case.id, workflow.close_statements, crew.legal, now=AFTER_DEADLINES)
    act(sessions, case.id, workflow.answer_statement, crew.legal, statement_id=statement_id,
        response="经复核，称重数据有效。")
    act(sessions, case.id, workflow.close_statements, crew.legal, now=AFTER_DEADLINES)
    decision = act(sessions, case.id, workflow.decide, crew.boss, outcome="fine",
                   fine_yuan=case.proposed_fine_yuan, reasons="事实清楚，证据确凿。",
                   now=AFTER_DEADLINES)
    assert isinstance(decision, Decision)
    act(sessions, case.id, workflow.serve, crew.boss, channel="post",
        now=AFTER_DEADLINES + timedelta(days=1))
    act(sessions, case.id, workflow.publish, crew.boss)
    act(sessions, case.id, workflow.archive, crew.boss)
    with transaction(sessions) as s:
        events = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)
                           .order_by(CaseEvent.id)).all()
        assert [e.to_state for e in events] == [
            "legal_review", "approved", "notified", "statements_closed", "decided", "served",
            "published", "archived"]
        assert all(e.actor_label.startswith("user:") and e.time_utc.tzinfo for e in events)
        transitions = s.scalars(select(AuditEntry).where(
            AuditEntry.object_id == str(case.id), AuditEntry.action == "case.transition")).all()
        assert len(transitions) == len(events)
        assert audit.verify_chain(s) == []


@pytest.mark.parametrize("stage", ["technical", "legal"])
def test_rejection_needs_a_reason_and_keeps_the_case(sessions: sessionmaker[Session],
                                                     sealed: Sealed, crew: Crew,
                                                     stage: str) -> None:
    case = new_case(sessions, sealed)
    if stage == "legal":
        act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    fn = workflow.technical_review if stage == "technical" else workflow.legal_review
    user = crew.tech if stage == "technical" else crew.legal
    for reason in (None, "   "):
        with pytest.raises(InvalidInputError, match="reason"):
            act(sessions, case.id, fn, user, approve=False, reason=reason)
    act(sessions, case.id, fn, user, approve=False, reason="号牌不清晰")
    with transaction(sessions) as s:
        got = s.get(Case, case.id)
        assert got is not None and got.state == "rejected"
        assert got.events[-1].reason_zh == "号牌不清晰"
    act(sessions, case.id, workflow.archive, crew.legal)


def test_roles_are_checked_at_every_transition(sessions: sessionmaker[Session], sealed: Sealed,
                                               crew: Crew) -> None:
    case = new_case(sessions, sealed)
    for user in (crew.legal, crew.boss, crew.auditor, crew.operator):
        with pytest.raises(PermissionDeniedError):
            act(sessions, case.id, workflow.technical_review, user, approve=True)
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    for user in (crew.tech, crew.boss, crew.auditor):
        with pytest.raises(PermissionDeniedError):
            act(sessions, case.id, workflow.legal_review, user, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    for user in (crew.tech, crew.legal, crew.auditor):
        with pytest.raises(PermissionDeniedError):
            act(sessions, case.id, workflow.open_and_notify, user, channel="sms",
                policy=POLICY, hearing_right=True)
    notified = to_notified(sessions, sealed, crew)
    with pytest.raises(PermissionDeniedError):
        act(sessions, notified.id, workflow.close_statements, crew.boss, now=AFTER_DEADLINES)


def test_wrong_state_is_refused(sessions: sessionmaker[Session], sealed: Sealed,
                                crew: Crew) -> None:
    case = new_case(sessions, sealed)
    with pytest.raises(WorkflowError) as info:
        act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    assert "待技术审核" in info.value.message_zh
    with pytest.raises(WorkflowError):
        act(sessions, case.id, workflow.decide, crew.boss, outcome="fine", fine_yuan=1,
            reasons="x")
    with pytest.raises(WorkflowError):
        act(sessions, case.id, workflow.archive, crew.boss)


def test_four_eyes(sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case = new_case(sessions, sealed)
    act(sessions, case.id, workflow.technical_review, crew.both, approve=True)
    with pytest.raises(PermissionDeniedError, match="four eyes"):
        act(sessions, case.id, workflow.legal_review, crew.both, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)


def test_nobody_reviews_their_own_stations_manual_override(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case = new_case(sessions, sealed)
    other_station = new_user(sessions, "station_operator", station_id="S777")
    with pytest.raises(PermissionDeniedError):
        act(sessions, case.id, workflow.mark_manual_override, other_station, reason="人工识别")
    with pytest.raises(InvalidInputError):
        act(sessions, case.id, workflow.mark_manual_override, crew.operator, reason="")
    act(sessions, case.id, workflow.mark_manual_override, crew.operator,
        reason="号牌由人工识别为浙J12345")
    with pytest.raises(PermissionDeniedError, match="own station"):
        act(sessions, case.id, workflow.technical_review, crew.local_tech, approve=True,
            reason="已核对")
    act(sessions, case.id, workflow.technical_review, crew.tech2, approve=True, reason="已核对")


def test_manual_review_cases_need_a_reason_to_approve(sessions: sessionmaker[Session],
                                                      sealed: Sealed, crew: Crew) -> None:
    case = new_case(sessions, sealed, status="MANUAL_REVIEW")
    with pytest.raises(InvalidInputError):
        act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True,
        reason="人工核对图像，轴数一致")


def test_undetermined_hearing_right_must_be_decided_by_a_person(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    penalty = dict(sealed.manifest["case"]["penalty"], hearing_right=None)
    case = new_case(sessions, sealed, penalty=penalty)
    assert case.hearing_right == "undetermined"
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    with pytest.raises(InvalidInputError, match="hearing_right"):
        act(sessions, case.id, workflow.open_and_notify, crew.boss, channel="sms",
            policy=POLICY, now=NOTIFY_AT)
    notice = act(sessions, case.id, workflow.open_and_notify, crew.boss, channel="sms",
                 policy=POLICY, hearing_right=True, now=NOTIFY_AT)
    notice = serve_notice(sessions, case.id, crew)
    assert notice.hearing_request_due == date(2026, 2, 27)  # 5 working days over 春节


def test_deadlines_for_statements_hearings_and_decisions(sessions: sessionmaker[Session],
                                                         sealed: Sealed, crew: Crew) -> None:
    case = to_notified(sessions, sealed, crew)
    assert case.statement_due == date(2026, 2, 28)
    assert case.hearing_request_due == date(2026, 2, 27)
    late_hearing = utc(2026, 2, 27, 16, 30)  # 28 Feb 00:30 in Beijing
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        with pytest.raises(DeadlineError, match="hearing"):
            workflow.add_statement(s, c, kind="hearing_request", text="申请听证", contact=None,
                                   actor_label="owner", max_chars=100, now=late_hearing)
        workflow.add_statement(s, c, kind="statement", text="最后一天提交", contact=None,
                               actor_label="owner", max_chars=100, now=late_hearing)
    with pytest.raises(DeadlineError):  # statement period still running on 28 Feb
        act(sessions, case.id, workflow.close_statements, crew.legal, now=late_hearing)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        with pytest.raises(DeadlineError, match="statement"):
            workflow.add_statement(s, c, kind="statement", text="晚了", contact=None,
                                   actor_label="owner", max_chars=100, now=AFTER_DEADLINES)


def test_requested_hearing_must_be_held_before_closing(sessions: sessionmaker[Session],
                                                       sealed: Sealed, crew: Crew) -> None:
    case = to_notified(sessions, sealed, crew)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        workflow.add_statement(s, c, kind="hearing_request", text="申请听证", contact=None,
                               actor_label="owner", max_chars=100, now=NOTIFY_AT)
    with pytest.raises(WorkflowError) as info:
        act(sessions, case.id, workflow.close_statements, crew.legal, now=AFTER_DEADLINES)
    with transaction(sessions) as s:  # the hearing request counts as a statement to answer
        c = s.get(Case, case.id)
        assert c is not None
        st = s.scalars(select(workflow.Statement).where(
            workflow.Statement.case_id == c.id)).one()
        workflow.answer_statement(s, c, s.get(User, crew.legal.id), statement_id=st.id,
                                  response="定于3月3日举行听证")
    with pytest.raises(WorkflowError) as info:
        act(sessions, case.id, workflow.close_statements, crew.legal, now=AFTER_DEADLINES)
    assert "听证" in info.value.message_zh
    act(sessions, case.id, workflow.record_hearing, crew.legal,
        held_utc=utc(2026, 3, 3, 2), summary="当事人到场陈述", now=utc(2026, 3, 4))
    act(sessions, case.id, workflow.close_statements, crew.legal, now=utc(2026, 3, 4))


@pytest.mark.parametrize(("outcome", "fine", "ok"), [
    ("fine", "proposed", True), ("fine", "proposed+1", False), ("reduced", "half", True),
    ("reduced", "proposed", False), ("reduced", "proposed+1", False), ("warning", 0, True),
    ("no_penalty", 0, True), ("no_penalty", 100, False), ("made_up", 0, False),
])
def test_decision_never_heavier_than_proposed(sessions: sessionmaker[Session], sealed: Sealed,
                                              crew: Crew, outcome: str, fine: Any,
                                              ok: bool) -> None:
    case = to_notified(sessions, sealed, crew)
    act(sessions, case.id, workflow.close_statements, crew.legal, now=AFTER_DEADLINES)
    proposed = case.proposed_fine_yuan or 0
    amount = {"proposed": proposed, "proposed+1": proposed + 1,
              "half": proposed // 2}.get(fine, fine)
    with pytest.raises(InvalidInputError, match="reasons"):
        act(sessions, case.id, workflow.decide, crew.boss, outcome=outcome, fine_yuan=amount,
            reasons=" ")
    if ok:
        d = act(sessions, case.id, workflow.decide, crew.boss, outcome=outcome,
                fine_yuan=amount, reasons="依法裁量", now=AFTER_DEADLINES)
        assert d.fine_yuan == amount
    else:
        with pytest.raises(InvalidInputError):
            act(sessions, case.id, workflow.decide, crew.boss, outcome=outcome,
                fine_yuan=amount, reasons="依法裁量")


def test_stale_expected_version_is_refused(sessions: sessionmaker[Session], sealed: Sealed,
                                           crew: Crew) -> None:
    case = new_case(sessions, sealed)
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    with pytest.raises(ConcurrentUpdateError):
        act(sessions, case.id, workflow.legal_review, crew.legal, approve=True,
            expected_version=case.version)


def test_two_concurrent_sessions_cannot_both_decide(sessions: sessionmaker[Session],
                                                    sealed: Sealed, crew: Crew) -> None:
    """Two reviewers open the same case (version 1) in two real sessions, then both submit
    at the same moment from two threads: exactly one commit wins, the other is refused."""
    case = new_case(sessions, sealed)
    other = new_user(sessions, "technical_reviewer")
    opened: list[tuple[Session, Case]] = []
    for _ in range(2):
        s = sessions()
        loaded = s.get(Case, case.id)
        assert loaded is not None and loaded.version == case.version
        s.commit()  # the page is shown; the loaded (soon stale) object stays in the session
        opened.append((s, loaded))
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def review(name: str, slot: int, user: User, approve: bool) -> None:
        s, loaded = opened[slot]
        start.wait(timeout=10)
        try:
            with s.begin():
                workflow.technical_review(s, loaded, s.get(User, user.id), approve=approve,
                                          reason="并发测试", expected_version=case.version)
            outcomes[name] = "committed"
        except StaleDataError:
            outcomes[name] = "conflict"
        except ConcurrentUpdateError:
            outcomes[name] = "conflict"
        finally:
            s.close()

    threads = [threading.Thread(target=review, args=("a", 0, crew.tech, True)),
               threading.Thread(target=review, args=("b", 1, other, False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes.values()) == ["committed", "conflict"], outcomes
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None and c.version == case.version + 1
        assert len(c.events) == 1
        assert s.scalar(select(func.count()).select_from(Review)
                        .where(Review.case_id == case.id)) == 1


def test_overdue_cases_are_surfaced(sessions: sessionmaker[Session], sealed: Sealed,
                                    crew: Crew) -> None:
    case = to_notified(sessions, sealed, crew)
    with transaction(sessions) as s:
        early = {o.case_id for o in workflow.overdue_cases(s, now=NOTIFY_AT)}
        waiting = [o for o in workflow.overdue_cases(s, now=AFTER_DEADLINES)
                   if o.case_id == case.id]
        late = [o for o in workflow.overdue_cases(s, now=utc(2026, 5, 15, 2))
                if o.case_id == case.id]
    assert case.id not in early
    assert waiting and "陈述申辩期限已届满" in waiting[0].what_zh
    assert late and "第六十条" in late[0].what_zh and late[0].due == date(2026, 5, 14)


# ---- separation of duties (duties.DUTIES), checked at every transition -----------------

def _walk_to(sessions: sessionmaker[Session], sealed: Sealed, crew: Crew, tech: User,
             before: str) -> Case:
    """A case technically reviewed by ``tech`` and walked (by others) up to ``before``."""
    case = new_case(sessions, sealed)
    act(sessions, case.id, workflow.technical_review, tech, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    steps: list[tuple[str, Any, dict[str, Any]]] = [
        ("notify", workflow.open_and_notify,
         {"channel": "sms", "policy": POLICY, "hearing_right": False, "now": NOTIFY_AT}),
        ("serve-notice", procedure.serve_notice,
         {"delivered_utc": NOTIFY_AT, "proof": "回执", "policy": POLICY,
          "now": NOTIFY_AT + timedelta(minutes=1)}),
        ("close-statements", workflow.close_statements, {"now": AFTER_DEADLINES}),
        ("decision", workflow.decide, {"outcome": "reduced", "fine_yuan": 100,
                                       "reasons": "依法裁量", "now": AFTER_DEADLINES}),
        ("serve", workflow.serve, {"channel": "post",
                                   "now": AFTER_DEADLINES + timedelta(days=1)}),
        ("publish", workflow.publish, {}),
    ]
    for action, fn, kw in steps:
        if action == before:
            break
        act(sessions, case.id, fn, crew.legal if action == "close-statements" else crew.boss,
            **kw)
    with transaction(sessions) as s:
        got = s.get(Case, case.id)
        assert got is not None
        return got


DECIDING_STEPS: list[tuple[str, Any, dict[str, Any]]] = [
    ("notify", workflow.open_and_notify,
     {"channel": "sms", "policy": POLICY, "hearing_right": False, "now": NOTIFY_AT}),
    ("serve-notice", procedure.serve_notice,
     {"delivered_utc": NOTIFY_AT, "proof": "回执", "policy": POLICY,
      "now": NOTIFY_AT + timedelta(minutes=1)}),
    ("decision", workflow.decide,
     {"outcome": "reduced", "fine_yuan": 100, "reasons": "依法裁量", "now": AFTER_DEADLINES}),
    ("serve", workflow.serve, {"channel": "post", "now": AFTER_DEADLINES + timedelta(days=1)}),
    ("publish", workflow.publish, {}),
    ("revoke", procedure.revoke, {"kind": "revoked", "reason": "经行政复议撤销"}),
]


@pytest.mark.parametrize(("action", "fn", "kw"), DECIDING_STEPS,
                         ids=[s[0] for s in DECIDING_STEPS])
def test_technical_reviewer_who_is_also_decision_maker_is_refused(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew, action: str, fn: Any,
        kw: dict[str, Any]) -> None:
    """Issue 18: a user with both roles reviewed a case, then opened, served and published
    it. Every step that carries the decision is refused to them, with the reason in zh-CN;
    another decision maker does it."""
    dual = new_user(sessions, "technical_reviewer", "decision_maker")
    case = _walk_to(sessions, sealed, crew, dual, before=action)
    with pytest.raises(PermissionDeniedError, match="four eyes") as info:
        act(sessions, case.id, fn, dual, **kw)
    assert info.value.http_status == 403
    assert "技术审核人" in info.value.message_zh and "第五十七条" in info.value.message_zh
    with transaction(sessions) as s:
        unchanged = s.get(Case, case.id)
        assert unchanged is not None and unchanged.version == case.version
    act(sessions, case.id, fn, crew.boss, **kw)


def test_legal_reviewer_who_is_also_decision_maker_is_refused(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    dual = new_user(sessions, "legal_reviewer", "decision_maker")
    case = new_case(sessions, sealed)
    act(sessions, case.id, workflow.technical_review, crew.tech, approve=True)
    act(sessions, case.id, workflow.legal_review, dual, approve=True)
    with pytest.raises(PermissionDeniedError) as info:
        act(sessions, case.id, workflow.open_and_notify, dual, channel="sms", policy=POLICY,
            hearing_right=False, now=NOTIFY_AT)
    assert "法制审核人" in info.value.message_zh
    act(sessions, case.id, workflow.open_and_notify, crew.boss,
        channel="sms", policy=POLICY, hearing_right=False, now=NOTIFY_AT)


def test_technical_reviewer_does_not_record_the_hearing(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    """Art. 64(4): the hearing is held by someone who did not investigate the case."""
    case = new_case(sessions, sealed)
    act(sessions, case.id, workflow.technical_review, crew.both, approve=True)
    act(sessions, case.id, workflow.legal_review, crew.legal, approve=True)
    act(sessions, case.id, workflow.open_and_notify, crew.boss, channel="sms", policy=POLICY,
        hearing_right=True, now=NOTIFY_AT)
    serve_notice(sessions, case.id, crew)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        workflow.add_statement(s, c, kind="hearing_request", text="申请听证", contact=None,
                               actor_label="owner", max_chars=100, now=NOTIFY_AT)
    with pytest.raises(PermissionDeniedError, match="four eyes") as info:
        act(sessions, case.id, workflow.record_hearing, crew.both,
            held_utc=utc(2026, 3, 3, 2), summary="听证", now=utc(2026, 3, 4))
    assert "第六十四条" in info.value.message_zh
    act(sessions, case.id, workflow.record_hearing, crew.legal,
        held_utc=utc(2026, 3, 3, 2), summary="听证", now=utc(2026, 3, 4))


def test_every_barred_part_of_the_table_is_enforced(sessions: sessionmaker[Session],
                                                    sealed: Sealed, crew: Crew) -> None:
    """The table and the checks agree: for each action and each earlier part it bars, a
    user who took that part (and holds the action's roles) is refused by ``duties.check``,
    and one who did not is let through."""
    from zhichao.service import duties

    checked = 0
    for row in duties.DUTIES.values():
        for part in row.barred:
            with transaction(sessions) as s:
                user = s.get(User, new_user(sessions, *row.roles, station_id="S001").id)
                assert user is not None
                case = Case(id=10**6, state=row.from_states[0], station_id="S001",
                            technical_reviewer_id=user.id if part == "technical_review"
                            else None,
                            legal_reviewer_id=user.id if part == "legal_review" else None,
                            manual_override=part == "manual_override",
                            manual_override_by=user.id if part == "manual_override"
                            else None)
                with pytest.raises(PermissionDeniedError):
                    duties.check(row.action, user, case)
                assert not duties.may(row.action, user, case)
                other = Case(id=10**6, state=row.from_states[0], station_id="S002",
                             manual_override=False)
                duties.check(row.action, user, other)
                assert duties.may(row.action, user, other)
                s.expunge_all()
                checked += 1
    assert checked >= 12


def test_every_staff_transition_starts_from_the_duties_table() -> None:
    """Each workflow function a staff member calls (``user: User``) starts with
    ``_start(<action>, ...)`` on an action of ``duties.DUTIES``, and every action of the
    table has its function: no transition can skip the role and separation checks."""
    import ast
    import inspect

    from zhichao.service import duties

    started: dict[str, str] = {}
    functions = [fn for module in (workflow, procedure)
                 for fn in ast.parse(inspect.getsource(module)).body]
    for fn in functions:
        if not isinstance(fn, ast.FunctionDef) or fn.name.startswith("_"):
            continue
        if "user" not in [a.arg for a in fn.args.args]:
            continue
        calls = [c for c in ast.walk(fn) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name) and c.func.id == "_start"]
        assert calls, f"{fn.name} does not check the duties table"
        first = calls[0].args[0]
        assert isinstance(first, ast.Constant) and first.value in duties.DUTIES, fn.name
        started[fn.name] = first.value
    assert sorted(started.values()) == sorted(duties.DUTIES), started


def test_a_hearing_is_recorded_once_and_after_its_request(sessions: sessionmaker[Session],
                                                          sealed: Sealed, crew: Crew) -> None:
    case = to_notified(sessions, sealed, crew)
    asked = NOTIFY_AT + timedelta(days=2)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        workflow.add_statement(s, c, kind="hearing_request", text="申请听证", contact=None,
                               actor_label="owner", max_chars=100, now=asked)
    for held, text in ((asked - timedelta(hours=1), "不得早于当事人申请听证的时间"),
                       (utc(2026, 3, 5), "不得晚于当前时间"),
                       (datetime(1, 1, 1, tzinfo=CHINA_TZ), "须在 2000 年至 2100 年之间")):
        with pytest.raises(InvalidInputError) as info:
            act(sessions, case.id, workflow.record_hearing, crew.legal, held_utc=held,
                summary="听证", now=utc(2026, 3, 4))
        assert text in info.value.message_zh
    act(sessions, case.id, workflow.record_hearing, crew.legal,
        held_utc=utc(2026, 3, 3, 2), summary="当事人到场陈述", now=utc(2026, 3, 4))
    with pytest.raises(WorkflowError, match="already recorded") as refused:
        act(sessions, case.id, workflow.record_hearing, crew.legal,
            held_utc=utc(2026, 3, 3, 5), summary="改写的笔录", now=utc(2026, 3, 4))
    assert "不得覆盖" in refused.value.message_zh and refused.value.http_status == 409
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None and c.hearing_held_utc == utc(2026, 3, 3, 2)
        assert c.hearing_summary_zh == "当事人到场陈述"


def test_a_statement_is_answered_once_and_the_answer_is_logged(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case = to_notified(sessions, sealed, crew)
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        statement_id = workflow.add_statement(
            s, c, kind="statement", text="请复核", contact=None, actor_label="owner",
            max_chars=100, now=NOTIFY_AT + timedelta(days=1)).id
    act(sessions, case.id, workflow.answer_statement, crew.legal, statement_id=statement_id,
        response="经复核，称重数据有效。")
    with pytest.raises(WorkflowError, match="already answered") as refused:
        act(sessions, case.id, workflow.answer_statement, crew.legal,
            statement_id=statement_id, response="改口的答复")
    assert refused.value.http_status == 409 and "不得修改" in refused.value.message_zh
    with transaction(sessions) as s:
        st = s.get(workflow.Statement, statement_id)
        assert st is not None and st.response_zh == "经复核，称重数据有效。"
        entries = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "case.statement_answered",
            AuditEntry.object_id == str(case.id))).all()
        assert [e.detail["response"] for e in entries] == ["经复核，称重数据有效。"]
        answered = s.scalars(select(EvidenceEvent).where(
            EvidenceEvent.case_id == case.id, EvidenceEvent.outcome == "answered")).all()
        assert [e.reason_zh for e in answered] == ["经复核，称重数据有效。"]


def test_a_decision_is_served_after_it_was_made_and_not_in_the_future(
        sessions: sessionmaker[Session], sealed: Sealed, crew: Crew) -> None:
    case = to_notified(sessions, sealed, crew)
    act(sessions, case.id, workflow.close_statements, crew.legal, now=AFTER_DEADLINES)
    act(sessions, case.id, workflow.decide, crew.boss, outcome="warning", fine_yuan=0,
        reasons="首次违法", now=AFTER_DEADLINES)
    now = AFTER_DEADLINES + timedelta(days=1)
    for served, text in ((AFTER_DEADLINES - timedelta(days=1), "不得早于作出决定的时间"),
                         (now + timedelta(hours=1), "不得晚于当前时间"),
                         (datetime(9999, 12, 31, 23, tzinfo=CHINA_TZ), "须在 2000 年")):
        with pytest.raises(InvalidInputError) as info:
            act(sessions, case.id, workflow.serve, crew.boss, channel="post",
                served_utc=served, now=now)
        assert text in info.value.message_zh
    act(sessions, case.id, workflow.serve, crew.boss, channel="post",
        served_utc=AFTER_DEADLINES + timedelta(hours=3), now=now)
    with transaction(sessions) as s:
        d = s.scalars(select(Decision).where(Decision.case_id == case.id)).one()
        assert d.served_utc == AFTER_DEADLINES + timedelta(hours=3)


def test_typed_text_counts_a_crlf_as_one_character_and_names_fields_in_chinese() -> None:
    assert workflow._text("甲\r\n乙", "text", required=True, max_chars=3) == "甲\n乙"
    with pytest.raises(InvalidInputError) as info:
        workflow._text("甲\r\n乙丙", "text", required=True, max_chars=3)
    assert info.value.message_zh.startswith("陈述申辩内容不得超过 3 个字符")
    for field, label in (("reasons", "决定理由"), ("response", "答复内容"), ("proof", "送达凭证"),
                         ("record", "当事人放弃权利的记录"), ("reason", "理由")):
        with pytest.raises(InvalidInputError) as info:
            workflow._text("  ", field, required=True)
        assert info.value.message_zh == f"请填写{label}"
