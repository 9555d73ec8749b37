"""Drift monitoring in service: control charts on statistics ordinary traffic keeps stable.

Only normally driven trucks count (no abnormal-driving or data-quality flag). Statistics:

* ``steer`` — the steering-axle load of 5- and 6-axle tractor-semitrailers, adjusted for the
  vehicle's gross weight (residual of ``steer = a_c + b_c·gross``, fitted per axle count and
  class c on the baseline): a tractor's front axle carries its cab and engine plus a small
  share of the payload, so this residual is steady. It is the one statistic that sees a drift common
  to every channel: if all channels read ``c`` times too much, the residual grows by
  ``(c − 1)·a_c``, and ``c`` is estimated as ``mean((steer − b_c·gross) / a_c)``.
* ``balance`` — the left share of all wheel loads of a truck. Trucks are balanced left/right
  on average; a drift of the left half-strips against the right ones moves it by about
  ``(c_L/c_R − 1)/4``.
* ``row<r>`` — the gross weight seen by row r over the vehicle's gross weight, minus 1 (rows
  see the same vehicle, so on average they agree). A drift ``c`` of row r moves it by
  ``(c − 1)(1 − 1/N)``.

Each statistic is standardised with the robust mean and standard deviation of its first
``baseline_n`` observations after a calibration or verification (the lane is known good
then), winsorised at ±``clip_sigma`` and fed to a two-sided CUSUM (reference value ``k``,
decision interval ``h``, both in standard deviations). Crossing ``h`` raises a
``calibration_drift`` alarm with the estimated correction; from then on every record of the
lane is marked for review until :meth:`DriftMonitor.reset` (a new calibration or
verification). The defaults are guesses, configurable: ``k = 0.35, h = 18`` for balance and
rows (a 3 % drift moves them by ≈ 0.7 σ), ``k = 0.175, h = 30`` for steer (≈ 0.35 σ), each
chosen for an in-control run length of the order of 10⁶ observations per chart (Siegmund's
approximation); ``benchmarks/calibration_drift.py`` measures what they give.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from zhichao.calibration.errors import DriftStateError
from zhichao.common import parse_utc
from zhichao.weighing.calibration_profile import NOT_IN_FORCE_FLAG
from zhichao.weighing.stream import ABNORMAL_FLAGS
from zhichao.weighing.vehicle import WeighedVehicle

DRIFT_FLAG = "calibration_drift"
DRIFT_FLAG_ZH = "称重设备疑似漂移，需复核（待重新校准或检定）"
STATISTIC_ZH = {"steer": "牵引车转向轴载荷（按总重修正）", "balance": "左右轮载荷比例",
                "row": "各排传感器总重一致性"}


@dataclass
class DriftConfig:
    baseline_n: int = 500  # observations per statistic that define "in control"
    k_sigma: float = 0.35  # CUSUM reference value, balance and rows (guess)
    h_sigma: float = 18.0  # CUSUM decision interval, balance and rows (guess)
    k_sigma_steer: float = 0.175  # the steer statistic moves less for the same drift (guess)
    h_sigma_steer: float = 30.0
    clip_sigma: float = 4.0  # winsorise single observations (guess)
    window_n: int = 200  # recent observations behind the estimated correction
    min_gross_kg: float = 3500.0  # trucks only
    use_statistics: tuple[str, ...] = ("steer", "balance", "rows")

    def __post_init__(self) -> None:
        if self.baseline_n < 30 or self.window_n < 10:
            raise DriftStateError("baseline_n >= 30 and window_n >= 10 are needed")
        if min(self.k_sigma, self.k_sigma_steer) < 0 or min(
                self.h_sigma, self.h_sigma_steer) <= 0 or self.clip_sigma <= 0:
            raise DriftStateError("k_sigma >= 0, h_sigma > 0, clip_sigma > 0 are needed")

    def k_h(self, statistic: str) -> tuple[float, float]:
        if statistic == "steer":
            return self.k_sigma_steer, self.h_sigma_steer
        return self.k_sigma, self.h_sigma


@dataclass
class _Chart:
    """One statistic: baseline, CUSUM sums and a window of recent raw values."""

    baseline: list[float] = field(default_factory=list)
    baseline_gross: list[float] = field(default_factory=list)
    baseline_class: list[str] = field(default_factory=list)
    mean: float | None = None  # of the (winsorised) statistic on the baseline
    sd: float | None = None
    center: float = 0.0  # median and MAD scale used to winsorise
    scale: float = 1.0
    u_mean: float = 0.0  # mean and sd of the winsorised, scaled baseline
    u_sd: float = 1.0
    # steer only: steer = a_c + b_c·gross per vehicle class c, fitted on the baseline
    fits: dict[str, list[float]] = field(default_factory=dict)  # class → [b_c, a_c]
    s_hi: float = 0.0
    s_lo: float = 0.0
    run_hi: int = 0  # observations since s_hi was last 0 (the change-point estimate)
    run_lo: int = 0
    # time (RFC 3339) of the last observation at which s_hi / s_lo stood at 0: the drift
    # began after it (the change-point estimate); the baseline's last one at first
    zero_hi_utc: str | None = None
    zero_lo_utc: str | None = None
    n: int = 0
    recent: list[float] = field(default_factory=list)
    recent_gross: list[float] = field(default_factory=list)
    recent_class: list[str] = field(default_factory=list)


@dataclass
class DriftAlarm:
    statistic: str
    time_utc: str
    observation: int  # index of the observation (of that statistic) that raised it
    trucks_seen: int  # trucks observed since the last reset
    direction: str  # "high" / "low"
    estimated_factor: float  # reads this many times the baseline (1.03 = 3 % high)
    estimated_correction: float  # multiply the affected loads by this to correct
    message_zh: str = ""
    # the estimated change point: the last observation at which the CUSUM stood at zero
    # (the drift began after it); "" in states written before it was kept
    since_utc: str = ""

    @property
    def start_utc(self) -> str:
        """From when the lane's data are suspect: the change point, else the alarm."""
        return self.since_utc or self.time_utc


@dataclass
class DriftDecision:
    needs_review: bool
    new_alarms: list[DriftAlarm]


class DriftMonitor:
    """Control charts for one lane; see the module doc."""

    def __init__(self, lane_id: str, config: DriftConfig | None = None,
                 profile_id: str | None = None) -> None:
        self.lane_id = lane_id
        self.cfg = config or DriftConfig()
        self.profile_id = profile_id
        self.charts: dict[str, _Chart] = {}
        self.alarms: list[DriftAlarm] = []
        self.trucks_seen = 0
        self.history: list[dict[str, Any]] = []  # resets (who closed which alarms, why)

    @property
    def alarm_open(self) -> bool:
        return bool(self.alarms)

    @property
    def alarm_since_utc(self) -> str | None:
        """From when (RFC 3339) the open alarms make the lane's data suspect: the earliest
        estimated change point (the last observation at which its CUSUM stood at zero), not
        the record that raised the alarm — the records between were weighed drifted too."""
        if not self.alarms:
            return None
        return min(self.alarms, key=lambda a: parse_utc(a.start_utc)).start_utc

    @property
    def alarm_raised_utc(self) -> str | None:
        """Time (RFC 3339) of the record that raised the latest open alarm: only a
        calibration or verification after it closes them."""
        if not self.alarms:
            return None
        return max(self.alarms, key=lambda a: parse_utc(a.time_utc)).time_utc

    def closed_intervals_utc(self) -> list[tuple[str, str]]:
        """``[start, closed)`` (RFC 3339) of every alarm closed by a reset: data taken inside
        stay unusable after the alarm is closed."""
        out: list[tuple[str, str]] = []
        for h in self.history:
            closed = [DriftAlarm(**a) for a in h.get("closed_alarms", [])]
            if closed:
                start = min(closed, key=lambda a: parse_utc(a.start_utc)).start_utc
                out.append((start, str(h["time_utc"])))
        return out

    # ------------------------------------------------------------------ observations
    def _values(self, v: WeighedVehicle) -> dict[str, tuple[float, float, str]]:
        """Statistic → (value, gross) for one record; empty when it does not qualify."""
        if v.gross_weight_kg is None or v.gross_weight_kg < self.cfg.min_gross_kg:
            return {}
        # uncorrected passages (the profile not in force) say nothing of the corrected
        # scale; an extrapolated speed correction still does (excluding it could leave the
        # charts with no passage)
        if set(v.flags) & (ABNORMAL_FLAGS | {NOT_IN_FORCE_FLAG}) or v.axle_count < 2:
            return {}
        gross = float(v.gross_weight_kg)
        out: dict[str, tuple[float, float, str]] = {}
        cls = f"{v.axle_count}:{v.vehicle_class or '?'}"
        use = self.cfg.use_statistics
        # 5- and 6-axle vehicles are tractor-semitrailers (also when the core cannot decide
        # the 6-axle class's drive-axle type)
        if "steer" in use and v.axle_count in (5, 6) and v.axle_loads_kg:
            out["steer"] = (float(v.axle_loads_kg[0]), gross, cls)
        if "balance" in use:
            left = sum(w[0] for w in v.wheel_loads_kg)
            right = sum(w[1] for w in v.wheel_loads_kg)
            if math.isfinite(left) and math.isfinite(right) and left + right > 0:
                out["balance"] = (left / (left + right), gross, cls)
        if "rows" in use and len(v.row_gross_weights_kg) >= 2:
            for r, g in zip(v.rows_used, v.row_gross_weights_kg, strict=False):
                out[f"row{r}"] = (float(g) / gross - 1.0, gross, cls)
        return out

    def observe(self, v: WeighedVehicle) -> DriftDecision:
        """Feed one weighed record (in time order)."""
        values = self._values(v)
        if values:
            self.trucks_seen += 1
        new: list[DriftAlarm] = []
        for name, (x, gross, cls) in values.items():
            ch = self.charts.setdefault(name, _Chart())
            if ch.mean is None:
                ch.baseline.append(x)
                ch.baseline_gross.append(gross)
                ch.baseline_class.append(cls)
                if len(ch.baseline) >= self.cfg.baseline_n:
                    self._freeze(name, ch)
                    ch.zero_hi_utc = ch.zero_lo_utc = v.time_utc
                continue
            alarm = self._update(name, ch, x, gross, cls, v.time_utc)
            if alarm is not None:
                new.append(alarm)
        self.alarms.extend(new)
        return DriftDecision(self.alarm_open, new)

    def mark(self, v: WeighedVehicle) -> WeighedVehicle:
        """The record as the lane must pass it on: marked for review while an alarm is open."""
        if not self.alarm_open or DRIFT_FLAG in v.flags:
            return v
        out = copy.copy(v)
        out.flags = [*v.flags, DRIFT_FLAG]
        out.notes = [*v.notes, DRIFT_FLAG_ZH]
        return out

    def process(self, v: WeighedVehicle) -> tuple[WeighedVehicle, DriftDecision]:
        """Observe a record, then mark it (the record that raises an alarm is marked too)."""
        d = self.observe(v)
        return self.mark(v), d

    def _freeze(self, name: str, ch: _Chart) -> None:
        x = np.asarray(ch.baseline)
        if name == "steer":
            g = np.asarray(ch.baseline_gross)
            c = np.asarray(ch.baseline_class)
            for cls in sorted(set(ch.baseline_class)):
                sel = c == cls
                if int(sel.sum()) >= 10:
                    b, a = np.polyfit(g[sel], x[sel], 1)
                    ch.fits[cls] = [float(b), float(a)]
            x = np.array([_steer_residual(ch, xi, gi, ci)
                          for xi, gi, ci in zip(x, g, c, strict=True)])
            ok = np.isfinite(x)
            x = x[ok]
        # robust centre and scale, then the mean and standard deviation of the winsorised
        # values: the CUSUM needs the true mean of what it sums, not the median
        med = float(np.median(x))
        scale = max(1.4826 * float(np.median(np.abs(x - med))), 1e-9)
        u = np.clip((x - med) / scale, -self.cfg.clip_sigma, self.cfg.clip_sigma)
        ch.center, ch.scale = med, scale
        ch.mean = med + scale * float(u.mean())
        ch.sd = max(scale * float(u.std(ddof=1)), 1e-9)
        ch.u_mean, ch.u_sd = float(u.mean()), max(float(u.std(ddof=1)), 1e-9)

    def _update(self, name: str, ch: _Chart, x: float, gross: float, cls: str, time_utc: str
                ) -> DriftAlarm | None:
        assert ch.mean is not None and ch.sd is not None
        y = _steer_residual(ch, x, gross, cls) if name == "steer" else x
        if not math.isfinite(y):
            return None  # a tractor class without a baseline fit
        c = self.cfg.clip_sigma
        k, h = self.cfg.k_h(name)
        u = max(-c, min(c, (y - ch.center) / ch.scale))
        z = (u - ch.u_mean) / ch.u_sd
        ch.s_hi = max(0.0, ch.s_hi + z - k)
        ch.s_lo = max(0.0, ch.s_lo - z - k)
        ch.run_hi = ch.run_hi + 1 if ch.s_hi > 0 else 0
        ch.run_lo = ch.run_lo + 1 if ch.s_lo > 0 else 0
        if ch.s_hi == 0:
            ch.zero_hi_utc = time_utc
        if ch.s_lo == 0:
            ch.zero_lo_utc = time_utc
        ch.n += 1
        ch.recent.append(x)
        ch.recent_gross.append(gross)
        ch.recent_class.append(cls)
        if len(ch.recent) > self.cfg.window_n:
            del ch.recent[0], ch.recent_gross[0], ch.recent_class[0]
        if any(a.statistic == name for a in self.alarms):
            return None
        if ch.s_hi <= h and ch.s_lo <= h:
            return None
        direction = "high" if ch.s_hi > h else "low"
        factor = self.estimated_factor(name, ch.run_hi if direction == "high" else ch.run_lo)
        since = (ch.zero_hi_utc if direction == "high" else ch.zero_lo_utc) or time_utc
        return DriftAlarm(
            statistic=name, time_utc=time_utc, observation=ch.n, trucks_seen=self.trucks_seen,
            direction=direction, estimated_factor=factor, estimated_correction=1.0 / factor,
            message_zh=(f"车道 {self.lane_id}：{_statistic_zh(name)}偏离基线"
                        f"（{'偏大' if direction == 'high' else '偏小'}），估计读数为基线的 "
                        f"{factor * 100:.1f} %，建议修正系数 {1.0 / factor:.4f}；"
                        f"自 {since} 起的记录不得作为证据、需人工复核，直至重新校准或检定。"),
            since_utc=since)

    def estimated_factor(self, name: str, last_n: int | None = None) -> float:
        """How many times its baseline the statistic's channels now read: from the recent
        window, or its last ``last_n`` observations (at an alarm: those since the CUSUM
        last stood at zero, the usual change-point estimate)."""
        ch = self.charts[name]
        if ch.mean is None or not ch.recent:
            return 1.0
        n = len(ch.recent) if not last_n else max(1, min(last_n, len(ch.recent)))
        x = np.asarray(ch.recent[-n:])
        gross = ch.recent_gross[-n:]
        classes = ch.recent_class[-n:]
        if name == "steer":
            # steer' = c·(a + b·gross/c) = c·a + b·gross'  →  c = mean(steer' − b·gross') / a
            ratios = [(xi - ch.fits[ci][0] * gi) / ch.fits[ci][1]
                      for xi, gi, ci in zip(x, gross, classes, strict=True)
                      if ci in ch.fits and ch.fits[ci][1] > 0]
            return float(np.mean(ratios)) if ratios else 1.0
        if name == "balance":
            # share s' ≈ s + s(1 − s)(c_L/c_R − 1)
            s0 = ch.mean
            return 1.0 + (float(np.mean(x)) - s0) / (s0 * (1.0 - s0))
        n_rows = sum(1 for k in self.charts if k.startswith("row"))
        return 1.0 + (float(np.mean(x)) - ch.mean) / max(1.0 - 1.0 / max(n_rows, 2), 1e-9)

    # ------------------------------------------------------------------ reset / state
    def reset(self, reason: str, at_utc: str, profile_id: str | None = None, *,
              profile_created_utc: str | None = None) -> None:
        """A new calibration or verification: close alarms, start a new baseline.

        Open alarms are closed only by what was made after the latest of them was raised
        (:attr:`alarm_raised_utc`): a calibration profile (``profile_id``) created after it
        (``profile_created_utc``), or a verification taking effect (``at_utc``) after it.
        Removing the profile, putting an older one back or an undated one raise
        :class:`DriftStateError` and leave the alarms open. A closed alarm stays in
        :attr:`history`; :meth:`closed_intervals_utc` gives the times it covers.
        """
        if reason not in ("calibration", "verification"):
            raise DriftStateError("reset reason must be 'calibration' or 'verification'")
        raised = self.alarm_raised_utc
        if raised is not None:
            after = at_utc if reason == "verification" else profile_created_utc
            if reason == "calibration" and profile_id is None:
                raise DriftStateError("a drift alarm is open: removing the calibration "
                                      "profile does not close it")
            if after is None or parse_utc(after) <= parse_utc(raised):
                raise DriftStateError(
                    f"a drift alarm raised at {raised} is open: only a {reason} made after it "
                    f"closes it (got {'no date' if after is None else after})")
        self.history.append({"reason": reason, "time_utc": at_utc, "profile_id": profile_id,
                             "closed_alarms": [asdict(a) for a in self.alarms]})
        self.alarms = []
        self.charts = {}
        self.trucks_seen = 0
        if profile_id is not None:
            self.profile_id = profile_id

    def to_state(self) -> dict[str, Any]:
        return {"format": "zhichao.drift/1", "lane_id": self.lane_id,
                "profile_id": self.profile_id, "config": asdict(self.cfg),
                "charts": {k: _chart_state(c) for k, c in self.charts.items()},
                "alarms": [asdict(a) for a in self.alarms], "trucks_seen": self.trucks_seen,
                "history": self.history}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DriftMonitor:
        if not isinstance(state, dict) or state.get("format") != "zhichao.drift/1":
            raise DriftStateError("drift state: format must be 'zhichao.drift/1'")
        try:
            cfg_raw = dict(state["config"])
            cfg_raw["use_statistics"] = tuple(cfg_raw.get("use_statistics", ()))
            m = cls(str(state["lane_id"]), DriftConfig(**cfg_raw), state.get("profile_id"))
            m.charts = {k: _Chart(**c) for k, c in state["charts"].items()}
            m.alarms = [DriftAlarm(**a) for a in state["alarms"]]
            m.trucks_seen = int(state["trucks_seen"])
            m.history = list(state.get("history", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftStateError(f"drift state malformed: {exc!r}") from None
        return m


def _chart_state(c: _Chart) -> dict[str, Any]:
    """A chart as JSON-able data: what ``dataclasses.asdict`` gives, without its recursive
    deep copy (the state is committed with every truck; a 500-observation baseline made
    ``asdict`` cost ≈ 13 ms). Lists and the class fits are copied, so the state does not
    change when the monitor goes on."""
    out: dict[str, Any] = {}
    for f in fields(c):
        value = getattr(c, f.name)
        if isinstance(value, list):
            value = list(value)
        elif isinstance(value, dict):
            value = {k: list(v) for k, v in value.items()}
        out[f.name] = value
    return out


def _steer_residual(ch: _Chart, steer_kg: float, gross_kg: float, cls: str) -> float:
    fit = ch.fits.get(cls)
    if fit is None:
        return math.nan
    return steer_kg - (fit[1] + fit[0] * gross_kg)


def _statistic_zh(name: str) -> str:
    if name.startswith("row"):
        return f"第 {name[3:]} 排传感器总重一致性"
    return STATISTIC_ZH.get(name, name)
