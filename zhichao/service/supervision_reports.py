"""Exports of the supervision work: the campaign report (CSV, zh-CN PDF) and the masked
typical-case compilation (CSV, zh-CN PDF, JSON rows).

The campaign exports render the frozen report of a closed campaign (what was hashed and
sealed), or the live one of an open campaign marked as a draft. The typical-case
compilation holds no plate, no name, no vehicle or case identifier: the site, the month
(北京时间), the vehicle's class and weights, the outcome and the zh-CN summary.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.service import supervision
from zhichao.service.models import Case, Decision, Passage, ReviewCampaign, Site, TypicalCase
from zhichao.service.report_pdf import Report, beijing
from zhichao.service.workdays import CHINA_TZ
from zhichao.service.workflow import OUTCOMES_ZH, STATES_ZH

DIMS = supervision.DIMENSIONS_ZH


def campaign_report(session: Session, campaign: ReviewCampaign) -> dict[str, Any]:
    """The sealed report of a closed campaign, else the current draft."""
    if campaign.report is not None:
        return {**campaign.report, "report_sha256": campaign.report_sha256, "draft": False}
    return {**supervision.build_report(session, campaign), "report_sha256": None,
            "draft": True}


def campaign_csv(report: dict[str, Any]) -> str:
    """One row per scored case file and reviewer (unscored files: one empty row)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["campaign_id", "case_id", "site_id", "how", "reviewer",
                     *(f"{k}_points" for k in DIMS), "total", "grade_zh", "failed_items",
                     "problems_zh", "correction_zh", "scored_utc", "report_sha256"])
    for case in report["cases"]:
        for s in case["scores"] or [None]:
            base = [report["campaign_id"], case["case_id"], case["site_id"], case["how"]]
            if s is None:
                writer.writerow([*base, "", *("" for _ in DIMS), "", "", "", "", "", "",
                                 report.get("report_sha256") or ""])
                continue
            writer.writerow([*base, s["reviewer"], *(s["points"][k] for k in DIMS),
                             s["total"], supervision.grade_zh(s["total"]),
                             ";".join(s["failed"]), s["problems_zh"] or "",
                             s["correction_zh"] or "", s["time_utc"],
                             report.get("report_sha256") or ""])
    return out.getvalue()


def campaign_pdf(report: dict[str, Any]) -> bytes:
    """The campaign report in zh-CN: scope, scores, problems by kind, corrections."""
    doc = Report(f"案卷评查报告：{report['title_zh']}")
    if report["draft"]:
        doc.paragraph("【草稿】评查尚未结束，本报告未封存。")
    doc.table(("项目", "内容"), [
        ("评查期间（北京时间日期）", f"{report['period'][0]} 至 {report['period'][1]}"),
        ("范围：检测点", "、".join(report["site_ids"]) or "全部"),
        ("范围：案件状态", "、".join(STATES_ZH.get(s, s) for s in report["states"]) or "全部"),
        ("随机抽样", f"种子 {report['seed']}；候选案卷 {report['candidates']} 件；"
                     f"抽取不少于 {report['min_sample']} 件（不足按实际数量）"),
        ("样本案卷", f"{len(report['cases'])} 件（其中指定评查 "
                     f"{sum(1 for c in report['cases'] if c['how'] == 'chosen')} 件）"),
        ("评查人员（假名编号）", "、".join(report["reviewers"])),
        ("发起时间", beijing(report["opened_utc"])),
        ("结束时间", beijing(report.get("closed_utc"))),
        ("报告 SHA-256", report.get("report_sha256") or "（未封存）"),
    ], widths=(50, 130))
    doc.heading("一、各维度平均得分（每项满分 20 分）")
    doc.bars("各维度平均得分", [(DIMS[k], v or 0) for k, v in report["dimension_means"].items()],
             " 分")
    grades = "；".join(f"{k} {v} 件" for k, v in report["grades"].items())
    mark = "" if report["grades_confirmed"] else "（等次分界为本地评查标准设定，待确认）"
    doc.paragraph(f"等次：{grades}{mark}")
    doc.heading("二、发现的问题（按类别）")
    doc.table(("检查项", "次数", "依据"), [
        (p["text_zh"], p["count"], p["source_zh"]) for p in report["problems_by_kind"]]
        or [("未发现问题", 0, "—")], widths=(100, 15, 65))
    doc.heading("三、逐卷评查结果与整改要求")
    rows = []
    for c in report["cases"]:
        for s in c["scores"]:
            rows.append((c["case_id"], c["site_id"], "指定" if c["how"] == "chosen" else "随机",
                         s["reviewer"], s["total"], supervision.grade_zh(s["total"]),
                         s["problems_zh"] or "—", s["correction_zh"] or "—"))
    doc.table(("案卷", "检测点", "抽取", "评查人", "得分", "等次", "问题", "整改要求"), rows,
              widths=(12, 26, 11, 17, 11, 11, 46, 46))
    doc.paragraph("依据：《行政处罚法》第七十五条（行政执法监督）；种子计划：每年度组织不少于1次的"
                  "执法案卷评查活动，各类案卷一般抽查数量不少于10件，实际案卷少于10件的按实际"
                  "数量评查。评查人员不评查本人办理的案卷（第四十三条，回避）。")
    return doc.finish()


def typical_rows(session: Session) -> list[dict[str, Any]]:
    """The masked compilation: no plate, no name, no vehicle, case or package id."""
    stmt = (select(TypicalCase, Case, Passage, Decision, Site)
            .join(Case, Case.id == TypicalCase.case_id)
            .join(Passage, Passage.id == Case.passage_id)
            .outerjoin(Decision, Decision.case_id == Case.id)
            .outerjoin(Site, Site.site_id == Case.site_id)
            .order_by(TypicalCase.marked_utc, TypicalCase.id))
    rows = []
    for n, (typical, case, passage, decision, site) in enumerate(session.execute(stmt), 1):
        month = case.time_utc.astimezone(CHINA_TZ)
        rows.append({
            "number": f"典型-{month.year}-{n:03d}", "title_zh": typical.title_zh,
            "site_zh": site.name_zh if site else case.site_id,
            "month_zh": f"{month.year}年{month.month}月（北京时间）",
            "vehicle_class": passage.vehicle_class, "axle_count": passage.axle_count,
            "gross_weight_kg": passage.gross_weight_kg, "limit_kg": passage.limit_kg,
            "excess_kg": passage.excess_kg,
            "outcome_zh": OUTCOMES_ZH.get(decision.outcome, decision.outcome)
            if decision else None,
            "fine_yuan": decision.fine_yuan if decision else None,
            "legal_basis_zh": case.legal_basis_zh, "summary_zh": typical.summary_zh})
    return rows


TYPICAL_COLUMNS = ("number", "title_zh", "site_zh", "month_zh", "vehicle_class", "axle_count",
                   "gross_weight_kg", "limit_kg", "excess_kg", "outcome_zh", "fine_yuan",
                   "legal_basis_zh", "summary_zh")


def typical_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TYPICAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _kg(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} kg"


def typical_pdf(rows: list[dict[str, Any]]) -> bytes:
    doc = Report("治超非现场执法典型案例汇编")
    doc.paragraph("本汇编已去除车辆号牌、当事人姓名及案件编号，供公开发布（《行政处罚法》第四十八条；"
                  "《个人信息保护法》第二十八条、第五十一条）。")
    for r in rows:
        doc.heading(f"{r['number']}  {r['title_zh']}")
        doc.table(("项目", "内容"), [
            ("检测点", r["site_zh"]), ("时间", r["month_zh"]),
            ("车型 / 轴数", f"{r['vehicle_class'] or '—'} / {r['axle_count'] or '—'}"),
            ("车货总质量 / 限值 / 超限", f"{_kg(r['gross_weight_kg'])} / {_kg(r['limit_kg'])}"
                                        f" / {_kg(r['excess_kg'])}"),
            ("处理结果", f"{r['outcome_zh'] or '—'}；罚款 {r['fine_yuan'] or 0} 元"),
            ("法律依据", r["legal_basis_zh"] or "—"), ("案例摘要", r["summary_zh"])],
            widths=(45, 135))
    if not rows:
        doc.paragraph("尚无典型案例。")
    return doc.finish()
