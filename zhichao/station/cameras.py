"""Cameras opened through the devices stage (``[[camera]] url = ...``).

A camera of the lane either pushes its frames into a spool folder (``spool_dir``, FTP
push) or is opened by URL with :func:`zhichao.devices.registry.open_device` (``folder://``,
``file://``, ``rtsp://``, ``usb://``, ``sim://``; :mod:`zhichao.devices.camera`). For a URL
camera a grabber thread takes frames at up to ``max_fps`` and writes each one into the
camera's own spool folder (``<data>/cameras/<camera id>/``) under the spool naming
(``<camera id>-<capture time>-<seq>.jpg``, through a temporary name and a rename), so it
enters the same linking path as a pushed frame. The capture time is the devices stage's
(station clock at delivery minus the camera's ``latency_s``), expressed in the station's
reference clock; the measured offset of such a camera is therefore only its write delay.

A live source (stream, USB) is grabbed continuously by the devices stage's own thread
(its buffer holds the newest frames; this grabber takes the newest one at its pace); a
replay (folder, file) is read one frame per tick.

With ``capture = "triggered"`` the grabber writes one frame per vehicle instead: the
station asks for it (:meth:`CameraGrabber.request`) with the vehicle's predicted arrival at
the camera as soon as the vehicle is weighed, and at that moment the grabber calls the
devices stage's ``Camera.trigger`` (the buffered frame nearest the time, or the next one
grabbed). After :data:`TRIGGER_MISSES` triggers in a row that got no frame within the
camera's ``max_trigger_skew_s`` the grabber falls back to continuous frames (logged).

Unclaimed frames of a URL camera are deleted when stale (continuous frames no vehicle
claimed are not evidence of anything); linked ones are kept with their passage like any
other.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zhichao.common import write_atomic
from zhichao.station.clock import Clock
from zhichao.station.config import CAMERA_URL_SCHEMES
from zhichao.station.linking import utc_name

LOG = logging.getLogger("zhichao.station.cameras")
URL_SCHEMES = CAMERA_URL_SCHEMES
TRIGGER_MISSES = 3  # triggers in a row without a frame in tolerance → continuous frames
TRIGGER_TIMEOUT_S = 0.5  # a trigger waits this long for a frame at or after its time


class CameraGrabber:
    """One URL camera → its spool folder, in a thread of its own."""

    def __init__(self, camera_id: str, url: str, spool: Path, clock: Clock, *,
                 max_fps: float, latency_s: float, jpeg_quality: int = 90,
                 triggered: bool = False) -> None:
        from zhichao.devices.camera import Camera
        from zhichao.devices.registry import open_device

        self.camera_id = camera_id
        self.url = url
        self.spool = spool
        self.clock = clock
        self.period_s = 1.0 / max_fps
        self.jpeg_quality = jpeg_quality
        device = open_device("camera", url, latency_s=latency_s)
        assert isinstance(device, Camera)
        self.camera: Camera = device
        self.written = 0
        self.errors = 0
        self.triggered = triggered
        self.trigger_misses = 0  # in a row
        self._requests: list[tuple[float, str]] = []  # (wall second, label), sorted
        self._requests_lock = threading.Lock()
        self._seq = 0
        self._last_index = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        spool.mkdir(parents=True, exist_ok=True)

    def start(self) -> CameraGrabber:
        if self.camera.live_source:
            self.camera.start()  # the devices stage's continuous grab fills the buffer
        self._thread = threading.Thread(target=self._loop, name=f"camera-{self.camera_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def _next_frame(self) -> Any:
        if self.camera.live_source:
            frames = self.camera.recent()
            newest = frames[-1] if frames else None
            if newest is None or newest.index <= self._last_index:
                return None
            return newest
        return self.camera.grab(self.period_s)

    def request(self, label: str, at_wall_s: float) -> None:
        """A frame at wall-clock second ``at_wall_s`` (a vehicle's predicted arrival), in
        triggered capture; ignored otherwise."""
        if self.triggered:
            with self._requests_lock:
                self._requests.append((at_wall_s, label))
                self._requests.sort()

    def _due_request(self) -> tuple[float, str] | None:
        with self._requests_lock:
            if self._requests and self._requests[0][0] <= time.time():
                return self._requests.pop(0)
        return None

    def _serve_trigger(self) -> None:
        """Answer the request that is due, if any; fall back to continuous frames after
        :data:`TRIGGER_MISSES` misses in a row."""
        due = self._due_request()
        if due is None:
            self._stop.wait(0.005)
            return
        at_wall_s, label = due
        got = self.camera.trigger(datetime.fromtimestamp(at_wall_s, UTC), label=label,
                                  timeout_s=TRIGGER_TIMEOUT_S)
        if got is not None and got.frame.index != self._last_index:  # not twice
            self._write(got.frame)
        if got is None or abs(got.skew_s) > self.camera.max_trigger_skew_s:
            self.trigger_misses += 1
        else:
            self.trigger_misses = 0
        if self.trigger_misses >= TRIGGER_MISSES:
            self.triggered = False
            LOG.warning("camera triggers missed; continuous frames from now on", extra={
                "fields": {"camera": self.camera_id, "misses": self.trigger_misses}})

    def _write(self, frame: Any) -> None:
        import cv2

        self._last_index = frame.index
        ok, jpg = cv2.imencode(".jpg", frame.image,
                               [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"{self.url}: JPEG encoding failed")
        ref = self.clock.at_wall(frame.capture_utc.timestamp())
        self._seq += 1
        name = f"{self.camera_id}-{utc_name(ref)}-{self._seq:07d}.jpg"
        # not fsynced (most frames are never linked): the commit fsyncs a linked frame as
        # it moves it into its passage's folder (commit.move_frame), and the sealer seals
        # a frame a power cut left empty or cut short as missing (sealing.jpeg_unusable)
        write_atomic(self.spool / name, jpg.tobytes(), fsync=False)
        self.written += 1

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                if self.triggered:
                    self._serve_trigger()
                    due = time.monotonic()
                    continue
                if not self.clock.ready:  # a frame stamped before the reference is known
                    self._stop.wait(0.05)  # would be taken for a clock offset of months
                    continue
                frame = self._next_frame()
                if frame is not None:
                    self._write(frame)
                elif self.camera.ended:
                    LOG.warning("camera source ended", extra={"fields": {
                        "camera": self.camera_id, "url": self.url}})
                    return
            except Exception as exc:  # the station goes on without this frame
                self.errors += 1
                LOG.error("camera grab failed", extra={"fields": {
                    "camera": self.camera_id, "error": repr(exc)}})
                self._stop.wait(1.0)
            due += self.period_s
            now = time.monotonic()
            if due < now:
                due = now
            self._stop.wait(due - now)

    def health(self) -> dict[str, Any]:
        h = self.camera.health_snapshot()
        return {"camera_id": self.camera_id, "url": self.url, "written": self.written,
                "errors": self.errors + h.error_count, "ended": self.camera.ended,
                "capture": "triggered" if self.triggered else "continuous",
                "triggers": h.counters.get("triggers", 0)}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.camera.close()
