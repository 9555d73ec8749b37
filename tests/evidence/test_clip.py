"""Video clips in a package: encoded H.264/MP4, sealed like any member, verified by hash
and by decoding; a missing clip is recorded with its reason."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from zhichao.evidence.clip import ClipError, encode_clip, probe_clip
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.package import seal_package
from zhichao.evidence.reader import PackageRefusedError, parse_zip, read_package
from zhichao.evidence.verify import verify_package
from zhichao.testing.cases import case_dict

from .conftest import Env


def _frames(n: int, fps: float = 10.0) -> list[tuple[float, np.ndarray]]:
    out = []
    for i in range(n):
        img = np.full((120, 160, 3), 60, np.uint8)
        img[:, (i * 9) % 150:(i * 9) % 150 + 10] = (0, 200, 255)  # a bar that moves
        out.append((i / fps, img))
    return out


def test_encode_and_probe_keep_frames_and_times(tmp_path: Path) -> None:
    frames = _frames(20)
    # a dropped frame: the gap stays a gap (variable frame rate), it is not squeezed out
    frames = frames[:10] + [(t + 0.5, img) for t, img in frames[10:]]
    info = encode_clip(frames, tmp_path / "c.mp4", fps=10)
    assert (info.codec, info.width, info.height, info.frame_count) == ("h264", 160, 120, 20)
    assert info.duration_s == pytest.approx(2.5, abs=0.001)  # 1.9 s + 0.5 s gap + 0.1 s
    assert probe_clip((tmp_path / "c.mp4").read_bytes()) == info
    with pytest.raises(ClipError):
        probe_clip(b"not a video at all")
    with pytest.raises(ClipError):
        encode_clip([], tmp_path / "none.mp4", fps=10)


def _case_with_clips(base: Path) -> CaseInputs:
    raw = case_dict(base)
    case = CaseInputs.from_json(raw)
    t = case.vehicle.time_utc
    encode_clip(_frames(30), base / "clip-front.mp4", fps=10)
    (base / "clip-bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    raw["videos"] = [
        {"camera_id": "CAM-FRONT-1", "start_utc": (t - timedelta(seconds=3)).isoformat(),
         "end_utc": (t + timedelta(seconds=3)).isoformat(), "path": "clip-front.mp4"},
        {"camera_id": "CAM-SIDE-1", "start_utc": (t - timedelta(seconds=3)).isoformat(),
         "end_utc": (t + timedelta(seconds=3)).isoformat(), "path": "clip-bad.mp4"},
        {"camera_id": "CAM-REAR-1", "start_utc": (t - timedelta(seconds=3)).isoformat(),
         "end_utc": (t + timedelta(seconds=3)).isoformat(),
         "missing_reason": "camera gave no frame in the window (stream down)"},
    ]
    return CaseInputs.from_json(raw)


def _seal(env: Env) -> Path:
    base = env.root / "in"
    base.mkdir()
    case = _case_with_clips(base)
    return seal_package(case, env.root / "pkg", station=env.station, log=env.log,
                        base_dir=base, renderer=lambda *_: {}).directory


def test_clip_sealed_verified_and_missing_recorded(env: Env) -> None:
    pkg = _seal(env)
    manifest = json.loads((pkg / "manifest.json").read_text("utf-8"))
    videos = [f for f in manifest["files"] if f["role"] == "video"]
    assert [v["path"] for v in videos] == ["original/video-CAM-FRONT-1.mp4"]
    v = videos[0]
    assert (v["media_type"], v["codec"], v["frame_count"], v["duration_s"]) == (
        "video/mp4", "h264", 30, 3.0)
    assert v["camera_id"] == "CAM-FRONT-1" and v["start_utc"] < v["end_utc"]
    missing = {m["camera_id"]: m["reason"] for m in manifest["case"]["videos_missing"]}
    assert set(missing) == {"CAM-SIDE-1", "CAM-REAR-1"}
    assert "cannot be used" in missing["CAM-SIDE-1"]
    assert "stream down" in missing["CAM-REAR-1"]
    report = verify_package(pkg, log_dir=env.log.directory)
    assert report.ok, [c for c in report.checks if c.result.value == "FAIL"]
    assert [c.code for c in report.checks if c.code == "file.video"] == ["file.video"]

    # the same package as a zip: the strict reader takes the video member as any other
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in pkg.rglob("*") if p.is_file()):
            zf.write(f, f"pkg/{f.relative_to(pkg).as_posix()}")
    members = parse_zip(buf.getvalue())
    assert members["original/video-CAM-FRONT-1.mp4"] == (
        pkg / "original" / "video-CAM-FRONT-1.mp4").read_bytes()
    # … and still refuses what it refuses (the same member twice)
    twice = io.BytesIO()
    with zipfile.ZipFile(twice, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("original/video-CAM-FRONT-1.mp4", b"a")
        zf.writestr("original/video-CAM-FRONT-1.mp4", b"b")
    with pytest.raises(PackageRefusedError) as exc:
        parse_zip(twice.getvalue())
    assert exc.value.code == "package.names"


def test_tampered_clip_fails_verify(env: Env) -> None:
    pkg = _seal(env)
    clip = pkg / "original" / "video-CAM-FRONT-1.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    clip.write_bytes(bytes(data))
    report = verify_package(pkg, log_dir=env.log.directory)
    assert not report.ok
    assert any(c.code == "file.hash" and "video-CAM-FRONT-1" in c.message_en
               and c.result.value == "FAIL" for c in report.checks)
    # a clip replaced by another clip (hash and decode both differ from the manifest)
    copy = env.root / "pkg2"
    shutil.copytree(pkg, copy)
    encode_clip(_frames(5), copy / "original" / "video-CAM-FRONT-1.mp4", fps=10)
    report = verify_package(copy)
    assert not report.ok
    assert read_package(copy).read("original/video-CAM-FRONT-1.mp4") is not None
