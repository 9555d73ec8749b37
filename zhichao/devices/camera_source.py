"""The camera kind: frames from a folder (replay), from OpenCV ``VideoCapture`` (file, RTSP,
USB), or simulated — each timestamped (UTC, station clock) at capture, and a trigger API.

:class:`Camera` is the abstract device kind. Its public :meth:`Camera.grab` owns the read
deadline, reconnection with back-off, image checks and the capture timestamp; a backend
implements ``_connect``, ``_disconnect`` and ``_read_frame_internal``.

The station calls :meth:`Camera.trigger` when the weighing core detects an axle, with the
time of the detection (the devices stage cannot see the core: it takes a time, not a core
object). The camera keeps the last ``buffer_frames`` frames, so a trigger that arrives
after the vehicle was seen still gets the frame captured nearest to that time; if none
is within ``max_trigger_skew_s`` it grabs the next frame and says how late it is.

The backends are in :mod:`zhichao.devices.interfaces` (URL):

``folder:///path/to/frames?fps=10&loop=0``
    :class:`FolderCamera`: the folder's images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``) in
    name order, paced at ``fps`` (0: as fast as read). An undecodable file is counted
    (``bad_values``) and skipped, with its path in the log.
``file:///path/video.mp4?loop=0``, ``rtsp://host/stream``, ``usb://0``
    :class:`VideoCaptureCamera` (OpenCV). A file ends (or loops); a live stream that fails
    is reconnected.
``sim://camera?width=640&height=360&fps=25``
    :class:`SimulatedCamera`: synthetic frames showing their frame number.

The capture time is the station clock when the frame reached the driver, minus the
configured ``latency_s`` (the camera's exposure-to-delivery delay, to be measured per
installation; default 0).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, Timeouts
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
    DeviceNotAvailableError,
    DeviceProtocolError,
)

LOG = logging.getLogger("zhichao.devices")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True)
class CameraFrame:
    """One captured frame.

    Attributes
    ----------
    image : ``[height, width, 3]`` uint8, BGR (OpenCV order).
    capture_utc : station clock at capture (minus the camera's configured latency).
    index : frames captured by this camera object, from 0.
    source : the camera URL.
    name : what the frame is in its source (file name, or video frame number).
    """

    image: npt.NDArray[np.uint8]
    capture_utc: datetime
    index: int
    source: str
    name: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class TriggeredFrame:
    """The answer to a trigger: the frame, the trigger time, and capture − trigger [s]."""

    frame: CameraFrame
    trigger_utc: datetime
    skew_s: float
    label: str = ""


class EndOfStream(Exception):  # noqa: N818 - a signal between hook and template, never escapes
    """Raised by a hook when a finite source (folder, file) has no more frames."""


class FramePacer:
    """Paces a replay at ``fps`` frames per second (0: as fast as frames are read)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._next_due = 0.0

    def wait(self, timeout_s: float) -> bool:
        """Wait for the next frame's turn; False (after waiting ``timeout_s``) when it does
        not come within ``timeout_s``."""
        if self.fps <= 0:
            return True
        now = time.monotonic()
        if self._next_due == 0.0:
            self._next_due = now
        wait = self._next_due - now
        if wait > timeout_s:
            time.sleep(timeout_s)
            return False
        if wait > 0:
            time.sleep(wait)
        self._next_due += 1.0 / self.fps
        return True


class Camera(Device):
    """Abstract camera (template methods: :meth:`grab`, :meth:`trigger`).

    Parameters
    ----------
    buffer_frames : how many recent frames are kept for triggers.
    max_trigger_skew_s : a buffered frame this close to a trigger answers it [s].
    latency_s : subtracted from the station clock to get the capture time [s].
    stall_timeout_s : a live camera that delivers nothing this long is reconnected [s].
    """

    kind: ClassVar[str] = "camera"
    #: a live source (stream, USB) is reconnected when silent; a replay is not
    live_source: bool = True

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, buffer_frames: int = 16,
                 max_trigger_skew_s: float = 0.2, latency_s: float = 0.0,
                 stall_timeout_s: float = 5.0) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff)
        if buffer_frames < 1:
            raise DeviceConfigurationError(f"{url}: buffer_frames must be >= 1")
        self.max_trigger_skew_s = max_trigger_skew_s
        self.latency_s = latency_s
        self.stall_timeout_s = stall_timeout_s
        self._buffer: deque[CameraFrame] = deque(maxlen=buffer_frames)
        self._lock = threading.Lock()
        self._grab_lock = threading.Lock()
        self._index = 0
        self._ended = False
        self._last_frame = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- hook ----------------------------------------------------------------------------
    @abstractmethod
    def _read_frame_internal(self, timeout_s: float) -> tuple[Any, str] | None:
        """One frame as ``(image, name)`` within ``timeout_s``, or None if none yet.

        Raise :class:`EndOfStream` at the end of a finite source, and
        :class:`DeviceConnectionError` when a live link is lost.
        """

    # -- public --------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        """A finite source (folder, file without loop) has delivered its last frame."""
        return self._ended

    def _on_connected(self, reconnect: bool) -> None:
        self._last_frame = time.monotonic()

    def grab(self, timeout_s: float | None = None) -> CameraFrame | None:
        """Capture the next frame, or None if none came within ``timeout_s`` (or the
        source ended). Never raises for link or image problems: they are counted."""
        wait_s = self.timeouts.read if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait_s
        with self._grab_lock:
            while not self._ended:
                if not self._ensure_connected(deadline):
                    if time.monotonic() >= deadline:
                        return None
                    continue
                remaining = max(0.001, deadline - time.monotonic())
                try:
                    got = self._read_frame_internal(min(remaining, 0.5))
                except EndOfStream:
                    self._ended = True
                    self.health.info["ended"] = True
                    return None
                except DeviceConnectionError as exc:
                    self._link_lost(str(exc))
                    continue
                except DeviceProtocolError as exc:
                    self.health.fault("bad_values", str(exc))
                    got = None
                if got is not None:
                    station = utc_now()
                    frame = self._accept(got, station)
                    if frame is not None:
                        return frame
                elif (self.live_source
                      and time.monotonic() - self._last_frame > self.stall_timeout_s):
                    self.health.fault("stalls", f"no frame for {self.stall_timeout_s:.3g} s")
                    self._link_lost("stalled")
                if time.monotonic() >= deadline:
                    return None
        return None

    def _accept(self, got: tuple[Any, str], station: datetime) -> CameraFrame | None:
        image, name = got
        problem = _image_problem(image)
        if problem:
            self.health.fault("bad_values", f"frame rejected: {problem}", where=name or "?")
            return None
        img = np.ascontiguousarray(image if image.ndim == 3 else np.repeat(
            image[:, :, None], 3, axis=2))
        frame = CameraFrame(img, station - timedelta(seconds=self.latency_s), self._index,
                            self.url, name)
        self._index += 1
        self._last_frame = time.monotonic()
        self.health.frame_received()
        self.health.add("frames")
        self.health.info.update(width=frame.width, height=frame.height)
        with self._lock:
            self._buffer.append(frame)
        return frame

    def recent(self) -> list[CameraFrame]:
        """The buffered frames, oldest first."""
        with self._lock:
            return list(self._buffer)

    def trigger(self, at_utc: datetime | None = None, *, label: str = "",
                timeout_s: float | None = None) -> TriggeredFrame | None:
        """The frame for an event at ``at_utc`` (default now), e.g. an axle detection.

        Answers with the buffered frame captured nearest to ``at_utc`` if it is within
        ``max_trigger_skew_s``; otherwise grabs frames (until ``timeout_s``) until one is
        captured at or after ``at_utc``. ``skew_s`` = capture − trigger time. None when
        no frame could be had (counted as ``trigger_misses``).
        """
        at = at_utc if at_utc is not None else utc_now()
        if at.tzinfo is None:
            raise DeviceConfigurationError("trigger time must be timezone-aware (UTC)")
        self.health.add("triggers")
        best = self._nearest(at)
        if best is not None and abs(_skew(best, at)) <= self.max_trigger_skew_s:
            return TriggeredFrame(best, at, _skew(best, at), label)
        deadline = time.monotonic() + (self.timeouts.read if timeout_s is None else timeout_s)
        found: CameraFrame | None = None
        while found is None and (remaining := deadline - time.monotonic()) > 0:
            if self._thread is not None:  # the background grabber fills the buffer
                time.sleep(min(0.005, remaining))
                frame = self._nearest(at)
            else:
                frame = self.grab(remaining)
                if frame is None and self._ended:
                    break
            if frame is not None and _skew(frame, at) >= -self.max_trigger_skew_s:
                found = frame
        if found is None:
            found = self._nearest(at)
        if found is None:
            self.health.fault("trigger_misses", f"no frame for trigger {label!r}")
            return None
        skew = _skew(found, at)
        if abs(skew) > self.max_trigger_skew_s:
            self.health.fault("trigger_late", f"nearest frame {skew:+.3f} s from trigger "
                              f"{label!r}", level=logging.INFO)
        return TriggeredFrame(found, at, skew, label)

    def _nearest(self, at: datetime) -> CameraFrame | None:
        with self._lock:
            frames = list(self._buffer)
        if not frames:
            return None
        return min(frames, key=lambda f: abs(_skew(f, at)))

    def start(self) -> Camera:
        """Grab continuously in a background thread (live cameras), filling the buffer."""
        self._check_open()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._grab_loop, name="camera-grab",
                                            daemon=True)
            self._thread.start()
        return self

    def _grab_loop(self) -> None:
        while not self._stop.is_set() and not self._closed and not self._ended:
            try:
                self.grab(0.2)
            except Exception:  # never die silently
                LOG.exception("%s: camera grab thread error", self.url)
                self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(2.0)

    def close(self) -> None:
        self.stop()
        super().close()


def _skew(frame: CameraFrame, at: datetime) -> float:
    return (frame.capture_utc - at).total_seconds()


def _image_problem(image: Any) -> str:
    if not isinstance(image, np.ndarray):
        return f"not an image ({type(image).__name__})"
    if image.dtype != np.uint8:
        return f"dtype {image.dtype}, expected uint8"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        return f"shape {image.shape}, expected H×W×3"
    h, w = image.shape[:2]
    if h < 8 or w < 8 or h * w > MAX_IMAGE_PIXELS:
        return f"size {w}×{h}"
    return ""


def opencv() -> Any:
    """The ``cv2`` module, imported only when an OpenCV backend needs it."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency
        raise DeviceNotAvailableError("opencv-python-headless is not installed") from None
    return cv2
