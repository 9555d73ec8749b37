"""After a power cut a frame or clip can keep its name and lose its contents (ext4
delayed allocation: a zero-length file, or zeros where its tail was). The sealer never
seals and signs such a file as an original: an image is left out (the gate says
``image_missing``), a clip is recorded as missing with why, and each is logged and
recorded on the case (``cases.unusable_files``). A clip is fsynced before it gets its
name."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.station.conftest import collect_until
from tests.station.test_retention import NEW, Lane, _config
from zhichao.evidence.clip import encode_clip
from zhichao.evidence.verify import verify_package
from zhichao.station import clips as clips_mod
from zhichao.station.alarms import StageHealth
from zhichao.station.clips import ClipRecorder, ClipRequest, _Pending, clip_unusable
from zhichao.station.clock import Clock
from zhichao.station.config import ClipSection
from zhichao.station.ops import StationMetrics
from zhichao.station.seal_stage import SealStage
from zhichao.station.sealing import (
    CaseMaterial,
    Sealer,
    UnusableFile,
    jpeg_unusable,
    material_from_json,
)
from zhichao.testing.cases import photo, vehicle_dict


def _clip(path: Path) -> bytes:
    encode_clip([(i * 0.1, np.full((64, 96, 3), i * 8, np.uint8)) for i in range(20)],
                path, fps=10)
    return path.read_bytes()


def _zero_tail(path: Path, keep: int) -> None:
    """What a power cut can leave: the size on disk, zeros where the data never landed."""
    data = path.read_bytes()
    path.write_bytes(data[:keep] + bytes(len(data) - keep))


def _jpeg(path: Path) -> bytes:
    photo(path, "front", (120, 40, 40))
    return path.read_bytes()


@pytest.mark.parametrize(("suffix", "make", "unusable", "head_only"), [
    (".jpg", _jpeg, jpeg_unusable, 2),  # SOI only
    (".mp4", _clip, clip_unusable, 8),  # a box header only
])
def test_checks_find_empty_cut_and_zero_filled_files(
        tmp_path: Path, suffix: str, make: Callable[[Path], bytes],
        unusable: Callable[[Path], str | None], head_only: int) -> None:
    good = tmp_path / f"good{suffix}"
    data = make(good)
    assert unusable(good) is None
    cases = {"empty": b"", "cut": data[: len(data) // 2], "one byte short": data[:-1],
             "zeros": data[: len(data) // 2] + bytes(len(data) - len(data) // 2),
             "all zeros": bytes(len(data)), "head only": data[:head_only]}
    for name, content in cases.items():
        p = tmp_path / f"{name}{suffix}"
        p.write_bytes(content)
        assert unusable(p) is not None, name
    assert unusable(tmp_path / f"gone{suffix}") == "the file is missing"


def _three_clips(tmp_path: Path) -> tuple[Any, dict[str, Any], list[ClipRequest]]:
    """A station config, a vehicle record and clip requests of its three cameras: the
    front's clip whole, the side's with zeros where its tail was (a power cut), the
    rear's not yet decided (each test makes it)."""
    cfg = _config(tmp_path)
    record = vehicle_dict()
    t = datetime.fromisoformat(record["time_utc"].replace("Z", "+00:00"))
    clips = cfg.data_dir / "clips"
    clips.mkdir(parents=True)
    reqs = [ClipRequest("K", cam, t - timedelta(seconds=3), t + timedelta(seconds=3),
                        str(clips / f"K-{cam}.mp4"), time.time())
            for cam in ("CAM-FRONT-1", "CAM-SIDE-1", "CAM-REAR-1")]
    _clip(Path(reqs[0].path))
    _clip(Path(reqs[1].path))
    _zero_tail(Path(reqs[1].path), 40)
    return cfg, record, reqs


def test_a_frame_a_power_cut_emptied_is_sealed_as_missing_and_recorded(lane: Lane) -> None:
    key = lane.add(NEW, "浙A11111", case="pending")
    raw = lane.store.case_material(key)
    assert raw is not None
    m = material_from_json(raw)
    front, side = (Path(i.path) for i in m.images)
    front.write_bytes(b"")  # renamed, its contents never reached the disk
    _zero_tail(side, 100)
    stage = SealStage(lane.sealer, lane.store, StageHealth(lane.store), StationMetrics())
    stop = threading.Event()
    thread = threading.Thread(target=stage.loop, args=(stop,), daemon=True)
    thread.start()
    try:
        stage.jobs.put(m)
        collect_until(stage, lambda: key in lane.store.sealed_cases())
    finally:
        stop.set()
        stage.jobs.put(None)
        thread.join(timeout=10)
    folder = lane.sealer.package_dir(key)
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    assert not [f for f in manifest["files"] if str(f.get("role", "")).startswith("image")]
    missing = [r for r in manifest["case"]["eligibility"]["reasons"]
               if r["code"] == "image_missing"]
    assert missing and "front" in json.dumps(missing) and "side" in json.dumps(missing)
    report = verify_package(folder, key=lane.sealer.key.public_key(),
                            log_dir=lane.sealer.log.directory)
    assert report.ok
    recorded = lane.store.unusable_files(key)
    assert [(u["kind"], u["source"], u["path"]) for u in recorded] == [
        ("image", "front", str(front)), ("image", "side", str(side))]
    assert "empty" in recorded[0]["reason"] and "truncated" in recorded[1]["reason"]


def test_a_package_adopted_after_a_kill_keeps_its_unusable_originals(lane: Lane) -> None:
    """Killed after the package was sealed and renamed, before the case was marked sealed:
    the next start adopts the package, and records the frames it left out as unusable
    (they were lost with the killed run before)."""
    key = lane.add(NEW, "浙A33333", case="pending")
    raw = lane.store.case_material(key)
    assert raw is not None
    m = material_from_json(raw)
    front, _side = (Path(i.path) for i in m.images)
    front.write_bytes(b"")
    sealed_then: list[UnusableFile] = []
    lane.sealer.seal(m, sealed_then)  # … and the run is killed here
    assert [u.source for u in sealed_then] == ["front"]
    assert key in lane.store.pending_cases() and lane.store.unusable_files(key) == []
    metrics = StationMetrics()
    stage = SealStage(lane.sealer, lane.store, StageHealth(lane.store), metrics)
    stage.recover()
    assert key in lane.store.sealed_cases()
    assert stage.jobs.empty()  # adopted, not sealed again
    recorded = lane.store.unusable_files(key)
    assert recorded == [u.to_json() for u in sealed_then]
    assert "empty" in recorded[0]["reason"]
    assert metrics.errors.labels("unusable_image")._value.get() == 1


def test_an_adopted_package_names_the_clips_it_left_out(tmp_path: Path) -> None:
    cfg, record, reqs = _three_clips(tmp_path)
    reqs[2].missing_path.write_text(json.dumps({"reason": "the camera sent nothing"}),
                                    "utf-8")
    m = CaseMaterial("K", record, None, (), None, None,
                     clips=tuple(r.to_json() for r in reqs))
    sealer = Sealer(cfg)
    try:
        unusable: list[UnusableFile] = []
        sealer.seal(m, unusable)
        adopted = sealer.unusable_in_package(m)
    finally:
        sealer.close()
    # the clip that was never recorded is missing, not unusable: in neither list
    assert adopted == unusable
    assert [(u.kind, u.source) for u in adopted] == [("clip", "CAM-SIDE-1")]


def test_whole_frames_are_sealed_and_nothing_is_recorded(lane: Lane) -> None:
    key = lane.add(NEW, "浙A22222", case="pending")
    raw = lane.store.case_material(key)
    assert raw is not None
    unusable: list[UnusableFile] = []
    res = lane.sealer.seal(material_from_json(raw), unusable)
    manifest = json.loads((res.directory / "manifest.json").read_text("utf-8"))
    assert unusable == []
    assert {f["role"] for f in manifest["files"]} >= {"image_front", "image_side"}


def test_an_emptied_clip_is_sealed_as_missing_with_why(tmp_path: Path) -> None:
    cfg, record, reqs = _three_clips(tmp_path)
    Path(reqs[2].path).write_bytes(b"")
    m = CaseMaterial("K", record, None, (), None, None,
                     clips=tuple(r.to_json() for r in reqs))
    sealer = Sealer(cfg)
    try:
        unusable: list[UnusableFile] = []
        res = sealer.seal(m, unusable)
        manifest = json.loads((res.directory / "manifest.json").read_text("utf-8"))
    finally:
        sealer.close()
    assert [(u.kind, u.source) for u in unusable] == [("clip", "CAM-SIDE-1"),
                                                      ("clip", "CAM-REAR-1")]
    assert [f["camera_id"] for f in manifest["files"] if f["role"] == "video"] == [
        "CAM-FRONT-1"]
    why = {x["camera_id"]: x["reason"] for x in manifest["case"]["videos_missing"]}
    assert set(why) == {"CAM-SIDE-1", "CAM-REAR-1"}
    assert "unusable" in why["CAM-SIDE-1"] and "empty" in why["CAM-REAR-1"]


def test_a_clip_is_on_disk_before_it_gets_its_name(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    settings = ClipSection(clip_before_s=1.0, clip_after_s=0.5, clip_fps=10.0,
                           clip_max_width=320)
    rec = ClipRecorder("CAM-A", object(), Clock(), tmp_path, settings, owns_camera=False)
    t = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    req = ClipRequest("K", "CAM-A", t, t + timedelta(seconds=1), str(tmp_path / "K-A.mp4"),
                      time.time())
    img = np.full((180, 320, 3), 90, np.uint8)
    frames = [(t + timedelta(seconds=i * 0.1), clips_mod.to_i420(img)) for i in range(8)]
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    rec._cut(_Pending(req, time.monotonic(), frames, frames[-1][0], True))
    assert rec.outcomes.get_nowait() == (True, "")
    with pytest.raises(queue.Empty):
        rec.outcomes.get_nowait()
    clip_at = events.index(("replace", req.path))
    synced = [p for kind, p in events[:clip_at] if kind == "fsync"]
    assert any(Path(p).name.startswith(".K-A.tmp") for p in synced), events
    assert ("fsync", str(tmp_path)) in events[clip_at:]  # its name is durable too
    assert clip_unusable(Path(req.path)) is None
