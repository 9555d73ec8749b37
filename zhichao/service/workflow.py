"""The case workflow: a state machine in which every transition is logged.

States (``STATES_ZH``)::

    technical_review ──技术审核──▶ legal_review ──法制审核──▶ approved ──不予立案 (withdraw,
          │ reject (reason)            │ reject (reason)          │        reason)──▶ rejected
          │                            │                          │ 立案并告知 (open_and_notify)
          ▼                            ▼                          ▼
       rejected ─────────────▶ archived ◀── published ◀── served ◀── decided ◀── statements_closed
                                                                                    ▲
                                          notified ──陈述申辩/听证处理完毕 (close_statements)──┘

Rules enforced here (not in the routes):

* Role per transition and separation of duties, from one table (``duties.DUTIES``, checked
  by ``_start`` at every transition): the legal reviewer is not the technical reviewer;
  whoever opens, decides, serves or publishes a case reviewed none of it; nobody reviews a
  manual override made at their own station; the hearing is not recorded by the case's
  technical reviewer (Art. 64).
* An approved case the record can no longer support (Art. 40: a later no-penalty
  re-weighing, the register's device or site, the Art. 36 limitation) is not stuck: the
  decision maker records 不予立案 (``withdraw``) with a reason and it goes to ``rejected``.
* A rejection always needs a reason; a decision always needs reasons, is never heavier
  than the rules' proposal (行政处罚法 Art. 45: defending may not lead to a heavier
  penalty), and is made only after the statement and hearing periods are over and every
  statement has been answered (Art. 44, 45, 62–64).
* An undecided hearing right (no threshold configured) must be decided by a human when the
  case is opened; it is never assumed.
* The statement and hearing periods run from service of the notice (``procedure.py``:
  serve-notice, waiver, revocation); 公示 only for ``PUBLISHED_OUTCOMES``, by
  ``Case.publish_due``; serving a penalty queues its 抄告 (``copy_notices.py``); a decided,
  served or published case may end ``revoked`` (Art. 48).
* Optimistic locking: ``expected_version`` must equal ``Case.version``; a concurrent
  change in another session makes the commit fail (``ConcurrentUpdateError``).
* Cases are never deleted (database trigger); every transition writes a ``CaseEvent``
  and an audit-log entry in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.evidence.events import EventType
from zhichao.service import audit, copy_notices, duties, events, legal_checks, notices, reweigh
from zhichao.service.accounts import user_label
from zhichao.service.errors import (
    ConcurrentUpdateError,
    DeadlineError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    WorkflowError,
)
from zhichao.service.inputs import beijing_minute_zh, check_time, label_zh
from zhichao.service.models import (
    AuditEntry,
    Case,
    CaseEvent,
    Decision,
    Notice,
    Review,
    Statement,
    User,
)
from zhichao.service.workdays import DeadlinePolicy, china_date

STATES_ZH: dict[str, str] = {
    "technical_review": "待技术审核",
    "legal_review": "待法制审核",
    "rejected": "不予立案（审核未通过，或审核通过后发现不得处罚）",
    "approved": "审核通过，待立案告知",
    "notified": "已立案并告知，陈述申辩期",
    "statements_closed": "陈述申辩、听证已处理，待决定",
    "decided": "已作出决定，待送达",
    "served": "决定书已送达",
    "published": "已结案并公示",
    "revoked": "决定已被变更、撤销或确认违法、无效",
    "archived": "已归档",
}
OUTCOMES_ZH: dict[str, str] = {
    "fine": "罚款（按规则建议金额）",
    "reduced": "减轻罚款",
    "warning": "警告",
    "education": "批评教育，不予罚款",
    "no_penalty": "不予行政处罚",
}
PROPOSED_ZH = {"fine": "罚款", "warning": "警告", "education": "批评教育", "none": "不予处罚"}
CHANNELS = ("app", "sms", "post", "in_person", "announcement")
# How each channel is served, and what marks the moment of service (行政处罚法 Art. 61,
# applying the 民事诉讼法 service rules, Art. 95 for announcements): the officer records
# that moment (serve-notice). The article numbers of the other rules are unconfirmed.
SERVICE_ZH: dict[str, str] = {
    "in_person": "直接送达：以受送达人在送达回证上签收的日期为送达日期",
    "post": "邮寄送达：以邮件交付受送达人（签收）的日期为送达日期",
    "app": "电子送达（当事人同意的系统）：以送达信息到达该系统的日期为送达日期",
    "sms": "电子送达（当事人同意的号码）：以短信到达的日期为送达日期",
    "announcement": "公告送达：自公告发出之日起经过三十日，视为送达",
}
# Decisions published (公示, Art. 48: 具有一定社会影响的行政处罚决定应当依法公开). Which
# decisions have "一定社会影响" is not settled: fines are published, warnings, education and
# no-penalty decisions are not. UNCONFIRMED: a deployment sets its own list.
PUBLISHED_OUTCOMES = ("fine", "reduced")
# The outcomes that are administrative penalties (行政处罚法 Art. 9): a static re-weighing
# that proposes no penalty stops their service and publication.
PENALTY_OUTCOMES = ("fine", "reduced", "warning")
OWNER_VISIBLE_STATES = ("notified", "statements_closed", "decided", "served", "published",
                        "revoked", "archived")
"""States an owner may see a case in, **once it was notified** (``opened_utc`` set at
立案告知, :func:`owner_visible`): an archived case that was never notified (rejected at a
review, or 不予立案) is no matter of the owner's and would show its proposed penalty."""


def owner_visible(case: Case) -> bool:
    """Whether the vehicle's owner may see ``case`` (:data:`OWNER_VISIBLE_STATES`)."""
    return case.state in OWNER_VISIBLE_STATES and case.opened_utc is not None


def _text(value: str | None, field: str, *, required: bool, max_chars: int = 2000) -> str | None:
    """Typed text, stripped, with CRLF as LF (a browser sends a textarea's line breaks as
    CRLF but its ``maxlength`` counts each as one character: so do we); zh-CN refusals
    name the field by its label (``inputs.FIELDS_ZH``)."""
    label = label_zh(field)
    if value is None or not value.strip():
        if required:
            raise InvalidInputError(f"{field}: required", f"请填写{label}")
        return None
    value = value.replace("\r\n", "\n").strip()
    if len(value) > max_chars:
        raise InvalidInputError(f"{field}: at most {max_chars} characters",
                                f"{label}不得超过 {max_chars} 个字符（现为 {len(value)} 个）")
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise InvalidInputError(f"{field}: control characters", f"{label}含有非法控制字符")
    return value


def get_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFoundError(f"case {case_id} does not exist", "案件不存在")
    return case


def _check_version(case: Case, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != case.version:
        raise ConcurrentUpdateError(
            f"case {case.id}: version {case.version}, expected {expected_version}")


def _require_state(case: Case, *states: str) -> None:
    if case.state not in states:
        allowed = "、".join(STATES_ZH[s] for s in states)
        raise WorkflowError(f"case {case.id} is {case.state}; needs {'|'.join(states)}",
                            f"案件当前为“{STATES_ZH[case.state]}”，此操作仅限：{allowed}")


def _transition(session: Session, case: Case, to_state: str, *, actor: User | None,
                actor_label: str, reason: str | None, now: datetime,
                detail: dict[str, Any] | None = None,
                event: tuple[EventType, str, str] | None = None) -> None:
    """Change state, log a CaseEvent and an audit entry; ``event`` = (type, outcome,
    default reason) also queues it for the evidence log."""
    if event is not None:
        events.enqueue(session, case, event_type=event[0], actor=events.actor_id(actor),
                       outcome=event[1], reason_zh=reason or event[2], now=now,
                       details={"state": to_state, **(detail or {})})
    from_state = case.state
    case.state = to_state
    case.updated_utc = now
    session.add(CaseEvent(case_id=case.id, from_state=from_state, to_state=to_state,
                          actor_id=None if actor is None else actor.id,
                          actor_label=actor_label, time_utc=now, reason_zh=reason))
    audit.append(session, actor=actor_label, action="case.transition", object_type="case",
                 object_id=str(case.id), now=now,
                 detail={"from": from_state, "to": to_state, "reason": reason,
                         **(detail or {})})


def _start(action: str, case: Case, user: User, expected_version: int | None = None,
           *, check_version: bool = True) -> None:
    """Every transition starts here: role and separation of duties (``duties.DUTIES``),
    then the version the user saw, then the state the action starts from."""
    row = duties.check(action, user, case)
    if check_version:
        _check_version(case, expected_version)
    _require_state(case, *row.from_states)


def mark_manual_override(session: Session, case: Case, user: User, *, reason: str,
                         expected_version: int | None = None,
                         now: datetime | None = None) -> Case:
    """A station operator records a manual correction (e.g. a plate read by a person)."""
    now = now or utc_now()
    _start("manual-override", case, user, expected_version)
    if user.station_id != case.station_id:
        raise PermissionDeniedError("operator of another station", "只能修正本站点的记录")
    case.manual_override = True
    case.manual_override_by = user.id
    case.manual_override_reason = _text(reason, "reason", required=True)
    case.updated_utc = now
    audit.append(session, actor=user_label(user), action="case.manual_override",
                 object_type="case", object_id=str(case.id), now=now,
                 detail={"reason": case.manual_override_reason})
    return case


def technical_review(session: Session, case: Case, user: User, *, approve: bool,
                     reason: str | None = None, expected_version: int | None = None,
                     now: datetime | None = None) -> Case:
    """技术审核: the record is 真实、清晰、完整、准确 and the device was lawful (Art. 41)."""
    now = now or utc_now()
    _start("technical-review", case, user, expected_version)
    if approve:  # a static re-weighing (复检) that proposes no penalty bars approval
        reweigh.check_approval(session, case)
        legal_checks.check_device_and_site(session, case, step_zh="通过审核")
    # a record that is not fully eligible, or was corrected by hand, is approved with reasons
    needs_reason = not approve or case.eligibility_status != "ENFORCEABLE" \
        or case.manual_override
    text = _text(reason, "reason", required=needs_reason)
    session.add(Review(case_id=case.id, stage="technical", reviewer_id=user.id,
                       approved=approve, reason_zh=text, time_utc=now))
    case.technical_reviewer_id = user.id
    _transition(session, case, "legal_review" if approve else "rejected", actor=user,
                actor_label=user_label(user), reason=text, now=now,
                detail={"review": "technical", "approved": approve},
                event=(EventType.TECHNICAL_REVIEW, "approved" if approve else "rejected",
                       "技术审核通过"))
    return case


def legal_review(session: Session, case: Case, user: User, *, approve: bool,
                 reason: str | None = None, expected_version: int | None = None,
                 now: datetime | None = None) -> Case:
    """法制审核, by a different person than the technical reviewer."""
    now = now or utc_now()
    _start("legal-review", case, user, expected_version)
    if approve:
        reweigh.check_approval(session, case)
        legal_checks.check_device_and_site(session, case, step_zh="通过审核")
    text = _text(reason, "reason", required=not approve)
    session.add(Review(case_id=case.id, stage="legal", reviewer_id=user.id, approved=approve,
                       reason_zh=text, time_utc=now))
    case.legal_reviewer_id = user.id
    _transition(session, case, "approved" if approve else "rejected", actor=user,
                actor_label=user_label(user), reason=text, now=now,
                detail={"review": "legal", "approved": approve},
                event=(EventType.LEGAL_REVIEW, "approved" if approve else "rejected",
                       "法制审核通过"))
    return case


def open_and_notify(session: Session, case: Case, user: User, *, channel: str,
                    policy: DeadlinePolicy, hearing_right: bool | None = None,
                    limitation_note: str | None = None,
                    expected_version: int | None = None,
                    now: datetime | None = None) -> Notice:
    """立案 and 告知: record the notice (its text from the one renderer). The statement
    and hearing periods run from service, recorded with ``procedure.serve_notice``.

    Refused when a static re-weighing proposes no penalty, when the center's records do
    not show a verified device and a published site at the passage, and when the passage
    was discovered more than two years after it (Art. 36) unless ``limitation_note``
    records why the case may still be opened (``legal_checks``)."""
    now = now or utc_now()
    _start("notify", case, user, expected_version)
    if channel not in CHANNELS:
        raise InvalidInputError(f"channel {channel!r} not in {CHANNELS}", "告知方式无效")
    if case.proposed_outcome in (None, "none") or not case.plate:
        raise WorkflowError("no penalty proposal or no plate: cannot notify",
                            "没有处罚建议或号牌，不能告知")
    reweigh.check_no_penalty_reweigh(session, case, "notify")
    legal_checks.check_device_and_site(session, case, step_zh="立案告知")
    legal_checks.check_periods(
        session, case, user, step="notify", policy=policy, now=now,
        limitation_note=_text(limitation_note, "limitation_note", required=False))
    if case.hearing_right == "undetermined":
        if hearing_right is None:
            raise InvalidInputError(
                "hearing_right: threshold not configured; the decision maker must decide",
                "听证权利无法由规则确定（未配置较大数额标准），须人工确定是否告知听证权利")
        case.hearing_right = "yes" if hearing_right else "no"
    case.statement_due = case.hearing_request_due = None  # counted from service
    case.decision_due = policy.decision_due(china_date(now))
    case.opened_utc = now
    notice = Notice(case_id=case.id, kind="notification", issued_utc=now, channel=channel,
                    text_zh=notices.notice_text_zh(case, policy))
    session.add(notice)
    _transition(session, case, "notified", actor=user, actor_label=user_label(user),
                reason=f"立案并告知（{channel}）", now=now,
                detail={"channel": channel, "decision_due": case.decision_due.isoformat()},
                event=(EventType.SERVICE, "notice_issued", "立案并告知"))
    return notice


def withdraw(session: Session, case: Case, user: User, *, reason: str,
             policy: DeadlinePolicy | None = None, expected_version: int | None = None,
             now: datetime | None = None) -> Case:
    """不予立案 after both reviews approved: the record can no longer support a penalty
    (行政处罚法 Art. 40), e.g. a later static re-weighing proposes none, the center's
    register shows the device or site unlawful at the passage, or the Art. 36 limitation
    has run; ``approved`` → ``rejected`` (then archived as any rejection). Only when such
    a blocker is found (``legal_checks.blockers_zh``, kept in the audit entry and the
    evidence-log event): one person must not drop an approved case on free text alone (a
    case the decision maker finds should not be punished goes through notice, statements
    and a 不予行政处罚 decision, with their trail)."""
    now = now or utc_now()
    _start("withdraw", case, user, expected_version)
    text = _text(reason, "reason", required=True)
    blockers = legal_checks.blockers_zh(session, case, policy=policy or DeadlinePolicy(),
                                        today=china_date(now))
    if not blockers:
        raise WorkflowError(
            f"case {case.id}: nothing bars its notice; withdraw refused",
            "本案没有不得立案告知的情形（中心登记的设备与监测点、静态复检、追责时效均无问题），"
            "不能不予立案；如认为不应处罚，请立案告知，听取陈述申辩后依法作出不予行政处罚决定")
    _transition(session, case, "rejected", actor=user, actor_label=user_label(user),
                reason=f"不予立案：{text}", now=now,
                detail={"withdrawn": True, "blockers": blockers},
                event=(EventType.REJECTION, "rejected", "不予立案"))
    return case


def add_statement(session: Session, case: Case, *, kind: str, text: str, contact: str | None,
                  actor_label: str, max_chars: int, now: datetime | None = None) -> Statement:
    """File a 陈述申辩 or a hearing request within its deadline (owner portal calls this)."""
    now = now or utc_now()
    _require_state(case, "notified")
    today = china_date(now)
    if kind == "statement":  # before service the period has not begun: accepted
        if case.statement_due is not None and today > case.statement_due:
            raise DeadlineError(f"statement period ended {case.statement_due}",
                                f"陈述申辩期限已于 {case.statement_due} 届满")
    elif kind == "hearing_request":
        if case.hearing_right != "yes":
            raise WorkflowError("no hearing right in this case", "本案不适用听证程序")
        if case.hearing_request_due is not None and today > case.hearing_request_due:
            raise DeadlineError(f"hearing request period ended {case.hearing_request_due}",
                                f"听证申请期限已于 {case.hearing_request_due} 届满")
        case.hearing_requested = True
    else:
        raise InvalidInputError(f"kind {kind!r}: statement | hearing_request", "类型无效")
    body = _text(text, "text", required=True, max_chars=max_chars)
    assert body is not None
    contact_text = _text(contact, "contact", required=False, max_chars=100)
    statement = Statement(case_id=case.id, kind=kind, text_zh=body, contact=contact_text,
                          filed_utc=now)
    session.add(statement)
    case.updated_utc = now  # bumps the version: a concurrent close_statements fails
    session.flush()
    audit.append(session, actor=actor_label, action=f"case.{kind}", object_type="case",
                 object_id=str(case.id), now=now, detail={"statement_id": statement.id})
    events.enqueue(session, case, event_type=EventType.STATEMENT, actor="owner",
                   outcome="filed" if kind == "statement" else "hearing_requested",
                   reason_zh="当事人提出陈述申辩" if kind == "statement" else "当事人申请听证",
                   now=now, details={"statement_id": statement.id})
    return statement


def answer_statement(session: Session, case: Case, user: User, *, statement_id: int,
                     response: str, now: datetime | None = None) -> Statement:
    """复核: the legal reviewer answers a statement (Art. 45: statements must be examined).
    A statement is answered once: a second answer is refused (409), never overwrites the
    first; the answer's text is in the audit entry and the evidence log's event."""
    now = now or utc_now()
    _start("answer", case, user, check_version=False)
    statement = session.get(Statement, statement_id)
    if statement is None or statement.case_id != case.id:
        raise NotFoundError(f"statement {statement_id} not in case {case.id}", "陈述申辩不存在")
    if statement.handled_utc is not None or statement.response_zh is not None:
        when = beijing_minute_zh(statement.handled_utc) if statement.handled_utc else "此前"
        raise WorkflowError(f"statement {statement_id} already answered",
                            f"该陈述申辩已于 {when} 答复，答复不得修改或覆盖")
    text = _text(response, "response", required=True)
    assert text is not None
    statement.response_zh = text
    statement.handled_utc = now
    statement.handled_by = user.id
    case.updated_utc = now
    audit.append(session, actor=user_label(user), action="case.statement_answered",
                 object_type="case", object_id=str(case.id), now=now,
                 detail={"statement_id": statement_id, "response": text})
    events.enqueue(session, case, event_type=EventType.STATEMENT, actor=events.actor_id(user),
                   outcome="answered", reason_zh=text, now=now,
                   details={"statement_id": statement_id})
    return statement


CLOCK_SKEW = timedelta(seconds=60)  # a time "now" on the officer's clock may be this ahead


def _hearing_requested_utc(session: Session, case: Case) -> datetime | None:
    """When the party asked for the hearing (the first request), else when the notice that
    gave the right was issued."""
    asked = session.scalars(select(Statement.filed_utc).where(
        Statement.case_id == case.id, Statement.kind == "hearing_request")
        .order_by(Statement.filed_utc)).first()
    if asked is not None:
        return asked
    return session.scalars(select(Notice.issued_utc).where(
        Notice.case_id == case.id, Notice.kind == "notification")
        .order_by(Notice.id)).first()


def record_hearing(session: Session, case: Case, user: User, *, held_utc: datetime,
                   summary: str, now: datetime | None = None) -> Case:
    """The hearing as held: once (a second record is refused, 409), at a time after the
    request (forms give minutes: the request's minute counts) and not in the future."""
    now = now or utc_now()
    _start("hearing", case, user, check_version=False)
    if not case.hearing_requested:
        raise WorkflowError("no hearing was requested", "当事人未申请听证")
    if case.hearing_held_utc is not None:
        raise WorkflowError("hearing already recorded",
                            f"听证已记录（举行时间 {beijing_minute_zh(case.hearing_held_utc)}），"
                            "记录不得覆盖")
    held_utc = check_time(held_utc, "held_utc")
    if held_utc > now + CLOCK_SKEW:
        raise InvalidInputError("held_utc: in the future", "听证时间不得晚于当前时间")
    requested = _hearing_requested_utc(session, case)
    if requested is not None and held_utc < requested.replace(second=0, microsecond=0):
        raise InvalidInputError(f"held_utc {held_utc.isoformat()} before the request "
                                f"{requested.isoformat()}",
                                f"听证时间不得早于当事人申请听证的时间（{beijing_minute_zh(requested)}）")
    case.hearing_held_utc = held_utc
    case.hearing_summary_zh = _text(summary, "summary", required=True)
    case.updated_utc = now
    audit.append(session, actor=user_label(user), action="case.hearing_held",
                 object_type="case", object_id=str(case.id), now=now,
                 detail={"held_utc": held_utc.isoformat()})
    events.enqueue(session, case, event_type=EventType.HEARING, actor=events.actor_id(user),
                   outcome="held", reason_zh=case.hearing_summary_zh or "举行听证", now=now,
                   details={"held_utc": held_utc.isoformat()})
    return case


def close_statements(session: Session, case: Case, user: User, *,
                     expected_version: int | None = None,
                     now: datetime | None = None) -> Case:
    """End the statement/hearing phase: periods over, every statement answered."""
    now = now or utc_now()
    _start("close-statements", case, user, expected_version)
    check_periods_over(case, china_date(now))
    statements = session.scalars(select(Statement).where(Statement.case_id == case.id)).all()
    open_ones = [s.id for s in statements if s.handled_utc is None]
    if open_ones:
        raise WorkflowError(f"statements {open_ones} not answered",
                            f"尚有 {len(open_ones)} 份陈述申辩未复核答复")
    if case.hearing_requested and case.hearing_held_utc is None:
        raise WorkflowError("hearing requested but not held", "当事人已申请听证，尚未举行听证")
    reason = f"陈述申辩 {len(statements)} 份已复核" + ("，已举行听证" if case.hearing_requested
                                                     else "")
    _transition(session, case, "statements_closed", actor=user, actor_label=user_label(user),
                reason=reason, now=now)
    return case


def check_periods_over(case: Case, today: date) -> None:
    """No decision before the notice was served and the statement and hearing request
    periods ended, unless the party, after service, waived them in a recorded act (Art.
    44, 62, 64): a waiver shortens the periods, it never replaces service."""
    notice_served = case.statement_due is not None
    if not notice_served:
        raise DeadlineError("the notice has not been served",
                            "告知书尚未送达（未记录送达日期），陈述申辩期限尚未起算")
    for due, waived, name_zh in (
            (case.statement_due, case.statement_waived_utc, "陈述申辩"),
            (case.hearing_request_due, case.hearing_waived_utc, "听证申请")):
        if due is not None and today <= due and waived is None:
            raise DeadlineError(f"{name_zh} period runs until {due}",
                                f"{name_zh}期限至 {due} 届满，期满前不得作出决定"
                                "（当事人明确放弃并有记录的除外）")


def decide(session: Session, case: Case, user: User, *, outcome: str, fine_yuan: int,
           reasons: str, limitation_note: str | None = None,
           extension_reference: str | None = None, expected_version: int | None = None,
           policy: DeadlinePolicy | None = None, now: datetime | None = None) -> Decision:
    """The decision, never heavier than the proposal, always with reasons.

    Any outcome but ``no_penalty`` is refused when a static re-weighing proposes no
    penalty, when the center's records do not show a verified device and a published site
    at the passage, or after the two years of Art. 36 (unless ``limitation_note`` records
    why, now or at notice); any decision later than ``decision_due`` (Art. 60) needs
    ``extension_reference`` (``legal_checks``)."""
    now = now or utc_now()
    policy = policy or DeadlinePolicy()
    _start("decision", case, user, expected_version)
    text = _text(reasons, "reasons", required=True)
    assert text is not None
    proposed, proposed_fine = case.proposed_outcome, case.proposed_fine_yuan or 0
    if outcome not in OUTCOMES_ZH:
        raise InvalidInputError(f"outcome {outcome!r} not in {tuple(OUTCOMES_ZH)}",
                                "处理结果无效")
    if fine_yuan < 0 or (outcome not in ("fine", "reduced") and fine_yuan != 0):
        raise InvalidInputError("fine_yuan: must be 0 for this outcome", "该处理结果不得罚款")
    allowed = {
        "fine": proposed == "fine" and fine_yuan == proposed_fine,
        "reduced": proposed == "fine" and 0 < fine_yuan < proposed_fine,
        "warning": proposed in ("fine", "warning"),
        "education": proposed in ("fine", "warning", "education"),
        "no_penalty": True,
    }[outcome]
    if not allowed:
        raise InvalidInputError(
            f"outcome {outcome} / {fine_yuan} yuan not allowed for proposal {proposed} / "
            f"{proposed_fine} yuan (never heavier than proposed)",
            f"处理结果不得重于规则建议（建议：{PROPOSED_ZH.get(proposed or '', '无')}，"
            f"{proposed_fine} 元）")
    note = _text(limitation_note, "limitation_note", required=False)
    if outcome != "no_penalty":  # 不予行政处罚 is what these findings lead to
        reweigh.check_no_penalty_reweigh(session, case, "decision")
        legal_checks.check_device_and_site(session, case, step_zh="作出处罚决定")
    elif note is None:
        note = "决定不予行政处罚"  # the limitation does not bar a decision not to punish
    legal_checks.check_periods(
        session, case, user, step="decision", policy=policy, now=now, limitation_note=note,
        extension_reference=_text(extension_reference, "extension_reference",
                                  required=False, max_chars=500))
    decision = Decision(case_id=case.id, outcome=outcome, fine_yuan=fine_yuan,
                        reasons_zh=text, decided_by=user.id, decided_utc=now)
    decision.text_zh = notices.decision_text_zh(case, decision)
    session.add(decision)
    case.serve_due = policy.serve_due(china_date(now))
    case.publish_due = (policy.publish_due(china_date(now)) if outcome in PUBLISHED_OUTCOMES
                        else None)
    _transition(session, case, "decided", actor=user, actor_label=user_label(user),
                reason=text, now=now, detail={"outcome": outcome, "fine_yuan": fine_yuan},
                event=(EventType.DECISION, outcome, "作出决定"))
    return decision


def serve(session: Session, case: Case, user: User, *, channel: str,
          served_utc: datetime | None = None, expected_version: int | None = None,
          policy: DeadlinePolicy | None = None, now: datetime | None = None) -> Case:
    """送达 of the decision; a penalty's 抄告 is queued in the same transaction."""
    now = now or utc_now()
    _start("serve", case, user, expected_version)
    if channel not in CHANNELS:
        raise InvalidInputError(f"channel {channel!r} not in {CHANNELS}", "送达方式无效")
    served = now if served_utc is None else check_time(served_utc, "served_utc")
    if served > now + CLOCK_SKEW:
        raise InvalidInputError("served_utc: in the future", "送达时间不得晚于当前时间")
    decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).one()
    if decision.outcome in PENALTY_OUTCOMES:  # a later re-weighing: change or revoke it
        reweigh.check_no_penalty_reweigh(session, case, "serve")
    if served < decision.decided_utc.replace(second=0, microsecond=0):
        raise InvalidInputError(
            f"served_utc {served.isoformat()} before the decision "
            f"{decision.decided_utc.isoformat()}",
            f"送达时间不得早于作出决定的时间（{beijing_minute_zh(decision.decided_utc)}）")
    decision.served_utc = served
    decision.served_channel = channel
    _transition(session, case, "served", actor=user, actor_label=user_label(user),
                reason=f"决定书已送达（{channel}）", now=now,
                event=(EventType.SERVICE, "decision_served", "决定书已送达"))
    copy_notices.queue(session, case, decision, policy=policy or DeadlinePolicy(), now=now)
    return case


def publish(session: Session, case: Case, user: User, *, expected_version: int | None = None,
            now: datetime | None = None) -> Case:
    """结案并公示 (disclosure data is masked, see ``owners.public_disclosures``)."""
    now = now or utc_now()
    _start("publish", case, user, expected_version)
    decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).one()
    if decision.outcome not in PUBLISHED_OUTCOMES:
        raise WorkflowError(f"outcome {decision.outcome} is not published",
                            f"“{OUTCOMES_ZH[decision.outcome]}”的决定不予公示，可直接归档")
    reweigh.check_no_penalty_reweigh(session, case, "publish")
    case.published_utc = now
    _transition(session, case, "published", actor=user, actor_label=user_label(user),
                reason="结案并公示", now=now)
    return case


def archive(session: Session, case: Case, user: User, *, expected_version: int | None = None,
            now: datetime | None = None) -> Case:
    now = now or utc_now()
    _start("archive", case, user, expected_version)
    if case.state == "served" and case.publish_due is not None:
        raise WorkflowError("a published decision is archived after 公示",
                            "本决定须先公示，公示后方可归档")
    _transition(session, case, "archived", actor=user, actor_label=user_label(user),
                reason="归档", now=now)
    return case


@dataclass(frozen=True)
class Overdue:
    case_id: int
    state: str
    due: date
    what_zh: str


def overdue_cases(session: Session, *, now: datetime | None = None) -> list[Overdue]:
    """Cases past a statutory deadline, or whose statement period is over and wait."""
    today = china_date(now or utc_now())
    out: list[Overdue] = []
    rows = session.scalars(select(Case).where(
        Case.state.in_(("notified", "statements_closed", "decided")))).all()
    for case in rows:
        if case.state in ("notified", "statements_closed") and case.decision_due is not None \
                and today > case.decision_due:
            out.append(Overdue(case.id, case.state, case.decision_due,
                               "已超过作出决定期限（《行政处罚法》第六十条）"))
        elif case.state == "notified" and case.statement_due is not None \
                and today > case.statement_due \
                and (case.hearing_request_due is None or today > case.hearing_request_due):
            out.append(Overdue(case.id, case.state, case.statement_due,
                               "陈述申辩期限已届满，待复核结束"))
        elif case.state == "decided" and case.serve_due is not None and today > case.serve_due:
            out.append(Overdue(case.id, case.state, case.serve_due,
                               "已超过送达期限（《行政处罚法》第六十一条）"))
    published = session.scalars(select(Case).where(
        Case.state.in_(("decided", "served")), Case.publish_due.is_not(None))).all()
    out.extend(Overdue(c.id, c.state, c.publish_due, "已超过公示期限（国办发〔2018〕118号，"
                       "期限待确认）") for c in published
               if c.publish_due is not None and today > c.publish_due)
    out.extend(Overdue(*row) for row in copy_notices.overdue(session, today))
    out.extend(_reweigh_alerts(session))
    return out


def _reweigh_alerts(session: Session) -> list[Overdue]:
    """Cases past the reviews whose latest static re-weighing, attached later, proposes no
    penalty: they cannot go on as they are (an approved case cannot be notified, a penalty
    decided, served or published must be changed or revoked, Art. 48 para. 2). ``due`` is
    the China date the re-weighing was attached."""
    latest: dict[str, AuditEntry] = {}
    for entry in session.scalars(select(AuditEntry).where(
            AuditEntry.action == reweigh.ACTION, AuditEntry.object_type == "case")
            .order_by(AuditEntry.id)):
        latest[entry.object_id] = entry
    barring = {int(k): e for k, e in latest.items()
               if e.detail.get("penalty_outcome") in (None, "none")
               or e.detail.get("status") == "UNUSABLE"}
    if not barring:
        return []
    out: list[Overdue] = []
    rows = session.execute(select(Case, Decision.outcome).outerjoin(
        Decision, Decision.case_id == Case.id).where(
        Case.id.in_(list(barring)),
        Case.state.in_(("approved", "notified", "statements_closed", "decided", "served",
                        "published")))).all()
    for case, outcome in rows:
        if outcome is not None and outcome not in PENALTY_OUTCOMES:
            continue
        entry = barring[case.id]
        if outcome is not None:
            what = "须依法变更或撤销处罚决定（《行政处罚法》第四十八条第二款）"
        elif case.state == "approved":
            label = duties.duty("withdraw").label_zh
            what = (f"不得按动态称重结果立案告知，请由决定人员办理“{label}”并说明理由"
                    "（《行政处罚法》第四十条）")
        else:
            what = "不得按动态称重结果作出处罚决定，只能作出不予行政处罚的决定"
        out.append(Overdue(case.id, case.state, china_date(entry.time_utc),
                           f"{reweigh.no_penalty_zh(dict(entry.detail))}：{what}"))
    return out
