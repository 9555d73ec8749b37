"""Calibration profiles (``zhichao.calibration/1``) as the weighing core applies them.

The calibration stage fits and writes profiles; the core only reads and applies them::

    load = v · ∫s dt / (width · sensitivity_ch) / (1 + α_ch·(T − T0)) · k(v)

with the profile's per-channel sensitivity replacing the nominal one, α_ch its temperature
coefficient [1/°C] about the reference temperature T0, and k(v) a piecewise-linear speed
factor (constant beyond the table's ends). Without a profile every factor is identity.

A profile is applied only where it is in force and was fitted (plain functions, used by both
the core's stream and controller records):

* :func:`not_in_force_reason` — outside ``[valid_from_utc, valid_until_utc)`` at the
  passage's time the profile is **not applied**: the passage is weighed uncorrected and
  flagged ``calibration_not_in_force`` (the evidence gate refuses it);
* :func:`outside_range_reasons` — a speed or pavement temperature outside the profile's
  ``operating_range`` (what the fit saw) is an extrapolation of k(v) or α: the correction is
  applied and the passage flagged ``outside_calibration_range`` (manual review).

A profile document that declares no validity or no operating range (hand-made; ``zhichao
calibrate`` always writes both) is not bounded by what it does not declare; the station
refuses such a profile (``zhichao.station.runtime``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from zhichao.common import parse_utc
from zhichao.weighing.errors import CalibrationProfileError

PROFILE_FORMAT = "zhichao.calibration/1"

#: flag of a passage weighed while its lane's profile was not in force (weighed uncorrected)
NOT_IN_FORCE_FLAG = "calibration_not_in_force"
#: flag of a passage whose speed or temperature lies outside the profile's operating range
OUTSIDE_RANGE_FLAG = "outside_calibration_range"


@dataclass(frozen=True)
class ChannelCalibration:
    sensitivity_per_n: float
    temperature_coefficient_per_c: float = 0.0


@dataclass(frozen=True)
class CalibrationProfile:
    profile_id: str
    channels: dict[str, ChannelCalibration]
    reference_temperature_c: float = 20.0
    speed_factors: tuple[tuple[float, float], ...] = ()  # (speed_kmh, factor), ascending
    site_id: str | None = None
    lane_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    sha256: str = ""
    # validity [valid_from, valid_until) and the fitted operating range; None: not declared
    created_utc: datetime | None = None
    valid_from_utc: datetime | None = None
    valid_until_utc: datetime | None = None
    speed_range_kmh: tuple[float, float] | None = None
    temperature_range_c: tuple[float, float] | None = None

    def speed_factor(self, speed_kmh: float) -> float:
        if not self.speed_factors:
            return 1.0
        xs = [s for s, _ in self.speed_factors]
        ys = [f for _, f in self.speed_factors]
        return float(np.interp(abs(speed_kmh), xs, ys))

    def temperature_divisor(self, channel: str, temperature_c: float) -> float:
        ch = self.channels.get(channel)
        if ch is None:
            return 1.0
        return 1.0 + ch.temperature_coefficient_per_c * (temperature_c -
                                                         self.reference_temperature_c)


def not_in_force_reason(profile: CalibrationProfile, time_utc: datetime) -> str | None:
    """Why ``profile`` is not in force at ``time_utc`` (zh-CN), or None when it is.

    Validity is ``[valid_from_utc, valid_until_utc)``; an undeclared bound does not limit.
    """
    start, end = profile.valid_from_utc, profile.valid_until_utc
    if start is not None and time_utc < start:
        return (f"标定参数 {profile.profile_id} 自 {_utc_text(start)} 起生效，过车时尚未生效，"
                f"未作标定修正")
    if end is not None and time_utc >= end:
        return (f"标定参数 {profile.profile_id} 有效期至 {_utc_text(end)}，过车时已过期，"
                f"未作标定修正")
    return None


def timeless(profile: CalibrationProfile) -> CalibrationProfile:
    """``profile`` with no validity dates: for the calibration tools, which weigh the
    session's own (or a verification's) recordings with it as fitted, whenever recorded."""
    return replace(profile, valid_from_utc=None, valid_until_utc=None)


def outside_range_reasons(profile: CalibrationProfile, speed_kmh: float | None,
                          temperature_c: float | None) -> list[str]:
    """What of a passage lies outside the profile's operating range (zh-CN notes; empty
    when inside or when the profile declares no range).

    speed_kmh : the passage's speed [km/h] (its magnitude is compared).
    temperature_c : the measured pavement temperature [°C]; None or NaN (not measured:
        a configured constant is no measurement) is not judged.
    """
    out: list[str] = []
    sr = profile.speed_range_kmh
    if sr is not None and speed_kmh is not None and not sr[0] <= abs(speed_kmh) <= sr[1]:
        out.append(f"车速 {abs(speed_kmh):.1f} km/h 超出标定参数 {profile.profile_id} 的拟合范围 "
                   f"{sr[0]:.1f}–{sr[1]:.1f} km/h（速度修正为外推）")
    tr = profile.temperature_range_c
    if tr is not None and temperature_c is not None and math.isfinite(temperature_c):
        if not tr[0] <= temperature_c <= tr[1]:
            out.append(f"路面温度 {temperature_c:.1f} °C 超出标定参数 {profile.profile_id} 的"
                       f"拟合范围 {tr[0]:.1f}–{tr[1]:.1f} °C（温度修正为外推）")
    return out


def _utc_text(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _opt_time(data: dict[str, Any], key: str, where: str) -> datetime | None:
    text = data.get(key)
    if text is None:
        return None
    if not isinstance(text, str):
        raise CalibrationProfileError(f"{where}: {key!r} must be an RFC 3339 UTC time")
    try:
        return parse_utc(text)
    except ValueError as exc:
        raise CalibrationProfileError(f"{where}: {key!r}: {text!r} is not an RFC 3339 UTC "
                                      f"time ({exc})") from None


def _opt_range(data: dict[str, Any], key: str, where: str) -> tuple[float, float] | None:
    rng = data.get("operating_range")
    if rng is None:
        return None
    if not isinstance(rng, dict):
        raise CalibrationProfileError(f"{where}: 'operating_range' must be an object")
    item = rng.get(key)
    if item is None:
        return None
    try:
        if len(item) != 2:
            raise ValueError
        lo, hi = float(item[0]), float(item[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise CalibrationProfileError(f"{where}: operating_range.{key} must be [low, high]"
                                      ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise CalibrationProfileError(f"{where}: bad operating_range.{key} {item!r}")
    return lo, hi


def parse_profile(data: dict[str, Any], where: str = "<profile>") -> CalibrationProfile:
    """Validate and build a profile from its JSON object."""
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise CalibrationProfileError(f"{where}: format must be {PROFILE_FORMAT!r}")
    pid = data.get("profile_id")
    if not isinstance(pid, str) or not pid:
        raise CalibrationProfileError(f"{where}: 'profile_id' must be a non-empty string")
    chans_raw = data.get("channels", {})
    if not isinstance(chans_raw, dict):
        raise CalibrationProfileError(f"{where}: 'channels' must be an object keyed by name")
    chans: dict[str, ChannelCalibration] = {}
    for name, c in chans_raw.items():
        try:
            sens = float(c["sensitivity_per_n"])
            alpha = float(c.get("temperature_coefficient_per_c", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationProfileError(f"{where}: channel {name!r}: {exc}") from None
        if not math.isfinite(sens) or sens == 0 or not math.isfinite(alpha):
            raise CalibrationProfileError(f"{where}: channel {name!r}: bad numbers")
        chans[name] = ChannelCalibration(sens, alpha)
    factors_raw = data.get("speed_factors", [])
    factors: list[tuple[float, float]] = []
    for item in factors_raw:
        try:
            s, f = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError):
            raise CalibrationProfileError(f"{where}: speed_factors entries are [kmh, factor]"
                                          ) from None
        if not (math.isfinite(s) and math.isfinite(f)) or f <= 0:
            raise CalibrationProfileError(f"{where}: bad speed factor {item!r}")
        factors.append((s, f))
    if any(b[0] <= a[0] for a, b in zip(factors, factors[1:], strict=False)):
        raise CalibrationProfileError(f"{where}: speed_factors must ascend in speed")
    t0 = float(data.get("reference_temperature_c", 20.0))
    valid_from = _opt_time(data, "valid_from_utc", where)
    valid_until = _opt_time(data, "valid_until_utc", where)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise CalibrationProfileError(f"{where}: valid_until_utc must be after valid_from_utc")
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return CalibrationProfile(
        profile_id=pid, channels=chans, reference_temperature_c=t0,
        speed_factors=tuple(factors), site_id=data.get("site_id"), lane_id=data.get("lane_id"),
        raw=data, sha256=hashlib.sha256(canonical.encode()).hexdigest(),
        created_utc=_opt_time(data, "created_utc", where),
        valid_from_utc=valid_from, valid_until_utc=valid_until,
        speed_range_kmh=_opt_range(data, "speed_kmh", where),
        temperature_range_c=_opt_range(data, "temperature_c", where))


def load_profile(path: str | Path) -> CalibrationProfile:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationProfileError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationProfileError(f"{p}: unreadable calibration profile ({exc})") from None
    return parse_profile(data, str(p))
