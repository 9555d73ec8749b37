"""Passage clips: a real ``VideoCapture`` stream (MJPEG over HTTP, the simulated lane's
camera stream) → the recorder's ring → an H.264/MP4 clip of the asked window, for a case
only; a camera that gives no frames is recorded as missing, with why, and opens the clips
alarm; the sealer puts the clip, or the reason, into a package that verifies."""

from __future__ import annotations

import io
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from zhichao.devices.registry import open_device
from zhichao.evidence.clip import probe_clip
from zhichao.station.alarms import STAGE_ALARMS, StageHealth
from zhichao.station.clips import (
    ClipMaker,
    ClipRecorder,
    ClipRequest,
    FrameRing,
    resolve_clips,
)
from zhichao.station.clock import Clock
from zhichao.station.config import ClipSection, parse_config
from zhichao.station.sealing import CaseMaterial, Sealer, material_from_json, material_to_json
from zhichao.station.sim_streams import SimStreams
from zhichao.station.simlane import streams_at
from zhichao.station.store import StationStore
from zhichao.testing.cases import vehicle_dict

SETTINGS = ClipSection(clip_before_s=1.0, clip_after_s=0.5, clip_fps=10.0, clip_max_width=320)


def _wait_for(pred: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _decoded_times(data: bytes) -> list[float]:
    with av.open(io.BytesIO(data)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ring_is_bounded_and_thins_to_its_rate() -> None:
    import numpy as np

    ring = FrameRing(keep_s=2.0, fps=5.0, max_width=64)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    img = np.zeros((90, 160, 3), np.uint8)
    kept = [ring.add(t0 + timedelta(seconds=i * 0.1), img) for i in range(100)]
    assert sum(kept) == 50  # one frame per 0.2 s
    assert len(ring) == 12  # keep_s × fps + 2
    assert ring.memory_bytes() == 12 * 64 * 36 * 3 // 2  # scaled to 64 wide, I420
    # a 12 fps source into a 10 fps ring keeps 10 frames a second (not every other one)
    ring = FrameRing(keep_s=10.0, fps=10.0, max_width=64)
    assert sum(ring.add(t0 + timedelta(seconds=i / 12), img) for i in range(120)) == 100


def test_simulated_cameras_stream_only_where_a_clip_gets_frames() -> None:
    assert streams_at(12.0, 1.0) and streams_at(12.0, 20.0)  # the README command: 20x
    assert not streams_at(12.0, 40.0)  # 0.3 frames per simulated second
    assert not streams_at(0.0, 1.0)


def test_a_new_stream_client_gets_a_frame_first_not_an_empty_part() -> None:
    """The first part a client reads is a rendered JPEG (an empty part made OpenCV report
    "no frame from the stream", a disconnect warning on every start of the README's run)."""
    streams = SimStreams(["CAM-A"], fps=20.0, size=(320, 180))
    url = streams.urls["CAM-A"]
    try:
        with socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])),
                                      timeout=5.0) as sock:
            sock.sendall(b"GET /CAM-A.mjpg HTTP/1.0\r\n\r\n")
            data = b""
            while data.count(b"\r\n\r\n") < 2:  # the HTTP header, then the first part's
                chunk = sock.recv(65536)
                assert chunk, data[:200]
                data += chunk
        part_header = data.split(b"\r\n\r\n")[1]
        length = int(part_header.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert length > 1000  # a JPEG of the road, not an empty part
        with open_device("camera", url) as camera:
            camera.open()
            frame = camera.grab(5.0)
            assert frame is not None
            assert camera.health_snapshot().counters.get("disconnects", 0) == 0
    finally:
        streams.close()


@pytest.mark.slow  # a real stream for a few seconds, and a dead one's deadline
def test_stream_to_clip_of_the_window_and_missing_frames(tmp_path: Path) -> None:
    streams = SimStreams(["CAM-A"], fps=20.0, size=(320, 180))
    now = time.time()
    streams.set_clock(datetime.fromtimestamp(now, UTC), now, 1.0)  # real time
    clock = Clock()
    camera = open_device("camera", streams.urls["CAM-A"])  # OpenCV VideoCapture, http://
    rec = ClipRecorder("CAM-A", camera, clock, tmp_path, SETTINGS, owns_camera=True).start()
    dead = ClipRecorder("CAM-DEAD", open_device(
        "camera", f"http://127.0.0.1:{_free_port()}/x.mjpg"), clock, tmp_path, SETTINGS,
        owns_camera=True).start()
    try:
        assert _wait_for(lambda: len(rec.ring) >= 15, 20.0), rec.health()
        maker = ClipMaker(parse_config({"station": {"data_dir": str(tmp_path)},
                                        "cameras": {"clip_before_s": 1.0,
                                                    "clip_after_s": 0.5}}, tmp_path),
                          clock, [rec, dead])
        maker.dir = tmp_path
        center = clock.now() - timedelta(seconds=0.2)
        reqs = maker.request("K1", {"CAM-A": center, "CAM-DEAD": center})
        no_case = maker.request("K0", {"CAM-A": center})
        maker.decide("K1", keep=True)  # the commit: a case
        maker.decide("K0", keep=False)  # … and a passage that is no case
        req = next(r for r in reqs if r.camera_id == "CAM-A")
        assert (req.start_utc, req.end_utc) == (center - timedelta(seconds=1.0),
                                                center + timedelta(seconds=0.5))
        assert _wait_for(lambda: Path(req.path).exists(), 10.0)
        data = Path(req.path).read_bytes()
        info = probe_clip(data)
        in_window = rec.ring.window(req.start_utc, req.end_utc)
        assert info.codec == "h264" and (info.width, info.height) == (320, 180)
        # every frame the ring held in the window, spaced as they were captured
        times = _decoded_times(data)
        assert info.frame_count == len(times) == len(in_window) >= 6  # 10 fps: <= 16
        gaps = [round((b - a).total_seconds(), 3) for (a, _), (b, _) in zip(
            in_window, in_window[1:], strict=False)]
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx(
            gaps, abs=0.002)
        first, last = in_window[0][0], in_window[-1][0]
        assert req.start_utc <= first < req.start_utc + timedelta(seconds=0.5)
        assert req.end_utc - timedelta(seconds=0.5) < last <= req.end_utc

        # the dead stream: no clip, a marker saying why, once its deadline is past
        dead_req = next(r for r in reqs if r.camera_id == "CAM-DEAD")
        assert _wait_for(lambda: dead_req.missing_path.exists(), 15.0)
        assert "no frame yet" in json.loads(dead_req.missing_path.read_text())["reason"]
        refs = {r.camera_id: r for r in resolve_clips(reqs, wait_s=0.0)}
        assert refs["CAM-A"].path == req.path and refs["CAM-A"].missing_reason is None
        assert (refs["CAM-A"].first_frame_utc, refs["CAM-A"].last_frame_utc) == (first, last)
        assert refs["CAM-DEAD"].path is None and "no frame" in str(
            refs["CAM-DEAD"].missing_reason)

        # a passage that is no case: nothing encoded, nothing left behind
        assert not Path(no_case[0].path).exists() and rec.made == 1
        assert not any(p.req.key == "K0" for p in rec._pending)

        # missed clips, one after another, open the clips alarm
        store = StationStore(tmp_path / "station.db")
        stages = StageHealth(store)
        for i in range(STAGE_ALARMS["clips"].after_failures):
            maker.request(f"K{i + 2}", {"CAM-DEAD": clock.now() - timedelta(seconds=30)})
            maker.decide(f"K{i + 2}", keep=True)
        assert _wait_for(lambda: dead.missed >= 4, 15.0)
        outcomes = maker.outcomes()
        assert [ok for ok, _ in outcomes].count(False) >= 4
        for ok, detail in outcomes:  # as the pipeline thread does (Station._clip_outcomes)
            if ok:
                stages.succeeded("clips")
            else:
                stages.failed("clips", detail)
        codes = {a["code"] for a in store.active_alarms()}
        assert "clips_failing" in codes
        store.close()
    finally:
        rec.close()
        dead.close()
        streams.close()


def test_sealer_puts_the_clip_or_its_absence_into_a_verifying_package(tmp_path: Path) -> None:
    import numpy as np

    from zhichao.evidence.clip import encode_clip
    from zhichao.evidence.verify import verify_package

    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "evidence": {"render_documents": False},
                        "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)
    record = vehicle_dict()
    t = datetime.fromisoformat(record["time_utc"].replace("Z", "+00:00"))
    clips = tmp_path / "clips"
    clips.mkdir()
    made = ClipRequest("K", "CAM-FRONT-1", t - timedelta(seconds=3), t + timedelta(seconds=3),
                       str(clips / "K-CAM-FRONT-1.mp4"), time.time())
    encode_clip([(i * 0.1, np.full((64, 96, 3), i * 8, np.uint8)) for i in range(20)],
                Path(made.path), fps=10)
    lost = ClipRequest("K", "CAM-REAR-1", t - timedelta(seconds=3), t + timedelta(seconds=3),
                       str(clips / "K-CAM-REAR-1.mp4"), time.time() - 100)
    m = CaseMaterial("K", record, None, (), None, None,
                     clips=(made.to_json(), lost.to_json()))
    m = material_from_json(json.loads(json.dumps(material_to_json(m))))  # as stored
    sealer = Sealer(cfg)
    try:
        res = sealer.seal(m)
        manifest = json.loads((res.directory / "manifest.json").read_text("utf-8"))
        video = [f for f in manifest["files"] if f["role"] == "video"]
        assert [(f["camera_id"], f["frame_count"]) for f in video] == [("CAM-FRONT-1", 20)]
        assert [(x["camera_id"], "station stopped" in x["reason"])
                for x in manifest["case"]["videos_missing"]] == [("CAM-REAR-1", True)]
        report = verify_package(res.directory, key=sealer.key.public_key(),
                                log_dir=sealer.log.directory)
        assert report.ok and any(c.code == "file.video" for c in report.checks)
    finally:
        sealer.close()
