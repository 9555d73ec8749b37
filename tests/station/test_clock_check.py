"""The station's clock claim is made only after its time source was checked (issue #17
item 5): an SNTP exchange with a real UDP server on loopback (:mod:`tests.station.sntp_peer`,
written from RFC 4330), each check recorded, a failing one an alarm, each package's clock
record the check covering its passage, and the gate sending an unverified clock to a
person (行政处罚法第四十一条第二款: the record must be 准确; a record whose time is not
shown to be right cannot be used unreviewed)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.station.conftest import query as db_query
from tests.station.peers import Vehicle, ZwrPeer
from tests.station.sntp_peer import SntpPeer
from zhichao.cli import main
from zhichao.evidence.documents import sheet_html
from zhichao.evidence.eligibility import Status, evaluate
from zhichao.evidence.evaluate_cli import rules_for
from zhichao.evidence.inputs import CaseInputs, ClockSync
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import generate_key
from zhichao.evidence.verify import verify_package
from zhichao.station.clock import Clock, SimClock
from zhichao.station.clockcheck import (
    CLOCK_ALARM,
    CheckRecord,
    ClockMonitor,
    last_check,
    reference_zh,
    source_check,
)
from zhichao.station.config import ClockSection, StationConfigError, parse_config
from zhichao.station.store import StationStore
from zhichao.station.timesource import (
    KissOfDeathError,
    NoReplyError,
    UnsynchronisedError,
    query,
)
from zhichao.station.timesource import TimeSourceError as TSError
from zhichao.testing.cases import case_dict

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------- SNTP
def test_sntp_offset_delay_and_stratum_from_a_real_server() -> None:
    for offset_s in (0.25, -1.5, 0.0):
        with SntpPeer(offset_s=offset_s, stratum=3) as peer:
            r = query(peer.address, timeout_s=2.0)
        # loopback: the true offset is offset_s; θ is within d/2 of it
        assert abs(r.offset_s - offset_s) <= r.delay_s / 2 + 0.005, (offset_s, r)
        assert 0 <= r.delay_s < 0.5 and r.stratum == 3 and r.leap == 0
        assert r.root_delay_s == pytest.approx(0.002, abs=1e-4)
        assert r.error_bound_s == pytest.approx(r.delay_s / 2 + 0.001 + 0.001, abs=1e-4)


def test_sntp_refuses_kiss_of_death_unsynchronised_and_forged_replies() -> None:
    with SntpPeer(kiss="RATE") as peer:
        with pytest.raises(KissOfDeathError) as kod:
            query(peer.address, timeout_s=1.0)
        assert kod.value.code == "RATE"
    with SntpPeer(stratum=16) as peer, pytest.raises(UnsynchronisedError):
        query(peer.address, timeout_s=1.0)
    with SntpPeer(leap=3) as peer, pytest.raises(UnsynchronisedError):
        query(peer.address, timeout_s=1.0)
    with SntpPeer() as peer:
        peer.wrong_originate = True
        with pytest.raises(TSError, match="originate"):
            query(peer.address, timeout_s=1.0)
    with SntpPeer(silent=True) as peer:
        t0 = time.monotonic()
        with pytest.raises(NoReplyError):
            query(peer.address, timeout_s=0.3)
        assert time.monotonic() - t0 < 2.0 and peer.requests == 1


# ---------------------------------------------------------------------------- checks
def _cfg(*servers: str, **kw: float) -> ClockSection:
    return ClockSection(servers=servers, timeout_s=0.5, **kw)


def test_check_results_good_offset_too_big_unreachable_refused_disagreeing() -> None:
    now = lambda: T0  # noqa: E731
    with SntpPeer(offset_s=0.01) as good, SntpPeer(offset_s=0.8) as far, \
            SntpPeer(silent=True) as silent, SntpPeer(kiss="DENY") as deny:
        ok = source_check(_cfg(good.address), now)
        assert ok.good and ok.source == "ntp" and ok.server == good.address
        # within the check's own error bound (half the round trip and more), which a busy
        # machine widens, and at least as close as 5 ms
        assert ok.stratum == 2 and ok.error_bound_ms is not None
        assert abs(ok.offset_ms - 10) <= max(5.0, ok.error_bound_ms)  # type: ignore[operator]
        assert source_check(_cfg(far.address), now).result == "offset_exceeded"
        assert source_check(_cfg(far.address, max_offset_ms=1000.0), now).good
        assert source_check(_cfg(silent.address), now).result == "unreachable"
        assert source_check(_cfg(deny.address), now).result == "refused"
        # one silent server of two: the other decides
        assert source_check(_cfg(silent.address, good.address), now).good
        assert source_check(_cfg(good.address, far.address), now).result == "servers_disagree"
        assert source_check(_cfg(good.address, far.address, max_offset_ms=1000.0), now).good
    assert source_check(_cfg(), now).result == "no_source"


def test_checks_are_recorded_repeated_each_interval_and_alarm_opens_and_closes(
        tmp_path: Path) -> None:
    store = StationStore(tmp_path / "station.db")
    try:
        with SntpPeer(silent=True) as peer:
            monitor = ClockMonitor(_cfg(peer.address, check_interval_s=1.0), Clock(), tmp_path)
            stop = threading.Event()
            thread = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
            thread.start()
            deadline = time.monotonic() + 5
            while not monitor.checks and time.monotonic() < deadline:
                time.sleep(0.05)
            monitor.sync_alarm(store)  # the pipeline thread's part
            alarm = [a for a in store.active_alarms() if a["code"] == CLOCK_ALARM]
            assert alarm and "人工复核" in alarm[0]["message_zh"], store.active_alarms()
            assert "unreachable" in alarm[0]["detail"]
            peer.silent = False  # the server answers again: the next check closes it
            time.sleep(2.6)
            stop.set()
            thread.join(timeout=3)
        monitor.sync_alarm(store)
        assert not [a for a in store.active_alarms() if a["code"] == CLOCK_ALARM]
    finally:
        store.close()
    lines = [json.loads(x) for x in (tmp_path / "clock" / "checks.jsonl").read_text(
        encoding="utf-8").splitlines()]
    # start, then one check a second (a failed one retried within the interval)
    assert lines[0]["result"] == "unreachable" and len(lines) >= 3
    assert all(x["result"] == "good" for x in lines[1:]), lines
    times = [datetime.fromisoformat(x["checked_utc"].replace("Z", "+00:00")) for x in lines]
    gaps = [(b - a).total_seconds() for a, b in zip(times[1:], times[2:], strict=False)]
    assert all(0.9 <= g < 1.6 for g in gaps), gaps
    assert lines[-1]["server"] == peer.address and lines[-1]["stratum"] == 2
    assert all(x["checked_utc"].endswith("Z") for x in lines)
    assert last_check(tmp_path) == lines[-1]  # what `zhichao status` shows
    assert ClockMonitor(_cfg(), Clock(), tmp_path).checks[-1].to_json() == lines[-1]
    # a line torn by a kill is skipped, and the next check starts a line of its own
    with open(tmp_path / "clock" / "checks.jsonl", "a", encoding="utf-8") as f:
        f.write('{"checked_utc": "2026-')
    again = ClockMonitor(_cfg(), Clock(), tmp_path)
    assert again.checks[-1].to_json() == lines[-1]
    again.check_now()
    assert ClockMonitor(_cfg(), Clock(), tmp_path).checks[-1].result == "no_source"


def test_offset_too_big_opens_the_alarm_and_health_degrades(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "station.db")
    try:
        with SntpPeer(offset_s=-0.7) as far:
            monitor = ClockMonitor(_cfg(far.address), Clock(), tmp_path)
            rec = monitor.check_now()
            monitor.sync_alarm(store)
            assert rec.result == "offset_exceeded" and rec.error_bound_ms is not None
            assert abs(rec.offset_ms + 700) <= max(20.0, rec.error_bound_ms)  # type: ignore[operator]
            assert [a["code"] for a in store.active_alarms()] == [CLOCK_ALARM]
            assert store.counts()["alarms_active"] == 1  # what turns /health degraded
            far.offset_s = 0.0
            assert monitor.check_now().good
            monitor.sync_alarm(store)
            assert store.active_alarms() == []
    finally:
        store.close()


def test_hourly_check_on_the_reference_clock(tmp_path: Path) -> None:
    """Due by the reference clock too: with a clock running 3600× faster, a check an hour
    of reference time after the last one is due after one second."""
    clock = SimClock(T0, time.time(), 3600.0)
    monitor = ClockMonitor(ClockSection(), clock, tmp_path)
    assert monitor.due()
    first = monitor.check_now()
    assert first.good and first.source == "sim" and not monitor.due()
    time.sleep(1.05)
    assert monitor.due()
    assert (monitor.check_now().checked_utc - first.checked_utc) >= timedelta(hours=1)


# ---------------------------------------------------------------------------- coverage
def _monitor_with(tmp_path: Path, *checks: tuple[float, str]) -> ClockMonitor:
    """A monitor whose record holds checks at T0 + minutes with results."""
    lines = [json.dumps(CheckRecord(T0 + timedelta(minutes=m), "ntp", "10.0.0.1:123", result,
                                    500.0, offset_ms=3.0 if result == "good" else 900.0,
                                    delay_ms=1.0, stratum=2, error_bound_ms=0.8).to_json())
             for m, result in checks]
    (tmp_path / "clock").mkdir(parents=True, exist_ok=True)
    (tmp_path / "clock" / "checks.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return ClockMonitor(ClockSection(servers=("10.0.0.1",)), Clock(), tmp_path)


def test_which_check_covers_a_passage(tmp_path: Path) -> None:
    m = _monitor_with(tmp_path, (0, "good"), (60, "unreachable"), (120, "good"),
                      (180, "offset_exceeded"), (300, "good"))
    at = lambda minutes: m.covering(T0 + timedelta(minutes=minutes))  # noqa: E731
    assert at(-1).reason == "no_check" and not at(-1).verified
    ok = at(30)
    assert ok.verified and ok.checked_utc == T0 and ok.offset_ms == 3.0 and ok.stratum == 2
    assert reference_zh(ok) == "站内参考时钟（NTP 授时，已核验）"
    assert at(61).reason == "check_failed: unreachable" and "无应答" in at(61).reason_zh
    # after the good check at 120 the next one found the clock off: not covered
    assert at(150).reason == "next_check_failed: offset_exceeded"
    assert "时钟未核验" in reference_zh(at(150))
    assert at(181).reason.startswith("check_failed")
    assert at(310).verified
    assert at(300 + 66).reason.startswith("check_too_old")  # 3600 s + 300 s margin


# ---------------------------------------------------------------------------- gate, package
def _case(folder: Path, clocks: ClockSync) -> CaseInputs:
    folder.mkdir(parents=True, exist_ok=True)
    return replace(CaseInputs.from_json(case_dict(folder)), clocks=clocks)


def test_unverified_clock_goes_to_review_and_the_package_says_so(tmp_path: Path) -> None:
    base = CaseInputs.from_json(case_dict(tmp_path))
    rules = rules_for(base, None)
    assert evaluate(base, rules).status == Status.ENFORCEABLE  # the verified fixture
    t = base.vehicle.time_utc
    offsets = {"WIM-ZJ-0007": 3.0}
    assert base.clocks is not None
    measured = base.clocks.measured_utc
    with SntpPeer(offset_s=0.9) as far, SntpPeer(silent=True) as silent, \
            SntpPeer(offset_s=0.002) as good:
        results = {}
        for name, server in (("far", far), ("silent", silent), ("good", good)):
            folder = tmp_path / name
            m = ClockMonitor(_cfg(server.address), Clock(), folder)
            rec = m.check_now()
            # the check happened now; place it 10 minutes before the (2025) passage
            m.checks[-1] = replace(rec, checked_utc=t - timedelta(minutes=10))
            sync = replace(m.clock_sync(t, offsets), measured_utc=measured)
            results[name] = evaluate(replace(base, clocks=sync), rules), sync
    for name in ("far", "silent"):
        result, sync = results[name]
        assert result.status == Status.MANUAL_REVIEW, name
        reasons = {r.code: r for r in result.reasons}
        assert "clock_not_verified" in reasons
        assert "第四十一条第二款" in reasons["clock_not_verified"].basis_zh
        assert sync.reference_check is not None and not sync.reference_check.verified
        assert sync.reference_zh.startswith("时钟未核验")
    good_result, good_sync = results["good"]
    assert good_result.status == Status.ENFORCEABLE, good_result.reasons
    assert good_sync.reference_zh == "站内参考时钟（NTP 授时，已核验）"

    # the gate checks the claim again: a claim outside its own thresholds is not taken
    check = good_sync.reference_check
    assert check is not None
    for bad in (replace(check, offset_ms=600.0), replace(check, checked_utc=t - timedelta(
            hours=2)), replace(check, checked_utc=t + timedelta(minutes=1))):
        r = evaluate(replace(base, clocks=replace(good_sync, reference_check=bad)), rules)
        assert r.status == Status.MANUAL_REVIEW and "clock_not_verified" in {
            x.code for x in r.reasons}
    # a clock record without a check (an older package, a hand-made case file)
    old = ClockSync("北斗授时", good_sync.measured_utc, offsets)
    r = evaluate(replace(base, clocks=old), rules)
    assert r.status == Status.MANUAL_REVIEW and any(
        x.code == "clock_not_verified" and "no check" in x.detail for x in r.reasons)

    # sealed: the manifest carries the check, the sheet says it in Chinese, it verifies
    _, unverified = results["silent"]
    case = _case(tmp_path / "in", unverified)
    station = Station("S001", "zhichao-station-S001", generate_key())
    log = MerkleLog(tmp_path / "log", origin=station.origin, create=True, fsync=False)
    try:
        res = seal_package(case, tmp_path / "pkg", station=station, log=log,
                           base_dir=tmp_path / "in", renderer=lambda *_: {})
    finally:
        log.close()
    manifest = json.loads((res.directory / "manifest.json").read_text("utf-8"))
    clocks = manifest["case"]["clocks"]
    assert clocks["reference_check"]["verified"] is False
    assert clocks["reference_check"]["reason"] == "check_failed: unreachable"
    assert manifest["case"]["eligibility"]["status"] == "MANUAL_REVIEW"
    assert verify_package(res.directory, key=station.key.public_key(),
                          log_dir=tmp_path / "log").ok
    html = sheet_html(manifest, lambda _name: None).decode()
    assert "时钟未核验" in html and "授时服务器无应答" in html
    manifest["case"]["clocks"] = json.loads(json.dumps(good_sync.to_json()))
    html = sheet_html(manifest, lambda _name: None).decode()
    assert "已核验" in html and "NTP" in html and "北京时间" in html
    manifest["case"]["clocks"].pop("reference_check")  # a package sealed before the check
    assert "未记录" in sheet_html(manifest, lambda _name: None).decode()


def test_clock_config_is_validated(tmp_path: Path) -> None:
    cfg = parse_config({"clock": {"servers": ["127.0.0.1:1234", "ntp.example"],
                                  "check_interval_s": 600.0}}, tmp_path)
    assert cfg.clock.servers == ("127.0.0.1:1234", "ntp.example")
    for bad, key in (({"check_interval_s": 7200.0}, "clock.check_interval_s"),
                     ({"servers": ["host:99999"]}, "clock.servers[0]"),
                     ({"max_offset_ms": 0.0}, "clock.max_offset_ms"),
                     ({"timeout_s": -1.0}, "clock.timeout_s")):
        with pytest.raises(StationConfigError, match=key.replace("[", r"\[")):
            parse_config({"clock": bad}, tmp_path)


def test_evaluate_shows_the_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = case_dict(tmp_path)
    (tmp_path / "ok.json").write_text(json.dumps(case, ensure_ascii=False), "utf-8")
    case["clocks"]["reference_check"] = {
        "verified": False, "source": "ntp", "reason": "check_failed: refused",
        "reason_zh": "通行前最近一次核验未通过：授时服务器拒绝服务（kiss-o'-death）"}
    (tmp_path / "bad.json").write_text(json.dumps(case, ensure_ascii=False), "utf-8")
    assert main(["evaluate", str(tmp_path / "ok.json")]) == 0
    out = capsys.readouterr().out
    assert "ENFORCEABLE" in out and "时钟 clock: 已核验" in out and "北京时间" in out
    assert main(["evaluate", str(tmp_path / "bad.json")]) == 0
    out = capsys.readouterr().out
    assert "MANUAL_REVIEW" in out and "clock_not_verified" in out and "拒绝服务" in out


# ---------------------------------------------------------------------------- a real lane
def _wait(pred: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def clock_of(package_dir: str) -> dict[str, Any]:
    """The clocks record of a sealed package's manifest."""
    manifest = json.loads((Path(package_dir) / "manifest.json").read_text("utf-8"))
    clocks: dict[str, Any] = manifest["case"]["clocks"]
    return clocks


def run_clock_station(tmp_path: Path, clock_toml: str, make_good: Callable[[], None]
                      ) -> tuple[Path, list[tuple[str, str, str]], int]:
    """A ``zhichao run`` station on a ZWR/1 peer whose ``[clock]`` is ``clock_toml`` and
    whose time source fails at first: waits for 3+ sealed cases and the open alarm, calls
    ``make_good`` (the source answers well from now on), waits for the alarm to close and
    a verified package, stops the station. Returns the config path, the sealed cases
    (passage key, package folder, eligibility reasons) and how many were sealed before
    ``make_good``."""
    data = tmp_path / "station"
    heavy = Vehicle(42.5, (7000.0, 20000.0), (5.0,), (26900.0, 27100.0))  # 2 axles, 27 t
    db = data / "station.db"

    def sealed() -> list[tuple[str, str, str]]:
        try:  # the file exists a moment before its tables do
            return [(k, d, r) for k, d, r in db_query(
                db, "SELECT passage_key, package_dir, eligibility_reasons FROM cases "
                    "WHERE status = 'sealed' ORDER BY id")] if db.exists() else []
        except sqlite3.OperationalError:
            return []

    def alarm_active() -> list[tuple[int]]:
        return db_query(db, f"SELECT active FROM alarms WHERE code = '{CLOCK_ALARM}'")

    with ZwrPeer([heavy] * 30, interval_s=0.4) as zwr:
        cfg_path = tmp_path / "station.toml"
        cfg_path.write_text(f"""camera = []
[station]
data_dir = "{data}"
[wim]
url = "{zwr.url}"
[evidence]
render_documents = false
[vision]
read = "none"
[http]
metrics_port = 0
console_port = 0
[clock]
{clock_toml}
""", encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "zhichao", "run", "--config",
                                 str(cfg_path), "--no-view"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert _wait(lambda: len(sealed()) >= 3 and alarm_active() == [(1,)], 60)
            n_unverified = len(sealed())
            make_good()
            assert _wait(lambda: alarm_active() == [(0,)], 20)
            assert _wait(lambda: any(clock_of(d)["reference_check"]["verified"]
                                     for _, d, _ in sealed()), 30)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    cases = sealed()
    for _, package_dir, reasons in cases[:n_unverified]:
        clocks = clock_of(package_dir)
        assert clocks["reference_check"]["verified"] is False, clocks
        assert clocks["reference_zh"].startswith("时钟未核验")
        assert "clock_not_verified" in json.loads(reasons)
    return cfg_path, cases, n_unverified


@pytest.mark.slow
def test_station_without_a_time_source_alarms_and_sends_cases_to_review(
        tmp_path: Path) -> None:
    """A station on a record controller whose NTP server is silent: the alarm opens and
    its cases say 时钟未核验 (gate: clock_not_verified); the server answers again: the
    alarm closes and the next cases carry the good check."""
    data = tmp_path / "station"
    with SntpPeer(silent=True) as ntp:
        def answer() -> None:
            ntp.silent = False

        cfg_path, cases, _n = run_clock_station(
            tmp_path, f'servers = ["{ntp.address}"]\ncheck_interval_s = 2.0\ntimeout_s = 0.5',
            answer)
    verified = [(clock_of(d), json.loads(r)) for _, d, r in cases
                if clock_of(d)["reference_check"]["verified"]]
    assert verified
    for clocks, reasons in verified:
        assert clocks["reference_zh"] == "站内参考时钟（NTP 授时，已核验）"
        assert clocks["reference_check"]["server"] == ntp.address
        assert "clock_not_verified" not in reasons
    checks = [json.loads(x) for x in (data / "clock" / "checks.jsonl").read_text(
        "utf-8").splitlines()]
    assert checks[0]["result"] == "unreachable" and checks[-1]["result"] == "good"
    status = subprocess.run([sys.executable, "-m", "zhichao", "status", "--config",
                             str(cfg_path)], capture_output=True, text=True, timeout=60)
    assert "授时核验" in status.stdout and "核验通过" in status.stdout, status.stdout
