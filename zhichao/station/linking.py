"""Linking camera frames to weighed vehicles by lane and time.

Each camera of the lane pushes JPEG frames into its spool folder, named
``<camera id>-<camera time YYYYmmddTHHMMSSffffffZ>-<seq>.jpg`` in the camera's own clock.

Clock offsets are measured, not assumed: a device's offset against the station's reference
clock is the largest (device time − arrival time) over its recent frames (arrival is never
before capture, so the largest difference is the one with the least delay), for the WIM
unit per sample block and for a camera per file (arrival = the file's mtime).

That largest difference is only a lower bound of the true offset: while every observation
so far arrived late (a starved station or device at start-up, a backlog) it is off by the
least lateness seen, and a frame of a later vehicle can be linked. An estimate is
*settled* once it has not moved by more than a quarter of the link window for
``SETTLE_S`` of wall clock, with at least ``SETTLE_N`` observations that reached it
(within that tolerance) over that time; a link made with any estimate unsettled is marked
so (:meth:`FrameLinker.unsettled`), and the station never auto-accepts its plate.

A vehicle crosses row 1 at ``t_row1`` (WIM clock) at ``speed_kmh`` with
``acceleration_ms2``; a camera taking its frame ``trigger_distance_m`` downstream is
expected at ``t_row1 + travel time``, converted to reference time with both offsets. A
frame is linked to the vehicle whose prediction is nearest, only if it is within
``window_s`` and clearly nearer to it than to any neighbour's prediction (ratio
``AMBIGUITY_RATIO``); otherwise it is linked to nobody. A vehicle without a usable frame is
kept and marked (``no_frame`` / ``ambiguous_frame``), so close vehicles never swap plates.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zhichao.station.clock import Clock
from zhichao.station.config_sections import LinkingSection

FRAME_NAME = re.compile(r"^(?P<cam>[A-Za-z0-9_-]+?)-(?P<t>\d{8}T\d{6}\d{6}Z)-(?P<seq>\d+)\.jpg$")
AMBIGUITY_RATIO = 0.6  # a frame must be this much nearer to its vehicle than to the next


def travel_time_s(distance_m: float, speed_ms: float, accel_ms2: float) -> float | None:
    """Time to cover ``distance_m`` from ``speed_ms`` at constant ``accel_ms2`` [s]; None if
    the vehicle would stop first (or is not moving forward)."""
    if speed_ms <= 0.1:
        return None
    if abs(accel_ms2) < 1e-6:
        return distance_m / speed_ms
    disc = speed_ms * speed_ms + 2 * accel_ms2 * distance_m
    if disc < 0:
        return None
    return (-speed_ms + math.sqrt(disc)) / accel_ms2


SETTLE_S = 2.0
"""Wall-clock seconds an offset estimate must hold (and be reached) before links made with
it are trusted. Starvation is a wall-clock event: at the simulated lane's 40× a 0.6 s
window is 15 ms of wall clock, so the hold is in wall seconds, not reference seconds."""
SETTLE_N = 3
"""Observations (in distinct 0.2 s buckets) that must reach the estimate over ``SETTLE_S``
(a camera that writes one frame per vehicle settles after its third vehicle at the
soonest); as many in a row that fall a link window below it, over as long, unsettle it
again."""
SETTLE_TOLERANCE_OF_WINDOW = 0.25
"""A move of the estimate by more than this × the link window unsettles it; an
observation within it of the estimate reaches it."""
DEFAULT_TOLERANCE_S = SETTLE_TOLERANCE_OF_WINDOW * LinkingSection.window_s


@dataclass
class _Run:
    """Buckets in a run: how many, the first's and the last's start (wall clock [s])."""

    n: int = 0
    first_s: float = 0.0
    last_s: float | None = None

    def note(self, bucket_s: float) -> None:
        if self.last_s == bucket_s:  # this bucket is counted
            return
        if self.n == 0:
            self.first_s = bucket_s
        self.n += 1
        self.last_s = bucket_s

    def spans(self, n: int, duration_s: float) -> bool:
        return (self.n >= n and self.last_s is not None
                and self.last_s - self.first_s >= duration_s)


class OffsetEstimator:
    """max(device time − arrival time) over the observations of the last ``window_s``
    seconds (wall clock) [s]. A long window keeps the estimate right while a device
    delivers a backlog (after a station restart every block arrives late).

    :attr:`settled` says whether the estimate can be trusted (module docstring): it has
    held within ``tolerance_s`` for ``settle_s`` of wall clock, reached by observations
    in at least ``settle_n`` buckets over that time (every observation counts where
    ``require_reach`` is False: a WIM controller's vehicle records arrive seconds after
    the vehicle, each with its own delay, so none need reach the estimate), and the
    observations since have not stopped coming near it (``settle_n`` buckets in a row over
    ``settle_s`` all more than ``miss_s`` below it, the link window: a camera clock stepped
    back, which the maximum hides; a smaller margin unsettled a busy simulated lane at 40×,
    whose blocks were often stamped a few milliseconds late; None: no such rule)."""

    BUCKET_S = 0.2
    """Observations within this long of a bucket's first are one bucket (its largest)."""

    def __init__(self, window_s: float = 600.0, *, tolerance_s: float = DEFAULT_TOLERANCE_S,
                 miss_s: float | None = LinkingSection.window_s, settle_s: float = SETTLE_S,
                 settle_n: int = SETTLE_N, require_reach: bool = True) -> None:
        self.window_s = window_s
        self.tolerance_s = tolerance_s
        self.miss_s = miss_s
        self.settle_s = settle_s
        self.settle_n = settle_n
        self.require_reach = require_reach
        self._restored: float | None = None  # a stored estimate, until the first observation
        self.generation = -1  # reset() makes it 0
        self._unsettled_since_s: float | None = None  # wall clock; None while settled
        self._buckets_unsettled = 0  # buckets observed since then
        self.reset()

    def reset(self) -> None:
        """Forget every observation (the device's clock stepped: they no longer apply).
        :attr:`generation` counts the resets; an offset unsettled before stays unsettled
        since then (for :meth:`overdue`)."""
        self.generation += 1
        self._values: deque[tuple[float, float]] = deque()  # (bucket start, largest value)
        # the buckets that can still become the maximum: values strictly decreasing, so
        # the window's maximum is the first (O(1) per observation, not O(window))
        self._candidates: deque[tuple[float, float]] = deque()
        self._best: float | None = None
        self._anchor: float | None = None  # the estimate when it last moved
        # buckets (wall clock of their start [s]) that reached the estimate since it last
        # moved, and those in a row since the last that did: (count, first, last)
        self._reached = _Run()
        self._missed = _Run()
        self._settled = False

    def restore(self, offset_s: float) -> None:
        """A stored estimate (an earlier run's, ``wim_offset_s``): the offset until the
        first observation, which replaces it. It is never an observation: it neither
        enters the maximum nor settles anything (the device's clock may have been set
        while the station was down)."""
        self._restored = offset_s

    def add(self, device_minus_arrival_s: float, at_s: float | None = None) -> None:
        now = time.monotonic() if at_s is None else at_s
        value = device_minus_arrival_s
        self._restored = None  # replaced by the first observation
        if self._values and now - self._values[-1][0] < self.BUCKET_S:
            start, largest = self._values[-1]
            if value > largest:  # one bucket per 0.2 s keeps the window small
                self._values[-1] = (start, value)
                self._candidate(start, value)
            new_bucket = False
        else:
            start = now
            self._values.append((now, value))
            self._candidate(now, value)
            new_bucket = True
        while self._values and now - self._values[0][0] > self.window_s:
            gone, _ = self._values.popleft()
            while self._candidates and self._candidates[0][0] <= gone:
                self._candidates.popleft()
        self._best = self._candidates[0][1] if self._candidates else None
        # the bucket's largest value decides whether it reaches (or misses) the estimate,
        # whatever the order of its observations
        self._settle(self._values[-1][1], start, new_bucket)

    def _settle(self, value: float, bucket_s: float, new_bucket: bool) -> None:
        best = self._best
        assert best is not None
        if self._anchor is None or abs(best - self._anchor) > self.tolerance_s:
            self._anchor = best  # moved: every link until it settles again is unsettled
            self._reached, self._missed = _Run(), _Run()
        if not self.require_reach or value >= best - self.tolerance_s:
            self._reached.note(bucket_s)
        if not self.require_reach or self.miss_s is None or value >= best - self.miss_s:
            self._missed = _Run()
        elif self._reached.last_s != bucket_s:  # a bucket none of whose observations came near
            self._missed.note(bucket_s)
        self._settled = (self._reached.spans(self.settle_n, self.settle_s)
                         and not self._missed.spans(self.settle_n, self.settle_s))
        if self._settled:
            self._unsettled_since_s = None
        elif self._unsettled_since_s is None:  # this bucket is the first unsettled one
            self._unsettled_since_s, self._buckets_unsettled = bucket_s, 1
        elif new_bucket:
            self._buckets_unsettled += 1

    @property
    def settled(self) -> bool:
        return self._settled

    def overdue(self, limit_s: float, now_s: float | None = None) -> bool:
        """Unsettled for ``limit_s`` of wall clock since it last was settled (or since its
        first observation), with observations in at least ``settle_n`` buckets since (a
        camera that wrote only two frames, a minute apart, has not had its chance)."""
        now = time.monotonic() if now_s is None else now_s
        return (self._unsettled_since_s is not None
                and self._buckets_unsettled >= self.settle_n
                and now - self._unsettled_since_s >= limit_s)

    @property
    def observed(self) -> bool:
        """Whether it has an observation of its own (not only a restored estimate)."""
        return self._best is not None

    def _candidate(self, start: float, value: float) -> None:
        while self._candidates and self._candidates[-1][1] <= value:
            self._candidates.pop()
        self._candidates.append((start, value))

    @property
    def offset_s(self) -> float | None:
        return self._best if self._best is not None else self._restored

    @property
    def n(self) -> int:
        return len(self._values)


@dataclass
class Frame:
    camera_id: str
    role: str
    camera_time: datetime
    path: Path
    ref_time: datetime | None = None  # camera time − measured offset
    claimed_by: str | None = None


def utc_name(t: datetime) -> str:
    """The time part of a frame's file name (camera clock, UTC); :func:`parse_frame_name`
    reads it back."""
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def parse_frame_name(name: str) -> tuple[str, datetime] | None:
    m = FRAME_NAME.match(name)
    if m is None:
        return None
    t = datetime.strptime(m["t"], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    return m["cam"], t


@dataclass
class CameraSpool:
    camera_id: str
    role: str
    directory: Path
    trigger_distance_m: float
    offset: OffsetEstimator = field(default_factory=OffsetEstimator)
    frames: dict[str, Frame] = field(default_factory=dict)
    bad_names: int = 0
    latest_camera_time: datetime | None = None  # newest frame seen (frames come in order)


@dataclass(frozen=True)
class Prediction:
    key: str
    camera_id: str
    ref_time: datetime | None  # None: the vehicle cannot reach the camera (stops, reverses)


class FrameLinker:
    def __init__(self, cameras: list[CameraSpool], clock: Clock, window_s: float) -> None:
        self.cameras = {c.camera_id: c for c in cameras}
        self.clock = clock
        self.window_s = window_s
        tolerance_s = SETTLE_TOLERANCE_OF_WINDOW * window_s
        # the WIM unit's clock cannot step under its offset: a sample stream's offset is
        # observed on the station's sample timeline, and a record lane resets on a reported
        # step; a miss rule would only unsettle an intake that is behind (a busy 40× lane)
        self.wim_offset = OffsetEstimator(tolerance_s=tolerance_s, miss_s=None)
        for c in cameras:
            c.offset.tolerance_s, c.offset.miss_s = tolerance_s, window_s

    def estimators(self) -> dict[str, OffsetEstimator]:
        """Every device's offset estimator: ``wim`` and the camera ids."""
        return {"wim": self.wim_offset, **{cid: c.offset for cid, c in self.cameras.items()}}

    def unsettled(self, devices: list[str] | None = None) -> list[str]:
        """Those of ``devices`` (``wim``, camera ids) whose offsets are not settled (module
        docstring): a link that used one is not trusted. None: ``wim`` and every camera
        that has delivered a frame."""
        est = self.estimators()
        names = devices if devices is not None else [
            d for d, e in est.items() if d == "wim" or e.observed]
        return [d for d in names if not est[d].settled]

    def overdue(self, limit_s: float) -> list[str]:
        """The devices unsettled for ``limit_s`` of wall clock (:meth:`OffsetEstimator.overdue`)."""
        now = time.monotonic()
        return [d for d, e in self.estimators().items() if e.overdue(limit_s, now)]

    def scan(self, at_s: float | None = None) -> int:
        """Pick up new frame files; returns how many. ``at_s``: the monotonic time of the
        scan (now when None; a test's own clock)."""
        new = 0
        for cam in self.cameras.values():
            try:
                entries = list(os.scandir(cam.directory))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name.startswith(".") or e.name in cam.frames:
                    continue
                parsed = parse_frame_name(e.name)
                if parsed is None or parsed[0] != cam.camera_id:
                    cam.bad_names += 1
                    continue
                try:
                    mtime = e.stat().st_mtime
                except FileNotFoundError:
                    continue
                arrival = self.clock.at_wall(mtime)
                cam.offset.add((parsed[1] - arrival).total_seconds(), at_s)
                if cam.latest_camera_time is None or parsed[1] > cam.latest_camera_time:
                    cam.latest_camera_time = parsed[1]
                cam.frames[e.name] = Frame(cam.camera_id, cam.role, parsed[1], Path(e.path))
                new += 1
        return new

    def camera_offset_s(self, camera_id: str) -> float:
        off = self.cameras[camera_id].offset.offset_s
        return 0.0 if off is None else off

    def offsets_ms(self) -> dict[str, float]:
        out = {"wim": round(1000 * (self.wim_offset.offset_s or 0.0), 1)}
        for cid in self.cameras:
            out[cid] = round(1000 * self.camera_offset_s(cid), 1)
        return out

    def predict(self, key: str, t_row1_wim: datetime, speed_kmh: float | None,
                accel_ms2: float | None) -> list[Prediction]:
        wim_off = self.wim_offset.offset_s or 0.0
        t_ref = t_row1_wim - timedelta(seconds=wim_off)
        out = []
        for cam in self.cameras.values():
            dt = None
            if speed_kmh is not None:
                dt = travel_time_s(cam.trigger_distance_m, speed_kmh / 3.6, accel_ms2 or 0.0)
            out.append(Prediction(key, cam.camera_id,
                                  None if dt is None else t_ref + timedelta(seconds=dt)))
        return out

    def delivered_past(self, p: Prediction) -> bool:
        """The camera has delivered a frame taken after ``p``'s window (a camera delivers
        its frames in order, so no frame for ``p`` can still come)."""
        cam = self.cameras[p.camera_id]
        if p.ref_time is None:
            return True
        if cam.latest_camera_time is None:
            return False
        latest_ref = cam.latest_camera_time - timedelta(seconds=self.camera_offset_s(cam.camera_id))
        return latest_ref > p.ref_time + timedelta(seconds=self.window_s)

    def _frame_ref(self, f: Frame) -> datetime:
        return f.camera_time - timedelta(seconds=self.camera_offset_s(f.camera_id))

    def link(self, mine: list[Prediction], neighbours: list[Prediction]
             ) -> dict[str, tuple[Frame | None, str]]:
        """Frames for one vehicle per camera: (frame, status) with status ``linked``,
        ``no_frame`` or ``ambiguous_frame``. Linked frames are claimed."""
        out: dict[str, tuple[Frame | None, str]] = {}
        for p in mine:
            cam = self.cameras[p.camera_id]
            if p.ref_time is None:
                out[p.camera_id] = (None, "no_frame")
                continue
            others = [q.ref_time for q in neighbours
                      if q.camera_id == p.camera_id and q.ref_time is not None]
            best: tuple[float, Frame] | None = None
            ambiguous = False
            for f in cam.frames.values():
                if f.claimed_by is not None:
                    continue
                d = abs((self._frame_ref(f) - p.ref_time).total_seconds())
                if d > self.window_s:
                    continue
                nearest_other = min((abs((self._frame_ref(f) - o).total_seconds())
                                     for o in others), default=math.inf)
                if d > AMBIGUITY_RATIO * nearest_other:
                    if d < nearest_other:
                        ambiguous = True
                    continue
                if best is None or d < best[0]:
                    best = (d, f)
            if best is None:
                out[p.camera_id] = (None, "ambiguous_frame" if ambiguous else "no_frame")
            else:
                best[1].claimed_by = p.key
                best[1].ref_time = self._frame_ref(best[1])
                out[p.camera_id] = (best[1], "linked")
        return out

    def forget(self, frame: Frame) -> None:
        self.forget_file(frame.camera_id, frame.path)

    def forget_file(self, camera_id: str, path: Path) -> None:
        self.cameras[camera_id].frames.pop(path.name, None)

    def stale(self, before_ref: datetime) -> list[Frame]:
        """Unclaimed frames taken before ``before_ref`` (no vehicle can want them now)."""
        return [f for cam in self.cameras.values() for f in cam.frames.values()
                if f.claimed_by is None and self._frame_ref(f) < before_ref]
