"""Stage 7: the overload check, with the allowance and the passage's own uncertainty.

A vehicle exactly at its limit is not over it (62号令 Art. 3: "超过" the limit). The
allowance (default: the device's in-service MPE, 5 % for class 5) is subtracted before the
excess counts. On top of that, a single passage scatters with the vehicle's dynamic loads;
the rows of the array sample those at different moments, so their disagreement estimates
this passage's own scatter (GUM Type A)::

    u = c · s_rows / √N            (c: spatial-correlation factor, TRL RR307)
    overloaded  ⇔  gross − allowance − t(N−1, confidence) · u  >  limit
    uncertain   ⇔  gross − allowance > limit, but not by that margin

so the core never claims a violation its measurement cannot support. With one row there is
no estimate of scatter, and any apparent overload is ``uncertain``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from scipy import stats

from zhichao.weighing.config import OverloadConfig

VERDICTS = ("overloaded", "within_limit", "uncertain", "undecidable")


@dataclass(frozen=True)
class OverloadResult:
    verdict: str
    overloaded: bool
    allowance_kg: int
    excess_kg: int | None  # gross − limit, 0 when not over
    excess_after_allowance_kg: int | None
    uncertainty_kg: float | None  # standard uncertainty of the gross weight from the rows
    coverage_factor: float | None
    exceeds_all_candidates: bool = False


@lru_cache(maxsize=64)
def coverage_factor(n_rows: int, confidence: float) -> float:
    """One-sided Student-t quantile with N − 1 degrees of freedom."""
    if n_rows < 2:
        return math.inf
    return float(stats.t.ppf(confidence, n_rows - 1))


def row_uncertainty_kg(row_gross_kg: list[float], cfg: OverloadConfig) -> float | None:
    """Standard uncertainty of the mean gross weight from the row estimates."""
    n = len(row_gross_kg)
    if n < 2:
        return None
    mean = sum(row_gross_kg) / n
    var = sum((g - mean) ** 2 for g in row_gross_kg) / (n - 1)
    return cfg.spatial_correlation_factor * math.sqrt(var / n)


def check_overload(gross_kg: float, limit_kg: int | None, row_gross_kg: list[float],
                   cfg: OverloadConfig | None = None,
                   candidates_kg: tuple[int, ...] = ()) -> OverloadResult:
    """Decide the verdict for one passage (see module docstring)."""
    cfg = cfg or OverloadConfig()
    allowance = int(round(cfg.allowance_fraction * gross_kg))
    u = row_uncertainty_kg(row_gross_kg, cfg)
    k = coverage_factor(len(row_gross_kg), cfg.confidence)
    if limit_kg is None:
        beyond_all = bool(candidates_kg) and all(
            _margin(gross_kg, allowance, u, k, c) > 0 for c in candidates_kg)
        return OverloadResult("undecidable", False, allowance, None, None, u,
                              None if math.isinf(k) else k, beyond_all)
    excess = max(0, int(round(gross_kg)) - limit_kg)
    excess_after = max(0, int(round(gross_kg)) - allowance - limit_kg)
    if excess_after <= 0:
        verdict = "within_limit"
    elif _margin(gross_kg, allowance, u, k, limit_kg) > 0:
        verdict = "overloaded"
    else:
        verdict = "uncertain"
    return OverloadResult(verdict, verdict == "overloaded", allowance, excess, excess_after, u,
                          None if math.isinf(k) else k)


def _margin(gross_kg: float, allowance_kg: int, u: float | None, k: float, limit: int
            ) -> float:
    if u is None or math.isinf(k):
        return -math.inf
    return gross_kg - allowance_kg - k * u - limit
