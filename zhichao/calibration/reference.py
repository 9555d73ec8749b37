"""Reference weights: ``REF.csv`` with the static gross and axle loads of each recording.

Columns: ``recording`` (the recording's file name), ``gross_weight_kg``, ``axle_loads_kg``
(``;``-separated, front to rear). The static values come from a certified static scale and
are the conventional true values of a calibration or verification.

Optional column ``wheel_loads_kg``: per axle ``left/right`` from a static wheel-load scale,
``;``-separated front to rear (``3200/3210;4800/4810``); may be empty on some rows. Each
axle's left + right must agree with its axle load within 2 %. When given, the calibration
fits the left/right split of each row from it instead of assuming balanced trucks.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from zhichao.calibration.errors import ReferenceFileError

REQUIRED_COLUMNS = ("recording", "gross_weight_kg", "axle_loads_kg")
OPTIONAL_COLUMNS = ("wheel_loads_kg",)
# static scales: an axle's wheel loads and its axle load agree within this (same tolerance
# as axle loads against the gross)
SUM_TOLERANCE = 0.02


@dataclass(frozen=True)
class ReferenceWeights:
    recording: str
    gross_weight_kg: float
    axle_loads_kg: tuple[float, ...]
    wheel_loads_kg: tuple[tuple[float, float], ...] | None = None  # per axle (left, right)

    @property
    def left_share(self) -> float | None:
        """The static left share of the vehicle's load (None without wheel loads)."""
        if self.wheel_loads_kg is None:
            return None
        left = sum(w[0] for w in self.wheel_loads_kg)
        return left / sum(w[0] + w[1] for w in self.wheel_loads_kg)


def read_reference(path: str | Path) -> dict[str, ReferenceWeights]:
    """Read a reference file; every problem names the file and the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ReferenceFileError(f"{p}: no such reference file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceFileError(f"{p}: unreadable reference file ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ReferenceFileError(f"{p}: missing column(s) {', '.join(missing)} "
                                 f"(need {', '.join(REQUIRED_COLUMNS)})")
    out: dict[str, ReferenceWeights] = {}
    for line_no, row in enumerate(reader, start=2):
        where = f"{p}:{line_no}"
        name = (row.get("recording") or "").strip()
        if not name:
            raise ReferenceFileError(f"{where}: empty 'recording'")
        name = Path(name).name
        if name in out:
            raise ReferenceFileError(f"{where}: recording {name!r} listed twice")
        gross = _positive(row.get("gross_weight_kg"), f"{where}: gross_weight_kg")
        raw_axles = (row.get("axle_loads_kg") or "").strip()
        if not raw_axles:
            raise ReferenceFileError(f"{where}: empty 'axle_loads_kg'")
        axles = tuple(_positive(a, f"{where}: axle_loads_kg[{i + 1}]")
                      for i, a in enumerate(raw_axles.split(";")))
        if len(axles) < 2:
            raise ReferenceFileError(f"{where}: a vehicle has at least two axle loads")
        total = sum(axles)
        if abs(total / gross - 1.0) > SUM_TOLERANCE:
            raise ReferenceFileError(
                f"{where}: axle loads sum to {total:.0f} kg but gross is {gross:.0f} kg "
                f"(more than 2 % apart)")
        wheels = _wheel_loads(row.get("wheel_loads_kg"), axles, where)
        out[name] = ReferenceWeights(name, gross, axles, wheels)
    if not out:
        raise ReferenceFileError(f"{p}: no reference rows")
    return out


def _wheel_loads(value: str | None, axles: tuple[float, ...], where: str
                 ) -> tuple[tuple[float, float], ...] | None:
    raw = (value or "").strip()
    if not raw:
        return None
    items = raw.split(";")
    if len(items) != len(axles):
        raise ReferenceFileError(f"{where}: wheel_loads_kg has {len(items)} axles but "
                                 f"axle_loads_kg has {len(axles)}")
    out: list[tuple[float, float]] = []
    for i, (item, axle) in enumerate(zip(items, axles, strict=True)):
        here = f"{where}: wheel_loads_kg[{i + 1}]"
        parts = item.split("/")
        if len(parts) != 2:
            raise ReferenceFileError(f"{here}: {item.strip()!r} is not LEFT/RIGHT")
        left = _positive(parts[0], f"{here} left")
        right = _positive(parts[1], f"{here} right")
        if abs((left + right) / axle - 1.0) > SUM_TOLERANCE:
            raise ReferenceFileError(
                f"{here}: wheels sum to {left + right:.0f} kg but the axle load is "
                f"{axle:.0f} kg (more than 2 % apart)")
        out.append((left, right))
    return tuple(out)


def _positive(value: str | None, where: str) -> float:
    try:
        x = float((value or "").strip())
    except ValueError:
        raise ReferenceFileError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x) or x <= 0:
        raise ReferenceFileError(f"{where}: must be a positive number of kg, got {value!r}")
    return x
