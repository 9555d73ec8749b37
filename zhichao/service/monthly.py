"""Monthly statistics and the annual report (年报), by site and in total, as JSON, CSV and
a zh-CN PDF with bar charts.

A month's figures are available from the 1st of the next month (China time): before then
the month is not over and :func:`monthly_report` refuses. The annual report is the same
:func:`zhichao.service.stats.period_figures` over the China-time year, with the twelve
monthly totals for its chart; it is available from 1 January of the next year.

Devices: availability is the share of the period's days on which the device recorded at
least one passage (an approximation: the center holds no uptime log, so a quiet lane
counts as unavailable), and drift alarms are the devices whose last health report, made
in the period, is ``drift_alarm`` (the center keeps only the latest health per device).
Both are labelled as such wherever they are shown.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import stats
from zhichao.service.errors import InvalidInputError, WorkflowError
from zhichao.service.models import Device, Lane, Passage, Site
from zhichao.service.report_pdf import Report, beijing
from zhichao.service.workdays import CHINA_TZ, china_date
from zhichao.service.workflow import STATES_ZH

FORMAT = "zhichao.monthly/1"
DEVICE_NOTE_ZH = ("设备可用率按期内有称重记录的天数占比估算（中心不保存设备在线日志）；"
                  "漂移报警为期内最后一次状态报告为漂移报警的设备数。")


def month_bounds_utc(year: int, month: int) -> tuple[datetime, datetime]:
    if not 2000 <= year <= 2100 or not 1 <= month <= 12:
        raise InvalidInputError(f"month {year}-{month}", "年份须在 2000–2100 之间，月份 1–12")
    start = datetime(year, month, 1, tzinfo=CHINA_TZ)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CHINA_TZ)
    return start.astimezone(UTC), end.astimezone(UTC)


def _require_over(end: datetime, now: datetime, label_zh: str) -> None:
    if now < end:
        opens = end.astimezone(CHINA_TZ).strftime("%Y-%m-%d")
        raise WorkflowError(f"{label_zh}: period not over (available from {end.isoformat()})",
                            f"{label_zh}统计自 {opens}（北京时间）起提供")


def _sites(session: Session) -> list[str]:
    found = set(session.scalars(select(Passage.site_id).distinct()))
    found.update(session.scalars(select(Site.site_id)))
    return sorted(found)


def device_days(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """Per device: the number of China days in ``[start, end)`` with at least one passage
    (one pass over the period's passages)."""
    seen: set[tuple[str, Any]] = set()
    stmt = (select(Passage.device_id, Passage.time_utc)
            .where(Passage.time_utc >= start, Passage.time_utc < end,
                   Passage.device_id.is_not(None))
            .execution_options(yield_per=10_000))
    for device_id, moment in session.execute(stmt):
        if device_id is not None:
            seen.add((device_id, china_date(moment)))
    days: dict[str, int] = {}
    for device_id, _day in seen:
        days[device_id] = days.get(device_id, 0) + 1
    return days


def devices(session: Session, start: datetime, end: datetime, site_id: str | None,
            days_by_device: dict[str, int]) -> dict[str, Any]:
    """Per device of the site (all sites: every device): availability in percent of the
    period's days; and the drift alarms."""
    stmt = select(Device, Lane).outerjoin(Lane, Lane.id == Device.lane_id)
    rows = [(d, ln) for d, ln in session.execute(stmt)
            if site_id is None or (ln is not None and ln.site_id == site_id)]
    period_days = max(round((end - start) / timedelta(days=1)), 1)
    drift = sum(1 for d, _ln in rows if d.health == "drift_alarm"
                and d.health_updated_utc is not None and start <= d.health_updated_utc < end)
    return {"availability_pct": {d.device_id: round(
                100 * days_by_device.get(d.device_id, 0) / period_days, 1) for d, _ln in rows},
            "drift_alarms": drift}


def _block(session: Session, start: datetime, end: datetime, site_id: str | None,
           days_by_device: dict[str, int]) -> dict[str, Any]:
    return {"figures": stats.period_figures(session, start, end, site_id),
            **stats.breakdowns(session, start, end, site_id),
            "devices": devices(session, start, end, site_id, days_by_device)}


def _report(session: Session, start: datetime, end: datetime, **head: Any) -> dict[str, Any]:
    days = device_days(session, start, end)
    return {"format": FORMAT, **head, "time_zone": "UTC+08:00",
            "start_utc": start.isoformat(), "end_utc": end.isoformat(),
            "labels_zh": stats.LABELS_ZH, "device_note_zh": DEVICE_NOTE_ZH,
            "total": _block(session, start, end, None, days),
            "sites": {s: _block(session, start, end, s, days) for s in _sites(session)}}


def monthly_report(session: Session, year: int, month: int,
                   now: datetime | None = None) -> dict[str, Any]:
    """The month's figures by site and in total (from the 1st of the next month)."""
    start, end = month_bounds_utc(year, month)
    _require_over(end, now or utc_now(), f"{year}年{month}月")
    return _report(session, start, end, kind="monthly", year=year, month=month,
                   title_zh=f"{year}年{month}月治超非现场执法统计")


def annual_report(session: Session, year: int, now: datetime | None = None) -> dict[str, Any]:
    """The 年报: the same figures over the year, plus the twelve monthly totals."""
    start, end = stats.year_bounds_utc(year)
    _require_over(end, now or utc_now(), f"{year}年度")
    report = _report(session, start, end, kind="annual", year=year, month=None,
                     title_zh=f"{year}年度治超非现场执法统计年报")
    report["months"] = [stats.period_figures(session, *month_bounds_utc(year, m))
                        for m in range(1, 13)]
    return report


def report_csv(report: dict[str, Any]) -> str:
    """Long form: ``period,scope,metric,key,label_zh,value`` (scope ``total`` or a site)."""
    period = f"{report['year']}" + (f"-{report['month']:02d}" if report["month"] else "")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "scope", "metric", "key", "label_zh", "value"])
    blocks = [("total", report["total"]), *report["sites"].items()]
    for scope, block in blocks:
        for key, value in block["figures"].items():
            writer.writerow([period, scope, key, "", report["labels_zh"][key], value])
        for cls, n in block["overloads_by_class"].items():
            writer.writerow([period, scope, "overloads_by_class", cls, "超限车次（按车型）", n])
        for state, n in block["cases_by_state"].items():
            writer.writerow([period, scope, "cases_by_state", state,
                             STATES_ZH.get(state, state), n])
        for dev, pct in block["devices"]["availability_pct"].items():
            writer.writerow([period, scope, "device_availability_pct", dev,
                             "设备可用率（%，按有记录天数估算）", pct])
        writer.writerow([period, scope, "drift_alarms", "", "漂移报警设备数",
                         block["devices"]["drift_alarms"]])
    return out.getvalue()


def report_pdf(report: dict[str, Any]) -> bytes:
    """The zh-CN PDF: totals, bars (by site, or by month for the 年报), breakdowns."""
    doc = Report(report["title_zh"])
    labels, total = report["labels_zh"], report["total"]
    doc.paragraph(f"统计期间：{beijing(report['start_utc'])} 至 {beijing(report['end_utc'])}"
                  "（不含终点）。按事件发生时间计入。")
    doc.heading("一、总体情况")
    doc.table(("指标", "数值"), [(labels[k], v) for k, v in total["figures"].items()],
              widths=(120, 60))
    doc.heading("二、图表")
    if report["kind"] == "annual":
        doc.bars("各月称重检测车次", [(f"{i}月", m["passages"])
                                    for i, m in enumerate(report["months"], 1)])
        doc.bars("各月作出处罚决定", [(f"{i}月", m["decisions"])
                                    for i, m in enumerate(report["months"], 1)])
    sites = report["sites"]
    doc.bars("各检测点称重检测车次", [(s, b["figures"]["passages"]) for s, b in sites.items()])
    doc.bars("各检测点检测超限车次", [(s, b["figures"]["passages_overloaded"])
                                  for s, b in sites.items()])
    doc.bars("超限车次（按车型）", list(total["overloads_by_class"].items()))
    doc.heading("三、案件状态与设备")
    doc.table(("案件状态（期内登记）", "件数"),
              [(STATES_ZH.get(k, k), v) for k, v in total["cases_by_state"].items()]
              or [("无", 0)], widths=(120, 60))
    devices_ = total["devices"]
    doc.table(("设备", "可用率（%）"), list(devices_["availability_pct"].items())
              or [("无设备", "—")], widths=(120, 60))
    doc.paragraph(f"漂移报警设备数：{devices_['drift_alarms']}。{report['device_note_zh']}")
    doc.heading("四、分检测点")
    keys = ("passages", "passages_overloaded", "cases_registered", "decisions", "fines_yuan")
    doc.table(("检测点", *(labels[k] for k in keys)),
              [(s, *(b["figures"][k] for k in keys)) for s, b in sites.items()],
              widths=(30, 30, 30, 30, 30, 30))
    doc.paragraph("依据：国办发〔2018〕118号（每年1月31日前公开上年度行政执法总体情况有关数据）；"
                  "《行政处罚法》第七十五条（行政执法监督）。")
    return doc.finish()
