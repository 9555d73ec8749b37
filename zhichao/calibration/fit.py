"""Fit a calibration profile to reference-truck passes.

Model, for pass p and complete row r (the loads ``L, R`` of the row's two half-strips as the
lane reports them with its base sensitivities, see :mod:`zhichao.calibration.measure`)::

    Ĝ_pr = k(v_p) · [ g_rL · L_pr / (1 + α_rL ΔT_p) + g_rR · R_pr / (1 + α_rR ΔT_p) ]

with ``ΔT = T − T0`` the pavement temperature about the reference temperature, ``g`` the
channel gain (base sensitivity / true sensitivity at T0), ``α`` the channel temperature
coefficient and ``k(v)`` a piecewise-linear speed factor (knots every
``speed_knot_step_kmh``; the knot nearest the median speed is fixed at 1 because only the
product g·k is observable). This is exactly how the weighing core applies a profile.

Three kinds of residual, all standardised:

* pass gross: ``ē_p / σ_pass(v)`` with ``e_pr = Ĝ_pr / G_p − 1`` against the static reference
  gross ``G_p`` and ``ē_p`` its mean over the pass's complete rows — exactly the gross error
  the core reports for that pass;
* row contrasts: ``(e_pr − ē_p) / σ_contrast(v)`` — they fix the rows' gains relative to each
  other. The rows of one pass sample the body bounce at different phases, so their errors
  largely cancel in the mean: at 80 km/h a row's deviation is ≈ 5 % but the pass mean only
  ≈ 1.3 %. Treating the rows as independent with one σ (as a plain row-wise fit does) gives
  the mean far too little weight and lets a robust loss break that cancellation;
* balance: ``(share_pr − s₀) / σ_share`` with ``share`` the calibrated left share of the row.
  The gross weight only fixes each row's *sum* of gains; the split between a row's left and
  right half-strip rests on the physical fact that trucks carry about half their load on
  each side (s₀ = 0.5, σ_share = 0.02 per vehicle: both assumptions, configurable). Where
  the reference file gives the pass's static wheel loads (``wheel_loads_kg``), s₀ is that
  truck's static left share and σ_share the scatter of the measured share about it,
  estimated from the data per speed knot like the others: the split is then measured,
  not assumed.

Dynamic loads grow with speed (wim.md §2.4), so σ_pass and σ_contrast are estimated from the
data (robust scale, 1.4826 · MAD, of a first fit's residuals) per speed knot — the nearest
knot's value for each pass; bands with fewer than ``min_passes_for_scale`` passes use the
value pooled over all speeds. Outlier passes are judged against σ_pass at their own speed.

Solved with ``scipy.optimize.least_squares`` (soft-L1 loss, so single bad residuals weigh
little); then whole passes whose gross error lies beyond ``outlier_sigma`` robust standard
deviations (at their speed) are rejected with that reason and the fit repeated. The lane is then
re-weighed with the fitted sensitivities (pulse detection depends on them slightly) and the
fit repeated (``iterations``). Parameter uncertainties come from the Jacobian at the
solution, scaled by the reduced χ² when it exceeds 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from zhichao.calibration.errors import CalibrationError, CalibrationFitError
from zhichao.calibration.measure import PassageLoads, measure_recording, sha256_file
from zhichao.calibration.profile_doc import (  # noqa: F401 - write_profile re-exported
    nominal_sensitivities,
    profile_is_finite,
    profile_json,
    write_profile,
)
from zhichao.calibration.reference import ReferenceWeights, read_reference
from zhichao.calibration.scatter import reference_scatter
from zhichao.weighing.calibration_profile import parse_profile
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.stream import ABNORMAL_FLAGS

REJECTION_ZH: dict[str, str] = {
    "vehicle_count": "录制中检测到的车辆数不是 1",
    "axle_count": "检测轴数与参考车辆轴数不符",
    "flagged": "过车带有异常行驶或数据质量标记",
    "no_complete_row": "没有完整的传感器排数据",
    "outlier": "残差超出稳健标准差的界限（离群过车）",
}


@dataclass
class FitConfig:
    """Settings of the fit. Values marked *guess* are engineering choices, not law."""

    reference_temperature_c: float = 20.0
    speed_knot_step_kmh: float = 20.0  # wim.md §2.5: a table over speed bins
    min_passes_per_knot: int = 3
    min_temperature_span_c: float = 10.0  # guess: below this α is not fitted
    # used when α cannot be fitted: quartz data sheet −0.02 %/°C (wim.md §1.5)
    default_temperature_coefficient_per_c: float = -0.0002
    left_share_expected: float = 0.5  # physical assumption: trucks are balanced left/right
    left_share_sd: float = 0.02  # guess: per-vehicle static left/right imbalance
    initial_row_sd: float = 0.03  # guess, only for the first pass of the fit
    # guess: a speed band needs this many passes for its own scatter estimate, else the
    # scatter pooled over all speeds is used
    min_passes_for_scale: int = 8
    outlier_sigma: float = 3.5  # guess
    max_outlier_rounds: int = 3
    iterations: int = 2
    min_passes: int = 6
    # wim.md §2.5: "≥ 10 passes per truck at site-typical speeds" (counted after screening,
    # before outlier rejection); a fit on one truck cannot tell the lane's error from that
    # truck's, hence ≥ 2 configurations (axle counts; wim.md §2.5's 2-axle / 3-axle /
    # articulated fleet; the 2 is a guess)
    min_passes_per_truck: int = 10
    min_truck_configurations: int = 2
    validity_days: int = 365  # guess; the verification period in force decides legally
    reject_flags: tuple[str, ...] = tuple(sorted(ABNORMAL_FLAGS))

    def __post_init__(self) -> None:
        if self.speed_knot_step_kmh <= 0 or self.left_share_sd <= 0 or self.outlier_sigma <= 0:
            raise CalibrationFitError("speed_knot_step_kmh, left_share_sd and outlier_sigma "
                                      "must be > 0")
        if self.iterations < 1 or self.min_passes < 2 or self.validity_days < 1:
            raise CalibrationFitError("iterations >= 1, min_passes >= 2, validity_days >= 1")
        if self.min_passes_per_truck < 1 or self.min_truck_configurations < 1:
            raise CalibrationFitError("min_passes_per_truck >= 1, min_truck_configurations >= 1")


@dataclass
class PassRecord:
    """One recording of the session: what was measured and whether the fit used it."""

    recording: str
    sha256: str
    reference_gross_kg: float
    reference_axles_kg: tuple[float, ...]
    reference_left_share: float | None = None  # from static wheel loads, when given
    temperature_c: float | None = None
    speed_kmh: float | None = None
    used: bool = False
    reason: str | None = None
    detail: str = ""
    gross_error_before_pct: float | None = None  # base sensitivities, no correction
    gross_error_after_pct: float | None = None  # with the fitted profile (model)
    loads: PassageLoads | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "loads"}
        d["reference_axles_kg"] = list(self.reference_axles_kg)
        d["reason_zh"] = REJECTION_ZH.get(self.reason, self.reason) if self.reason else None
        return d


@dataclass
class _Arrays:
    left: npt.NDArray[np.float64]  # [pass, row]
    right: npt.NDArray[np.float64]
    valid: npt.NDArray[np.bool_]
    dt_c: npt.NDArray[np.float64]  # [pass]
    speed_kmh: npt.NDArray[np.float64]
    gross_kg: npt.NDArray[np.float64]
    # the left share each pass is expected to show, and whether it is the truck's measured
    # static share (True) or the balance assumption (False)
    share_expected: npt.NDArray[np.float64] | None = None
    share_known: npt.NDArray[np.bool_] | None = None


@dataclass
class _Solution:
    gain: npt.NDArray[np.float64]  # [row, side]
    alpha: npt.NDArray[np.float64]  # [row, side]
    knots_kmh: list[float]
    factors: npt.NDArray[np.float64]
    u_log_gain: npt.NDArray[np.float64]
    u_alpha: npt.NDArray[np.float64]
    u_log_factor: npt.NDArray[np.float64]
    row_sd: float
    chi2_reduced: float
    pass_error: npt.NDArray[np.float64]  # relative, per pass (mean over its rows)
    pass_sd: npt.NDArray[np.float64]  # the scatter expected of each pass's error (its speed)
    pass_sd_by_knot: list[float]
    contrast_sd_by_knot: list[float]
    share_sd_by_knot: list[float]  # measured static shares only; empty without them
    n_share_known: int


def _knots(speeds: npt.NDArray[np.float64], cfg: FitConfig) -> list[float]:
    step = cfg.speed_knot_step_kmh
    cand = sorted({round(float(v) / step) * step for v in speeds})
    return [float(k) for k in cand
            if int(np.sum(np.abs(speeds - k) <= step / 2)) >= cfg.min_passes_per_knot]


class _Model:
    def __init__(self, arr: _Arrays, knots: list[float], ref_knot: int, fit_alpha: bool,
                 alpha0: float, cfg: FitConfig) -> None:
        self.a = arr
        self.knots = knots
        self.ref_knot = ref_knot
        self.fit_alpha = fit_alpha
        self.alpha0 = alpha0
        self.cfg = cfg
        self.n_rows = int(arr.left.shape[1])
        n_pass = int(arr.left.shape[0])
        # per-pass standard deviations of the pass error and of a row's deviation from its
        # pass mean; set from the data after a first round (they grow with speed)
        self.pass_sd = np.full(n_pass, cfg.initial_row_sd / math.sqrt(self.n_rows))
        self.contrast_sd = np.full(n_pass, cfg.initial_row_sd)
        self.share_known = (arr.share_known if arr.share_known is not None
                            else np.zeros(n_pass, dtype=bool))
        self.share_expected = (arr.share_expected if arr.share_expected is not None
                               else np.full(n_pass, cfg.left_share_expected))
        self.share_sd = np.full(n_pass, cfg.left_share_sd)

    @property
    def n_params(self) -> int:
        n = 2 * self.n_rows
        return n * (2 if self.fit_alpha else 1) + max(0, len(self.knots) - 1)

    def unpack(self, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                          npt.NDArray[np.float64],
                                                          npt.NDArray[np.float64]]:
        n = 2 * self.n_rows
        lg = x[:n].reshape(self.n_rows, 2)
        i = n
        if self.fit_alpha:
            alpha = x[n:2 * n].reshape(self.n_rows, 2)
            i = 2 * n
        else:
            alpha = np.full((self.n_rows, 2), self.alpha0)
        lk = np.zeros(len(self.knots))
        free = [j for j in range(len(self.knots)) if j != self.ref_knot]
        lk[free] = x[i:]
        return lg, alpha, lk

    def calibrated(self, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                              npt.NDArray[np.float64]]:
        lg, alpha, lk = self.unpack(x)
        a = self.a
        if len(self.knots) >= 2:
            k = np.interp(a.speed_kmh, self.knots, np.exp(lk))
        else:
            k = np.ones_like(a.speed_kmh)
        dt = a.dt_c[:, None]
        cal_l = k[:, None] * a.left * np.exp(lg[:, 0])[None, :] / (1 + alpha[:, 0][None, :] * dt)
        cal_r = k[:, None] * a.right * np.exp(lg[:, 1])[None, :] / (1 + alpha[:, 1][None, :] * dt)
        return cal_l, cal_r

    def relative(self, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                            npt.NDArray[np.float64],
                                                            npt.NDArray[np.float64]]:
        """Row errors ``e_pr = Ĝ_pr / G_p − 1`` (NaN where incomplete), the pass error
        (their mean over the pass's complete rows: what the core reports as the gross) and
        the left shares."""
        cal_l, cal_r = self.calibrated(x)
        v = self.a.valid
        tot = cal_l + cal_r
        rel = np.where(v, tot / self.a.gross_kg[:, None] - 1.0, np.nan)
        mean = np.nanmean(rel, axis=1)
        share = np.where(v, cal_l / np.where(v, tot, 1.0), np.nan)
        return rel, mean, share

    def residuals(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        rel, mean, share = self.relative(x)
        v = self.a.valid
        gross = mean / self.pass_sd
        contrast = ((rel - mean[:, None]) / self.contrast_sd[:, None])[v]
        bal = ((share - self.share_expected[:, None]) / self.share_sd[:, None])[v]
        return np.concatenate([gross, contrast, bal])

    def pass_error(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.relative(x)[1]


def outlier_passes(pass_error: npt.NDArray[np.float64], pass_sd: npt.NDArray[np.float64],
                   sigma: float) -> list[int]:
    """Indices of passes whose error lies beyond ``sigma`` times the scatter expected at
    their own speed (``pass_sd``) from the median of all passes."""
    med = float(np.median(pass_error))
    return [int(i) for i in np.nonzero(np.abs(pass_error - med) > sigma * pass_sd)[0]]


def _speed_groups(speeds: npt.NDArray[np.float64], knots: list[float]
                  ) -> npt.NDArray[np.int64]:
    """Index of the speed knot nearest each pass (all 0 without knots)."""
    if not knots:
        return np.zeros(len(speeds), dtype=np.int64)
    return np.asarray(np.argmin(np.abs(speeds[:, None] - np.array(knots)[None, :]), axis=1),
                      dtype=np.int64)


def _robust_sd(x: npt.NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan")
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


def _scale_by_speed(values: npt.NDArray[np.float64], groups: npt.NDArray[np.int64],
                    n_groups: int, min_n: int) -> tuple[npt.NDArray[np.float64], list[float]]:
    """Robust scale (1.4826 · MAD) of ``values`` [pass] or [pass, row] per speed group;
    groups with fewer than ``min_n`` passes take the pooled scale. Returns the scale of
    each pass and of each group."""
    pooled = max(_robust_sd(values.ravel()), 1e-4)
    per_group: list[float] = []
    for g in range(max(n_groups, 1)):
        sel = groups == g
        sd = _robust_sd(values[sel].ravel()) if int(sel.sum()) >= min_n else float("nan")
        per_group.append(max(sd, 1e-4) if math.isfinite(sd) else pooled)
    return np.array(per_group)[groups], per_group


def _solve(arr: _Arrays, cfg: FitConfig) -> _Solution:
    n_pass, n_rows = arr.left.shape
    knots = _knots(arr.speed_kmh, cfg)
    median_v = float(np.median(arr.speed_kmh))
    ref_knot = int(np.argmin([abs(k - median_v) for k in knots])) if knots else 0
    t = arr.dt_c + cfg.reference_temperature_c
    fit_alpha = float(t.max() - t.min()) >= cfg.min_temperature_span_c
    model = _Model(arr, knots, ref_knot, fit_alpha, cfg.default_temperature_coefficient_per_c,
                   cfg)
    # start: one gain per row from the median ratio, the data-sheet temperature coefficient
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(arr.valid, arr.gross_kg[:, None] / (arr.left + arr.right), np.nan)
    lg0 = np.log(np.nanmedian(ratio, axis=0))
    x0 = [np.repeat(lg0, 2)]
    if fit_alpha:
        x0.append(np.full(2 * n_rows, cfg.default_temperature_coefficient_per_c))
    x0.append(np.zeros(max(0, len(knots) - 1)))
    x = np.concatenate(x0)
    n_valid = int(arr.valid.sum())
    # pass errors + row contrasts (n_rows − 1 independent per pass) + left shares
    n_res = n_pass + (n_valid - n_pass) + n_valid
    if n_res <= model.n_params:
        raise CalibrationFitError(f"{n_pass} usable passes cannot determine {model.n_params} "
                                  f"parameters")
    groups = _speed_groups(arr.speed_kmh, knots)
    by_pass: list[float] = []
    by_contrast: list[float] = []
    by_share: list[float] = []
    for _ in range(2):  # the second round with the scatter estimated from the first
        res = least_squares(model.residuals, x, loss="soft_l1", f_scale=2.0, method="trf",
                            x_scale="jac")
        x = res.x
        rel, mean, _ = model.relative(x)
        model.pass_sd, by_pass = _scale_by_speed(mean, groups, len(knots),
                                                 cfg.min_passes_for_scale)
        model.contrast_sd, by_contrast = _scale_by_speed(rel - mean[:, None], groups,
                                                         len(knots), cfg.min_passes_for_scale)
        row_sd = max(_robust_sd(rel[arr.valid]), 1e-4)
        known = model.share_known
        if known.any():
            share = model.relative(x)[2]
            dev = share[known] - model.share_expected[known][:, None]
            sd_known, by_share = _scale_by_speed(dev, groups[known], len(knots),
                                                 cfg.min_passes_for_scale)
            model.share_sd[known] = sd_known
    r = model.residuals(x)
    dof = max(1, n_res - model.n_params)
    chi2 = float(np.sum(r * r) / dof)
    jac = np.asarray(res.jac)
    cov = np.linalg.pinv(jac.T @ jac) * max(1.0, chi2)
    u = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    lg, alpha, lk = model.unpack(x)
    u_lg, u_alpha, u_lk = model.unpack(u)
    if not fit_alpha:
        u_alpha = np.zeros_like(u_alpha)
    return _Solution(np.exp(lg), alpha, knots, np.exp(lk), u_lg, u_alpha, u_lk, row_sd,
                     chi2, model.pass_error(x), model.pass_sd.copy(), by_pass, by_contrast,
                     by_share, int(model.share_known.sum()))


def _arrays(passes: list[PassRecord], cfg: FitConfig) -> _Arrays:
    loads = [p.loads for p in passes if p.loads is not None]
    side = np.stack([pl.side_loads_kg for pl in loads])  # [pass, row, side]
    return _Arrays(
        left=side[:, :, 0], right=side[:, :, 1], valid=np.all(np.isfinite(side), axis=2),
        dt_c=np.array([pl.temperature_c - cfg.reference_temperature_c for pl in loads]),
        speed_kmh=np.array([abs(pl.speed_kmh or 0.0) for pl in loads]),
        gross_kg=np.array([p.reference_gross_kg for p in passes]),
        share_expected=np.array([cfg.left_share_expected if p.reference_left_share is None
                                 else p.reference_left_share for p in passes]),
        share_known=np.array([p.reference_left_share is not None for p in passes]))


@dataclass
class CalibrationResult:
    profile: dict[str, Any]
    passes: list[PassRecord]

    @property
    def used(self) -> list[PassRecord]:
        return [p for p in self.passes if p.used]

    @property
    def rejected(self) -> list[PassRecord]:
        return [p for p in self.passes if not p.used]


def truck_of(p: PassRecord) -> int:
    """A reference truck as the reference file can tell it: its configuration (number of
    axles). The file has no truck id, and static weights do not identify a truck (one
    mis-entered row would be a truck of its own); a session drives one truck per
    configuration (wim.md §2.5), two trucks of one configuration are counted together."""
    return len(p.reference_axles_kg)


def check_session_coverage(passes: list[PassRecord], cfg: FitConfig) -> None:
    """Refuse a session whose usable passes do not cover ``min_passes_per_truck`` per
    reference truck and ``min_truck_configurations`` configurations (axle counts).

    :raises CalibrationFitError: naming each truck's count.
    """
    per_truck: dict[int, int] = {}
    for p in passes:
        if p.used:
            per_truck[truck_of(p)] = per_truck.get(truck_of(p), 0) + 1
    short = {t: n for t, n in per_truck.items() if n < cfg.min_passes_per_truck}
    configurations = set(per_truck)
    problems: list[str] = []
    if short:
        problems.append(
            f"trucks with fewer than {cfg.min_passes_per_truck} usable passes (wim.md §2.5): "
            + "; ".join(f"{t}-axle: {n}" for t, n in sorted(short.items())))
    if len(configurations) < cfg.min_truck_configurations:
        problems.append(f"{len(configurations)} truck configuration(s) "
                        f"({', '.join(f'{k}-axle' for k in sorted(configurations)) or 'none'}), "
                        f"need {cfg.min_truck_configurations}")
    if problems:
        raise CalibrationFitError(
            "calibration session too small: " + " and ".join(problems)
            + " (FitConfig.min_passes_per_truck / min_truck_configurations)")


def _screen(path: Path, ref: ReferenceWeights, base: dict[str, float] | None,
            cfg: FitConfig, wcfg: WeighingConfig | None, digest: str) -> PassRecord:
    rec = PassRecord(path.name, digest, ref.gross_weight_kg, ref.axle_loads_kg,
                     ref.left_share)
    measured = measure_recording(path, base, wcfg)
    if len(measured) != 1:
        rec.reason, rec.detail = "vehicle_count", f"{len(measured)} vehicles"
        return rec
    pl = measured[0]
    rec.loads = pl
    rec.temperature_c = pl.temperature_c
    rec.speed_kmh = pl.speed_kmh
    v = pl.vehicle
    if v.axle_count != len(ref.axle_loads_kg):
        rec.reason = "axle_count"
        rec.detail = f"weighed {v.axle_count}, reference {len(ref.axle_loads_kg)}"
        return rec
    bad = sorted(set(v.flags) & set(cfg.reject_flags))
    if bad:
        rec.reason, rec.detail = "flagged", ",".join(bad)
        return rec
    if not pl.complete_rows or v.speed_kmh is None:
        rec.reason = "no_complete_row"
        return rec
    rec.used = True
    return rec


def calibrate(recordings: list[Path], reference_csv: Path, *,
              config: FitConfig | None = None, weighing_config: WeighingConfig | None = None,
              created_utc: datetime | None = None, supersedes: str | None = None
              ) -> CalibrationResult:
    """Fit a profile (``zhichao.calibration/1``) to reference passes; see the module doc."""
    cfg = config or FitConfig()
    refs = read_reference(reference_csv)
    paths = [Path(p) for p in recordings]
    missing = [p.name for p in paths if p.name not in refs]
    if missing:
        raise CalibrationError(f"{reference_csv}: no reference weights for "
                               f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    digests = {p.name: sha256_file(p) for p in paths}
    base: dict[str, float] | None = None
    nominal: dict[str, float] = {}
    sol: _Solution | None = None
    passes: list[PassRecord] = []
    before: dict[str, float] = {}
    site: str | None = None
    lane: str | None = None
    for it in range(cfg.iterations):
        passes = [_screen(p, refs[p.name], base, cfg, weighing_config, digests[p.name])
                  for p in paths]
        for p in passes:
            if p.loads is not None and site is None:
                site, lane = p.loads.vehicle.site_id, p.loads.vehicle.lane_id
        if it == 0:
            for p in passes:
                if p.loads is not None and p.loads.complete_rows:
                    sl = p.loads.side_loads_kg
                    before[p.recording] = float(np.nanmean(sl.sum(axis=1))
                                                / p.reference_gross_kg - 1.0) * 100
        check_session_coverage(passes, cfg)
        for rnd in range(cfg.max_outlier_rounds + 1):
            used = [p for p in passes if p.used]
            if len(used) < cfg.min_passes:
                raise CalibrationFitError(
                    f"only {len(used)} usable passes (need {cfg.min_passes}); rejected: "
                    + "; ".join(f"{p.recording}: {p.reason} {p.detail}".strip()
                                for p in passes if not p.used)[:800])
            sol = _solve(_arrays(used, cfg), cfg)
            # each pass against the scatter of passes at its own speed (dynamic loads grow
            # with speed: one σ for all speeds would reject fast passes for being fast)
            out = outlier_passes(sol.pass_error, sol.pass_sd, cfg.outlier_sigma)
            # the last round only fits: rejecting there would leave sol without its passes
            if not out or rnd == cfg.max_outlier_rounds:
                break
            med = float(np.median(sol.pass_error))
            for i in out:
                p, ei, sd = used[i], float(sol.pass_error[i]), float(sol.pass_sd[i])
                p.used, p.reason = False, "outlier"
                p.detail = (f"{ei * 100:+.2f} % vs median {med * 100:+.2f} % "
                            f"(σ {sd * 100:.2f} % at {p.speed_kmh or 0.0:.0f} km/h)")
        assert sol is not None
        used = [p for p in passes if p.used]
        for p, ei in zip(used, sol.pass_error, strict=True):
            p.gross_error_after_pct = float(ei * 100)
        # sensitivities that reproduce the fit, as the base of the next measurement
        grid = used[0].loads.channel_names if used[0].loads else []
        if not nominal:
            nominal = nominal_sensitivities(paths[0])
        prev = base or nominal
        base = {grid[r][s]: prev[grid[r][s]] / float(sol.gain[r, s])
                for r in range(len(grid)) for s in range(2)}
    for p in passes:
        p.gross_error_before_pct = before.get(p.recording)
    assert sol is not None and base is not None
    profile = profile_json(sol, base, nominal, passes, cfg, reference_csv, site, lane,
                            created_utc or datetime.now(UTC), supersedes)
    # σ(v) after correction: the passes of normal driving (outliers included) weighed again
    # with this profile, as the core will weigh traffic (zhichao.calibration.scatter)
    normal = {p.recording for p in passes if p.used or p.reason == "outlier"}
    profile["site_scatter"] = reference_scatter(
        [p for p in paths if p.name in normal], {n: refs[n].gross_weight_kg for n in normal},
        parse_profile(profile, "fitted profile"), sol.knots_kmh, cfg.speed_knot_step_kmh)
    parse_profile(profile, "fitted profile")  # the core must accept what we write
    return CalibrationResult(profile, passes)
