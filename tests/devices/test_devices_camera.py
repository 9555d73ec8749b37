"""Cameras: real JPEGs from a folder, real video files written by cv2.VideoWriter, the
simulated camera, and the trigger API."""

from __future__ import annotations

import shutil
import socket
import time
from datetime import UTC, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import Timeouts
from zhichao.devices.camera import (
    CameraFrame,
    FolderCamera,
    SimulatedCamera,
    VideoCaptureCamera,
)
from zhichao.devices.errors import DeviceClosedError, DeviceConfigurationError
from zhichao.devices.registry import open_device


@pytest.fixture
def jpeg_folder(tmp_path: Path, plates_dev: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, src in enumerate(sorted(plates_dev.glob("*.jpg"))[:6]):
        shutil.copy(src, folder / f"f{i:03d}.jpg")
    (folder / "f003b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")  # a broken file
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_replay_of_real_jpegs(jpeg_folder: Path) -> None:
    with open_device("camera", f"folder://{jpeg_folder}") as cam:
        assert isinstance(cam, FolderCamera)
        frames: list[CameraFrame] = []
        while (f := cam.grab(2.0)) is not None:
            frames.append(f)
        h = cam.health_snapshot()
    assert [f.name for f in frames] == [f"f{i:03d}.jpg" for i in range(6)]
    assert cam.ended and h.counters["bad_values"] == 1 and "f003b.jpg" in (h.last_error or "")
    ref = cv2.imread(str(jpeg_folder / "f000.jpg"))
    np.testing.assert_array_equal(frames[0].image, ref)
    assert all(f.capture_utc.tzinfo == UTC for f in frames)
    times = [f.capture_utc for f in frames]
    assert times == sorted(times) and [f.index for f in frames] == list(range(6))


def test_folder_paced_and_looping(jpeg_folder: Path) -> None:
    with FolderCamera.from_url(f"folder://{jpeg_folder}?fps=50&loop=1") as cam:
        t0 = time.monotonic()
        frames = [cam.grab(1.0) for _ in range(10)]
        elapsed = time.monotonic() - t0
    assert all(f is not None for f in frames) and not cam.ended
    assert [f.name for f in frames if f][6] == "f000.jpg"  # looped
    assert elapsed >= 9 / 50 * 0.9


def write_video(path: Path, n_frames: int, size: tuple[int, int] = (160, 120)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, size)
    assert writer.isOpened()
    for i in range(n_frames):
        img = np.full((size[1], size[0], 3), 10 * i, dtype=np.uint8)
        writer.write(img)
    writer.release()


def test_video_file_frames_in_order_then_end(tmp_path: Path) -> None:
    video = tmp_path / "lane.avi"
    write_video(video, 20)
    with open_device("camera", f"file://{video}") as cam:
        assert isinstance(cam, VideoCaptureCamera)
        frames: list[CameraFrame] = []
        while (f := cam.grab(2.0)) is not None:
            frames.append(f)
        h = cam.health_snapshot()
    assert len(frames) == 20 and cam.ended
    levels = [int(round(float(f.image.mean()) / 10)) for f in frames]
    assert levels == list(range(20))
    assert frames[0].width == 160 and frames[0].height == 120
    assert h.info["width"] == 160 and h.counters["frames"] == 20


def test_video_file_loops(tmp_path: Path) -> None:
    video = tmp_path / "short.avi"
    write_video(video, 5)
    with VideoCaptureCamera.from_url(f"file://{video}?loop=1") as cam:
        frames = [cam.grab(2.0) for _ in range(12)]
    levels = [int(round(float(f.image.mean()) / 10)) for f in frames if f is not None]
    assert levels[:12] == [0, 1, 2, 3, 4] * 2 + [0, 1]


def test_live_stream_that_fails_is_reconnected(tmp_path: Path) -> None:
    video = tmp_path / "live.avi"
    write_video(video, 6)
    # a file opened as a live source: its end looks like a broken stream
    with VideoCaptureCamera(f"file://{video}", str(video), live=True,
                            backoff=Backoff(0.01, 0.05)) as cam:
        frames = [cam.grab(2.0) for _ in range(15)]
        h = cam.health_snapshot()
    assert all(f is not None for f in frames) and not cam.ended
    assert h.counters["disconnects"] >= 2 and h.counters["reconnects"] >= 2
    levels = [int(round(float(f.image.mean()) / 10)) for f in frames if f is not None]
    assert levels == [0, 1, 2, 3, 4, 5] * 2 + [0, 1, 2]


def test_missing_source_never_raises_and_backs_off(tmp_path: Path) -> None:
    with VideoCaptureCamera.from_url(f"file://{tmp_path}/absent.avi",
                                     timeouts=Timeouts(0.5),
                                     backoff=Backoff(0.05, 0.2)) as cam:
        assert cam.grab(0.5) is None
        h = cam.health_snapshot()
        assert not h.connected and h.counters["connect_failures"] >= 2
    with pytest.raises(DeviceClosedError):
        cam.grab(0.1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with VideoCaptureCamera.from_url(f"rtsp://127.0.0.1:{port}/lane",
                                     timeouts=Timeouts(0.5)) as rtsp:
        assert rtsp.grab(0.6) is None
        assert rtsp.health_snapshot().counters["connect_failures"] >= 1
    with pytest.raises(DeviceConfigurationError):
        VideoCaptureCamera.from_url("usb://front")


def test_trigger_answers_with_the_frame_nearest_the_axle_time() -> None:
    with SimulatedCamera.from_url("sim://camera?width=320&height=180&fps=50",
                                  buffer_frames=50, max_trigger_skew_s=0.03) as cam:
        cam.start()
        time.sleep(0.5)
        axle_utc = utc_now() - timedelta(seconds=0.3)  # the core reports a little late
        hit = cam.trigger(axle_utc, label="axle 1")
        assert hit is not None and abs(hit.skew_s) <= 0.03 and hit.label == "axle 1"
        future = utc_now() + timedelta(seconds=0.2)
        nxt = cam.trigger(future, timeout_s=1.0)
        assert nxt is not None and nxt.skew_s >= -0.03
        old = cam.trigger(utc_now() - timedelta(seconds=30), timeout_s=0.1)
        assert old is not None and old.skew_s > 25  # only newer frames: it says how far
        cam.stop()
        frames = cam.recent()
        h = cam.health_snapshot()
    assert 20 <= len(frames) <= 50 and h.counters["triggers"] == 3
    assert h.counters["trigger_late"] == 1
    idx = [f.index for f in frames]
    assert idx == sorted(idx)
    with pytest.raises(DeviceConfigurationError):
        SimulatedCamera("sim://camera").trigger(utc_now().replace(tzinfo=None))


def test_trigger_without_background_grabs_the_next_frame() -> None:
    with SimulatedCamera("sim://camera", fps=0, width=64, height=48) as cam:
        hit = cam.trigger()
        assert hit is not None and hit.frame.index == 0 and hit.skew_s >= 0
        assert hit.frame.image.shape == (48, 64, 3)
