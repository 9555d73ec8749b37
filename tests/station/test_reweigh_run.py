"""A running station with a static scale (XK3190 on a real pty): the station reads the
scale, the officer links a reading to a sealed case while the station runs, the station
seals the supplement, uploads it through its outbox, and its own service attaches it to
the case."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.station.conftest import query, write_config
from zhichao.devices.twins.indicators import StreamIndicatorTwin
from zhichao.evidence.reweigh import verify_reweigh
from zhichao.evidence.signing import load_private_key

pytestmark = pytest.mark.slow  # a station process with simulated traffic


def _t(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        return query(db, sql)
    except sqlite3.OperationalError:  # not created yet
        return []


def test_running_station_reads_the_scale_and_seals_a_link(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    data = tmp_path / "station"
    cfg_path = tmp_path / "station.toml"
    with StreamIndicatorTwin("xk3190", [(52000.0, False)], link="pty", rate_hz=20) as twin:
        # simulated time starts an hour ago (20× real time): every passage is before the
        # static reading, which the scale stamps with the station's real clock
        write_config(cfg_path, data, vehicles=400, speed=20.0, seed=7, extra=f"""
start_utc = "{_t(now - timedelta(hours=1))}"
[static_scale]
url = "{twin.url}"
scale_id = "SCALE-1"
certificate_number = "CERT-S-1"
certificate_issuer = "模拟计量检定机构"
certificate_valid_until = "{_t(now + timedelta(days=30))}"
stable_min_s = 0.2
""")
        proc = subprocess.Popen([sys.executable, "-m", "zhichao", "run", "--config",
                                 str(cfg_path), "--vehicles", "400", "--no-view"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        db = data / "station.db"
        try:
            deadline = time.monotonic() + 240
            case_key = reading_id = None
            while time.monotonic() < deadline and proc.poll() is None:
                # a case the center reviews: on a loaded machine the first vehicles after
                # the start can have no frame (docs/station.md, Settled offsets), and their
                # UNUSABLE packages are registered as passages, not cases
                sealed = _rows(db, "SELECT passage_key FROM cases WHERE status = 'sealed' "
                                   "AND eligibility != 'UNUSABLE' ORDER BY id")
                readings = _rows(db, "SELECT id FROM static_readings")
                if sealed and readings:
                    case_key, reading_id = str(sealed[0][0]), int(str(readings[0][0]))
                    break
                time.sleep(0.5)
            assert case_key is not None, "no sealed case and reading while the station ran"
            link = subprocess.run(
                [sys.executable, "-m", "zhichao", "reweigh", "link", "--config",
                 str(cfg_path), "--passage", case_key, "--reading", str(reading_id),
                 "--officer", "执法员 李四"], capture_output=True, text=True, timeout=60)
            assert link.returncode == 3, link.stdout + link.stderr  # the station seals it
            # … and uploads it: its outbox item done, attached by its own service
            uploaded = "SELECT 1 FROM outbox WHERE label LIKE '%-RW-%' AND state = 'done'"
            while time.monotonic() < deadline and proc.poll() is None and not _rows(
                    db, uploaded):
                time.sleep(0.5)
            assert proc.poll() is None, "the station stopped before uploading the link"
            proc.terminate()
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    (package_dir,) = _rows(db, "SELECT package_dir FROM static_readings "
                               "WHERE status = 'sealed'")[0]
    original = Path(str(_rows(db, f"SELECT package_dir FROM cases WHERE passage_key = "
                                  f"'{case_key}'")[0][0]))
    key = load_private_key(data / "station-key.pem").public_key()
    report = verify_reweigh(Path(str(package_dir)), original, key=key,
                            log_dir=data / "evidence" / "log")
    assert report.ok, report.text()
    manifest = json.loads((Path(str(package_dir)) / "manifest.json").read_bytes())
    assert manifest["case"]["decision"]["eligibility"]["assessment"]["gross_kg"] == "52000"
    assert _rows(db, uploaded), err[-3000:]
    attached = _rows(data / "service.db",
                     "SELECT object_type, detail FROM audit_log WHERE action = "
                     "'reweigh.attached'")
    assert len(attached) == 1 and attached[0][0] == "case"
    assert json.loads(str(attached[0][1]))["officer"] == "执法员 李四"
