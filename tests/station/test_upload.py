"""A real station process uploading to a real center process on loopback.

The center is down when the station starts (the outbox only grows, weighing goes on), the
station is SIGKILLed under traffic and restarted, then the center comes up. At the end
every passage and every sealed package of the station is at the center exactly once
(counted through the center's API, and matched item by item by content hash), nothing is
refused or quarantined, and every outbox item holds the center's receipt. The outbox is
one table of ``station.db``, filled in the passage's and the seal's own transactions.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.service.sync_helpers import CenterProcess, database, free_port, wait_for
from tests.station.conftest import query
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.signing import generate_key, private_pem, public_pem
from zhichao.service.center.store import create_tables, register_station
from zhichao.station.config import load_config
from zhichao.station.launcher import SimulatorProcess
from zhichao.sync.wire import check_receipt, sha256_hex

N_VEHICLES = 60
STATION_ID = "UPLOAD-TEST-01"


def _sync_outbox(data: Path) -> dict[str, int]:
    path = data / "station.db"
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {str(s): int(n) for s, n in con.execute(
            "SELECT state, COUNT(*) FROM outbox GROUP BY state")}
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def _passages(data: Path) -> int:
    db = data / "station.db"
    if not db.exists():
        return 0
    try:
        return int(query(db, "SELECT COUNT(*) FROM passages")[0][0])
    except sqlite3.Error:
        return 0


def _outbox_gauge(metrics_port: int) -> float:
    _, metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    depth = [float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith("zhichao_outbox_depth ")]
    return depth[0] if depth else -1.0


def _get(url: str) -> tuple[int, Any]:
    r = httpx.get(url, timeout=5)
    return r.status_code, (r.json() if "json" in r.headers.get("content-type", "") else r.text)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_station_uploads_every_item_once_through_outage_and_kill(kind: str, tmp_path: Path
                                                                 ) -> None:
    """The center on SQLite or on PostgreSQL (127.0.0.1:5432, database ``test``, a random
    schema; skipped with the reason when no server answers, failed when ``CI`` is set)."""
    dbs = database(kind, tmp_path)
    db = next(dbs)
    center_key = generate_key()
    center = CenterProcess(db, tmp_path / "center-store", center_key, tmp_path)
    station_key = generate_key()
    key_file = tmp_path / "station-key.pem"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, private_pem(station_key))
    os.close(fd)
    create_tables(db.engine, db.schema)
    register_station(db.engine, STATION_ID, public_pem(station_key.public_key()),
                     schema=db.schema)
    data = tmp_path / "station"
    metrics_port = free_port()
    cfg_path = tmp_path / "station.toml"
    cfg_path.write_text(f"""
[station]
station_id = "{STATION_ID}"
data_dir = "{data}"
key_file = "{key_file}"
center_url = "{center.url}"
center_key_file = "{center.pub_path}"
upload_max_delay_s = 1.0
upload_timeout_s = 10.0
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = {metrics_port}
console_port = 0
[simulation]
speed = 16.0
speed_kmh = [30.0, 90.0]
seed = 21
max_vehicles = {N_VEHICLES}
trucks_only = true
start_utc = "2026-03-02T08:00:00Z"
""", encoding="utf-8")
    cfg = load_config(cfg_path)
    sim = SimulatorProcess(cfg)
    cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--attach",
           "--no-view"]
    try:
        # 1. The center is down: the station weighs, seals and queues.
        with open(tmp_path / "run1.log", "w") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            wait_for(lambda: _passages(data) >= 8 and _sync_outbox(data).get("pending", 0) >= 8,
                     timeout_s=40, what="passages queued while the center is down")
            code, health = _get(f"http://127.0.0.1:{metrics_port}/health")
            assert health["upload"]["pending"] >= 8 and health["upload"]["last_upload_utc"] is None
            # the gauge is refreshed every second by the pipeline
            wait_for(lambda: _outbox_gauge(metrics_port) >= 1, timeout_s=5,
                     what="zhichao_outbox_depth showing the backlog")
            assert _sync_outbox(data).get("done", 0) == 0
            # 2. SIGKILL under traffic, restart.
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        with open(tmp_path / "run2.log", "w") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(2.0)
            # 3. The center comes up; the station drains its outbox.
            center.start()
            rc = p.wait(timeout=120)
        assert rc == 0, (tmp_path / "run2.log").read_text()[-3000:]
        status = subprocess.run([sys.executable, "-m", "zhichao", "status", "--config",
                                 str(cfg_path), "--json"], capture_output=True, text=True,
                                timeout=60)
        assert status.returncode == 0, status.stderr
        up = json.loads(status.stdout)["upload"]
        # 4. Both ends counted.
        db_path = data / "station.db"
        rows = query(db_path, "SELECT record FROM passages")
        sealed = query(db_path, "SELECT manifest_sha256 FROM cases WHERE status = 'sealed'")
        pending_cases = query(db_path, "SELECT COUNT(*) FROM cases WHERE status != 'sealed'")
        assert pending_cases[0][0] == 0
        code, view = _get(f"{center.url}/sync/v1/stations/{STATION_ID}")
        assert code == 200
        print(f"\nUPLOAD ({kind}): {len(rows)} passages, {len(sealed)} packages at the station; "
              f"center: {view['passages']} passages, {view['packages']} packages, "
              f"log size {view['accepted_size']}; status {up}")
        assert len(sealed) >= 1 and len(rows) >= N_VEHICLES * 0.8
        assert view["passages"] == len(rows) and view["packages"] == len(sealed)
        assert center.health()["quarantined"] == 0
        prefix = f'"{db.schema}".' if db.schema else ""
        with db.engine.connect() as conn:
            got_pass = {r[0] for r in conn.execute(text(
                f"SELECT record_sha256 FROM {prefix}sync_passage"))}
            got_pkg = {r[0] for r in conn.execute(text(
                f"SELECT manifest_sha256 FROM {prefix}sync_package"))}
        assert got_pass == {sha256_hex(canonicalize(json.loads(r[0]))) for r in rows}
        assert got_pkg == {r[0] for r in sealed}
        # the center's service (its accept hook) holds each vehicle once: a vehicle sent as a
        # passage record and again inside its package is one passage, linked to the package
        assert center.health()["hook_pending"] == 0
        with db.engine.connect() as conn:
            service_passages = conn.execute(text(
                f"SELECT COUNT(*), COUNT(package_id) FROM {prefix}passages")).one()
        assert tuple(service_passages) == (len(rows), len(sealed)), service_passages
        states = _sync_outbox(data)
        assert states == {"done": len(rows) + len(sealed)}
        assert up["pending"] == 0 and up["last_upload_utc"]
        assert not (data / "sync-outbox.sqlite").exists()  # one outbox, in station.db
        con = sqlite3.connect(data / "station.db")
        for sha, rb64, rsig in con.execute(
                "SELECT item_sha256, receipt_b64, receipt_sig FROM outbox"):
            check_receipt(rb64, rsig, center_key.public_key(), item_sha256=sha,
                          station_id=STATION_ID)
        con.close()
    finally:
        sim.stop()
        center.kill()
        for _ in dbs:  # runs the generator on: drops the database
            pass


def _passage_row(key: str, rec: dict[str, Any], first: int) -> Any:
    from zhichao.station.store import PassageRow

    return PassageRow(key, "S", "1", rec["time_utc"], first, first + 10, 6, 40000.0, None,
                      None, "within_limit", False, [], rec, "no_frame", [], None, None, None,
                      None, [])


def test_the_outbox_item_commits_with_its_passage_and_only_once(tmp_path: Path) -> None:
    """No forwarding between queues: a passage's item is in the passage's transaction (a
    rolled-back passage leaves none), and the same record queued again adds nothing."""
    from tests.evidence.conftest import vehicle_dict
    from zhichao.station.store import StationStore
    from zhichao.station.sync_outbox import Outbox

    key = generate_key()
    store = StationStore(tmp_path / "station.db")
    rec = vehicle_dict(first_sample=1000)
    with pytest.raises(RuntimeError), store.transaction() as con:
        store.insert_passage(con, _passage_row("k0", rec, 1000))
        store.enqueue_passage(con, rec, STATION_ID, key)
        raise RuntimeError("killed inside the passage's transaction")
    outbox = Outbox(tmp_path / "station.db")
    assert outbox.depth() == 0 and store.passage("k0") is None
    for _ in range(2):
        with store.transaction() as con:
            store.enqueue_passage(con, rec, STATION_ID, key)
    assert outbox.depth() == 1 and store.counts()["outbox_pending"] == 1
    outbox.close()
    store.close()


def test_a_version_2_outbox_is_taken_over_once(tmp_path: Path) -> None:
    """Version 2 queued rows in ``station.db`` and forwarded them to
    ``sync-outbox.sqlite``; its first start on this version takes over the file's items
    (states and receipts kept) and queues the rows never forwarded, except what its direct
    copy into the station's own service had registered; a second start adds nothing."""
    from tests.evidence.conftest import vehicle_dict
    from tests.service.sync_helpers import StationKit
    from zhichao.station.store import StationStore
    from zhichao.station.sync_outbox import Outbox
    from zhichao.station.upload import upload_status

    kit = StationKit(tmp_path / "kit", station_id=STATION_ID)
    folder = kit.seal(1)[0]
    data = tmp_path / "data"
    data.mkdir()
    recs = [vehicle_dict(first_sample=1000 * (i + 1)) for i in range(4)]
    with Outbox(data / "sync-outbox.sqlite") as old:  # forwarded earlier, uploaded
        sha, _ = old.enqueue_passage(recs[3], STATION_ID, kit.key)
        old.mark_done(sha, "cmVjZWlwdA==", "sig")
    con = sqlite3.connect(data / "station.db")
    con.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, ref TEXT "
                "NOT NULL, payload TEXT NOT NULL, created_utc TEXT NOT NULL, sent_utc TEXT, "
                "UNIQUE (kind, ref))")
    rows = [("passage", f"k{i}", json.dumps({"record": recs[i]})) for i in range(3)]
    rows += [("package", "k0", "{}"), ("package", "k-missing", "{}")]
    con.executemany("INSERT INTO outbox (kind, ref, payload, created_utc) VALUES (?, ?, ?, "
                    "'2026-03-02T08:00:00Z')", rows)
    con.commit()
    con.close()
    store = StationStore(data / "station.db")
    with store.transaction() as con:
        for i in range(3):
            store.insert_passage(con, _passage_row(f"k{i}", recs[i], 1000 * (i + 1)))
        store.insert_case(con, "k0")
        store.mark_sealed(con, "k0", package_id="P", package_dir=str(folder),
                          manifest_sha256="0", log_index=0, eligibility="usable", reasons=[])
        # version 2's direct copy had registered the first passage in its own service
        store.set_meta(con, "service_passage_id", "1")
    assert store.adopt_legacy_outbox(STATION_ID, kit.key, service_link_covered=True) == 4
    assert not (data / "sync-outbox.sqlite").exists()
    assert (data / "sync-outbox.sqlite.imported").exists()
    with Outbox(data / "station.db") as outbox:
        items = outbox.items()
        assert sorted((i["kind"], i["state"]) for i in items) == [
            ("package", "pending"), ("passage", "done"), ("passage", "pending"),
            ("passage", "pending")]
        assert outbox.receipt(sha) == ("cmVjZWlwdA==", "sig")
    assert store.adopt_legacy_outbox(STATION_ID, kit.key, service_link_covered=True) == 0
    store.close()
    cfg_path = tmp_path / "station.toml"
    cfg_path.write_text(f'[station]\nstation_id = "{STATION_ID}"\ndata_dir = "data"\n',
                        encoding="utf-8")
    st = upload_status(load_config(cfg_path), data)
    assert st["sync_pending"] == 3 and st["sync_done"] == 1 and st["pending"] == 3
