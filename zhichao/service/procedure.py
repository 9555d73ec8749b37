"""The steps of the procedure around the notice and the published decision: recording
service of the notice, the party's waiver, and a decision changed or revoked.

* ``serve_notice`` (行政处罚法 Art. 61, applying the 民事诉讼法 service rules; Art. 95 for
  announcements): the officer
  records when the notice reached the party — the signed receipt (in person), postal
  delivery, arrival in the electronic system the party agreed to, or the publication of an
  announcement (then served 30 days later, Art. 95). The statement and hearing request
  periods run from that service date (Art. 44, 64, 85), never from the issue date.
* ``waive`` (Art. 62): the party's explicit waiver of statement (and of the hearing), as a
  recorded act naming the party's own record (``document_ref``), once the notice was
  served; only then may the decision come before the periods end.
* ``revoke`` (Art. 48 para. 2): a decision changed, revoked, or declared unlawful or void;
  a published one is withdrawn in the same act, with the reason, so the 3-day limit holds;
  when the penalty is removed (撤销, 确认无效: ``PENALTY_REMOVED_KINDS``) its 抄告 is
  cancelled if unsent or withdrawn if sent (62号令 Art. 44, ``copy_notices``); after a
  变更 or a 确认违法 it stands.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.evidence.events import EventType
from zhichao.service import audit, copy_notices
from zhichao.service.accounts import user_label
from zhichao.service.errors import InvalidInputError, WorkflowError
from zhichao.service.inputs import check_time
from zhichao.service.models import Case, Notice, User
from zhichao.service.workdays import DeadlinePolicy, china_date
from zhichao.service.workflow import SERVICE_ZH, _start, _text, _transition

WAIVE_SCOPES = ("statement", "hearing", "all")
REVOCATION_ZH = {"changed": "变更", "revoked": "撤销", "unlawful": "确认违法",
                 "void": "确认无效"}
# The kinds that take the penalty away: 撤销 and 确认无效. A 变更 (e.g. a reduced fine) is
# still a penalty for the same violation, and 确认违法 without 撤销 (行政诉讼法 Art. 74)
# leaves the act in force: their 抄告 stands and the case keeps counting for the vehicle's
# year (62号令 Art. 44, 公路安全保护条例 Art. 66). Read by ``copy_notices``.
PENALTY_REMOVED_KINDS = ("revoked", "void")


def revocation_outcome(kind: str) -> str:
    """The evidence event's outcome that records a revocation of ``kind`` (where
    ``copy_notices`` reads which kind a revoked case had)."""
    return f"decision_{kind}"


def _notice(session: Session, case: Case) -> Notice:
    notice = session.scalars(select(Notice).where(
        Notice.case_id == case.id, Notice.kind == "notification")
        .order_by(Notice.id.desc())).first()
    if notice is None:
        raise WorkflowError(f"case {case.id} has no notice", "本案没有告知书")
    return notice


def serve_notice(session: Session, case: Case, user: User, *, delivered_utc: datetime,
                 proof: str, policy: DeadlinePolicy, channel: str | None = None,
                 expected_version: int | None = None, now: datetime | None = None) -> Notice:
    """Record the service of the notice and start the statement and hearing periods.

    ``channel`` is how it was finally served when that differs from the issue channel
    (e.g. an announcement after the post came back undelivered, 浙江省公路条例 Art. 40)."""
    now = now or utc_now()
    _start("serve-notice", case, user, expected_version)
    notice = _notice(session, case)
    if notice.served_on is not None:
        raise WorkflowError("notice already served", f"告知书已于 {notice.served_on} 送达")
    if channel is not None and channel != notice.channel:
        if channel not in SERVICE_ZH:
            raise InvalidInputError(f"channel {channel!r} not in {tuple(SERVICE_ZH)}",
                                    "送达方式无效")
        notice.channel = channel
    issued_minute = notice.issued_utc.replace(second=0, microsecond=0)  # forms give minutes
    delivered_utc = check_time(delivered_utc, "delivered_utc")  # year 1 or 9999: 422
    if delivered_utc > now or delivered_utc < issued_minute:
        raise InvalidInputError("delivered_utc: a UTC time between issue and now",
                                "送达（签收、交付、到达或公告）时间须在告知书发出之后、当前时间之前")
    proof_text = _text(proof, "proof", required=True, max_chars=500)
    day = china_date(delivered_utc)
    served_on = (policy.announcement_served_on(day) if notice.channel == "announcement"
                 else day)
    notice.delivered_utc = delivered_utc
    notice.served_on = served_on
    notice.service_proof_zh = proof_text
    notice.statement_due = case.statement_due = policy.statement_due(served_on)
    notice.hearing_request_due = case.hearing_request_due = (
        policy.hearing_request_due(served_on) if case.hearing_right == "yes" else None)
    case.updated_utc = now
    audit.append(session, actor=user_label(user), action="case.notice_served",
                 object_type="case", object_id=str(case.id), now=now,
                 detail={"channel": notice.channel, "delivered_utc": delivered_utc.isoformat(),
                         "served_on": served_on.isoformat(), "proof": proof_text,
                         "statement_due": case.statement_due.isoformat(),
                         "hearing_request_due": None if case.hearing_request_due is None
                         else case.hearing_request_due.isoformat()})
    from zhichao.service import events
    events.enqueue(session, case, event_type=EventType.SERVICE, actor=events.actor_id(user),
                   outcome="notice_served", reason_zh=f"告知书送达（{served_on}）", now=now,
                   details={"served_on": served_on.isoformat(), "channel": notice.channel})
    return notice


def waive(session: Session, case: Case, user: User, *, scope: str, record: str,
          document_ref: str, expected_version: int | None = None,
          now: datetime | None = None) -> Case:
    """Record the party's explicit waiver, after the notice was served (the party cannot
    waive a right it was not told of: Art. 44, 62). ``document_ref`` names the party's own
    record of it: the number of the signed declaration, the attachment or the system
    receipt (required); ``record`` what it says. Both are audited."""
    now = now or utc_now()
    _start("waive", case, user, expected_version)
    if scope not in WAIVE_SCOPES:
        raise InvalidInputError(f"scope {scope!r} not in {WAIVE_SCOPES}", "放弃范围无效")
    notice = _notice(session, case)
    if notice.served_on is None or notice.delivered_utc is None:
        raise WorkflowError(f"case {case.id}: notice not served; a waiver needs service",
                            "告知书尚未送达（未记录送达），当事人不能放弃陈述申辩或听证权利；"
                            "请先记录告知书送达")
    text = _text(record, "record", required=True, max_chars=1000)
    ref = _text(document_ref, "document_ref", required=True, max_chars=200)
    if scope in ("statement", "all"):
        case.statement_waived_utc = now
    if scope in ("hearing", "all"):
        if case.hearing_right != "yes":
            raise WorkflowError("no hearing right to waive", "本案不适用听证程序")
        if case.hearing_requested:
            raise WorkflowError("hearing already requested", "当事人已申请听证，须举行听证")
        case.hearing_waived_utc = now
    case.waiver_record_zh = f"{text}（当事人书面记录：{ref}）"
    case.updated_utc = now
    audit.append(session, actor=user_label(user), action="case.waiver", object_type="case",
                 object_id=str(case.id), now=now,
                 detail={"scope": scope, "record": text, "document_ref": ref,
                         "notice_served_on": notice.served_on.isoformat()})
    return case


def revoke(session: Session, case: Case, user: User, *, kind: str, reason: str,
           policy: DeadlinePolicy | None = None, expected_version: int | None = None,
           now: datetime | None = None) -> Case:
    """A decision changed, revoked, or declared unlawful or void; a published one is
    withdrawn from the disclosures at once, with the reason (Art. 48 para. 2). Its 抄告
    follows in the same transaction (``copy_notices.follow_revocation``): for a kind that
    removes the penalty (``PENALTY_REMOVED_KINDS``) an unsent copy is cancelled, a sent one
    gets a withdrawal due ``policy.copy_withdrawal`` later, and the vehicle's referral
    marks are recounted; for the others the copy and the count stand."""
    now = now or utc_now()
    _start("revoke", case, user, expected_version)
    if kind not in REVOCATION_ZH:
        raise InvalidInputError(f"kind {kind!r} not in {tuple(REVOCATION_ZH)}", "类型无效")
    text = _text(reason, "reason", required=True)
    if case.published_utc is not None:
        case.publication_withdrawn_utc = now
        case.withdrawal_reason_zh = f"决定被{REVOCATION_ZH[kind]}：{text}"
    case.publish_due = None
    _transition(session, case, "revoked", actor=user, actor_label=user_label(user),
                reason=f"决定被{REVOCATION_ZH[kind]}：{text}", now=now,
                detail={"kind": kind, "withdrawn": case.publication_withdrawn_utc is not None},
                event=(EventType.DECISION, revocation_outcome(kind), "决定被变更或撤销"))
    copy_notices.follow_revocation(session, case, kind=kind, kind_zh=REVOCATION_ZH[kind],
                                   reason_zh=text or "", policy=policy or DeadlinePolicy(),
                                   actor=user_label(user), now=now)
    return case
