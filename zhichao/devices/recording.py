"""The ``zhichao.raw/1`` recording format: raw strip-sensor samples of a lane.

One ``.npz`` file per recording, holding two arrays:

``samples``
    float32 ``[n_samples, n_channels]``: each channel's raw output [output units].
``meta``
    0-d string array of UTF-8 JSON, see :class:`RecordingMeta` and ``docs/formats.md``.

A strip's output is ``sensitivity_per_n * F(t) + offset(t) + noise`` where ``F`` is the
vertical force on that half-strip [N]. Every reader error names the file and the problem.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.common import format_utc, parse_utc, write_atomic
from zhichao.devices.errors import RecordingError

FORMAT = "zhichao.raw/1"
CHANNEL_KINDS: frozenset[str] = frozenset({"strip"})
SIDES: frozenset[str] = frozenset({"L", "R"})


@dataclass(frozen=True)
class ChannelSpec:
    """One half-strip sensor channel.

    Attributes
    ----------
    name : channel name, unique in the recording.
    kind : ``"strip"`` (the only kind of ``zhichao.raw/1``).
    row : sensor row, 1 = most upstream.
    side : ``"L"`` or ``"R"`` half of the lane, in the direction of travel.
    x_m : distance of the row downstream of row 1 [m].
    width_m : strip width along the direction of travel [m].
    sensitivity_per_n : nominal output per newton [output units / N] (may be negative).
    full_scale : optional absolute output at which the acquisition saturates [output units].
    """

    name: str
    kind: str
    row: int
    side: str
    x_m: float
    width_m: float
    sensitivity_per_n: float
    full_scale: float | None = None


@dataclass(frozen=True)
class RecordingMeta:
    """Recording metadata (the ``meta`` JSON)."""

    sample_rate_hz: float
    start_utc: datetime
    site_id: str
    lane_id: str
    pavement_temperature_c: float
    channels: tuple[ChannelSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def rows(self) -> tuple[int, ...]:
        """Row numbers present, ascending."""
        return tuple(sorted({c.row for c in self.channels}))

    def row_x_m(self, row: int) -> float:
        return next(c.x_m for c in self.channels if c.row == row)

    def to_json(self) -> str:
        channels = []
        for c in self.channels:
            d = asdict(c)
            if d["full_scale"] is None:
                del d["full_scale"]
            channels.append(d)
        body: dict[str, Any] = {
            "format": FORMAT,
            "sample_rate_hz": self.sample_rate_hz,
            "start_utc": format_utc(self.start_utc),
            "site_id": self.site_id,
            "lane_id": self.lane_id,
            "pavement_temperature_c": self.pavement_temperature_c,
            "channels": channels,
        }
        body.update(self.extra)
        return json.dumps(body, ensure_ascii=False, sort_keys=False)

    def time_of_sample(self, index: float) -> datetime:
        """UTC time of a (possibly fractional) sample index."""
        return self.start_utc + timedelta(seconds=float(index) / self.sample_rate_hz)


@dataclass(frozen=True)
class Recording:
    """A loaded recording. ``samples`` is C-contiguous float32 ``[n_samples, n_channels]``."""

    samples: npt.NDArray[np.float32]
    meta: RecordingMeta
    path: Path | None = None

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0] / self.meta.sample_rate_hz)


def _fail(where: str, problem: str) -> RecordingError:
    return RecordingError(f"{where}: {problem}")


def _number(where: str, d: dict[str, Any], key: str) -> float:
    if key not in d:
        raise _fail(where, f"missing '{key}'")
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"'{key}' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise _fail(where, f"'{key}' must be finite, got {value!r}")
    return float(value)


def parse_meta(text: str, where: str = "<meta>") -> RecordingMeta:
    """Parse and validate the ``meta`` JSON; ``where`` names the file in errors."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(where, f"meta is not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise _fail(where, "meta must be a JSON object")
    if d.get("format") != FORMAT:
        raise _fail(where, f"format is {d.get('format')!r}, expected {FORMAT!r}")
    rate = _number(where, d, "sample_rate_hz")
    if rate <= 0:
        raise _fail(where, f"sample_rate_hz must be > 0, got {rate}")
    try:
        start = parse_utc(d.get("start_utc"))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise _fail(where, f"start_utc: {exc}") from None
    for key in ("site_id", "lane_id"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise _fail(where, f"'{key}' must be a non-empty string")
    temperature = _number(where, d, "pavement_temperature_c")
    raw_channels = d.get("channels")
    if not isinstance(raw_channels, list) or not raw_channels:
        raise _fail(where, "'channels' must be a non-empty list")
    channels: list[ChannelSpec] = []
    for i, c in enumerate(raw_channels):
        cw = f"{where}: channel {i}"
        if not isinstance(c, dict):
            raise _fail(cw, "must be an object")
        name = c.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(cw, "'name' must be a non-empty string")
        cw = f"{where}: channel {i} ({name})"
        kind = c.get("kind")
        if kind not in CHANNEL_KINDS:
            raise RecordingError(f"{cw}: unknown channel kind {kind!r} (known: strip)")
        row = c.get("row")
        if isinstance(row, bool) or not isinstance(row, int) or row < 1:
            raise RecordingError(f"{cw}: 'row' must be an integer >= 1, got {row!r}")
        side = c.get("side")
        if side not in SIDES:
            raise RecordingError(f"{cw}: 'side' must be 'L' or 'R', got {side!r}")
        x_m = _number(cw, c, "x_m")
        width_m = _number(cw, c, "width_m")
        if width_m <= 0:
            raise RecordingError(f"{cw}: width_m must be > 0, got {width_m}")
        sens = _number(cw, c, "sensitivity_per_n")
        if sens == 0:
            raise RecordingError(f"{cw}: sensitivity_per_n must not be 0")
        full_scale: float | None = None
        if c.get("full_scale") is not None:
            full_scale = _number(cw, c, "full_scale")
            if full_scale <= 0:
                raise RecordingError(f"{cw}: full_scale must be > 0, got {full_scale}")
        channels.append(ChannelSpec(name, kind, row, side, x_m, width_m, sens, full_scale))
    _check_geometry(where, channels)
    known = {"format", "sample_rate_hz", "start_utc", "site_id", "lane_id",
             "pavement_temperature_c", "channels"}
    extra = {k: v for k, v in d.items() if k not in known}
    return RecordingMeta(rate, start, d["site_id"], d["lane_id"], temperature,
                         tuple(channels), extra)


def _check_geometry(where: str, channels: Sequence[ChannelSpec]) -> None:
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise _fail(where, "channel names are not unique")
    by_row: dict[int, dict[str, ChannelSpec]] = {}
    for c in channels:
        sides = by_row.setdefault(c.row, {})
        if c.side in sides:
            raise _fail(where, f"row {c.row} has two channels on side {c.side}")
        sides[c.side] = c
    for row, sides in sorted(by_row.items()):
        missing = SIDES - sides.keys()
        if missing:
            raise _fail(where, f"row {row} is missing side {''.join(sorted(missing))}")
        if sides["L"].x_m != sides["R"].x_m:
            raise _fail(where, f"row {row}: L and R halves have different x_m")
    rows = sorted(by_row)
    if rows != list(range(1, len(rows) + 1)):
        raise _fail(where, f"rows must be numbered 1..K without gaps, got {rows}")
    if by_row[1]["L"].x_m != 0.0:
        raise _fail(where, "row 1 must be at x_m = 0 (x_m is measured from row 1)")
    xs = [by_row[r]["L"].x_m for r in rows]
    if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise _fail(where, f"rows must lie strictly downstream of each other, got x_m {xs}")


def validate_samples(samples: npt.NDArray[Any], meta: RecordingMeta, where: str) -> None:
    """Check shape and finiteness of a samples array against its meta."""
    if samples.ndim != 2:
        raise _fail(where, f"samples must be 2-D [n_samples, n_channels], got {samples.ndim}-D")
    if samples.shape[1] != meta.n_channels:
        raise _fail(where, f"samples have {samples.shape[1]} columns but meta lists "
                           f"{meta.n_channels} channels")
    if samples.dtype != np.float32:
        raise _fail(where, f"samples must be float32, got {samples.dtype}")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise _fail(where, f"samples contain NaN or inf (first at sample {bad[0]}, "
                           f"channel {meta.channels[bad[1]].name})")


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Read and validate a ``zhichao.raw/1`` file.

    Raises
    ------
    RecordingError
        The file is missing, truncated, not an npz, or inconsistent; the message names it.
    """
    p = Path(path)
    where = str(p)
    try:
        with np.load(p, allow_pickle=False) as npz:
            if "samples" not in npz.files or "meta" not in npz.files:
                raise _fail(where, f"expected arrays 'samples' and 'meta', found {npz.files}")
            meta_arr = npz["meta"]
            samples = npz["samples"]
    except RecordingError:
        raise
    except FileNotFoundError:
        raise _fail(where, "no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise _fail(where, f"not a readable .npz recording (truncated or corrupt?): {exc}"
                    ) from None
    if meta_arr.shape != () or meta_arr.dtype.kind not in "US":
        raise _fail(where, "meta must be a 0-d string array")
    meta_text = meta_arr.item()
    if isinstance(meta_text, bytes):
        try:
            meta_text = meta_text.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(where, "meta is not UTF-8") from None
    meta = parse_meta(meta_text, where)
    validate_samples(samples, meta, where)
    return Recording(np.ascontiguousarray(samples), meta, p)


def write_recording(path: str | os.PathLike[str], samples: npt.NDArray[np.float32],
                    meta: RecordingMeta) -> Path:
    """Write a recording atomically (temporary file, fsync, rename)."""
    p = Path(path)
    validate_samples(samples, meta, str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, samples=np.ascontiguousarray(samples, dtype=np.float32),
             meta=np.array(meta.to_json()))
    write_atomic(p, buf.getvalue())
    return p
