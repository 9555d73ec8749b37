"""抄告: the copy notice to the transport authority of the vehicle's registration place.

《超限运输车辆行驶公路管理规定》(交通运输部令2016年第62号) Art. 44: within 7 working days of
closing a case (结案; here: the day the decision was served), the highway authority sends
the vehicle's plate and type, its operator and 道路运输证号, the driver and 从业资格证, the
source of loading, the decision and other case data to the transport authority where the vehicle is
registered. Only penalties are copied (``COPIED_OUTCOMES``: a fine or a warning; education
and no-penalty decisions are not): an interpretation, unconfirmed.

The copy is a documented export (``zhichao.copy-notice/1`` JSON, and a zh-CN PDF of the
same fields) kept in an outbox (``CopyNotice``) that records when an officer sent it and
when the authority acknowledged it; an unsent copy past its due date is listed with the
overdue cases. Facts a non-site record does not hold (driver, 道路运输证号, loading source)
are stated as not collected, never guessed.

A vehicle with more than three violations in one year is marked for referral (公路安全保护
条例 Art. 66: the transport authority revokes the 车辆营运证); the count is over cases with a
served penalty whose violation time lies within 365 days up to this case's. The referral
list's format is ``REFERRAL_FORMAT`` (unconfirmed: no official format was found).

A decision revoked (撤销) or declared void (确认无效) — the kinds that remove the penalty,
``procedure.PENALTY_REMOVED_KINDS`` — is followed here in the same transaction
(:func:`follow_revocation`): an unsent copy is cancelled (kept, never sent, no longer
overdue); a sent one gets a withdrawal (撤回抄告, ``WITHDRAWAL_FORMAT``) in the same
outbox, sent, acknowledged and overdue like any copy, due ``DeadlinePolicy.copy_withdrawal``
after the revocation (unconfirmed: no rule names a period). The case no longer counts for
the vehicle's year, so the other copies whose year counted it are recounted: an unsent
one's count and referral are corrected; a sent one whose referral no longer holds is
unmarked and its referral suggestion withdrawn in the same withdrawal.

A decision changed (变更, e.g. a reduced fine) or declared unlawful without being revoked
(确认违法, 行政诉讼法 Art. 74: the act stays in force) still punishes the same violation:
its copy stands (an unsent one stays pending and is sent as it is) and the case keeps
counting. A corrected copy (更正抄告) carrying the changed decision is not built (known gap).

Sending is recorded with how (``SENT_CHANNELS_ZH``) and the letter's 文号 or 邮件单号
(migration 0009), from the API or the console's 抄告 page (``web/console_copy_notices``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from zhichao.evidence import documents, notice_text
from zhichao.service import audit
from zhichao.service.errors import InvalidInputError, NotFoundError, WorkflowError
from zhichao.service.ingest import PLATE_COLOURS_ZH
from zhichao.service.models import Case, CopyNotice, Decision, EvidenceEvent
from zhichao.service.workdays import DeadlinePolicy, china_date

FORMAT = "zhichao.copy-notice/1"
WITHDRAWAL_FORMAT = "zhichao.copy-notice-withdrawal/1"
STATES_ZH = {"pending": "待发送", "sent": "已发送", "acknowledged": "已获回执",
             "cancelled": "已作废（决定被撤销或确认无效，未发送）"}
# How a copy leaves the office (recorded with its sent time); a guess at the usual ways
# between two authorities, not from a rule.
SENT_CHANNELS_ZH = {"document_exchange": "公文交换（机要）", "electronic": "电子公文系统",
                    "post": "邮寄", "in_person": "直接递交", "fax": "传真"}
REFERENCE_MAX_CHARS = 200  # the column's width
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REFERRAL_FORMAT = "zhichao.referral/1"  # unconfirmed: no official list format found
COPIED_OUTCOMES = ("fine", "reduced", "warning")  # interpretation, unconfirmed
REFERRAL_THRESHOLD = 3  # 公路安全保护条例 Art. 66: "1年内违法超限运输超过3次"
NOT_COLLECTED_ZH = "未采集（非现场检测记录不含此项，须人工补录）"
SOURCE_ZH = ("《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）第四十四条；"
             "《公路安全保护条例》第六十六条")
WITHDRAWAL_SOURCE_ZH = ("《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）第四十四条、"
                        "《公路安全保护条例》第六十六条（撤回抄告无明文规定，参照抄告办理）")
PROVINCES_ZH = {  # the plate's first character (GA 36)
    "京": "北京市", "津": "天津市", "沪": "上海市", "渝": "重庆市", "冀": "河北省",
    "晋": "山西省", "辽": "辽宁省", "吉": "吉林省", "黑": "黑龙江省", "苏": "江苏省",
    "浙": "浙江省", "皖": "安徽省", "闽": "福建省", "赣": "江西省", "鲁": "山东省",
    "豫": "河南省", "鄂": "湖北省", "湘": "湖南省", "粤": "广东省", "琼": "海南省",
    "川": "四川省", "贵": "贵州省", "云": "云南省", "陕": "陕西省", "甘": "甘肃省",
    "青": "青海省", "蒙": "内蒙古自治区", "桂": "广西壮族自治区", "藏": "西藏自治区",
    "宁": "宁夏回族自治区", "新": "新疆维吾尔自治区",
}


def authority_for(plate: str | None) -> str:
    """The addressee from the plate's registration prefix (province and 发牌机关 letter)."""
    prefix = (plate or "")[:2]
    province = PROVINCES_ZH.get(prefix[:1])
    if province is None:
        return "车籍地道路运输管理机构（号牌无法判定车籍地，须人工确定）"
    return f"{province}{prefix}号牌车籍地道路运输管理机构（须人工核实）"


def removes_penalty(kind: str) -> bool:
    """Whether a revocation of ``kind`` (a key of ``procedure.REVOCATION_ZH``) takes the
    penalty away (撤销, 确认无效), so its copy and its count fall with it."""
    from zhichao.service import procedure  # procedure calls this module (no cycle at load)
    return kind in procedure.PENALTY_REMOVED_KINDS


def _penalty_removed_cases() -> Select[Any]:
    """The ids of cases whose penalty was removed (revoked or declared void; they stay so
    when archived). The kind is read from the revocation's evidence event (its outcome,
    ``procedure.revocation_outcome``): a case revoked by a 变更 or a 确认违法 is not here."""
    from zhichao.service import procedure
    return select(EvidenceEvent.case_id).where(EvidenceEvent.outcome.in_(
        [procedure.revocation_outcome(k) for k in procedure.PENALTY_REMOVED_KINDS]))


def violations_in_year(session: Session, case: Case) -> int:
    """Served penalties of the same vehicle whose violation lies in the 365 days up to
    this case's (this case included); a decision revoked or declared void does not count
    (a changed one, or one declared unlawful but not revoked, does)."""
    start = case.time_utc - timedelta(days=365)
    rows = session.execute(
        select(Case.id).join(Decision, Decision.case_id == Case.id)
        .where(Case.plate == case.plate, Case.plate_colour == case.plate_colour,
               Case.time_utc >= start, Case.time_utc <= case.time_utc,
               Case.id.not_in(_penalty_removed_cases()),
               Decision.outcome.in_(COPIED_OUTCOMES), Decision.served_utc.is_not(None))).all()
    return len({r[0] for r in rows} | {case.id})


def _payload(case: Case, decision: Decision, count: int) -> dict[str, Any]:
    from zhichao.service import notices  # the manifest reader (no import cycle at load)
    doc = notices.case_document(case)
    facts = doc["case"]
    reg = facts.get("registration") or {}
    site = facts.get("site") or {}
    return {
        "format": FORMAT, "source_zh": SOURCE_ZH, "case_id": case.id,
        "package_id": case.package_id,
        "plate": case.plate, "plate_colour": case.plate_colour,
        "vehicle_type_zh": notice_text.vehicle_class_zh(facts),
        "operator_zh": reg.get("owner_name_zh") or NOT_COLLECTED_ZH,
        "road_transport_certificate": NOT_COLLECTED_ZH,
        "driver_zh": NOT_COLLECTED_ZH, "driver_qualification": NOT_COLLECTED_ZH,
        "driver_employer_zh": NOT_COLLECTED_ZH, "loading_source_zh": NOT_COLLECTED_ZH,
        "violation_time_utc": case.time_utc.isoformat(),
        "violation_time_zh": notice_text.beijing_time_zh(case.time_utc.isoformat()),
        "site_zh": site.get("name_zh") or case.site_id,
        "decision": {"outcome": decision.outcome, "fine_yuan": decision.fine_yuan,
                     "decided_utc": decision.decided_utc.isoformat(),
                     "text_zh": decision.text_zh},
        "violations_in_year": count,
        "referral": count > REFERRAL_THRESHOLD, "referral_format": REFERRAL_FORMAT,
    }


def queue(session: Session, case: Case, decision: Decision, *, policy: DeadlinePolicy,
          now: datetime) -> CopyNotice | None:
    """Queue the copy notice of a served penalty (None for outcomes not copied)."""
    if decision.outcome not in COPIED_OUTCOMES or not case.plate:
        return None
    session.flush()  # this decision's service counts
    count = violations_in_year(session, case)
    copy = CopyNotice(case_id=case.id, authority_zh=authority_for(case.plate),
                      due=policy.copy_notice_due(china_date(decision.served_utc or now)),
                      referral=count >
                      REFERRAL_THRESHOLD, payload=_payload(case, decision, count),
                      created_utc=now)
    session.add(copy)
    session.flush()
    audit.append(session, actor="system", action="copy_notice.queued", object_type="case",
                 object_id=str(case.id), now=now,
                 detail={"copy_notice_id": copy.id, "due": copy.due.isoformat(),
                         "referral": copy.referral})
    return copy


def get(session: Session, copy_id: int) -> CopyNotice:
    copy = session.get(CopyNotice, copy_id)
    if copy is None:
        raise NotFoundError(f"copy notice {copy_id} does not exist", "抄告不存在")
    return copy


def mark(session: Session, copy: CopyNotice, *, what: str, actor: str,
         now: datetime, channel: str | None = None,
         reference: str | None = None) -> CopyNotice:
    """Record that the copy was sent (``what="sent"``, with how: ``channel``, a key of
    ``SENT_CHANNELS_ZH``, and ``reference``, its 文号 or 邮件单号; both optional) or
    acknowledged (``"acknowledged"``; only after it was sent); each is recorded once."""
    if what != "sent" and (channel is not None or reference is not None):
        raise ValueError("channel and reference belong to sending")
    channel, reference = _sending(channel, reference)
    if copy.cancelled_utc is not None:
        raise WorkflowError(f"copy notice {copy.id} is cancelled", _CANCELLED_ZH)
    detail: dict[str, Any] = {"copy_notice_id": copy.id}
    if what == "sent":
        if copy.sent_utc is not None:
            raise WorkflowError("already sent", "该抄告已记录发送")
        copy.sent_utc = now
        copy.sent_channel, copy.sent_reference = channel, reference
        detail.update(channel=channel, reference=reference)
    elif what == "acknowledged":
        if copy.sent_utc is None:
            raise WorkflowError("not sent yet", "该抄告尚未发送，不能记录回执")
        if copy.acknowledged_utc is not None:
            raise WorkflowError("already acknowledged", "该抄告已记录回执")
        copy.acknowledged_utc = now
    else:
        raise ValueError(what)
    audit.append(session, actor=actor, action=f"copy_notice.{what}", object_type="case",
                 object_id=str(copy.case_id), now=now, detail=detail)
    return copy


def _sending(channel: str | None, reference: str | None) -> tuple[str | None, str | None]:
    """The channel and reference of a sending, checked (422, zh-CN); blanks are None."""
    channel = (channel or "").strip() or None
    reference = (reference or "").strip() or None
    if channel is not None and channel not in SENT_CHANNELS_ZH:
        raise InvalidInputError(f"channel {channel!r} not in {tuple(SENT_CHANNELS_ZH)}",
                                "发送方式无效")
    if reference is not None and (len(reference) > REFERENCE_MAX_CHARS
                                  or _CONTROL.search(reference)):
        raise InvalidInputError("reference: too long or control characters",
                                f"文号或单号不得超过 {REFERENCE_MAX_CHARS} 字，且不得含控制字符")
    return channel, reference


_OVERDUE_ZH = {"copy": "抄告已超过七个工作日未发送（62号令第四十四条）",
               "withdrawal": "撤回抄告已超过期限未发送（参照62号令第四十四条，期限未经确认）"}
_CANCELLED_ZH = "该抄告已作废（处理决定已被撤销或确认无效），不得发送"


def overdue(session: Session, today: date) -> list[tuple[int, str, date, str]]:
    """(case id, state, due, what) of every unsent copy notice or withdrawal past its due
    date; a cancelled copy is never overdue."""
    rows = session.execute(select(CopyNotice, Case.state).join(Case, Case.id == CopyNotice.case_id)
                           .where(CopyNotice.sent_utc.is_(None),
                                  CopyNotice.cancelled_utc.is_(None),
                                  CopyNotice.due < today)).all()
    return [(c.case_id, state, c.due, _OVERDUE_ZH[c.kind]) for c, state in rows]


def is_overdue(copy: CopyNotice, today: date) -> bool:
    """Whether ``copy`` is overdue on ``today`` (China date): unsent, not cancelled, past
    its due date (the rule of :func:`overdue` and of the outbox's order)."""
    return copy.sent_utc is None and copy.cancelled_utc is None and copy.due < today


def state(copy: CopyNotice) -> str:
    """Where the copy stands in the outbox: a key of ``STATES_ZH``."""
    if copy.cancelled_utc is not None:
        return "cancelled"
    if copy.sent_utc is None:
        return "pending"
    return "sent" if copy.acknowledged_utc is None else "acknowledged"


def outbox(session: Session, wanted: str | None = None, *, case_id: int | None = None,
           overdue_first_on: date | None = None, offset: int = 0,
           limit: int | None = None) -> list[CopyNotice]:
    """The outbox, oldest first; ``wanted`` (a key of ``STATES_ZH``) keeps only those,
    ``case_id`` only that case's. With ``overdue_first_on`` (today's China date) those
    overdue that day come first, then all by due date."""
    query = select(CopyNotice).order_by(CopyNotice.id)
    if overdue_first_on is not None:
        late = and_(CopyNotice.sent_utc.is_(None), CopyNotice.cancelled_utc.is_(None),
                    CopyNotice.due < overdue_first_on)
        query = select(CopyNotice).order_by(sql_case((late, 0), else_=1), CopyNotice.due,
                                            CopyNotice.id)
    if case_id is not None:
        query = query.where(CopyNotice.case_id == case_id)
    if wanted == "pending":
        query = query.where(CopyNotice.sent_utc.is_(None), CopyNotice.cancelled_utc.is_(None))
    elif wanted == "sent":
        query = query.where(CopyNotice.sent_utc.is_not(None),
                            CopyNotice.acknowledged_utc.is_(None))
    elif wanted == "acknowledged":
        query = query.where(CopyNotice.acknowledged_utc.is_not(None))
    elif wanted == "cancelled":
        query = query.where(CopyNotice.cancelled_utc.is_not(None))
    elif wanted is not None:
        raise ValueError(wanted)
    return list(session.scalars(query.offset(offset).limit(limit)).all())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def export_json(copy: CopyNotice) -> dict[str, Any]:
    """The documented export: the payload with the addressee, due date and outbox state."""
    return {**copy.payload, "kind": copy.kind, "copy_notice_id": copy.id,
            "referral": copy.referral,
            "authority_zh": copy.authority_zh, "due": copy.due.isoformat(),
            "created_utc": copy.created_utc.isoformat(),
            "state": state(copy), "state_zh": STATES_ZH[state(copy)],
            "sent_utc": _iso(copy.sent_utc), "sent_channel": copy.sent_channel,
            "sent_channel_zh": SENT_CHANNELS_ZH.get(copy.sent_channel or ""),
            "sent_reference": copy.sent_reference,
            "acknowledged_utc": _iso(copy.acknowledged_utc),
            "cancelled_utc": _iso(copy.cancelled_utc),
            "cancel_reason_zh": copy.cancel_reason_zh,
            "withdraws_copy_notice_id": copy.withdraws_id}


def _colour_zh(colour: str | None) -> str:
    """The plate colour as a person reads it (``yellow`` → 黄色)."""
    zh = PLATE_COLOURS_ZH.get(colour or "")
    return "号牌颜色未识别" if zh is None else f"{zh}色"


def paragraphs_zh(copy: CopyNotice) -> list[str]:
    p = copy.payload
    d = p["decision"]
    lines = [
        f"{copy.authority_zh}：",
        f"依据{SOURCE_ZH}，现将超限运输违法案件（案件编号 {p['case_id']}，证据包 "
        f"{p['package_id']}）抄告如下。",
        f"车辆号牌：{p['plate']}（{_colour_zh(p['plate_colour'])}）；车辆类型：{p['vehicle_type_zh']}；"
        f"经营者：{p['operator_zh']}；道路运输证号：{p['road_transport_certificate']}。",
        f"驾驶人：{p['driver_zh']}；从业资格证号：{p['driver_qualification']}；驾驶人所在单位："
        f"{p['driver_employer_zh']}；货物装载源头：{p['loading_source_zh']}。",
        f"违法时间：{p['violation_time_zh']}；地点：{p['site_zh']}。",
        f"处理决定：{d['text_zh'] or d['outcome']}",
        f"该车辆一年内违法超限运输 {p['violations_in_year']} 次"
        + ("，已超过三次，建议依《公路安全保护条例》第六十六条处理。" if p["referral"] else "。"),
    ]
    return lines


def withdrawal_paragraphs_zh(copy: CopyNotice) -> list[str]:
    p = copy.payload
    r = p["revocation"]
    withdrawn = p["withdrawn"]
    case_zh = f"案件编号 {p['case_id']}，证据包 {p['package_id']}"
    lines = [f"{copy.authority_zh}："]
    if withdrawn is not None:
        lines.append(f"本机关于{withdrawn['sent_zh']}向你单位抄告的超限运输违法案件（抄告编号 "
                     f"{withdrawn['copy_notice_id']}，{case_zh}），其处理决定已于{r['time_zh']}"
                     f"被{r['kind_zh']}。理由：{r['reason_zh']}")
    else:
        lines.append(f"本机关对超限运输违法案件（{case_zh}）作出的处理决定，已于{r['time_zh']}"
                     f"被{r['kind_zh']}。理由：{r['reason_zh']}")
    lines.append(f"车辆号牌：{p['plate']}（{_colour_zh(p['plate_colour'])}）；违法时间："
                 f"{p['violation_time_zh']}；地点：{p['site_zh']}。")
    if withdrawn is not None:
        lines.append("原抄告函现予撤回，请勿再据此处理；已据此采取措施的，请予核查。")
    if p["referrals_withdrawn"]:
        items = "；".join(
            f"抄告编号 {w['copy_notice_id']}（案件编号 {w['case_id']}，{w['sent_zh']}发送，"
            f"原计 {w['violations_in_year_before']} 次，现计 {w['violations_in_year']} 次）"
            for w in p["referrals_withdrawn"])
        lines.append(f"因上述决定被{r['kind_zh']}，该车辆一年内违法超限运输次数相应减少，已不超过"
                     f"三次。下列抄告函中依《公路安全保护条例》第六十六条提出的处理建议一并撤回：{items}。")
    lines.append(f"依据：{p['source_zh']}。")
    return lines


def export_pdf(copy: CopyNotice) -> bytes:
    """The letter as sent (zh-CN, 北京时间); a cancelled copy has none to send."""
    if copy.cancelled_utc is not None:
        raise WorkflowError(f"copy notice {copy.id} is cancelled", _CANCELLED_ZH)
    if copy.kind == "withdrawal":
        return documents.paragraphs_pdf(
            "超限运输违法行为撤回抄告函", withdrawal_paragraphs_zh(copy),
            filename="copy-notice-withdrawal.pdf",
            footer="本撤回函由系统依已记录的处理决定被撤销或确认无效生成；时间均为北京时间。")
    return documents.paragraphs_pdf("超限运输违法行为抄告函", paragraphs_zh(copy),
                                    filename="copy-notice.pdf",
                                    footer="本抄告函由系统依已送达的处罚决定生成；时间均为北京时间。")


# ---- a decision changed, revoked, or declared unlawful or void ---------------------------

def _recount(session: Session, case: Case, *, actor: str,
             now: datetime) -> list[dict[str, Any]]:
    """Recount the vehicle's other live copies whose year held ``case`` (its penalty
    now removed):
    an unsent one gets its count and referral corrected; a sent one whose referral no
    longer holds is unmarked. Each change is audited. Returns the sent ones unmarked."""
    if not case.plate:
        return []
    rows = session.execute(
        select(CopyNotice, Case).join(Case, Case.id == CopyNotice.case_id)
        .where(CopyNotice.kind == "copy", CopyNotice.cancelled_utc.is_(None),
               CopyNotice.case_id != case.id, CopyNotice.case_id.not_in(_penalty_removed_cases()),
               Case.plate == case.plate,
               Case.plate_colour == case.plate_colour, Case.time_utc >= case.time_utc,
               Case.time_utc <= case.time_utc + timedelta(days=365))
        .order_by(CopyNotice.id)).all()
    unmarked: list[dict[str, Any]] = []
    for copy, other in rows:
        before = int(copy.payload["violations_in_year"])
        count = violations_in_year(session, other)
        referral = count > REFERRAL_THRESHOLD
        if count == before and referral == copy.referral:
            continue
        detail = {"copy_notice_id": copy.id, "revoked_case_id": case.id,
                  "violations_in_year_before": before, "violations_in_year": count,
                  "referral_before": copy.referral, "referral": referral,
                  "sent": copy.sent_utc is not None}
        if copy.sent_utc is None:  # not yet sent: the letter itself is corrected
            copy.payload = {**copy.payload, "violations_in_year": count, "referral": referral}
        elif referral or not copy.referral:
            continue  # sent, and its referral suggestion (or none) still stands
        else:
            unmarked.append({"copy_notice_id": copy.id, "case_id": copy.case_id,
                             "sent_utc": _iso(copy.sent_utc),
                             "sent_zh": notice_text.beijing_time_zh(_iso(copy.sent_utc)),
                             "violations_in_year_before": before, "violations_in_year": count})
        action = ("copy_notice.referral_unmarked" if copy.referral and not referral
                  else "copy_notice.recounted")
        copy.referral = referral
        audit.append(session, actor=actor, action=action, object_type="case",
                     object_id=str(copy.case_id), now=now, detail=detail)
    return unmarked


def follow_revocation(session: Session, case: Case, *, kind: str, kind_zh: str,
                      reason_zh: str, policy: DeadlinePolicy, actor: str,
                      now: datetime) -> CopyNotice | None:
    """After the case moved to ``revoked`` (same transaction). When ``kind`` removes the
    penalty (:func:`removes_penalty`): cancel its unsent copy, or queue the withdrawal of
    its sent copy; recount the vehicle's other copies. Otherwise (变更, 确认违法) the copy
    stands as it is and the case keeps counting; that is audited. Returns the withdrawal
    queued, if any (none for a case that had no copy)."""
    session.flush()  # the revocation's evidence event is what violations_in_year reads
    original = session.scalars(select(CopyNotice).where(
        CopyNotice.case_id == case.id, CopyNotice.kind == "copy")).first()
    if original is None:
        return None  # no served penalty was copied: nothing was counted or sent
    if not removes_penalty(kind):  # still a penalty for the same violation
        audit.append(session, actor=actor, action="copy_notice.kept", object_type="case",
                     object_id=str(case.id), now=now,
                     detail={"copy_notice_id": original.id, "kind": kind,
                             "sent": original.sent_utc is not None,
                             "cancelled": original.cancelled_utc is not None,
                             "corrected_copy": False})
        return None
    unmarked = _recount(session, case, actor=actor, now=now)
    if original.referral:  # its own referral suggestion falls with the decision
        original.referral = False
        audit.append(session, actor=actor, action="copy_notice.referral_unmarked",
                     object_type="case", object_id=str(case.id), now=now,
                     detail={"copy_notice_id": original.id, "revoked_case_id": case.id,
                             "referral_before": True, "referral": False,
                             "sent": original.sent_utc is not None})
    sent = original.sent_utc is not None
    if not sent and original.cancelled_utc is None:
        original.cancelled_utc = now
        original.cancel_reason_zh = f"处理决定被{kind_zh}：{reason_zh}"
        audit.append(session, actor=actor, action="copy_notice.cancelled", object_type="case",
                     object_id=str(case.id), now=now,
                     detail={"copy_notice_id": original.id, "kind": kind,
                             "reason": reason_zh})
    if not sent and not unmarked:
        return None
    p = original.payload
    payload = {
        "format": WITHDRAWAL_FORMAT, "source_zh": WITHDRAWAL_SOURCE_ZH, "case_id": case.id,
        "package_id": case.package_id, "plate": case.plate, "plate_colour": case.plate_colour,
        "violation_time_utc": p["violation_time_utc"],
        "violation_time_zh": p["violation_time_zh"], "site_zh": p["site_zh"],
        "withdrawn": None if not sent else {
            "copy_notice_id": original.id, "format": p["format"],
            "sent_utc": _iso(original.sent_utc),
            "sent_zh": notice_text.beijing_time_zh(_iso(original.sent_utc))},
        "revocation": {"kind": kind, "kind_zh": kind_zh, "reason_zh": reason_zh,
                       "time_utc": now.isoformat(),
                       "time_zh": notice_text.beijing_time_zh(now.isoformat())},
        "referrals_withdrawn": unmarked, "referral": False,
        "due_source_zh": policy.copy_withdrawal.source_zh,
        "due_confirmed": policy.copy_withdrawal.confirmed,
    }
    # it names the copy it withdraws only when that copy was sent; otherwise it corrects
    # only the referral copies listed in ``referrals_withdrawn``
    withdrawal = CopyNotice(case_id=case.id, kind="withdrawal",
                            withdraws_id=original.id if sent else None,
                            authority_zh=original.authority_zh,
                            due=policy.copy_withdrawal_due(china_date(now)), referral=False,
                            payload=payload, created_utc=now)
    session.add(withdrawal)
    session.flush()
    audit.append(session, actor=actor, action="copy_notice.withdrawal_queued",
                 object_type="case", object_id=str(case.id), now=now,
                 detail={"copy_notice_id": withdrawal.id,
                         "withdraws_id": withdrawal.withdraws_id,
                         "original_sent": sent, "due": withdrawal.due.isoformat(),
                         "referrals_withdrawn": [w["copy_notice_id"] for w in unmarked]})
    return withdrawal
