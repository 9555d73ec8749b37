"""案卷评查 (case-file review) campaigns: open, draw the sample, score, close with a sealed
report; and typical cases (典型案例), marked and exported masked.

The rules are plain functions over one checklist table (:data:`CHECKLIST`): every item
belongs to one of the five dimensions the seed plans name (执法主体、执法程序、事实认定、
法律适用、自由裁量权行使) and cites its rule. A reviewer answers every item (met or not);
each dimension's points are its share of met items times :data:`DIMENSION_POINTS`, the
total is their sum. Failed items are the campaign's "problems by kind".

The sample is reproducible: the candidate cases (passage time in the period, China dates;
the scope's sites and states) are ranked by ``SHA-256(seed ":" case id)`` and the first
``min_sample`` (at least 10, all when fewer) are drawn; anyone holding the seed and the
candidate list recomputes it (:func:`draw_sample`). Cases the supervisor adds on purpose
(集中评查) join the sample as ``chosen``.

Closing freezes the report (canonical JSON, RFC 8785) with its SHA-256 and queues, for
every case of the sample, an evidence-log event (``legal_review`` type, outcome
``case_file_review``) that carries the report's hash: the report is sealed in each case's
history like a review event (``events.flush_to_log``). Every action is audited.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.events import EventType
from zhichao.service import audit, duties, events
from zhichao.service.accounts import user_label
from zhichao.service.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    WorkflowError,
)
from zhichao.service.inputs import check_date
from zhichao.service.models import (
    CampaignCase,
    CampaignScore,
    Case,
    ReviewCampaign,
    TypicalCase,
    User,
)
from zhichao.service.workdays import CHINA_TZ
from zhichao.service.workflow import STATES_ZH

LAW = "《行政处罚法》"
MIN_SAMPLE = 10  # seed plans: 一般抽查数量不少于10件，实际案卷少于10件的按实际数量评查
DIMENSION_POINTS = 20
# Grades of a case file's total score. Not set by any law we hold: a local 评查标准 sets
# them; configurable here and marked unconfirmed in the report.
GRADES: tuple[tuple[int, str], ...] = ((90, "优秀"), (70, "合格"), (0, "不合格"))
GRADES_CONFIRMED = False
DIMENSIONS_ZH: dict[str, str] = {
    "subject": "执法主体", "procedure": "执法程序", "facts": "事实认定",
    "law": "法律适用", "discretion": "自由裁量权行使",
}
DECIDED_STATES = ("decided", "served", "published", "archived")
_PLATE_LIKE = re.compile(r"[\u4e00-\u9fa5][A-Z][A-Z0-9·]{4,6}")


@dataclass(frozen=True)
class Item:
    """One checklist item: its dimension, what the reviewer checks, and the rule."""

    key: str
    dimension: str
    text_zh: str
    source_zh: str


CHECKLIST: dict[str, Item] = {i.key: i for i in (
    Item("subject.authority", "subject", "作出决定的机关具有超限运输行政处罚职权，以本机关名义作出",
         f"{LAW}第十七条"),
    Item("subject.officers", "subject", "办案人员具有行政执法资格，审核、决定人员均已记录",
         f"{LAW}第四十二条"),
    Item("procedure.device", "procedure", "电子技术监控设备经法制、技术审核，设置地点已向社会公布",
         f"{LAW}第四十一条第一款"),
    Item("procedure.review", "procedure", "记录经技术审核，确认真实、清晰、完整、准确后方作为证据",
         f"{LAW}第四十一条第二款"),
    Item("procedure.notice", "procedure", "已告知违法事实、理由、依据及陈述、申辩、听证权利",
         f"{LAW}第四十一条第三款、第四十四条"),
    Item("procedure.legal_review", "procedure", "作出决定前经法制审核，审核人员与调查人员分离",
         f"{LAW}第五十八条"),
    Item("procedure.service", "procedure", "决定书在法定期限内送达，送达方式有记录",
         f"{LAW}第六十一条"),
    Item("facts.evidence", "facts", "称重数据、图像与签名证据包完整，违法事实清楚、证据确凿",
         f"{LAW}第四十条"),
    Item("facts.identity", "facts", "当事人及车辆（号牌、轴数、车型）认定准确",
         f"{LAW}第四十条"),
    Item("law.basis", "law", "适用的限值与处罚条款准确、完整",
         "《超限运输车辆行驶公路管理规定》第三条、第四十三条"),
    Item("law.document", "law", "决定书载明事实、证据、依据、履行方式、救济途径等法定事项",
         f"{LAW}第五十九条"),
    Item("discretion.standard", "discretion", "罚款数额符合裁量基准，理由已说明",
         f"{LAW}第三十四条"),
    Item("discretion.lenient", "discretion", "从轻、减轻或不予处罚的情形已审查并说明",
         f"{LAW}第三十二条、第三十三条"),
)}


def grade_zh(total: int) -> str:
    return next(label for floor, label in GRADES if total >= floor)


def dimension_scores(checklist: dict[str, bool]) -> dict[str, int]:
    """Points per dimension: the share of its items met, times ``DIMENSION_POINTS``."""
    out: dict[str, int] = {}
    for dim in DIMENSIONS_ZH:
        items = [k for k, i in CHECKLIST.items() if i.dimension == dim]
        met = sum(1 for k in items if checklist[k])
        out[dim] = round(DIMENSION_POINTS * met / len(items))
    return out


def _china_range_utc(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC bounds of China dates ``start`` to ``end`` inclusive."""
    lo = datetime.combine(start, time(), CHINA_TZ).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(), CHINA_TZ).astimezone(UTC)
    return lo, hi


def _text(value: str | None, field: str, label_zh: str, *, max_chars: int,
          required: bool = True) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise InvalidInputError(f"{field}: required", f"请填写{label_zh}")
        return None
    if len(value) > max_chars:
        raise InvalidInputError(f"{field}: at most {max_chars} characters",
                                f"{label_zh}不得超过 {max_chars} 字")
    return value


def get_campaign(session: Session, campaign_id: int) -> ReviewCampaign:
    campaign = session.get(ReviewCampaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"campaign {campaign_id} not found", "评查活动不存在")
    return campaign


def candidates(session: Session, campaign: ReviewCampaign) -> list[int]:
    """Ids of the cases in the campaign's period and scope, ascending."""
    lo, hi = _china_range_utc(campaign.period_start, campaign.period_end)
    stmt = select(Case.id).where(Case.time_utc >= lo, Case.time_utc < hi).order_by(Case.id)
    if campaign.site_ids:
        stmt = stmt.where(Case.site_id.in_(campaign.site_ids))
    if campaign.states:
        stmt = stmt.where(Case.state.in_(campaign.states))
    return list(session.scalars(stmt))


def draw_sample(seed: str, candidate_ids: list[int], size: int) -> list[int]:
    """The first ``size`` candidates ranked by SHA-256(seed ":" id) (all when fewer)."""
    ranked = sorted(candidate_ids, key=lambda cid: hashlib.sha256(
        f"{seed}:{cid}".encode()).hexdigest())
    return ranked[:size]


def _reviewers(session: Session, reviewer_ids: list[int]) -> list[User]:
    if not reviewer_ids:
        raise InvalidInputError("reviewer_ids: at least one", "请至少指定一名评查人员")
    roles = duties.SUPERVISION_DUTIES["score"].roles
    users = []
    for uid in sorted(set(reviewer_ids)):
        user = session.get(User, uid)
        if user is None or not user.active or not user.role_set.intersection(roles):
            raise InvalidInputError(f"reviewer {uid}: not an active reviewer",
                                    f"评查人员 {uid} 不存在或无评查资格")
        users.append(user)
    return users


def open_campaign(session: Session, user: User, *, title: str, period_start: date,
                  period_end: date, site_ids: list[str], states: list[str],
                  reviewer_ids: list[int], min_sample: int = MIN_SAMPLE,
                  seed: str | None = None, now: datetime | None = None) -> ReviewCampaign:
    """Open a campaign and draw its random sample (recorded seed)."""
    now = now or utc_now()
    duties.check_supervision("open-campaign", user)
    title_zh = _text(title, "title", "评查活动名称", max_chars=200)
    check_date(period_start, "period_start")  # year 1 or 9999 overflow the UTC bounds
    check_date(period_end, "period_end")
    if period_end < period_start:
        raise InvalidInputError("period: end before start", "评查期间的结束日期早于开始日期")
    if not MIN_SAMPLE <= min_sample <= 10000:
        raise InvalidInputError(f"min_sample: {MIN_SAMPLE}–10000",
                                f"抽查数量不得少于 {MIN_SAMPLE} 件")
    unknown = [s for s in states if s not in STATES_ZH]
    if unknown:
        raise InvalidInputError(f"states: unknown {unknown}", "案件状态无效：" + "、".join(unknown))
    seed = seed or secrets.token_hex(16)
    if not re.fullmatch(r"[0-9A-Za-z_-]{8,64}", seed):
        raise InvalidInputError("seed: 8–64 of 0-9 A-Z a-z _ -", "随机种子须为 8–64 位字母或数字")
    reviewers = _reviewers(session, reviewer_ids)
    campaign = ReviewCampaign(
        title_zh=title_zh, period_start=period_start, period_end=period_end,
        site_ids=sorted(set(site_ids)), states=sorted(set(states)), seed=seed,
        min_sample=min_sample, reviewer_ids=[u.id for u in reviewers], state="open",
        opened_by=user.id, opened_utc=now)
    session.add(campaign)
    session.flush()
    pool = candidates(session, campaign)
    drawn = draw_sample(seed, pool, min_sample)
    for rank, case_id in enumerate(drawn, start=1):
        session.add(CampaignCase(campaign_id=campaign.id, case_id=case_id, how="random",
                                 rank=rank))
    audit.append(session, actor=user_label(user), action="supervision.campaign_opened",
                 object_type="campaign", object_id=str(campaign.id), now=now,
                 detail={"seed": seed, "candidates": len(pool), "drawn": drawn,
                         "period": [period_start.isoformat(), period_end.isoformat()],
                         "site_ids": campaign.site_ids, "states": campaign.states,
                         "reviewer_ids": campaign.reviewer_ids})
    return campaign


def _require_open(campaign: ReviewCampaign) -> None:
    if campaign.state != "open":
        raise WorkflowError(f"campaign {campaign.id} is {campaign.state}", "评查活动已结束")


def add_case(session: Session, campaign: ReviewCampaign, user: User, *, case_id: int,
             now: datetime | None = None) -> CampaignCase:
    """Add a case to the sample on purpose (集中评查)."""
    now = now or utc_now()
    duties.check_supervision("add-case", user)
    _require_open(campaign)
    if session.get(Case, case_id) is None:
        raise NotFoundError(f"case {case_id} not found", "案件不存在")
    if session.scalar(select(CampaignCase.id).where(
            CampaignCase.campaign_id == campaign.id, CampaignCase.case_id == case_id)):
        raise InvalidInputError(f"case {case_id} already in the sample", "该案卷已在评查样本中")
    row = CampaignCase(campaign_id=campaign.id, case_id=case_id, how="chosen", rank=None)
    session.add(row)
    audit.append(session, actor=user_label(user), action="supervision.case_added",
                 object_type="campaign", object_id=str(campaign.id), now=now,
                 detail={"case_id": case_id})
    session.flush()
    return row


def sample(session: Session, campaign: ReviewCampaign) -> list[CampaignCase]:
    return list(session.scalars(select(CampaignCase).where(
        CampaignCase.campaign_id == campaign.id).order_by(CampaignCase.id)))


def handlers(session: Session, case: Case) -> set[int]:
    """Every user who took part in ``case`` (:func:`zhichao.service.duties.handler_ids`:
    reviewers, the override maker, the actors of its transitions, statement answerers,
    the decision maker, and whoever recorded anything on it in the audit log)."""
    return duties.handler_ids(session, case)


def may_score(session: Session, campaign: ReviewCampaign, user: User, case: Case) -> bool:
    return (campaign.state == "open" and user.id in campaign.reviewer_ids
            and user.id not in handlers(session, case))


def score_case(session: Session, campaign: ReviewCampaign, user: User, *, case_id: int,
               checklist: dict[str, bool], problems: str | None, correction: str | None,
               now: datetime | None = None) -> CampaignScore:
    """Record one reviewer's scoring of one case file of the sample (once per reviewer)."""
    now = now or utc_now()
    case = session.get(Case, case_id)
    if case is None:
        raise NotFoundError(f"case {case_id} not found", "案件不存在")
    row = duties.check_supervision("score", user, case)
    _require_open(campaign)
    if user.id not in campaign.reviewer_ids:
        raise PermissionDeniedError(f"user {user.username} is not a reviewer of campaign "
                                    f"{campaign.id}", "您不是本次评查活动的评查人员")
    if user.id in handlers(session, case):
        raise PermissionDeniedError(
            f"user {user.username} handled case {case.id}",
            f"您曾办理本案，不得评查本案卷（{row.source_zh}）")
    if not session.scalar(select(CampaignCase.id).where(
            CampaignCase.campaign_id == campaign.id, CampaignCase.case_id == case_id)):
        raise InvalidInputError(f"case {case_id} is not in the sample", "该案卷不在评查样本中")
    missing = [k for k in CHECKLIST if not isinstance(checklist.get(k), bool)]
    extra = [k for k in checklist if k not in CHECKLIST]
    if missing or extra:
        raise InvalidInputError(f"checklist: missing {missing}, unknown {extra}",
                                "评查表须逐项填写（符合/不符合）")
    failed = [k for k in CHECKLIST if not checklist[k]]
    problems_zh = _text(problems, "problems", "发现的问题", max_chars=2000, required=bool(failed))
    correction_zh = _text(correction, "correction", "整改要求", max_chars=2000,
                          required=bool(failed))
    if session.scalar(select(CampaignScore.id).where(
            CampaignScore.campaign_id == campaign.id, CampaignScore.case_id == case_id,
            CampaignScore.reviewer_id == user.id)):
        raise WorkflowError("already scored", "您已评查过该案卷")
    scores = dimension_scores(checklist)
    entry = CampaignScore(campaign_id=campaign.id, case_id=case_id, reviewer_id=user.id,
                          checklist={k: checklist[k] for k in CHECKLIST}, scores=scores,
                          total=sum(scores.values()), problems_zh=problems_zh,
                          correction_zh=correction_zh, time_utc=now)
    session.add(entry)
    audit.append(session, actor=user_label(user), action="supervision.case_scored",
                 object_type="campaign", object_id=str(campaign.id), now=now,
                 detail={"case_id": case_id, "total": entry.total, "failed": failed})
    session.flush()
    return entry


def build_report(session: Session, campaign: ReviewCampaign) -> dict[str, Any]:
    """The campaign report: per case its scores, problems and corrections; the problems
    by kind; mean points per dimension. Reviewers appear as pseudonymous ids."""
    rows = sample(session, campaign)
    scores = list(session.scalars(select(CampaignScore).where(
        CampaignScore.campaign_id == campaign.id).order_by(CampaignScore.id)))
    by_case: dict[int, list[CampaignScore]] = {}
    for s in scores:
        by_case.setdefault(s.case_id, []).append(s)
    cases = []
    for r in rows:
        case = session.get(Case, r.case_id)
        assert case is not None
        mine = by_case.get(r.case_id, [])
        mean = round(sum(s.total for s in mine) / len(mine), 1) if mine else None
        cases.append({
            "case_id": r.case_id, "site_id": case.site_id, "state": case.state,
            "how": r.how, "rank": r.rank, "mean_total": mean,
            "grade_zh": None if mean is None else grade_zh(round(mean)),
            "scores": [{"reviewer": events.actor_id(session.get(User, s.reviewer_id)),
                        "points": s.scores, "total": s.total,
                        "failed": [k for k, v in s.checklist.items() if not v],
                        "problems_zh": s.problems_zh, "correction_zh": s.correction_zh,
                        "time_utc": s.time_utc.isoformat()} for s in mine]})
    kinds = {k: sum(1 for s in scores if not s.checklist.get(k, True)) for k in CHECKLIST}
    dims = {d: round(sum(s.scores[d] for s in scores) / len(scores), 1) if scores else None
            for d in DIMENSIONS_ZH}
    return {
        "format": "zhichao.case-file-review/1", "campaign_id": campaign.id,
        "title_zh": campaign.title_zh, "period": [campaign.period_start.isoformat(),
                                                  campaign.period_end.isoformat()],
        "site_ids": campaign.site_ids, "states": campaign.states, "seed": campaign.seed,
        "min_sample": campaign.min_sample, "candidates": len(candidates(session, campaign)),
        "opened_utc": campaign.opened_utc.isoformat(),
        "reviewers": [f"U-{i:04d}" for i in campaign.reviewer_ids],
        "cases": cases, "scored_files": len(scores),
        "dimension_means": dims,
        "problems_by_kind": [{"item": k, "count": n, "text_zh": CHECKLIST[k].text_zh,
                              "source_zh": CHECKLIST[k].source_zh}
                             for k, n in kinds.items() if n],
        "grades": {label: sum(1 for c in cases if c["grade_zh"] == label)
                   for _f, label in GRADES},
        "grades_confirmed": GRADES_CONFIRMED,
    }


def outstanding(session: Session, campaign: ReviewCampaign) -> list[tuple[int, int | None]]:
    """(case, reviewer) pairs still to score: every reviewer of the campaign scores every
    file of the sample, except the files they handled; a file every reviewer handled is
    listed with reviewer ``None`` (another reviewer must be found)."""
    done = {(case_id, reviewer_id) for case_id, reviewer_id in session.execute(
        select(CampaignScore.case_id, CampaignScore.reviewer_id)
        .where(CampaignScore.campaign_id == campaign.id))}
    missing: list[tuple[int, int | None]] = []
    for row in sample(session, campaign):
        case = session.get(Case, row.case_id)
        assert case is not None
        barred = handlers(session, case)
        eligible = [r for r in campaign.reviewer_ids if r not in barred]
        if not eligible:
            missing.append((row.case_id, None))
        missing.extend((row.case_id, r) for r in eligible if (row.case_id, r) not in done)
    return missing


def close_campaign(session: Session, campaign: ReviewCampaign, user: User, *,
                   now: datetime | None = None) -> ReviewCampaign:
    """Freeze the report, hash it, queue its hash into every sampled case's evidence
    history, and close the campaign. Every reviewer must have scored every file they may
    score (:func:`outstanding`)."""
    now = now or utc_now()
    duties.check_supervision("close-campaign", user)
    _require_open(campaign)
    missing = outstanding(session, campaign)
    if missing:
        files = sorted({case_id for case_id, _r in missing})
        raise WorkflowError(f"unscored case files (case, reviewer): {missing}",
                            f"尚有 {len(files)} 件案卷未经全部评查人员评分，不能结束评查")
    report = build_report(session, campaign)
    report["closed_utc"] = now.isoformat()
    digest = hashlib.sha256(canonicalize(report)).hexdigest()
    campaign.report, campaign.report_sha256 = report, digest
    campaign.state, campaign.closed_by, campaign.closed_utc = "closed", user.id, now
    for entry in report["cases"]:
        case = session.get(Case, entry["case_id"])
        assert case is not None
        events.enqueue(session, case, event_type=EventType.LEGAL_REVIEW,
                       actor=events.actor_id(user), outcome="case_file_review", now=now,
                       reason_zh=f"案卷评查（活动 {campaign.id}）：平均得分 "
                                 f"{entry['mean_total']}，{entry['grade_zh']}",
                       details={"campaign_id": campaign.id, "report_sha256": digest,
                                "mean_total": entry["mean_total"]})
    audit.append(session, actor=user_label(user), action="supervision.campaign_closed",
                 object_type="campaign", object_id=str(campaign.id), now=now,
                 detail={"report_sha256": digest, "cases": len(report["cases"])})
    return campaign


def mark_typical(session: Session, case: Case, user: User, *, title: str, summary: str,
                 now: datetime | None = None) -> TypicalCase:
    """Mark a decided case typical with a short zh-CN summary (no plate, no name)."""
    now = now or utc_now()
    duties.check_supervision("mark-typical", user)
    if case.state not in DECIDED_STATES:
        raise WorkflowError(f"case {case.id} is {case.state}", "只有已作出决定的案件可列为典型案例")
    title_zh = _text(title, "title", "标题", max_chars=100)
    summary_zh = _text(summary, "summary", "案例摘要", max_chars=500)
    assert title_zh is not None and summary_zh is not None
    for text in (title_zh, summary_zh):
        if (case.plate and case.plate in text) or _PLATE_LIKE.search(text):
            raise InvalidInputError("summary holds a plate", "标题和摘要不得含有车辆号牌")
    if session.scalar(select(TypicalCase.id).where(TypicalCase.case_id == case.id)):
        raise InvalidInputError("already typical", "该案件已列为典型案例")
    row = TypicalCase(case_id=case.id, title_zh=title_zh, summary_zh=summary_zh,
                      marked_by=user.id, marked_utc=now)
    session.add(row)
    audit.append(session, actor=user_label(user), action="supervision.typical_marked",
                 object_type="case", object_id=str(case.id), now=now,
                 detail={"title_zh": title_zh})
    session.flush()
    return row
