"""Who may do what: one table for every case action and every staff read.

``DUTIES`` maps each workflow action to the states it starts from, the roles allowed to do
it, the earlier parts on the same case whose actor may not do it (separation of duties),
and its legal source. The workflow functions call :func:`check` on every transition (so
the JSON API, the console and the CLI cannot differ); the API's role dependencies and its
OpenAPI extensions (``x-roles``, ``x-separation``, ``x-legal-source``), the console's forms
and ``docs/service.md`` (:func:`markdown_table`) read the same table.

Earlier parts (``PRIOR_ZH``): ``technical_review`` (the case's technical reviewer),
``legal_review`` (its legal reviewer) and ``manual_override`` (the operator who recorded a
manual correction, or any user of the station where it was made).

Legal basis (《中华人民共和国行政处罚法》, 2021 revision, in force 2021-07-15):

* Art. 41: records of electronic monitoring are reviewed (技术审核) before they are
  evidence; the person who corrected a record does not review it (Art. 43, 回避).
* Art. 58: 法制审核 before the decision, by other staff than those who established the
  facts: the legal reviewer is not the technical reviewer.
* Art. 57, 58: the decision is made by the authority's responsible person after review,
  apart from the investigation and the reviews (four eyes on review and decision). The
  steps that carry the case outward for the decision maker (立案告知, 送达, 公示) are held
  to the same rule (issue 18); the law names the decision, not these steps, so those rows
  are marked ``confirmed=False`` until legal review confirms them.
* Art. 40, 54: a case approved by both reviews that the record can no longer support (a
  later static re-weighing proposes no penalty, the center's register shows the device or
  site unlawful at the passage, the Art. 36 limitation) is not opened: the decision maker
  records 不予立案 with a reason (``withdraw``, ``approved`` → ``rejected``), held to the
  same separation as 立案告知 (``confirmed=False``).
* Art. 64(4): the hearing is conducted by staff who did not investigate the case; the
  technical reviewer of a non-site record is treated as its investigator (an
  interpretation: ``confirmed=False``, to be confirmed by legal review).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from zhichao.service.accounts import ROLES_ZH, require_role
from zhichao.service.errors import PermissionDeniedError
from zhichao.service.models import AuditEntry, Case, Decision, Statement, User

LAW = "《行政处罚法》"
LAW_EFFECTIVE = date(2021, 7, 15)  # 2021 revision in force
DECIDING = ("technical_review", "legal_review", "manual_override")

PRIOR_ZH: dict[str, str] = {
    "technical_review": "技术审核人",
    "legal_review": "法制审核人",
    "manual_override": "人工修正人（或修正站点的人员）",
    "handled": "办案人员（曾办理本案任一环节）",
}
PRIOR_EN: dict[str, str] = {
    "technical_review": "the technical reviewer",
    "legal_review": "the legal reviewer",
    "manual_override": "the maker of the manual override or an operator of its own station",
    "handled": "a handler of the case (took part in any step of it)",
}


@dataclass(frozen=True)
class Duty:
    """One case action: where it starts, who may do it, who may not, and why."""

    action: str  # also the path segment of the API and console routes
    label_zh: str
    from_states: tuple[str, ...]
    roles: tuple[str, ...]
    barred: tuple[str, ...]  # earlier parts (PRIOR_ZH) whose actor may not do this
    source_zh: str
    effective: date = LAW_EFFECTIVE
    confirmed: bool = True


DUTIES: dict[str, Duty] = {d.action: d for d in (
    Duty("manual-override", "人工修正标记", ("technical_review",), ("station_operator",), (),
         f"{LAW}第四十一条第二款、第四十七条（记录须经审核，全过程记录）"),
    Duty("technical-review", "技术审核", ("technical_review",), ("technical_reviewer",),
         ("manual_override",), f"{LAW}第四十一条（技术审核）、第四十三条（回避）"),
    Duty("legal-review", "法制审核", ("legal_review",), ("legal_reviewer",),
         ("technical_review", "manual_override"), f"{LAW}第五十八条（法制审核）、第四十一条"),
    Duty("notify", "立案并告知", ("approved",), ("decision_maker",), DECIDING,
         f"{LAW}第五十七条、第五十八条（决定与调查、审核分离）、第四十四条（告知）",
         confirmed=False),
    Duty("withdraw", "不予立案（审核通过后发现不得处罚）", ("approved",), ("decision_maker",),
         DECIDING,
         f"{LAW}第四十条（违法事实不清、证据不足的，不得给予行政处罚）、第五十四条（立案）、"
         "第五十七条、第五十八条（决定与调查、审核分离）；适用时：静态复检认定不予处罚、"
         f"{LAW}第四十一条第一款及计量检定证书、监测点公布的规定、第三十六条（追责时效）",
         confirmed=False),
    Duty("serve-notice", "记录告知书送达", ("notified",), ("decision_maker",), DECIDING,
         f"{LAW}第五十七条、第五十八条、第六十一条（送达，准用《民事诉讼法》：直接送达以签收为准，邮寄以交付为准，"
         "电子送达以到达当事人同意的系统为准，公告经过三十日视为送达）、第四十四条",
         confirmed=False),
    Duty("waive", "记录当事人放弃陈述申辩或听证", ("notified",), ("legal_reviewer",), (),
         f"{LAW}第六十二条（当事人明确放弃陈述或者申辩权利的除外）、第六十四条"),
    Duty("answer", "陈述申辩复核答复", ("notified",), ("legal_reviewer",), (),
         f"{LAW}第四十五条（复核）"),
    Duty("hearing", "听证记录", ("notified",), ("legal_reviewer",),
         ("technical_review", "manual_override"),
         f"{LAW}第六十四条第四项（听证由非本案调查人员主持）", confirmed=False),
    Duty("close-statements", "陈述申辩、听证处理完毕", ("notified",), ("legal_reviewer",), (),
         f"{LAW}第四十四条、第四十五条、第六十二条"),
    Duty("decision", "作出决定", ("statements_closed",), ("decision_maker",), DECIDING,
         f"{LAW}第五十七条、第五十八条（决定与调查、审核分离）"),
    Duty("serve", "送达决定书", ("decided",), ("decision_maker",), DECIDING,
         f"{LAW}第五十七条、第五十八条、第六十一条（送达）", confirmed=False),
    Duty("publish", "结案并公示", ("served",), ("decision_maker",), DECIDING,
         f"{LAW}第五十七条、第五十八条、第四十八条（公示）", confirmed=False),
    Duty("revoke", "决定被变更、撤销或确认违法、无效（撤回公示，作废或撤回抄告）",
         ("decided", "served", "published"), ("decision_maker",), DECIDING,
         f"{LAW}第五十七条、第五十八条、第四十八条第二款（三日内撤回行政处罚决定信息并公开说明"
         "理由）",
         confirmed=False),
    Duty("archive", "归档", ("published", "served", "revoked", "rejected"),
         ("decision_maker", "legal_reviewer"), (), f"{LAW}第四十七条（归档保存）"),
)}

# Staff reads: which roles see what (the API, the console and the docs read this).
# Supervisors read case files and their evidence for 案卷评查 (issue 22).
CASE_READ = ("technical_reviewer", "legal_reviewer", "decision_maker", "auditor",
             "station_operator", "supervisor")  # station operators: their own station only
EVIDENCE_READ = ("technical_reviewer", "legal_reviewer", "decision_maker", "auditor",
                 "supervisor")
REGISTRY_READ = (*CASE_READ, "administrator")
STATISTICS_READ = ("auditor", "decision_maker", "administrator")
AUDIT_READ = ("auditor",)
USER_ADMIN = ("administrator",)
# 抄告 outbox (62号令 Art. 44): the decision maker's office sends and records it.
COPY_NOTICES = ("decision_maker",)
# Removing expired plates (个人信息保护法 Art. 19) is an administrator's task.
RETENTION_RUN = ("administrator",)

# ---- supervision of the enforcement itself (issue 22) ------------------------------------
SUPERVISION_LAW = "《行政处罚法》第七十五条（行政执法监督、评议、考核）"
SEED_PLAN_REVIEW = ("项目种子计划（原始文件名待核实）：每年度组织不少于1次的执法案卷评查活动，"
                    "各类案卷一般抽查数量不少于10件，实际案卷少于10件的按实际数量评查")
DISCLOSURE_GUIDE = ("国务院办公厅《关于全面推行行政执法公示制度执法全过程记录制度重大执法决定"
                    "法制审核制度的指导意见》（国办发〔2018〕118号）：每年1月31日前公开上年度"
                    "行政执法总体情况有关数据")


@dataclass(frozen=True)
class SupervisionDuty:
    """One supervision action: who may do it, which earlier part in a case bars them."""

    action: str
    label_zh: str
    roles: tuple[str, ...]
    barred: tuple[str, ...]
    source_zh: str
    effective: date = LAW_EFFECTIVE
    confirmed: bool = True


SUPERVISION_DUTIES: dict[str, SupervisionDuty] = {d.action: d for d in (
    SupervisionDuty("open-campaign", "发起案卷评查", ("supervisor",), (),
                    f"{SUPERVISION_LAW}；{SEED_PLAN_REVIEW}", confirmed=False),
    SupervisionDuty("add-case", "指定评查案卷（集中评查）", ("supervisor",), (),
                    f"{SUPERVISION_LAW}；{SEED_PLAN_REVIEW}", confirmed=False),
    SupervisionDuty("score", "案卷评分", ("supervisor", "legal_reviewer"), ("handled",),
                    f"{SUPERVISION_LAW}；{LAW}第四十三条（回避：不评查本人办理的案卷）",
                    confirmed=False),
    SupervisionDuty("close-campaign", "评查结束并出具报告", ("supervisor",), (),
                    f"{SUPERVISION_LAW}；{LAW}第四十七条（全过程记录）", confirmed=False),
    SupervisionDuty("mark-typical", "标记典型案例", ("supervisor",), (),
                    f"{LAW}第四十八条（公开）；《个人信息保护法》第二十八条、第五十一条（去标识化）",
                    confirmed=False),
    SupervisionDuty("statistics", "月度统计与年报", ("supervisor", *STATISTICS_READ), (),
                    DISCLOSURE_GUIDE, effective=date(2018, 12, 5)),
)}
SUPERVISION_READ = ("supervisor", "legal_reviewer", "auditor")


def duty(action: str) -> Duty:
    """The table row of ``action`` (a programming error if there is none)."""
    return DUTIES[action]


def was(part: str, user: User, case: Case) -> bool:
    """Whether ``user`` took ``part`` (a key of ``PRIOR_ZH``) in ``case`` before."""
    if part == "technical_review":
        return case.technical_reviewer_id == user.id
    if part == "legal_review":
        return case.legal_reviewer_id == user.id
    if part == "handled":
        return user.id in handler_ids(object_session(case), case)
    if part == "manual_override":
        return bool(case.manual_override) and (
            case.manual_override_by == user.id
            or (user.station_id is not None and user.station_id == case.station_id))
    raise KeyError(part)


# Audit actions on a case that are not a part in handling it: reading its evidence, and
# the supervision of the file itself (评查, typical cases).
NOT_HANDLING_ACTIONS = ("evidence.", "supervision.")


def handler_ids(session: Session | None, case: Case) -> set[int]:
    """Every user who took a part in ``case`` (``handled``): its reviewers, the override
    maker, the actors of its transitions, whoever answered a statement, the decision
    maker, and every user who recorded anything on it in the audit log (hearing, waiver,
    notice service, statement answers, overrides, copy notices, …; the actor
    ``user:<id>:<name>`` of each entry on the case, except :data:`NOT_HANDLING_ACTIONS`),
    so a new case action counts without a change here."""
    ids = {case.technical_reviewer_id, case.legal_reviewer_id, case.manual_override_by}
    ids.update(e.actor_id for e in case.events)
    if session is not None:
        ids.update(session.scalars(select(Statement.handled_by)
                                   .where(Statement.case_id == case.id)))
        ids.update(session.scalars(select(Decision.decided_by)
                                   .where(Decision.case_id == case.id)))
        for actor, action in session.execute(
                select(AuditEntry.actor, AuditEntry.action).where(
                    AuditEntry.object_type == "case", AuditEntry.object_id == str(case.id),
                    AuditEntry.actor.like("user:%"))):
            user_id = actor.split(":")[1]
            if user_id.isdigit() and not action.startswith(NOT_HANDLING_ACTIONS):
                ids.add(int(user_id))
    return {i for i in ids if i is not None}


def barred_by(action: str, user: User, case: Case) -> str | None:
    """The first earlier part that bars ``user`` from ``action`` on ``case``, or None."""
    return next((p for p in duty(action).barred if was(p, user, case)), None)


def check(action: str, user: User, case: Case) -> Duty:
    """Refuse (``PermissionDeniedError``, HTTP 403, zh-CN) a user without one of the
    action's roles, or one whose earlier part in this case bars them; else the row."""
    row = duty(action)
    require_role(user, *row.roles)
    part = barred_by(action, user, case)
    if part is not None:
        raise PermissionDeniedError(
            f"four eyes: user {user.username} is {PRIOR_EN[part]} of case {case.id} and may "
            f"not do {action} (separation of duties; {row.source_zh})",
            f"您是本案的{PRIOR_ZH[part]}，不得办理“{row.label_zh}”（职责分离：{row.source_zh}）")
    return row


def may(action: str, user: User, case: Case) -> bool:
    """Whether ``user`` may do ``action`` on ``case`` now (state, role, separation)."""
    row = duty(action)
    return (case.state in row.from_states and bool(user.role_set.intersection(row.roles))
            and barred_by(action, user, case) is None)


def openapi_extra(action: str | None = None, roles: tuple[str, ...] = ()) -> dict[str, Any]:
    """The OpenAPI extensions of a route: ``x-roles`` (and for an action its separation
    rule and legal source)."""
    if action is None:
        return {"x-roles": list(roles)}
    row = duty(action)
    return {"x-roles": list(row.roles), "x-separation": list(row.barred),
            "x-legal-source": row.source_zh, "x-effective": row.effective.isoformat(),
            "x-confirmed": row.confirmed}


def description_zh(action: str) -> str:
    """A route description built from the table row."""
    row = duty(action)
    roles = "、".join(ROLES_ZH[r] for r in row.roles)
    barred = "、".join(PRIOR_ZH[p] for p in row.barred) or "无"
    mark = "" if row.confirmed else "（解释性规则，待法制审核确认）"
    return (f"角色：{roles}。本案以下人员不得办理：{barred}。"
            f"依据：{row.source_zh}{mark}，自 {row.effective.isoformat()} 施行。")


def markdown_table() -> str:
    """The table as Markdown (``docs/service.md`` carries this text; a test compares)."""
    lines = ["| Action | 中文 | From state | Roles | Not by (same case) | Legal source | "
             "In force | Confirmed |", "|---|---|---|---|---|---|---|---|"]
    for row in DUTIES.values():
        barred = ", ".join(row.barred) or "—"
        confirmed = "yes" if row.confirmed else "no (interpretation)"
        lines.append(f"| `{row.action}` | {row.label_zh} | {', '.join(row.from_states)} | "
                     f"{', '.join(row.roles)} | {barred} | {row.source_zh} | "
                     f"{row.effective.isoformat()} | {confirmed} |")
    return "\n".join(lines)


def check_supervision(action: str, user: User, case: Case | None = None) -> SupervisionDuty:
    """Refuse (403, zh-CN) a user without one of the action's roles, or (with ``case``)
    one whose earlier part in the case bars them; else the row."""
    row = SUPERVISION_DUTIES[action]
    require_role(user, *row.roles)
    part = None if case is None else next((p for p in row.barred if was(p, user, case)), None)
    if part is not None and case is not None:
        raise PermissionDeniedError(
            f"user {user.username} is {PRIOR_EN[part]} of case {case.id} and may not do "
            f"{action} ({row.source_zh})",
            f"您是本案的{PRIOR_ZH[part]}，不得办理“{row.label_zh}”（{row.source_zh}）")
    return row


def supervision_markdown_table() -> str:
    """The supervision rows as Markdown (``docs/service.md`` carries this text)."""
    lines = ["| Action | 中文 | Roles | Not by (same case) | Legal source | In force | "
             "Confirmed |", "|---|---|---|---|---|---|---|"]
    for row in SUPERVISION_DUTIES.values():
        confirmed = "yes" if row.confirmed else "no (interpretation)"
        lines.append(f"| `{row.action}` | {row.label_zh} | {', '.join(row.roles)} | "
                     f"{', '.join(row.barred) or '—'} | {row.source_zh} | "
                     f"{row.effective.isoformat()} | {confirmed} |")
    return "\n".join(lines)
