"""The profile document a fit produces (``zhichao.calibration/1``), and writing it.

:func:`profile_json` turns a solution of :mod:`zhichao.calibration.fit` into the profile the
weighing core reads (:func:`zhichao.weighing.calibration_profile.parse_profile`), with the
fit's figures, notes and the digests of its data; :func:`write_profile` writes it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zhichao import __version__
from zhichao.calibration.errors import CalibrationError
from zhichao.calibration.measure import sha256_file
from zhichao.common import format_utc, write_atomic
from zhichao.devices.recording import read_recording
from zhichao.weighing.calibration_profile import PROFILE_FORMAT

if TYPE_CHECKING:
    from zhichao.calibration.fit import FitConfig, PassRecord, _Solution


def nominal_sensitivities(path: Path) -> dict[str, float]:
    return {c.name: c.sensitivity_per_n for c in read_recording(path).meta.channels}


def profile_json(sol: _Solution, sens: dict[str, float], nominal: dict[str, float],
                  passes: list[PassRecord], cfg: FitConfig, reference_csv: Path,
                  site: str | None, lane: str | None, created: datetime,
                  supersedes: str | None) -> dict[str, Any]:
    ref_digest = sha256_file(reference_csv)
    h = hashlib.sha256(ref_digest.encode())
    for p in sorted(passes, key=lambda q: q.recording):
        h.update(f"{p.recording}:{p.sha256}".encode())
    data_hash = h.hexdigest()
    created = created.astimezone(UTC).replace(microsecond=0)
    pid = f"CAL-{site or 'SITE'}-{lane or 'LANE'}-{created:%Y%m%dT%H%M%SZ}-{data_hash[:8]}"
    names = sorted(sens)
    rows = sorted({int(n[1:-1]) for n in names}) if all(
        n[0] == "r" and n[1:-1].isdigit() for n in names) else []
    channels: dict[str, Any] = {}
    for name in names:
        rs = row_side(name, rows, sol) if rows else None
        entry: dict[str, Any] = {
            "sensitivity_per_n": sens[name],
            "nominal_sensitivity_per_n": nominal.get(name),
        }
        if rs is not None:
            r, s = rs
            entry["temperature_coefficient_per_c"] = float(sol.alpha[r, s])
            entry["sensitivity_u_rel"] = float(sol.u_log_gain[r, s])
            entry["temperature_coefficient_u_per_c"] = float(sol.u_alpha[r, s])
            nom = nominal.get(name)
            if nom:
                entry["sensitivity_vs_nominal"] = sens[name] / nom
        channels[name] = entry
    speed = [[k, float(f)] for k, f in zip(sol.knots_kmh, sol.factors, strict=True)] if len(
        sol.knots_kmh) >= 2 else []
    used = [p for p in passes if p.used]
    after = np.array([p.gross_error_after_pct for p in used if p.gross_error_after_pct
                      is not None])
    temps = [p.temperature_c for p in used if p.temperature_c is not None]
    speeds = [p.speed_kmh for p in used if p.speed_kmh is not None]
    t_span = (max(temps) - min(temps)) if temps else 0.0
    notes: list[str] = []
    if t_span < cfg.min_temperature_span_c:
        notes.append(f"temperature coefficients not fitted (passes span {t_span:.1f} °C < "
                     f"{cfg.min_temperature_span_c} °C): data-sheet value "
                     f"{cfg.default_temperature_coefficient_per_c} /°C used")
    if 0 < sol.n_share_known < len(used):
        notes.append(f"left/right split from static wheel loads on {sol.n_share_known} of "
                     f"{len(used)} passes, the balance assumption on the others")
    if len(sol.knots_kmh) < 2:
        notes.append("speed factors not fitted: passes cover fewer than two speed knots")
    return {
        "format": PROFILE_FORMAT,
        "profile_id": pid,
        "supersedes": supersedes,
        "site_id": site,
        "lane_id": lane,
        "created_utc": format_utc(created),
        "valid_from_utc": format_utc(created),
        "valid_until_utc": format_utc(created + timedelta(days=cfg.validity_days)),
        "reference_temperature_c": cfg.reference_temperature_c,
        "channels": channels,
        "speed_factors": speed,
        "speed_factors_u_rel": [float(u) for u in sol.u_log_factor] if speed else [],
        "operating_range": {
            "speed_kmh": [min(speeds), max(speeds)] if speeds else None,
            "temperature_c": [min(temps), max(temps)] if temps else None,
            # what the range means: not a class statement (that comes from a verification)
            "basis": "speeds and temperatures of the calibration passes used; the accuracy "
                     "class and the speed range it holds in come from a verification "
                     "(zhichao accuracy: speed_ranges)",
        },
        "fit": {
            "method": ("scipy.optimize.least_squares, soft_l1; pass gross + row contrasts, "
                       "each weighted by its scatter per speed band; left/right balance"),
            "passes_total": len(passes),
            "passes_used": len(used),
            "passes_rejected": len(passes) - len(used),
            "row_residual_sd_pct": sol.row_sd * 100,
            # robust scatter by speed knot: of a pass's gross error (mean of its rows) and of
            # a row's deviation from its pass mean; the fit weighs residuals by these
            "pass_error_sd_by_speed_pct": [
                [k, sd * 100] for k, sd in zip(sol.knots_kmh or [0.0], sol.pass_sd_by_knot,
                                               strict=False)],
            # the left/right split: from static wheel loads (for how many passes), else the
            # balance assumption
            "left_right_basis": ("static_wheel_loads" if sol.n_share_known == len(used)
                                 else "balance_assumption" if sol.n_share_known == 0
                                 else "mixed"),
            "passes_with_wheel_loads": sol.n_share_known,
            "left_share_sd_by_speed_pct": [
                [k, sd * 100] for k, sd in zip(sol.knots_kmh or [0.0], sol.share_sd_by_knot,
                                               strict=False)],
            "row_contrast_sd_by_speed_pct": [
                [k, sd * 100] for k, sd in zip(sol.knots_kmh or [0.0], sol.contrast_sd_by_knot,
                                               strict=False)],
            "pass_gross_error_sd_pct": float(np.std(after, ddof=1)) if len(after) > 1 else None,
            "pass_gross_error_mean_pct": float(np.mean(after)) if len(after) else None,
            "pass_gross_error_max_abs_pct": float(np.max(np.abs(after))) if len(after) else None,
            "chi2_reduced": sol.chi2_reduced,
            "temperature_coefficients_fitted": t_span >= cfg.min_temperature_span_c,
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(cfg).items()},
            "notes": notes,
        },
        "data": {
            "reference_file": {"name": reference_csv.name, "sha256": ref_digest},
            "data_sha256": data_hash,
            "passes": [p.to_json() for p in passes],
        },
        "software_version": __version__,
    }


def row_side(name: str, rows: list[int], sol: _Solution) -> tuple[int, int] | None:
    try:
        r = int(name[1:-1]) - 1
    except ValueError:
        return None
    side = {"L": 0, "R": 1}.get(name[-1])
    if side is None or not 0 <= r < sol.gain.shape[0]:
        return None
    return r, side


def write_profile(profile: dict[str, Any], path: str | Path) -> Path:
    """Write a profile as JSON (UTF-8); refuses to overwrite a different existing profile."""
    p = Path(path)
    text = json.dumps(profile, ensure_ascii=False, indent=1, allow_nan=False)
    if p.exists():
        try:
            old = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict) or old.get("profile_id") != profile.get("profile_id"):
            raise CalibrationError(f"{p}: exists and holds another profile; profiles are "
                                   f"versioned, write the new one to a new file")
    write_atomic(p, (text + "\n").encode("utf-8"))
    return p


def profile_is_finite(profile: dict[str, Any]) -> bool:
    return all(math.isfinite(float(c["sensitivity_per_n"])) for c in profile["channels"].values())
