"""Station retention (个人信息保护法 Art. 19): a real station store with passages older and
newer than the period, a sealed and an unsealed case, a static re-weighing link, outbox
items delivered, pending and refused, frame files on disk → exactly the right files and
plates removed, nothing of a case touched (its sealed package still verifies), one audit
record per run that removed anything, idempotent, crash-safe, an alarm after two failed
runs, the configuration and the command line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.station.sntp_peer import SntpPeer
from zhichao.cli import main
from zhichao.devices.data import WeightReading
from zhichao.evidence.inputs import ClockSync, ImageRef, PlateResult
from zhichao.evidence.verify import verify_package
from zhichao.station.alarms import STAGE_ALARMS, StageHealth
from zhichao.station.clock import Clock
from zhichao.station.clockcheck import CheckRecord, ClockMonitor
from zhichao.station.config import ClockSection, StationConfig, load_config, parse_config
from zhichao.station.errors import RetentionError, StationConfigError
from zhichao.station.retention import BATCH_PASSAGES, Retention, RetentionStage
from zhichao.station.reweigh_cli import RefusedError, link_reading
from zhichao.station.runtime import Station
from zhichao.station.sealing import CaseMaterial, Sealer, material_to_json
from zhichao.station.static_scale import ReadingStore, SettledReading
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import Outbox, insert_passage
from zhichao.testing.cases import photo, vehicle_dict

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
NEW = NOW - timedelta(days=10)
ROLES = (("CAM-FRONT-1", "front"), ("CAM-SIDE-1", "side"))


def _t(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _config(tmp: Path, extra: str = "") -> StationConfig:
    path = tmp / "station.toml"
    path.write_text(f"""
[station]
data_dir = "{tmp / 'data'}"
[evidence]
render_documents = false
[http]
metrics_port = 0
console_port = 0
{extra}
""", encoding="utf-8")
    return load_config(path)


@dataclass
class Lane:
    """A station data folder filled as the pipeline (and an officer) would have left it."""

    cfg: StationConfig
    store: StationStore
    sealer: Sealer
    n: int = 0
    sha: dict[str, str] = field(default_factory=dict)  # passage key → outbox item

    @property
    def frames(self) -> Path:
        return self.cfg.data_dir / "frames"

    def frame_dir(self, key: str, when: datetime) -> Path:
        return self.frames / when.strftime("%Y%m%d") / key

    def add(self, when: datetime, plate: str | None, *, outbox: str | None = "done",
            case: str | None = None, n_frames: int = 2, **record_extra: Any) -> str:
        """A passage with ``n_frames`` frame files; its record in the outbox in state
        ``outbox`` (None: not in the outbox, a version-2 station's row); ``case``:
        "sealed" (its package sealed with its frames) or "pending"."""
        self.n += 1
        when += timedelta(milliseconds=self.n)  # one lane: no two vehicles at one time
        key = f"ZJ-G60-K123-2-{1000 * self.n}"
        record = vehicle_dict(time_utc=_t(when), first_sample=1000 * self.n,
                              last_sample=1000 * self.n + 500, **record_extra)
        folder = self.frame_dir(key, when)
        folder.mkdir(parents=True, exist_ok=True)
        frames = []
        for cam, role in ROLES[:n_frames]:
            name = f"{cam}-{when:%Y%m%dT%H%M%S%f}Z-{self.n}.jpg"
            photo(folder / name, f"{role} {plate}", (120, 40, 40))
            frames.append({"camera_id": cam, "role": role, "camera_time_utc": _t(when),
                           "capture_utc": _t(when), "path": str(folder / name),
                           "spool_path": str(self.cfg.data_dir / "spool" / role / name)})
        from zhichao.station.store import PassageRow

        row = PassageRow(key, record["site_id"], "2", record["time_utc"], 1000 * self.n,
                         1000 * self.n + 500, 6, record["gross_weight_kg"],
                         record["vehicle_class"], record["limit_kg"], record["verdict"],
                         record["overloaded"], [], record, "linked", frames, plate,
                         "yellow" if plate else None, 0.97, True, [],
                         plate_record=None if not plate else {
                             "reader": None, "alternatives": [],
                             "reads": [{"camera": "CAM-FRONT-1", "text": plate,
                                        "box_px": [10.0, 20.0, 170.0, 70.0]}]})
        with self.store.transaction() as con:
            self.store.insert_passage(con, row)
            if outbox is not None:
                self.sha[key] = insert_passage(con, record, self.cfg.station.station_id,
                                               self.sealer.key)[0]
            if case is not None:
                m = CaseMaterial(key, record, PlateResult(plate or "", "黄", 0.98, True),
                                 tuple(ImageRef(f["path"], f["role"], when, f["camera_id"])
                                       for f in frames),
                                 ClockSync("北斗授时", when, {"WIM": 1.0}), None)
                self.store.insert_case(con, key, material_to_json(m))
        if outbox in ("done", "refused"):
            with Outbox(self.cfg.data_dir / "station.db") as box:
                if outbox == "done":
                    box.mark_done(self.sha[key], "cmVjZWlwdA==", "c2ln")
                else:
                    box.mark_refused(self.sha[key], "bad_record", "记录被拒收")
        if case == "sealed":
            res = self.sealer.seal(m)
            with self.store.transaction() as con:
                self.store.mark_sealed(con, key, package_id=res.package_id,
                                       package_dir=str(res.directory),
                                       manifest_sha256=res.manifest_sha256,
                                       log_index=res.log_index,
                                       eligibility=str(res.eligibility.status), reasons=[])
            (self.cfg.data_dir / "clips").mkdir(exist_ok=True)
            (self.cfg.data_dir / "clips" / f"{key}-CAM-FRONT-1.mp4").write_bytes(b"clip")
        return key

    def link_reweigh(self, key: str, when: datetime) -> None:
        readings = ReadingStore(self.cfg.data_dir / "station.db")
        rid = readings.add(SettledReading(WeightReading(
            58000.0, True, station_time_utc=when + timedelta(minutes=20)), (), "device"),
            "toledo")
        assert readings.link(rid, key, "执法员 张三")
        readings.close()

    def row(self, key: str) -> dict[str, Any]:
        row = self.store.passage(key)
        assert row is not None
        return dict(row)

    def unlinked(self, name_time: datetime, mtime: datetime) -> Path:
        folder = self.frames / "unlinked"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"CAM-FRONT-1-{name_time:%Y%m%dT%H%M%S%f}Z-{self.n}.jpg"
        self.n += 1
        photo(path, "unlinked", (10, 10, 10))
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
        return path




def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _runs(store: StationStore) -> list[dict[str, Any]]:
    return store.retention_runs(100)


def test_exactly_the_expired_non_case_passages_lose_plate_and_frames(lane: Lane) -> None:
    gone = lane.add(OLD, "浙A11111", plate_text="浙A11111")  # delivered: purged
    legacy = lane.add(OLD - timedelta(hours=3), "浙A22222", outbox=None)  # never queued
    pending = lane.add(OLD, "浙A33333", outbox="pending")  # held: not delivered
    refused = lane.add(OLD, "浙A44444", outbox="refused")  # held: a human must look
    sealed = lane.add(OLD, "浙A55555", case="sealed")
    unsealed = lane.add(OLD, "浙A66666", case="pending")
    reweighed = lane.add(OLD, "浙A77777")
    lane.link_reweigh(reweighed, OLD)
    recent = lane.add(NEW, "浙A88888")
    old_unlinked = lane.unlinked(OLD, OLD)
    late_arrival = lane.unlinked(OLD, NEW)  # camera time old, arrived recently: kept
    new_unlinked = lane.unlinked(NEW, NEW)
    kept_keys = (pending, refused, sealed, unsealed, reweighed, recent)
    before = {k: lane.row(k) for k in (*kept_keys, gone, legacy)}
    kept_frames = set().union(*(_files(lane.frame_dir(k, OLD)) for k in kept_keys[:-1]),
                              _files(lane.frame_dir(recent, NEW)))
    evidence_before = {p: p.read_bytes() for p in _files(lane.cfg.data_dir / "evidence")}
    package = lane.store.cases_overview()
    sealed_dir = Path(next(r["package_dir"] for r in package if r["passage_key"] == sealed))

    run = Retention(lane.cfg, lane.store).run(NOW)

    assert (run.passages_purged, run.frames_removed, run.unlinked_frames_deleted,
            run.held_undelivered) == (2, 4, 1, 2)
    assert run.cutoff_utc == _t(NOW - timedelta(days=30))
    for key, when in ((gone, OLD), (legacy, OLD - timedelta(hours=3))):
        row = lane.row(key)
        assert row["plate"] is None and row["plate_colour"] is None
        assert row["plate_record"] is None  # its reads hold the plate text
        assert json.loads(row["frames"]) == []
        assert row["purged_utc"] and row["purge_started_utc"]
        assert not lane.frame_dir(key, when).exists()
        record = json.loads(row["record"])
        assert "plate_text" not in record  # a plate in the record goes too
        # the facts statistics need stay
        kept = ("gross_weight_kg", "verdict", "vehicle_class", "time_utc", "axle_count",
                "limit_kg", "flags", "frame_status", "plate_confidence", "first_sample")
        assert {k: row[k] for k in kept} == {k: before[key][k] for k in kept}
        assert row["gross_weight_kg"] == 62000.0 and row["frame_status"] == "linked"
        assert record == {k: v for k, v in json.loads(before[key]["record"]).items()
                          if k != "plate_text"}
    for key in kept_keys:
        assert lane.row(key) == before[key]
    assert kept_frames <= _files(lane.frames)
    assert not old_unlinked.exists() and late_arrival.exists() and new_unlinked.exists()
    # nothing of a case: its frames, clips, sealed package and the evidence log
    assert (lane.cfg.data_dir / "clips" / f"{sealed}-CAM-FRONT-1.mp4").exists()
    assert {p: p.read_bytes() for p in _files(lane.cfg.data_dir / "evidence")} == \
        evidence_before
    assert verify_package(sealed_dir, key=lane.sealer.key.public_key(),
                          log_dir=lane.sealer.log.directory).ok
    # the audit record, durable in station.db
    (audit,) = _runs(lane.store)
    assert audit["passages_purged"] == 2 and audit["frames_removed"] == 4
    assert audit["unlinked_frames_deleted"] == 1 and audit["held_undelivered"] == 2
    assert audit["cutoff_utc"] == run.cutoff_utc and audit["passage_days"] == 30
    assert "个人信息保护法" in audit["source_zh"] and audit["trigger"] == "station"
    assert lane.store.counts()["purged"] == 2


def test_a_second_run_changes_nothing_and_a_delivered_record_is_purged_later(
        lane: Lane) -> None:
    gone = lane.add(OLD, "浙A11111")
    held = lane.add(OLD, "浙A33333", outbox="pending")
    retention = Retention(lane.cfg, lane.store)
    assert retention.run(NOW).passages_purged == 1
    purged_row = lane.row(gone)
    again = retention.run(NOW + timedelta(minutes=5))
    assert (again.passages_purged, again.unlinked_frames_deleted, again.held_undelivered) \
        == (0, 0, 1)
    assert lane.row(gone) == purged_row
    assert len(_runs(lane.store)) == 1  # a run that removed nothing leaves no record
    with Outbox(lane.cfg.data_dir / "station.db") as box:  # the center took it
        box.mark_done(lane.sha[held], "cmVjZWlwdA==", "c2ln")
    third = retention.run(NOW + timedelta(hours=1))
    assert (third.passages_purged, third.held_undelivered) == (1, 0)
    assert lane.row(held)["plate"] is None
    assert [r["passages_purged"] for r in _runs(lane.store)] == [1, 1]


def test_the_period_is_configurable_and_a_dry_run_changes_nothing(lane: Lane) -> None:
    key = lane.add(NEW, "浙A11111")
    dry = Retention(lane.cfg, lane.store, days=7).run(NOW, dry_run=True)
    assert dry.dry_run and dry.passages_purged == 1 and dry.frames_removed == 0
    assert lane.row(key)["plate"] == "浙A11111" and _files(lane.frame_dir(key, NEW))
    assert "浙A11111" in lane.row(key)["plate_record"]  # kept with the plate
    assert _runs(lane.store) == []
    assert Retention(lane.cfg, lane.store).run(NOW).passages_purged == 0  # 30 days
    assert Retention(lane.cfg, lane.store, days=7).run(NOW).passages_purged == 1
    with pytest.raises(RetentionError):
        Retention(lane.cfg, lane.store, days=0)


def test_a_passage_being_purged_can_no_longer_be_linked(lane: Lane) -> None:
    key = lane.add(OLD, "浙A11111")
    readings = ReadingStore(lane.cfg.data_dir / "station.db")
    rid = readings.add(SettledReading(WeightReading(58000.0, True, station_time_utc=OLD),
                                      (), "device"), "toledo")
    with lane.store.transaction() as con:  # step 1 of a run (a kill came after it)
        assert lane.store.start_purge(con, _t(NOW - timedelta(days=30)), 10, _t(NOW)) == 1
    assert not readings.link(rid, key, "执法员 张三")  # the statement itself refuses
    with pytest.raises(RefusedError, match="保存期限"):
        link_reading(lane.cfg, "执法员 张三", passage_key=key, reading_id=rid)
    assert readings.get(rid)["status"] == "free"  # type: ignore[index]
    readings.close()


def test_a_kill_between_deleting_files_and_marking_leaves_the_row_unpurged(
        lane: Lane, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [lane.add(OLD, f"浙A1111{i}") for i in range(3)]

    def killed(*_a: Any, **_k: Any) -> bool:
        raise KeyboardInterrupt  # SIGINT-like: the transaction is never committed

    monkeypatch.setattr(StationStore, "mark_purged", killed)
    with pytest.raises(KeyboardInterrupt):
        Retention(lane.cfg, lane.store).run(NOW)
    monkeypatch.undo()
    for key in keys:  # files gone, but the row does not claim "purged"
        row = lane.row(key)
        assert not lane.frame_dir(key, OLD).exists()
        assert row["purged_utc"] is None and row["purge_started_utc"] is not None
    assert _runs(lane.store) == []
    run = Retention(lane.cfg, lane.store).run(NOW + timedelta(minutes=1))
    assert run.passages_purged == 3 and run.frames_removed == 6
    assert all(lane.row(k)["plate"] is None for k in keys)


def test_a_kill_while_deleting_files_is_finished_by_the_next_run(
        lane: Lane, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [lane.add(OLD, f"浙A2222{i}") for i in range(3)]
    real = Retention._delete_files
    done: list[str] = []

    def dies_after_one(self: Retention, row: dict[str, Any]) -> int:
        if done:
            raise KeyboardInterrupt
        done.append(row["passage_key"])
        return real(self, row)

    monkeypatch.setattr(Retention, "_delete_files", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        Retention(lane.cfg, lane.store).run(NOW)
    monkeypatch.undo()
    for key in keys:
        row = lane.row(key)
        assert row["purged_utc"] is None and row["plate"] is not None
        assert lane.frame_dir(key, OLD).exists() == (key not in done)
    run = Retention(lane.cfg, lane.store).run(NOW)
    assert run.passages_purged == 3
    assert not any(lane.frame_dir(k, OLD).exists() for k in keys)


@pytest.mark.slow  # real processes killed at chosen moments (about 20 s)
def test_a_real_kill_never_leaves_a_purged_row_with_files(lane: Lane) -> None:
    """``zhichao retention station`` killed (SIGKILL) at different moments of a run over
    two batches of passages — as soon as it marked a batch, once the first passage's files
    went, a little later —: whatever was committed, no row says purged while a frame of
    it is on disk, and the next run finishes the rest."""
    import signal
    import subprocess
    import sys
    import time

    keys = [lane.add(OLD + timedelta(seconds=i), f"浙B{i:05d}") for i in range(600)]
    folders = {k: lane.frame_dir(k, OLD + timedelta(seconds=i)) for i, k in enumerate(keys)}
    cmd = [sys.executable, "-m", "zhichao", "retention", "station", "--config",
           str(Path(lane.cfg.base_dir) / "station.toml")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    seen: list[tuple[int, int]] = []

    def state() -> tuple[int, int]:
        started, purged = lane.store.db.execute(
            "SELECT COUNT(purge_started_utc), COUNT(purged_utc) FROM passages").fetchone()
        return int(started), int(purged)

    def files_going() -> bool:  # more folders gone than passages purged
        return sum(not f.exists() for f in folders.values()) > state()[1]

    for moment, extra_s in (("marked", 0.0), ("files", 0.0), ("files", 0.01),
                            ("purged", 0.0)):
        before = state()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            now = state()
            if (now[0] > before[0] if moment == "marked" else now[1] > before[1]
                    if moment == "purged" else files_going()):
                break
            time.sleep(0.002)
        time.sleep(extra_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(state())
        for key in keys:
            row = lane.row(key)
            if row["purged_utc"] is not None:
                assert row["plate"] is None and not folders[key].exists()
            else:
                assert row["plate"] is not None
    # some kill came in the middle: marked but not purged
    assert any(started > purged for started, purged in seen), seen
    Retention(lane.cfg, lane.store).run_all()
    assert all(lane.row(k)["purged_utc"] is not None for k in keys)
    assert lane.store.counts()["purged"] == 600
    assert not [p for p in _files(lane.frames) if "unlinked" not in p.parts]


def test_two_failed_runs_open_an_alarm_closed_by_the_next_good_run(lane: Lane) -> None:
    key = lane.add(OLD, "浙A11111")
    frame = next(iter(_files(lane.frame_dir(key, OLD))))
    frame.unlink()
    (frame / "x").mkdir(parents=True)  # a frame that cannot be deleted (a directory)
    stages = StageHealth(lane.store)
    stage = RetentionStage(lane.cfg, lane.store, stages)
    code = STAGE_ALARMS["retention"].code
    assert stage.step(0.0) is None
    assert code not in {a["code"] for a in lane.store.active_alarms()}
    assert stage.step(10.0) is None  # not due yet: the retry waits
    assert stage.step(stage.next_s) is None  # the second failure in a row
    alarm = next(a for a in lane.store.active_alarms() if a["code"] == code)
    assert "个人信息" in alarm["message_zh"] and "2 consecutive" in alarm["detail"]
    row = lane.row(key)
    assert row["purged_utc"] is None and row["plate"] == "浙A11111"
    shutil.rmtree(frame)
    t = stage.next_s
    run = stage.step(t)
    assert run is not None and run.passages_purged == 1
    assert code not in {a["code"] for a in lane.store.active_alarms()}
    assert stage.next_s == t + lane.cfg.retention.check_interval_s  # an interval later


def test_the_running_station_runs_retention_only_while_its_clock_is_verified(
        tmp_path: Path) -> None:
    """A real lane: "now" is the system clock, so nothing is deleted before a check of the
    time source made by this run is good — a failed check purges nothing, says why in
    health and is no failure of the stage; after a good check the passage is purged."""
    with SntpPeer(silent=True) as peer:
        cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                            "vision": {"read": "none"}, "retention": {"passage_days": 5},
                            "clock": {"servers": [peer.address], "timeout_s": 0.3},
                            "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)
        store = StationStore(cfg.data_dir / "station.db")
        sealer = Sealer(cfg)
        lane = Lane(cfg, store, sealer)
        key = lane.add(datetime.now(UTC) - timedelta(days=6), "浙A11111")
        sealer.close()
        store.close()
        st = Station(cfg)
        try:
            assert st.retention.step() is None  # no check yet in this run
            assert st.retention.status()["waiting"].startswith(  # type: ignore[index]
                "clock_unverified: no_check")
            assert not st.clock_check.check_now().good  # the server is silent
            assert st.retention.step() is None
            h = st.health()
            assert "时钟未核验，个人信息清理暂停" in h["retention"]["waiting_zh"], h["retention"]
            assert "unreachable" in h["retention"]["waiting"]
            assert st.retention.next_s == 0.0  # no run was tried: no failure, no retry wait
            assert STAGE_ALARMS["retention"].code not in {
                a["code"] for a in st.store.active_alarms()}
            assert st.store.passage(key)["plate"] == "浙A11111"  # type: ignore[index]
            assert st.store.retention_runs() == []
            peer.silent = False
            assert st.clock_check.check_now().good
            run = st.retention.step()
            assert run is not None and run.passages_purged == 1
            assert st.retention.next_s > 0 and st.retention.step() is None  # an interval later
            h = st.health()
            assert h["retention"]["passages_purged"] == 1 and h["counts"]["purged"] == 1
            assert "waiting" not in h["retention"]
            assert st.store.passage(key)["plate"] is None  # type: ignore[index]
        finally:
            st.close()


def test_the_default_real_lane_never_purges_without_a_time_source(tmp_path: Path) -> None:
    """The embedded defaults name no NTP server nor GNSS receiver: the check fails
    (``no_source``) and retention waits, saying so."""
    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "vision": {"read": "none"},
                        "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    key = Lane(cfg, store, sealer).add(datetime.now(UTC) - timedelta(days=40), "浙A11111")
    sealer.close()
    store.close()
    st = Station(cfg)
    try:
        assert st.clock_check.check_now().result == "no_source"
        assert st.retention.step() is None
        assert "no_source" in st.health()["retention"]["waiting"]
        assert st.store.passage(key)["plate"] == "浙A11111"  # type: ignore[index]
    finally:
        st.close()


def test_waiting_for_the_first_clock_check_is_said_not_warned(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every start waits for its first clock check (``no_check``) for a moment: that is
    logged at info; a check that fails (``no_source``) is a warning."""
    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "vision": {"read": "none"},
                        "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)
    st = Station(cfg)
    try:
        def waits() -> list[tuple[int, str]]:
            return [(r.levelno, str(getattr(r, "fields", {}).get("reason")))
                    for r in caplog.records if r.getMessage() == "retention waits"]

        with caplog.at_level(logging.INFO, logger="zhichao.station"):
            assert st.retention.step() is None
            assert waits() == [(logging.INFO, "clock_unverified: no_check")]
            assert st.clock_check.check_now().result == "no_source"
            assert st.retention.step() is None
            assert waits()[1:] == [(logging.WARNING, "clock_unverified: check_failed: no_source")]
    finally:
        st.close()


class _SteppedClock(Clock):
    """A system clock that can be set forward (a bad RTC, NTP misconfigured, GNSS week
    rollover)."""

    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


def test_a_forward_clock_jump_stops_retention_until_a_check_after_it(lane: Lane,
                                                                     tmp_path: Path) -> None:
    """Inside one process: the reference clock 60 days ahead of the monotonic clock since
    the last run → no run (the passage of 3 days ago keeps its plate), until a check of
    the time source made after the jump is good."""
    recent = lane.add(NOW - timedelta(days=3), "浙A22222")
    clock = _SteppedClock(NOW)
    with SntpPeer() as peer:
        checks = ClockMonitor(ClockSection(servers=(peer.address,), timeout_s=0.5), clock,
                              tmp_path / "clockcheck")
        assert checks.check_now().good
        stage = RetentionStage(lane.cfg, lane.store, StageHealth(lane.store), clock, checks)
        run = stage.step(1000.0)
        assert run is not None and run.passages_purged == 0
        clock.t = NOW + timedelta(days=60)  # 60 days ahead, 1 h of monotonic time later
        assert stage.step(1000.0 + 3600.0) is None
        status = stage.status()
        assert status is not None and status["waiting"].startswith("clock_jump")
        assert "跳变" in status["waiting_zh"]
        row = lane.row(recent)
        assert row["plate"] == "浙A22222" and row["purge_started_utc"] is None
        assert stage.step(1000.0 + 7200.0) is None  # still held: the last check is older
        assert checks.check_now().good  # a check after the jump (the source agrees)
        run = stage.step(1000.0 + 7300.0)
    assert run is not None and run.passages_purged == 1
    assert "waiting" not in (stage.status() or {})


def test_a_clock_running_with_the_monotonic_one_is_no_jump(lane: Lane) -> None:
    clock = _SteppedClock(NOW)
    stage = RetentionStage(lane.cfg, lane.store, StageHealth(lane.store), clock)
    assert stage.step(0.0) is not None
    clock.t = NOW + timedelta(seconds=lane.cfg.retention.check_interval_s + 3500)
    assert stage.step(lane.cfg.retention.check_interval_s) is not None  # < 1 h ahead


def test_the_running_station_judges_age_by_its_reference_clock(lane: Lane,
                                                                tmp_path: Path) -> None:
    """A simulated lane dated in the past (``simulation.start_utc``) is not purged while it
    runs: "now" is the simulator's clock, and nothing runs before it is published."""
    import time

    from zhichao.station.clock import PublishedSimClock, SimClock

    key = lane.add(OLD, "浙A11111")
    sim = SimClock(OLD + timedelta(hours=1), time.time(), 1.0)
    stage = RetentionStage(lane.cfg, lane.store, StageHealth(lane.store), sim)
    run = stage.step()
    assert run is not None and run.passages_purged == 0
    assert run.cutoff_utc < _t(OLD)  # a month before the simulated now
    unpublished = PublishedSimClock(tmp_path / "no-devices.json")
    assert RetentionStage(lane.cfg, lane.store, StageHealth(lane.store),
                          unpublished).step() is None
    assert lane.row(key)["plate"] == "浙A11111"


@pytest.mark.slow  # a simulated lane for a few vehicles (about 30 s)
def test_a_running_lane_purges_an_expired_passage_and_keeps_its_own(tmp_path: Path) -> None:
    """``zhichao run`` on a data folder holding a passage 40 days old: the station's loop
    purges it at start (audit row ``station``) and keeps the passages it weighs now."""
    import subprocess
    import sys

    from tests.station.conftest import write_config

    cfg = write_config(tmp_path / "station.toml", tmp_path / "data", vehicles=4)
    store = StationStore(cfg.data_dir / "station.db")
    sealer = Sealer(cfg)
    seeded = Lane(cfg, store, sealer)
    old = seeded.add(datetime.now(UTC) - timedelta(days=40), "浙A11111")
    sealer.close()
    store.close()
    res = subprocess.run([sys.executable, "-m", "zhichao", "run", "--config",
                          str(tmp_path / "station.toml"), "--no-view"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ,
                              "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert res.returncode == 0, res.stderr[-3000:]
    store = StationStore(cfg.data_dir / "station.db")
    try:
        row = store.passage(old)
        assert row is not None and row["plate"] is None and row["purged_utc"]
        assert [r["trigger"] for r in store.retention_runs()] == ["station"]
        fresh = [dict(r) for r in store.all_passages() if r["passage_key"] != old]
        assert len(fresh) >= 3 and all(r["purged_utc"] is None for r in fresh)
        listed = [Path(f["path"]) for r in fresh for f in json.loads(r["frames"])]
        assert listed and all(f.is_file() for f in listed)  # its own frames stay
    finally:
        store.close()


def _as_version_3(db: Path) -> None:
    """Turn a station database back into what version 3 left (no retention columns, and no
    plate_record: version 5's)."""
    con = sqlite3.connect(db)
    con.execute("DROP INDEX passages_unpurged")
    con.execute("DROP INDEX outbox_label")
    con.execute("ALTER TABLE passages DROP COLUMN purge_started_utc")
    con.execute("ALTER TABLE passages DROP COLUMN purged_utc")
    con.execute("ALTER TABLE passages DROP COLUMN plate_record")
    con.execute("DROP TABLE retention_runs")
    con.execute("ALTER TABLE cases DROP COLUMN unusable_files")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.commit()
    con.close()


def test_an_older_database_gets_the_new_columns(lane: Lane) -> None:
    key = lane.add(OLD, "浙A11111")
    lane.store.close()
    _as_version_3(lane.cfg.data_dir / "station.db")
    old = StationStore(lane.cfg.data_dir / "station.db", readonly=True)
    assert old.counts()["purged"] == 0 and old.retention_runs() == []
    old.close()
    lane.store = StationStore(lane.cfg.data_dir / "station.db")
    assert lane.store.get_meta("schema_version") == "6"
    assert lane.row(key)["plate_record"] is None  # the column is there, empty for old rows
    assert Retention(lane.cfg, lane.store).run(NOW).passages_purged == 1
    assert lane.row(key)["plate"] is None


def test_batches_bound_one_step_and_run_all_finishes(lane: Lane,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import zhichao.station.retention as retention_module

    monkeypatch.setattr(retention_module, "BATCH_PASSAGES", 2)
    keys = [lane.add(OLD, f"浙A3333{i}", n_frames=1) for i in range(5)]
    first = Retention(lane.cfg, lane.store).run(NOW)
    assert first.passages_purged == 2 and first.more
    stage = RetentionStage(lane.cfg, lane.store, StageHealth(lane.store))
    run = stage.step(100.0)  # in the station: the next batch a pause later, not at once
    assert run is not None and run.more
    assert stage.next_s == 100.0 + retention_module.BACKLOG_PAUSE_S
    total = Retention(lane.cfg, lane.store).run_all(NOW)
    assert total.passages_purged == 1 and not total.more
    assert all(lane.row(k)["plate"] is None for k in keys)
    assert BATCH_PASSAGES == 100


def test_only_files_inside_the_frames_and_spool_folders_are_deleted(lane: Lane,
                                                                      tmp_path: Path) -> None:
    """A frame list naming a file elsewhere (a hand-edited row, a moved folder) never makes
    retention delete outside ``<data>/frames`` and the camera spools."""
    key = lane.add(OLD, "浙A11111", n_frames=1)
    outside = tmp_path / "elsewhere" / key / "keep.jpg"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"not the station's")
    spooled = lane.cfg.data_dir / "spool" / "front" / "never-moved.jpg"
    spooled.parent.mkdir(parents=True, exist_ok=True)
    spooled.write_bytes(b"frame")
    row = lane.row(key)
    frames = json.loads(row["frames"]) + [
        {"camera_id": "X", "role": "side", "path": str(outside), "spool_path": str(outside)},
        {"camera_id": "Y", "role": "rear", "path": str(lane.frames / ".." / ".." / "k.jpg"),
         "spool_path": str(spooled)}]
    lane.store.db.execute("UPDATE passages SET frames = ? WHERE passage_key = ?",
                          (json.dumps(frames), key))
    (tmp_path / "k.jpg").write_bytes(b"outside too")
    run = Retention(lane.cfg, lane.store).run(NOW)
    assert run.passages_purged == 1 and run.frames_removed == 3
    assert outside.exists() and (tmp_path / "k.jpg").exists()
    assert not spooled.exists()  # the passage's own frame, left in a camera spool
    assert not lane.frame_dir(key, OLD).exists()


def test_a_station_only_install_gets_the_retention_command() -> None:
    import argparse

    from zhichao.station import cli as station_cli

    parser = argparse.ArgumentParser(prog="zhichao")
    station_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["retention", "station", "--dry-run", "--days", "7"])
    assert args.dry_run and args.days == 7 and args.handler is not None


# ---------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(("table", "message"), [
    ({"passage_days": 0}, "retention.passage_days: must be 1 … 3650"),
    ({"passage_days": 4000}, "retention.passage_days: must be 1 … 3650"),
    ({"passage_days": "30"}, "retention.passage_days: expected an integer"),
    ({"check_interval_s": 5}, "retention.check_interval_s: must be within 60 … 86400"),
    ({"keep_days": 3}, "retention.keep_days: unknown key"),
])
def test_bad_retention_settings_are_refused_by_name(tmp_path: Path, table: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(StationConfigError, match=message):
        parse_config({"retention": table}, tmp_path)


def test_the_default_is_30_days_checked_hourly(tmp_path: Path) -> None:
    cfg = parse_config({}, tmp_path)
    assert (cfg.retention.passage_days, cfg.retention.check_interval_s) == (30, 3600.0)
    example = load_config(Path(__file__).resolve().parents[2] / "zhichao" / "station"
                          / "station.example.toml")
    assert example.retention == cfg.retention


def test_a_period_shorter_than_a_reweighing_window_is_refused(tmp_path: Path) -> None:
    scale = {"url": "toledo+tcp://127.0.0.1:1", "scale_id": "S", "certificate_number": "C",
             "certificate_issuer": "I", "certificate_valid_until": "2030-01-01T00:00:00Z",
             "max_delay_s": 86400.0}
    with pytest.raises(StationConfigError, match="retention.passage_days: 1 days leaves"):
        parse_config({"static_scale": scale, "retention": {"passage_days": 1}}, tmp_path)


# ---------------------------------------------------------------------------- the command
def test_the_command_dry_runs_runs_and_refuses_bad_input(
        lane: Lane, capsys: pytest.CaptureFixture[str]) -> None:
    key = lane.add(datetime.now(UTC) - timedelta(days=31), "浙A11111")
    lane.add(datetime.now(UTC) - timedelta(days=31), "浙A22222", outbox="pending")
    toml = str(Path(lane.cfg.base_dir) / "station.toml")
    assert main(["retention", "station", "--config", toml, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "试运行" in out and "非案件通行 1 条" in out and "暂缓清理 1 条" in out
    assert "站点最近一次授时核验无记录" in err  # the wall clock decides: the operator is warned
    checks = lane.cfg.data_dir / "clock" / "checks.jsonl"
    checks.parent.mkdir(parents=True, exist_ok=True)
    good = CheckRecord(datetime.now(UTC), "ntp", "10.0.0.1:123", "good", 500.0, offset_ms=2.0)
    checks.write_text(json.dumps(good.to_json()) + "\n" + json.dumps(
        replace(good, result="unreachable").to_json()) + "\n", encoding="utf-8")
    assert main(["retention", "station", "--config", toml, "--dry-run"]) == 0
    assert "站点最近一次授时核验未通过" in capsys.readouterr().err
    checks.write_text(json.dumps(good.to_json()) + "\n", encoding="utf-8")
    assert main(["retention", "station", "--config", toml, "--dry-run"]) == 0
    assert "授时核验" not in capsys.readouterr().err
    assert lane.row(key)["plate"] == "浙A11111"
    assert main(["retention", "station", "--config", toml, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passages_purged"] == 1 and result["held_undelivered"] == 1
    assert lane.row(key)["plate"] is None
    assert _runs(lane.store)[0]["trigger"] == "cli"
    assert main(["retention", "station", "--config", toml, "--days", "0"]) == 2
    assert "at least 1 day" in capsys.readouterr().err
    assert main(["retention", "station", "--config", toml, "--data-dir",
                 str(Path(lane.cfg.base_dir) / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["status", "--config", toml]) == 0
    assert "已清理非案件通行 1 条" in capsys.readouterr().out


def test_a_pending_case_whose_material_cannot_be_read_does_not_stop_a_start(
        lane: Lane) -> None:
    """Recovery at start re-reads each pending case's material: one that fails the evidence
    checks (here a plate read without a time) is recorded on its case and as a failed
    sealing step; the station still starts and the other pending case is queued."""
    from zhichao.station.alarms import StageHealth
    from zhichao.station.ops import StationMetrics
    from zhichao.station.seal_stage import SealStage

    bad = lane.add(NEW, "浙A11111", case="pending")
    good = lane.add(NEW, "浙A22222", case="pending")
    material = lane.store.case_material(bad)
    assert material is not None
    material["plate"]["reads"] = [{"camera": "CAM-FRONT-1", "box_px": [1, 2, 3, 4]}]
    lane.store.db.execute("UPDATE cases SET material = ? WHERE passage_key = ?",
                          (json.dumps(material, ensure_ascii=False), bad))
    stage = SealStage(lane.sealer, lane.store, StageHealth(lane.store), StationMetrics())
    stage.recover()  # does not raise
    queued = [stage.jobs.get_nowait().passage_key for _ in range(stage.jobs.qsize())]
    assert queued == [good]
    stage.collect()
    error = lane.store.db.execute("SELECT error FROM cases WHERE passage_key = ?",
                                  (bad,)).fetchone()[0]
    assert "case material unreadable" in error and "captured_utc" in error
