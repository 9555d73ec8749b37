"""Accuracy verification against reference trucks: errors, and the class they achieve.

Patterns (tables in :data:`DEFAULT_TABLES`, from ``shared/reference/wim.md`` §1.1–1.2; each
entry says whether its numbers were confirmed ``C`` or not ``U``; load your own with
:func:`load_tables` to replace the unconfirmed ones):

* **OIML R134 / JJG 907** (vehicle mass classes 0.2 … 10, axle classes A … F), for initial
  verification and in service. As in R134, *every* valid weighing must lie within the MPE:
  the achieved class is the best one whose MPE covers the largest error. For axles: the
  axle loads of 2-axle rigid reference vehicles against their static loads; for the other
  vehicles the deviation of each axle and axle-group load from its *corrected mean* (the
  mean over the passes of that vehicle, scaled by static gross / mean weighed gross — our
  reading of R134 §2.2.2, unconfirmed).
* **COST 323** (A(5) … E): per criterion (gross weight of vehicles > 3.5 t, group of axles,
  single axle, axle of a group) a class holds when π, the lower confidence bound (level
  ``confidence``) of the probability that one error lies within ±δ, reaches π₀. π is
  computed from the sample under a normal model with the mean shifted by its Student-t bound
  and the standard deviation by its χ² bound — our implementation; COST 323's own π₀ table
  (90–99 % by test conditions, environment and sample size) is unconfirmed, so π₀ is one
  configurable number.

Passes the weighing core itself flags as abnormally driven or of bad data quality are not
valid weighings (the device says so on the record); they are listed, and they count as runs
the device got wrong, with those it did not weigh, split or counted wrong axles on.

No class is given (:attr:`AccuracyResult.refusals`, "不予评定") when the verification cannot
show one:

* a reference truck has fewer than ``min_passes_per_truck`` valid passes (wim.md §2.5:
  ≥ 10 passes per truck);
* more than ``max_rejected_fraction`` of the runs are rejected (not weighed, wrong axle
  count, not one vehicle, flagged): the verification runs are normal driving, and the
  non-stop requirement (law.md §2) wants the accuracy to hold even under abnormal driving,
  so a device that rejects normal runs cannot be credited with the class of the rest;
* a recording is one the calibration profile was fitted on (its SHA-256 in the profile's
  ``data.passes``): that is in-sample, not a verification.

A supported speed range needs ``min_passes_per_speed_range`` passes.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from zhichao.calibration.errors import AccuracyConfigError, CalibrationError
from zhichao.calibration.measure import sha256_file
from zhichao.calibration.reference import ReferenceWeights, read_reference
from zhichao.devices.errors import DeviceError
from zhichao.devices.recording import read_recording
from zhichao.weighing.calibration_profile import CalibrationProfile, timeless
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.overload import ACCURACY_CLASSES
from zhichao.weighing.stream import ABNORMAL_FLAGS, weigh_recording
from zhichao.weighing.vehicle import FLAGS_ZH

#: weighed without the profile under test (not in force): not a weighing of what is verified
NOT_VERIFIED_FLAGS = ("calibration_not_in_force",)

DEFAULT_TABLES: dict[str, Any] = {
    "oiml_r134": {
        "source": "OIML R134-1:2006 / JJG 907-2006 pattern; wim.md §1.1",
        # class: [MPE initial %, MPE in service %], from the one cited table the overload
        # verdict deducts (zhichao.weighing.overload.ACCURACY_CLASSES); in service = 2 ×
        # initial is [U] except class 5 in service
        "gross": {name: [c.initial_pct, c.in_service_pct]
                  for name, c in ACCURACY_CLASSES.items()},
        "gross_status": {"initial": "C", "in_service": "U (2 × initial assumed)"},
        # axle class: [2-axle rigid single axle init, in service, other vehicles init, in s.]
        "axle": {
            "A": [0.25, 0.50, 0.50, 1.0], "B": [0.50, 1.00, 1.0, 2.0],
            "C": [0.75, 1.50, 1.5, 3.0], "D": [1.00, 2.00, 2.0, 4.0],
            "E": [2.00, 4.00, 4.0, 8.0], "F": [4.00, 8.00, 8.0, 16.0]},
        "axle_status": "U (from memory; only the 0.5–8 % range and F ↔ 10 are confirmed)",
        "pairing": {"0.2": "A", "0.5": "B", "1": "C", "2": "D", "5": "E", "10": "F"},
    },
    "cost323": {
        "source": "COST 323 v3.0 (1999) tolerance table; wim.md §1.2",
        "status": "U (δ table from memory; class names confirmed)",
        "classes": ["A(5)", "B+(7)", "B(10)", "C(15)", "D+(20)", "D(25)"],
        "delta_pct": {
            "gross": [5, 7, 10, 15, 20, 25],
            "group": [7, 10, 13, 18, 23, 28],
            "single_axle": [8, 11, 15, 20, 25, 30],
            "axle_of_group": [10, 14, 20, 25, 30, 35],
        },
        "gross_min_kg": 3500,
        "pi0": 0.95,  # U: COST 323 makes it depend on test conditions (90–99 %)
        "confidence": 0.95,
    },
}

CRITERIA_ZH = {"gross": "车货总重", "group": "轴组", "single_axle": "单轴",
               "axle_of_group": "轴组中的轴"}


def load_tables(path: str | Path) -> dict[str, Any]:
    """Class tables from a JSON file with the layout of :data:`DEFAULT_TABLES`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AccuracyConfigError(f"{p}: unreadable class tables ({exc})") from None
    validate_tables(data, str(p))
    return dict(data)


def validate_tables(t: Any, where: str = "tables") -> None:
    try:
        o, c = t["oiml_r134"], t["cost323"]
        for k, v in o["gross"].items():
            if len(v) != 2 or not all(float(x) > 0 for x in v):
                raise AccuracyConfigError(f"{where}: oiml_r134.gross[{k}] must be [init, "
                                          f"in_service] > 0")
        for k, v in o["axle"].items():
            if len(v) != 4 or not all(float(x) > 0 for x in v):
                raise AccuracyConfigError(f"{where}: oiml_r134.axle[{k}] needs 4 MPEs > 0")
        for crit in ("gross", "group", "single_axle", "axle_of_group"):
            if len(c["delta_pct"][crit]) != len(c["classes"]):
                raise AccuracyConfigError(f"{where}: cost323.delta_pct.{crit} must list one δ "
                                          f"per class")
        if not 0.5 <= float(c["pi0"]) < 1 or not 0.5 <= float(c["confidence"]) < 1:
            raise AccuracyConfigError(f"{where}: cost323 pi0 and confidence must be in [0.5, 1)")
    except (KeyError, TypeError, ValueError) as exc:
        raise AccuracyConfigError(f"{where}: class tables malformed ({exc!r})") from None


@dataclass
class AccuracyConfig:
    speed_bands_kmh: tuple[float, ...] = (0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 140.0)
    temperature_bands_c: tuple[float, ...] = (-40.0, 0.0, 10.0, 20.0, 30.0, 40.0, 80.0)
    tables: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(
        DEFAULT_TABLES)))
    invalid_flags: tuple[str, ...] = tuple(sorted(ABNORMAL_FLAGS | set(NOT_VERIFIED_FLAGS)))
    min_passes_per_truck: int = 10  # wim.md §2.5: ≥ 10 passes per truck
    max_rejected_fraction: float = 0.05  # guess: runs the device may reject of all
    min_passes_per_speed_range: int = 10  # guess: a speed range from fewer is not shown

    def __post_init__(self) -> None:
        validate_tables(self.tables)
        if self.min_passes_per_truck < 1 or self.min_passes_per_speed_range < 1 or not (
                0.0 <= self.max_rejected_fraction < 1.0):
            raise AccuracyConfigError("min_passes_per_truck >= 1, min_passes_per_speed_range "
                                      ">= 1 and 0 <= max_rejected_fraction < 1 are needed")
        for name, edges in (("speed", self.speed_bands_kmh),
                            ("temperature", self.temperature_bands_c)):
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise AccuracyConfigError(f"{name} band edges must ascend")


@dataclass
class PassResult:
    recording: str
    sha256: str
    truck: str
    speed_kmh: float | None
    temperature_c: float
    flags: list[str]
    valid: bool
    reason: str
    reference_gross_kg: float
    reference_axles_kg: list[float]
    gross_kg: float | None
    axle_loads_kg: list[float]
    axle_groups: list[list[int]]
    reason_zh: str = ""

    @property
    def gross_error_pct(self) -> float | None:
        if self.gross_kg is None:
            return None
        return (self.gross_kg / self.reference_gross_kg - 1.0) * 100

    def axle_errors_pct(self) -> list[float]:
        if len(self.axle_loads_kg) != len(self.reference_axles_kg):
            return []
        return [(a / r - 1.0) * 100 for a, r in zip(self.axle_loads_kg,
                                                    self.reference_axles_kg, strict=True)]

    def groups(self) -> list[list[int]]:
        """0-based axle groups; from the weighed spacings (the reference has none)."""
        return [[i - 1 for i in g] for g in self.axle_groups]


@dataclass
class ClassResult:
    achieved: str | None  # None: worse than every class in the table, or refused
    max_abs_error_pct: float | None
    n: int
    detail: str = ""
    refused: bool = False  # no class given: the verification cannot show one (refusals)


@dataclass
class AccuracyResult:
    profile_id: str | None
    passes: list[PassResult]
    gross_class: dict[str, ClassResult]  # "initial" / "in_service"
    axle_class: dict[str, ClassResult]
    axle_detail: dict[str, Any]
    cost323: dict[str, Any]
    bands: dict[str, list[dict[str, Any]]]
    tables: dict[str, Any]
    # per phase and gross class: the speed range the verification supports, or None
    speed_ranges: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)
    # why no class is given: [{"code", "detail", "text_zh"}]; empty when classes stand
    refusals: list[dict[str, str]] = field(default_factory=list)
    rejected_fraction: float = 0.0  # runs not valid / all runs
    in_sample_recordings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> list[PassResult]:
        return [p for p in self.passes if p.valid]

    def to_json(self) -> dict[str, Any]:
        def cr(d: dict[str, ClassResult]) -> dict[str, Any]:
            return {k: vars(v) for k, v in d.items()}

        return {
            "format": "zhichao.accuracy/1",
            "profile_id": self.profile_id,
            "passes_total": len(self.passes),
            "passes_valid": len(self.valid),
            "gross_class": cr(self.gross_class),
            "axle_class": cr(self.axle_class),
            "axle_detail": self.axle_detail,
            "cost323": self.cost323,
            "bands": self.bands,
            "speed_ranges": self.speed_ranges,
            "refusals": self.refusals,
            "rejected_fraction": self.rejected_fraction,
            "in_sample_recordings": self.in_sample_recordings,
            "passes": [{**vars(p), "gross_error_pct": p.gross_error_pct,
                        "axle_errors_pct": p.axle_errors_pct()} for p in self.passes],
        }


def _truck_key(ref: ReferenceWeights) -> str:
    return f"{len(ref.axle_loads_kg)}轴 {ref.gross_weight_kg:.0f} kg"


def weigh_passes(recordings: list[Path], refs: dict[str, ReferenceWeights],
                 profile: CalibrationProfile | None, cfg: AccuracyConfig,
                 weighing_config: WeighingConfig | None = None) -> list[PassResult]:
    out: list[PassResult] = []
    for path in recordings:
        p = Path(path)
        ref = refs.get(p.name)
        if ref is None:
            raise CalibrationError(f"{p}: no reference weights for this recording")
        try:
            rec = read_recording(p)
            # the profile under test as fitted, whatever its dates: verification runs may
            # be recorded before it was made (the same site visit)
            vehicles = weigh_recording(rec, weighing_config,
                                       None if profile is None else timeless(profile))
        except (DeviceError, WeighingError) as exc:
            raise CalibrationError(f"{p}: {exc}") from None
        t_c = rec.meta.pavement_temperature_c
        digest = sha256_file(p)

        def result(speed: float | None, flags: list[str], reason: str, gross: float | None,
                   axles: list[float], groups: list[list[int]], ref: ReferenceWeights = ref,
                   reason_zh: str = "", name: str = p.name, digest: str = digest,
                   t_c: float = t_c) -> PassResult:
            return PassResult(name, digest, _truck_key(ref), speed, t_c, flags, not reason,
                              reason, ref.gross_weight_kg, list(ref.axle_loads_kg), gross,
                              axles, groups, reason_zh)

        if len(vehicles) != 1:
            out.append(result(None, [], f"{len(vehicles)} vehicles in the recording", None,
                              [], [], reason_zh=f"录制中检测到 {len(vehicles)} 辆车"))
            continue
        v = vehicles[0]
        bad = sorted(set(v.flags) & set(cfg.invalid_flags))
        reason = reason_zh = ""
        if bad:
            reason = "flagged: " + ",".join(bad)
            reason_zh = "带有标记：" + "、".join(FLAGS_ZH.get(f, f) for f in bad)
        elif v.gross_weight_kg is None:
            reason, reason_zh = "not weighed", "未能称重"
        elif v.axle_count != len(ref.axle_loads_kg):
            reason = f"axle count {v.axle_count} ≠ reference {len(ref.axle_loads_kg)}"
            reason_zh = f"检测轴数 {v.axle_count} 与参考轴数 {len(ref.axle_loads_kg)} 不符"
        out.append(result(v.speed_kmh, list(v.flags), reason,
                          None if v.gross_weight_kg is None else float(v.gross_weight_kg),
                          [float(a) for a in v.axle_loads_kg],
                          [list(g) for g in v.axle_groups], reason_zh=reason_zh))
    return out


def _best_class(max_abs: float, mpes: dict[str, float]) -> str | None:
    for name, mpe in sorted(mpes.items(), key=lambda kv: kv[1]):
        if max_abs <= mpe + 1e-9:
            return name
    return None


def _order(table: dict[str, Any]) -> list[str]:
    return [k for k, _ in sorted(table.items(), key=lambda kv: float(kv[1][0]))]


def gross_classes(errors_pct: list[float], tables: dict[str, Any]) -> dict[str, ClassResult]:
    g = tables["oiml_r134"]["gross"]
    out: dict[str, ClassResult] = {}
    for i, phase in enumerate(("initial", "in_service")):
        if not errors_pct:
            out[phase] = ClassResult(None, None, 0, "no valid passes")
            continue
        m = max(abs(e) for e in errors_pct)
        out[phase] = ClassResult(_best_class(m, {k: float(v[i]) for k, v in g.items()}), m,
                                 len(errors_pct))
    return out


def axle_deviations(passes: list[PassResult]) -> dict[str, list[float]]:
    """R134 pattern: 2-axle rigid axles vs static; others vs the corrected mean [%]."""
    rigid: list[float] = []
    other: list[float] = []
    by_truck: dict[str, list[PassResult]] = defaultdict(list)
    for p in passes:
        if p.axle_errors_pct():
            by_truck[p.truck].append(p)
    for plist in by_truck.values():
        if len(plist[0].reference_axles_kg) == 2:
            rigid.extend(e for p in plist for e in p.axle_errors_pct())
            continue
        loads = np.array([p.axle_loads_kg for p in plist])
        gross = np.array([p.gross_kg for p in plist], dtype=float)
        scale = plist[0].reference_gross_kg / float(gross.mean())
        mean_axle = loads.mean(axis=0) * scale
        other.extend(((loads / mean_axle[None, :] - 1.0) * 100).ravel().tolist())
        groups = [g for g in plist[0].groups() if len(g) > 1]
        for g in groups:
            if all(p.groups() == plist[0].groups() for p in plist):
                gl = loads[:, g].sum(axis=1)
                other.extend(((gl / (gl.mean() * scale) - 1.0) * 100).tolist())
    return {"rigid_2_axle": rigid, "other": other}


def axle_classes(passes: list[PassResult], tables: dict[str, Any]
                 ) -> tuple[dict[str, ClassResult], dict[str, Any]]:
    dev = axle_deviations(passes)
    a = tables["oiml_r134"]["axle"]
    order = _order(a)
    out: dict[str, ClassResult] = {}
    for i, phase in enumerate(("initial", "in_service")):
        m_rigid = max((abs(e) for e in dev["rigid_2_axle"]), default=None)
        m_other = max((abs(e) for e in dev["other"]), default=None)
        if m_rigid is None and m_other is None:
            out[phase] = ClassResult(None, None, 0, "no valid passes")
            continue
        achieved: str | None = None
        for name in order:
            ok_r = m_rigid is None or m_rigid <= float(a[name][i]) + 1e-9
            ok_o = m_other is None or m_other <= float(a[name][2 + i]) + 1e-9
            if ok_r and ok_o:
                achieved = name
                break
        worst = max(x for x in (m_rigid, m_other) if x is not None)
        out[phase] = ClassResult(achieved, worst, len(dev["rigid_2_axle"]) + len(dev["other"]),
                                 f"两轴刚性参考车单轴最大 {_fmt(m_rigid)} %；其他车辆轴及"
                                 f"轴组相对修正平均值最大 {_fmt(m_other)} %")
    detail = {k: {"n": len(v), "max_abs_pct": max((abs(e) for e in v), default=None)}
              for k, v in dev.items()}
    return out, detail


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def cost323_pi(errors_pct: list[float], delta_pct: float, confidence: float) -> float | None:
    """Lower confidence bound of P(|e| ≤ δ) under a normal model (see the module doc)."""
    n = len(errors_pct)
    if n < 3:
        return None
    e = np.asarray(errors_pct, dtype=float)
    m, s = float(e.mean()), float(e.std(ddof=1))
    s = max(s, 1e-9)
    m_up = abs(m) + float(stats.t.ppf(confidence, n - 1)) * s / math.sqrt(n)
    s_up = s * math.sqrt((n - 1) / float(stats.chi2.ppf(1 - confidence, n - 1)))
    return float(stats.norm.cdf((delta_pct - m_up) / s_up)
                 - stats.norm.cdf((-delta_pct - m_up) / s_up))


def cost323_classes(passes: list[PassResult], tables: dict[str, Any]) -> dict[str, Any]:
    c = tables["cost323"]
    samples: dict[str, list[float]] = {"gross": [], "group": [], "single_axle": [],
                                       "axle_of_group": []}
    for p in passes:
        ge = p.gross_error_pct
        if ge is not None and p.reference_gross_kg > float(c["gross_min_kg"]):
            samples["gross"].append(ge)
        errs = p.axle_errors_pct()
        if not errs:
            continue
        for g in p.groups():
            if len(g) == 1:
                samples["single_axle"].append(errs[g[0]])
            else:
                samples["axle_of_group"].extend(errs[i] for i in g)
                meas = sum(p.axle_loads_kg[i] for i in g)
                ref = sum(p.reference_axles_kg[i] for i in g)
                samples["group"].append((meas / ref - 1.0) * 100)
    out: dict[str, Any] = {"pi0": float(c["pi0"]), "confidence": float(c["confidence"]),
                           "status": c.get("status", ""), "criteria": {}}
    worst_idx = -1
    for crit, errs in samples.items():
        deltas = [float(d) for d in c["delta_pct"][crit]]
        pis = [cost323_pi(errs, d, float(c["confidence"])) for d in deltas]
        idx = next((i for i, pi in enumerate(pis) if pi is not None and pi >= float(c["pi0"])),
                   None)
        arr = np.asarray(errs) if errs else np.zeros(0)
        out["criteria"][crit] = {
            "n": len(errs),
            "mean_pct": float(arr.mean()) if len(arr) else None,
            "sd_pct": float(arr.std(ddof=1)) if len(arr) > 1 else None,
            "pi": pis, "delta_pct": deltas,
            "achieved": None if idx is None else c["classes"][idx],
        }
        if errs:
            worst_idx = max(worst_idx, len(deltas) if idx is None else idx)
    out["overall"] = (None if worst_idx < 0 or worst_idx >= len(c["classes"])
                      else c["classes"][worst_idx])
    return out


def _band_label(lo: float, hi: float, unit: str) -> str:
    return f"{lo:g}–{hi:g} {unit}"


def band_tables(passes: list[PassResult], cfg: AccuracyConfig) -> dict[str, list[dict[str, Any]]]:
    g = cfg.tables["oiml_r134"]["gross"]
    out: dict[str, list[dict[str, Any]]] = {}
    for key, edges, unit, get in (
            ("speed", cfg.speed_bands_kmh, "km/h", lambda p: abs(p.speed_kmh or 0.0)),
            ("temperature", cfg.temperature_bands_c, "°C", lambda p: p.temperature_c)):
        rows = []
        for lo, hi in zip(edges, edges[1:], strict=False):
            sel = [p for p in passes if lo <= get(p) < hi and p.gross_error_pct is not None]
            if not sel:
                continue
            e = np.array([p.gross_error_pct for p in sel], dtype=float)
            ax = [x for p in sel for x in p.axle_errors_pct()]
            m = float(np.max(np.abs(e)))
            rows.append({
                "band": _band_label(lo, hi, unit), "n": len(sel),
                "gross_mean_pct": float(e.mean()),
                "gross_sd_pct": float(e.std(ddof=1)) if len(e) > 1 else None,
                "gross_max_abs_pct": m,
                "axle_max_abs_pct": max((abs(x) for x in ax), default=None),
                "class_initial": _best_class(m, {k: float(v[0]) for k, v in g.items()}),
                "class_in_service": _best_class(m, {k: float(v[1]) for k, v in g.items()}),
            })
        out[key] = rows
    return out


def speed_ranges(passes: list[PassResult], tables: dict[str, Any], min_passes: int = 1
                 ) -> dict[str, dict[str, dict[str, Any] | None]]:
    """Per phase and gross class, the widest speed range the valid passes support.

    The passes are ordered by speed; the range is the longest run of consecutive passes
    that are *all* within the class's MPE (R134: every weighing in the operating range),
    given as the speeds of its first and last pass, with the number of passes in it. The
    passes on either side of the run, if any, are the ones that end it. A finite test: the
    range is what these passes show, not a guarantee (dynamic loads make rare passes exceed
    any MPE, more often at higher speeds). A run of fewer than ``min_passes`` passes shows no
    range (None).
    """
    g = tables["oiml_r134"]["gross"]
    pts = sorted((abs(p.speed_kmh), e, p.recording) for p in passes
                 if p.speed_kmh is not None and (e := p.gross_error_pct) is not None)
    out: dict[str, dict[str, dict[str, Any] | None]] = {}
    for i, phase in enumerate(("initial", "in_service")):
        out[phase] = {}
        for name in _order(g):
            mpe = float(g[name][i])
            best: tuple[int, int] | None = None
            start = 0
            for k in range(len(pts) + 1):
                if k == len(pts) or abs(pts[k][1]) > mpe + 1e-9:
                    if k > start and (best is None or k - start > best[1] - best[0]):
                        best = (start, k)
                    start = k + 1
            if best is None or best[1] - best[0] < min_passes:
                out[phase][name] = None
                continue
            lo, hi = best
            out[phase][name] = {
                "speed_kmh": [round(pts[lo][0], 1), round(pts[hi - 1][0], 1)], "n": hi - lo,
                "of": len(pts), "mpe_pct": mpe,
                "ended_below_by": pts[lo - 1][2] if lo > 0 else None,
                "ended_above_by": pts[hi][2] if hi < len(pts) else None}
    return out


def verify_accuracy(recordings: list[Path], reference_csv: Path,
                    profile: CalibrationProfile | None = None,
                    config: AccuracyConfig | None = None,
                    weighing_config: WeighingConfig | None = None) -> AccuracyResult:
    cfg = config or AccuracyConfig()
    refs = read_reference(reference_csv)
    passes = weigh_passes([Path(p) for p in recordings], refs, profile, cfg, weighing_config)
    return assess(passes, profile, cfg)


def fit_digests(profile: CalibrationProfile | None) -> set[str]:
    """SHA-256 of every recording the profile was fitted on (its ``data.passes``)."""
    if profile is None:
        return set()
    data = profile.raw.get("data")
    rows = data.get("passes", []) if isinstance(data, dict) else []
    return {str(r["sha256"]) for r in rows if isinstance(r, dict) and r.get("sha256")}


def verification_refusals(passes: list[PassResult], profile: CalibrationProfile | None,
                          cfg: AccuracyConfig) -> list[dict[str, str]]:
    """Why these passes cannot give a class (empty: they can); see the module doc."""
    out: list[dict[str, str]] = []
    fitted = fit_digests(profile)
    overlap = sorted(p.recording for p in passes if p.sha256 in fitted)
    if overlap:
        out.append({"code": "in_sample", "detail": ", ".join(overlap[:10]) + (
            " …" if len(overlap) > 10 else ""), "text_zh":
            f"{len(overlap)} 个录制数据也用于拟合该校准参数（样本内），不是验证"})
    valid_by_truck: dict[str, int] = defaultdict(int)
    for p in passes:
        valid_by_truck[p.truck] += int(p.valid)
    short = {t: n for t, n in sorted(valid_by_truck.items()) if n < cfg.min_passes_per_truck}
    if short:
        out.append({"code": "too_few_passes", "detail": "; ".join(
            f"{t}: {n}" for t, n in short.items()), "text_zh":
            f"有参考车的有效过车少于 {cfg.min_passes_per_truck} 次（"
            + "；".join(f"{t}：{n} 次" for t, n in short.items()) + "）"})
    rejected = rejected_fraction(passes)
    if rejected > cfg.max_rejected_fraction:
        n_bad = sum(1 for p in passes if not p.valid)
        out.append({"code": "too_many_rejected", "detail":
                    f"{n_bad}/{len(passes)} runs rejected > {cfg.max_rejected_fraction:.0%}",
                    "text_zh": f"无效过车 {n_bad}/{len(passes)} 次（{rejected:.1%}），超过允许的 "
                               f"{cfg.max_rejected_fraction:.0%}（未称重、轴数错误、车辆数"
                               f"错误或带标记的过车均计为设备失败）"})
    return out


def rejected_fraction(passes: list[PassResult]) -> float:
    """The runs that are not valid weighings, of all runs (0 without runs)."""
    return sum(1 for p in passes if not p.valid) / len(passes) if passes else 0.0


def assess(passes: list[PassResult], profile: CalibrationProfile | None,
           cfg: AccuracyConfig) -> AccuracyResult:
    """The classes the weighed passes achieve, or none where they cannot show one."""
    valid = [p for p in passes if p.valid]
    gross = [e for p in valid if (e := p.gross_error_pct) is not None]
    axle, detail = axle_classes(valid, cfg.tables)
    result = AccuracyResult(
        profile_id=profile.profile_id if profile else None, passes=passes,
        gross_class=gross_classes(gross, cfg.tables), axle_class=axle, axle_detail=detail,
        cost323=cost323_classes(valid, cfg.tables), bands=band_tables(valid, cfg),
        tables=cfg.tables,
        speed_ranges=speed_ranges(valid, cfg.tables, cfg.min_passes_per_speed_range),
        refusals=verification_refusals(passes, profile, cfg),
        rejected_fraction=rejected_fraction(passes),
        in_sample_recordings=sorted(p.recording for p in passes
                                    if p.sha256 in fit_digests(profile)))
    if result.refusals:
        why = "不予评定：" + "；".join(r["text_zh"] for r in result.refusals)
        for classes in (result.gross_class, result.axle_class):
            for c in classes.values():
                c.achieved, c.refused, c.detail = None, True, why
        for crit in result.cost323["criteria"].values():
            crit["achieved"] = None
        result.cost323["overall"] = None
        result.cost323["refused"] = why
        result.speed_ranges = {phase: dict.fromkeys(r, None)
                               for phase, r in result.speed_ranges.items()}
    return result
