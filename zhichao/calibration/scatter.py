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
  to all rows, which row spread cannot see, is the accuracy class's part of the tolerance
  (the larger of the two is deducted, never their sum).

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
from zhichao.weighing.calibration_profile import CalibrationProfile, timeless
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.overload import accuracy_class
from zhichao.weighing.scatter import (
    AXLE_CLASSES,
    BAND_KMH,
    CONFIDENCE,
    MIN_PASSAGES,
    HistoryPassage,
    estimate_scatter,
    pooled_bands,
    pooling_passages,
    scatter_document,
)
from zhichao.weighing.stream import ABNORMAL_FLAGS, weigh_recording

# reference passes the flags would send to review are left out (as the fit does)
EXCLUDED_FLAGS = ABNORMAL_FLAGS - {"rows_disagree", "close_following"}


@dataclass(frozen=True)
class ScatterConfig:
    """How passages are pooled. *guess*: engineering choices, not law."""

    band_kmh: float = BAND_KMH
    confidence: float = CONFIDENCE  # one-sided, of the upper bound on σ
    min_passages: int = MIN_PASSAGES  # fewer in a band → that band is left to the prior
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
        # the reference passes predate the profile's validity (it starts when it is made):
        # they are weighed with it as fitted, whatever its dates
        for v in weigh_recording(read_recording(path), None, timeless(profile)):
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
            "basis": "参考车过车按本校准参数复称，总重误差按速度分段汇总，取标准差的单侧"
                     f"{cfg.confidence:.0%}置信上限；过车不足{cfg.min_reference_passes}次的"
                     "速度段不给值（由先验或在役数据覆盖）"}


def in_service_history(recordings: Iterable[Path], profile: CalibrationProfile | None,
                       wcfg: WeighingConfig | None = None) -> list[HistoryPassage]:
    """Weigh in-service recordings; the passages fit for pooling."""
    out: list[HistoryPassage] = []
    for path in recordings:
        try:
            out.extend(pooling_passages(weigh_recording(read_recording(path), wcfg, profile)))
        except (DeviceError, WeighingError) as exc:
            raise CalibrationError(f"{path}: {exc}") from None
    return out


def scatter_file(recordings: list[Path], profile: CalibrationProfile | None,
                 accuracy_class_name: str, cfg: ScatterConfig | None = None
                 ) -> dict[str, Any]:
    """The ``zhichao.scatter/1`` document for in-service recordings."""
    cfg = cfg or ScatterConfig()
    history = in_service_history(recordings, profile)
    if not history:
        raise CalibrationError("no passage fit for pooling (need weighed vehicles with two "
                               "or more rows and no abnormal-driving flag)")
    if accuracy_class(accuracy_class_name) is None:
        raise CalibrationError(f"unknown accuracy class {accuracy_class_name!r}")
    bands = pooled_bands(history, cfg.band_kmh, cfg.confidence, cfg.min_passages,
                         cfg.axle_classes)
    meta = read_recording(recordings[0]).meta
    return scatter_document(
        bands, method="in_service_rows", site_id=meta.site_id, lane_id=meta.lane_id,
        profile_id=profile.profile_id if profile else None, confidence=cfg.confidence,
        passages=len(history),
        extra={"accuracy_class": accuracy_class_name,
               "band_kmh": cfg.band_kmh, "min_passages": cfg.min_passages,
               "axle_classes": [list(c) for c in cfg.axle_classes or ()],
               "recordings": [p.name for p in recordings]})
