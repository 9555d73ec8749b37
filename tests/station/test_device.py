"""The device record (``[device]`` or ``device.status_file``) and the register's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from zhichao.calibration.legal import Certificate, DeviceLegalStatus
from zhichao.common import format_utc
from zhichao.evidence.inputs import DeviceStatus
from zhichao.station.config import parse_config
from zhichao.station.device import DeviceRegister, device_from_config
from zhichao.station.errors import StationConfigError


def _record(site: str = "SIM-SITE-01", drift_open: bool = False) -> DeviceLegalStatus:
    return DeviceLegalStatus(
        device_id="WIM-9", site_id=site, lane_id="1", installation_type="platform",
        certificates=[Certificate("C-1", "检定机构", datetime(2025, 1, 1, tzinfo=UTC),
                                  datetime(2026, 1, 1, tzinfo=UTC), "5")],
        technical_review_approved=True, technical_review_date=datetime(2024, 12, 1).date(),
        legal_review_approved=True, legal_review_date=datetime(2024, 12, 2).date(),
        drift_alarm_open=drift_open,
        drift_alarm_since_utc=datetime(2025, 6, 1, tzinfo=UTC) if drift_open else None)


def test_status_file_is_the_device_record(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text(json.dumps(_record().to_json()), encoding="utf-8")
    cfg = parse_config({"device": {"status_file": "dev.json"}}, tmp_path)
    device = device_from_config(cfg)
    assert device.device_id == "WIM-9" and device.installation_type == "platform"
    reg = DeviceRegister(cfg, None, None)
    inside = reg.usability("2025-03-01T00:00:00Z")
    assert inside.usable
    after = reg.usability("2026-03-01T00:00:00Z")  # the certificate ran out
    assert not after.usable and [r.code for r in after.reasons] == ["certificate_expired"]
    ev = reg.evidence_json("2025-03-01T00:00:00Z")
    assert ev["certificate_number"] == "C-1" and ev["drift_alarm_open"] is False
    assert DeviceStatus.from_json(ev).accuracy_class == "5"  # the evidence stage reads it


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read"),
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "zhichao.device/0"}), "zhichao.device/1"),
    (json.dumps(_record(site="OTHER").to_json()), "not this station's site"),
])
def test_bad_status_file_names_the_key(tmp_path: Path, content: str | None, problem: str
                                       ) -> None:
    if content is not None:
        (tmp_path / "dev.json").write_text(content, encoding="utf-8")
    with pytest.raises(StationConfigError) as info:
        parse_config({"device": {"status_file": "dev.json"}}, tmp_path)
    assert "device.status_file" in str(info.value) and problem in str(info.value)


def test_an_alarm_open_in_the_register_is_not_closed_by_the_monitor(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text(json.dumps(_record(drift_open=True).to_json()),
                                       encoding="utf-8")
    cfg = parse_config({"device": {"status_file": "dev.json"}}, tmp_path)
    reg = DeviceRegister(cfg, None, None)
    assert not reg.monitor.alarm_open
    assert reg.device_at().drift_alarm_open
    assert reg.usability("2025-05-01T00:00:00Z").usable  # before the alarm's start
    codes = [r.code for r in reg.usability("2025-07-01T00:00:00Z").reasons]
    assert codes == ["drift_alarm_open"]
    assert reg.evidence_json("2025-07-01T00:00:00Z")["drift_alarm_open"] is True


def test_device_section_and_a_new_calibration_profile_reset_the_monitor() -> None:
    cfg = parse_config({"device": {"installation_type": "bending_plate",
                                   "certificate_number": ""}})
    device = device_from_config(cfg)
    assert device.certificates == []  # no number: no certificate, so never usable
    reg = DeviceRegister(cfg, "profile-A", None)
    assert reg.base.calibration_profile_id == "profile-A"
    assert "certificate_missing" in [r.code for r in reg.usability(
        "2026-01-01T00:00:00Z").reasons]
    state = reg.state_json()
    same = DeviceRegister(cfg, "profile-A", state)
    assert same.reset_on_start is None
    moved = DeviceRegister(cfg, "profile-B", state)
    assert moved.reset_on_start is not None and moved.monitor.profile_id == "profile-B"
    assert moved.monitor.history and moved.monitor.history[-1]["reason"] == "calibration"
    with pytest.raises(StationConfigError, match="device.installation_type"):
        parse_config({"device": {"installation_type": "floating"}})


def test_monitor_state_equals_asdict_and_round_trips() -> None:
    import random
    from dataclasses import asdict

    from zhichao.calibration.drift import DriftAlarm, DriftConfig, DriftMonitor, _Chart

    rng = random.Random(2)
    mon = DriftMonitor("1", DriftConfig(baseline_n=30), profile_id="p")
    for name in ("steer", "balance", "row1"):
        mon.charts[name] = _Chart(
            baseline=[rng.random() for _ in range(30)], baseline_gross=[1e4] * 30,
            baseline_class=["6:B"] * 30, mean=0.5, sd=0.1, fits={"6:B": [0.1, 3000.0]},
            recent=[rng.random() for _ in range(12)], recent_gross=[2e4] * 12,
            recent_class=["5:A"] * 12, s_hi=1.5, run_hi=3, n=12)
    mon.alarms.append(DriftAlarm("row1", "2026-01-01T00:00:00Z", 5, 40, "high", 1.1, 0.909,
                                 "漂移"))
    mon.history.append({"reason": "calibration", "time_utc": "x", "profile_id": "p",
                        "closed_alarms": []})
    state = mon.to_state()
    assert state["charts"] == {k: asdict(c) for k, c in mon.charts.items()}
    before = json.dumps(state)
    mon.charts["row1"].recent.append(9.0)  # the state is a copy, not a view
    mon.charts["steer"].fits["6:B"][0] = 7.0
    assert json.dumps(state) == before
    back = DriftMonitor.from_state(json.loads(before))
    assert json.dumps(back.to_state()) == before


def test_live_view_shows_alarms_device_and_upload() -> None:
    import time

    from rich.console import Console

    from zhichao.station.view import render, summary_lines

    health = {
        "station_id": "S", "stream_time_utc": None, "run_passages": 3,
        "counts": {"passages": 3, "overloaded": 1, "sealed": 1, "pending_seal": 0,
                   "outbox_pending": 0, "no_frame": 0, "cases": 1, "gaps": 0},
        "wim": {"connected": True, "errors": 0}, "clock_offsets_ms": {"wim": 1.0},
        "alarms": [{"code": "calibration_drift", "message_zh": "车道 1：漂移，需人工复核"}],
        "device": {"usable_now": False, "reasons": [{"code": "drift_alarm_open",
                                                     "text_zh": "设备漂移报警未关闭"}]},
        "upload": {"center_url": "http://c", "pending": 7, "last_upload_utc": None},
    }
    console = Console(record=True, width=160)
    console.print(render(health, [], time.time()))
    text_out = console.export_text()
    assert "车道 1：漂移，需人工复核" in text_out and "设备漂移报警未关闭" in text_out
    assert "待上传 7" in text_out and "最近成功上传 尚无" in text_out
    lines = "\n".join(summary_lines(health, 1.0))
    assert "calibration_drift" in lines and "待上传 7" in lines
    # a recent passage's time in 北京时间, as the column says; start-up recovery in words
    recent = [{"time_utc": "2026-12-07T19:41:00.323Z", "plate": "浙J12345", "axles": 5,
               "gross_kg": 52000.0, "limit_kg": 43000, "verdict": "overloaded",
               "frame": "linked", "flags": [], "overloaded": True}]
    console = Console(record=True, width=160)
    console.print(render(health, recent, time.time()))
    table = console.export_text()
    assert "时间（北京时间）" in table and "03:41:00.323" in table and "19:41:00" not in table
    lines = "\n".join(summary_lines({**health, "recovery": {"removed_partial": 1}}, 1.0))
    assert "删除未完成的证据包 1" in lines and "removed_partial" not in lines


def test_a_verification_after_a_drift_alarm_closes_it_on_start(tmp_path: Path) -> None:
    from zhichao.calibration.drift import DriftAlarm

    def register(cert_from: datetime) -> DeviceRegister:
        rec = _record()
        rec.certificates = [Certificate("C-1", "检定机构", datetime(2025, 1, 1, tzinfo=UTC),
                                        datetime(2027, 1, 1, tzinfo=UTC), "5"),
                            Certificate("C-2", "检定机构", cert_from,
                                        datetime(2030, 1, 1, tzinfo=UTC), "5")]
        (tmp_path / "dev.json").write_text(json.dumps(rec.to_json()), encoding="utf-8")
        cfg = parse_config({"device": {"status_file": "dev.json"}}, tmp_path)
        first = DeviceRegister(cfg, "profile-A", None)
        first.monitor.alarms.append(DriftAlarm(
            "row1", "2025-06-01T00:00:00.000000Z", 600, 40, "high", 1.04, 0.96, "漂移"))
        return DeviceRegister(cfg, "profile-A", first.state_json())

    before = register(datetime(2025, 5, 1, tzinfo=UTC))  # verified before the alarm
    assert before.reset_on_start is None and before.monitor.alarm_open
    assert "drift_alarm_open" in [r.code for r in before.usability(
        "2025-07-01T00:00:00Z").reasons]
    after = register(datetime(2025, 6, 20, tzinfo=UTC))  # re-verified after it
    assert after.reset_on_start is not None and "C-2" in after.reset_on_start
    assert not after.monitor.alarm_open
    assert after.monitor.history[-1]["reason"] == "verification"
    assert after.monitor.history[-1]["closed_alarms"][0]["statistic"] == "row1"
    # the next start does not reset again (the alarm is closed)
    again = DeviceRegister(parse_config({"device": {"status_file": "dev.json"}}, tmp_path),
                           "profile-A", after.state_json())
    assert again.reset_on_start is None


def _profile(pid: str, created: datetime, days: int = 365) -> Any:
    from zhichao.weighing.calibration_profile import parse_profile

    return parse_profile({
        "format": "zhichao.calibration/1", "profile_id": pid,
        "created_utc": format_utc(created), "valid_from_utc": format_utc(created),
        "valid_until_utc": format_utc(created + timedelta(days=days)),
        "operating_range": {"speed_kmh": [20.0, 80.0], "temperature_c": [0.0, 40.0]}})


def test_the_profile_validity_goes_into_the_device_record(tmp_path: Path) -> None:
    rec = _record()
    rec.certificates[0] = Certificate("C-1", "检定机构", datetime(2025, 1, 1, tzinfo=UTC),
                                      datetime(2027, 1, 1, tzinfo=UTC), "5")
    (tmp_path / "dev.json").write_text(json.dumps(rec.to_json()), encoding="utf-8")
    cfg = parse_config({"device": {"status_file": "dev.json"}}, tmp_path)
    prof = _profile("CAL-A", datetime(2025, 1, 1, tzinfo=UTC), days=30)
    reg = DeviceRegister(cfg, "CAL-A", None, profile=prof)
    assert reg.base.calibration_valid_until_utc == prof.valid_until_utc
    assert "calibration_expired" in [w.code for w in reg.usability(
        "2025-03-01T00:00:00Z").warnings]
    assert "calibration_expired" not in [w.code for w in reg.usability(
        "2025-01-15T00:00:00Z").warnings]


def test_a_drift_alarm_is_closed_only_by_a_later_profile_and_its_interval_stays(
        tmp_path: Path) -> None:
    from zhichao.calibration.drift import DriftAlarm

    rec = _record()
    rec.certificates[0] = Certificate("C-1", "检定机构", datetime(2025, 1, 1, tzinfo=UTC),
                                      datetime(2099, 1, 1, tzinfo=UTC), "5")
    (tmp_path / "dev.json").write_text(json.dumps(rec.to_json()), encoding="utf-8")
    cfg = parse_config({"device": {"status_file": "dev.json"}}, tmp_path)
    old = _profile("CAL-A", datetime(2025, 1, 1, tzinfo=UTC))
    first = DeviceRegister(cfg, "CAL-A", None, profile=old)
    first.monitor.alarms.append(DriftAlarm(
        "steer", "2025-06-01T00:00:00.000000Z", 600, 40, "high", 1.06, 0.943, "漂移",
        since_utc="2025-05-30T00:00:00.000000Z"))
    state = first.state_json()
    inside = "2025-05-31T00:00:00Z"  # drifted, weighed before the alarm was raised
    for pid, prof in (("CAL-A", old), (None, None), ("CAL-OLD", _profile(
            "CAL-OLD", datetime(2024, 6, 1, tzinfo=UTC))), ("CAL-UNDATED", None)):
        reg = DeviceRegister(cfg, pid, state, profile=prof)
        assert reg.monitor.alarm_open and reg.reset_on_start is None, pid
        assert (reg.alarm_kept is not None) == (pid != "CAL-A")
        assert "drift_alarm_open" in [r.code for r in reg.usability(inside).reasons]
        assert reg.usability("2025-05-29T00:00:00Z").usable
    new = _profile("CAL-B", datetime(2025, 6, 10, tzinfo=UTC))
    reg = DeviceRegister(cfg, "CAL-B", state, profile=new)
    assert reg.reset_on_start is not None and not reg.monitor.alarm_open
    # the alarm's interval stays refused after it is closed: a late or replayed passage
    assert [r.code for r in reg.usability(inside).reasons] == ["drift_alarm_interval"]
    assert reg.evidence_json(inside)["drift_alarm_open"] is True
    assert reg.usability("2025-05-29T00:00:00Z").usable
    # ... and across a restart (the monitor's history is its state)
    again = DeviceRegister(cfg, "CAL-B", reg.state_json(), profile=new)
    assert again.reset_on_start is None
    assert not again.usability(inside).usable
    assert again.usability(format_utc(datetime.now(UTC) + timedelta(minutes=1))).usable
