"""σ(v) from what a site already runs: reference-truck sessions and in-service traffic.

* :func:`reference_scatter` — after a calibration fit, the reference recordings are weighed
  again with the fitted profile, exactly as the core will weigh traffic, and each pass's
  gross error against its static weight is pooled per speed band around the fit's speed
  knots (``zhichao calibrate`` writes the result into the profile as ``site_scatter``).
  Passes rejected as outliers are kept: they are real errors of the calibrated device.
* :func:`in_service_scatter` — in-service passages (``zhichao scatter``): each passage's
  rows weigh the same vehicle at different phases of its bounce; their spread, pooled over
  many passages, estimates the scatter of the rows' mean (see
  :mod:`zhichao.weighing.scatter`), per speed band and axle-count class. The error common
  to all rows, which row spread cannot see, is added in quadrature
  (:func:`common_error_sd`).

Both give upper confidence bounds; bands with too few passages are left out, so the prior
(or the other source) covers those speeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhichao.calibration.errors import CalibrationError
from zhichao.devices.errors import DeviceError
from zhichao.devices.recording import read_recording
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.overload import accuracy_class
from zhichao.weighing.scatter import (
    AXLE_CLASSES,
    HistoryPassage,
    ScatterBand,
    estimate_scatter,
    profile_scatter,
    scatter_document,
    static_sd,
)
from zhichao.weighing.stream import ABNORMAL_FLAGS, weigh_recording

# passages whose driving or data the flags already send to review are not history of
# normal driving; rows_disagree and close_following stay in (keeping them widens σ)
EXCLUDED_FLAGS = ABNORMAL_FLAGS - {"rows_disagree", "close_following"}


@dataclass(frozen=True)
class ScatterConfig:
    """How passages are pooled. *guess*: engineering choices, not law."""

    band_kmh: float = 10.0
    confidence: float = 0.95  # one-sided, of the upper bound on σ
    min_passages: int = 30  # guess: fewer in a band → that band is left to the prior
    min_reference_passes: int = 8  # guess, as FitConfig.min_passes_for_scale
    # σ per axle-count class too (None: one σ for all vehicles in a speed band)
    axle_classes: tuple[tuple[int, int], ...] | None = AXLE_CLASSES

    def __post_init__(self) -> None:
        if self.band_kmh <= 0 or not 0.5 <= self.confidence < 1 or self.min_passages < 2:
            raise CalibrationError("band_kmh > 0, 0.5 <= confidence < 1, min_passages >= 2")


def reference_scatter(recordings: Iterable[Path], static_gross_kg: Mapping[str, float],
                      profile: CalibrationProfile, knots_kmh: list[float], step_kmh: float,
                      cfg: ScatterConfig | None = None) -> dict[str, Any]:
    """The ``site_scatter`` block of a profile: reference passes weighed with ``profile``,
    their gross errors pooled in bands ``[knot − step/2, knot + step/2)``."""
    cfg = cfg or ScatterConfig()
    history: list[HistoryPassage] = []
    for path in recordings:
        for v in weigh_recording(read_recording(path), None, profile):
            if (v.gross_weight_kg and v.speed_kmh is not None
                    and not set(v.flags) & EXCLUDED_FLAGS):
                history.append(HistoryPassage(v.speed_kmh, v.row_gross_weights_kg or
                                              [v.gross_weight_kg],
                                              static_gross_kg[path.name]))
    offset = (min(knots_kmh) - step_kmh / 2) % step_kmh if knots_kmh else 0.0
    # only the reference errors: row spread is the in-service file's business
    refs = [HistoryPassage(p.speed_kmh, [sum(p.row_gross_kg) / len(p.row_gross_kg)],
                           p.reference_gross_kg) for p in history]
    bands = estimate_scatter(refs, step_kmh, confidence=cfg.confidence,
                             min_samples=cfg.min_reference_passes, band_offset_kmh=offset)
    return {"method": "reference_runs", "confidence": cfg.confidence,
            "passes": len(history), "bands": [b.to_json() for b in bands],
            "basis": "参考车过车按本校准参数复称，总重误差按速度分段汇总，取σ的单侧"
                     f"{cfg.confidence:.0%}置信上限；过车不足{cfg.min_reference_passes}次的"
                     "速度段不给值（由先验或在役数据覆盖）"}


def in_service_history(recordings: Iterable[Path], profile: CalibrationProfile | None,
                       wcfg: WeighingConfig | None = None
                       ) -> tuple[list[HistoryPassage], str | None, str | None]:
    """Weigh in-service recordings; the passages fit for pooling, and the site and lane."""
    out: list[HistoryPassage] = []
    site = lane = None
    for path in recordings:
        try:
            vehicles = weigh_recording(read_recording(path), wcfg, profile)
        except (DeviceError, WeighingError) as exc:
            raise CalibrationError(f"{path}: {exc}") from None
        for v in vehicles:
            site, lane = site or v.site_id, lane or v.lane_id
            if (v.gross_weight_kg and v.speed_kmh is not None and v.axle_count >= 2
                    and len(v.row_gross_weights_kg) >= 2
                    and not set(v.flags) & EXCLUDED_FLAGS):
                out.append(HistoryPassage(v.speed_kmh, v.row_gross_weights_kg,
                                          axle_count=v.axle_count))
    return out, site, lane


def common_error_sd(accuracy_class_name: str, profile: CalibrationProfile | None) -> float:
    """The error common to all rows, which row spread cannot see. Uncalibrated: the class's
    static allowance (:func:`~zhichao.weighing.scatter.static_sd`). Calibrated: the smallest
    σ bound the profile's reference runs measured (their whole error, the common part
    included), or the class's allowance when the profile has none."""
    cls = accuracy_class(accuracy_class_name)
    if cls is None:
        raise CalibrationError(f"unknown accuracy class {accuracy_class_name!r}")
    measured = profile_scatter(profile.raw, profile.profile_id) if profile else ()
    return min((b.relative_sd for b in measured), default=static_sd(cls.initial_pct))


def in_service_scatter(history: list[HistoryPassage], common_sd: float,
                       cfg: ScatterConfig | None = None) -> tuple[ScatterBand, ...]:
    """σ(v) bands from in-service passages' row spread, ``common_sd`` in quadrature."""
    cfg = cfg or ScatterConfig()
    return estimate_scatter(history, cfg.band_kmh, confidence=cfg.confidence,
                            min_samples=cfg.min_passages, static_relative_sd=common_sd,
                            axle_classes=cfg.axle_classes)


def scatter_file(recordings: list[Path], profile: CalibrationProfile | None,
                 accuracy_class_name: str, cfg: ScatterConfig | None = None
                 ) -> dict[str, Any]:
    """The ``zhichao.scatter/1`` document for in-service recordings."""
    cfg = cfg or ScatterConfig()
    history, site, lane = in_service_history(recordings, profile)
    if not history:
        raise CalibrationError("no passage fit for pooling (need weighed vehicles with two "
                               "or more rows and no abnormal-driving flag)")
    common = common_error_sd(accuracy_class_name, profile)
    bands = in_service_scatter(history, common, cfg)
    return scatter_document(
        bands, method="in_service_rows", site_id=site, lane_id=lane,
        profile_id=profile.profile_id if profile else None, confidence=cfg.confidence,
        passages=len(history),
        extra={"accuracy_class": accuracy_class_name, "common_relative_sd": common,
               "band_kmh": cfg.band_kmh, "min_passages": cfg.min_passages,
               "axle_classes": [list(c) for c in cfg.axle_classes or ()],
               "recordings": [p.name for p in recordings]})
