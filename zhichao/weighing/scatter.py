"""The site's gross-weight scatter σ(v): pooled from its history, or the physics prior.

σ(v) is the relative standard deviation of a passage's gross weight (mean over its rows)
about the static gross, by speed band. The overload check deducts ``k · σ(v) · gross``
(:mod:`zhichao.weighing.overload`). Three sources, each a :class:`ScatterBand` list:

* **reference-truck runs** after calibration (``zhichao calibrate`` writes them into the
  profile under ``site_scatter``): the passes' gross errors against their static weights —
  the whole error, calibration bias included;
* **in-service passages** (``zhichao scatter`` writes a ``zhichao.scatter/1`` file): the
  rows of one passage weigh the same vehicle at different phases of its bounce, so
  ``c² · s²_rows / N`` (s the rows' relative spread, N rows, c the spatial-correlation
  factor, TRL RR307 ≈ 1.25) estimates the variance of their mean;
* with neither: :func:`prior_scatter`, from documented physics.

σ is the **dynamic** scatter only. The error common to all rows (sensitivity, temperature,
the calibration's bias), which row spread cannot see, is what the device's accuracy class
bounds: the verified in-service MPE covers it in normal driving, and the tolerance is the
*larger* of the class's MPE and ``k · σ(v)`` (:func:`zhichao.weighing.overload.tolerance_for`),
never their sum — the same error is not counted twice (the verdict issue, item 1). A device
whose common error leaves its class is the drift monitor's and the certificate gate's business
(``docs/calibration.md``), not the deduction's.

Every pooled value is an **upper confidence bound** (one-sided, ``confidence``, χ² on the
pooled degrees of freedom): a band pooled from few passages gets a larger σ than its point
estimate. Bands with fewer than ``min_samples`` passages are left out, and a speed that no
band covers takes the prior — never a smaller value than the evidence supports. Where two
sources cover a speed, the larger σ is used, except that a reference-run band and an
in-service band that agree (:func:`combined_bound`) are one estimate on their pooled degrees
of freedom.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhichao.common import format_utc, utc_now, write_atomic
from zhichao.weighing.config import SCATTER_KINDS, WeighingConfig
from zhichao.weighing.errors import CalibrationProfileError

if TYPE_CHECKING:
    from zhichao.weighing.calibration_profile import CalibrationProfile
    from zhichao.weighing.vehicle import WeighedVehicle

SCATTER_FORMAT = "zhichao.scatter/1"

# Dynamic load model after Gajda et al. 2015 (wim-sim; shared/reference/wim.md §2.4):
# body-bounce amplitude A₁(v) = 0.003357·v − 0.0193, axle hop A₂ = A₁/5, random phase, so a
# row's sd = A₁·√(1/2 + 1/50) ≈ 0.721·A₁ (≈ 0.18 at 80 km/h: the rough-road end of the
# documented DLC 0.1–0.3). Never below DLC 0.05 (smooth roads, wim.md §2.4).
DLC_SLOPE_PER_KMH = 0.003357
DLC_OFFSET = -0.0193
DLC_FLOOR = 0.05
ROW_CORRELATION = 1.25  # TRL RR307: 9 sensors 3.6 % vs 2.9 % ideal (wim.md §2.4)
PRIOR_SPEED_KMH = 100.0  # an unknown speed: the top of the operating range (R134 v_max)
# pooling in-service passages (guesses, engineering choices, not law): band width, the
# one-sided confidence of the upper bound, the fewest passages a band needs (fewer: prior)
BAND_KMH = 10.0
CONFIDENCE = 0.95
# A small pool is protected by its upper confidence bound (χ² on its degrees of freedom);
# at least 10 passages and 20 degrees of freedom (bound ≤ 1.36 × the estimate) keep it from
# resting on a handful of trucks. Until 2026-12-06 15:00 UTC: 30 passages (explored on the
# development seeds only: detection with pools of 300–600 trucks, same safety margin).
MIN_PASSAGES = 10
MIN_DOF = 20
ALL_AXLES = 99
REFERENCE, IN_SERVICE = SCATTER_KINDS[1], SCATTER_KINDS[2]
# in-service σ is pooled per axle-count class as well: a rigid two-axle truck bounces as one
# body, an articulated vehicle as two with independent phases (its gross averages them)
AXLE_CLASSES: tuple[tuple[int, int], ...] = ((2, 2), (3, 4), (5, ALL_AXLES))


@dataclass(frozen=True)
class ScatterBand:
    """σ (relative sd of the gross weight) for speeds in ``[speed_min_kmh, speed_max_kmh)``.

    ``relative_sd`` is the value deducted (the upper bound); ``estimate`` the point
    estimate; ``samples`` the passages pooled, ``dof`` their degrees of freedom.
    """

    speed_max_kmh: float
    relative_sd: float
    samples: int
    speed_min_kmh: float = 0.0
    estimate: float | None = None
    dof: int = 0
    axles_min: int = 0  # the axle counts the band holds for (0–99: all)
    axles_max: int = ALL_AXLES
    # what it was pooled from: REFERENCE (reference-truck errors against their static
    # weights), IN_SERVICE (in-service passages' row spread), "" (both, hand-set, unknown)
    kind: str = ""

    def covers(self, speed_kmh: float, axle_count: int | None) -> bool:
        return self.speed_min_kmh <= speed_kmh < self.speed_max_kmh and (
            axle_count is None or self.axles_min <= axle_count <= self.axles_max)

    def to_json(self) -> dict[str, Any]:
        return {"speed_min_kmh": self.speed_min_kmh, "speed_max_kmh": self.speed_max_kmh,
                "axles_min": self.axles_min, "axles_max": self.axles_max,
                "relative_sd": self.relative_sd, "estimate": self.estimate,
                "samples": self.samples, "dof": self.dof, "kind": self.kind}


@dataclass(frozen=True)
class HistoryPassage:
    """One passage of the site's history: speed, the rows' gross weights, and — for a
    reference-truck run — the truck's static gross weight."""

    speed_kmh: float
    row_gross_kg: Sequence[float]
    reference_gross_kg: float | None = None
    axle_count: int | None = None


def upper_sd(variance: float, dof: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of σ from a pooled variance on ``dof`` degrees of
    freedom: ``σ̂ · √(dof / χ²_{1−confidence}(dof))`` (normal errors)."""
    if dof < 1:
        return math.inf
    from scipy.stats import chi2  # here, not at the top: scipy.stats takes ~1 s to import,
    # and every process that reads an evidence package imports this module

    return math.sqrt(variance * dof / float(chi2.ppf(1.0 - confidence, dof)))


def prior_scatter(speed_kmh: float | None, rows: int) -> float:
    """σ with no history of the site: documented physics for a rough road, averaged over
    ``rows`` rows with spatial correlation (the common error is the class MPE's part)."""
    v = PRIOR_SPEED_KMH if speed_kmh is None or not math.isfinite(speed_kmh) else abs(speed_kmh)
    a1 = DLC_SLOPE_PER_KMH * v + DLC_OFFSET
    dlc = max(DLC_FLOOR, a1 * math.sqrt(0.5 + 0.02))
    return ROW_CORRELATION * dlc / math.sqrt(max(1, rows))


def estimate_scatter(history: Iterable[HistoryPassage], band_kmh: float = 10.0,
                     correlation_factor: float = ROW_CORRELATION, confidence: float = 0.95,
                     min_samples: int = 1,
                     band_offset_kmh: float = 0.0,
                     axle_classes: Sequence[tuple[int, int]] | None = None,
                     min_dof: int = 0) -> tuple[ScatterBand, ...]:
    """Pool the site's history into speed bands of σ (upper confidence bounds).

    A reference run contributes its error ``(mean of rows − static) / static`` (1 degree of
    freedom); an in-service passage ``c² · s²_rows / N`` (N − 1). Per band the larger of
    the two pooled bounds is kept. Bands with fewer than ``min_samples``
    passages, and in-service pools with fewer than ``min_dof`` degrees of freedom, are left
    out (the prior covers them). Bands are
    ``[offset + i·band_kmh, offset + (i+1)·band_kmh)``; with ``axle_classes`` each speed
    band is split by axle count (passages of unknown or unlisted axle count are left out).
    """
    classes = list(axle_classes) if axle_classes else [(0, ALL_AXLES)]
    ref: dict[tuple[int, int], list[float]] = {}
    rows: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for p in history:
        g = [float(x) for x in p.row_gross_kg]
        if not g or not all(math.isfinite(x) and x > 0 for x in g):
            continue
        if abs(p.speed_kmh) < band_offset_kmh:
            continue
        cls = [i for i, (a, b) in enumerate(classes) if axle_classes is None or (
            p.axle_count is not None and a <= p.axle_count <= b)]
        if not cls:
            continue
        band = (int((abs(p.speed_kmh) - band_offset_kmh) // band_kmh), cls[0])
        mean = sum(g) / len(g)
        if p.reference_gross_kg:
            ref.setdefault(band, []).append((mean / p.reference_gross_kg - 1.0) ** 2)
        if len(g) >= 2:
            s2 = sum((x / mean - 1.0) ** 2 for x in g) / (len(g) - 1)
            rows.setdefault(band, []).append((correlation_factor ** 2 * s2 / len(g),
                                              len(g) - 1))
    out = []
    for band in sorted(set(ref) | set(rows)):
        r, w = ref.get(band, []), rows.get(band, [])
        n = len(r) + len(w)
        if n < min_samples:
            continue
        bounds: list[tuple[float, float, int, str]] = []  # (bound, estimate, dof, kind)
        if r:
            var = sum(r) / len(r)
            bounds.append((upper_sd(var, len(r), confidence), math.sqrt(var), len(r),
                           REFERENCE))
        if w and sum(d for _, d in w) >= min_dof:
            var = sum(v for v, _ in w) / len(w)
            dof = sum(d for _, d in w)
            bounds.append((upper_sd(var, dof, confidence), math.sqrt(var), dof, IN_SERVICE))
        if not bounds:
            continue
        bound, est, dof, kind = max(bounds)
        lo = band_offset_kmh + band[0] * band_kmh
        amin, amax = classes[band[1]]
        out.append(ScatterBand(lo + band_kmh, bound, n, lo, est, dof, amin, amax,
                               kind if len(bounds) == 1 else ""))
    return tuple(out)


def scatter_at(speed_kmh: float | None, bands: Sequence[ScatterBand],
               axle_count: int | None = None) -> float | None:
    """σ at ``speed_kmh`` for a vehicle of ``axle_count`` axles from the bands covering
    both (an unknown axle count: every band of that speed): the largest, except that the
    reference runs' and the in-service passages' bands are one estimate where they agree
    (:func:`combined_bound`); None when none covers (the caller falls back to the prior).
    An unknown speed takes the worst band."""
    if not bands:
        return None
    if speed_kmh is None or not math.isfinite(speed_kmh):
        return max(b.relative_sd for b in bands)
    hits = [b for b in bands if b.covers(abs(speed_kmh), axle_count)]
    if not hits:
        return None
    ref = [b for b in hits if b.kind == REFERENCE]
    ins = [b for b in hits if b.kind == IN_SERVICE]
    rest = [b.relative_sd for b in hits if b.kind not in (REFERENCE, IN_SERVICE)]
    if not (ref and ins):
        return max(b.relative_sd for b in hits)
    r = max(ref, key=lambda b: b.relative_sd)
    w = max(ins, key=lambda b: b.relative_sd)
    return max([combined_bound(r, w), *rest])


def combined_bound(reference: ScatterBand, in_service: ScatterBand,
                   confidence: float = CONFIDENCE) -> float:
    """One σ bound from a reference-run band and an in-service band of the same speed.

    Both estimate the scatter of a passage's gross weight about the truck's true weight
    (the reference runs against the static weights, on a few passes; the in-service
    passages from their rows' spread, on many). Where the two variances agree — a
    two-sided F test at ``1 − confidence`` does not tell them apart — they are one estimate
    and pool on their combined degrees of freedom, so a reference session of 9 passes per
    band no longer sets the deduction by its own wide bound. Where they differ (e.g. the
    reference trucks show an error the rows' spread does not: a calibration error, or
    trucks that bounce unlike the site's traffic), or where either lacks its estimate and
    degrees of freedom, the larger bound applies, as before."""
    ref_est, ins_est = reference.estimate, in_service.estimate
    larger = max(reference.relative_sd, in_service.relative_sd)
    if (ref_est is None or ins_est is None or reference.dof < 1 or in_service.dof < 1
            or ins_est <= 0 or ref_est <= 0):
        return larger
    ratio = ref_est ** 2 / ins_est ** 2
    tail = (1.0 - confidence) / 2.0
    from scipy.stats import f as f_dist  # imported here: see upper_sd

    low = float(f_dist.ppf(tail, reference.dof, in_service.dof))
    high = float(f_dist.ppf(1.0 - tail, reference.dof, in_service.dof))
    if not low <= ratio <= high:
        return larger
    dof = reference.dof + in_service.dof
    var = (reference.dof * ref_est ** 2 + in_service.dof * ins_est ** 2) / dof
    return upper_sd(var, dof, confidence)


def contiguous_bands(pairs: Sequence[tuple[float, float]]) -> tuple[ScatterBand, ...]:
    """Hand-set ``(speed_max_kmh, relative_sd)`` pairs, each band starting where the
    previous one ends (``[overload] scatter_bands_kmh_sd``)."""
    out, lower = [], 0.0
    for v, sd in sorted(pairs):
        out.append(ScatterBand(float(v), float(sd), 0, lower))
        lower = float(v)
    return tuple(out)


def parse_bands(items: Any, where: str, kind: str = "") -> tuple[ScatterBand, ...]:
    """Bands from their JSON form (a list of :meth:`ScatterBand.to_json` objects); a band
    without its own ``kind`` takes ``kind`` (what its document says it was pooled from)."""
    if not isinstance(items, list):
        raise CalibrationProfileError(f"{where}: 'bands' must be a list")
    out = []
    for b in items:
        try:
            lo, hi = float(b["speed_min_kmh"]), float(b["speed_max_kmh"])
            sd, n = float(b["relative_sd"]), int(b.get("samples", 0))
            est = b.get("estimate")
            dof = int(b.get("dof", 0))
            amin, amax = int(b.get("axles_min", 0)), int(b.get("axles_max", ALL_AXLES))
            band_kind = str(b.get("kind", kind))
        except (KeyError, TypeError, ValueError):
            raise CalibrationProfileError(f"{where}: a band needs speed_min_kmh, "
                                          f"speed_max_kmh and relative_sd") from None
        if not (math.isfinite(sd) and 0 <= sd < 1 and 0 <= lo < hi and 0 <= amin <= amax
                and band_kind in ("", REFERENCE, IN_SERVICE)):
            raise CalibrationProfileError(f"{where}: bad band {b!r}")
        out.append(ScatterBand(hi, sd, n, lo, None if est is None else float(est), dof,
                               amin, amax, band_kind))
    return tuple(out)


def profile_scatter(raw: Mapping[str, Any], where: str = "<profile>") -> tuple[ScatterBand, ...]:
    """The σ(v) a calibration profile carries (``site_scatter``; none in older profiles)."""
    block = raw.get("site_scatter")
    if block is None:
        return ()
    if not isinstance(block, dict):
        raise CalibrationProfileError(f"{where}: 'site_scatter' must be an object")
    return parse_bands(block.get("bands"), f"{where}: site_scatter",
                       REFERENCE if block.get("method") == "reference_runs" else "")


def scatter_document(bands: Sequence[ScatterBand], *, method: str, site_id: str | None,
                     lane_id: str | None, profile_id: str | None, confidence: float,
                     passages: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``zhichao.scatter/1`` document (the same block a profile carries)."""
    return {"format": SCATTER_FORMAT, "site_id": site_id, "lane_id": lane_id,
            "created_utc": format_utc(utc_now()), "method": method,
            "calibration_profile": profile_id, "confidence": confidence,
            "passages": passages, **(extra or {}),
            "bands": [b.to_json() for b in bands]}


def write_scatter(doc: Mapping[str, Any], path: str | Path) -> Path:
    p = Path(path)
    write_atomic(p, (json.dumps(doc, ensure_ascii=False, indent=1, allow_nan=False)
                     + "\n").encode("utf-8"))
    return p


def read_scatter(path: str | Path) -> tuple[dict[str, Any], tuple[ScatterBand, ...]]:
    """Read a ``zhichao.scatter/1`` file: (the document, its bands)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationProfileError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationProfileError(f"{p}: unreadable scatter file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SCATTER_FORMAT:
        raise CalibrationProfileError(f"{p}: format must be {SCATTER_FORMAT!r}")
    return doc, parse_bands(doc.get("bands"), str(p),
                            IN_SERVICE if doc.get("method") == "in_service_rows" else "")


def site_config(cfg: WeighingConfig | None, profile: CalibrationProfile | None = None,
                scatter_path: str | Path | None = None) -> WeighingConfig:
    """``cfg`` with the σ(v) of the calibration profile (its reference runs) and of a
    ``zhichao.scatter/1`` file (in-service passages) added; each source's bands cover only
    their speeds; where both do, :func:`scatter_at` decides (pooled where they agree, else
    the larger); the prior where neither does."""
    cfg = cfg or WeighingConfig()
    if profile is not None:
        cfg = cfg.with_scatter(profile_scatter(profile.raw, profile.profile_id),
                               f"校准参数{profile.profile_id}的参考车过车残差")
    if scatter_path is not None:
        _doc, bands = read_scatter(scatter_path)
        cfg = cfg.with_scatter(bands, f"本点在役过车离散（{Path(scatter_path).name}）")
    return cfg


def pooling_passages(vehicles: Iterable[WeighedVehicle]) -> list[HistoryPassage]:
    """The passages fit for pooling (:func:`pooling_passage`) among weighed vehicles."""
    out = (pooling_passage(v.gross_weight_kg, v.speed_kmh, v.axle_count,
                           v.row_gross_weights_kg, v.flags) for v in vehicles)
    return [p for p in out if p is not None]


def pooling_records(records: Iterable[Mapping[str, Any]]) -> list[HistoryPassage]:
    """The same from ``zhichao.vehicle/1`` records (e.g. a station's stored passages)."""
    out = (pooling_passage(r.get("gross_weight_kg"), r.get("speed_kmh"),
                           int(r.get("axle_count") or 0), r.get("row_gross_weights_kg") or [],
                           r.get("flags") or []) for r in records)
    return [p for p in out if p is not None]


def pooling_passage(gross_kg: float | None, speed_kmh: float | None, axle_count: int,
                    row_gross_kg: Sequence[float], flags: Iterable[str]
                    ) -> HistoryPassage | None:
    """A passage fit for pooling: a weighed truck with two or more rows whose driving and
    data the flags do not already send to review (rows_disagree and close_following stay
    in: keeping them widens σ); None otherwise."""
    from zhichao.weighing.stream import ABNORMAL_FLAGS

    excluded = ABNORMAL_FLAGS - {"rows_disagree", "close_following"}
    if (not gross_kg or speed_kmh is None or axle_count < 2 or len(row_gross_kg) < 2
            or set(flags) & excluded):
        return None
    return HistoryPassage(float(speed_kmh), [float(x) for x in row_gross_kg],
                          axle_count=axle_count)


def pooled_bands(history: Iterable[HistoryPassage],
                 band_kmh: float = BAND_KMH, confidence: float = CONFIDENCE,
                 min_passages: int = MIN_PASSAGES,
                 axle_classes: Sequence[tuple[int, int]] | None = AXLE_CLASSES
                 ) -> tuple[ScatterBand, ...]:
    """σ(v) bands from in-service passages' row spread (the dynamic scatter)."""
    return estimate_scatter(history, band_kmh, confidence=confidence,
                            min_samples=min_passages, axle_classes=axle_classes,
                            min_dof=MIN_DOF)
