"""Journal, store and linking on their own (real files, real SQLite)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from zhichao.station.clock import Clock
from zhichao.station.errors import SealingStoppedError
from zhichao.station.journal import SampleJournal
from zhichao.station.linking import CameraSpool, FrameLinker, OffsetEstimator, utc_name
from zhichao.station.store import PassageRow, StationStore


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


def _offset_reference(observations: list[tuple[float, float]], window_s: float,
                      bucket_s: float) -> float:
    """OffsetEstimator's answer after ``observations`` ((at, value), in time order), the
    slow way: buckets of ``bucket_s`` from their first observation, each its largest
    value; the largest bucket started within ``window_s`` of the last observation."""
    buckets: list[list[float]] = []
    for at, value in observations:
        if buckets and at - buckets[-1][0] < bucket_s:
            buckets[-1][1] = max(buckets[-1][1], value)
        else:
            buckets.append([at, value])
    now = observations[-1][0]
    return max(v for start, v in buckets if now - start <= window_s)


def test_offset_estimator_is_the_windowed_maximum_in_constant_time() -> None:
    rng = np.random.default_rng(11)
    est = OffsetEstimator(window_s=5.0)
    seen: list[tuple[float, float]] = []
    at = 0.0
    for _ in range(3000):
        at += float(rng.choice([0.005, 0.02, 0.05, 0.3, 1.7, 6.0], p=[.3, .3, .2, .1, .07, .03]))
        value = float(rng.normal(-0.5, 1.0))
        est.add(value, at_s=at)
        seen.append((at, value))
        assert est.offset_s == _offset_reference(seen, 5.0, est.BUCKET_S)
    # buckets, not observations, are kept: 50 blocks a second for 10 minutes of window
    long = OffsetEstimator()
    for i in range(50 * 700):
        long.add(-0.01 * (i % 13), at_s=i * 0.02)
    assert long.n <= 600 / long.BUCKET_S + 1
