"""The simulated lane's camera video streams: MJPEG over HTTP on loopback.

Many IP cameras offer ``http://camera/…mjpg`` (``multipart/x-mixed-replace``, one JPEG
per part) beside RTSP; the station opens such a URL with OpenCV ``VideoCapture`` like any
camera stream (:class:`zhichao.devices.interfaces.video_capture.VideoCaptureCamera`).
Each simulated camera serves ``/<camera id>.mjpg``: the road, and each vehicle's frame
(the still the camera pushes) shown growing as the vehicle approaches from
:data:`SHOW_S` simulated seconds before its moment at the camera and leaving for as
long after, with the simulated UTC time burnt in (as enforcement cameras do). Frames are
made at ``fps`` per wall second, only while a client is connected; on a lane faster than
real time the stream is a time-lapse (``fps / speed`` frames per simulated second).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

LOG = logging.getLogger(__name__)
SHOW_S = 2.0  # a vehicle is in view this long (simulated seconds) before and after its moment
BOUNDARY = b"zhichaoframe"
Image = npt.NDArray[np.uint8]


class _Camera:
    def __init__(self, camera_id: str, size: tuple[int, int]) -> None:
        self.camera_id = camera_id
        self.size = size
        w, h = size
        rng = np.random.default_rng(zlib.crc32(camera_id.encode()))
        road = np.clip(rng.normal(95, 10, (h, w)), 0, 255).astype(np.uint8)
        self.background: Image = np.ascontiguousarray(
            np.asarray(cv2.cvtColor(road, cv2.COLOR_GRAY2BGR), np.uint8))
        # (simulated second, the still: JPEG as pushed, decoded when first drawn)
        self.vehicles: list[tuple[float, bytes | Image]] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.seq = 0
        self.jpeg = b""
        self.clients = 0


class SimStreams:
    """One MJPEG stream per simulated camera; :attr:`urls` maps camera id → URL."""

    def __init__(self, camera_ids: Sequence[str], *, fps: float = 12.0,
                 size: tuple[int, int] = (480, 270), host: str = "127.0.0.1") -> None:
        self.fps = fps
        self.cameras = {cid: _Camera(cid, size) for cid in camera_ids}
        self.epoch: datetime | None = None
        self.wall0_s = 0.0
        self.speed = 1.0
        self._stop = threading.Event()
        streams = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                cam = streams.cameras.get(self.path.strip("/").removesuffix(".mjpg"))
                if cam is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary="
                                 + BOUNDARY.decode())
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                streams._serve(cam, self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.urls = {cid: f"http://{host}:{port}/{cid}.mjpg" for cid in camera_ids}
        threading.Thread(target=self.server.serve_forever, name="sim-streams",
                         daemon=True).start()
        threading.Thread(target=self._render_loop, name="sim-streams-render",
                         daemon=True).start()

    def set_clock(self, epoch: datetime, wall0_s: float, speed: float) -> None:
        """The simulated clock (``SimClock``'s triple): frames show its time."""
        self.wall0_s, self.speed = wall0_s, speed
        self.epoch = epoch

    def add_vehicle(self, camera_id: str, sim_s: float, jpeg: bytes) -> None:
        """A vehicle at camera ``camera_id`` at simulated second ``sim_s`` (from the
        epoch), looking like ``jpeg`` (the still that camera takes of it)."""
        cam = self.cameras.get(camera_id)
        if cam is None:
            return
        with cam.lock:  # decoded by the render thread, not on the traffic generator's time
            cam.vehicles.append((sim_s, jpeg))

    @staticmethod
    def _still(cam: _Camera, jpeg: bytes) -> Image | None:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return None
        return np.asarray(cv2.resize(img, cam.size, interpolation=cv2.INTER_AREA), np.uint8)

    def _frame(self, cam: _Camera, sim_s: float) -> Image:
        img: Image = cam.background.copy()
        w, h = cam.size
        with cam.lock:
            cam.vehicles = [(t, s) for t, s in cam.vehicles if t > sim_s - SHOW_S]
            near = [(i, t, s) for i, (t, s) in enumerate(cam.vehicles)
                    if t - SHOW_S <= sim_s][:1]
        for i, t, raw in near:
            still = self._still(cam, raw) if isinstance(raw, bytes) else raw
            if still is None:
                continue
            with cam.lock:
                if i < len(cam.vehicles) and cam.vehicles[i][0] == t:
                    cam.vehicles[i] = (t, still)
            # approaching: from 40 % to full size at its moment; then leaving downwards
            k = 0.4 + 0.6 * min(1.0, max(0.0, 1.0 - (t - sim_s) / SHOW_S))
            sw, sh = max(2, int(w * k)), max(2, int(h * k))
            small = cv2.resize(still, (sw, sh), interpolation=cv2.INTER_AREA)
            x0 = (w - sw) // 2
            y0 = (h - sh) // 2 + int(max(0.0, sim_s - t) / SHOW_S * h)
            y1 = min(h, y0 + sh)
            if y1 > y0:
                img[y0:y1, x0:x0 + sw] = small[:y1 - y0]
        stamp = ("(lane clock not started)" if self.epoch is None else (
            self.epoch + timedelta(seconds=sim_s)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            + " UTC")
        cv2.putText(img, f"{cam.camera_id} {stamp}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX,
                    0.55, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    def _render_loop(self) -> None:
        period = 1.0 / self.fps
        due = time.monotonic()
        while not self._stop.is_set():
            # frames also before the lane's clock starts: a client connects at once
            sim_s = (time.time() - self.wall0_s) * self.speed if self.epoch else -1e9
            for cam in self.cameras.values():
                if cam.clients == 0:
                    continue
                ok, jpg = cv2.imencode(".jpg", self._frame(cam, sim_s),
                                       [cv2.IMWRITE_JPEG_QUALITY, 85])
                if ok:
                    with cam.cond:
                        cam.jpeg, cam.seq = jpg.tobytes(), cam.seq + 1
                        cam.cond.notify_all()
            due = max(due + period, time.monotonic())
            self._stop.wait(due - time.monotonic())

    def _serve(self, cam: _Camera, handler: BaseHTTPRequestHandler) -> None:
        with cam.cond:
            cam.clients += 1
            # the next frame rendered for this client: never an empty part (seq 0, nothing
            # rendered yet) nor a stale one from an earlier client
            seen = cam.seq
        try:
            while not self._stop.is_set():
                with cam.cond:
                    if cam.seq == seen:
                        cam.cond.wait(1.0)
                    if cam.seq == seen:
                        continue
                    seen, data = cam.seq, cam.jpeg
                handler.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                                    b"Content-Length: " + str(len(data)).encode()
                                    + b"\r\n\r\n" + data + b"\r\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with cam.cond:
                cam.clients -= 1

    def close(self) -> None:
        self._stop.set()
        for cam in self.cameras.values():
            with cam.cond:
                cam.cond.notify_all()
        with contextlib.suppress(Exception):
            self.server.shutdown()
        self.server.server_close()
