"""Simulated WIM lane: strip-sensor signals of simulated traffic, written as ``zhichao.raw/1``.

Physics of one half-strip channel (row r, side s)::

    output(t) = sens_true(s, y, T) * F(t) + offset(t) + noise(t)

where ``F`` is the vertical force of every tyre on that half-strip: the wheel's dynamic
load times the fraction of its contact patch over the strip (longitudinally, with a
``1 - u**4`` pressure profile over the contact length) and over that half (laterally,
uniform over the tyre width). ``sens_true`` differs from the nominal sensitivity by a
per-channel error, varies slowly along the strip, and with pavement temperature
(quartz ≈ −0.02 %/°C). Offsets drift as a slow random walk; noise is white.

For calibration studies a lane can keep its sensors across recordings (``sensor_seed``),
give each half-strip its own temperature coefficient, and drift slowly in sensitivity
(``drift_pct`` from ``drift_start_utc`` over ``drift_ramp_h``). Reference-truck sessions are
in :mod:`zhichao.devices.sim.reference`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.common import format_utc
from zhichao.devices.errors import SimulationError
from zhichao.devices.recording import ChannelSpec, RecordingMeta, write_recording
from zhichao.devices.sim.traffic import (
    ABNORMAL_KINDS,
    CATALOGUE,
    TRAFFIC_MIX,
    SimVehicle,
    make_vehicle,
)

G_MS2 = 9.80665
TRUTH_FORMAT = "zhichao.truth/1"


def default_row_positions_m(n_rows: int) -> list[float]:
    """Row positions: spacings 2.0, 2.5, 3.0 … m, so the rows sample the body bounce at
    different phases (rows spread over a good part of its wavelength)."""
    if n_rows < 2:
        raise SimulationError("at least two sensor rows are needed to measure speed")
    xs = [0.0]
    for i in range(n_rows - 1):
        xs.append(round(xs[-1] + 2.0 + 0.5 * i, 3))
    return xs


@dataclass
class SimOptions:
    """Everything the simulator can be told. Defaults give a normally working lane."""

    n_rows: int = 4
    row_positions_m: list[float] | None = None
    sample_rate_hz: float = 5000.0
    strip_width_m: float = 0.05
    half_length_m: float = 1.75  # each half-strip covers 1.75 m of the 3.5 m lane
    sensitivity_per_n: float = 1.0e-4  # nominal [output units / N]
    sensitivity_error_pct: float = 1.0  # true per-channel sensitivity within ± this
    sensitivity_along_length_pct: float = 1.0  # variation end to end along a half-strip
    temperature_coefficient_per_c: float = -0.0002  # quartz: −0.02 %/°C
    reference_temperature_c: float = 20.0
    temperature_c: tuple[float, float] = (-5.0, 45.0)
    noise_units: float = 0.002
    offset_units: float = 0.05
    drift_units_per_sqrt_s: float = 0.0016
    full_scale: float = 10.0
    road: str = "smooth"
    speed_kmh: tuple[float, float] = (5.0, 100.0)
    load_profile: str = "mixed"
    abnormal_fraction: float = 0.1
    abnormal_kinds: tuple[str, ...] = ABNORMAL_KINDS
    mix: dict[str, float] = field(default_factory=lambda: dict(TRAFFIC_MIX))
    trucks_only: bool = False
    dead_channel_probability: float = 0.0
    site_id: str = "SIM-SITE-01"
    lane_id: str = "1"
    start_utc: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 8, 0, tzinfo=UTC))
    # --- a persistent lane (calibration studies). Defaults keep the behaviour above: each
    # recording draws its own sensor errors from its own random stream.
    sensor_seed: int | None = None  # set: every recording has the same sensors (this seed)
    temperature_coefficient_spread_per_c: float = 0.0  # per channel TC within base ± this
    drift_pct: float = 0.0  # injected sensitivity drift reached after drift_ramp_h
    drift_start_utc: datetime | None = None  # drift begins here (None: no drift)
    drift_ramp_h: float = 0.0  # 0: a step; else linear over this many hours
    drift_channels: tuple[str, ...] = ()  # channel names that drift; empty: all channels

    def rows_m(self) -> list[float]:
        if self.row_positions_m is not None:
            if len(self.row_positions_m) != self.n_rows:
                raise SimulationError("row_positions_m must list one position per row")
            return list(self.row_positions_m)
        return default_row_positions_m(self.n_rows)


@dataclass
class PlacedVehicle:
    """A vehicle with its trajectory in the recording."""

    vehicle: SimVehicle
    first_index: int  # sample index where the trajectory starts
    x_front_m: npt.NDArray[np.float64]  # front-axle position per sample from first_index
    t0_s: float  # time (from the recording start) when the first axle crosses row 1
    speed_at_row1_kmh: float


def _trajectory(v: SimVehicle, fs: float, t_start_s: float, x_start_m: float,
                x_end_m: float, x_array_end_m: float) -> npt.NDArray[np.float64]:
    """Front-axle position [m] per sample from ``t_start_s`` until the last axle clears
    ``x_end_m``. Speeds never drop below a crawl (1 m/s) except when reversing."""
    dt = 1.0 / fs
    v0 = v.speed_kmh / 3.6
    length = float(v.axle_offsets_m[-1])
    if v.reverse_distance_m > 0:
        # forward at v0 until the middle axle is past the array, stop, back up, go on
        mid = float(v.axle_offsets_m[len(v.axle_offsets_m) // 2])
        x_stop = x_array_end_m + mid + 1.0
        t1 = (x_stop - x_start_m) / v0
        vr = 1.0
        hold = max(0.0, (v.reverse_distance_m - vr * 1.0) / vr)
        knots_t = [0.0, t1, t1 + 1.0, t1 + 2.0, t1 + 3.0, t1 + 3.0 + hold, t1 + 4.0 + hold,
                   t1 + 5.0 + hold, t1 + 7.0 + hold]
        knots_v = [v0, v0, 0.0, 0.0, -vr, -vr, 0.0, 0.0, v0]
        total = (x_end_m + length - x_start_m + v.reverse_distance_m) / v0 + knots_t[-1] + 2
        t = np.arange(0.0, total, dt)
        vel = np.interp(t, knots_t, knots_v)
    else:
        a = v.acceleration_ms2
        # place the reference speed v0 at row 1: v(x) = sqrt(v0² + 2 a x), floored
        x_grid = np.arange(x_start_m, x_end_m + length + 0.02, 0.01)
        vx = np.sqrt(np.maximum(v0 * v0 + 2.0 * a * x_grid, 1.0))
        vx = np.maximum(vx, 1.0)
        t_grid = np.concatenate([[0.0], np.cumsum(np.diff(x_grid) * 2.0 / (vx[1:] + vx[:-1]))])
        t = np.arange(0.0, t_grid[-1], dt)
        return np.asarray(np.interp(t, t_grid, x_grid))
    x = x_start_m + np.concatenate([[0.0], np.cumsum((vel[1:] + vel[:-1]) * 0.5 * dt)])
    # end once the last axle is past x_end for good: a reversing vehicle's last axle may
    # pass it before the vehicle stops and backs over the array again
    inside = np.nonzero(x - length <= x_end_m)[0]
    if len(inside) and inside[-1] + 1 < len(x):
        x = x[: inside[-1] + 2]
    return np.asarray(x)


def _long_fraction(xa: npt.NDArray[np.float64], x_row: float, width_m: float,
                   contact_m: float) -> npt.NDArray[np.float64]:
    """Fraction of a tyre's load over a strip [x_row, x_row + width] when the patch centre is
    at ``xa``; pressure ∝ 1 − u⁴ over the contact length (u ∈ [−1, 1])."""
    half = contact_m / 2.0
    u_lo = np.clip((x_row - xa) / half, -1.0, 1.0)
    u_hi = np.clip((x_row + width_m - xa) / half, -1.0, 1.0)
    cdf_lo = u_lo - u_lo**5 / 5.0
    cdf_hi = u_hi - u_hi**5 / 5.0
    return np.asarray((cdf_hi - cdf_lo) / 1.6)


def _lateral_fractions(y_centre: float, tyre_width_m: float, half_m: float) -> tuple[float, float]:
    """Fractions of a tyre on the left half [-H, 0] and right half [0, H]."""
    lo, hi = y_centre - tyre_width_m / 2, y_centre + tyre_width_m / 2
    left = max(0.0, min(hi, 0.0) - max(lo, -half_m)) / tyre_width_m
    right = max(0.0, min(hi, half_m) - max(lo, 0.0)) / tyre_width_m
    return left, right


def tyre_width_m(v: SimVehicle, axle: int) -> float:
    if not v.config.is_truck:
        return 0.2
    return 0.55 if v.tyres[axle] == "dual" else 0.3


def contact_length_m(wheel_kg: float) -> float:
    return float(np.clip(0.10 + 0.03 * wheel_kg / 1000.0, 0.10, 0.40))


def lateral_truth(v: SimVehicle, half_m: float) -> dict[str, float]:
    """How far tyres are off their own half: off the outer edge, and over the seam."""
    off_edge = 0.0
    over_seam = 0.0
    for j in range(v.n_axles):
        b = tyre_width_m(v, j)
        for side, sign in ((0, -1.0), (1, 1.0)):
            y = sign * v.config.track_m / 2 + v.lateral_offset_m
            lo, hi = y - b / 2, y + b / 2
            outer = max(0.0, hi - half_m) + max(0.0, -half_m - lo)
            off_edge = max(off_edge, outer / b)
            seam = max(0.0, hi - 0.0) if side == 0 else max(0.0, 0.0 - lo)
            over_seam = max(over_seam, min(seam, b) / b)
    return {"off_edge_fraction": off_edge, "over_seam_fraction": over_seam}


def plan_traffic(rng: np.random.Generator, n: int, opts: SimOptions) -> list[SimVehicle]:
    """Draw ``n`` vehicles, each normal or (with ``abnormal_fraction``) driven abnormally."""
    mix = {k: w for k, w in opts.mix.items() if not opts.trucks_only or CATALOGUE[k].is_truck}
    codes = sorted(mix)
    weights = np.array([mix[c] for c in codes], dtype=float)
    weights /= weights.sum()
    out: list[SimVehicle] = []
    for _ in range(n):
        config = CATALOGUE[codes[rng.choice(len(codes), p=weights)]]
        speed = float(rng.uniform(*opts.speed_kmh))
        abnormal = None
        if opts.abnormal_kinds and rng.random() < opts.abnormal_fraction:
            abnormal = opts.abnormal_kinds[rng.integers(len(opts.abnormal_kinds))]
        out.append(make_vehicle(rng, config, speed_kmh=speed, load_profile=opts.load_profile,
                                road=opts.road, abnormal=abnormal))
    return out


def _place(vehicles: list[SimVehicle], opts: SimOptions, rng: np.random.Generator,
           rows_m: list[float]) -> list[PlacedVehicle]:
    fs = opts.sample_rate_hz
    x_array_end = rows_m[-1] + opts.strip_width_m
    x_start = -3.0
    x_end = x_array_end + 0.6
    placed: list[PlacedVehicle] = []
    t_cursor = 0.0
    for v in vehicles:
        following = "close_following" in v.abnormal and placed
        if following and placed[-1].vehicle.reverse_distance_m > 0:
            # nobody can follow close behind a vehicle that will back up towards them
            v.abnormal.remove("close_following")
            following = False
        if following:
            prev = placed[-1]
            # same speed as the vehicle in front when it is close-followed
            pv = prev.vehicle
            v.speed_kmh = pv.speed_kmh
            v.acceleration_ms2 = pv.acceleration_ms2
            v.reverse_distance_m = 0.0
            if "close_following" not in pv.abnormal:
                pv.abnormal.append("close_following")
        x = _trajectory(v, fs, 0.0, x_start, x_end, x_array_end)
        # "on row 1" = the axle over the centre line of the row-1 strip
        x_ref = opts.strip_width_m / 2.0
        k_row1 = int(np.searchsorted(x, x_ref)) if np.all(np.diff(x) >= 0) else int(
            np.argmax(x >= x_ref))
        if following:
            prev = placed[-1]
            pv = prev.vehicle
            bumper_gap = float(rng.uniform(1.5, 8.0))
            axle_gap = pv.rear_overhang_m + bumper_gap + v.front_overhang_m
            last_axle = prev.x_front_m - pv.axle_offsets_m[-1]
            reached = np.nonzero(last_axle >= axle_gap)[0]
            if len(reached):
                t_row1 = (prev.first_index + int(reached[0])) / fs
            else:  # the leader's trajectory ends first: extrapolate at its final speed
                v_end = max((last_axle[-1] - last_axle[-2]) * fs, 0.3)
                t_row1 = (prev.first_index + len(last_axle) - 1
                          + (axle_gap - last_axle[-1]) / v_end * fs) / fs
        else:
            t_row1 = max(t_cursor + float(rng.uniform(0.2, 1.0)), 0.5 + k_row1 / fs)
        first_index = max(0, round(t_row1 * fs) - k_row1)
        # exact crossing time of row 1 by interpolation
        if k_row1 > 0:
            frac = (x_ref - x[k_row1 - 1]) / max(x[k_row1] - x[k_row1 - 1], 1e-12)
        else:
            frac = 0.0
        t0 = (first_index + k_row1 - 1 + frac) / fs
        speed_row1 = (x[k_row1] - x[max(k_row1 - 1, 0)]) * fs * 3.6
        placed.append(PlacedVehicle(v, first_index, x, t0, float(speed_row1)))
        # when this vehicle's last axle clears the array, plus a normal headway gap
        # (for good: a reversing vehicle's last axle may clear it, back over it, clear again)
        last = x - v.axle_offsets_m[-1]
        on_array = np.nonzero(last < x_array_end + 0.5)[0]
        k_clear = int(on_array[-1]) + 1 if len(on_array) else 0
        t_clear = (first_index + k_clear) / fs
        speed_clear = max(abs(v.speed_kmh) / 3.6, 1.0)
        t_cursor = max(t_cursor, t_clear + 12.0 / speed_clear)
    return placed


def simulate_recording(rng: np.random.Generator, vehicles: list[SimVehicle],
                       opts: SimOptions) -> tuple[npt.NDArray[np.float32], RecordingMeta,
                                                  dict[str, Any]]:
    """Synthesize the samples of one recording with these vehicles passing in order."""
    fs = opts.sample_rate_hz
    rows_m = opts.rows_m()
    placed = _place(vehicles, opts, rng, rows_m)
    n_samples = max(p.first_index + len(p.x_front_m) for p in placed) + int(0.5 * fs)
    n_rows = len(rows_m)
    n_ch = 2 * n_rows
    temperature = float(rng.uniform(*opts.temperature_c))
    sens_err = rng.uniform(-opts.sensitivity_error_pct, opts.sensitivity_error_pct, n_ch) / 100
    along = rng.uniform(-opts.sensitivity_along_length_pct, opts.sensitivity_along_length_pct,
                        n_ch) / 100
    alpha = np.full(n_ch, opts.temperature_coefficient_per_c)
    if opts.sensor_seed is not None:
        # the lane's own sensors, the same in every recording (drawn after the draws above,
        # which are kept so that the traffic does not depend on this option)
        srng = np.random.default_rng(opts.sensor_seed)
        sens_err = srng.uniform(-opts.sensitivity_error_pct, opts.sensitivity_error_pct,
                                n_ch) / 100
        along = srng.uniform(-opts.sensitivity_along_length_pct,
                             opts.sensitivity_along_length_pct, n_ch) / 100
        alpha = alpha + srng.uniform(-1.0, 1.0, n_ch) * opts.temperature_coefficient_spread_per_c
    elif opts.temperature_coefficient_spread_per_c > 0:
        alpha = alpha + rng.uniform(-1.0, 1.0, n_ch) * opts.temperature_coefficient_spread_per_c
    temp_factor = 1.0 + alpha * (temperature - opts.reference_temperature_c)
    drift = drift_factors(opts, [f"r{r + 1}{s}" for r in range(n_rows) for s in "LR"],
                          opts.start_utc)
    sens_true = opts.sensitivity_per_n * (1.0 + sens_err) * temp_factor * drift
    dead: list[int] = []
    if opts.dead_channel_probability > 0 and rng.random() < opts.dead_channel_probability:
        dead.append(int(rng.integers(n_ch)))

    # channel-major while synthesizing (each channel contiguous), sample-major on return
    force = np.zeros((n_ch, n_samples), dtype=np.float64)
    truth_vehicles: list[dict[str, Any]] = []
    for idx, p in enumerate(placed):
        v = p.vehicle
        k0 = p.first_index
        t_abs = (k0 + np.arange(len(p.x_front_m))) / fs
        monotonic = bool(np.all(np.diff(p.x_front_m) >= 0))
        for j in range(v.n_axles):
            xa = p.x_front_m - v.axle_offsets_m[j]
            # the dynamic load factor, evaluated only where a tyre is over a strip
            body_w, hop_w = 2 * np.pi * v.body_hz[j], 2 * np.pi * v.hop_hz[j]
            b = tyre_width_m(v, j)
            for side, sign in ((0, -1.0), (1, 1.0)):
                wheel_kg = float(v.wheel_loads_kg[j, side])
                contact = contact_length_m(wheel_kg)
                y = sign * v.config.track_m / 2 + v.lateral_offset_m
                lat = _lateral_fractions(y, b, opts.half_length_m)
                for r, x_row in enumerate(rows_m):
                    lo = x_row - contact / 2 - 1e-3
                    hi = x_row + opts.strip_width_m + contact / 2 + 1e-3
                    # a slice where the axle only moves forward (no index copies)
                    sel: slice | npt.NDArray[np.intp]
                    if monotonic:
                        a_i, b_i = np.searchsorted(xa, [lo, hi])
                        sel = slice(int(a_i), int(b_i))
                        at: slice | npt.NDArray[np.intp] = slice(k0 + int(a_i), k0 + int(b_i))
                        if b_i <= a_i:
                            continue
                    else:
                        sel = np.nonzero((xa > lo) & (xa < hi))[0]
                        at = k0 + sel
                        if len(sel) == 0:
                            continue
                    t_sel = t_abs[sel]
                    dyn = (1.0 + v.body_amp[j] * np.sin(body_w * t_sel + v.body_phase[j])
                           + v.hop_amp[j] * np.sin(hop_w * t_sel + v.hop_phase[j]))
                    f_n = (wheel_kg * G_MS2 * dyn
                           * _long_fraction(xa[sel], x_row, opts.strip_width_m, contact))
                    for half in (0, 1):
                        if lat[half] <= 0:
                            continue
                        ch = 2 * r + half
                        y_rel = y / opts.half_length_m * (1 if half else -1)
                        s_along = 1.0 + along[ch] * (y_rel - 0.5)
                        force[ch, at] += f_n * lat[half] * s_along
        truth_vehicles.append(_truth_of(idx, p, opts))

    out = force
    out *= sens_true[:, None]
    for ch in dead:
        out[ch] = 0.0
    # offsets: initial offset plus a slow random walk (0.1 s steps), linearly interpolated
    step_s = 0.1
    n_steps = int(math.ceil(n_samples / fs / step_s)) + 2
    walk = np.cumsum(rng.normal(0.0, opts.drift_units_per_sqrt_s * math.sqrt(step_s),
                                (n_steps, n_ch)), axis=0)
    walk += rng.uniform(-opts.offset_units, opts.offset_units, n_ch)[None, :]
    t_steps = np.arange(n_steps) * step_s
    t_samples = np.arange(n_samples) / fs
    noise = rng.standard_normal((n_samples, n_ch), dtype=np.float32)
    noise *= np.float32(opts.noise_units)
    by_channel = np.empty((n_ch, n_samples), dtype=np.float32)
    for ch in range(n_ch):
        row = out[ch]
        row += np.interp(t_samples, t_steps, walk[:, ch])
        row += noise[:, ch]
        by_channel[ch] = row
    np.clip(by_channel, -opts.full_scale, opts.full_scale, out=by_channel)
    samples = np.ascontiguousarray(by_channel.T)

    channels = []
    for r, x_row in enumerate(rows_m):
        for side_name in ("L", "R"):
            channels.append(ChannelSpec(
                name=f"r{r + 1}{side_name}", kind="strip", row=r + 1, side=side_name,
                x_m=float(x_row),
                width_m=opts.strip_width_m, sensitivity_per_n=opts.sensitivity_per_n,
                full_scale=opts.full_scale))
    meta = RecordingMeta(
        sample_rate_hz=fs, start_utc=opts.start_utc, site_id=opts.site_id,
        lane_id=opts.lane_id, pavement_temperature_c=round(temperature, 2),
        channels=tuple(channels), extra={"simulated": True})
    truth = {
        "format": TRUTH_FORMAT,
        "sample_rate_hz": fs,
        "start_utc": format_utc(opts.start_utc),
        "pavement_temperature_c": round(temperature, 2),
        "road": opts.road,
        "channels": [
            {"name": c.name, "sensitivity_true_per_n": float(s),
             "sensitivity_error": float(e), "along_length_gradient": float(g),
             "temperature_coefficient_per_c": float(a), "drift_factor": float(d)}
            for c, s, e, g, a, d in zip(channels, sens_true, sens_err, along, alpha, drift,
                                        strict=True)],
        "temperature_coefficient_per_c": opts.temperature_coefficient_per_c,
        "reference_temperature_c": opts.reference_temperature_c,
        "dead_channels": [channels[c].name for c in dead],
        "vehicles": truth_vehicles,
    }
    return samples, meta, truth


def drift_factors(opts: SimOptions, channel_names: list[str], at_utc: datetime
                  ) -> npt.NDArray[np.float64]:
    """Injected sensitivity drift per channel at a time: ``1 + drift_pct/100 · ramp``."""
    out = np.ones(len(channel_names))
    if opts.drift_pct == 0.0 or opts.drift_start_utc is None:
        return out
    elapsed_h = (at_utc - opts.drift_start_utc).total_seconds() / 3600.0
    if elapsed_h < 0:
        return out
    ramp = 1.0 if opts.drift_ramp_h <= 0 else min(1.0, elapsed_h / opts.drift_ramp_h)
    unknown = set(opts.drift_channels) - set(channel_names)
    if unknown:
        raise SimulationError(f"drift_channels names channels the lane lacks: {sorted(unknown)}")
    for i, name in enumerate(channel_names):
        if not opts.drift_channels or name in opts.drift_channels:
            out[i] = 1.0 + opts.drift_pct / 100.0 * ramp
    return out


def _truth_of(idx: int, p: PlacedVehicle, opts: SimOptions) -> dict[str, Any]:
    v = p.vehicle
    start = opts.start_utc + timedelta(seconds=p.t0_s)
    return {
        "index": idx,
        "config": v.config.code,
        "is_truck": v.config.is_truck,
        "vehicle_class": v.config.legal_class,
        "limit_kg": v.config.limit_kg,
        "drive_axle": v.config.drive_axle,
        "axle_count": v.n_axles,
        "axle_spacings_m": [round(float(s), 4) for s in v.spacings_m],
        "axle_loads_kg": [round(float(a), 1) for a in v.axle_loads_kg],
        "wheel_loads_kg": [[round(float(w), 1) for w in row] for row in v.wheel_loads_kg],
        "gross_weight_kg": round(v.gross_weight_kg, 1),
        "tyres": list(v.tyres),
        "speed_kmh": round(p.speed_at_row1_kmh, 3),
        "acceleration_ms2": round(v.acceleration_ms2, 4),
        "lateral_offset_m": round(v.lateral_offset_m, 4),
        "lateral": {k: round(x, 4) for k, x in lateral_truth(v, opts.half_length_m).items()},
        "reverse_distance_m": round(v.reverse_distance_m, 3),
        "abnormal": list(v.abnormal),
        "first_axle_time_utc": format_utc(start),
        "first_axle_sample": p.t0_s * opts.sample_rate_hz,
        "trajectory_first_sample": p.first_index,
        "trajectory_last_sample": p.first_index + len(p.x_front_m) - 1,
    }


def simulated_recordings(n_vehicles: int, seed: int, opts: SimOptions | None = None,
                         vehicles_per_recording: int = 10
                         ) -> Iterator[tuple[npt.NDArray[np.float32], RecordingMeta,
                                             dict[str, Any]]]:
    """The recordings :func:`simulate` writes, in memory: ``(samples, meta, truth)`` each,
    deterministic per seed (the arguments are checked at once, not at the first one)."""
    if n_vehicles < 1:
        raise SimulationError("--vehicles must be at least 1")
    if vehicles_per_recording < 1:
        raise SimulationError("vehicles per recording must be at least 1")
    return _recordings(n_vehicles, seed, opts or SimOptions(), vehicles_per_recording)


def _recordings(n_vehicles: int, seed: int, opts: SimOptions, vehicles_per_recording: int
                ) -> Iterator[tuple[npt.NDArray[np.float32], RecordingMeta, dict[str, Any]]]:
    root = np.random.default_rng(seed)
    n_rec = math.ceil(n_vehicles / vehicles_per_recording)
    start = opts.start_utc
    for k in range(n_rec):
        rng = np.random.default_rng(root.integers(2**63))
        count = min(vehicles_per_recording, n_vehicles - k * vehicles_per_recording)
        rec_opts = SimOptions(**{**asdict(opts), "start_utc": start})
        vehicles = plan_traffic(rng, count, rec_opts)
        samples, meta, truth = simulate_recording(rng, vehicles, rec_opts)
        yield samples, meta, truth
        start = start + timedelta(seconds=samples.shape[0] / opts.sample_rate_hz + 1.0)


def simulate(n_vehicles: int, seed: int, out_dir: str | Path, opts: SimOptions | None = None,
             vehicles_per_recording: int = 10) -> list[Path]:
    """Write recordings plus one ground-truth JSON per recording; deterministic per seed.

    Returns the recording paths (``rec_00001.npz`` with ``rec_00001.truth.json``).
    """
    recordings = simulated_recordings(n_vehicles, seed, opts, vehicles_per_recording)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for k, (samples, meta, truth) in enumerate(recordings):
        name = f"rec_{k + 1:05d}"
        path = write_recording(out / f"{name}.npz", samples, meta)
        truth["recording"] = path.name
        (out / f"{name}.truth.json").write_text(
            json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
        paths.append(path)
    return paths


def read_truth(recording_path: str | Path) -> dict[str, Any]:
    """The ground truth written beside a simulated recording."""
    p = Path(recording_path)
    truth_path = p.with_name(p.name.removesuffix(".npz") + ".truth.json")
    data: dict[str, Any] = json.loads(truth_path.read_text(encoding="utf-8"))
    return data
