"""Server-side SVG figures of the case page: raw waveform, axle diagram, load bars.

Everything is drawn from the sealed package (the raw ``zhichao.raw/1`` waveform and the
``zhichao.vehicle/1`` record in the manifest); nothing is computed that the package does
not hold. Text placed in a figure is XML-escaped; numbers are formatted, never pasted.
The figures use presentation attributes only (no ``style``), so a strict CSP holds.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np
from markupsafe import Markup

_COLOURS = ("#1f5fa8", "#b8461b", "#2e7d32", "#6a1b9a", "#00838f", "#8d6e00", "#ad1457",
            "#37474f")


class WaveformError(ValueError):
    """The waveform file is not a readable ``zhichao.raw/1`` recording."""


def envelope(values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max envelope of a 1-D signal in at most ``max_points`` buckets.

    Returns ``(index, value)`` pairs, two per bucket (its minimum and its maximum in time
    order), so every peak of the signal survives the decimation. A signal shorter than
    ``max_points`` is returned as it is.
    """
    n = int(values.shape[0])
    if max_points < 2:
        raise ValueError("max_points: at least 2")
    if n <= max_points:
        return np.arange(n, dtype=np.float64), values.astype(np.float64)
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    xs: list[float] = []
    ys: list[float] = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        if stop <= start:
            continue
        chunk = values[start:stop]
        i_min, i_max = int(np.argmin(chunk)), int(np.argmax(chunk))
        for i in sorted((i_min, i_max)):
            xs.append(float(start + i))
            ys.append(float(chunk[i]))
    return np.asarray(xs), np.asarray(ys)


def load_waveform(data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """``samples`` [n_samples, n_channels] and ``meta`` of a ``zhichao.raw/1`` npz (no pickle)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            samples = np.asarray(npz["samples"], dtype=np.float64)
            meta_raw = str(npz["meta"][()]) if "meta" in npz.files else "{}"
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise WaveformError(f"waveform: not a readable npz ({exc})") from exc
    if samples.ndim != 2 or samples.shape[0] < 2 or samples.shape[1] < 1:
        raise WaveformError(f"waveform: samples shape {samples.shape}, expected [n, channels]")
    if not np.all(np.isfinite(samples)):
        raise WaveformError("waveform: samples contain NaN or inf")
    try:
        meta = json.loads(meta_raw)
    except ValueError as exc:
        raise WaveformError("waveform: meta is not JSON") from exc
    return samples, meta if isinstance(meta, dict) else {}


def waveform_svg(samples: np.ndarray, meta: dict[str, Any], *, max_points: int = 600,
                 window: tuple[int, int] | None = None, width: int = 900,
                 height_per_channel: int = 46) -> Markup:
    """One trace per channel, stacked; ``window`` shades the vehicle's samples."""
    n, channels = samples.shape
    rate = meta.get("sample_rate_hz")
    rate_hz = float(rate) if isinstance(rate, int | float) and rate > 0 else None
    names: list[str] = []
    for k in range(channels):
        ch = (meta.get("channels") or [None] * channels)[k] if isinstance(
            meta.get("channels"), list) and k < len(meta["channels"]) else None
        names.append(str(ch.get("name")) if isinstance(ch, dict) and ch.get("name")
                     else f"通道{k + 1}")
    left, right, top = 70, 10, 8
    plot_w = width - left - right
    height = top + channels * height_per_channel + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             "<title>原始称重波形</title>",
             f'<rect x="{left}" y="{top}" width="{plot_w}" '
             f'height="{channels * height_per_channel}" fill="#fafafa" stroke="#bbb"/>']
    if window is not None:
        a, b = max(0, window[0]), min(n - 1, window[1])
        if b > a:
            xa = left + plot_w * a / (n - 1)
            xb = left + plot_w * b / (n - 1)
            parts.append(f'<rect x="{xa:.1f}" y="{top}" width="{xb - xa:.1f}" '
                         f'height="{channels * height_per_channel}" fill="#fff3c4" '
                         f'stroke="none"><title>本车过秤区间</title></rect>')
    for k in range(channels):
        y0 = top + k * height_per_channel
        xs, ys = envelope(samples[:, k], max_points)
        lo, hi = float(ys.min()), float(ys.max())
        span = hi - lo if hi > lo else 1.0
        px = left + plot_w * xs / (n - 1)
        py = y0 + height_per_channel - 4 - (height_per_channel - 8) * (ys - lo) / span
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
        colour = _COLOURS[k % len(_COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1" '
                     f'points="{points}"/>')
        parts.append(f'<text x="{left - 6}" y="{y0 + height_per_channel / 2 + 4:.1f}" '
                     f'text-anchor="end" font-size="11">{escape(names[k])}</text>')
    axis_y = top + channels * height_per_channel + 18
    for i in range(6):
        frac = i / 5
        sample = frac * (n - 1)
        label = f"{sample / rate_hz:.2f} s" if rate_hz else f"{sample:.0f}"
        x = left + plot_w * frac
        parts.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle" '
                     f'font-size="11">{escape(label)}</text>')
    unit = "时间" if rate_hz else "采样点序号（无采样率）"
    parts.append(f'<text x="{left}" y="{axis_y + 12}" font-size="10" fill="#555">'
                 f'{unit}；纵轴为各通道原始输出（逐通道缩放）</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def axle_svg(spacings_m: Sequence[float], loads_kg: Sequence[float],
             groups: Sequence[Sequence[int]] | None = None, *, width: int = 900) -> Markup:
    """Side view: axles at their measured spacings, each with its load [t]; groups bracketed."""
    count = len(loads_kg)
    if count == 0 or len(spacings_m) != count - 1:
        raise ValueError(f"axle diagram: {count} loads need {max(count - 1, 0)} spacings, "
                         f"got {len(spacings_m)}")
    positions = [0.0]
    for s in spacings_m:
        positions.append(positions[-1] + float(s))
    length_m = max(positions[-1], 1.0)
    left, right = 60, 60
    scale = (width - left - right) / length_m
    height = 190
    road_y, wheel_r = 130, 14
    xs = [left + p * scale for p in positions]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             "<title>轴型与轴载示意图</title>",
             f'<rect x="{xs[0] - 40:.1f}" y="40" width="{xs[-1] - xs[0] + 80:.1f}" height="60" '
             f'rx="6" fill="#e3eaf3" stroke="#5b7595"/>',
             f'<line x1="10" y1="{road_y + wheel_r}" x2="{width - 10}" '
             f'y2="{road_y + wheel_r}" stroke="#444" stroke-width="2"/>']
    top_load = max(float(max(loads_kg)), 1.0)
    for i, (x, load) in enumerate(zip(xs, loads_kg, strict=True)):
        bar = 30 * float(load) / top_load
        parts.append(f'<rect x="{x - 7:.1f}" y="{98 - bar:.1f}" width="14" height="{bar:.1f}" '
                     f'fill="#b8461b" opacity="0.8"/>')
        parts.append(f'<circle cx="{x:.1f}" cy="{road_y}" r="{wheel_r}" fill="#222"/>')
        parts.append(f'<text x="{x:.1f}" y="30" text-anchor="middle" font-size="12">'
                     f'{float(load) / 1000:.1f} t</text>')
        parts.append(f'<text x="{x:.1f}" y="{road_y + 4}" text-anchor="middle" '
                     f'font-size="10" fill="#fff">{i + 1}</text>')
    for i, s in enumerate(spacings_m):
        mid = (xs[i] + xs[i + 1]) / 2
        parts.append(f'<text x="{mid:.1f}" y="{road_y + wheel_r + 16}" text-anchor="middle" '
                     f'font-size="11" fill="#333">{float(s):.2f} m</text>')
    for group in groups or []:
        members = [int(a) for a in group if isinstance(a, int) and 1 <= a <= count]
        if len(members) < 2:
            continue
        xa, xb = xs[min(members) - 1] - 16, xs[max(members) - 1] + 16
        parts.append(f'<path d="M{xa:.1f},{road_y + 36} v6 H{xb:.1f} v-6" fill="none" '
                     f'stroke="#5b7595"/>')
    parts.append(f'<text x="10" y="{height - 4}" font-size="10" fill="#555">'
                 f'轴号 1 为车头方向；柱高为各轴实测轴载（相对值）；括线为轴组</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def load_bar_svg(gross_kg: float, limit_kg: float | None, allowance_kg: float | None,
                 *, width: int = 900) -> Markup:
    """Gross weight against the limit and the limit plus the measurement allowance."""
    height = 70
    left, right = 10, 10
    marks = [v for v in (gross_kg, limit_kg, (limit_kg or 0) + (allowance_kg or 0)) if v]
    top = max(marks) * 1.1 if marks else 1.0
    scale = (width - left - right) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             "<title>车货总质量与限值对比</title>",
             f'<rect x="{left}" y="14" width="{gross_kg * scale:.1f}" height="22" '
             f'fill="#1f5fa8"/>',
             f'<text x="{left + 4}" y="30" font-size="12" fill="#fff">实测 '
             f'{gross_kg / 1000:.2f} t</text>']
    if limit_kg:
        x = left + limit_kg * scale
        parts.append(f'<line x1="{x:.1f}" y1="6" x2="{x:.1f}" y2="44" stroke="#c62828" '
                     f'stroke-width="2"/>')
        parts.append(f'<text x="{x:.1f}" y="60" text-anchor="middle" font-size="11" '
                     f'fill="#c62828">限值 {limit_kg / 1000:.1f} t</text>')
        if allowance_kg:
            xa = left + (limit_kg + allowance_kg) * scale
            parts.append(f'<line x1="{xa:.1f}" y1="6" x2="{xa:.1f}" y2="44" stroke="#ef6c00" '
                         f'stroke-dasharray="4 3" stroke-width="2"/>')
            parts.append(f'<text x="{xa:.1f}" y="8" text-anchor="start" font-size="10" '
                         f'fill="#ef6c00">限值+允差</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
