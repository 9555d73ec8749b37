"""The rule of static re-weighing (复检): which weight is the evidence, and its tolerance.

Where a stable static reading is linked to the passage (:attr:`CaseInputs.static_reweigh`):

* the **evidence weight** is the static reading, not the WIM record's gross weight (a
  verified non-automatic scale at rest measures the mass the law limits; WIM only selected
  the vehicle). The WIM weight stays in the record and is shown beside it;
* the **tolerance** is the static scale's maximum permissible error at that load
  (:func:`zhichao.evidence.static_reading.static_mpe_kg`, in service), or a larger
  deduction the jurisdiction sets as a rule — never the WIM device's error or the WIM
  record's deduction, which describe another instrument (行政处罚法 Art. 40, 41(2): the
  fact must be established by the measurement that is used);
* the **verdict, excess and penalty** are recomputed from them (the limit still comes from
  the vehicle's axles, as for WIM: 超限运输车辆行驶公路管理规定 Art. 3, 交通运输部令2016年第62号
  as amended by 2021年第12号 — the amendment's text is not in the stored sources ❌);
* the **checks** (:func:`check_static`): a reading flagged overload / unstable / error /
  net, or never called stable, is no weight (UNUSABLE); the scale's certificate must cover
  the re-weighing time (UNUSABLE otherwise: 计量法 Art. 9, 公路超限检测站管理办法 🟡); a
  reading taken before the passage cannot be its re-weighing (UNUSABLE); a static overload
  that WIM did not find, or a static weight further from the WIM weight than the WIM
  tolerance, goes to a human with both weights (MANUAL_REVIEW: is it the same vehicle, the
  same load?); abnormal-driving flags of the WIM record no longer block (the re-weighing is
  the remedy law.md §4.5 recommends), they stay listed (INFO).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal

from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.rules import RuleVersion, jurisdiction_deduction_kg
from zhichao.evidence.static_reading import STATIC_CLASSES, reading_problem
from zhichao.weighing.overload import accuracy_class

WIM_SOURCE = "wim"
STATIC_SOURCE = "static"

#: reason codes of the static checks: (severity, zh, en, basis), merged into the gate's table
STATIC_REASONS: dict[str, tuple[str, str, str, str]] = {
    "static_reading_unusable": (
        "unusable", "静态复检读数不是有效重量（超载、未稳定、错误或净重）",
        "static reading is not a weight (overload, unstable, error or net)",
        "JJG 539；行政处罚法第四十一条第二款"),
    "static_certificate_invalid": (
        "unusable", "复检时静态衡器计量检定证书无效或等级未知",
        "static scale certificate not valid at the re-weighing",
        "计量法第九条；公路超限检测站管理办法（待确认）"),
    "static_before_passage": (
        "unusable", "静态复检时间早于通行时间，不是该次通行的复检",
        "static reading taken before the passage", "行政处罚法第四十一条第二款"),
    "static_only_overload": (
        "manual_review", "仅静态复检认定超限（动态称重未认定），需人工核实两次称重",
        "overloaded by the static reading only; WIM did not find it",
        "行政处罚法第四十一条第二款"),
    "static_wim_disagree": (
        "manual_review", "静态复检与动态称重之差超出动态设备允差，需核实是否同一车辆、同一载货",
        "static and WIM weights differ by more than the WIM tolerance",
        "行政处罚法第四十一条第二款"),
    "abnormal_driving_reweighed": (
        "info", "动态称重时异常行驶，已以静态复检重量为证据",
        "abnormal driving on the WIM lane; the static re-weighing is the evidence",
        "浙江省公路条例第三十九条"),
}

Add = Callable[..., None]


def evidence_weight(case: CaseInputs) -> tuple[Decimal, str]:
    """(the weight that is the evidence, its source): a linked static reading where there
    is one, else the WIM record's gross weight."""
    if case.static_reweigh is not None:
        return case.static_reweigh.weight_kg, STATIC_SOURCE
    return case.vehicle.gross_weight_kg, WIM_SOURCE


def static_tolerance(case: CaseInputs, rule: RuleVersion | None
                     ) -> tuple[Decimal, str, Decimal | None, Decimal | None, str]:
    """(tolerance, basis, static MPE, jurisdiction deduction, unconfirmed note) of a case
    with a static reading: the larger of the scale's in-service MPE and a jurisdiction's
    deduction, never a sum. Without a known MPE the tolerance is the deduction or 0 — and
    :func:`check_static` makes such a case UNUSABLE."""
    s = case.static_reweigh
    assert s is not None
    cert = s.certificate
    cls = STATIC_CLASSES.get(cert.accuracy_class)
    mpe = s.mpe_kg()
    jur = None if rule is None else jurisdiction_deduction_kg(rule, s.weight_kg)
    jur = None if jur is None else jur.to_integral_value(rounding=ROUND_CEILING)
    options: list[tuple[Decimal, str]] = []
    note = ""
    if mpe is not None and cls is not None:
        e = format(cert.division_kg.normalize(), "f")
        if not cls.confirmed:
            note = (f"静态衡器{cls.name}级使用中最大允许误差（{cls.source_zh}，e = {e} kg，"
                    f"{cls.status_zh}）")
        options.append((mpe, f"{cls.source_zh} 静态衡器{cls.name}级使用中最大允许误差"
                             f"（e = {e} kg，{cls.status_zh}）"))
    if jur is not None and rule is not None:
        options.append((jur, f"辖区规定扣除 {rule.allowance_source.cite_zh()}"))
    if not options:
        return Decimal(0), "静态衡器最大允许误差不可得", None, None, note
    tol, basis = max(options, key=lambda o: o[0])
    return tol, basis, mpe, jur, note


def wim_tolerance_kg(case: CaseInputs) -> Decimal:
    """The WIM measurement's own tolerance: its device's in-service MPE or the record's
    deduction, the larger (what WIM could not tell apart)."""
    v = case.vehicle
    cls = accuracy_class(None if case.device is None else case.device.accuracy_class)
    mpe = Decimal(0) if cls is None else v.gross_weight_kg * Decimal(
        str(cls.in_service_pct)) / 100
    return max(mpe, v.allowance_kg)


def check_static(case: CaseInputs, verdict: str, add: Add) -> None:
    """The gate's checks of a linked static reading (see the module docstring)."""
    s = case.static_reweigh
    if s is None:
        return
    v = case.vehicle
    problem = reading_problem(s)
    if problem is not None:
        add("static_reading_unusable", f"{s.reading_id}: {problem}")
    cert_problem = s.certificate.problem_at(s.reading_utc)
    if cert_problem is not None:
        add("static_certificate_invalid", f"{s.certificate.certificate_number}: {cert_problem}")
    if s.reading_utc < v.time_utc:
        add("static_before_passage",
            f"复检 {s.reading_utc.isoformat()} < 通行 {v.time_utc.isoformat()}")
    wim_over = v.overloaded and v.verdict == "overloaded"
    if verdict == "overloaded" and not wim_over:
        add("static_only_overload", f"静态 {s.weight_kg} kg，动态 {v.gross_weight_kg} kg"
                                    f"（动态结论 {v.verdict}）")
    diff = abs(s.weight_kg - v.gross_weight_kg)
    wim_tol = wim_tolerance_kg(case)
    if diff > wim_tol:
        add("static_wim_disagree", f"静态 {s.weight_kg} kg − 动态 {v.gross_weight_kg} kg = "
                                   f"{s.weight_kg - v.gross_weight_kg} kg，动态允差 "
                                   f"{wim_tol.quantize(Decimal(1), ROUND_CEILING)} kg")
