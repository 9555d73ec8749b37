"""The wording of the documents served on a party: 违法行为通知书 (告知) and 行政处罚决定书.

One renderer for every copy: the station's derived PDF/HTML (``documents.notice_pdf``),
the text the center records and serves (``Notice.text_zh``, ``Decision.text_zh``) and the
PDF the center makes of it are all these paragraphs, so they cannot differ.

What the text states (《中华人民共和国行政处罚法》2021, Art. 44 for the notice, Art. 59 for
the decision): the time in 北京时间 (labelled), the site name, road and stake, the lane, the
measured gross and axle loads, the vehicle class in Chinese (never an internal
identifier), the limit and its article, the tolerance, the excess, the proposal and its
basis, the rights and their periods. Periods run from service ("自收到本通知书之日起"),
and the law's 二日、三日、五日、七日 are working days (Art. 85).

Input is the manifest's JSON (``{"package_id", "case": {...}}``) only: no import of a
higher stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zhichao.common import BEIJING
from zhichao.evidence.inputs import WITHIN_JJG907

# The deadlines for 陈述、申辩 and for requesting a hearing come from the rule version in
# force (manifest case.rule_set.statement_days / hearing_request_days, each with its
# source); these defaults only serve packages sealed before the rules carried them.
LEGACY_STATEMENT_DAYS = {"CN-ZJ": 15}
LEGACY_HEARING_REQUEST_DAYS = 5  # 行政处罚法 第六十四条第（一）项、第八十五条: 五日（工作日）
CLASS_UNKNOWN_ZH = "车型待人工核定"
LAW_ZH = "《中华人民共和国行政处罚法》"


def beijing_time_zh(text: str | None) -> str:
    """A UTC ISO 8601 time as 北京时间, labelled (``—`` when missing)."""
    if not text:
        return "—"
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.astimezone(BEIJING).strftime("%Y年%m月%d日 %H:%M:%S") + "（北京时间）"


def _v(value: Any, unit: str = "") -> str:
    """A fact as printed: ``—`` when missing; whole numbers without ``.0``."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{value}{unit}"
    text = f"{number:.0f}" if number.is_integer() else f"{number:g}"
    return f"{text}{unit}"


def vehicle_class_zh(case: dict[str, Any]) -> str:
    """The vehicle class in Chinese from the manifest's facts; never the identifier."""
    limit = case.get("limit") or {}
    vehicle = case.get("vehicle") or {}
    return str(limit.get("vehicle_class_zh") or vehicle.get("vehicle_class_zh")
               or CLASS_UNKNOWN_ZH)


def _source(source: dict[str, Any] | None) -> str:
    if not source:
        return "（依据待法制审核确认）"
    law = str(source.get("law_zh", ""))
    art = str(source.get("article_zh", ""))
    return f"{law}{art}" if law.startswith("（") or law.startswith("《") else f"《{law}》{art}"


@dataclass(frozen=True)
class Periods:
    """The statement and hearing request periods as the notice states them."""

    statement_days: int | None
    statement_working_days: bool
    hearing_request_days: int
    hearing_working_days: bool = True  # Art. 85

    @staticmethod
    def from_rule_set(case: dict[str, Any]) -> Periods:
        rule_set = case.get("rule_set") or {}
        days = (rule_set.get("statement_days") if "statement_days" in rule_set
                else LEGACY_STATEMENT_DAYS.get(str(rule_set.get("jurisdiction", ""))))
        return Periods(days, False,
                       int(rule_set.get("hearing_request_days") or LEGACY_HEARING_REQUEST_DAYS))


def _days(days: int, working: bool) -> str:
    return f"{days}个工作日" if working else f"{days}日"


def law_figures(c: dict[str, Any]) -> dict[str, Any]:
    """The limit and tolerance by the law: the gate's assessment; in an older package, the
    record's own figures."""
    a: dict[str, Any] | None = (c.get("eligibility") or {}).get("assessment")
    if a:
        return a
    limit = c.get("limit") or {}
    return {"limit_kg": limit.get("limit_kg"), "limit_basis": limit.get("limit_basis"),
            "tolerance_kg": c.get("allowance_kg"), "tolerance_basis_zh": None,
            "stricter_limits_zh": [], "unconfirmed_zh": []}


def _device_zh(device: dict[str, Any]) -> str:
    """The weighing device as the facts paragraph names it: "verified" (检定合格) only for
    an installation within JJG 907-2006's scope; an in-pavement or unrecorded one is named
    by its certificate, which the legal review judges (law.md §2, R2.1)."""
    if device.get("installation_type") in WITHIN_JJG907:
        return "依法检定合格的检测设备"
    cert = device.get("certificate_number")
    kind = "路面直埋式" if device.get("installation_type") == "in_pavement_strip" else ""
    return f"{kind}检测设备（计量证书{cert or '—'}）"


def facts_paragraph(doc: dict[str, Any], plate: str | None = None) -> str:
    """The facts of the violation (Art. 44: 事实): when, where, what was measured."""
    c = doc["case"]
    v = c.get("vehicle") or {}
    site = c.get("site") or {}
    law = law_figures(c)
    pen = c.get("penalty") or {}
    plate = plate or (c.get("plate") or {}).get("text") or "（号牌待审核确认）"
    loads = v.get("axle_loads_kg") or []
    axle_text = ("，各轴轴荷依次为" + "、".join(f"{_v(x)}" for x in loads) + "千克"
                 if loads else "")
    place = site.get("name_zh") or f"监测点（编号 {c.get('site_id')}，名称待补录）"
    excess = pen.get("excess_kg") or c.get("excess_after_allowance_kg")
    static = c.get("static_reweigh")  # a static re-weighing is the evidence weight
    measured = (f"经{_device_zh(c.get('device') or {})}检测，车货总质量为"
                f"{_v(v.get('gross_weight_kg'))}千克{axle_text}")
    if static:
        cert = (static.get("certificate") or {}).get("certificate_number")
        measured = (f"经检测设备动态检测，车货总质量为{_v(v.get('gross_weight_kg'))}千克"
                    f"{axle_text}；经依法检定合格的静态衡器（检定证书{_v(cert)}）于"
                    f"{beijing_time_zh(static.get('reading_utc'))}复检，车货总质量为"
                    f"{_v(static.get('weight_kg'))}千克")
    return (
        f"经查，号牌为{plate}的车辆（{vehicle_class_zh(c)}，{_v(v.get('axle_count'))}轴）"
        f"于{beijing_time_zh(c.get('time_utc'))}行经{place}（{_v(site.get('road_zh'))} "
        f"{_v(site.get('stake_zh'))}）第{_v(c.get('lane_id'))}车道，{measured}；限定标准为"
        f"{_v(law.get('limit_kg'))}千克（{_v(law.get('limit_basis'))}），扣除计量允差"
        f"{_v(law.get('tolerance_kg'))}千克后超限{_v(excess)}千克。")


def _rule_paragraph(c: dict[str, Any], proposal: str) -> str:
    pen = c.get("penalty") or {}
    limit = c.get("limit") or {}
    return (f"上述行为违反了{_source(limit.get('rule_limit_source'))}的规定。依据"
            f"{_source(pen.get('basis'))}，{proposal}")


def notice_paragraphs(doc: dict[str, Any], periods: Periods | None = None,
                      plate: str | None = None) -> list[str]:
    """违法行为通知书: facts, rule, proposal and basis, rights and periods (Art. 44, 45,
    63, 64, 85)."""
    c = doc["case"]
    site = c.get("site") or {}
    pen = c["penalty"]
    periods = periods or Periods.from_rule_set(c)
    reg = c.get("registration") or {}
    owner = reg.get("owner_name_zh") or "车辆所有人"
    statement = (_days(periods.statement_days, periods.statement_working_days)
                 if periods.statement_days else None)
    deadline = f"自收到本通知书之日起{statement}内" if statement else "在规定期限内"
    request = _days(periods.hearing_request_days, periods.hearing_working_days)
    hearing = pen.get("hearing_right")
    hearing_text = (
        f"本案拟作出较大数额罚款，您有权在收到本通知书之日起{request}内要求听证"
        f"（{LAW_ZH}第六十三条、第六十四条、第八十五条）；逾期视为放弃听证。"
        if hearing else
        f"如本案拟罚款达到本地较大数额标准，您有权在收到本通知书之日起{request}内要求听证"
        f"（{LAW_ZH}第六十三条、第六十四条、第八十五条）。"
        if hearing is None else "")
    status = (c.get("eligibility") or {}).get("status")
    warning = [] if status == "ENFORCEABLE" else [
        f"【注意】本案证据资格审查结论为“{(c.get('eligibility') or {}).get('status_zh', '未知')}”，"
        "在问题解决并经审核前，本通知书不得送达。"]
    proposal = (f"罚款人民币{pen['fine_yuan']}元" if pen.get("fine_yuan")
                else _no_amount(str(pen["outcome_zh"])))
    return [
        *warning,
        f"{owner}：" + (f"（地址：{reg['owner_address_zh']}）"
                       if reg.get("owner_address_zh") else ""),
        facts_paragraph(doc, plate),
        _rule_paragraph(c, f"本机关拟对你（单位）作出如下行政处理：{proposal}。"),
        f"根据{LAW_ZH}第四十四条、第四十五条，你（单位）有权进行陈述和申辩，"
        f"请{deadline}到{site.get('handling_place_zh') or '本机关指定地点'}或通过线上渠道"
        f"查询证据、提出陈述申辩；陈述申辩不会导致加重处罚。期满未提出的，本机关将依据"
        f"已查明的事实作出决定；你（单位）明确放弃陈述申辩权利的，须有书面或系统记录"
        f"（{LAW_ZH}第六十二条）。{hearing_text}",
        f"证据包编号：{doc['package_id']}。可凭此编号查询全部证据（照片、称重数据、检定证书）。",
        f"执法机关：{site.get('authority_zh') or '（执法机关名称）'}",
    ]


def _no_amount(outcome_zh: str) -> str:
    """An outcome without an amount; a fine whose counted tonnes rounded to nothing says so
    (浙江省公路条例 Art. 53 at just over 20 %: the rounding rule is for legal review)."""
    if outcome_zh == "罚款":
        return "罚款（按计罚吨数取整规则计得0元，须经法制审核确认）"
    return outcome_zh


def decision_paragraphs(doc: dict[str, Any], *, outcome_zh: str, fine_yuan: int,
                        reasons_zh: str, decided_utc: str, plate: str | None = None,
                        review_days: int = 60, lawsuit_months: int = 6) -> list[str]:
    """行政处罚决定书 (Art. 59): party, facts and evidence, penalty and basis, how and by
    when to pay, the ways and periods of review and lawsuit, the authority and the date.

    ``review_days`` (行政复议法 2023 Art. 20: 六十日) and ``lawsuit_months`` (行政诉讼法
    Art. 46: 六个月) are passed by the caller from its configuration."""
    c = doc["case"]
    site = c.get("site") or {}
    reg = c.get("registration") or {}
    authority = site.get("authority_zh") or "（执法机关名称）"
    penalty = f"罚款人民币{fine_yuan}元" if fine_yuan else _no_amount(outcome_zh)
    pay = ("请自收到本决定书之日起十五日内到指定银行或者通过电子支付系统缴纳罚款；到期不缴纳"
           "的，每日按罚款数额的百分之三加处罚款，加处罚款的数额不得超出罚款的数额"
           f"（{LAW_ZH}第六十七条、第七十二条）。"
           if fine_yuan else "")
    paras = [
        f"当事人：{reg.get('owner_name_zh') or '车辆所有人'}"
        + (f"（地址：{reg['owner_address_zh']}）" if reg.get("owner_address_zh") else ""),
        facts_paragraph(doc, plate),
        f"证据：证据包 {doc['package_id']}（称重数据、车辆照片、检测设备检定证书）。",
        _rule_paragraph(c, f"本机关决定：{penalty}。"),
        f"理由：{reasons_zh}",
        pay,
        f"如不服本决定，可以在收到本决定书之日起{review_days}日内依法申请行政复议，或者在"
        f"{lawsuit_months}个月内依法向人民法院提起行政诉讼（{LAW_ZH}第五十九条）。",
        f"执法机关：{authority}；决定日期：{beijing_time_zh(decided_utc)}",
    ]
    return [p for p in paras if p]
