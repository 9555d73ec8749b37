"""Penalty proposals under a rule version, and 从旧兼从轻 across versions.

Every computed figure is a :class:`Step` that carries the article it comes from. Repeat
counts, first-violation leniency and the hearing threshold only produce
:attr:`PenaltyProposal.reviewer_notes_zh`; a proposal is never a decision.

Rules by date (行政处罚法 Art. 37, 从旧兼从轻): the version in force on the day of the act
applies, unless a version in force later (up to the decision) is lighter; then the lighter
one. When two proposals cannot be ranked (a 警告 against a 批评教育, say), the case goes to a
human (:attr:`Lenity.comparable` False).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from zhichao.evidence.errors import RuleError
from zhichao.evidence.rules import LegalSource, PenaltyRule, PendingParameter, RuleSet, RuleVersion


class Outcome(StrEnum):
    NONE = "none"  # not over the limit: no violation
    WARNING = "warning"  # 警告
    EDUCATION = "education"  # 批评教育, fine may be waived
    FINE = "fine"


OUTCOME_ZH = {
    Outcome.NONE: "未超限，不予处罚",
    Outcome.WARNING: "警告",
    Outcome.EDUCATION: "批评教育（可以不予罚款）",
    Outcome.FINE: "罚款",
}

LENITY_SOURCE = LegalSource("中华人民共和国行政处罚法", "第三十七条（从旧兼从轻）", "✅P")


@dataclass(frozen=True)
class Step:
    """One computed figure and the article it comes from."""

    label_zh: str
    value: str
    unit: str
    source: LegalSource

    def to_json(self) -> dict[str, Any]:
        return {"label_zh": self.label_zh, "value": self.value, "unit": self.unit,
                "source": self.source.to_json()}


@dataclass(frozen=True)
class PenaltyProposal:
    """A proposal for the reviewers, never a decision."""

    jurisdiction: str
    rule_version: str
    outcome: Outcome
    fine_yuan: int
    excess_kg: Decimal
    excess_ratio: Decimal | None
    steps: tuple[Step, ...]
    basis: LegalSource
    hearing_right: bool | None  # None: threshold not configured → reviewer decides
    reviewer_notes_zh: tuple[str, ...] = field(default=())
    pending_legal_review: tuple[PendingParameter, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "rule_version": self.rule_version,
            "outcome": str(self.outcome),
            "outcome_zh": OUTCOME_ZH[self.outcome],
            "fine_yuan": self.fine_yuan,
            "excess_kg": str(self.excess_kg),
            "excess_ratio": None if self.excess_ratio is None else str(self.excess_ratio),
            "steps": [s.to_json() for s in self.steps],
            "basis": self.basis.to_json(),
            "hearing_right": self.hearing_right,
            "reviewer_notes_zh": list(self.reviewer_notes_zh),
            "pending_legal_review": [p.to_json() for p in self.pending_legal_review],
            "is_decision": False,
        }


def _tonnes_yuan(mass_kg: Decimal, rule: PenaltyRule, rate: int) -> tuple[Decimal, Decimal]:
    """(counted tonnes, yuan before the cap) for ``mass_kg`` at ``rate`` yuan per tonne."""
    tonnes = mass_kg / Decimal(rule.tonne_kg)
    if rule.part_tonne == "floor":
        counted = tonnes.to_integral_value(rounding=ROUND_FLOOR)
    elif rule.part_tonne == "ceil":
        counted = tonnes.to_integral_value(rounding=ROUND_CEILING)
    else:
        counted = tonnes
    yuan = (counted * rate).to_integral_value(rounding=ROUND_FLOOR)
    return counted, yuan


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _per_tonne(p: PenaltyRule, excess: Decimal, steps: list[Step]) -> tuple[Outcome, int]:
    """62号令 Art. 43(2): ≤ 1 000 kg → 警告; otherwise so much per 1 000 kg."""
    if excess <= p.warning_max_excess_kg:
        label = f"超限不超过{p.warning_max_excess_kg}千克，予以警告"
        steps.append(Step(label, "0", "元", p.source))
        return Outcome.WARNING, 0
    counted, yuan = _tonnes_yuan(excess, p, p.rate_yuan_per_tonne)
    steps.append(Step(f"计罚吨数（{p.part_tonne}）", _fmt(counted), "t", p.part_tonne_source))
    steps.append(Step(f"每{p.tonne_kg}千克{p.rate_yuan_per_tonne}元", _fmt(yuan), "元", p.source))
    return Outcome.FINE, int(yuan)


def _banded(p: PenaltyRule, excess: Decimal, ratio: Decimal, limit_kg: Decimal,
            steps: list[Step]) -> tuple[Outcome, int]:
    """浙江省公路条例 Art. 53: < 20 % education; per band yuan per tonne."""
    assert p.education_below_ratio is not None
    if ratio < p.education_below_ratio:
        steps.append(Step(
            f"超限率不足{_fmt(p.education_below_ratio * 100)}%，批评教育，可以不予罚款",
            "0", "元", p.source))
        return Outcome.EDUCATION, 0
    total = Decimal(0)
    for band in p.bands:
        lower = limit_kg * band.from_ratio
        upper = excess if band.to_ratio is None else min(excess, limit_kg * band.to_ratio)
        part = upper - lower
        if part <= 0:
            continue
        counted, yuan = _tonnes_yuan(part, p, band.rate_yuan_per_tonne)
        span = f"{_fmt(band.from_ratio * 100)}%" + (
            f"至{_fmt(band.to_ratio * 100)}%" if band.to_ratio is not None else "以上")
        steps.append(Step(f"超限{span}部分质量", _fmt(part), "kg", p.source))
        steps.append(Step(f"超限{span}部分计罚吨数（{p.part_tonne}）", _fmt(counted), "t",
                          p.part_tonne_source))
        steps.append(Step(f"超限{span}部分，计{_fmt(counted)}吨×{band.rate_yuan_per_tonne}元/吨",
                          _fmt(yuan), "元", p.source))
        total += yuan
    # at or over the education ratio the article fines; a part under one counted tonne can
    # round to 0 yuan, which stays a fine (not 批评教育) with its rounding for legal review
    return Outcome.FINE, int(total)


def _hearing(rule: RuleVersion, outcome: Outcome, fine: int, notes: list[str]) -> bool | None:
    if outcome is not Outcome.FINE:
        return False
    if rule.hearing_threshold_yuan is None:
        notes.append(f"本地“较大数额罚款”听证标准未配置（{rule.hearing_source.cite_zh()}），"
                     "请审核人员判断是否告知听证权利。")
        return None
    hearing = fine >= rule.hearing_threshold_yuan
    if hearing:
        notes.append(f"拟罚款{fine}元达到听证标准{rule.hearing_threshold_yuan}元，"
                     f"应告知当事人有要求听证的权利（{rule.hearing_source.cite_zh()}）。")
    return hearing


def _history_notes(rule: RuleVersion, prior_violations: int | None, notes: list[str]) -> None:
    if prior_violations is None:
        notes.append(f"一年内违法次数未知，请核查（{rule.repeat_source.cite_zh()}）；"
                     f"是否首次违法亦待核实（{rule.first_violation_source.cite_zh()}）。")
        return
    if prior_violations + 1 > rule.repeat_more_than:
        notes.append(f"{rule.repeat_window_days}天内本车第{prior_violations + 1}次违法，超过"
                     f"{rule.repeat_more_than}次，建议审核人员考虑移送道路运输管理机构"
                     f"（{rule.repeat_source.cite_zh()}）。")
    if prior_violations == 0:
        notes.append("本车首次违法：如危害后果轻微并及时改正，可以不予行政处罚，"
                     f"由审核人员决定（{rule.first_violation_source.cite_zh()}）。")


def propose_penalty(
    rule: RuleVersion,
    *,
    gross_weight_kg: Decimal,
    limit_kg: Decimal,
    allowance_kg: Decimal,
    prior_violations: int | None = None,
    limit_source: LegalSource | None = None,
    allowance_source: LegalSource | None = None,
) -> PenaltyProposal:
    """Compute the proposed penalty of one overload under ``rule``.

    ``allowance_kg`` is the tolerance (the device's error, or a larger jurisdiction rule);
    ``limit_source`` / ``allowance_source`` cite where the limit and the tolerance come
    from (default: the rule's table and allowance sources). The vehicle is over the limit
    only when ``gross - allowance > limit``: exactly at the limit is not over it.
    ``prior_violations`` (in the rule's repeat window, not counting this one) only adds
    notes for the reviewer; ``None`` means unknown.
    """
    if limit_kg <= 0:
        raise RuleError(f"limit {limit_kg} kg is not positive")
    p = rule.penalty
    lim_src = limit_source or rule.limits_source
    steps: list[Step] = [
        Step("车货总质量（实测）", _fmt(gross_weight_kg), "kg", lim_src),
        Step("限定标准", _fmt(limit_kg), "kg", lim_src),
        Step("计量允差扣除", _fmt(allowance_kg), "kg", allowance_source or rule.allowance_source),
    ]
    excess = gross_weight_kg - allowance_kg - limit_kg
    ratio = excess / limit_kg if excess > 0 else Decimal(0)
    steps.append(Step("超限质量（扣除允差后）", _fmt(max(excess, Decimal(0))), "kg", lim_src))
    steps.append(Step("超限率", _fmt((ratio * 100).quantize(Decimal("0.01"))), "%", p.source))
    notes: list[str] = []
    outcome, fine = Outcome.NONE, 0
    if excess > 0:
        outcome, fine = (_per_tonne(p, excess, steps) if p.method == "per_tonne"
                         else _banded(p, excess, ratio, limit_kg, steps))
    if fine > p.cap_yuan:
        steps.append(Step(f"罚款上限{p.cap_yuan}元", str(p.cap_yuan), "元", p.cap_source))
        fine = p.cap_yuan
    if outcome is not Outcome.NONE:
        steps.append(Step("拟处罚款金额", str(fine), "元", p.source))
    if outcome is Outcome.FINE and fine == 0:
        notes.append(f"超限部分按计罚吨数取整规则（{p.part_tonne}）计得罚款0元；"
                     f"取整规则依据：{p.part_tonne_source.cite_zh()}，请法制审核确认。")
    hearing = _hearing(rule, outcome, fine, notes)
    if outcome is not Outcome.NONE:
        _history_notes(rule, prior_violations, notes)
        if p.education_may_waive_fine and outcome is Outcome.EDUCATION:
            notes.append(f"依{p.source.cite_zh()}，可以不予罚款，由审核人员决定。")
    pending = tuple(
        item for item in rule.pending_legal_review()
        if outcome is not Outcome.NONE and (
            item.parameter not in ("penalty.part_tonne", "hearing_threshold_yuan")
            or outcome is Outcome.FINE)
    )
    notes.extend(item.reviewer_note_zh() for item in pending)
    return PenaltyProposal(
        jurisdiction=rule.jurisdiction, rule_version=rule.version, outcome=outcome,
        fine_yuan=fine, excess_kg=max(excess, Decimal(0)), excess_ratio=ratio,
        steps=tuple(steps), basis=p.source, hearing_right=hearing,
        reviewer_notes_zh=tuple(notes), pending_legal_review=pending,
    )


# --------------------------------------------------------------------------- 从旧兼从轻

# how heavy an outcome is; outcomes of the same rank and no fine cannot be compared
_RANK = {Outcome.NONE: 0, Outcome.EDUCATION: 1, Outcome.WARNING: 1, Outcome.FINE: 2}


@dataclass(frozen=True)
class Lenity:
    """The proposal to use, and whether the versions could be compared."""

    proposal: PenaltyProposal
    comparable: bool
    considered: tuple[str, ...]  # rule versions compared
    detail: str = ""


def versions_to_compare(rules: RuleSet, act_utc: datetime, decision_utc: datetime
                        ) -> list[RuleVersion]:
    """The version in force at the act, then every later one in force by the decision.

    Raises
    ------
    RuleError
        If no version is in force at the act.
    """
    first = rules.in_force(act_utc)
    later = [v for v in rules.versions
             if v.effective_from > first.effective_from and v.effective_from <= decision_utc]
    return [first, *later]


def lightest(proposals: list[PenaltyProposal]) -> Lenity:
    """从旧兼从轻: the lightest proposal; the first (the act's version) on a tie of equal
    outcome and fine; not comparable when the lightest outcomes differ in kind only."""
    names = tuple(p.rule_version for p in proposals)
    best = min(proposals, key=lambda p: (_RANK[p.outcome], p.fine_yuan))
    ties = [p for p in proposals if (_RANK[p.outcome], p.fine_yuan)
            == (_RANK[best.outcome], best.fine_yuan)]
    kinds = {p.outcome for p in ties}
    if len(kinds) > 1:
        detail = "；".join(f"{p.rule_version}: {OUTCOME_ZH[p.outcome]}" for p in ties)
        return Lenity(proposals[0], False, names, detail)
    chosen = ties[0]
    if len(proposals) > 1:
        note = (f"依{LENITY_SOURCE.cite_zh()}，比较了规则版本{'、'.join(names)}，"
                f"适用处罚较轻的{chosen.rule_version}。")
        chosen = PenaltyProposal(**{**chosen.__dict__,
                                    "reviewer_notes_zh": (*chosen.reviewer_notes_zh, note)})
    return Lenity(chosen, True, names)
