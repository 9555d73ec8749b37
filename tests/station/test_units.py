"""Journal, store and linking on their own (real files, real SQLite)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from zhichao.station.alarms import StageHealth
from zhichao.station.clock import Clock
from zhichao.station.config import load_config
from zhichao.station.errors import SealingStoppedError
from zhichao.station.journal import SampleJournal
from zhichao.station.link_stage import LinkStage
from zhichao.station.linking import CameraSpool, FrameLinker, OffsetEstimator, utc_name
from zhichao.station.ops import StationMetrics
from zhichao.station.store import PassageRow, StationStore
from zhichao.weighing.vehicle import WeighedVehicle


def test_journal_round_trip_torn_tail_and_prune(tmp_path: Path) -> None:
    j = SampleJournal(tmp_path, segment_samples=250)
    for i in range(10):
        j.append(i * 100, np.full((100, 2), i, np.float32), 5 if i == 3 else 0)
    j.close()
    last = sorted(tmp_path.glob("seg-*"))[-1]
    with open(last, "ab") as f:  # a record cut by a crash
        f.write(b"ZSJ1" + b"\x00" * 30)
    j = SampleJournal(tmp_path)
    assert j.end_index == 1000 and j.torn_records == 1
    blocks = list(j.replay(450))
    assert blocks[0].first_index == 450 and blocks[0].samples.shape == (50, 2)
    assert float(blocks[0].samples[0, 0]) == 4.0
    assert sum(b.samples.shape[0] for b in blocks) == 550
    assert j.prune(620) == 2
    assert next(b.first_index for b in j.replay(0)) == 600
    j.close()


def _row(key: str, first: int) -> PassageRow:
    return PassageRow(key, "S", "1", "2026-01-01T00:00:00Z", first, first + 10, 2, 1000.0,
                      None, None, "within_limit", False, [], {"a": 1}, "no_frame", [], None,
                      None, None, None, [])


def test_store_transaction_is_all_or_nothing_and_duplicates_are_found(tmp_path: Path) -> None:
    s = StationStore(tmp_path / "s.db")
    with s.transaction() as con:
        s.insert_passage(con, _row("k1", 1000))
    with pytest.raises(RuntimeError), s.transaction() as con:
        s.insert_passage(con, _row("k2", 5000))
        s.insert_case(con, "k2")
        raise RuntimeError("killed mid-way")
    assert s.counts()["passages"] == 1 and s.counts()["cases"] == 0
    assert s.find_duplicate("1", 1100, 200) == "k1"
    assert s.find_duplicate("1", 1300, 200) is None
    s.close()


def test_a_plate_reader_record_is_kept_once(tmp_path: Path) -> None:
    """Every passage a worker decides names the same reader: station.db keeps its record
    once (``plate_readers``, by SHA-256) and gives it back with each passage's reads."""
    from dataclasses import replace

    reader = {"software_version": "0.1.0", "runtime": "openvino 2026.4.1 bf16",
              "models_sha256": {"detector": "a" * 64, "recogniser": "b" * 64,
                                "plate_model": "c" * 64},
              "settings": {}, "policy": {"min_char_confidence": 0.9}}
    s = StationStore(tmp_path / "s.db")
    with s.transaction() as con:
        for n, key in enumerate(("k1", "k2", "k3")):
            record = {"reader": reader, "alternatives": [],
                      "reads": [{"camera": "F", "text": f"浙A1234{n}", "box_px": [1, 2, 3, 4]}]}
            s.insert_passage(con, replace(_row(key, 1000 * (n + 1)), plate=f"浙A1234{n}",
                                          plate_record=None if key == "k3" else record))
    assert s.db.execute("SELECT COUNT(*) FROM plate_readers").fetchone()[0] == 1
    stored = s.db.execute("SELECT plate_record FROM passages WHERE passage_key = 'k2'"
                          ).fetchone()[0]
    assert "openvino" not in stored and "reader_sha256" in stored
    back = s.plate_record(s.passage("k2"))
    assert back is not None and back["reader"] == reader
    assert back["reads"][0]["text"] == "浙A12341"
    assert s.plate_record(s.passage("k3")) is None
    s.close()


def test_dense_traffic_never_swaps_frames(tmp_path: Path) -> None:
    """400 vehicles 0.35–1.2 s apart at row 1 (a close follower keeps its leader's speed, as
    it must in one lane; others 40–100 km/h), camera 12 m downstream with a +150 ms clock and
    ±40 ms capture jitter, 5 % of frames missing: every linked frame is the vehicle's own; a
    missing frame is never replaced by a neighbour's."""
    rng = np.random.default_rng(3)
    spool = tmp_path / "front"
    spool.mkdir()
    t0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
    cam = CameraSpool("CAM-F", "front", spool, 12.0)
    linker = FrameLinker([cam], Clock(), window_s=0.6)
    vehicles = []
    t, v = 0.0, 70.0
    for i in range(400):
        gap = float(rng.uniform(0.35, 1.2))
        t += gap
        if gap > 1.0:
            v = float(rng.uniform(40, 100))
        vehicles.append((f"v{i}", t0 + timedelta(seconds=t), v))
        if rng.random() < 0.05:
            continue
        shot = t0 + timedelta(seconds=t + 12 / (v / 3.6) + rng.normal(0, 0.04) + 0.15)
        path = spool / f"CAM-F-{utc_name(shot)}-{i:06d}.jpg"
        path.write_bytes(b"jpeg")
        arrival = (shot - timedelta(seconds=0.15)).timestamp() + float(rng.uniform(0.01, 0.2))
        os.utime(path, (arrival, arrival))
    linker.scan()
    assert abs(linker.camera_offset_s("CAM-F") - 0.15) < 0.02
    preds = [linker.predict(k, t, v, 0.0) for k, t, v in vehicles]
    right = wrong = unlinked = 0
    for i, (key, _, _) in enumerate(vehicles):
        neighbours = [q for j in (i - 1, i + 1) if 0 <= j < len(preds) for q in preds[j]]
        frame, status = linker.link(preds[i], neighbours)["CAM-F"]
        if frame is None:
            unlinked += 1
            assert status in ("no_frame", "ambiguous_frame")
        elif frame.path.name.endswith(f"-{int(key[1:]):06d}.jpg"):
            right += 1
        else:
            wrong += 1
    assert wrong == 0
    assert right >= 0.85 * 400 and unlinked <= 0.15 * 400


def test_sealing_stops_below_free_space_threshold(tmp_path: Path) -> None:
    import dataclasses

    from zhichao.station.config import load_config
    from zhichao.station.sealing import CaseMaterial, Sealer

    cfg = load_config(None)
    cfg = dataclasses.replace(
        cfg, station=dataclasses.replace(cfg.station, data_dir=str(tmp_path)),
        evidence=dataclasses.replace(cfg.evidence, min_free_mb=1e12))
    sealer = Sealer(cfg)
    assert sealer.key_created and (tmp_path / "station-key.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SealingStoppedError, match="min_free_mb"):
        sealer.seal(CaseMaterial("k", {}, None, (), None, None))
    assert list(sealer.packages.iterdir()) == []
    sealer.close()
    again = Sealer(cfg)
    assert not again.key_created  # the key is kept
    again.close()


def test_waveform_temporaries_of_a_killed_write_are_removed_at_start(tmp_path: Path) -> None:
    from zhichao.station.commit import remove_dead_waveform_temporaries

    (tmp_path / "K-1.npz").write_bytes(b"kept")
    (tmp_path / ".K-2.npz.4242.tmp").write_bytes(b"half")
    assert remove_dead_waveform_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["K-1.npz"]


def _weighed(time_utc: datetime, first_sample: int) -> WeighedVehicle:
    return WeighedVehicle(
        time_utc=time_utc.isoformat(), site_id="S", lane_id="L", speed_kmh=60.0,
        acceleration_ms2=0.0, axle_count=2, axle_loads_kg=[5000.0, 8000.0],
        wheel_loads_kg=[[2500.0, 2500.0], [4000.0, 4000.0]], axle_spacings_m=[4.0],
        axle_groups=[[0], [1]], gross_weight_kg=13000.0, vehicle_class="2", vehicle_class_zh="二轴",
        limit_kg=18000, limit_basis="", limit_candidates_kg=[18000], allowance_kg=0,
        allowance_basis="", excess_kg=0, excess_after_allowance_kg=0, uncertainty_kg=100.0,
        coverage_factor=2.0, verdict="within_limit", overloaded=False, flags=[],
        row_gross_weights_kg=[13000.0], rows_used=[0], pavement_temperature_c=None,
        calibration_profile=None, recording=None, first_sample=first_sample,
        last_sample=first_sample + 100)


def test_the_wim_offset_settles_only_once_it_holds() -> None:
    est = OffsetEstimator(settle_tolerance_s=0.3)
    assert est.settled_for_s(at_s=5.0) == 0.0  # nothing observed
    est.add(-7.0, at_s=0.0)  # every early block arrives 7 s late
    est.add(-6.9, at_s=0.5)  # within the tolerance: still settling since 0
    assert est.settled_for_s(at_s=0.9) == pytest.approx(0.9)
    est.add(-0.02, at_s=1.0)  # a timely block: the estimate moves by 7 s
    assert est.offset_s == pytest.approx(-0.02)
    assert est.settled_for_s(at_s=1.4) == pytest.approx(0.4)
    est.add(-0.01, at_s=1.6)  # a few ms more: it holds
    assert est.settled_for_s(at_s=2.5) == pytest.approx(1.5)


def test_no_vehicle_is_linked_while_the_wim_offset_moves(tmp_path: Path) -> None:
    """Start-up on a starved machine (seen in a CI-like run): the first WIM blocks arrive
    7 s late, so the offset measured on them alone predicts vehicle A's frame 7 s late,
    where vehicle B's frame is. Linking waits until the offset has held for
    ``linking.settle_s``; by then a timely block has corrected it and A gets its own frame."""
    spool = tmp_path / "front"
    spool.mkdir()
    clock = Clock()
    cam = CameraSpool("CAM-F", "front", spool, 12.0)
    linker = FrameLinker([cam], clock, window_s=0.6)
    t_a = datetime.now(UTC) - timedelta(seconds=30)
    travel = timedelta(seconds=12 / (60 / 3.6))
    for name, t in (("a", t_a + travel), ("b", t_a + timedelta(seconds=7) + travel)):
        path = spool / f"CAM-F-{utc_name(t)}-{ord(name):06d}.jpg"
        path.write_bytes(b"jpeg")
        os.utime(path, (t.timestamp() + 0.05, t.timestamp() + 0.05))
    linker.scan()
    cfg = load_config(None)
    cfg = replace(cfg, vision=replace(cfg.vision, read="none"),
                  linking=replace(cfg.linking, settle_s=0.3))
    stages = StageHealth(StationStore(tmp_path / "station.db"))
    stage = LinkStage(cfg, linker, stages, StationMetrics())
    linker.wim_offset.add(-7.0)  # the late blocks
    stage.add(_weighed(t_a, 1000), "A")
    stream_end = t_a + timedelta(seconds=40)
    stage.advance(stream_end - timedelta(seconds=7))
    assert stage.holding() and stage.pending[0].state == "waiting_frames"
    linker.wim_offset.add(-0.01)  # a timely block: the offset moves by 7 s
    stage.advance(stream_end)
    assert stage.holding() and stage.pending[0].state == "waiting_frames"
    time.sleep(0.35)
    stage.advance(stream_end)
    assert not stage.holding()
    (p,) = stage.pop_ready()
    frame, status = p.frames["CAM-F"]
    assert status == "linked" and frame is not None
    assert frame.path.name.endswith(f"{ord('a'):06d}.jpg")
    # without the wait, the offset of the late blocks alone links B's frame to A
    eager = FrameLinker([CameraSpool("CAM-F", "front", spool, 12.0)], clock, window_s=0.6)
    eager.scan()
    eager.wim_offset.add(-7.0)
    wrong, _ = eager.link(eager.predict("A", t_a, 60.0, 0.0), [])["CAM-F"]
    assert wrong is not None and wrong.path.name.endswith(f"{ord('b'):06d}.jpg")
