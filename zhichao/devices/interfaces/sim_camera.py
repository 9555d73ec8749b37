"""``sim://camera?width=640&height=360&fps=25``: synthetic frames showing their number."""

from __future__ import annotations

from typing import Any

import numpy as np

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.camera_source import Camera, FramePacer, opencv
from zhichao.devices.errors import DeviceConfigurationError


class SimulatedCamera(Camera):
    """Synthetic frames at ``fps`` (0: as fast as asked), each showing its frame number
    and a bar moving across, so tests can tell frames apart."""

    live_source = False

    def __init__(self, url: str, *, width: int = 640, height: int = 360, fps: float = 25.0,
                 **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if not (8 <= width <= 8192 and 8 <= height <= 8192):
            raise DeviceConfigurationError(f"{url}: frame size {width}×{height}")
        self.width = width
        self.height = height
        self.fps = fps
        self._n = 0
        self._pacer = FramePacer(fps)

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> SimulatedCamera:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        return cls(parsed.text, width=parsed.get_int("width", 640),
                   height=parsed.get_int("height", 360), fps=parsed.get_float("fps", 25.0),
                   **kwargs)

    def _connect(self, timeout_s: float) -> None:
        self.health.info.update(model="simulated camera", fps=self.fps)

    def _disconnect(self) -> None:
        pass

    def _read_frame_internal(self, timeout_s: float) -> tuple[Any, str] | None:
        if not self._pacer.wait(timeout_s):
            return None
        cv2 = opencv()
        img = np.full((self.height, self.width, 3), 40, dtype=np.uint8)
        x = (self._n * 7) % self.width
        img[:, x:x + 6] = (0, 200, 255)
        cv2.putText(img, f"{self._n:06d}", (10, self.height // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    1.0, (255, 255, 255), 2)
        name = f"sim {self._n}"
        self._n += 1
        return img, name
