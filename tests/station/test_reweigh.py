"""Static re-weighing at the station: a real indicator (pty — the project's Toledo twin and
an XK3190 peer written from docs/devices.md alone —, Modbus TCP) configured in
station.toml, its settled readings stored with their flags, linked by the officer's CLI,
sealed as a supplementary package that verifies and goes to the outbox; flagged readings
are refused in zh-CN; a scale that stops answering opens an alarm."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import tty
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import vehicle_dict
from tests.station.conftest import query
from zhichao.cli import main
from zhichao.devices.twins.indicators import ModbusIndicatorTwin, StreamIndicatorTwin
from zhichao.evidence.inputs import ClockSync, PlateResult
from zhichao.evidence.reweigh import verify_reweigh
from zhichao.evidence.verify import verify_package
from zhichao.station.config import StationConfig, load_config
from zhichao.station.reweigh_stage import ALARM_CODE, ReweighStage
from zhichao.station.sealing import CaseMaterial, Sealer, material_to_json
from zhichao.station.static_scale import ReadingStore
from zhichao.station.store import SCHEMA_VERSION, PassageRow, StationStore


class Xk3190Peer:
    """An XK3190 indicator written from docs/devices.md alone (not the project's twin):
    12-byte tF = 0 frames of one weight on a pty, 20 a second."""

    def __init__(self, weight_kg: int) -> None:
        self.frame = self.encode(weight_kg, 0)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.url = f"xk3190+serial://{os.ttyname(self.slave)}?baud_rate=9600"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def encode(counts: int, decimals: int) -> bytes:
        body = b"+" + f"{counts:06d}{decimals}".encode()  # sign, 6 digits, decimals
        xor = 0
        for byte in body:  # XOR of bytes 2 … 9
            xor ^= byte
        return b"\x02" + body + f"{xor:02X}".encode() + b"\x03"

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.master, self.frame)
            self.stop.wait(0.05)

    def __enter__(self) -> Xk3190Peer:
        os.set_blocking(self.master, False)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)


def test_the_peer_encodes_the_documented_example() -> None:
    assert Xk3190Peer.encode(1234, 2) == bytes.fromhex("022B30303132333432314403")


def _t(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_config(tmp: Path, url: str, *, valid_days: float = 365.0,
                 render_documents: bool = False) -> StationConfig:
    now = datetime.now(UTC)
    path = tmp / "station.toml"
    path.write_text(f"""
[station]
data_dir = "{tmp / 'data'}"
[site]
site_id = "ZJ-G60-K123"
[lane]
lane_id = "2"
[evidence]
render_documents = {str(render_documents).lower()}
[http]
metrics_port = 0
console_port = 0
[static_scale]
url = "{url}"
scale_id = "SCALE-ZJ-01"
certificate_number = "ZJJL-S-0001"
certificate_issuer = "浙江省计量科学研究院"
accuracy_class = "III"
division_kg = 20.0
max_capacity_kg = 100000.0
certificate_valid_from = "{_t(now - timedelta(days=30))}"
certificate_valid_until = "{_t(now + timedelta(days=valid_days))}"
unconfirmed = ["检定证书信息为测试数据"]
stable_readings = 5
stable_min_s = 0.1
""", encoding="utf-8")
    return load_config(path)


def add_passage(cfg: StationConfig, key: str, plate: str, when: datetime, *, case: bool,
                **vehicle: Any) -> None:
    """A stored passage (and, with ``case``, its sealed case package), as the pipeline
    would have left it."""
    record = vehicle_dict(time_utc=_t(when), site_id=cfg.site.site_id, lane_id="2",
                          **vehicle)
    store = StationStore(cfg.data_dir / "station.db")
    row = PassageRow(key, record["site_id"], "2", record["time_utc"], 1000, 4000, 6,
                     record["gross_weight_kg"], record["vehicle_class"], record["limit_kg"],
                     record["verdict"], record["overloaded"], [], record, "linked", [], plate,
                     "yellow", 0.98, True, [])
    with store.transaction() as con:
        store.insert_passage(con, row)
    if case:
        sealer = Sealer(cfg)
        m = CaseMaterial(key, record, PlateResult(plate, "黄", 0.98, True), (),
                         ClockSync("北斗授时", when, {"WIM": 1.0}), None)
        with store.transaction() as con:
            store.insert_case(con, key, material_to_json(m))
        res = sealer.seal(m)
        with store.transaction() as con:
            store.mark_sealed(con, key, package_id=res.package_id, package_dir=str(
                res.directory), manifest_sha256=res.manifest_sha256, log_index=res.log_index,
                eligibility=str(res.eligibility.status), reasons=[])
        sealer.close()
    store.close()


def listen(cfg: StationConfig, until: Any, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Run the station's re-weighing stage against the real indicator until ``until``
    holds for the stored readings."""
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    stage = ReweighStage(cfg, store, sealer)
    stage.start_reader()
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    try:
        while time.monotonic() < deadline:
            stage.step()
            rows = stage.readings.recent(50)
            if until(rows):
                break
            time.sleep(0.1)
    finally:
        stage.close()
        store.close()
        sealer.close()
    return rows


def link(capsys: pytest.CaptureFixture[str], cfg: StationConfig, *args: str
         ) -> tuple[int, str, str]:
    rc = main(["reweigh", "link", "--config", str(Path(cfg.base_dir) / "station.toml"),
               "--officer", "执法员 张三", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_toledo_on_a_pty_linked_by_plate_sealed_and_verified(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = [(30000.0, True)] * 40 + [(46060.0, False)]
    with StreamIndicatorTwin("toledo", program, link="pty", rate_hz=50) as twin:
        cfg = write_config(tmp_path, twin.url)
        passed = datetime.now(UTC) - timedelta(seconds=30)
        add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345", passed, case=True)
        rows = listen(cfg, lambda rs: any(r["stable_by"] == "device" for r in rs))
    moving = next(r for r in rows if json.loads(r["flags"]) == ["unstable"])
    stable = next(r for r in rows if r["stable_by"] == "device")
    assert moving["weight_kg"] == "30000" and stable["weight_kg"] == "46060"
    assert bytes.fromhex(stable["raw_hex"])[0] == 0x02  # the frame as the indicator sent it

    rc, _out, err = link(capsys, cfg, "--plate", "冀A12345", "--time",
                         passed.astimezone().isoformat(), "--reading", str(moving["id"]))
    assert rc == 2 and "未稳定" in err  # an unstable reading is never linked

    local = passed.astimezone(UTC) + timedelta(hours=8)  # 北京时间, no offset
    rc, out, err = link(capsys, cfg, "--plate", "冀 A12345", "--time",
                        local.strftime("%Y-%m-%dT%H:%M:%S"))
    assert rc == 0, err
    assert "NOT" not in out and "静态 static 46060 kg，动态 WIM 62000" in out

    store = ReadingStore(cfg.data_dir / "station.db")
    row = store.get(stable["id"])
    store.close()
    assert row is not None and row["status"] == "sealed" and row["officer"] == "执法员 张三"
    sup = Path(row["package_dir"])
    original = next((Path(cfg.data_dir) / "evidence" / "packages").iterdir())
    sealer = Sealer(cfg)
    key = sealer.key.public_key()
    log_dir = sealer.log.directory
    sealer.close()
    report = verify_reweigh(sup, original, key=key, log_dir=log_dir)
    assert report.ok, report.text()
    manifest = json.loads((sup / "manifest.json").read_bytes())
    case = manifest["case"]
    assert case["reading"]["certificate"]["certificate_number"] == "ZJJL-S-0001"
    assert case["officer"] == "执法员 张三"
    elig = case["decision"]["eligibility"]
    assert elig["assessment"]["verdict"] == "within_limit"  # WIM 62 t; static: not over
    assert case["decision"]["penalty"] is None
    assert verify_package(original, key=key).ok  # the case package itself is untouched

    labels = [r[0] for r in query(cfg.data_dir / "station.db", "SELECT label FROM outbox")]
    assert manifest["package_id"] in labels

    bad = tmp_path / "tampered"
    shutil.copytree(sup, bad)
    (bad / "original" / "static-reading.json").write_bytes(
        (bad / "original" / "static-reading.json").read_bytes().replace(b"46060", b"45060"))
    assert not verify_package(bad, key=key).ok

    rc, _out, err = link(capsys, cfg, "--passage", "ZJ-G60-K123-2-1000")
    assert rc == 2 and "已有复检读数" in err


def test_xk3190_on_a_pty_static_overload_wim_missed_goes_to_review(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """XK3190 frames have no stable bit: the detector calls it stable. WIM said within
    limit (no case); the static scale says overloaded: a supplement naming the passage, a
    reviewer with both weights."""
    with Xk3190Peer(52000) as peer:
        cfg = write_config(tmp_path, peer.url)
        passed = datetime.now(UTC) - timedelta(seconds=10)
        add_passage(cfg, "ZJ-G60-K123-2-2000", "浙J12345", passed, case=False,
                    gross_weight_kg=48500.0, verdict="within_limit", overloaded=False,
                    excess_kg=None, excess_after_allowance_kg=None, allowance_kg=485.0)
        rows = listen(cfg, lambda rs: bool(rs))
    assert rows[0]["stable_by"] == "detector" and rows[0]["weight_kg"] == "52000"
    rc, _out, err = link(capsys, cfg, "--passage", "ZJ-G60-K123-2-2000")
    assert rc == 0, err
    store = ReadingStore(cfg.data_dir / "station.db")
    row = store.passage_reweighs("ZJ-G60-K123-2-2000")[0]
    store.close()
    case = json.loads((Path(row["package_dir"]) / "manifest.json").read_bytes())["case"]
    assert case["original"]["package_id"] is None  # no case package: the passage is named
    elig = case["decision"]["eligibility"]
    assert elig["assessment"]["verdict"] == "overloaded"
    assert elig["assessment"]["gross_kg"] == "52000"
    assert elig["assessment"]["wim_gross_kg"] == "48500"
    assert "static_only_overload" in {r["code"] for r in elig["reasons"]}
    assert elig["status_by_law"] == "MANUAL_REVIEW"


def test_modbus_overload_is_stored_flagged_and_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twin = ModbusIndicatorTwin([(99990.0, False)], rate_hz=10)
    twin.overload = True
    twin.start()
    try:
        cfg = write_config(tmp_path, twin.url)
        add_passage(cfg, "ZJ-G60-K123-2-3000", "浙J12345",
                    datetime.now(UTC) - timedelta(seconds=10), case=False)
        rows = listen(cfg, lambda rs: bool(rs))
    finally:
        twin.stop()
    assert json.loads(rows[0]["flags"]) == ["overload"]
    rc, _out, err = link(capsys, cfg, "--passage", "ZJ-G60-K123-2-3000", "--reading",
                         str(rows[0]["id"]))
    assert rc == 2 and "超载" in err
    rc, _out, err = link(capsys, cfg, "--passage", "ZJ-G60-K123-2-3000")
    assert rc == 2 and "没有可关联的稳定读数" in err


@pytest.mark.slow
def test_a_silent_scale_opens_an_alarm(tmp_path: Path) -> None:
    twin = StreamIndicatorTwin("xk3190", [(0.0, False)], link="pty", rate_hz=50)
    cfg = write_config(tmp_path, twin.url)
    twin.link.close()  # the serial line is there, nothing answers
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    stage = ReweighStage(cfg, store, sealer)
    stage.start_reader()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not stage.alarm_open:
            stage.collect()
            time.sleep(0.2)
        alarms = store.active_alarms()
    finally:
        stage.close()
        sealer.close()
        store.close()
    alarm = next(a for a in alarms if a["code"] == ALARM_CODE)
    assert "静态复检衡器" in alarm["message_zh"]


def test_config_refuses_an_incomplete_static_scale(tmp_path: Path) -> None:
    from zhichao.station.config import parse_config
    from zhichao.station.errors import StationConfigError

    with pytest.raises(StationConfigError, match="static_scale.certificate_number"):
        parse_config({"static_scale": {"url": "xk3190+serial:///dev/ttyS9",
                                       "scale_id": "S1"}}, tmp_path)
    with pytest.raises(StationConfigError, match="static_scale.url"):
        parse_config({"static_scale": {"url": "zwr+tcp://127.0.0.1:9"}}, tmp_path)


def test_a_link_that_cannot_be_sealed_is_an_alarm_not_a_crash(tmp_path: Path) -> None:
    from zhichao.devices.data import WeightReading
    from zhichao.station.reweigh_stage import SEAL_ALARM_CODE
    from zhichao.station.static_scale import SettledReading

    cfg = write_config(tmp_path, "xk3190+serial:///dev/null")
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    stage = ReweighStage(cfg, store, sealer)
    try:
        rid = stage.readings.add(SettledReading(WeightReading(46060.0, None, raw=b"\x02"), (),
                                                "detector"), "xk3190")
        assert stage.readings.link(rid, "NO-SUCH-PASSAGE", "执法员 张三")
        stage.step()  # never raises into the pipeline
        assert SEAL_ALARM_CODE in {a["code"] for a in store.active_alarms()}
        assert "NO-SUCH-PASSAGE" in (stage.readings.get(rid) or {})["error"]
    finally:
        stage.close()
        sealer.close()
        store.close()


def test_a_restarted_station_counts_supplements_as_log_entries_with_a_package(
        tmp_path: Path) -> None:
    """The start-up recovery's ``log_entries_without_package`` counts the log against the
    case packages and the supplements: a station with sealed re-weighings reports 0; a
    supplement moved away (quarantined) leaves its entry without a package."""
    from zhichao.devices.data import WeightReading
    from zhichao.station.static_scale import SettledReading

    cfg = write_config(tmp_path, "xk3190+serial:///dev/null")
    passed = datetime.now(UTC) - timedelta(minutes=5)
    add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345", passed, case=True)
    add_passage(cfg, "ZJ-G60-K123-2-2000", "浙J12345", passed, case=False,
                gross_weight_kg=48500.0, verdict="within_limit", overloaded=False,
                excess_kg=None, excess_after_allowance_kg=None, allowance_kg=485.0)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    stage = ReweighStage(cfg, store, sealer)
    try:
        for key, weight in (("ZJ-G60-K123-2-1000", 46060.0), ("ZJ-G60-K123-2-2000", 52000.0)):
            rid = stage.readings.add(SettledReading(WeightReading(weight, True, raw=b"\x02"),
                                                    (), "device"), "toledo")
            assert stage.readings.link(rid, key, "执法员 张三")
        assert stage.seal_pending() == 2
    finally:
        stage.close()
        sealer.close()
        store.close()

    def restart() -> dict[str, Any]:
        store = StationStore(cfg.data_dir / "station.db")
        sealer = Sealer(cfg)
        try:
            assert sealer.log.size == 3  # one case package, two supplements
            return sealer.recover(store.sealed_cases(), store.pending_cases())
        finally:
            sealer.close()
            store.close()

    info = restart()
    assert info["supplements_sealed"] == 2
    assert info["log_entries_without_package"] == 0
    sup = next((cfg.data_dir / "evidence" / "reweigh").iterdir())
    sup.rename(tmp_path / "moved-away")
    info = restart()
    assert info["supplements_sealed"] == 1
    assert info["log_entries_without_package"] == 1


@pytest.mark.parametrize("render", [True, False])
def test_a_supplement_carries_its_record_unless_documents_are_off(
        tmp_path: Path, render: bool) -> None:
    """``evidence.render_documents`` (on by default) governs the supplement's 复检记录 as it
    governs a case's documents; either way the supplement verifies."""
    from zhichao.devices.data import WeightReading
    from zhichao.station.static_scale import SettledReading

    cfg = write_config(tmp_path, "xk3190+serial:///dev/null", render_documents=render)
    add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345",
                datetime.now(UTC) - timedelta(minutes=5), case=True)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    stage = ReweighStage(cfg, store, sealer)
    try:
        rid = stage.readings.add(SettledReading(WeightReading(61800.0, True, raw=b"\x02"),
                                                (), "device"), "toledo")
        assert stage.readings.link(rid, "ZJ-G60-K123-2-1000", "执法员 张三")
        assert stage.seal_pending() == 1
        sup = Path((stage.readings.get(rid) or {})["package_dir"])
        assert verify_package(sup, key=sealer.key.public_key(),
                              log_dir=sealer.log.directory).ok
    finally:
        stage.close()
        sealer.close()
        store.close()
    paths = [f["path"] for f in json.loads((sup / "manifest.json").read_bytes())["files"]]
    record = ["derived/reweigh_record.html", "derived/reweigh_record.pdf"]
    assert paths == ["original/static-reading.json", *(record if render else [])]
    if render:
        html = (sup / "derived" / "reweigh_record.html").read_text(encoding="utf-8")
        assert "61800 kg" in html and "62000 kg" in html and "冀A12345" in html
        assert "执法员 张三" in html and "ZJJL-S-0001" in html and "（北京时间）" in html


def test_a_running_stage_seals_in_its_sealing_thread(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the reader started (a running station, ``zhichao reweigh listen``), the
    supplement and its 复检记录 are written by the stage's sealing thread, not by the
    pipeline thread that calls :meth:`step`; the pipeline thread records the outcome (the
    store's single writer); a failure in the sealing thread is an alarm and the reading's
    error, and the thread goes on."""
    import logging

    from zhichao.devices.data import WeightReading
    from zhichao.evidence import documents
    from zhichao.evidence.errors import DocumentError
    from zhichao.station.reweigh_stage import SEAL_ALARM_CODE
    from zhichao.station.static_scale import SettledReading

    real = documents.render_reweigh

    def render(doc: dict[str, Any], read: Any = None) -> dict[str, bytes]:
        if doc["case"]["reading"]["weight_kg"] == "50000":
            raise DocumentError("test: the renderer fails")
        return real(doc, read)

    monkeypatch.setattr(documents, "render_reweigh", render)
    cfg = write_config(tmp_path, "xk3190+serial:///dev/null", render_documents=True)
    passed = datetime.now(UTC) - timedelta(minutes=5)
    add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345", passed, case=True)
    add_passage(cfg, "ZJ-G60-K123-2-2000", "浙J12345", passed, case=False)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    stage = ReweighStage(cfg, store, sealer)
    caplog.set_level(logging.INFO, logger="zhichao.station")
    stage.start_reader()
    try:
        rid = stage.readings.add(SettledReading(WeightReading(61800.0, True, raw=b"\x02"),
                                                (), "device"), "toledo")
        bad = stage.readings.add(SettledReading(WeightReading(50000.0, True, raw=b"\x02"),
                                                (), "device"), "toledo")
        assert stage.readings.link(rid, "ZJ-G60-K123-2-1000", "执法员 张三")
        assert stage.readings.link(bad, "ZJ-G60-K123-2-2000", "执法员 张三")
        deadline = time.monotonic() + 60
        while (stage.readings.get(rid) or {})["status"] != "sealed" or not (
                stage.readings.get(bad) or {})["error"]:
            assert time.monotonic() < deadline, "not sealed"
            stage.step()
            time.sleep(0.05)
        assert SEAL_ALARM_CODE in {a["code"] for a in store.active_alarms()}
        assert "the renderer fails" in (stage.readings.get(bad) or {})["error"]
        assert (stage.readings.get(bad) or {})["status"] == "linked"  # tried again
        assert stage._sealer_thread is not None and stage._sealer_thread.is_alive()
    finally:
        stage.close()
    sealed = [r for r in caplog.records if r.getMessage() == "static re-weighing sealed"]
    assert [r.threadName for r in sealed] == ["reweigh-sealer"]
    row = ReadingStore(cfg.data_dir / "station.db").get(rid) or {}
    sup = Path(row["package_dir"])
    assert (sup / "derived" / "reweigh_record.pdf").is_file()
    assert verify_package(sup, key=sealer.key.public_key(), log_dir=sealer.log.directory).ok
    assert row["package_id"] in [r[0] for r in query(cfg.data_dir / "station.db",
                                                     "SELECT label FROM outbox")]
    sealer.close()
    store.close()


def test_the_evidence_log_is_not_closed_under_a_supplement_being_sealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop whose wait for the sealing thread runs out while it renders the 复检记录
    (under the log lock) and appends: ``Sealer.close()`` waits for that append, so the
    supplement is complete and in the log; nothing is appended after the close."""
    from zhichao.devices.data import WeightReading
    from zhichao.evidence import documents
    from zhichao.evidence.merkle import MerkleLog
    from zhichao.station import reweigh_stage
    from zhichao.station.errors import SealingStoppedError
    from zhichao.station.static_scale import SettledReading

    real = documents.render_reweigh
    rendering, release = threading.Event(), threading.Event()

    def slow_render(doc: dict[str, Any], read: Any = None) -> dict[str, bytes]:
        rendering.set()
        release.wait(20)  # a slow PDF
        return real(doc, read)

    monkeypatch.setattr(documents, "render_reweigh", slow_render)
    monkeypatch.setattr(reweigh_stage, "SEAL_JOIN_S", 0.2)
    cfg = write_config(tmp_path, "xk3190+serial:///dev/null", render_documents=True)
    add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345", datetime.now(UTC) - timedelta(
        minutes=5), case=True)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    entries_before = sealer.log.size
    stage = ReweighStage(cfg, store, sealer)
    stage.start_reader()
    rid = stage.readings.add(SettledReading(WeightReading(61800.0, True, raw=b"\x02"),
                                            (), "device"), "toledo")
    assert stage.readings.link(rid, "ZJ-G60-K123-2-1000", "执法员 张三")
    deadline = time.monotonic() + 30
    while not rendering.is_set():
        assert time.monotonic() < deadline, "the supplement was never handed over"
        stage.step()
        time.sleep(0.05)
    thread = stage._sealer_thread
    stage.close()  # its wait (0.2 s here) runs out: the thread is still rendering
    assert thread is not None and thread.is_alive()
    closer = threading.Thread(target=sealer.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive()  # the log stays open under the append
    release.set()
    closer.join(30)
    thread.join(30)
    assert not closer.is_alive() and not thread.is_alive() and sealer.closed
    out = sealer.reweigh_dir / f"ZJ-G60-K123-2-1000-{rid}"
    with MerkleLog(sealer.dir / "log", origin=sealer.station.origin) as log:
        assert log.size == entries_before + 1 and not getattr(log, "repair", None)
    assert verify_package(out, key=sealer.key.public_key(), log_dir=sealer.dir / "log").ok
    with sealer.log_lock, pytest.raises(SealingStoppedError, match="closed"):
        sealer.check_open()  # what a later supplement or case meets
    store.close()


def test_a_link_on_a_database_no_station_start_has_upgraded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``zhichao reweigh link`` and the console form (both through :func:`link_reading`)
    on a version-3 ``station.db`` (software updated, the station not started since): the
    schema is upgraded first, so the link neither fails on ``purge_started_utc`` nor
    shows a traceback."""
    import sqlite3

    from tests.station.test_retention import _as_version_3
    from zhichao.devices.data import WeightReading
    from zhichao.station.reweigh_cli import link_reading
    from zhichao.station.static_scale import SettledReading

    cfg = write_config(tmp_path, "xk3190+serial:///dev/null")
    passed = datetime.now(UTC) - timedelta(minutes=5)
    add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345", passed, case=False)
    add_passage(cfg, "ZJ-G60-K123-2-2000", "浙J12345", passed, case=False)
    db = cfg.data_dir / "station.db"
    readings = ReadingStore(db)
    first, second = (readings.add(SettledReading(WeightReading(w, True, raw=b"\x02"), (),
                                                 "device"), "toledo")
                     for w in (46060.0, 38000.0))
    readings.close()
    _as_version_3(db)
    with pytest.raises(sqlite3.OperationalError, match="purge_started_utc"):  # the defect
        ReadingStore(db).link(first, "ZJ-G60-K123-2-1000", "执法员 张三")
    # the console's path
    row, passage = link_reading(cfg, "执法员 王五", passage_key="ZJ-G60-K123-2-1000",
                                reading_id=first)
    assert row["id"] == first and passage["passage_key"] == "ZJ-G60-K123-2-1000"
    assert query(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)]
    _as_version_3(db)
    # the command line's
    rc, out, err = link(capsys, cfg, "--passage", "ZJ-G60-K123-2-2000", "--reading",
                        str(second))
    assert rc == 0 and "Traceback" not in err, err
    assert f"已关联 linked: 读数 #{second}" in out
    store = ReadingStore(db)
    assert [(store.get(i) or {}).get("status") for i in (first, second)] == ["sealed"] * 2
    store.close()
