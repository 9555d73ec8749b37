"""Calibration profiles (``zhichao.calibration/1``) as the weighing core applies them.

The calibration stage fits and writes profiles; the core only reads and applies them::

    load = v · ∫s dt / (width · sensitivity_ch) / (1 + α_ch·(T − T0)) · k(v)

with the profile's per-channel sensitivity replacing the nominal one, α_ch its temperature
coefficient [1/°C] about the reference temperature T0, and k(v) a piecewise-linear speed
factor (constant beyond the table's ends). Without a profile every factor is identity.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zhichao.weighing.errors import CalibrationProfileError

PROFILE_FORMAT = "zhichao.calibration/1"


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
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return CalibrationProfile(
        profile_id=pid, channels=chans, reference_temperature_c=t0,
        speed_factors=tuple(factors), site_id=data.get("site_id"), lane_id=data.get("lane_id"),
        raw=data, sha256=hashlib.sha256(canonical.encode()).hexdigest())


def load_profile(path: str | Path) -> CalibrationProfile:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationProfileError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationProfileError(f"{p}: unreadable calibration profile ({exc})") from None
    return parse_profile(data, str(p))
