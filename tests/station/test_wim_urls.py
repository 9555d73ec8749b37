"""``wim.url`` names any WIM device of the devices stage's registry; a record controller's
records are journalled and survive a SIGKILL (neither lost nor duplicated); the device's
accuracy class reaches the weighing core."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.station.conftest import query
from tests.station.peers import Vehicle, ZwrPeer
from zhichao.common import format_utc
from zhichao.devices.data import WimRecord
from zhichao.station.config import load_config, parse_config
from zhichao.station.device import device_accuracy_class, weighing_config
from zhichao.station.errors import StationConfigError
from zhichao.station.record_intake import (
    RecordJournal,
    missed_since,
    record_from_json,
    record_to_json,
    redelivered,
)


@pytest.mark.parametrize(("url", "kind"), [
    ("tcp://127.0.0.1:9000", "samples"),
    ("serial:///dev/ttyUSB0?baud_rate=921600", "samples"),
    ("zsf+tcp://127.0.0.1:9000", "samples"),
    ("zsf+serial:///dev/ttyUSB0?baud_rate=921600", "samples"),
    ("modbus+tcp://127.0.0.1:502?device_id=1", "samples"),
    ("modbus+rtu:///dev/ttyS1?baud_rate=115200&parity=E", "samples"),
    ("zwr+tcp://127.0.0.1:4001", "records"),
    ("zwr+serial:///dev/ttyS2?baud_rate=9600", "records"),
    ("tcp://127.0.0.1:4001?kind=records", "records"),
    ("modbus+tcp://127.0.0.1:502?device_id=1&kind=records", "records"),
    ("modbus+rtu:///dev/ttyS3?baud_rate=115200&kind=records", "records"),
])
def test_every_wim_url_is_accepted(url: str, kind: str) -> None:
    from zhichao.station.config import wim_url_kind

    cfg = parse_config({"wim": {"url": url}})
    assert cfg.wim.url == url and wim_url_kind(url) == kind


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://127.0.0.1/wim", "no samples backend for scheme 'ftp'"),
    ("http://127.0.0.1/wim", "not a WIM device URL (camera)"),  # MJPEG camera streams
    ("xk3190+serial:///dev/ttyS0", "not a WIM device URL (indicator)"),
    ("modbus+tcp://127.0.0.1:502?map=zhichao", "not a WIM device URL (indicator)"),
    ("folder:///srv/frames", "not a WIM device URL (camera)"),
    ("zwr+tcp://127.0.0.1", "wim.url"),
    ("modbus+tcp://127.0.0.1:502?device_id=x", "device_id"),
    # settings no backend reads are refused, not ignored (a typo, another backend's setting)
    ("zwr+tcp://127.0.0.1:4001?bogus=1", "unknown setting(s) bogus"),
    ("serial:///dev/ttyUSB0?baud=9600", "unknown setting(s) baud for a samples device"),
    ("modbus+tcp://127.0.0.1:502?baud_rate=9600", "unknown setting(s) baud_rate"),
    ("modbus+rtu:///dev/ttyS1?parity=X", "parity must be N, E or O"),
])
def test_bad_wim_urls_are_refused_naming_the_key(url: str, problem: str) -> None:
    with pytest.raises(StationConfigError) as err:
        parse_config({"wim": {"url": url}})
    assert "station.toml: wim.url:" in str(err.value)
    assert problem in str(err.value)


def test_config_check_validates_the_wim_url(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[wim]\nurl = "zwr+tcp://127.0.0.1:4001"\n', encoding="utf-8")
    bad.write_text('[wim]\nurl = "toledo+tcp://127.0.0.1:4001"\n', encoding="utf-8")
    for path, rc in ((good, 0), (bad, 1)):
        res = subprocess.run([sys.executable, "-m", "zhichao", "config", "check", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == rc, res.stdout + res.stderr
    assert "wim.url" in res.stdout + res.stderr


# ------------------------------------------------------------------ accuracy class
def test_device_accuracy_class_reaches_the_weighing_config(tmp_path: Path) -> None:
    from zhichao.station.runtime import Station

    assert weighing_config(parse_config({})).overload.accuracy_class == "5"
    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "device": {"accuracy_class": "10"}})
    assert weighing_config(cfg).overload.accuracy_class == "10"
    station = Station(cfg)  # the lane processor the station weighs with
    try:
        station.intake.epoch = datetime.now(UTC)
        proc = station.intake.new_processor(0)
        assert proc.cfg.overload.accuracy_class == "10"
    finally:
        station.close()
    with pytest.raises(StationConfigError, match="device.accuracy_class"):
        parse_config({"device": {"accuracy_class": "7"}})


def test_accuracy_class_of_the_register_in_force(tmp_path: Path) -> None:
    now = datetime.now(UTC)

    def cert(number: str, cls: str | None, start: datetime, end: datetime) -> dict[str, object]:
        return {"number": number, "issuer": "检定机构", "accuracy_class": cls,
                "valid_from_utc": format_utc(start), "valid_to_utc": format_utc(end)}

    def status(certs: list[dict[str, object]]) -> Path:
        path = tmp_path / "device.json"
        path.write_text(json.dumps({
            "format": "zhichao.device/1", "device_id": "WIM-7", "site_id": "SIM-SITE-01",
            "lane_id": "1", "installation_type": "in_pavement_strip",
            "certificates": certs, "technical_review_approved": True,
            "technical_review_date": "2025-01-01", "legal_review_approved": True,
            "legal_review_date": "2025-01-02", "drift_alarm_open": False}), "utf-8")
        return path

    old = cert("C-1", "10", now - timedelta(days=800), now - timedelta(days=1))
    new = cert("C-2", "2", now - timedelta(days=1), now + timedelta(days=300))
    cfg = parse_config({"device": {"status_file": str(status([old, new]))}})
    assert device_accuracy_class(cfg) == "2"  # the certificate in force now
    assert device_accuracy_class(cfg, now - timedelta(days=10)) == "10"
    # none in force: the most lenient class of the table (the gate refuses the case)
    assert device_accuracy_class(cfg, now + timedelta(days=400)) == "10"


def test_record_weighed_with_the_device_class() -> None:
    """The station's device class reaches the weighing: its in-service MPE is the device
    part of the tolerance (class 5: ±5 %, class 10: ±10 % of 27 t), and never less than it
    is deducted."""
    from zhichao.weighing.overload import tolerance_for
    from zhichao.weighing.reported import weigh_reported

    r = WimRecord(1, 0, datetime.now(UTC), "1", 8.0, None, (7000.0, 20000.0), (), (5.0,),
                  27000.0, (26900.0, 27100.0), 0, None)
    configs = [weighing_config(parse_config({})),
               weighing_config(parse_config({"device": {"accuracy_class": "10"}}))]
    mpe = [tolerance_for(27000.0, 8.0, c.overload, rows=2, axle_count=2).device_mpe_kg
           for c in configs]
    assert mpe == [1350, 2700]
    for c, device_mpe_kg in zip(configs, mpe, strict=True):
        out = weigh_reported(r, site_id="S", config=c)
        assert out.allowance_kg >= device_mpe_kg


# ------------------------------------------------------------------ record journal, resume
def _record(boot: int, seq: int, t: datetime) -> WimRecord:
    return WimRecord(boot, seq, t, "2", 42.5, -0.125, (7000.0, 20000.0),
                     ((3500.0, 3500.0), (10000.0, 10000.0)), (5.0,), 27000.0,
                     (26900.0, 27100.0), 0x0020, 18.5, station_time_utc=t, source="zwr+tcp://x")


def test_record_journal_replays_cuts_a_torn_tail_and_prunes(tmp_path: Path) -> None:
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    r = _record(3, 7, t0)
    assert record_from_json(json.loads(json.dumps(record_to_json(r)))) == r
    journal = RecordJournal(tmp_path / "records", segment_records=4)
    for n in range(10):
        journal.append(n, replace(r, seq=n, device_time_utc=t0 + timedelta(seconds=n)))
    journal.close()
    newest = sorted((tmp_path / "records").glob("rec-*.jsonl"))[-1]
    with open(newest, "ab") as f:
        f.write(b'{"n": 10, "record": {"boot')  # killed mid-write
    journal = RecordJournal(tmp_path / "records", segment_records=4)
    assert journal.end_ordinal == 10 and journal.last is not None
    assert journal.last[1].seq == 9
    # reopened, it remembers its records by (boot, counter), to tell resends from late ones
    newest = journal.last[1]
    assert journal.recent[(newest.boot_id, 9)] == newest.device_time_utc
    assert len(journal.recent) == 10
    assert [n for n, _ in journal.replay(6)] == [7, 8, 9]
    journal.prune(8)  # segments 0-3 and 4-7 are committed; the newest stays
    assert sorted(p.name for p in (tmp_path / "records").glob("*.jsonl")) == ["rec-8.jsonl"]
    journal.prune(100)
    assert [n for n, _ in journal.replay(-1)] == [8, 9]
    journal.close()


def test_redelivered_and_missed_records() -> None:
    t = datetime(2026, 5, 1, 8, tzinfo=UTC)
    last = _record(3, 10, t)
    assert redelivered(last, _record(3, 10, t))  # the ring hands it out again
    assert redelivered(last, _record(3, 4, t - timedelta(seconds=30)))
    assert not redelivered(last, _record(3, 11, t + timedelta(seconds=2)))
    assert not redelivered(last, _record(4, 0, t + timedelta(seconds=2)))  # a reboot
    # the counter went back with a later time: a controller without a boot counter restarted
    assert not redelivered(last, _record(3, 2, t + timedelta(seconds=5)))
    assert not redelivered(None, last)
    # with the journal's recent records: a resend of one of them is a resend; a record
    # inside the remembered run that was never journalled arrived late, and is kept
    recent = {(3, seq): t - timedelta(seconds=10 - seq) for seq in range(11) if seq != 9}
    assert redelivered(last, _record(3, 8, t - timedelta(seconds=2)), recent)
    assert not redelivered(last, _record(3, 9, t - timedelta(seconds=1)), recent)  # late
    assert redelivered(last, _record(3, 4, t - timedelta(seconds=30)), recent)  # before
    assert not redelivered(last, _record(3, 11, t + timedelta(seconds=2)), recent)
    assert missed_since(last, _record(3, 11, t)) == 0
    assert missed_since(last, _record(3, 14, t)) == 3
    assert missed_since(last, _record(4, 0, t)) == -1
    assert missed_since(None, last) == 0


def _committed(db: Path) -> list[tuple[int, int]]:
    """(ordinal, controller seq) of every stored passage (none while the station is still
    creating its database: the file exists a moment before its tables)."""
    try:
        rows = query(db, "SELECT first_sample, record FROM passages ORDER BY first_sample")
    except sqlite3.OperationalError:
        return []
    return [(int(n), int(json.loads(rec)["wim_source"]["seq"])) for n, rec in rows]


def _wait_for(pred: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_record_station_killed_neither_loses_nor_duplicates(tmp_path: Path) -> None:
    """SIGKILL a station reading a ZWR/1 controller twice under traffic, restart it: every
    record it had received is stored once; the records the controller pushed while no
    station listened are a recorded gap of exactly that many."""
    data = tmp_path / "station"
    heavy = Vehicle(42.5, (7000.0, 20000.0), (5.0,), (26900.0, 27100.0))
    light = Vehicle(61.0, (6000.0, 9000.0), (4.8,), (14950.0, 15050.0))
    vehicles = [heavy if i % 3 == 0 else light for i in range(40)]
    cfg_path = tmp_path / "station.toml"
    with ZwrPeer(vehicles, interval_s=0.25) as peer:
        # the default cameras (spool folders) deliver no frames: each passage waits in the
        # link step for its frames (≈ 5 s), so a kill finds records journalled, not stored
        cfg_path.write_text(f"""[station]
data_dir = "{data}"
[wim]
url = "{peer.url}"
[linking]
wait_s = 3.0
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
""", encoding="utf-8")
        cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--no-view"]
        db = data / "station.db"
        for target in (4, 9):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                assert _wait_for(lambda t=target: db.exists() and len(_committed(db)) >= t, 180)
            finally:  # killed in any case: a failed wait leaves no station behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            assert _wait_for(lambda: len(peer.sent) == len(vehicles), 60)
            last = peer.sent[-1]
            assert _wait_for(lambda: any(s == last for _, s in _committed(db)), 30)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    stored = _committed(db)
    seqs = [s for _, s in stored]
    assert len(seqs) == len(set(seqs))  # no duplicate
    assert [n for n, _ in stored] == list(range(len(stored)))  # every ordinal, once
    journalled = {r.seq for _, r in RecordJournal(data / "records").replay(-1)}
    assert journalled <= set(seqs)  # every record received is stored
    gaps = query(db, "SELECT n_samples, reason FROM gaps")
    assert all(reason == "station_restart" and n > 0 for n, reason in gaps)
    assert len(seqs) + sum(n for n, _ in gaps) == len(vehicles), (  # the rest: counted gaps
        seqs, query(db, "SELECT first_index, n_samples, reason FROM gaps"),
        [(e["message"], e.get("fields")) for e in map(json.loads, (
            data / "station.log.jsonl").read_text("utf-8").splitlines())
         if "record" in e["message"] or "gap" in e["message"]])
    log = [json.loads(line) for line in (data / "station.log.jsonl").read_text(
        "utf-8").splitlines()]
    replayed = [e["records"] for e in log if e["message"] == "record journal replayed"]
    assert len(replayed) == 3 and sum(replayed) > 0  # the kills found records pending
    print(f"\nRECORD KILLS: {len(seqs)} of {len(vehicles)} records stored once, "
          f"{sum(n for n, _ in gaps)} pushed while no station listened ({len(gaps)} gaps), "
          f"{sum(replayed)} replayed from the journal")
    cases = query(db, "SELECT status FROM cases")
    assert cases and all(c == ("sealed",) for c in cases)


def test_modbus_record_ring_restart_takes_every_record_once(tmp_path: Path) -> None:
    """The Modbus record ring keeps its records: a station SIGKILLed and restarted reads
    the ring again from the oldest slot, drops what it already has, and gets the records
    that came while it was down — every vehicle stored exactly once, no gap."""
    from zhichao.devices.twins.records import ModbusRecordTwin

    t0 = datetime.now(UTC)
    records = [replace(_record(1, i, t0), axle_loads_kg=(7000.0, 20000.0 - 700 * (i % 2)),
                       gross_weight_kg=27000.0 - 700 * (i % 2), wheel_loads_kg=())
               for i in range(20)]
    data = tmp_path / "station"
    with ModbusRecordTwin(records, ring_slots=64, interval_s=0.25) as twin:
        cfg_path = tmp_path / "station.toml"
        cfg_path.write_text(f"""camera = []
[station]
data_dir = "{data}"
[wim]
url = "{twin.url}"
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
""", encoding="utf-8")
        assert load_config(cfg_path).wim.url == twin.url
        cmd = [sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path), "--no-view"]
        db = data / "station.db"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            assert _wait_for(lambda: db.exists() and len(_committed(db)) >= 5, 180)
        finally:  # killed in any case: a failed wait leaves no station behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(1.0)  # records happen meanwhile; the ring keeps them
        res = subprocess.run(cmd + ["--vehicles", str(20 - len(_committed(db)))],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
    stored = _committed(db)
    assert [s for _, s in stored] == list(range(20))
    assert query(db, "SELECT COUNT(*) FROM gaps") == [(0,)]
    assert all(c == ("sealed",) for c in query(db, "SELECT status FROM cases"))


def test_a_late_record_never_moves_the_newest_and_an_old_resend_stays_a_resend(
        tmp_path: Path) -> None:
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    journal = RecordJournal(tmp_path / "records")

    def rec(seq: int) -> WimRecord:
        return replace(_record(3, seq, t0), seq=seq, device_time_utc=t0 + timedelta(seconds=seq))

    for n, seq in enumerate([*range(5), 6, 5]):  # 5 arrives late, after 6
        journal.append(n, rec(seq))
    assert journal.newest is not None and journal.newest.seq == 6
    journal.close()
    again = RecordJournal(tmp_path / "records")
    assert again.newest is not None and again.newest.seq == 6  # a restart: no false gap
    assert missed_since(again.newest, rec(7)) == 0
    again.close()
    # 2000 records and one late low one: an old resend is not taken for a late record
    recent = {(3, seq): t0 + timedelta(seconds=seq) for seq in range(976, 2000)}
    recent[(3, 10)] = t0 + timedelta(seconds=10)
    newest = rec(1999)
    assert redelivered(newest, rec(500), recent)
    assert not redelivered(newest, rec(1700), {k: v for k, v in recent.items()
                                               if k != (3, 1700)})  # late, within window


def test_a_full_disk_leaves_no_torn_record_line(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import zhichao.station.record_intake as module

    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    journal = RecordJournal(tmp_path / "records")
    journal.append(0, _record(3, 0, t0))
    real_write = os.write

    def short_then_full(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))  # a short write…
        raise OSError(errno.ENOSPC, "No space left on device")  # …then the disk is full

    monkeypatch.setattr(module.os, "write", short_then_full)
    with pytest.raises(module.JournalError):
        journal.append(1, _record(3, 1, t0 + timedelta(seconds=1)))
    monkeypatch.setattr(module.os, "write", real_write)
    journal.append(1, _record(3, 1, t0 + timedelta(seconds=1)))
    journal.close()
    reopened = RecordJournal(tmp_path / "records")
    assert [r.seq for _, r in reopened.replay(-1)] == [0, 1]  # nothing torn, nothing lost
    reopened.close()


def test_records_a_full_disk_left_unjournalled_are_taken_again_in_order(
        tmp_path: Path) -> None:
    from zhichao.station.errors import JournalError
    from zhichao.station.record_intake import RecordIntake

    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    journal = RecordJournal(tmp_path / "records")
    intake = RecordIntake.__new__(RecordIntake)  # only what on_record touches
    intake.journal = journal
    intake.redelivered = 0
    intake._station_gap_checked = True
    intake._unjournalled = []
    intake._gap_recorded = None
    weighed: list[int] = []
    intake.weigh = lambda n, r: weighed.append(r.seq)  # type: ignore[method-assign]
    real_append = journal.append
    full = {"on": True}

    def append(n: int, r: WimRecord) -> None:
        if full["on"]:
            raise JournalError("disk full")
        real_append(n, r)

    journal.append = append  # type: ignore[method-assign]
    recs = [replace(_record(3, s, t0), station_time_utc=None) for s in range(3)]
    for r in recs[:2]:
        with pytest.raises(JournalError):
            intake.on_record(r)
    full["on"] = False
    intake.on_record(recs[2])
    assert weighed == [0, 1, 2]  # none lost, none twice, in order
    assert [r.seq for _, r in journal.replay(-1)] == [0, 1, 2]
    journal.close()
