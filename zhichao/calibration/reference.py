"""Reference weights: ``REF.csv`` with the static gross and axle loads of each recording.

Columns: ``recording`` (the recording's file name), ``gross_weight_kg``, ``axle_loads_kg``
(``;``-separated, front to rear). The static values come from a certified static scale and
are the conventional true values of a calibration or verification.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from zhichao.calibration.errors import ReferenceFileError

REQUIRED_COLUMNS = ("recording", "gross_weight_kg", "axle_loads_kg")


@dataclass(frozen=True)
class ReferenceWeights:
    recording: str
    gross_weight_kg: float
    axle_loads_kg: tuple[float, ...]


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
        if abs(total / gross - 1.0) > 0.02:
            raise ReferenceFileError(
                f"{where}: axle loads sum to {total:.0f} kg but gross is {gross:.0f} kg "
                f"(more than 2 % apart)")
        out[name] = ReferenceWeights(name, gross, axles)
    if not out:
        raise ReferenceFileError(f"{p}: no reference rows")
    return out


def _positive(value: str | None, where: str) -> float:
    try:
        x = float((value or "").strip())
    except ValueError:
        raise ReferenceFileError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x) or x <= 0:
        raise ReferenceFileError(f"{where}: must be a positive number of kg, got {value!r}")
    return x
