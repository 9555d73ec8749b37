"""Slow, obviously correct reference implementations of the compiled kernels.

The tests compare each kernel against these, sample by sample. They are written for
clarity (one channel at a time, plain Python floats), not speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from zhichao.weighing.config import DetectionConfig
from zhichao.weighing.pulses import FLAG_OVERLONG, FLAG_SATURATED, Pulses


@dataclass
class _Pulse:
    channel: int
    start: int
    end: int
    peak_index: int
    flags: int
    area: float
    centroid: float
    peak: float


def detect_pulses_reference(samples: npt.NDArray[np.float32],
                            sensitivity_per_n: list[float], sample_rate_hz: float,
                            config: DetectionConfig | None = None,
                            full_scale: list[float] | None = None) -> Pulses:
    """Offset tracking + pulse detection, one channel at a time (see ``pulses.py``)."""
    cfg = config or DetectionConfig()
    alpha_base = 1.0 - math.exp(-1.0 / (cfg.offset_time_constant_s * sample_rate_hz))
    alpha_var = 1.0 - math.exp(-1.0 / (cfg.noise_time_constant_s * sample_rate_hz))
    hold = max(1, round(cfg.end_hold_s * sample_rate_hz))
    max_len = max(2, round(cfg.max_pulse_s * sample_rate_hz))
    flat_needed = max(2, cfg.flat_top_samples)
    found: list[_Pulse] = []
    n_samples, n_channels = samples.shape
    for c in range(n_channels):
        scale = 1.0 / float(sensitivity_per_n[c])
        saturation = math.inf
        if full_scale is not None and math.isfinite(full_scale[c]):
            saturation = full_scale[c] * 0.9999
        offset = math.nan
        variance = 0.0
        idle_count = 0
        in_pulse = False
        confirmed = False
        start = 0
        values: list[float] = []
        saturated = False
        flat_run = 0
        below = 0
        previous_raw = 0.0
        for i in range(n_samples):
            raw = samples[i, c]
            force = float(raw) * scale
            if math.isnan(offset):
                offset = force
                variance = 0.0
            excess = force - offset
            above = excess > cfg.start_floor_n and excess * excess > (
                cfg.start_sigma**2) * variance
            confirms = excess > cfg.confirm_floor_n and excess * excess > (
                cfg.confirm_sigma**2) * variance
            if not in_pulse:
                if above:
                    in_pulse, confirmed, start = True, confirms, i
                    values = [excess]
                    saturated = abs(raw) >= saturation
                    flat_run = 0
                    below = 0
                else:
                    idle_count += 1
                    weight_base = max(1.0 / idle_count, alpha_base)
                    weight_var = max(1.0 / idle_count, alpha_var)
                    offset = offset + weight_base * excess
                    variance = variance + weight_var * (excess * excess - variance)
            else:
                values.append(excess)
                if abs(raw) >= saturation:
                    saturated = True
                if above and raw == previous_raw:
                    flat_run += 1
                    if flat_run + 1 >= flat_needed:
                        saturated = True
                else:
                    flat_run = 0
                if confirms:
                    confirmed = True
                below = 0 if above else below + 1
                ended = below >= hold
                overlong = (i - start + 1) >= max_len
                if ended or overlong:
                    if confirmed:
                        area = 0.0
                        moment = 0.0
                        for k, value in enumerate(values):
                            area += value
                            moment += k * value
                        peak_k = int(np.argmax(values))
                        flags = FLAG_SATURATED if saturated else 0
                        if overlong and not ended:
                            flags |= FLAG_OVERLONG
                        found.append(_Pulse(c, start, i - below, start + peak_k, flags, area,
                                            start + moment / area if area > 0 else start,
                                            values[peak_k]))
                    in_pulse = False
                    if overlong and not ended:
                        offset = force
            previous_raw = raw
    found.sort(key=lambda p: (p.end, p.channel))
    return Pulses(
        channel=np.array([p.channel for p in found], dtype=np.int64),
        start=np.array([p.start for p in found], dtype=np.int64),
        end=np.array([p.end for p in found], dtype=np.int64),
        peak_index=np.array([p.peak_index for p in found], dtype=np.int64),
        flags=np.array([p.flags for p in found], dtype=np.int64),
        area_n_samples=np.array([p.area for p in found]),
        centroid=np.array([p.centroid for p in found]),
        peak_n=np.array([p.peak for p in found]),
    )
