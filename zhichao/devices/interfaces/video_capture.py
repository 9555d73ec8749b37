"""``file:///video.mp4?loop=0``, ``rtsp://host/stream``, ``usb://0``: OpenCV ``VideoCapture``."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.camera_source import (
    Camera,
    EndOfStream,
    opencv,
)
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
)

LOG = logging.getLogger("zhichao.devices")


class VideoCaptureCamera(Camera):
    """OpenCV ``VideoCapture``: a video file, an RTSP stream, or a USB camera.

    ``source`` is a file path, an ``rtsp://`` URL or a device index; ``loop`` restarts a
    file at its end. Live sources that fail to deliver are reconnected with back-off.
    """

    #: a network camera's URL goes to the camera as it is, query included (Dahua's
    #: ``?channel=1&subtype=0``, Axis's ``?videocodec=h264``): the query is the camera's,
    #: not settings of this backend, so the registry does not check it
    QUERY_PASSES_THROUGH: ClassVar[frozenset[str]] = frozenset({"rtsp", "rtsps", "http", "https"})

    def __init__(self, url: str, source: str | int, *, loop: bool = False,
                 live: bool = True, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.source = source
        self.loop = loop
        self.live = live
        self.live_source = live
        self._cap: Any = None
        self._frame_no = 0

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> VideoCaptureCamera:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        if parsed.scheme == "file":
            if not parsed.path:
                raise DeviceConfigurationError(f"{parsed.text}: file:// needs a path")
            return cls(parsed.text, parsed.path, loop=parsed.get_int("loop", 0) != 0,
                       live=False, **kwargs)
        if parsed.scheme == "usb":
            index_text = parsed.host or parsed.path.strip("/") or "0"
            try:
                index = int(index_text)
            except ValueError:
                raise DeviceConfigurationError(
                    f"{parsed.text}: usb:// takes a device index, e.g. usb://0") from None
            return cls(parsed.text, index, **kwargs)
        if parsed.scheme in cls.QUERY_PASSES_THROUGH:
            return cls(parsed.text, parsed.text.split("#")[0], **kwargs)
        raise DeviceConfigurationError(f"{parsed.text}: expected file://, rtsp:// or usb://")

    def _connect(self, timeout_s: float) -> None:
        cv2 = opencv()
        ms = max(1, int(timeout_s * 1000))
        try:
            if isinstance(self.source, int):
                cap = cv2.VideoCapture(self.source)
            else:
                cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                                        max(1, int(self.timeouts.read * 1000))])
        except cv2.error as exc:
            raise DeviceConnectionError(f"{self.url}: OpenCV cannot open it: {exc}") from exc
        if not cap.isOpened():
            cap.release()
            raise DeviceConnectionError(f"{self.url}: OpenCV cannot open {self.source!r}")
        self._cap = cap
        self._frame_no = 0
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.health.info.update(backend=str(cap.getBackendName()), fps=round(fps, 3))

    def _disconnect(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception as exc:  # releasing a broken capture may fail
                LOG.debug("%s: release failed: %s", self.url, exc)

    def _read_frame_internal(self, timeout_s: float) -> tuple[Any, str] | None:
        cv2 = opencv()
        if self._cap is None:
            raise DeviceConnectionError(f"{self.url}: not open")
        try:
            ok, image = self._cap.read()
        except cv2.error as exc:
            raise DeviceConnectionError(f"{self.url}: read failed: {exc}") from exc
        if not ok or image is None:
            if not self.live:
                if self.loop and self._frame_no > 0:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    self._frame_no = 0
                    return None
                raise EndOfStream
            raise DeviceConnectionError(f"{self.url}: no frame from the stream")
        name = f"frame {self._frame_no}"
        self._frame_no += 1
        return image, name
