"""Health endpoint and metrics over real HTTP; zhichao status; sealing on a full or
read-only evidence disk (a real tmpfs; skipped where mounting is not permitted)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from zhichao.devices.recording import read_recording
from zhichao.station.config import load_config
from zhichao.station.errors import SealingStoppedError
from zhichao.station.ops import OpsServer, StationMetrics
from zhichao.station.passage import clean_json
from zhichao.station.sealing import CaseMaterial, Sealer
from zhichao.station.store import PassageRow, StationStore
from zhichao.weighing.stream import weigh_recording


def test_health_and_metrics_endpoints() -> None:
    m = StationMetrics()
    m.passages.inc(3)
    m.stage_latency.labels("weighing").observe(0.004)
    state = {"status": "ok"}
    ops = OpsServer("127.0.0.1", 0, lambda: dict(state), m).start()
    try:
        base = f"http://127.0.0.1:{ops.port}"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "zhichao_passages_total 3.0" in text
        assert 'zhichao_stage_latency_seconds_count{stage="weighing"} 1.0' in text
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        state["status"] = "degraded"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/health", timeout=5)
        assert info.value.code == 503
    finally:
        ops.stop()


def test_status_command_reads_the_store(tmp_path: Path) -> None:
    s = StationStore(tmp_path / "station.db")
    with s.transaction() as con:
        s.insert_passage(con, PassageRow("S-1-100", "S", "1", "2026-01-01T00:00:00Z", 100,
                                         200, 5, 50000.0, "combination_5_axle", 43000.0,
                                         "overloaded", True, [], {}, "linked", [], "浙A12345",
                                         "yellow", 0.99, True, []))
    s.raise_alarm("sealing_stopped", "证据存储不可写", "test")
    s.close()
    res = subprocess.run([sys.executable, "-m", "zhichao", "status", "--data-dir",
                          str(tmp_path), "--json"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["counts"]["passages"] == 1 and out["counts"]["overloaded"] == 1
    assert out["alarms"][0]["code"] == "sealing_stopped"


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "evidence"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _material(sim_dir: Path, image: Path) -> CaseMaterial:
    for rec_path in sorted(sim_dir.glob("*.npz")):
        for v in weigh_recording(read_recording(rec_path)):
            if v.overloaded:
                return CaseMaterial("S-1-1", clean_json(v.to_dict()), None, (), None,
                                    str(image))
    raise AssertionError("no overloaded vehicle in the simulated recordings")


def test_full_or_read_only_evidence_disk_stops_sealing(tmp_path: Path, sim_dir: Path,
                                                      tiny_disk: Path) -> None:
    cfg = load_config(None)
    cfg = dataclasses.replace(
        cfg, station=dataclasses.replace(cfg.station, data_dir=str(tmp_path / "data")),
        evidence=dataclasses.replace(cfg.evidence, dir=str(tiny_disk), min_free_mb=0.0,
                                     render_documents=False))
    big = tmp_path / "front.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (700, 900, 3), dtype=np.uint8)
    cv2.imwrite(str(big), noise)  # ~1.5 MB: larger than the disk
    sealer = Sealer(cfg)
    m = _material(sim_dir, big)
    with pytest.raises(SealingStoppedError):
        sealer.seal(m)
    assert sorted(p.name for p in sealer.packages.iterdir()) == []  # no half package
    assert sealer.log.size == 0
    small = tmp_path / "small.npz"
    np.savez(small, x=np.zeros(10))
    ok = sealer.seal(dataclasses.replace(m, waveform_path=str(small)))
    assert ok.directory.is_dir() and sealer.log.size == 1
    # the package folder on a read-only file system (its own mount, remounted ro)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(sealer.packages)],
                   check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(sealer.packages)], check=True)
        with pytest.raises(SealingStoppedError, match="not writable"):
            sealer.seal(dataclasses.replace(m, passage_key="S-1-2", waveform_path=str(small)))
        assert not (sealer.packages / "S-1-2").exists() and sealer.log.size == 1
    finally:
        subprocess.run(["umount", "-l", str(sealer.packages)], check=False)
        sealer.close()
