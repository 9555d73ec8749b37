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
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.evidence import documents, notice_text
from zhichao.service import audit
from zhichao.service.errors import NotFoundError, WorkflowError
from zhichao.service.models import Case, CaseEvent, CopyNotice, Decision
from zhichao.service.workdays import DeadlinePolicy, china_date

FORMAT = "zhichao.copy-notice/1"
REFERRAL_FORMAT = "zhichao.referral/1"  # unconfirmed: no official list format found
COPIED_OUTCOMES = ("fine", "reduced", "warning")  # interpretation, unconfirmed
REFERRAL_THRESHOLD = 3  # 公路安全保护条例 Art. 66: "1年内违法超限运输超过3次"
NOT_COLLECTED_ZH = "未采集（非现场检测记录不含此项，须人工补录）"
SOURCE_ZH = ("《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）第四十四条；"
             "《公路安全保护条例》第六十六条")
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


def violations_in_year(session: Session, case: Case) -> int:
    """Served penalties of the same vehicle whose violation lies in the 365 days up to
    this case's (this case included); a decision revoked or changed does not count."""
    start = case.time_utc - timedelta(days=365)
    revoked = select(CaseEvent.case_id).where(CaseEvent.to_state == "revoked")
    rows = session.execute(
        select(Case.id).join(Decision, Decision.case_id == Case.id)
        .where(Case.plate == case.plate, Case.plate_colour == case.plate_colour,
               Case.time_utc >= start, Case.time_utc <= case.time_utc,
               Case.id.not_in(revoked),
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
         now: datetime) -> CopyNotice:
    """Record that the copy was sent (``what="sent"``) or acknowledged (``"acknowledged"``;
    only after it was sent); each is recorded once."""
    if what == "sent":
        if copy.sent_utc is not None:
            raise WorkflowError("already sent", "该抄告已记录发送")
        copy.sent_utc = now
    elif what == "acknowledged":
        if copy.sent_utc is None:
            raise WorkflowError("not sent yet", "该抄告尚未发送，不能记录回执")
        if copy.acknowledged_utc is not None:
            raise WorkflowError("already acknowledged", "该抄告已记录回执")
        copy.acknowledged_utc = now
    else:
        raise ValueError(what)
    audit.append(session, actor=actor, action=f"copy_notice.{what}", object_type="case",
                 object_id=str(copy.case_id), now=now, detail={"copy_notice_id": copy.id})
    return copy


def overdue(session: Session, today: date) -> list[tuple[int, str, date, str]]:
    """(case id, state, due, what) of every unsent copy notice past its due date."""
    rows = session.execute(select(CopyNotice, Case.state).join(Case, Case.id == CopyNotice.case_id)
                           .where(CopyNotice.sent_utc.is_(None), CopyNotice.due < today)).all()
    return [(c.case_id, state, c.due, "抄告已超过七个工作日未发送（62号令第四十四条）")
            for c, state in rows]


def export_json(copy: CopyNotice) -> dict[str, Any]:
    """The documented export: the payload with the addressee, due date and outbox state."""
    return {**copy.payload, "copy_notice_id": copy.id, "authority_zh": copy.authority_zh,
            "due": copy.due.isoformat(), "created_utc": copy.created_utc.isoformat(),
            "sent_utc": None if copy.sent_utc is None else copy.sent_utc.isoformat(),
            "acknowledged_utc": None if copy.acknowledged_utc is None
            else copy.acknowledged_utc.isoformat()}


def paragraphs_zh(copy: CopyNotice) -> list[str]:
    p = copy.payload
    d = p["decision"]
    lines = [
        f"{copy.authority_zh}：",
        f"依据{SOURCE_ZH}，现将超限运输违法案件（案件编号 {p['case_id']}，证据包 "
        f"{p['package_id']}）抄告如下。",
        f"车辆号牌：{p['plate']}（{p['plate_colour']}）；车辆类型：{p['vehicle_type_zh']}；"
        f"经营者：{p['operator_zh']}；道路运输证号：{p['road_transport_certificate']}。",
        f"驾驶人：{p['driver_zh']}；从业资格证号：{p['driver_qualification']}；驾驶人所在单位："
        f"{p['driver_employer_zh']}；货物装载源头：{p['loading_source_zh']}。",
        f"违法时间：{p['violation_time_zh']}；地点：{p['site_zh']}。",
        f"处理决定：{d['text_zh'] or d['outcome']}",
        f"该车辆一年内违法超限运输 {p['violations_in_year']} 次"
        + ("，已超过三次，建议依《公路安全保护条例》第六十六条处理。" if p["referral"] else "。"),
    ]
    return lines


def export_pdf(copy: CopyNotice) -> bytes:
    return documents.paragraphs_pdf("超限运输违法行为抄告函", paragraphs_zh(copy),
                                    filename="copy-notice.pdf",
                                    footer="本抄告函由系统依已送达的处罚决定生成；时间均为北京时间。")
