"""The law as versioned data: limits, allowance policy and penalties per jurisdiction.

Rule sets are JSON files of format ``zhichao.rules/1`` (``zhichao/evidence/rules/*.json``,
one per jurisdiction, e.g. ``CN`` and ``CN-ZJ``). Each holds versions with
``effective_from`` / ``effective_to`` (half-open ``[from, to)``); the version in force is
the one whose interval contains the **violation time**. Overlapping versions are refused
when the file is loaded; a time in no version raises :class:`RuleError` (never a guess).

Every computed figure is a :class:`Step` that carries the article it comes from.
Repeat-violation counts, first-violation leniency and the hearing threshold only produce
*proposals* (:attr:`PenaltyProposal.reviewer_notes_zh`), never decisions.

Part tonnes (62号令 Art. 43 "每超1000千克") are counted per the rule's ``part_tonne``:

``floor``     only whole 1 000 kg steps count (1 999 kg over → 1 step) — default;
``ceil``      each started 1 000 kg counts (1 001 kg over → 2 steps);
``pro_rata``  yuan per kg, the total rounded down to whole yuan.

Every parameter carries its legal source with a confidence label (law.md: ✅P, ✅S, 🟡,
❌). Parameters whose source is ❌ (not confirmed: the part-tonne choice, the hearing
threshold, the statement deadline, the allowance policy, effective dates not checked
against the gazette, and the extra items a file lists under ``pending_legal_review``) are
applied as configured but always listed to the reviewer
(:meth:`RuleVersion.pending_legal_review`, :attr:`PenaltyProposal.pending_legal_review`,
the gate's ``rule_parameters_unconfirmed`` reason, the 取证单); never silently.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from zhichao.common import BEIJING as _BEIJING
from zhichao.evidence._util import parse_time, to_decimal
from zhichao.evidence.errors import InputError, RuleError

RULES_FORMAT = "zhichao.rules/1"
PART_TONNE_MODES = ("floor", "ceil", "pro_rata")
# The deduction is never smaller than the device's in-service MPE (行政处罚法 Art. 40, 41(2));
# "ratio_of_gross" sets a larger one for the jurisdiction (with its source); "as_recorded"
# and "none" (older files) add nothing to the device's error.
ALLOWANCE_METHODS = ("device_mpe", "ratio_of_gross", "as_recorded", "none")


@dataclass(frozen=True)
class LegalSource:
    """Where a rule comes from, e.g. 62号令 第四十三条第（二）项, with its confidence label."""

    law_zh: str
    article_zh: str
    status: str = ""

    def cite_zh(self) -> str:
        if not self.law_zh:
            return self.article_zh
        return f"《{self.law_zh}》{self.article_zh}" if not self.law_zh.startswith("（") else (
            f"{self.law_zh}{self.article_zh}"
        )

    def to_json(self) -> dict[str, str]:
        return {"law_zh": self.law_zh, "article_zh": self.article_zh, "status": self.status}

    @property
    def confirmed(self) -> bool:
        """False for a ❌ source (not confirmed; law.md's confidence labels)."""
        return not self.status.startswith("❌")


@dataclass(frozen=True)
class PendingParameter:
    """A rule parameter applied as configured but not confirmed by legal review."""

    parameter: str
    value: str
    source: LegalSource
    note_zh: str

    def to_json(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "value": self.value,
                "source": self.source.to_json(), "note_zh": self.note_zh}

    def reviewer_note_zh(self) -> str:
        return (f"【待法制审核确认】{self.note_zh}（参数 {self.parameter}，当前取值：{self.value}；"
                f"依据：{self.source.cite_zh()}）")


@dataclass(frozen=True)
class Band:
    from_ratio: Decimal
    to_ratio: Decimal | None
    rate_yuan_per_tonne: int


@dataclass(frozen=True)
class PenaltyRule:
    method: str  # "per_tonne" | "banded_ratio"
    tonne_kg: int
    part_tonne: str
    cap_yuan: int
    source: LegalSource
    cap_source: LegalSource
    part_tonne_source: LegalSource
    warning_max_excess_kg: int = 0
    rate_yuan_per_tonne: int = 0
    education_below_ratio: Decimal | None = None
    education_may_waive_fine: bool = False
    bands: tuple[Band, ...] = ()


@dataclass(frozen=True)
class RuleVersion:
    jurisdiction: str
    jurisdiction_zh: str
    version: str
    effective_from: datetime
    effective_to: datetime | None
    effective_from_confirmed: bool
    effective_from_source: LegalSource
    notes: str
    limits_by_class_kg: dict[str, int]
    limits_source: LegalSource
    allowance_method: str
    allowance_ratio: Decimal | None
    allowance_source: LegalSource
    penalty: PenaltyRule
    hearing_threshold_yuan: int | None
    hearing_threshold_source: LegalSource
    hearing_source: LegalSource
    hearing_request_days: int
    hearing_request_source: LegalSource
    statement_days: int | None
    statement_days_source: LegalSource
    repeat_window_days: int
    repeat_more_than: int
    repeat_source: LegalSource
    first_violation_source: LegalSource
    extra_pending: tuple[PendingParameter, ...] = ()

    def pending_legal_review(self) -> tuple[PendingParameter, ...]:
        """Every parameter of this version that legal review has not confirmed."""
        items: list[PendingParameter] = []
        if not self.effective_from_confirmed or not self.effective_from_source.confirmed:
            items.append(PendingParameter(
                "effective_from", self.effective_from.astimezone(_BEIJING).isoformat(),
                self.effective_from_source,
                f"规则版本{self.version}的生效日期未经核对公报原文"))
        if not self.allowance_source.confirmed or self.allowance_method == "ratio_of_gross":
            value = self.allowance_method + (
                f"({self.allowance_ratio})" if self.allowance_ratio is not None else "")
            items.append(PendingParameter(
                "allowance.method", value, self.allowance_source,
                "辖区另定的计量允差扣除（大于设备在用最大允许误差部分）须经法制审核确认"
                if self.allowance_method == "ratio_of_gross" else
                "计量允差扣除方式无全国性规定，系可配置选择"))
        if not self.penalty.part_tonne_source.confirmed:
            items.append(PendingParameter(
                "penalty.part_tonne", self.penalty.part_tonne, self.penalty.part_tonne_source,
                f"不足{self.penalty.tonne_kg}千克部分的计罚方式（floor 只计整吨 / "
                "ceil 不足一吨按一吨 / pro_rata 按比例）法规未明确，系可配置选择"))
        if self.hearing_threshold_yuan is None or not self.hearing_threshold_source.confirmed:
            value = "未配置" if self.hearing_threshold_yuan is None else (
                f"{self.hearing_threshold_yuan}元")
            items.append(PendingParameter(
                "hearing_threshold_yuan", value, self.hearing_threshold_source,
                "“较大数额罚款”听证标准由各省规定，本地标准未确认；是否告知听证权利由审核人员判断"))
        if self.statement_days is None or not self.statement_days_source.confirmed:
            value = "未配置（“规定期限内”）" if self.statement_days is None else (
                f"{self.statement_days}日")
            items.append(PendingParameter(
                "statement_days", value, self.statement_days_source,
                "陈述、申辩期限未经确认"))
        items.extend(self.extra_pending)
        return tuple(items)

    def in_force_at(self, moment: datetime) -> bool:
        if moment < self.effective_from:
            return False
        return self.effective_to is None or moment < self.effective_to


@dataclass(frozen=True)
class RuleSet:
    jurisdiction: str
    jurisdiction_zh: str
    versions: tuple[RuleVersion, ...]

    def in_force(self, moment: datetime) -> RuleVersion:
        """The version in force at ``moment`` (tz-aware).

        Raises
        ------
        RuleError
            If no version covers ``moment``.
        """
        if moment.tzinfo is None:
            raise RuleError("violation time has no time zone")
        for version in self.versions:
            if version.in_force_at(moment):
                return version
        raise RuleError(
            f"no rule of jurisdiction {self.jurisdiction} is in force at {moment.isoformat()}"
        )


def _source(raw: Any, where: str) -> LegalSource:
    if not isinstance(raw, dict) or not isinstance(raw.get("law_zh"), str):
        raise RuleError(f"{where}: a legal source needs law_zh and article_zh")
    return LegalSource(
        str(raw["law_zh"]), str(raw.get("article_zh", "")), str(raw.get("status", ""))
    )


def _get(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise RuleError(f"{where}: missing key {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RuleError(f"{where}.{key}: wrong type {type(value).__name__}")
    return value


def _penalty(raw: Any, where: str) -> PenaltyRule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    method = _get(raw, "method", str, where)
    part = raw.get("part_tonne", "floor")
    if part not in PART_TONNE_MODES:
        raise RuleError(f"{where}.part_tonne: {part!r} not one of {PART_TONNE_MODES}")
    common = {
        "method": method,
        "tonne_kg": int(_get(raw, "tonne_kg", int, where)),
        "part_tonne": part,
        "cap_yuan": int(_get(raw, "cap_yuan", int, where)),
        "source": _source(raw.get("source"), f"{where}.source"),
        "cap_source": _source(raw.get("cap_source", raw.get("source")), f"{where}.cap_source"),
        "part_tonne_source": _source(raw.get("part_tonne_source"), f"{where}.part_tonne_source"),
    }
    try:
        if method == "per_tonne":
            return PenaltyRule(
                warning_max_excess_kg=int(_get(raw, "warning_max_excess_kg", int, where)),
                rate_yuan_per_tonne=int(_get(raw, "rate_yuan_per_tonne", int, where)),
                **common,
            )
        if method == "banded_ratio":
            bands = []
            for i, band in enumerate(_get(raw, "bands", list, where)):
                bw = f"{where}.bands[{i}]"
                to_raw = band.get("to_ratio")
                bands.append(
                    Band(
                        to_decimal(band["from_ratio"], bw),
                        None if to_raw is None else to_decimal(to_raw, bw),
                        int(band["rate_yuan_per_tonne"]),
                    )
                )
            return PenaltyRule(
                education_below_ratio=to_decimal(raw["education_below_ratio"], where),
                education_may_waive_fine=bool(raw.get("education_may_waive_fine", False)),
                bands=tuple(bands),
                **common,
            )
    except (KeyError, TypeError, InputError) as exc:
        raise RuleError(f"{where}: malformed penalty rule ({exc})") from None
    raise RuleError(f"{where}.method: unknown penalty method {method!r}")


def _version(raw: Any, jurisdiction: str, jurisdiction_zh: str, where: str) -> RuleVersion:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    try:
        eff_from = parse_time(raw.get("effective_from"), f"{where}.effective_from")
        eff_to_raw = raw.get("effective_to")
        eff_to = None if eff_to_raw is None else parse_time(eff_to_raw, f"{where}.effective_to")
    except InputError as exc:
        raise RuleError(str(exc)) from None
    if eff_to is not None and eff_to <= eff_from:
        raise RuleError(f"{where}: effective_to is not after effective_from")
    limits = _get(raw, "limits", dict, where)
    by_class = _get(limits, "by_class_kg", dict, f"{where}.limits")
    allowance = _get(raw, "allowance", dict, where)
    method = allowance.get("method")
    if method not in ALLOWANCE_METHODS:
        raise RuleError(f"{where}.allowance.method: unknown {method!r}")
    ratio = allowance.get("ratio")
    repeat = _get(raw, "repeat_violation", dict, where)
    hearing = raw.get("hearing_threshold_yuan")
    if hearing is not None and (not isinstance(hearing, int) or isinstance(hearing, bool)):
        raise RuleError(f"{where}.hearing_threshold_yuan: must be an integer or null")
    statement_days = raw.get("statement_days")
    if statement_days is not None and (
            not isinstance(statement_days, int) or isinstance(statement_days, bool)
            or statement_days <= 0):
        raise RuleError(f"{where}.statement_days: must be a positive integer or null")
    request_days = _get(raw, "hearing_request_days", int, where)
    extra: list[PendingParameter] = []
    for i, item in enumerate(raw.get("pending_legal_review") or []):
        iw = f"{where}.pending_legal_review[{i}]"
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("parameter", "value", "note_zh")):
            raise RuleError(f"{iw}: needs parameter, value and note_zh strings and a source")
        extra.append(PendingParameter(item["parameter"], item["value"],
                                      _source(item.get("source"), f"{iw}.source"),
                                      item["note_zh"]))
    return RuleVersion(
        jurisdiction=jurisdiction,
        jurisdiction_zh=jurisdiction_zh,
        version=str(_get(raw, "version", str, where)),
        effective_from=eff_from,
        effective_to=eff_to,
        effective_from_confirmed=bool(raw.get("effective_from_confirmed", False)),
        effective_from_source=_source(raw.get("effective_from_source"),
                                      f"{where}.effective_from_source"),
        notes=str(raw.get("notes", "")),
        limits_by_class_kg={str(k): int(v) for k, v in by_class.items()},
        limits_source=_source(limits.get("source"), f"{where}.limits.source"),
        allowance_method=str(method),
        allowance_ratio=None if ratio is None else to_decimal(ratio, f"{where}.allowance.ratio"),
        allowance_source=_source(allowance.get("source"), f"{where}.allowance.source"),
        penalty=_penalty(raw.get("penalty"), f"{where}.penalty"),
        hearing_threshold_yuan=hearing,
        hearing_threshold_source=_source(raw.get("hearing_threshold_source"),
                                         f"{where}.hearing_threshold_source"),
        hearing_source=_source(raw.get("hearing_source"), f"{where}.hearing_source"),
        hearing_request_days=int(request_days),
        hearing_request_source=_source(raw.get("hearing_request_source"),
                                       f"{where}.hearing_request_source"),
        statement_days=statement_days,
        statement_days_source=_source(raw.get("statement_days_source"),
                                      f"{where}.statement_days_source"),
        repeat_window_days=int(repeat.get("window_days", 365)),
        repeat_more_than=int(repeat.get("more_than", 3)),
        repeat_source=_source(repeat.get("source"), f"{where}.repeat_violation.source"),
        first_violation_source=_source(
            (raw.get("first_violation") or {}).get("source"), f"{where}.first_violation.source"
        ),
        extra_pending=tuple(extra),
    )


def parse_rule_set(raw: Any, where: str = "rules") -> RuleSet:
    """Build a :class:`RuleSet` from decoded JSON; ``where`` names the source in errors."""
    if not isinstance(raw, dict) or raw.get("format") != RULES_FORMAT:
        raise RuleError(f"{where}: not a {RULES_FORMAT} document")
    jurisdiction = _get(raw, "jurisdiction", str, where)
    jurisdiction_zh = str(raw.get("jurisdiction_zh", jurisdiction))
    versions = [
        _version(v, jurisdiction, jurisdiction_zh, f"{where}.versions[{i}]")
        for i, v in enumerate(_get(raw, "versions", list, where))
    ]
    if not versions:
        raise RuleError(f"{where}: no versions")
    versions.sort(key=lambda v: v.effective_from)
    for prev, nxt in itertools.pairwise(versions):
        if prev.effective_to is None or prev.effective_to > nxt.effective_from:
            raise RuleError(
                f"{where}: versions {prev.version} and {nxt.version} overlap in time"
            )
    return RuleSet(jurisdiction, jurisdiction_zh, tuple(versions))


def load_rule_set(jurisdiction: str, extra_dir: Path | None = None) -> RuleSet:
    """Load the rule set of ``jurisdiction`` (e.g. ``"CN"``, ``"CN-ZJ"``).

    ``extra_dir`` (a deployment's reviewed rule files) is searched before the built-in ones.
    """
    name = f"{jurisdiction.lower()}.json"
    if extra_dir is not None and (extra_dir / name).is_file():
        path = extra_dir / name
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        res = resources.files("zhichao.evidence").joinpath("rules", name)
        if not res.is_file():
            raise RuleError(f"no rule set for jurisdiction {jurisdiction!r} (looked for {name})")
        text = res.read_text(encoding="utf-8")
        where = f"zhichao/evidence/rules/{name}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleError(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return parse_rule_set(raw, where)


def jurisdiction_deduction_kg(rule: RuleVersion, gross_weight_kg: Decimal) -> Decimal | None:
    """A deduction the jurisdiction sets above the device's error (``ratio_of_gross``), or
    None. The tolerance is the larger of this and the device's MPE, never their sum."""
    if rule.allowance_method != "ratio_of_gross":
        return None
    if rule.allowance_ratio is None:
        raise RuleError(f"rule {rule.version}: allowance ratio_of_gross without ratio")
    return gross_weight_kg * rule.allowance_ratio
