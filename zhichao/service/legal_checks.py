"""What the center checks from its own records before a case goes on, whatever the
station's package says.

* **Device and site at the passage** (行政处罚法 Art. 41 para. 1; 浙江省公路条例 Art. 38, 40;
  河南省治超条例 Art. 10): one of the WIM device's registered verification certificates
  was valid at the passage (``valid_from ≤ t < valid_to``, the gate's rule;
  ``ingest.device_certificates``) and the site had been published (``announced_utc ≤
  t``), both read from the center's register (``Device``, ``Site``), never from the
  manifest's eligibility status (a station can misconfigure its gate).
  A device or site the center has no record of, or a record without the dates, fails
  too: nothing unknown passes (the gate's rule for a missing input). Checked at the
  technical review's approval, at notice and at decision (:func:`check_device_and_site`).
* **Limitation and the decision period** (Art. 36, Art. 60), from
  ``DeadlinePolicy.limitation`` and ``DeadlinePolicy.decision`` (one table, with their
  legal sources): a passage discovered (registered at the center) more than two years
  after it happened, or a decision later than the ``decision_due`` set at 立案, is refused
  at notice and at decision unless the officer gives a recorded reason (the extension's
  approval reference, or the legal reviewer's note), which is audited
  (``case.period_exception``). Dates are China (北京时间) dates.

:func:`blockers_zh` lists what stops a case now, for the case page and the API.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.service import audit, ingest, reweigh
from zhichao.service.accounts import user_label
from zhichao.service.errors import WorkflowError
from zhichao.service.inputs import beijing_minute_zh, label_zh
from zhichao.service.models import AuditEntry, Case, Device, Passage, Site, User
from zhichao.service.workdays import DeadlinePolicy, china_date

EXCEPTION_ACTION = "case.period_exception"
#: rule key -> the field that carries its recorded reason (labels in inputs.FIELDS_ZH)
EXCEPTION_FIELDS = {"limitation": "limitation_note", "decision_period": "extension_reference"}


def device_and_site_problems(session: Session, case: Case) -> list[str]:
    """Why the center's own records do not show a verified device and a published site at
    the passage (zh-CN), empty when they do."""
    problems: list[str] = []
    at = case.time_utc
    passage = session.get(Passage, case.passage_id)
    device_id = None if passage is None else passage.device_id
    device = None if device_id is None else session.get(Device, device_id)
    if device is None:
        problems.append(f"中心没有称重设备{device_id or ''}的登记记录，"
                        "无法核实采集时计量检定证书有效")
    else:
        periods = [(f, t) for _, f, t in ingest.device_certificates(session, device.device_id)
                   if f is not None and t is not None]
        if not periods:
            problems.append(f"中心登记的称重设备{device.device_id}没有计量检定证书有效期，"
                            "无法核实采集时证书有效")
        elif not any(f <= at < t for f, t in periods):
            registered = "；".join(f"{beijing_minute_zh(f)} 至 {beijing_minute_zh(t)}"
                                   for f, t in periods)
            problems.append(
                f"采集时（{beijing_minute_zh(at)}）称重设备{device.device_id}的计量检定证书不在"
                f"有效期内（中心登记的证书有效期：{registered}）")
    site = session.get(Site, case.site_id)
    if site is None:
        problems.append(f"中心没有监测点{case.site_id}的登记记录，无法核实其位置已公布")
    elif site.announced_utc is None:
        problems.append(f"监测点{site.site_id}的位置未公布（中心登记中没有公布时间）")
    elif site.announced_utc > at:
        problems.append(f"监测点{site.site_id}于 {beijing_minute_zh(site.announced_utc)} 公布，"
                        f"晚于采集时间（{beijing_minute_zh(at)}）")
    return problems


def check_device_and_site(session: Session, case: Case, *, step_zh: str) -> None:
    """Refuse ``step_zh`` when :func:`device_and_site_problems` finds any (409)."""
    problems = device_and_site_problems(session, case)
    if problems:
        raise WorkflowError(
            f"case {case.id}: center records show the device or site not lawful at the "
            f"passage ({len(problems)} problem(s)); {step_zh} refused",
            "；".join(problems) + f"。依中心登记记录，该记录不得作为处罚证据，不得{step_zh}"
            "（《行政处罚法》第四十一条第一款；计量检定证书、监测点公布的规定）"
            + ("；已审核通过的案件请作不予立案处理" if step_zh == "立案告知" else ""))


def limitation_problem(case: Case, policy: DeadlinePolicy) -> str | None:
    """Art. 36: the passage's China date plus two years, against the China date the center
    registered (discovered) it."""
    committed = china_date(case.time_utc)
    end = policy.limitation_end(committed)
    discovered = china_date(case.created_utc)
    if discovered > end:
        return (f"违法行为发生于 {committed}，中心于 {discovered} 登记发现，已超过二年"
                f"（至 {end} 止）：依{policy.limitation.source_zh}，不再给予行政处罚")
    return None


def decision_due(case: Case, policy: DeadlinePolicy) -> date | None:
    """The Art. 60 date: as set at 立案, else counted from ``opened_utc``."""
    if case.decision_due is not None:
        return case.decision_due
    if case.opened_utc is None:
        return None
    return policy.decision_due(china_date(case.opened_utc))


def decision_period_problem(case: Case, today: date, policy: DeadlinePolicy) -> str | None:
    due = decision_due(case, policy)
    if due is not None and today > due:
        return (f"立案之日起九十日内应作出决定（期限 {due}），今日 {today} 已超过："
                f"{policy.decision.source_zh}")
    return None


def _recorded(session: Session, case: Case, rule: str) -> bool:
    return any(e.detail.get("rule") == rule for e in session.scalars(select(AuditEntry).where(
        AuditEntry.action == EXCEPTION_ACTION, AuditEntry.object_type == "case",
        AuditEntry.object_id == str(case.id))))


def check_periods(session: Session, case: Case, user: User, *, step: str,
                  policy: DeadlinePolicy, now: datetime, limitation_note: str | None,
                  extension_reference: str | None = None) -> None:
    """Refuse ``step`` ("notify" | "decision") when the limitation period (Art. 36) or, at
    decision, the decision period (Art. 60) is over, unless a reason is given now (audited)
    or, for the limitation, was recorded at an earlier step. ``limitation_note`` and
    ``extension_reference`` are typed text (already stripped; None when empty)."""
    found: list[tuple[str, str, str | None]] = []
    limitation = limitation_problem(case, policy)
    if limitation is not None:
        found.append(("limitation", limitation, limitation_note))
    if step == "decision":
        late = decision_period_problem(case, china_date(now), policy)
        if late is not None:
            found.append(("decision_period", late, extension_reference))
    for rule, problem_zh, given in found:
        field = EXCEPTION_FIELDS[rule]
        if given:
            audit.append(session, actor=user_label(user), action=EXCEPTION_ACTION,
                         object_type="case", object_id=str(case.id), now=now,
                         detail={"rule": rule, "step": step, field: given,
                                 "problem": problem_zh})
        elif not (rule == "limitation" and _recorded(session, case, rule)):
            raise WorkflowError(f"case {case.id}: {rule} exceeded; {field} required",
                                f"{problem_zh}。如依法仍须办理，请填写{label_zh(field)}")


def blockers_zh(session: Session, case: Case, *, policy: DeadlinePolicy,
                today: date) -> list[str]:
    """What stops the case from going on now (zh-CN): no penalty proposal or no plate
    (before notice), the center's device and site records, a static re-weighing that
    proposes no penalty, and the periods of Art. 36 and Art. 60 (for a case still to be
    notified or decided, where no reason was recorded)."""
    if case.state in ("rejected", "revoked", "archived"):
        return []
    out: list[str] = []
    if case.state in ("technical_review", "legal_review", "approved") and (
            case.proposed_outcome in (None, "none") or not case.plate):
        # what open_and_notify refuses first: such a case cannot be notified
        out.append("没有处罚建议或号牌，不能立案告知")
    if case.state in ("technical_review", "legal_review", "approved", "notified",
                      "statements_closed"):
        out.extend(device_and_site_problems(session, case))
    latest = reweigh.no_penalty_reweigh(session, case)
    if latest is not None:
        out.append(f"{reweigh.no_penalty_zh(latest)}，不得按动态称重结果处罚")
    if case.state in ("technical_review", "legal_review", "approved", "notified",
                      "statements_closed"):
        limitation = limitation_problem(case, policy)
        if limitation is not None and not _recorded(session, case, "limitation"):
            out.append(limitation)
    if case.state in ("notified", "statements_closed"):
        late = decision_period_problem(case, today, policy)
        if late is not None:
            out.append(late)
    return out
