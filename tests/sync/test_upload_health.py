"""Items the center refuses and items that keep failing reach the station's health: stored
alarms (``/health`` degraded, ``zhichao status``), not only a log line."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhichao.evidence.signing import generate_key, public_pem
from zhichao.station.alarms import StageHealth
from zhichao.station.config import StationConfig, parse_config
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import Outbox
from zhichao.station.upload import STALLED_ATTEMPTS, CenterLink, UploadTarget, upload_status
from zhichao.station.view import upload_line
from zhichao.testing.cases import vehicle_dict


class Station:
    def __init__(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        data.mkdir()
        center_pub = tmp_path / "center.pub"
        center = generate_key()
        center_pub.write_bytes(public_pem(center.public_key()))
        self.cfg: StationConfig = parse_config({"station": {
            "station_id": "S001", "data_dir": str(data), "center_url": "http://127.0.0.1:1",
            "center_key_file": str(center_pub)}}, tmp_path)
        self.data = data
        self.store = StationStore(data / "station.db")
        self.outbox = Outbox(data / "station.db")
        self.key = generate_key()
        self.link = CenterLink(self.cfg, tmp_path / "log",
                               UploadTarget("http://127.0.0.1:1", center.public_key()))

    def enqueue(self, n: int) -> list[str]:
        return [self.outbox.enqueue_passage(vehicle_dict(first_sample=i, passage_seq=i),
                                            "S001", self.key)[0] for i in range(n)]

    def alarms(self) -> dict[str, str]:
        return {a["code"]: a["message_zh"] for a in self.store.active_alarms()}

    def judge(self) -> None:
        self.link._judge_backlog(self.store, self.outbox)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    s = Station(tmp_path)
    yield s
    s.outbox.close()
    s.store.close()


def test_refused_items_hold_an_alarm_until_none_is_left(station: Station) -> None:
    a, b, _c = station.enqueue(3)
    station.judge()
    assert "upload_refused" not in station.alarms()
    station.outbox.mark_refused(a, "station.key_mismatch", "证据包签名公钥与中心登记的站点公钥不同")
    station.judge()
    assert "1 条" in station.alarms()["upload_refused"]
    assert "station.key_mismatch" in station.alarms()["upload_refused"]
    assert station.store.counts()["alarms_active"] == 1  # /health: degraded
    station.outbox.mark_refused(b, "passage.signature", "通行记录的站点签名无效")
    station.judge()
    message = station.alarms()["upload_refused"]
    assert "2 条" in message and "passage.signature" in message
    status = station.link.status()
    assert status["refused"] == 2
    assert status["refused_by_code"] == {"passage.signature": 1, "station.key_mismatch": 1}
    up = upload_status(station.cfg, station.data)
    assert up["refused"] == 2 and "被拒收 2 条" in upload_line(up)
    assert "被拒收 2 条" in upload_line(status)
    station.judge()  # the same facts: the same alarm row
    assert len([r for r in station.store.db.execute(
        "SELECT id FROM alarms WHERE code = 'upload_refused' AND active = 1")]) == 1
    assert station.outbox.retry_refused(a) and station.outbox.retry_refused(b)
    station.judge()
    assert "upload_refused" not in station.alarms()


def test_items_failing_for_long_hold_an_alarm(station: Station) -> None:
    a, b = station.enqueue(2)
    for _ in range(STALLED_ATTEMPTS):
        station.outbox.mark_failed(a, "HTTP 413: too large", 0.0)
    station.judge()
    assert "upload_stalled" in station.alarms()
    assert station.link.status()["stalled"] == 1
    station.outbox.mark_done(a, "r", "s")
    station.judge()
    assert "upload_stalled" not in station.alarms()
    with sqlite3.connect(station.data / "station.db") as con:  # queued two hours ago
        con.execute("UPDATE outbox SET enqueued_utc = '2020-01-01T00:00:00.000000Z' "
                    "WHERE item_sha256 = ?", (b,))
    station.judge()
    assert "积压超过" in station.alarms()["upload_stalled"]


def test_a_round_of_refusals_is_not_a_delivery(station: Station) -> None:
    stages = StageHealth(station.store)
    zero = {"accepted": 0, "duplicates": 0, "refused": 0, "failures": 0,
            "center_failures": 0}
    station.link.sync_pending = 5
    for _ in range(5):
        station.link._judge_round(stages, zero, {**zero, "failures": 1})
    assert "upload_failing" in station.alarms()
    station.link._judge_round(stages, zero, {**zero, "refused": 3, "failures": 1})
    assert "upload_failing" in station.alarms()
    station.link._judge_round(stages, zero, {**zero, "accepted": 1})
    assert "upload_failing" not in station.alarms()
