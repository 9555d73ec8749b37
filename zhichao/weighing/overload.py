"""Stage 7: the overload check — the device's error, the site's scatter, the law's limit.

A vehicle exactly at its limit is not over it (62号令 Art. 3: "超过" the limit). Before the
excess counts, one deduction (``tolerance``) is subtracted, and the same error is never
counted twice — the larger of two estimates is taken, not their sum:

* the device's **in-service maximum permissible error** for its accuracy class
  (:data:`ACCURACY_CLASSES`, OIML R134 / JJG 907; 行政处罚法 Art. 40, 41(2): no penalty while
  the excess lies inside the device's error);
* the site's **gross-weight scatter at this speed**, ``k · σ(v)``, where σ(v) is pooled
  from the site's history (:mod:`zhichao.weighing.scatter`: reference-truck runs in the
  calibration profile, in-service passages through the spread of their rows, each an upper
  confidence bound) — many degrees of freedom, not a Student t on one passage's 1–3; where
  no history covers the speed, the physics prior for the device's class and the passage's
  number of rows (:func:`zhichao.weighing.scatter.prior_scatter`);
* a larger deduction set by the jurisdiction (``OverloadConfig.jurisdiction_fraction``),
  only with its source.

::

    tolerance   = max(MPE(class) · gross, k · σ(v) · gross, jurisdiction · gross)
    overloaded  ⇔  gross − tolerance > limit                (limit: the most lenient lawful)
    undecidable ⇔  not overloaded, but gross − tolerance > a stricter candidate limit that
                   a fact the WIM cannot see would make lawful (e.g. 46 t for a single drive)
    uncertain   ⇔  over, but the passage has fewer than two rows, so its own scatter
                   cannot be checked for an anomaly; or not over after the deduction, but
                   gross − MPE(class) · gross > limit: over by more than the device's error
                   and within the site's scatter — never a case, marked for a human

The passage's own row scatter is only an anomaly check: ``rows_disagree`` (stage 8) flags a
passage whose rows disagree, and the evidence gate sends it to manual review.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from zhichao.weighing.config import OverloadConfig
from zhichao.weighing.errors import WeighingConfigError
from zhichao.weighing.scatter import (  # noqa: F401 - re-exported
    HistoryPassage,
    ScatterBand,
    estimate_scatter,
    prior_scatter,
    scatter_at,
)

PRIOR_SOURCE_ZH = "本点尚无历史数据：按器具准确度等级与粗糙路面动载模型的保守先验"

VERDICTS = ("overloaded", "within_limit", "uncertain", "undecidable")
#: the one Chinese name of each weighing verdict, for everything a person reads (the
#: evidence stage adds its verdict by the law, ``zhichao.evidence.verdict.VERDICT_ZH``)
VERDICT_ZH = {"overloaded": "超限", "within_limit": "未超限", "uncertain": "存疑（需复核）",
              "undecidable": "限值无法确定（需人工核定）"}

_R134 = "OIML R134-1:2006 / JJG 907-2006《动态公路车辆自动衡器》车辆总质量准确度等级"


@dataclass(frozen=True)
class AccuracyClass:
    """One vehicle-mass accuracy class and its maximum permissible errors [% of the mass]."""

    name: str
    initial_pct: float  # initial verification
    in_service_pct: float  # in service (使用中): the deduction
    source_zh: str
    status: str  # law.md confidence label; ❌ = not confirmed, configurable

    @property
    def confirmed(self) -> bool:
        return not self.status.startswith("❌")

    @property
    def status_zh(self) -> str:
        """The status without law.md's emoji label (PDF fonts lack 🟡)."""
        return self.status.replace("🟡 ", "待确认：").replace("❌ ", "")


# One table. Only class 5 in service (±5 %) is sourced (law.md §2, S19: 🟡); the rest
# follow the R134 pattern (in service = 2 × initial) from memory and are marked ❌.
ACCURACY_CLASSES: dict[str, AccuracyClass] = {
    c.name: c for c in (
        AccuracyClass("0.2", 0.10, 0.20, _R134, "❌ 未确认（按R134模式推定）"),
        AccuracyClass("0.5", 0.25, 0.50, _R134, "❌ 未确认（按R134模式推定）"),
        AccuracyClass("1", 0.50, 1.00, _R134, "❌ 未确认（按R134模式推定）"),
        AccuracyClass("2", 1.00, 2.00, _R134, "❌ 未确认（按R134模式推定）"),
        AccuracyClass("5", 2.50, 5.00, _R134, "🟡 使用中±5%（单一二手来源）"),
        AccuracyClass("10", 5.00, 10.00, _R134, "❌ 未确认（按R134模式推定）"),
    )
}


def accuracy_class(name: str | None, overrides: Mapping[str, float] | None = None
                   ) -> AccuracyClass | None:
    """The table row of ``name`` (e.g. ``"5"``, ``"5级"``), or None when unknown.

    ``overrides`` maps a class to an in-service MPE [%] a deployment has set after legal
    review (the table's unconfirmed entries stay configurable); such a row says so.
    """
    if name is None:
        return None
    key = str(name).strip().removesuffix("级").strip()
    row = ACCURACY_CLASSES.get(key)
    if row is None or not overrides or key not in overrides:
        return row
    return replace(row, in_service_pct=float(overrides[key]),
                   status="✅ 部署配置值（经法制审核确认）")


def mpe_fraction(name: str) -> float:
    """In-service MPE of class ``name`` as a fraction of the mass.

    Raises
    ------
    WeighingConfigError
        If the class is not in :data:`ACCURACY_CLASSES`.
    """
    row = accuracy_class(name)
    if row is None:
        raise WeighingConfigError(f"accuracy class {name!r} not one of {sorted(ACCURACY_CLASSES)}")
    return row.in_service_pct / 100.0


@dataclass(frozen=True)
class Tolerance:
    """The deduction and where it comes from."""

    tolerance_kg: int
    device_mpe_kg: int
    scatter_kg: int | None  # k · σ(v) · gross
    jurisdiction_kg: int | None
    governing: str  # "device_mpe" | "site_scatter" | "jurisdiction"
    basis_zh: str


def site_sigma(speed_kmh: float | None, rows: int, cfg: OverloadConfig,
               axle_count: int | None = None) -> tuple[float, str]:
    """σ(v) for a passage with ``rows`` rows: the site's bands where one covers the speed
    (and axle count), else the physics prior for the device's class
    (:func:`prior_scatter`); and its source."""
    sigma = scatter_at(speed_kmh, cfg.scatter_bands, axle_count)
    cls = accuracy_class(cfg.accuracy_class, dict(cfg.class_mpe_in_service_pct))
    assert cls is not None  # checked by OverloadConfig
    prior = prior_scatter(speed_kmh, rows)
    known_speed = speed_kmh is not None and math.isfinite(speed_kmh)
    # an unknown speed: the worst band, or the prior at the top speed if that is larger
    if sigma is not None and (known_speed or sigma >= prior):
        return sigma, cfg.scatter_source
    return prior, PRIOR_SOURCE_ZH


def tolerance_for(gross_kg: float, speed_kmh: float | None, cfg: OverloadConfig,
                  rows: int = 1, axle_count: int | None = None) -> Tolerance:
    """The larger of the device's MPE, the site's scatter and the jurisdiction's deduction."""
    cls = accuracy_class(cfg.accuracy_class, dict(cfg.class_mpe_in_service_pct))
    assert cls is not None  # checked by OverloadConfig
    mpe = int(math.ceil(cls.in_service_pct / 100.0 * gross_kg))
    sigma, source = site_sigma(speed_kmh, rows, cfg, axle_count)
    scatter = int(math.ceil(cfg.coverage_factor * sigma * gross_kg))
    jur = (None if cfg.jurisdiction_fraction is None
           else int(math.ceil(cfg.jurisdiction_fraction * gross_kg)))
    options = {"device_mpe": mpe, "site_scatter": scatter, "jurisdiction": jur or 0}
    governing = max(options, key=lambda k: options[k])
    basis = {
        "device_mpe": f"{cls.source_zh} {cls.name}级使用中最大允许误差±{cls.in_service_pct:g}%"
                      f"（{cls.status_zh}）",
        "site_scatter": f"本点该车速下总重相对标准差 {sigma * 100:.2f}%（{source}），"
                        f"k={cfg.coverage_factor:g}",
        "jurisdiction": cfg.jurisdiction_basis,
    }[governing]
    return Tolerance(options[governing], mpe, scatter, jur, governing, basis)


@dataclass(frozen=True)
class OverloadResult:
    verdict: str
    overloaded: bool
    allowance_kg: int  # the tolerance deducted
    excess_kg: int | None  # gross − limit, 0 when not over
    excess_after_allowance_kg: int | None
    uncertainty_kg: float | None  # σ(v) · gross: standard uncertainty from the site's history
    coverage_factor: float | None
    exceeds_all_candidates: bool = False
    tolerance: Tolerance | None = None


def check_overload(gross_kg: float, limit_kg: int | None, row_gross_kg: list[float],
                   cfg: OverloadConfig | None = None,
                   candidates_kg: tuple[int, ...] = (),
                   speed_kmh: float | None = None,
                   axle_count: int | None = None) -> OverloadResult:
    """Decide the verdict for one passage (see module docstring).

    ``limit_kg`` is the most lenient limit lawful for what is known of the vehicle;
    ``candidates_kg`` also lists the stricter ones that unseen facts would make lawful.
    """
    cfg = cfg or OverloadConfig()
    rows = max(1, len(row_gross_kg))
    tol = tolerance_for(gross_kg, speed_kmh, cfg, rows, axle_count)
    u = site_sigma(speed_kmh, rows, cfg, axle_count)[0] * gross_kg
    k = cfg.coverage_factor
    net = gross_kg - tol.tolerance_kg
    if limit_kg is None:
        beyond_all = bool(candidates_kg) and net > max(candidates_kg)
        return OverloadResult("undecidable", False, tol.tolerance_kg, None, None, u, k,
                              beyond_all, tol)
    excess = max(0, int(round(gross_kg)) - limit_kg)
    excess_after = max(0, int(round(net)) - limit_kg)
    stricter = [c for c in candidates_kg if c < limit_kg]
    if net > limit_kg:
        # fewer than two rows: the passage cannot be checked for an anomaly (rows_disagree)
        verdict = "overloaded" if len(row_gross_kg) >= 2 else "uncertain"
    elif stricter and net > min(stricter):
        verdict = "undecidable"
    elif gross_kg - tol.device_mpe_kg > limit_kg:
        # over by more than the device's error, but not by more than the site's scatter at
        # this speed: not proven, never a case, and not silently dropped either (a human
        # may send the truck to static re-weighing)
        verdict = "uncertain"
    else:
        verdict = "within_limit"
    return OverloadResult(verdict, verdict == "overloaded", tol.tolerance_kg, excess,
                          excess_after, u, k, False, tol)
