"""Per-half-strip loads of weighed passages, through the weighing core's public interface.

The core reports, per vehicle, the gross weight seen by each complete row
(``row_gross_weights_kg``), i.e. the sum of that row's left and right half-strips. To split
a row into its halves without reaching into the core, the recording is weighed twice with
profiles that differ only in a *temperature divisor* on the left channels:

* pass A: every channel at the base sensitivity, divisor 1 → ``A_r = L_r + R_r``;
* pass B: the same, with the left channels divided by ``f`` (α = 1/°C about T − 1 °C, so
  ``f = 2``) → ``B_r = L_r / f + R_r``.

The divisor is applied after pulse detection (detection uses the sensitivities only), so
both passes detect exactly the same pulses and ``L_r = (A_r − B_r) / (1 − 1/f)``, exactly
linear. The loads are "base-sensitivity" loads: what the lane reports with the base
sensitivities (the nominal ones, or a previous fit) and no other correction.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from zhichao.calibration.errors import CalibrationError
from zhichao.devices.errors import DeviceError
from zhichao.devices.recording import Recording, read_recording
from zhichao.weighing.calibration_profile import CalibrationProfile, ChannelCalibration
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.stream import weigh_recording
from zhichao.weighing.vehicle import WeighedVehicle

_SPLIT_ALPHA_PER_C = 1.0


@dataclass
class PassageLoads:
    """One weighed passage with its loads split per half-strip (base sensitivities)."""

    recording: str
    vehicle: WeighedVehicle  # as weighed with the base sensitivities
    temperature_c: float
    side_loads_kg: npt.NDArray[np.float64]  # [row, side]; NaN where the row is incomplete
    channel_names: list[list[str]]  # [row][side] → channel name

    @property
    def speed_kmh(self) -> float | None:
        return self.vehicle.speed_kmh

    @property
    def complete_rows(self) -> list[int]:
        return [r for r in range(self.side_loads_kg.shape[0])
                if bool(np.all(np.isfinite(self.side_loads_kg[r])))]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _channel_grid(rec: Recording) -> list[list[str]]:
    rows = rec.meta.rows
    grid = [["", ""] for _ in rows]
    for c in rec.meta.channels:
        grid[c.row - 1][0 if c.side == "L" else 1] = c.name
    return grid


def _base_profile(rec: Recording, base: dict[str, float] | None, split_left: bool,
                  temperature_c: float) -> CalibrationProfile | None:
    if base is None and not split_left:
        return None
    chans: dict[str, ChannelCalibration] = {}
    for c in rec.meta.channels:
        sens = c.sensitivity_per_n if base is None else base.get(c.name, c.sensitivity_per_n)
        alpha = _SPLIT_ALPHA_PER_C if split_left and c.side == "L" else 0.0
        chans[c.name] = ChannelCalibration(sens, alpha)
    return CalibrationProfile(
        profile_id="split" if split_left else "base", channels=chans,
        reference_temperature_c=temperature_c - 1.0 if split_left else 20.0)


def measure_recording(path: str | Path, base_sensitivity_per_n: dict[str, float] | None = None,
                      config: WeighingConfig | None = None) -> list[PassageLoads]:
    """Every vehicle of a recording with its per-half-strip loads [kg]."""
    try:
        rec = read_recording(path)
    except DeviceError as exc:
        raise CalibrationError(f"{path}: {exc}") from None
    return measure(rec, base_sensitivity_per_n, config)


def measure(rec: Recording, base_sensitivity_per_n: dict[str, float] | None = None,
            config: WeighingConfig | None = None) -> list[PassageLoads]:
    name = rec.path.name if rec.path is not None else "<recording>"
    t_c = rec.meta.pavement_temperature_c
    try:
        a = weigh_recording(rec, config, _base_profile(rec, base_sensitivity_per_n, False, t_c))
        split = _base_profile(rec, base_sensitivity_per_n, True, t_c)
        b = weigh_recording(rec, config, split)
    except WeighingError as exc:
        raise CalibrationError(f"{name}: {exc}") from None
    assert split is not None
    left = next(c.name for c in rec.meta.channels if c.side == "L")
    f = split.temperature_divisor(left, t_c)
    if len(a) != len(b) or any(x.first_sample != y.first_sample or x.axle_count != y.axle_count
                               for x, y in zip(a, b, strict=False)):
        raise CalibrationError(f"{name}: the two weighings for the left/right split disagree "
                               f"on the vehicles ({len(a)} vs {len(b)}); cannot split rows")
    grid = _channel_grid(rec)
    out: list[PassageLoads] = []
    for va, vb in zip(a, b, strict=True):
        loads = np.full((len(grid), 2), np.nan)
        rows_b = dict(zip(vb.rows_used, vb.row_gross_weights_kg, strict=False))
        for r1, ga in zip(va.rows_used, va.row_gross_weights_kg, strict=False):
            gb = rows_b.get(r1)
            if gb is None or not (math.isfinite(ga) and math.isfinite(gb)):
                continue
            left_kg = (ga - gb) / (1.0 - 1.0 / f)
            loads[r1 - 1] = (left_kg, ga - left_kg)
        out.append(PassageLoads(name, va, t_c, loads, grid))
    return out
