"""The verdict by the law for one case: the lawful limit, the tolerance, the excess.

The evidence stage does not take the weighing record's limit and deduction on trust:

* **Limit** — recomputed from the record's axles and spacings and the registration facts
  (:func:`zhichao.weighing.classification.classify`): a fact nobody supplied takes the value
  most lenient to the party, and each fact that would lower the limit is named for the
  reviewer. The class's base figure comes from the rule version in force (rules by date).
  A record whose limit is stricter than that (e.g. 46 t for a six-axle combination whose
  drive axles are not known) never gets a penalty proposal (``limit_stricter_than_law``).
* **Tolerance** — the larger (never the sum) of the device's in-service maximum permissible
  error for its accuracy class (:data:`zhichao.weighing.overload.ACCURACY_CLASSES`;
  行政处罚法 Art. 40, 41(2)), the record's own deduction (which covers the site's scatter),
  and a larger deduction the jurisdiction sets as a rule with its source. A record that
  deducted less than its device's error is never enforceable
  (``deduction_below_device_error``).
* **Verdict** — ``overloaded`` when gross − tolerance exceeds the lenient limit;
  ``depends_on_facts`` when it exceeds only a stricter limit that an unseen fact would make
  lawful (the reviewer decides; no penalty is proposed); ``within_limit``; ``undecidable``
  when no limit can be found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.reweigh_rule import STATIC_SOURCE, WIM_SOURCE, static_tolerance
from zhichao.evidence.rules import LegalSource, RuleVersion, jurisdiction_deduction_kg
from zhichao.weighing.classification import (
    LEGAL_CLASSES,
    Classification,
    KnownAttributes,
    classify,
)
from zhichao.weighing.config import ClassConfig
from zhichao.weighing.overload import VERDICT_ZH as WEIGHING_VERDICT_ZH
from zhichao.weighing.overload import AccuracyClass, accuracy_class

VERDICTS = ("overloaded", "within_limit", "depends_on_facts", "undecidable")
#: Chinese names of the weighing verdicts and of the verdicts by the law
VERDICT_ZH = {**WEIGHING_VERDICT_ZH,
              "depends_on_facts": "是否超限取决于待核实的登记事实（需人工核定）"}
TOLERANCE_LAW = LegalSource("中华人民共和国行政处罚法", "第四十条、第四十一条第二款", "✅P")


@dataclass(frozen=True)
class Assessment:
    """What the law makes of the record's measurement. Masses in kg."""

    gross_kg: Decimal
    vehicle_class: str | None
    vehicle_class_zh: str | None
    limit_kg: Decimal | None  # the most lenient lawful limit for the known facts
    limit_basis: str
    stricter_zh: tuple[str, ...]  # facts that would lower the limit, with the lower limit
    stricter_limits_kg: tuple[int, ...]
    unconfirmed_zh: tuple[str, ...]  # 🟡/❌ values the limit or tolerance rests on
    record_limit_kg: Decimal | None
    rule_table_limit_kg: int | None
    tolerance_kg: Decimal
    tolerance_basis_zh: str
    device_class: str | None
    device_mpe_kg: Decimal | None
    recorded_allowance_kg: Decimal
    jurisdiction_deduction_kg: Decimal | None
    excess_kg: Decimal  # gross − tolerance − limit, 0 when not over
    verdict: str
    findings: tuple[tuple[str, str], ...]  # (gate reason code, detail)
    weight_source: str = WIM_SOURCE  # "static": a linked static re-weighing is the evidence
    wim_gross_kg: Decimal | None = None  # with a static weight: the WIM weight, shown beside

    @property
    def penalty_allowed(self) -> bool:
        codes = {c for c, _ in self.findings}
        return self.verdict == "overloaded" and "limit_stricter_than_law" not in codes

    def limit_source(self) -> LegalSource:
        return LegalSource("", self.limit_basis, "✅S")

    def tolerance_source(self) -> LegalSource:
        status = "✅P" if not self.unconfirmed_tolerance() else "🟡"
        return LegalSource(TOLERANCE_LAW.law_zh,
                           f"{TOLERANCE_LAW.article_zh}；{self.tolerance_basis_zh}", status)

    def unconfirmed_tolerance(self) -> bool:
        return any("最大允许误差" in u for u in self.unconfirmed_zh) or self.device_class is None

    def to_json(self) -> dict[str, Any]:
        def d(x: Decimal | None) -> str | None:
            return None if x is None else format(x.normalize(), "f")

        return {
            "verdict": self.verdict, "gross_kg": d(self.gross_kg),
            "vehicle_class": self.vehicle_class, "vehicle_class_zh": self.vehicle_class_zh,
            "limit_kg": d(self.limit_kg), "limit_basis": self.limit_basis,
            "stricter_limits_zh": list(self.stricter_zh),
            "stricter_limits_kg": list(self.stricter_limits_kg),
            "unconfirmed_zh": list(self.unconfirmed_zh),
            "record_limit_kg": d(self.record_limit_kg),
            "rule_table_limit_kg": self.rule_table_limit_kg,
            "tolerance_kg": d(self.tolerance_kg), "tolerance_basis_zh": self.tolerance_basis_zh,
            "device_accuracy_class": self.device_class, "device_mpe_kg": d(self.device_mpe_kg),
            "recorded_allowance_kg": d(self.recorded_allowance_kg),
            "jurisdiction_deduction_kg": d(self.jurisdiction_deduction_kg),
            "excess_kg": d(self.excess_kg),
            **({} if self.weight_source == WIM_SOURCE else {
                "weight_source": self.weight_source, "wim_gross_kg": d(self.wim_gross_kg)}),
        }


def registration_matches(case: CaseInputs) -> bool:
    """Registration facts count only for the plate that was read."""
    r, p = case.registration, case.plate
    return r is not None and (p is None or not p.text or p.text == r.plate_text)


def known_facts(case: CaseInputs) -> KnownAttributes:
    """The registration's facts as the classifier's :class:`KnownAttributes` (none when the
    registration is for another plate)."""
    r = case.registration
    if r is None or not registration_matches(case):
        return KnownAttributes()
    mass = None if r.total_mass_kg is None else int(r.total_mass_kg)
    return KnownAttributes(drive_axles=r.drive_axles, single_tyre_axles=r.single_tyre_axles,
                           registered_total_mass_kg=mass, air_suspension=r.air_suspension,
                           dual_drive_tyres=r.dual_drive_tyres, articulated=r.articulated,
                           vehicle_kind=r.vehicle_kind)


def _classify(case: CaseInputs, cfg: ClassConfig) -> Classification | None:
    v = case.vehicle
    spacings = [float(s) for s in v.axle_spacings_m]
    if v.axle_count < 2 or len(spacings) != v.axle_count - 1 or not all(
            math.isfinite(s) and s > 0 for s in spacings):
        return None
    return classify(spacings, cfg, known_facts(case))


def _ceil(x: Decimal) -> Decimal:
    return x.to_integral_value(rounding=ROUND_CEILING)


def _device_class(case: CaseInputs, overrides: Mapping[str, float] | None
                  ) -> AccuracyClass | None:
    return accuracy_class(None if case.device is None else case.device.accuracy_class,
                          overrides)


def _tolerance(case: CaseInputs, rule: RuleVersion | None, findings: list[tuple[str, str]],
               overrides: Mapping[str, float] | None = None
               ) -> tuple[Decimal, str, Decimal | None, Decimal | None]:
    """(tolerance, basis, device MPE, jurisdiction deduction): the largest, never a sum."""
    v = case.vehicle
    cls = _device_class(case, overrides)
    mpe = None if cls is None else _ceil(v.gross_weight_kg * Decimal(str(cls.in_service_pct))
                                          / 100)
    jur = None if rule is None else jurisdiction_deduction_kg(rule, v.gross_weight_kg)
    jur = None if jur is None else _ceil(jur)
    options: list[tuple[Decimal, str]] = []  # at a tie the first, the device's error, names it
    if mpe is not None and cls is not None:
        options.append((mpe, f"{cls.source_zh} {cls.name}级使用中最大允许误差"
                             f"±{cls.in_service_pct:g}%（{cls.status_zh}）"))
        if v.allowance_kg + Decimal("0.5") < mpe:
            findings.append(("deduction_below_device_error",
                             f"记录扣除 {v.allowance_kg} kg < 设备误差 {mpe} kg"))
    recorded = v.raw.get("allowance_basis")
    options.append((v.allowance_kg, "称重记录所扣除的允差" + (
        f"：{recorded}" if isinstance(recorded, str) and recorded
        else "（本点历史离散度的k倍大于设备误差）")))
    if jur is not None and rule is not None:
        options.append((jur, f"辖区规定扣除 {rule.allowance_source.cite_zh()}"))
    tol, basis = max(options, key=lambda o: o[0])
    return tol, basis, mpe, jur


def assess(case: CaseInputs, rule: RuleVersion | None, cfg: ClassConfig | None = None,
           class_mpe_in_service_pct: Mapping[str, float] | None = None) -> Assessment:
    """The lawful limit, the tolerance, the excess and the verdict of ``case``;
    ``class_mpe_in_service_pct`` replaces unconfirmed MPE table entries (legal review)."""
    v = case.vehicle
    findings: list[tuple[str, str]] = []
    if case.registration is not None and not registration_matches(case):
        read = case.plate.text if case.plate else ""
        findings.append(("registration_plate_mismatch",
                         f"{case.registration.plate_text} ≠ {read}"))
    static = case.static_reweigh
    unconfirmed: list[str] = []
    if static is None:
        gross = v.gross_weight_kg
        tol, tol_basis, mpe, jur = _tolerance(case, rule, findings, class_mpe_in_service_pct)
    else:  # the static re-weighing is the evidence weight (reweigh_rule)
        gross = static.weight_kg
        tol, tol_basis, mpe, jur, note = static_tolerance(case, rule)
        if note:  # the MPE table is not confirmed
            unconfirmed.append(note)
        unconfirmed.extend(static.certificate.unconfirmed_zh)
    c = _classify(case, cfg or ClassConfig())
    limit: Decimal | None = None
    table: int | None = None
    stricter: tuple[int, ...] = ()
    if c is not None and c.vehicle_class is not None and c.limit_kg is not None:
        base = LEGAL_CLASSES[c.vehicle_class].limit_kg
        table = None if rule is None else rule.limits_by_class_kg.get(c.vehicle_class)
        if rule is not None and table != base:
            findings.append(("limit_mismatch", f"{c.vehicle_class}: 规则{rule.version} {table} kg"
                                               f"，核心 {base} kg"))
        # the rule version in force gives the class's figure; facts adjust it
        limit = Decimal((table if table is not None else base) + (c.limit_kg - base))
        stricter = tuple(s - base + (table or base) for s in c.candidates_kg if s < c.limit_kg)
        unconfirmed.extend(c.unconfirmed)
    cls = _device_class(case, class_mpe_in_service_pct)
    if static is None and cls is not None and not cls.confirmed:
        unconfirmed.append(f"{cls.name}级使用中最大允许误差±{cls.in_service_pct:g}%（{cls.status_zh}）")
    verdict, excess = _verdict(case, c, limit, stricter, gross - tol, findings)
    device_class = None if cls is None else cls.name
    if static is not None:
        device_class = f"static_{static.certificate.accuracy_class}"
    return Assessment(
        gross_kg=gross, vehicle_class=None if c is None else c.vehicle_class,
        vehicle_class_zh=None if c is None else c.name_zh, limit_kg=limit,
        limit_basis="" if c is None else c.basis,
        stricter_zh=() if c is None else tuple(s.note_zh() for s in c.stricter),
        stricter_limits_kg=stricter, unconfirmed_zh=tuple(unconfirmed),
        record_limit_kg=v.limit_kg, rule_table_limit_kg=table, tolerance_kg=tol,
        tolerance_basis_zh=tol_basis, device_class=device_class,
        device_mpe_kg=mpe, recorded_allowance_kg=v.allowance_kg,
        jurisdiction_deduction_kg=jur, excess_kg=excess, verdict=verdict,
        findings=tuple(findings),
        weight_source=STATIC_SOURCE if static is not None else WIM_SOURCE,
        wim_gross_kg=None if static is None else v.gross_weight_kg)


def _verdict(case: CaseInputs, c: Classification | None, limit: Decimal | None,
             stricter: tuple[int, ...], net: Decimal, findings: list[tuple[str, str]]
             ) -> tuple[str, Decimal]:
    """The verdict of ``net`` (the evidence weight less the tolerance) against the limit."""
    v = case.vehicle
    if c is None or limit is None:
        findings.append(("limit_undecidable", f"axles={v.axle_count}"))
        return "undecidable", Decimal(0)
    if v.limit_kg is not None and v.limit_kg < limit:
        findings.append(("limit_stricter_than_law",
                         f"记录限值 {v.limit_kg} kg < 依已知事实的法定限值 {limit} kg"))
    elif v.limit_kg is not None and v.limit_kg > limit:
        findings.append(("limit_lowered_by_facts",
                         f"记录限值 {v.limit_kg} kg，依登记事实为 {limit} kg"))
    if c.vehicle_class == "truck_2_axle" and (not registration_matches(case) or (
            case.registration is None or case.registration.total_mass_kg is None)):
        findings.append(("registration_needed", "二轴货车限值取18000千克与行驶证总质量之较小者"))
    if net > limit:
        return "overloaded", net - limit
    if stricter and net > min(stricter):
        findings.append(("limit_depends_on_facts",
                         "；".join(c_.note_zh() for c_ in c.stricter)))
        return "depends_on_facts", Decimal(0)
    return "within_limit", Decimal(0)
