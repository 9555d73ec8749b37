"""``zhichao run`` against independent WIM peers written from ``docs/devices.md`` alone
(``tests/station/peers.py``: a plain socket ZWR/1 record controller, a plain pymodbus
Modbus TCP sample ring): cases are sealed and verify against the station's key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.station.conftest import query
from tests.station.peers import ModbusSamplePeer, Vehicle, ZwrPeer
from zhichao.devices.sim import SimOptions
from zhichao.devices.sim.lane import plan_traffic, simulate_recording
from zhichao.station.config import load_config

RECORDS = [  # 2-axle 18 t and 3-axle 25 t limits (GB 1589 / 62号令)
    Vehicle(42.5, (7000.0, 20000.0), (5.0,), (26900.0, 27100.0), temperature_c=18.5),
    Vehicle(61.0, (6000.0, 9000.0), (4.8,), (14950.0, 15050.0)),
    Vehicle(38.0, (6500.0, 11000.0, 11000.0), (3.8, 1.35), (28400.0, 28600.0)),
    Vehicle(45.0, (6800.0, 19200.0), (5.2,), (25900.0, 26100.0), status=0x0020),
]


def _station_toml(path: Path, data: Path, url: str, extra: str = "") -> Path:
    path.write_text(f"""camera = []
[station]
data_dir = "{data}"
[wim]
url = "{url}"
{extra}
[device]  # the peer stands for a device with its certificate and both reviews
device_id = "PEER-WIM-01"
accuracy_class = "5"
technical_review_approved = true
technical_review_date = "2025-05-01"
legal_review_approved = true
legal_review_date = "2025-05-10"
certificate_number = "PEER-CERT-0001"
certificate_issuer = "测试计量检定机构"
certificate_valid_from = "2025-05-01T00:00:00Z"
certificate_valid_to = "2030-05-01T00:00:00Z"
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
""", encoding="utf-8")
    return path


def _run(cfg_path: Path, vehicles: int) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path),
                          "--no-view", "--vehicles", str(vehicles)],
                         capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _sealed_and_verified(data: Path) -> list[dict[str, Any]]:
    """Every case sealed, each package verifying against the station's public key; their
    manifests."""
    cases = query(data / "station.db", "SELECT passage_key, status, package_dir FROM cases")
    assert cases and all(status == "sealed" for _, status, _ in cases), cases
    manifests = []
    for _key, _status, package in cases:
        res = subprocess.run([sys.executable, "-m", "zhichao", "verify", package, "--key",
                              str(data / "station-key.pub")],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        manifests.append(json.loads((Path(package) / "manifest.json").read_text("utf-8")))
    return manifests


def test_zwr_record_controller_peer_through_zhichao_run(tmp_path: Path) -> None:
    data = tmp_path / "station"
    with ZwrPeer(RECORDS, interval_s=0.3) as peer:
        cfg_path = _station_toml(tmp_path / "station.toml", data, peer.url)
        _run(cfg_path, len(RECORDS))
    rows = query(data / "station.db", "SELECT first_sample, axle_count, gross_weight_kg, "
                                      "verdict, record FROM passages ORDER BY first_sample")
    assert [r[0] for r in rows] == [0, 1, 2, 3]  # the station's record ordinals
    assert [r[1] for r in rows] == [2, 2, 3, 2]
    assert [r[2] for r in rows] == [27000.0, 15000.0, 28500.0, 26000.0]
    # with no site history the deduction is the cautious prior (docs/evidence.md): 28.5 t
    # on three axles and 26 t on two are over their limits by more than the class-5 error
    # but within that deduction: uncertain, marked for a human, no case
    assert [r[3] for r in rows] == ["overloaded", "within_limit", "uncertain", "uncertain"]
    for seq, row in enumerate(rows):
        record = json.loads(row[4])
        src = record["wim_source"]
        assert (src["kind"], src["scheme"], src["boot_id"], src["seq"]) == (
            "records", "zwr+tcp", 3, seq)
        assert record["lane_id"] == "1"  # the station's lane, not the controller's "2"
    assert "close_following" in json.loads(rows[3][4])["flags"]  # the status bit 0x0020
    manifests = _sealed_and_verified(data)
    assert len(manifests) == 1
    for m in manifests:
        vehicle = m["case"]["vehicle"]
        assert vehicle["wim_source"]["kind"] == "records"  # which kind of device weighed
        assert vehicle["recording"] == peer.url
        assert m["case"]["device"]["accuracy_class"] == "5"


def _lane() -> tuple[np.ndarray, list[float]]:
    """Four overloaded-profile trucks on a 2-row, 1 kHz lane at 10–15 km/h (seed 2), slow
    enough that the default deduction (no site history) leaves each of them overloaded."""
    opts = SimOptions(n_rows=2, sample_rate_hz=1000.0, speed_kmh=(10.0, 15.0),
                      abnormal_fraction=0.0, trucks_only=True, load_profile="overloaded",
                      temperature_c=(20.0, 20.0))
    rng = np.random.default_rng(2)
    samples, _meta, _truth = simulate_recording(rng, plan_traffic(rng, 4, opts), opts)
    return samples, list(opts.rows_m())


def test_modbus_tcp_sample_peer_through_zhichao_run(tmp_path: Path) -> None:
    samples, rows_x_m = _lane()
    data = tmp_path / "station"
    with ModbusSamplePeer(samples, 1000, ring_rows=4000) as peer:
        cfg_path = _station_toml(tmp_path / "station.toml", data, peer.url, extra=f"""
[wim.sensor]
rows_x_m = {rows_x_m}
sample_rate_hz = 1000.0
pavement_temperature_c = 20.0""")
        assert load_config(cfg_path).wim.url == peer.url
        _run(cfg_path, 4)
    rows = query(data / "station.db", "SELECT axle_count, verdict, record FROM passages "
                                      "ORDER BY first_sample")
    assert [r[0] for r in rows] == [6, 6, 2, 5]
    assert [r[1] for r in rows] == ["overloaded"] * 4
    assert all("wim_source" not in json.loads(r[2]) for r in rows)  # zhichao weighed them
    gaps = query(data / "station.db", "SELECT COUNT(*) FROM gaps")
    assert gaps == [(0,)]
    manifests = _sealed_and_verified(data)
    assert len(manifests) == 4


@pytest.mark.slow  # two station processes on a 33 s lane (about 50 s)
def test_modbus_sample_ring_station_killed_and_restarted_stores_each_vehicle_once(
        tmp_path: Path) -> None:
    """A station SIGKILLed after two of the four trucks and restarted at once, with a
    ring deep enough (16 s) that the new driver would read back samples the station
    already journalled and weighed: each truck is stored exactly once, no gap, no new
    counter offset."""
    samples, rows_x_m = _lane()
    data = tmp_path / "station"
    db = data / "station.db"

    def committed() -> int:
        try:
            return int(query(db, "SELECT COUNT(*) FROM passages")[0][0])
        except Exception:  # not created yet, or locked for a moment
            return 0

    with ModbusSamplePeer(samples, 1000, ring_rows=16000) as peer:
        cfg_path = _station_toml(tmp_path / "station.toml", data, peer.url, extra=f"""
[wim.sensor]
rows_x_m = {rows_x_m}
sample_rate_hz = 1000.0
pavement_temperature_c = 20.0""")
        cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--no-view"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while committed() < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:  # killed in any case: a failed wait leaves no station behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        before = committed()
        assert 2 <= before < 4
        res = subprocess.run(cmd + ["--vehicles", str(4 - before)], capture_output=True,
                             text=True, timeout=150)
        assert res.returncode == 0, res.stderr[-3000:]
    rows = query(db, "SELECT first_sample, axle_count, verdict FROM passages "
                     "ORDER BY first_sample")
    assert [r[1] for r in rows] == [6, 6, 2, 5], rows
    assert [r[2] for r in rows] == ["overloaded"] * 4
    assert query(db, "SELECT COUNT(*) FROM gaps") == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM outbox WHERE kind = 'passage'") == [(4,)]
