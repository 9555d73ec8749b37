"""The README's main command, exactly as a new user runs it: an empty working folder, no
configuration, the embedded defaults (only a shorter ``--vehicles`` and a ``--speed``).

Every other station test passes a configuration with explicit folders; this one is the
only guard that the defaults themselves work (they once sealed nothing: the data folder
resolved against ``/``)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from zhichao.evidence.signing import load_private_key, public_pem
from zhichao.testing.procs import mentioning
from zhichao.vision.policy import PlatePolicy
from zhichao.vision.runtime import (
    DEFAULT_INFERENCE_BACKEND,
    DETECTOR_CLP_DET,
    RECOGNISER_PLATE_CRNN,
    RECOGNISER_PPOCRV4_FUSED,
)

pytestmark = pytest.mark.slow  # minutes of simulated traffic or processes

RUN_TIMEOUT_S = 420


def test_readme_main_command_seals_verifiable_cases_on_defaults(tmp_path: Path) -> None:
    work = tmp_path / "new-user"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHICHAO_")}
    proc = subprocess.run(
        [sys.executable, "-m", "zhichao", "run", "--vehicles", "12", "--speed", "20"],
        cwd=work, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    data = work / "zhichao-station"  # the documented default, in the working folder
    assert data.is_dir(), out
    assert str(data.resolve()) in proc.stdout, "the data folder it creates is announced"
    assert not (Path("/") / "zhichao-station").exists()

    con = sqlite3.connect(data / "station.db")
    passages = con.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
    cases = con.execute("SELECT passage_key, status, package_dir FROM cases").fetchall()
    alarms = con.execute("SELECT code, message_zh FROM alarms WHERE active = 1").fetchall()
    con.close()
    assert passages >= 6, out
    assert cases, "the default traffic (seeded) has an overload: nothing was tested"
    assert all(status == "sealed" for _, status, _ in cases), (cases, out[-3000:])
    assert alarms == [], alarms

    # the console's database got every passage and package through the sync wire (the
    # station's own center on loopback), nothing left in the outbox
    con = sqlite3.connect(data / "service.db")
    service = con.execute("SELECT COUNT(*), COUNT(package_id) FROM passages").fetchone()
    synced = con.execute("SELECT COUNT(*) FROM sync_passage").fetchone()[0]
    con.close()
    assert tuple(service) == (passages, len(cases)) and synced == passages, service
    con = sqlite3.connect(data / "station.db")
    left = con.execute("SELECT COUNT(*) FROM outbox WHERE state != 'done'").fetchone()[0]
    con.close()
    assert left == 0

    pub = data / "station-key.pub"  # published beside the private key, as the README says
    key = load_private_key(data / "station-key.pem")
    assert pub.read_bytes() == public_pem(key.public_key())
    assert str(pub) in proc.stdout
    for _, _, package_dir in cases:
        v = subprocess.run(
            [sys.executable, "-m", "zhichao", "verify", package_dir, "--key", str(pub),
             "--log", str(data / "evidence" / "log")],
            cwd=work, capture_output=True, text=True, timeout=120)
        assert v.returncode == 0, v.stdout[-3000:] + v.stderr[-2000:]
        assert "全部检查通过" in v.stdout
        # the simulated cameras stream: each case carries its clips (H.264/MP4), decoded
        # by verify, or says why one is missing
        manifest = json.loads((Path(package_dir) / "manifest.json").read_text("utf-8"))
        clips = [f for f in manifest["files"] if f["role"] == "video"]
        assert clips and all(f["frame_count"] >= 1 for f in clips), manifest["case"].get(
            "videos_missing")
        assert "file.video" in v.stdout

    # the clock claim (issue 17 item 5): the simulator's published clock, checked, and
    # said as such (模拟授时, never NTP); no case goes to review for its clock
    checks = [json.loads(x) for x in (data / "clock" / "checks.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert checks and all(c["source"] == "sim" and c["result"] == "good" for c in checks)
    with_plate = 0
    shipped = {"detector": DETECTOR_CLP_DET.sha256,
               "recogniser": RECOGNISER_PPOCRV4_FUSED.sha256,
               "plate_model": RECOGNISER_PLATE_CRNN.sha256}
    for _, _, package_dir in cases:
        case = json.loads((Path(package_dir) / "manifest.json").read_text("utf-8"))["case"]
        # what decided the plate: the shipped models, the runtime and the policy's thresholds
        # (a case where nothing at all was read has no plate result to record it in)
        with_plate += case["plate"] is not None
        if case["plate"] is not None:
            reader = case["plate"]["reader"]
            assert reader["models_sha256"] == shipped, reader
            assert reader["runtime"].split()[0] == DEFAULT_INFERENCE_BACKEND, reader
            assert reader["policy"]["min_char_confidence"] == PlatePolicy().min_char_confidence
            assert case["plate"]["reads"], "the reads behind the plate are sealed with it"
        assert case["clocks"]["reference_check"]["verified"] is True, case["clocks"]
        assert case["clocks"]["reference_zh"] == "站内参考时钟（模拟授时，已核验）"
        assert "clock_not_verified" not in {r["code"] for r in case["eligibility"]["reasons"]}

    assert with_plate, "no sealed case recorded a plate read: the reader record is untested"
    errors = [rec for rec in map(json.loads, (data / "station.log.jsonl").read_text(
        encoding="utf-8").splitlines()) if rec.get("level") in ("error", "critical")]
    assert errors == [], errors[:3]

    # a normal end leaves no process behind: not the simulated lane, not a plate worker
    assert mentioning(str(work)) == []

    # demo accounts: a simulated lane only, no administrator, passwords in a 0600 file
    accounts = data / "demo-accounts.json"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    names = json.loads(accounts.read_text(encoding="utf-8"))
    assert names and not any("admin" in n for n in names)
    assert str(accounts) in proc.stdout
    for password in names.values():
        assert password not in out

