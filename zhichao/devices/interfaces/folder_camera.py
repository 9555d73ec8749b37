"""``folder:///path?fps=10&loop=0``: the images of a folder in name order (a replay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.camera_source import (
    IMAGE_SUFFIXES,
    Camera,
    EndOfStream,
    FramePacer,
    opencv,
)
from zhichao.devices.errors import (
    DeviceConfigurationError,
    DeviceConnectionError,
    DeviceProtocolError,
)


class FolderCamera(Camera):
    """Frames from the image files of a folder, in name order (a replay)."""

    live_source = False

    def __init__(self, url: str, folder: str | Path, *, fps: float = 0.0, loop: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.folder = Path(folder)
        self.fps = fps
        self.loop = loop
        self._files: list[Path] = []
        self._pos = 0
        self._pacer = FramePacer(fps)

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> FolderCamera:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        if not parsed.path:
            raise DeviceConfigurationError(f"{parsed.text}: folder:// needs a path")
        return cls(parsed.text, parsed.path, fps=parsed.get_float("fps", 0.0),
                   loop=parsed.get_int("loop", 0) != 0, **kwargs)

    def _connect(self, timeout_s: float) -> None:
        if not self.folder.is_dir():
            raise DeviceConnectionError(f"{self.url}: {self.folder} is not a folder")
        try:
            files = sorted(p for p in self.folder.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise DeviceConnectionError(f"{self.url}: cannot list {self.folder}: {exc}") from exc
        if not files:
            raise DeviceConnectionError(f"{self.url}: no images in {self.folder}")
        self._files = files
        self.health.info.update(frames_in_source=len(files))

    def _disconnect(self) -> None:
        pass

    def _read_frame_internal(self, timeout_s: float) -> tuple[Any, str] | None:
        if self._pos >= len(self._files):
            if not self.loop:
                raise EndOfStream
            self._pos = 0
        if not self._pacer.wait(timeout_s):
            return None
        path = self._files[self._pos]
        self._pos += 1
        cv2 = opencv()
        try:
            data = np.fromfile(path, dtype=np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        except (OSError, cv2.error) as exc:
            raise DeviceProtocolError(f"{path}: unreadable image: {exc}") from exc
        if image is None:
            raise DeviceProtocolError(f"{path}: not a decodable image")
        return image, path.name
