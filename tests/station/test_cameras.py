"""A camera opened through the devices stage (``[[camera]] url = ...``) in a real station.

The rear camera of the simulated lane is replaced by a real OpenCV ``VideoCapture`` source:
a video file written here with ``cv2.VideoWriter``, looped (``file://…?loop=1``). Its
grabber thread timestamps the frames (station reference clock) and writes them into the
camera's folder; the ordinary linking path links them to the passing vehicles.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.station.conftest import query
from zhichao.station.config import load_config, parse_config
from zhichao.station.errors import StationConfigError
from zhichao.station.linking import travel_time_s

N_VEHICLES = 30
REAR_M = 30.0
TRIGGERED_M = 60.0


def _video(path: Path, frames: int = 60) -> None:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (320, 240))
    assert out.isOpened()
    for i in range(frames):
        img = np.full((240, 320, 3), (40, 40 + 3 * i % 200, 90), np.uint8)
        cv2.putText(img, f"{i:03d}", (100, 130), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255),
                    3)
        out.write(img)
    out.release()


@pytest.mark.slow
def test_video_capture_camera_frames_are_linked_to_vehicles(tmp_path: Path) -> None:
    video = tmp_path / "rear.avi"
    _video(video)
    cfg_path = tmp_path / "station.toml"
    cfg_path.write_text(f"""
[station]
data_dir = "{tmp_path / 'station'}"
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
[[camera]]
camera_id = "CAM-FRONT-1"
role = "front"
spool_dir = "spool/front"
trigger_distance_m = 12.0
[[camera]]
camera_id = "CAM-REAR-1"
role = "rear"
url = "file://{video}?loop=1"
max_fps = 25.0
trigger_distance_m = {REAR_M}
[simulation]
speed = 5.0
speed_kmh = [30.0, 90.0]
seed = 3
max_vehicles = {N_VEHICLES}
abnormal_fraction = 0.0
start_utc = "2026-03-02T08:00:00Z"
""", encoding="utf-8")
    cfg = load_config(cfg_path)
    res = subprocess.run([sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path),
                          "--no-view"], capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = query(cfg.data_dir / "station.db", "SELECT passage_key, record, frames FROM "
                                              "passages ORDER BY first_sample")
    assert len(rows) >= 0.9 * N_VEHICLES
    linked = 0
    seen: set[str] = set()
    worst = 0.0
    for key, record_text, frames_text in rows:
        rear = [f for f in json.loads(frames_text) if f["camera_id"] == "CAM-REAR-1"]
        assert len(rear) <= 1
        if not rear:
            continue
        f = rear[0]
        assert f["path"] not in seen  # never one frame for two vehicles
        seen.add(f["path"])
        path = Path(f["path"])
        assert path.is_file() and key in path.parts
        img = cv2.imread(str(path))
        assert img is not None and img.shape == (240, 320, 3)  # the video's own frames
        rec = json.loads(record_text)
        dt = travel_time_s(REAR_M, rec["speed_kmh"] / 3.6, rec["acceleration_ms2"] or 0.0)
        assert dt is not None
        expected = datetime.fromisoformat(rec["time_utc"]) + timedelta(seconds=dt)
        got = datetime.fromisoformat(f["capture_utc"])
        worst = max(worst, abs((got - expected).total_seconds()))
        linked += 1
    print(f"\nCAMERA: {linked}/{len(rows)} passages with a rear frame from the video; "
          f"worst |capture − expected| {worst:.3f} s")
    assert linked >= 0.9 * len(rows)
    assert worst <= cfg.linking.window_s
    assert math.isfinite(worst)
    # the simulator pushed nothing for the URL camera; front frames still came by spool
    fronts = sum(1 for *_, fr in rows if any(f["role"] == "front" for f in json.loads(fr)))
    assert fronts >= 0.9 * len(rows)


def test_triggered_capture_takes_one_video_frame_per_vehicle(tmp_path: Path) -> None:
    """``capture = "triggered"``: the rear camera (a real ``VideoCapture`` file source) is
    triggered at each vehicle's predicted arrival instead of streaming 25 frames/s; the
    triggered frames are linked to their vehicles. The camera is 60 m downstream: a vehicle
    is weighed (after its last axle left the array) before it gets there; at 30 m many
    are not, and the grabber falls back to continuous frames."""
    video = tmp_path / "rear.avi"
    _video(video)
    n_vehicles = 15
    cfg_path = tmp_path / "station.toml"
    cfg_path.write_text(f"""
[station]
data_dir = "{tmp_path / 'station'}"
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
[[camera]]
camera_id = "CAM-FRONT-1"
role = "front"
spool_dir = "spool/front"
trigger_distance_m = 12.0
[[camera]]
camera_id = "CAM-REAR-1"
role = "rear"
url = "file://{video}?loop=1"
capture = "triggered"
trigger_distance_m = {TRIGGERED_M}
[simulation]
speed = 5.0
speed_kmh = [30.0, 90.0]
seed = 3
max_vehicles = {n_vehicles}
abnormal_fraction = 0.0
start_utc = "2026-03-02T08:00:00Z"
""", encoding="utf-8")
    cfg = load_config(cfg_path)
    res = subprocess.run([sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path),
                          "--no-view"], capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = query(cfg.data_dir / "station.db", "SELECT record, frames FROM passages")
    assert len(rows) >= 0.9 * n_vehicles
    worst, linked, paths = 0.0, 0, set()
    for record_text, frames_text in rows:
        rear = [f for f in json.loads(frames_text) if f["camera_id"] == "CAM-REAR-1"]
        if not rear:
            continue
        paths.add(rear[0]["path"])
        rec = json.loads(record_text)
        dt = travel_time_s(TRIGGERED_M, rec["speed_kmh"] / 3.6,
                           rec["acceleration_ms2"] or 0.0)
        assert dt is not None
        expected = datetime.fromisoformat(rec["time_utc"]) + timedelta(seconds=dt)
        got = datetime.fromisoformat(rear[0]["capture_utc"])
        worst = max(worst, abs((got - expected).total_seconds()))
        linked += 1
    unclaimed = list((cfg.data_dir / "cameras" / "CAM-REAR-1").glob("*.jpg"))
    log = (cfg.data_dir / "station.log.jsonl").read_text("utf-8")
    print(f"\nTRIGGERED: {linked}/{len(rows)} passages with a triggered rear frame, "
          f"{len(unclaimed)} frames unclaimed, worst |capture − expected| {worst:.3f} s")
    assert "continuous frames from now on" not in log  # no fallback
    # the lane runs at 5× real time, so a loaded machine delays some triggers past the
    # vehicle (measured 11–13 of 15 linked); each linked frame is within the window (below)
    assert linked == len(paths) >= 0.6 * len(rows)
    assert linked + len(unclaimed) <= len(rows) + 3  # one frame per vehicle, not a stream
    assert worst <= cfg.linking.window_s


def test_a_network_cameras_own_query_is_accepted() -> None:
    cfg = parse_config({"camera": [
        {"camera_id": "C", "role": "front",
         "url": "rtsp://10.0.0.5:554/cam/realmonitor?channel=1&subtype=0"},
        {"camera_id": "D", "role": "rear", "spool_dir": "s",
         "stream_url": "http://10.0.0.7/video.cgi?channel=1"}]})
    assert cfg.cameras[0].url.endswith("?channel=1&subtype=0")


@pytest.mark.parametrize(("camera", "problem"), [
    ({"camera_id": "C", "role": "front"}, "exactly one of spool_dir"),
    ({"camera_id": "C", "role": "front", "spool_dir": "s", "url": "sim://c"},
     "exactly one of spool_dir"),
    ({"camera_id": "C", "role": "front", "url": "ftp://cam/x.jpg"}, "scheme must be"),
    ({"camera_id": "C", "role": "front", "spool_dir": "s", "stream_url": "ftp://cam/v"},
     "scheme must be"),
    ({"camera_id": "C", "role": "front", "url": "sim://c", "stream_url": "http://cam/v"},
     "stream_url is for spool cameras"),
    ({"camera_id": "C", "role": "front", "url": "sim://c", "max_fps": 0.0}, "max_fps"),
    ({"camera_id": "C", "role": "front", "url": "sim://c", "capture": "burst"}, "capture"),
    ({"camera_id": "C", "role": "front", "spool_dir": "s", "capture": "triggered"},
     "needs a camera opened by url"),
    ({"camera_id": "C", "role": "front", "url": "file:///v.mp4?loop=1&fps=5"},
     "camera[0].url: file:///v.mp4?loop=1&fps=5: unknown setting(s) fps"),
    ({"camera_id": "C", "role": "front", "spool_dir": "s", "stream_url": "usb://0?x=1"},
     "camera[0].stream_url: usb://0?x=1: unknown setting(s) x"),
])
def test_camera_source_is_validated(camera: dict[str, object], problem: str) -> None:
    with pytest.raises(StationConfigError) as info:
        parse_config({"camera": [camera]})
    assert "camera[0]" in str(info.value) and problem in str(info.value)
