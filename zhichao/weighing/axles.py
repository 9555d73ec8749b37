"""Stage 4: pulses → row hits → axle tracks across rows → rigid-body kinematics.

A *row hit* is one axle crossing one row: the left and right half-strip pulses that overlap
in time (either may be missing, e.g. a wheel off its half). A *track* is one axle crossing
the rows in order. Axles cross each row in the order they crossed the previous one, so a
hit on row r goes to the oldest track still expecting row r whose predicted arrival window
contains it (first in, first out).

For a whole vehicle, every hit (axle j, row r, time t) obeys the rigid-body model::

    x_r = p0 + v0·τ + ½·a·τ² − d_j,   τ = t − t_ref,  d_1 = 0

which is linear in (p0, v0, a, d_2 … d_n): one least-squares fit gives the speed at the
reference time, the acceleration, and every axle spacing from all rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zhichao.weighing.config import MatchingConfig
from zhichao.weighing.pulses import FLAG_OVERLONG, FLAG_SATURATED, Pulses


@dataclass
class RowHit:
    """One axle crossing one row. Times are (fractional) global sample indices."""

    row: int  # 0-based row index
    t: float  # area-weighted centroid of both sides
    start: int
    end: int
    area: list[float]  # [left, right] ∑force [N·samples]; 0 where the side had no pulse
    present: list[bool]  # [left, right]
    saturated: bool = False
    peak: list[float] = field(default_factory=lambda: [0.0, 0.0])  # [left, right] force [N]
    overlong: bool = False


@dataclass
class Track:
    """One axle: its hits on the rows it crossed."""

    hits: dict[int, RowHit] = field(default_factory=dict)
    closed: bool = False

    @property
    def last_row(self) -> int:
        return max(self.hits)

    @property
    def first_row(self) -> int:
        return min(self.hits)

    def time_at(self, row: int) -> float:
        return self.hits[row].t


def row_hits_from_pulses(pulses: Pulses, channel_row: npt.NDArray[np.int64],
                         channel_side: npt.NDArray[np.int64], tolerance: int) -> list[RowHit]:
    """Pair the left and right pulses of each row that overlap in time (± ``tolerance``)."""
    hits: list[RowHit] = []
    if len(pulses) == 0:
        return hits
    rows = channel_row[pulses.channel]
    order = np.lexsort((pulses.start, rows))
    open_hit: RowHit | None = None
    open_row = -1
    for k in order:
        row = int(rows[k])
        side = int(channel_side[pulses.channel[k]])
        start, end = int(pulses.start[k]), int(pulses.end[k])
        joins = (open_hit is not None and row == open_row and not open_hit.present[side]
                 and start <= open_hit.end + tolerance and end >= open_hit.start - tolerance)
        if not joins:
            if open_hit is not None:
                hits.append(open_hit)
            open_hit = RowHit(row=row, t=0.0, start=start, end=end, area=[0.0, 0.0],
                              present=[False, False])
            open_row = row
            moment = 0.0
        assert open_hit is not None
        area = float(pulses.area_n_samples[k])
        open_hit.area[side] = area
        open_hit.peak[side] = float(pulses.peak_n[k])
        open_hit.present[side] = True
        open_hit.start = min(open_hit.start, start)
        open_hit.end = max(open_hit.end, end)
        open_hit.saturated |= bool(pulses.flags[k] & FLAG_SATURATED)
        open_hit.overlong |= bool(pulses.flags[k] & FLAG_OVERLONG)
        total = sum(open_hit.area)
        moment = open_hit.t * (total - area) + float(pulses.centroid[k]) * area
        open_hit.t = moment / total if total > 0 else float(pulses.centroid[k])
    if open_hit is not None:
        hits.append(open_hit)
    return hits


class TrackBuilder:
    """Assign row hits (in time order) to axle tracks, first in first out per row."""

    def __init__(self, row_x_m: list[float], sample_rate_hz: float, cfg: MatchingConfig) -> None:
        self.row_x_m = row_x_m
        self.n_rows = len(row_x_m)
        self.fs = sample_rate_hz
        self.cfg = cfg
        self.open: list[Track] = []
        self.done: list[Track] = []
        self.orphans = 0

    def _window(self, track: Track, row: int) -> tuple[float, float]:
        """Sample-index window in which ``track`` may cross ``row``."""
        last = track.last_row
        t_last = track.time_at(last)
        dx = self.row_x_m[row] - self.row_x_m[last]
        if len(track.hits) >= 2:
            # the most recent row-to-row speed: it follows a vehicle that speeds up or slows
            rows = sorted(track.hits)
            r0, r1 = rows[-2], rows[-1]
            span = track.hits[r1].t - track.hits[r0].t
            if span > 0:
                v = (self.row_x_m[r1] - self.row_x_m[r0]) / span  # metres per sample
                dt = dx / v
                tol = self.cfg.track_tolerance * dt + self.cfg.track_tolerance_s * self.fs
                return t_last + dt - tol, t_last + dt + tol
        v_max = self.cfg.max_speed_kmh / 3.6 / self.fs
        v_min = self.cfg.min_speed_kmh / 3.6 / self.fs
        return t_last + dx / v_max, t_last + dx / v_min

    def add(self, hit: RowHit) -> None:
        """Add one hit; hits must come in ascending ``t``."""
        self.expire(hit.t)
        best: Track | None = None
        best_key: tuple[int, float] | None = None
        for tr in self.open:
            if tr.last_row >= hit.row:
                continue
            lo, hi = self._window(tr, hit.row)
            if lo <= hit.t <= hi:
                # prefer tracks that come straight from the previous row, then the oldest
                key = (hit.row - 1 - tr.last_row, tr.time_at(tr.first_row))
                if best_key is None or key < best_key:
                    best, best_key = tr, key
        if best is None:
            if hit.row != 0:
                self.orphans += 1
            best = Track()
            self.open.append(best)
        best.hits[hit.row] = hit
        if hit.row == self.n_rows - 1:
            self._close(best)

    def expire(self, now: float) -> None:
        """Close tracks that can no longer receive a hit at time ``now``."""
        for tr in list(self.open):
            if tr.last_row == self.n_rows - 1:
                self._close(tr)
                continue
            alive = False
            for row in range(tr.last_row + 1, self.n_rows):
                if self._window(tr, row)[1] >= now:
                    alive = True
                    break
            if not alive:
                self._close(tr)

    def close_all(self) -> None:
        """Close every open track: after a gap in the stream no later hit may continue one."""
        for tr in list(self.open):
            self._close(tr)

    def _close(self, tr: Track) -> None:
        if not tr.closed:
            tr.closed = True
            self.open.remove(tr)
            self.done.append(tr)

    def take_done(self) -> list[Track]:
        done, self.done = self.done, []
        return done


@dataclass(frozen=True)
class Kinematics:
    """Rigid-body fit of a vehicle's hits."""

    t_ref: float  # sample index of the reference time (first axle on the first row)
    speed_ms: float  # at t_ref
    acceleration_ms2: float
    axle_offsets_m: npt.NDArray[np.float64]  # distance behind the first axle
    residual_rms_m: float
    n_hits: int
    position_at_ref_m: float = 0.0  # where axle 1 is at t_ref (0 when it is on row 1)

    def t_row1(self, fs: float) -> float:
        """Sample index when axle 1 crosses row 1 (extrapolated if it missed row 1)."""
        if self.speed_ms == 0:
            return self.t_ref
        return self.t_ref - self.position_at_ref_m / self.speed_ms * fs

    def speed_at(self, t: float, fs: float) -> float:
        """Speed [m/s] at sample index ``t``."""
        return self.speed_ms + self.acceleration_ms2 * (t - self.t_ref) / fs


def fit_kinematics(tracks: list[Track], row_x_m: list[float], fs: float) -> Kinematics | None:
    """Least-squares rigid-body fit; ``None`` if the hits cannot determine it."""
    rows_t: list[tuple[int, int, float]] = []
    for j, tr in enumerate(tracks):
        for r, h in tr.hits.items():
            rows_t.append((j, r, h.t))
    n_axles = len(tracks)
    if not rows_t:
        return None
    t_ref = min(h.t for h in tracks[0].hits.values())
    m = len(rows_t)
    n_unknowns = 3 + (n_axles - 1)
    if m < n_unknowns:
        return None
    a_mat = np.zeros((m, n_unknowns))
    b = np.zeros(m)
    for k, (j, r, t) in enumerate(rows_t):
        tau = (t - t_ref) / fs
        a_mat[k, 0] = 1.0
        a_mat[k, 1] = tau
        a_mat[k, 2] = 0.5 * tau * tau
        if j > 0:
            a_mat[k, 2 + j] = -1.0
        b[k] = row_x_m[r]
    sol, _, rank, _ = np.linalg.lstsq(a_mat, b, rcond=None)
    if rank < n_unknowns:
        return None
    resid = b - a_mat @ sol
    rms = float(np.sqrt(np.mean(resid**2))) if m > n_unknowns else 0.0
    offsets = np.concatenate([[0.0], sol[3:]])
    # speed at t_ref is the slope; the position at t_ref (p0) is where axle 1 is then
    return Kinematics(t_ref=t_ref, speed_ms=float(sol[1]), acceleration_ms2=float(sol[2]),
                      axle_offsets_m=offsets, residual_rms_m=rms, n_hits=m,
                      position_at_ref_m=float(sol[0]))
