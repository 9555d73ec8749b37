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
replay (folder, file) is read one frame per tick. Unclaimed frames of a URL camera are
deleted when stale (continuous frames no vehicle claimed are not evidence of anything);
linked ones are kept with their passage like any other.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from zhichao.common import write_atomic
from zhichao.station.clock import Clock
from zhichao.station.config import CAMERA_URL_SCHEMES
from zhichao.station.linking import utc_name

LOG = logging.getLogger("zhichao.station.cameras")
URL_SCHEMES = CAMERA_URL_SCHEMES


class CameraGrabber:
    """One URL camera → its spool folder, in a thread of its own."""

    def __init__(self, camera_id: str, url: str, spool: Path, clock: Clock, *,
                 max_fps: float, latency_s: float, jpeg_quality: int = 90) -> None:
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

    def _loop(self) -> None:
        import cv2

        due = time.monotonic()
        while not self._stop.is_set():
            try:
                frame = self._next_frame()
                if frame is not None:
                    self._last_index = frame.index
                    ok, jpg = cv2.imencode(".jpg", frame.image,
                                           [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                    if not ok:
                        raise ValueError(f"{self.url}: JPEG encoding failed")
                    ref = self.clock.at_wall(frame.capture_utc.timestamp())
                    self._seq += 1
                    name = f"{self.camera_id}-{utc_name(ref)}-{self._seq:07d}.jpg"
                    # not fsynced: a frame becomes evidence only inside a sealed package,
                    # and sealing fsyncs every file it writes
                    write_atomic(self.spool / name, jpg.tobytes(), fsync=False)
                    self.written += 1
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
                "errors": self.errors + h.error_count, "ended": self.camera.ended}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.camera.close()
