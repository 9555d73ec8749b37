"""Passage clips (全过程记录): a ring of recent frames per streaming camera, and the
clip of each case cut from it.

A camera *streams* when the station opens it by URL (``[[camera]] url``: its frames
already come through the devices stage) or when it pushes stills to a spool and has a
``stream_url`` (RTSP, MJPEG over HTTP, …; on the simulated lane the lane's own MJPEG
streams). For each such camera a :class:`ClipRecorder` thread keeps the frames of the last
``clip_before_s + clip_after_s + RING_MARGIN_S`` seconds (reference clock) at up to
``clip_fps``, scaled to at most ``clip_max_width`` pixels wide, as YUV 4:2:0 — a
bounded :class:`FrameRing` (3 + 3 + 4 s × 10 fps × 640 × 360 × 1.5 B ≈ 35 MB per camera
at the defaults).

When a vehicle that may become a case is weighed, the station asks each recorder for the
window ``[t − clip_before_s, t + clip_after_s]`` around the vehicle's predicted time ``t``
at that camera (:meth:`ClipMaker.request`). Once the camera has delivered a frame past
the window (or :data:`STREAM_WAIT_S` wall seconds after the window's end, whichever comes
first) the recorder takes the window's frames from the ring; once the passage's commit
says it is a case (:meth:`ClipMaker.decide`) it encodes them
(:func:`zhichao.evidence.clip.encode_clip`, H.264/MP4) to
``<data>/clips/<passage>-<camera>.mp4``, or, when the camera gave no frame in the window,
writes ``<passage>-<camera>.missing.json`` with the reason; a passage that is no case
costs no encoding. The case's material lists the clips asked for (:class:`ClipRequest`);
the sealer waits for each clip's file or marker (:func:`resolve_clips`) and the package
records the clip, or that it is missing and why. The clip, its frame times and its marker
are fsynced before they get their names (a case's clip is made after its commit, so the
recorder, not the commit, makes it durable); the sealer still checks that the clip is a
whole MP4 (:func:`clip_unusable`) and seals one that is not as missing.

Each clip made or missed is an outcome for the pipeline thread (``clips`` stage of
:mod:`zhichao.station.alarms`): failures in a row open an alarm.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.common import fsync_dir, write_atomic
from zhichao.evidence.clip import CLIP_SUFFIX, ClipError, encode_clip, to_i420
from zhichao.evidence.inputs import VideoClipRef
from zhichao.station.clock import Clock
from zhichao.station.config import ClipSection, StationConfig

LOG = logging.getLogger("zhichao.station.clips")
CLIPS_DIR = "clips"
RING_MARGIN_S = 4.0  # the ring holds this much more than a clip: a request comes late
STREAM_WAIT_S = 5.0  # wall seconds past a window's end a recorder waits for its frames
SEAL_WAIT_S = 30.0  # wall seconds past that the sealer waits for a clip's file
DECISION_WAIT_S = 300.0  # a request the commit never decided on is dropped after this
POLL_S = 0.01
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class ClipRequest:
    """One clip asked for: the window (reference clock) and where its file will be."""

    key: str
    camera_id: str
    start_utc: datetime
    end_utc: datetime
    path: str  # the .mp4; the .missing.json marker sits beside it
    deadline_wall_s: float  # the recorder decides by then (frames or not)

    @property
    def missing_path(self) -> Path:
        return Path(self.path).with_suffix(".missing.json")

    @property
    def frames_path(self) -> Path:
        """Beside the clip: the capture times of its first and last frames."""
        return Path(self.path).with_suffix(".frames.json")

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "camera_id": self.camera_id,
                "start_utc": self.start_utc.isoformat(), "end_utc": self.end_utc.isoformat(),
                "path": self.path, "deadline_wall_s": self.deadline_wall_s}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ClipRequest:
        return cls(str(raw["key"]), str(raw["camera_id"]),
                   datetime.fromisoformat(str(raw["start_utc"])),
                   datetime.fromisoformat(str(raw["end_utc"])), str(raw["path"]),
                   float(raw["deadline_wall_s"]))


@dataclass
class _Pending:
    """A request inside its recorder: the window's frames once it is over, and the
    commit's decision (case or not) once known."""

    req: ClipRequest
    since: float  # time.monotonic() of the request
    frames: list[tuple[datetime, Image]] | None = None
    newest: datetime | None = None  # the ring's newest frame when the window was cut
    keep: bool | None = None


class FrameRing:
    """The recent frames of one camera (reference time, I420 image), oldest first: at
    most one per ``1 / fps`` slot of the clock and at most ``keep_s × fps + 2`` frames, scaled to
    at most ``max_width`` pixels wide (even sizes). Memory is bounded by the frame count
    × ``1.5 × width × height`` bytes; a stream slower than ``fps`` (a time-lapse
    simulated lane) keeps a longer stretch in the same frames."""

    def __init__(self, keep_s: float, fps: float, max_width: int) -> None:
        self.fps = fps
        self.max_width = max_width
        self._last_slot = -1  # frames are kept one per 1 / fps slot of the clock
        self._frames: deque[tuple[datetime, Image]] = deque(
            maxlen=int(keep_s * fps) + 2)
        self._lock = threading.Lock()

    def add(self, t: datetime, image: Image) -> bool:
        """Keep the frame (True) unless it is too soon after the newest, or not newer."""
        with self._lock:
            if self._frames and t < self._frames[-1][0] - timedelta(seconds=1):
                LOG.warning("clock stepped back: clip ring restarted", extra={"fields": {
                    "newest": self._frames[-1][0].isoformat(), "frame": t.isoformat()}})
                self._frames.clear()
                self._last_slot = -1
            slot = int(t.timestamp() * self.fps)
            if self._frames and (slot <= self._last_slot or t <= self._frames[-1][0]):
                return False
            self._last_slot = slot
        h, w = image.shape[:2]
        if w > self.max_width:
            import cv2
            size = (self.max_width, max(2, round(h * self.max_width / w)))
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA),
                               np.uint8)
        i420 = to_i420(image)
        with self._lock:
            if self._frames and self._frames[-1][1].shape != i420.shape:
                self._frames.clear()  # the camera changed its frame size
            self._frames.append((t, i420))
        return True

    @property
    def newest(self) -> datetime | None:
        with self._lock:
            return self._frames[-1][0] if self._frames else None

    def window(self, start: datetime, end: datetime) -> list[tuple[datetime, Image]]:
        with self._lock:
            return [(t, img) for t, img in self._frames if start <= t <= end]

    def __len__(self) -> int:
        return len(self._frames)

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(img.nbytes for _, img in self._frames)


class ClipRecorder:
    """One streaming camera → its :class:`FrameRing`; cuts the clips asked of it.

    ``camera`` is a devices-stage :class:`~zhichao.devices.camera_source.Camera`. With
    ``owns_camera`` the recorder opened it (a spool camera's stream) and drives it;
    otherwise it reads the frames the camera's grabber takes (``Camera.recent``)."""

    def __init__(self, camera_id: str, camera: Any, clock: Clock, clips_dir: Path,
                 settings: ClipSection, *, owns_camera: bool) -> None:
        self.camera_id = camera_id
        self.camera = camera
        self.clock = clock
        self.clips_dir = clips_dir
        self.settings = settings
        self.owns_camera = owns_camera
        self.ring = FrameRing(settings.clip_before_s + settings.clip_after_s + RING_MARGIN_S,
                              settings.clip_fps, settings.clip_max_width)
        self.outcomes: queue.Queue[tuple[bool, str]] = queue.Queue()
        self.made = 0
        self.missed = 0
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._last_index = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ClipRecorder:
        if self.owns_camera and self.camera.live_source:
            self.camera.start()
        self._thread = threading.Thread(target=self._loop, name=f"clips-{self.camera_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def request(self, req: ClipRequest) -> None:
        with self._lock:
            self._pending.append(_Pending(req, time.monotonic()))

    def decide(self, key: str, keep: bool) -> None:
        """The passage's commit: a case (``keep``: its clip is encoded once its window
        is over) or not (its frames are dropped, nothing is encoded)."""
        with self._lock:
            for p in self._pending:
                if p.req.key == key:
                    p.keep = keep
        if not keep:
            for suffix in (CLIP_SUFFIX, ".missing.json", ".frames.json"):
                (self.clips_dir / f"{key}-{self.camera_id}{suffix}").unlink(missing_ok=True)

    # ------------------------------------------------------------------ the thread
    def _take_frames(self) -> None:
        if self.owns_camera and not self.camera.live_source:
            frame = self.camera.grab(0.05)
            frames = [] if frame is None else [frame]
        else:
            frames = [f for f in self.camera.recent() if f.index > self._last_index]
        for f in frames:
            self._last_index = max(self._last_index, f.index)
            if not self.clock.ready:  # a simulated lane's clock is published later
                continue
            self.ring.add(self.clock.at_wall(f.capture_utc.timestamp()), f.image)

    def _due(self) -> list[_Pending]:
        """Take the window's frames of each request whose window is over (a frame past it,
        or its deadline); the requests that are cut and decided, to encode or drop."""
        newest = self.ring.newest
        now, mono = time.time(), time.monotonic()
        with self._lock:
            for p in self._pending:
                if p.frames is None and ((newest is not None and newest > p.req.end_utc)
                                         or now >= p.req.deadline_wall_s):
                    p.frames = self.ring.window(p.req.start_utc, p.req.end_utc)
                    p.newest = newest
            done = [p for p in self._pending if p.frames is not None and (
                p.keep is not None or mono - p.since > DECISION_WAIT_S)]
            self._pending = [p for p in self._pending if p not in done]
        return [p for p in done if p.keep]  # undecided for long: the passage was dropped

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._take_frames()
                for p in self._due():
                    self._cut(p)
            except Exception as exc:  # never die silently; the next tick tries again
                LOG.exception("clip recorder error")
                self.outcomes.put((False, f"{self.camera_id}: {exc!r}"))
                self._stop.wait(0.5)
            if not (self.owns_camera and not self.camera.live_source):
                self._stop.wait(POLL_S)

    def _cut(self, p: _Pending) -> None:
        """Encode the window's frames to the request's path, or write why there are none."""
        req, frames, newest = p.req, p.frames or [], p.newest
        path = Path(req.path)
        reason = ""
        if not frames:
            reason = ("the camera's stream has given no frame yet (not connected)"
                      if newest is None else
                      "the camera's stream gave no frame in the window"
                      if newest > req.end_utc else
                      f"the camera's stream stopped before the window (last frame "
                      f"{newest.isoformat()})")
        else:
            tmp = path.with_name(f".{path.stem}.tmp{CLIP_SUFFIX}")
            try:
                encode_clip([((t - req.start_utc).total_seconds(), img) for t, img in frames],
                            tmp, fps=self.settings.clip_fps, i420=True)
                write_atomic(req.frames_path, json.dumps({
                    "first_frame_utc": frames[0][0].isoformat(),
                    "last_frame_utc": frames[-1][0].isoformat(), "frames": len(frames)}
                    ).encode())
                fsync_file(tmp)  # a case's original: whole on disk before it has its name
                os.replace(tmp, path)
                fsync_dir(path.parent)
            except (ClipError, OSError) as exc:
                tmp.unlink(missing_ok=True)
                reason = f"encoding the clip failed: {exc}"
        if reason:
            write_atomic(req.missing_path, json.dumps({"reason": reason}).encode())
            self.missed += 1
            self.outcomes.put((False, f"{req.key} {self.camera_id}: {reason}"))
        else:
            self.made += 1
            self.outcomes.put((True, ""))

    def health(self) -> dict[str, Any]:
        return {"camera_id": self.camera_id, "clips_made": self.made,
                "clips_missing": self.missed, "ring_frames": len(self.ring),
                "ring_mb": round(self.ring.memory_bytes() / 1e6, 1)}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.owns_camera:
            self.camera.close()


class ClipMaker:
    """The station's clip recorders, one per streaming camera."""

    def __init__(self, cfg: StationConfig, clock: Clock,
                 recorders: Sequence[ClipRecorder]) -> None:
        self.settings = cfg.camera_clips
        self.clock = clock
        self.dir = cfg.data_dir / CLIPS_DIR
        self.recorders = {r.camera_id: r for r in recorders}

    def request(self, key: str, centers: Mapping[str, datetime]) -> tuple[ClipRequest, ...]:
        """Ask each recorder for the clip around its camera's time in ``centers`` (camera
        id → reference time); the requests, for the case's material."""
        out = []
        before = timedelta(seconds=self.settings.clip_before_s)
        after = timedelta(seconds=self.settings.clip_after_s)
        for cid, rec in self.recorders.items():
            t = centers.get(cid)
            if t is None:
                continue
            req = ClipRequest(key, cid, t - before, t + after,
                              str(self.dir / f"{key}-{cid}{CLIP_SUFFIX}"),
                              self.clock.wall_of(t + after) + STREAM_WAIT_S)
            rec.request(req)
            out.append(req)
        return tuple(out)

    def decide(self, key: str, keep: bool) -> None:
        """After the passage's commit: a case (its clips are encoded) or not (dropped)."""
        for rec in self.recorders.values():
            rec.decide(key, keep)

    def outcomes(self) -> list[tuple[bool, str]]:
        out: list[tuple[bool, str]] = []
        for rec in self.recorders.values():
            while True:
                try:
                    out.append(rec.outcomes.get_nowait())
                except queue.Empty:
                    break
        return out

    def health(self) -> list[dict[str, Any]]:
        return [r.health() for r in self.recorders.values()]

    def close(self) -> None:
        for rec in self.recorders.values():
            rec.close()


def start_clip_maker(cfg: StationConfig, clock: Clock, grabbers: Sequence[Any],
                     stream_urls: Mapping[str, str] | None = None) -> ClipMaker | None:
    """Recorders for the cameras that stream: URL cameras (sharing their grabber's
    device) and spool cameras with a ``stream_url`` (or one in ``stream_urls``, camera id
    → URL: the simulated lane's streams). None when no camera streams."""
    from zhichao.devices.registry import open_device

    clips_dir = cfg.data_dir / CLIPS_DIR
    clips_dir.mkdir(parents=True, exist_ok=True)
    by_id = {g.camera_id: g for g in grabbers}
    recorders = []
    for c in cfg.cameras:
        if c.camera_id in by_id:
            recorders.append(ClipRecorder(c.camera_id, by_id[c.camera_id].camera, clock,
                                          clips_dir, cfg.camera_clips, owns_camera=False))
            continue
        url = c.stream_url or (stream_urls or {}).get(c.camera_id, "")
        if url:
            camera = open_device("camera", url, latency_s=c.latency_s)
            recorders.append(ClipRecorder(c.camera_id, camera, clock, clips_dir,
                                          cfg.camera_clips, owns_camera=True))
    if not recorders:
        return None
    for r in recorders:
        r.start()
    return ClipMaker(cfg, clock, recorders)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MP4_REQUIRED_BOXES = frozenset({b"ftyp", b"moov", b"mdat"})


def clip_unusable(path: Path) -> str | None:
    """Why the file at ``path`` is no whole MP4 (English), or None: gone, empty, or its
    top-level boxes do not fill the file exactly with ``ftyp``, ``moov`` and ``mdat``
    among them (a file cut short, or zeros where its tail should be). Reads only the box
    headers; the package decodes every frame of a clip it takes. Other read errors (EIO)
    are raised: the disk, not the file."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return "the file is empty (0 bytes)"
            seen: set[bytes] = set()
            at = 0
            while at < size:
                fh.seek(at)
                head = fh.read(16)
                if len(head) < 8:
                    return f"cut short: a box header at byte {at} of {size}"
                box_size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if box_size == 1:  # a 64-bit size follows the type
                    if len(head) < 16:
                        return f"cut short: a box header at byte {at} of {size}"
                    box_size = int.from_bytes(head[8:16], "big")
                elif box_size == 0:  # the last box, to the end of the file
                    box_size = size - at
                if box_size < 8 or at + box_size > size:
                    return (f"cut short or damaged: box {kind.decode('latin-1')!r} at byte "
                            f"{at} claims "
                            f"{box_size} bytes, the file has {size}")
                seen.add(kind)
                at += box_size
    except FileNotFoundError:
        return "the file is missing"
    except IsADirectoryError:
        return "not a file"
    missing = sorted(k.decode("latin-1") for k in MP4_REQUIRED_BOXES - seen)
    if missing:
        return f"not a whole MP4: no {', '.join(missing)} box ({size} bytes)"
    return None


def resolve_clips(requests: Sequence[ClipRequest], *,
                  wait_s: float = SEAL_WAIT_S) -> tuple[VideoClipRef, ...]:
    """For the sealer: each requested clip's file, or why there is none, waiting (up to
    ``wait_s`` past the request's deadline) for its recorder to decide."""
    out = []
    for req in requests:
        path, marker = Path(req.path), req.missing_path
        while not (path.exists() or marker.exists()) and time.time() < (
                req.deadline_wall_s + wait_s):
            time.sleep(0.05)
        reason: str | None = None
        if path.exists():
            first: datetime | None
            last: datetime | None
            try:
                times = json.loads(req.frames_path.read_text("utf-8"))
                first = datetime.fromisoformat(times["first_frame_utc"])
                last = datetime.fromisoformat(times["last_frame_utc"])
            except (OSError, ValueError, KeyError):
                first = last = None
            out.append(VideoClipRef(req.camera_id, req.start_utc, req.end_utc, str(path),
                                    first_frame_utc=first, last_frame_utc=last))
            continue
        if marker.exists():
            try:
                reason = str(json.loads(marker.read_text("utf-8"))["reason"])
            except (OSError, ValueError, KeyError) as exc:
                reason = f"the clip's missing-marker is unreadable: {exc!r}"
        else:
            reason = ("no clip was made (the station stopped or restarted before the "
                      "window closed)")
        out.append(VideoClipRef(req.camera_id, req.start_utc, req.end_utc,
                                missing_reason=reason))
    return tuple(out)
