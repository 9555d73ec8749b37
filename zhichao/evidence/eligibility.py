"""The eligibility gate: may this passage be used as evidence for a penalty?

Three outcomes, each with reasons (code, zh-CN and English text, legal basis):

``ENFORCEABLE``    every check passed; the case may go to the *mandatory* human technical
                   and legal review (行政处罚法 Art. 41 para 2). Nothing is ever issued
                   automatically.
``MANUAL_REVIEW``  a human must resolve something first (plate, abnormal driving, axle
                   count, undecidable limit, …).
``UNUSABLE``       the record cannot be evidence (device not approved, certificate not
                   valid at capture time, site not published, clocks unknown, no
                   violation, …). The data is still sealed and kept.

A missing input (``None``) is "not available" and never passes a check. The severity of
every reason code is configurable (:attr:`GateConfig.severity`), as are all thresholds,
except that a reason of :data:`LAW_FATAL_CODES` may be raised but never lowered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from zhichao.common import beijing_date, utc_now
from zhichao.evidence.errors import RuleError
from zhichao.evidence.inputs import WITHIN_JJG907, CaseInputs
from zhichao.evidence.penalty import PenaltyProposal, lightest, propose_penalty, versions_to_compare
from zhichao.evidence.reweigh_rule import STATIC_REASONS, check_static
from zhichao.evidence.rules import RuleSet, RuleVersion
from zhichao.evidence.verdict import Assessment, assess
from zhichao.weighing.config import ClassConfig
from zhichao.weighing.overload import accuracy_class

# The core computes in floating point; a recorded excess further than this from
# gross - limit means the record is inconsistent.
EXCESS_TOLERANCE_KG = Decimal("0.5")


class Status(StrEnum):
    ENFORCEABLE = "ENFORCEABLE"
    MANUAL_REVIEW = "MANUAL_REVIEW"
    UNUSABLE = "UNUSABLE"


class Severity(StrEnum):
    INFO = "info"
    MANUAL_REVIEW = "manual_review"
    UNUSABLE = "unusable"


#: what a reason does to the case, in Chinese (the case page's 严重程度)
SEVERITY_ZH = {
    Severity.INFO: "提示（不影响证据资格）",
    Severity.MANUAL_REVIEW: "需人工复核",
    Severity.UNUSABLE: "不得作为处罚证据",
}

STATUS_ZH = {
    Status.ENFORCEABLE: "可进入审核（证据条件齐备）",
    Status.MANUAL_REVIEW: "需人工复核",
    Status.UNUSABLE: "不得作为处罚证据",
}

ABNORMAL_DRIVING_FLAGS = frozenset({
    "speed_out_of_range", "acceleration", "reversing", "wheel_off_sensor", "straddling",
    "rows_disagree", "close_following", "possible_merged_vehicles",
})
DATA_QUALITY_FLAGS = frozenset({"data_gap", "incomplete", "saturation", "missing_channel"})
CLASS_FLAGS = frozenset({"class_undecidable", "axle_count_mismatch"})
DRIFT_FLAG = "calibration_drift"  # the station's drift monitor: an open alarm at weighing
KNOWN_FLAGS = ABNORMAL_DRIVING_FLAGS | DATA_QUALITY_FLAGS | CLASS_FLAGS | {DRIFT_FLAG}
# the calibration profile at the passage (zhichao.weighing.vehicle.CALIBRATION_FLAGS): each
# flag is its own reason code (severity and basis in _REASONS)
CALIBRATION_FLAGS = frozenset({"calibration_not_in_force", "outside_calibration_range"})
KNOWN_FLAGS = KNOWN_FLAGS | CALIBRATION_FLAGS
# the completeness of the record (photos, plate, clocks), apart from the verdict by the law
RECORD_COMPLETENESS_CODES = frozenset({
    "image_missing", "image_time_mismatch", "side_axles_not_shown", "plate_unavailable",
    "plate_not_accepted", "plate_low_confidence", "plate_grammar_invalid",
    "clock_unavailable", "clock_out_of_tolerance", "clock_sync_stale", "clock_not_verified",
})

# Chinese plate grammar (shared/reference/plates.md): ordinary, small NEV, large NEV,
# suffix plates. Letters exclude I and O in the serial.
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_S = "A-HJ-NP-Z0-9"
PLATE_PATTERNS = (
    re.compile(rf"^[{_PROVINCES}][A-Z][{_S}]{{5}}$"),
    re.compile(rf"^[{_PROVINCES}][A-Z][DF][{_S}][0-9]{{4}}$"),
    re.compile(rf"^[{_PROVINCES}][A-Z][0-9]{{5}}[DF]$"),
    re.compile(rf"^[{_PROVINCES}][A-Z][{_S}]{{4}}[挂学警港澳领]$"),
)

def reason_zh(code: str) -> str:
    """The Chinese text of a reason code (the code itself only if it is unknown)."""
    entry = _REASONS.get(code)
    return entry[1] if entry else code


# code -> (default severity, zh text, en text, basis)
_REASONS: dict[str, tuple[Severity, str, str, str]] = {
    "no_violation": (Severity.UNUSABLE, "未超限，无违法事实", "not over the limit",
                     "62号令第三条"),
    "device_unavailable": (Severity.UNUSABLE, "设备法定状态不可得", "device status not available",
                           "行政处罚法第四十一条第一款"),
    "device_technical_review": (Severity.UNUSABLE, "设备未通过技术审核（或审核晚于采集时间）",
                                "device not approved by technical review before capture",
                                "行政处罚法第四十一条第一款"),
    "device_legal_review": (Severity.UNUSABLE, "设备未通过法制审核（或审核晚于采集时间）",
                            "device not approved by legal review before capture",
                            "行政处罚法第四十一条第一款"),
    "accuracy_class_unknown": (Severity.UNUSABLE, "设备准确度等级未知",
                               "device accuracy class unknown",
                               "JJG 907-2006（准确度等级）；行政处罚法第四十一条第二款（准确）"),
    "certificate_unavailable": (Severity.UNUSABLE, "计量检定证书信息缺失",
                                "verification certificate not available",
                                "浙江省公路条例第四十条；河南省治超条例第十条"),
    "certificate_invalid": (Severity.UNUSABLE, "采集时计量检定证书不在有效期内",
                            "verification certificate not valid at capture time",
                            "浙江省公路条例第四十条；河南省治超条例第十条"),
    "drift_alarm_open": (Severity.UNUSABLE, "设备漂移报警未关闭（或状态未知）",
                         "device drift alarm open or unknown",
                         "行政处罚法第四十一条第二款（准确）"),
    "record_drift_flag": (Severity.UNUSABLE, "称重记录带有设备标定漂移报警标记，不得作为处罚证据",
                          "the record was weighed with the device's drift alarm open",
                          "行政处罚法第四十一条第二款（准确）"),
    # the profile in force is part of the instrument as verified: a passage weighed without
    # it (uncorrected: up to the sensors' whole bias) is not a weighing by the device as
    # verified and calibrated, and the class's MPE deducted no longer bounds its error
    "calibration_not_in_force": (
        Severity.UNUSABLE, "过车时在用标定参数不在有效期内，称重数据未经标定修正",
        "calibration profile not in force at capture: weighed uncorrected",
        "计量法第九条；浙江省公路条例第四十条；河南省治超条例第十条"),
    # an extrapolated speed/temperature correction: accuracy must still hold (the non-stop
    # requirement, law.md §2 🟡), and nothing shows it outside the fitted range; a human
    # decides (or a static re-weigh), as for abnormal driving (law.md §4.5)
    "outside_calibration_range": (
        Severity.MANUAL_REVIEW, "车速或路面温度超出标定参数的拟合范围（修正为外推）",
        "speed or pavement temperature outside the calibration's fitted range",
        "不停车检测设备技术要求（异常行驶下仍须满足准确度，待确认）；行政处罚法第四十一条第二款（准确）"),
    "device_outside_jjg907_scope": (
        Severity.MANUAL_REVIEW,
        "称重设备为路面直埋式传感器，不在JJG 907-2006检定规程适用范围内（只能参照其校准），"
        "其证书能否证明“经计量检定合格”须法制审核确认",
        "in-pavement sensors are outside JJG 907-2006's scope: whether the device's "
        "certificate shows it verified needs legal review",
        "JJG 907-2006 适用范围（待确认）；浙江省公路条例第四十条"),
    "device_installation_unknown": (Severity.INFO, "设备安装形式未登记，无法判断其检定依据",
                                    "device installation type not recorded",
                                    "JJG 907-2006 适用范围；浙江省公路条例第四十条"),
    "site_unavailable": (Severity.UNUSABLE, "监测点信息不可得", "site not available",
                         "行政处罚法第四十一条第一款"),
    "site_mismatch": (Severity.UNUSABLE, "称重记录与监测点编号不一致",
                      "vehicle record site differs from the site", "行政处罚法第四十一条"),
    "site_not_published": (Severity.UNUSABLE, "监测点位置未公布", "site location not published",
                           "行政处罚法第四十一条第一款"),
    "site_published_too_recently": (Severity.UNUSABLE, "监测点公布至采集时间不足规定天数",
                                    "site published too short a time before capture",
                                    "浙江省公路条例第三十八条"),
    "clock_unavailable": (Severity.UNUSABLE, "时钟同步记录不可得", "clock sync not available",
                          "行政处罚法第四十一条第二款（准确）"),
    "clock_out_of_tolerance": (Severity.UNUSABLE, "设备时钟偏差超出容限",
                               "clock offset beyond tolerance", "行政处罚法第四十一条第二款"),
    "clock_sync_stale": (Severity.UNUSABLE, "时钟同步记录过旧", "clock sync measurement too old",
                         "行政处罚法第四十一条第二款"),
    # the time of the act must be accurate (Art. 41 para 2: 真实、清晰、完整、准确; law.md
    # §4.5: a record whose time is missing is not evidence); a station that did not verify
    # its time source cannot show that it is, so a person decides (not unusable: the
    # time may well be right, and the record is kept)
    "clock_not_verified": (Severity.MANUAL_REVIEW,
                           "站内参考时钟未核验（授时源未经核验或核验未通过）",
                           "the station's reference clock was not verified",
                           "行政处罚法第四十一条第二款（准确）"),
    "data_quality": (Severity.UNUSABLE, "称重数据不完整（数据缺失/饱和/通道缺失）",
                     "weighing data incomplete", "行政处罚法第四十一条第二款（完整）"),
    "image_missing": (Severity.UNUSABLE, "缺少必需的照片", "a required image is missing",
                      "行政处罚法第四十一条第二款；道路交通安全违法行为处理程序规定第十八条"),
    "image_time_mismatch": (Severity.MANUAL_REVIEW, "照片拍摄时间与称重时间不匹配",
                            "image capture time does not match the weighing time",
                            "行政处罚法第四十一条第二款"),
    "side_axles_not_shown": (Severity.MANUAL_REVIEW, "侧面照片未确认显示全部车轴",
                             "side image not confirmed to show every axle",
                             "62号令第三条（按轴数认定限值）"),
    "plate_unavailable": (Severity.MANUAL_REVIEW, "号牌识别结果不可得",
                          "plate result not available", "行政处罚法第四十一条第二款"),
    "plate_not_accepted": (Severity.MANUAL_REVIEW, "号牌识别未被接受", "plate read not accepted",
                           "GA 36-2018；行政处罚法第四十一条第二款"),
    "plate_low_confidence": (Severity.MANUAL_REVIEW, "号牌识别置信度不足",
                             "plate confidence below threshold",
                             "GA 36-2018；行政处罚法第四十一条第二款"),
    "plate_grammar_invalid": (Severity.MANUAL_REVIEW, "号牌格式不符合规则",
                              "plate text fails the plate grammar", "GA 36-2018"),
    "abnormal_driving": (Severity.MANUAL_REVIEW, "异常行驶（需人工复核或复检）",
                         "abnormal driving: manual review or static re-weigh",
                         "浙江省公路条例第三十九条"),
    "unknown_flag": (Severity.MANUAL_REVIEW, "称重记录含未知标记", "unknown flag on the record",
                     "—"),
    "limit_undecidable": (Severity.MANUAL_REVIEW, "车型或限值无法确定",
                          "vehicle class or limit undecidable",
                          "62号令第三条（车型与限值依事实认定）"),
    "verdict_uncertain": (Severity.MANUAL_REVIEW, "超限结论在测量不确定度内",
                          "overload within measurement uncertainty",
                          "行政处罚法第四十条、第四十一条第二款（准确）"),
    "limit_mismatch": (Severity.MANUAL_REVIEW, "称重记录限值与规则库不一致",
                       "recorded limit differs from the rule in force", "62号令第三条"),
    "registration_mass_lower": (Severity.MANUAL_REVIEW, "行驶证总质量低于限值，应取较小值",
                                "registered total mass below the table limit",
                                "公路货运车辆超限超载认定标准（注）"),
    "limit_stricter_than_law": (Severity.MANUAL_REVIEW,
                                "称重记录限值严于依已知事实的法定限值，不提出处罚建议",
                                "recorded limit stricter than the law allows for the facts",
                                "62号令第三条；行政处罚法第五条（过罚相当）"),
    "limit_lowered_by_facts": (Severity.MANUAL_REVIEW, "登记事实使限值低于称重记录限值，需核实",
                               "registration facts lower the limit below the record's",
                               "62号令第三条第二款"),
    "limit_depends_on_facts": (Severity.MANUAL_REVIEW,
                               "仅在设备无法识别的事实（如驱动轴、悬架）成立时才超限，需人工核实",
                               "over only a stricter limit that unseen facts would make lawful",
                               "62号令第三条"),
    "registration_plate_mismatch": (Severity.MANUAL_REVIEW,
                                    "登记信息号牌与识别号牌不一致，未采用登记事实",
                                    "registration is for another plate; its facts not used",
                                    "道路交通安全违法行为处理程序规定第二十二条（参照）"),
    "registration_needed": (Severity.MANUAL_REVIEW, "二轴货车需核对行驶证核定总质量",
                            "2-axle truck: the 行驶证 total mass must be checked",
                            "公路货运车辆超限超载认定标准（注一）"),
    "deduction_below_device_error": (Severity.MANUAL_REVIEW,
                                     "称重记录扣除的允差小于设备准确度等级的最大允许误差",
                                     "record deducted less than its device's error",
                                     "行政处罚法第四十条、第四十一条第二款"),
    "lenity_not_comparable": (Severity.MANUAL_REVIEW,
                              "新旧规则处罚轻重无法比较（从旧兼从轻），需人工决定",
                              "old and new rules cannot be ranked (lex mitior)",
                              "行政处罚法第三十七条"),
    "legal_values_unconfirmed": (Severity.INFO, "限值或允差所依据的数值尚未确认（可配置，见说明）",
                                 "limit or tolerance rests on unconfirmed values",
                                 "公路货运车辆超限超载认定标准（2016）注；"
                                 "JJG 907-2006（待确认数值）"),
    "axle_count_mismatch": (Severity.MANUAL_REVIEW, "轴数在传感器、照片或登记信息之间不一致",
                            "axle count inconsistent across sensors, images or registration",
                            "62号令第三条（按轴数认定限值）"),
    "registration_unavailable": (Severity.INFO, "登记信息不可得，未做交叉核对",
                                 "registration not available; no cross-check",
                                 "62号令第三条（认定所需的车辆事实）"),
    "rule_parameters_unconfirmed": (
        Severity.INFO, "所适用规则中有参数尚未经法制审核确认（见拟处罚的待确认参数）",
        "the rule in force has parameters not confirmed by legal review",
        "行政处罚法第五十八条（法制审核）"),
    "rule_not_in_force": (Severity.MANUAL_REVIEW, "违法时间无有效规则版本",
                          "no rule version in force at the violation time", "—"),
    "excess_inconsistent": (Severity.MANUAL_REVIEW, "称重记录超限量与总质量、限值不一致",
                            "recorded excess inconsistent with gross and limit", "—"),
    # a linked static re-weighing (复检): zhichao.evidence.reweigh_rule
    **{code: (Severity(sev), zh, en, basis)
       for code, (sev, zh, en, basis) in STATIC_REASONS.items()},
}


#: Reasons whose unusability comes from the law, not from a threshold a deployment may
#: weigh: a station's :attr:`GateConfig.severity` may raise them but never lower them.
#: Each is listed with the legal source that makes the record unusable (the ``basis`` of
#: its entry in ``_REASONS``): a device not lawfully approved, not verified or calibrated
#: at capture (计量法第九条; 浙江省公路条例第四十条; 河南省治超条例第十条; 行政处罚法第四十一条
#: 第一款), a site not published (in time) or not the record's (行政处罚法第四十一条第一款;
#: 浙江省公路条例第三十八条), no violation at all (62号令第三条).
LAW_FATAL_CODES: frozenset[str] = frozenset({
    "no_violation",
    "device_unavailable", "device_technical_review", "device_legal_review",
    "certificate_unavailable", "certificate_invalid", "calibration_not_in_force",
    "site_unavailable", "site_mismatch", "site_not_published", "site_published_too_recently",
})

_SEVERITY_RANK = {Severity.INFO: 0, Severity.MANUAL_REVIEW: 1, Severity.UNUSABLE: 2}


def check_severity_overrides(overrides: dict[str, Any]) -> dict[str, Severity]:
    """The overrides as :class:`Severity` values; raises :class:`RuleError` for an unknown
    code or severity, or for one that lowers a reason of :data:`LAW_FATAL_CODES`."""
    checked: dict[str, Severity] = {}
    for code, value in overrides.items():
        if code not in _REASONS:
            raise RuleError(f"GateConfig.severity: unknown reason code {code!r}")
        try:
            severity = Severity(value)
        except ValueError:
            raise RuleError(f"GateConfig.severity[{code!r}]: {value!r} is not one of "
                            f"{[str(s) for s in Severity]}") from None
        default = _REASONS[code][0]
        if code in LAW_FATAL_CODES and _SEVERITY_RANK[severity] < _SEVERITY_RANK[default]:
            raise RuleError(
                f"GateConfig.severity[{code!r}]: cannot lower a reason the law makes "
                f"fatal from {default} to {severity} (basis: {_REASONS[code][3]}); "
                "see eligibility.LAW_FATAL_CODES")
        checked[code] = severity
    return checked


@dataclass(frozen=True)
class Reason:
    code: str
    severity: Severity
    message_zh: str
    message_en: str
    basis_zh: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code, "severity": str(self.severity), "message_zh": self.message_zh,
            "message_en": self.message_en, "basis_zh": self.basis_zh, "detail": self.detail,
        }


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate; several are unconfirmed facts and must stay configurable."""

    publication_lead_days: dict[str, int] = field(default_factory=lambda: {"CN-ZJ": 15})
    default_publication_lead_days: int = 0
    clock_tolerance_ms: float = 500.0
    clock_sync_max_age_s: float = 3600.0
    # a check of the station's time source covers a passage this long after it: hourly
    # checks (issue #17) plus 300 s for a check under way or retried (a choice)
    clock_check_max_age_s: float = 3900.0
    image_time_window_s: float = 10.0
    plate_min_confidence: float = 0.95
    required_image_roles: tuple[str, ...] = ("front", "side", "rear")
    severity: dict[str, Severity] = field(default_factory=dict)
    # the facts a limit depends on, and the unconfirmed (🟡) limit values, configurable
    classes: ClassConfig = field(default_factory=ClassConfig)
    # in-service MPE [%] per accuracy class set after legal review (replaces ❌ table values)
    class_mpe_in_service_pct: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # refused at construction: a station cannot configure away what the law makes fatal
        object.__setattr__(self, "severity", check_severity_overrides(dict(self.severity)))

    def to_json(self) -> dict[str, Any]:
        return {
            "publication_lead_days": dict(self.publication_lead_days),
            "default_publication_lead_days": self.default_publication_lead_days,
            "clock_tolerance_ms": self.clock_tolerance_ms,
            "clock_sync_max_age_s": self.clock_sync_max_age_s,
            "clock_check_max_age_s": self.clock_check_max_age_s,
            "image_time_window_s": self.image_time_window_s,
            "plate_min_confidence": self.plate_min_confidence,
            "required_image_roles": list(self.required_image_roles),
            "severity_overrides": {k: str(v) for k, v in self.severity.items()},
            "air_suspension_bonus_kg": self.classes.air_suspension_bonus_kg,
            "articulated_4_axle_air_limit_kg": self.classes.articulated_4_axle_air_limit_kg,
            "class_mpe_in_service_pct": dict(self.class_mpe_in_service_pct),
        }


@dataclass(frozen=True)
class Eligibility:
    status: Status
    reasons: tuple[Reason, ...]
    rule: RuleVersion | None  # the version in force at the act
    assessment: Assessment | None = None
    penalty: PenaltyProposal | None = None  # the lighter of the versions (Art. 37)

    def status_by_law(self) -> Status:
        """The status from the legal checks only (limit, tolerance, device, site, rule),
        leaving out the completeness of the record's images, plate and clocks."""
        return _worst(r for r in self.reasons if r.code not in RECORD_COMPLETENESS_CODES)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "status_zh": STATUS_ZH[self.status],
            "status_by_law": str(self.status_by_law()),
            "reasons": [r.to_json() for r in self.reasons],
            "requires_human_review": True,
            "assessment": None if self.assessment is None else self.assessment.to_json(),
        }


def plate_grammar_ok(text: str) -> bool:
    return any(p.match(text) for p in PLATE_PATTERNS)


Add = Callable[..., None]


def evaluate(case: CaseInputs, rules: RuleSet | None, config: GateConfig | None = None
             ) -> Eligibility:
    """Run every check on ``case`` and return the status with all reasons found, the
    verdict by the law (:mod:`zhichao.evidence.verdict`) and the penalty proposal."""
    cfg = config or GateConfig()
    reasons: list[Reason] = []

    def add(code: str, detail: str = "") -> None:
        sev, zh, en, basis = _REASONS[code]
        reasons.append(Reason(code, cfg.severity.get(code, sev), zh, en, basis, detail))

    rule = _check_rule(case, rules, add)
    assessment = assess(case, rule, cfg.classes, cfg.class_mpe_in_service_pct)
    _check_violation(case, assessment, add)
    _check_flags(case, reasons, add)
    _check_device(case, add)
    check_static(case, assessment.verdict, add)
    _check_site(case, cfg, add)
    _check_clocks(case, cfg, add)
    axle_counts = _check_images(case, cfg, add)
    _check_plate(case, cfg, add)
    _check_registration(case, axle_counts, add)
    penalty = _penalty(case, rules, rule, assessment, add)
    return Eligibility(_worst(reasons), tuple(reasons), rule, assessment, penalty)


def _worst(reasons: Iterable[Reason]) -> Status:
    severities = {r.severity for r in reasons}
    if Severity.UNUSABLE in severities:
        return Status.UNUSABLE
    if Severity.MANUAL_REVIEW in severities:
        return Status.MANUAL_REVIEW
    return Status.ENFORCEABLE


def _check_rule(case: CaseInputs, rules: RuleSet | None, add: Add) -> RuleVersion | None:
    if rules is None:
        add("rule_not_in_force", "no rule set for the site's jurisdiction")
        return None
    try:
        rule = rules.in_force(case.vehicle.time_utc)
    except RuleError as exc:
        add("rule_not_in_force", str(exc))
        return None
    pending = rule.pending_legal_review()
    if pending:
        add("rule_parameters_unconfirmed", ", ".join(p.parameter for p in pending))
    return rule


def _check_violation(case: CaseInputs, a: Assessment, add: Add) -> None:
    """The verdict by the law; the record's own verdict may only make it more lenient."""
    v = case.vehicle
    for code, detail in a.findings:
        add(code, detail)
    if a.unconfirmed_zh:
        add("legal_values_unconfirmed", "；".join(a.unconfirmed_zh))
    static = case.static_reweigh is not None  # the WIM record's verdict is not the evidence
    record_clear = not static and (
        v.verdict == "within_limit" or (v.verdict == "overloaded" and not v.overloaded))
    if a.verdict == "within_limit" or record_clear:
        add("no_violation", f"record {v.verdict}; by law {a.verdict}, "
                            f"{a.gross_kg} − {a.tolerance_kg} vs {a.limit_kg} kg")
    if v.verdict == "uncertain" and not static:
        add("verdict_uncertain")
    if v.limit_kg is not None and v.excess_kg is not None and abs(
            v.excess_kg - (v.gross_weight_kg - v.limit_kg)) > EXCESS_TOLERANCE_KG:
        add("excess_inconsistent", f"excess {v.excess_kg} != {v.gross_weight_kg}-{v.limit_kg}")


def _check_flags(case: CaseInputs, reasons: list[Reason], add: Add) -> None:
    flags = set(case.vehicle.flags)
    if flags & DATA_QUALITY_FLAGS:
        add("data_quality", ",".join(sorted(flags & DATA_QUALITY_FLAGS)))
    if flags & ABNORMAL_DRIVING_FLAGS:
        add("abnormal_driving_reweighed" if case.static_reweigh is not None
            else "abnormal_driving", ",".join(sorted(flags & ABNORMAL_DRIVING_FLAGS)))
    if DRIFT_FLAG in flags and case.static_reweigh is None:  # the WIM weight is the evidence
        add("record_drift_flag")
    if case.static_reweigh is None:  # the WIM weight is the evidence
        for flag in sorted(flags & CALIBRATION_FLAGS):
            add(flag)
    if "class_undecidable" in flags and not any(r.code == "limit_undecidable" for r in reasons):
        add("limit_undecidable", "flag class_undecidable")
    if flags - KNOWN_FLAGS:
        add("unknown_flag", ",".join(sorted(flags - KNOWN_FLAGS)))


def _check_device(case: CaseInputs, add: Add) -> None:
    d, t = case.device, case.vehicle.time_utc
    if d is None:
        add("device_unavailable")
        return
    if not d.technical_review_approved or d.technical_review_date is None or (
            d.technical_review_date > beijing_date(t)):
        add("device_technical_review", f"date={d.technical_review_date}")
    if not d.legal_review_approved or d.legal_review_date is None or (
            d.legal_review_date > beijing_date(t)):
        add("device_legal_review", f"date={d.legal_review_date}")
    if case.static_reweigh is not None:
        return  # the WIM weight is not the evidence: the static scale's facts are checked
    if accuracy_class(d.accuracy_class) is None:
        add("accuracy_class_unknown", f"class={d.accuracy_class}")
    if not d.certificate_number or d.certificate_valid_from is None or (
            d.certificate_valid_to is None):
        add("certificate_unavailable")
    elif not (d.certificate_valid_from <= t < d.certificate_valid_to):
        add("certificate_invalid",
            f"{d.certificate_number}: {d.certificate_valid_from.isoformat()} – "
            f"{d.certificate_valid_to.isoformat()}, capture {t.isoformat()}")
    if d.drift_alarm_open:
        add("drift_alarm_open")
    if d.installation_type is None:
        add("device_installation_unknown")
    elif d.installation_type not in WITHIN_JJG907:
        add("device_outside_jjg907_scope", d.installation_type)


def _check_site(case: CaseInputs, cfg: GateConfig, add: Add) -> None:
    s, v = case.site, case.vehicle
    if s is None:
        add("site_unavailable")
        return
    if s.site_id != v.site_id:
        add("site_mismatch", f"{v.site_id} vs {s.site_id}")
    if s.published_utc is None:
        add("site_not_published")
        return
    lead = cfg.publication_lead_days.get(s.jurisdiction, cfg.default_publication_lead_days)
    if s.published_utc + timedelta(days=lead) > v.time_utc:
        add("site_published_too_recently",
            f"published {s.published_utc.isoformat()}, lead {lead} d")


def _check_clocks(case: CaseInputs, cfg: GateConfig, add: Add) -> None:
    c = case.clocks
    if c is None or not c.offsets_ms:
        add("clock_unavailable")
        return
    worst = max(abs(o) for o in c.offsets_ms.values())
    if worst > cfg.clock_tolerance_ms:
        add("clock_out_of_tolerance", f"max |offset| {worst} ms > {cfg.clock_tolerance_ms}")
    if abs((case.vehicle.time_utc - c.measured_utc).total_seconds()) > cfg.clock_sync_max_age_s:
        add("clock_sync_stale", f"measured {c.measured_utc.isoformat()}")
    why = clock_not_verified(case, cfg)
    if why:
        add("clock_not_verified", why)


def clock_not_verified(case: CaseInputs, cfg: GateConfig) -> str:
    """Why the record does not show a verified reference clock at the act ("" if it
    does): the station's claim, checked again against the gate's own thresholds."""
    c = case.clocks
    r = None if c is None else c.reference_check
    if r is None:
        return "no check of the reference time source recorded"
    if not r.verified:
        return f"{r.reason or 'not verified'}（{r.reason_zh}）" if r.reason_zh else (
            r.reason or "not verified")
    if r.checked_utc is None or r.offset_ms is None:
        return "verified without a check time or offset"
    age_s = (case.vehicle.time_utc - r.checked_utc).total_seconds()
    if not 0 <= age_s <= cfg.clock_check_max_age_s:
        return (f"check at {r.checked_utc.isoformat()} is {age_s:.0f} s before the act "
                f"(0 … {cfg.clock_check_max_age_s:g} s)")
    bound_ms = abs(r.offset_ms) + (r.error_bound_ms or 0.0)
    if bound_ms > cfg.clock_tolerance_ms:
        return f"|offset| + error bound {bound_ms:.1f} ms > {cfg.clock_tolerance_ms:g} ms"
    return ""


def _check_images(case: CaseInputs, cfg: GateConfig, add: Add) -> dict[str, int]:
    v = case.vehicle
    roles = {img.role for img in case.images}
    missing = [r for r in cfg.required_image_roles if r not in roles]
    if missing:
        add("image_missing", ",".join(missing))
    late = [img.path for img in case.images
            if abs((img.capture_utc - v.time_utc).total_seconds()) > cfg.image_time_window_s]
    if late:
        add("image_time_mismatch", ",".join(late))
    axle_counts: dict[str, int] = {"wim": v.axle_count}
    side = [img for img in case.images if img.role == "side"]
    if side:
        visible = [img.axle_count_visible for img in side if img.axle_count_visible is not None]
        if not visible:
            add("side_axles_not_shown")
        else:
            axle_counts["images"] = max(visible)
    return axle_counts


def _check_plate(case: CaseInputs, cfg: GateConfig, add: Add) -> None:
    p = case.plate
    if p is None or not p.text:
        add("plate_unavailable")
        return
    if not p.accepted:
        add("plate_not_accepted", ",".join(p.review_reasons))
    if p.confidence is None or p.confidence < cfg.plate_min_confidence:
        add("plate_low_confidence", f"{p.confidence} < {cfg.plate_min_confidence}")
    if not plate_grammar_ok(p.text):
        add("plate_grammar_invalid", p.text)


def _check_registration(case: CaseInputs, axle_counts: dict[str, int], add: Add) -> None:
    reg = case.registration
    if reg is None:
        add("registration_unavailable")
    elif reg.axle_count is not None:
        axle_counts["registration"] = reg.axle_count
    if len(set(axle_counts.values())) > 1 or "axle_count_mismatch" in case.vehicle.flags:
        add("axle_count_mismatch", ", ".join(f"{k}={n}" for k, n in axle_counts.items()))


def _penalty(case: CaseInputs, rules: RuleSet | None, rule: RuleVersion | None,
             a: Assessment, add: Add) -> PenaltyProposal | None:
    """The proposal under the lighter of the versions in force from the act to the
    decision (行政处罚法 Art. 37); none unless the law's verdict is an overload."""
    v = case.vehicle
    if rules is None or rule is None or a.limit_kg is None or not a.penalty_allowed or (
            v.verdict == "within_limit" and case.static_reweigh is None):
        return None
    decided = case.decision_utc or utc_now()
    proposals = [
        propose_penalty(version, gross_weight_kg=a.gross_kg, limit_kg=a.limit_kg,
                        allowance_kg=a.tolerance_kg, prior_violations=case.prior_violations,
                        limit_source=a.limit_source(), allowance_source=a.tolerance_source())
        for version in versions_to_compare(rules, v.time_utc, max(decided, v.time_utc))
    ]
    chosen = lightest(proposals)
    if not chosen.comparable:
        add("lenity_not_comparable", chosen.detail)
    return chosen.proposal
