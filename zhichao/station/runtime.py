"""The station: one lane, unattended, from raw samples to sealed packages.

Threads: the **pipeline** (this module's :meth:`Station.run`: device → journal → weighing →
linking → store, in order, the only writer of the store), the **sealer** (packages, off the
pipeline so a slow disk or PDF never stalls weighing), the **uploader** (outbox → sync
wire → a center, or the station's own service) and vision **worker processes**
(:mod:`zhichao.station.plates`).

The steps, each its own module with typed messages (:mod:`zhichao.station.messages`):
intake and weighing (:mod:`~zhichao.station.intake`: block → journal →
:class:`~zhichao.weighing.stream.LaneProcessor`), linking and plates
(:mod:`~zhichao.station.link_stage`), the commit (:mod:`~zhichao.station.commit`),
sealing (:mod:`~zhichao.station.seal_stage`), upload (:mod:`~zhichao.station.upload`).
The clock and, on a simulated lane, the traffic's end are passed in by the launcher;
nothing here knows whether the lane is simulated.

Crash safety (a SIGKILL at any moment):

* every received block is appended to the journal before it is weighed;
* a vehicle is committed (passage row, case row for an overload, outbox, and the durable
  position) in one SQLite transaction, in weighing order;
* the durable position is a block boundary where the lane processor was quiescent
  (nothing in progress), the newest before the next uncommitted vehicle (on an idle lane,
  30 s behind the stream), committed with the processor's whole state there
  (:class:`~zhichao.weighing.stream.LaneSnapshot`; the stream's first sample with a fresh
  state before any); a restart replays the journal from there with a processor restored
  to that state (so every vehicle after it is weighed bit for bit as in an uninterrupted
  run), drops re-weighed vehicles that were already committed (first sample at or before
  the committed one, or a stored passage within 0.3 s) and goes on with the live stream;
* a lost stretch of samples (in the kernel's buffers when the station died, or a device
  reboot) is fed to the weighing core as a gap, so the vehicles it touches are flagged
  ``data_gap``, never silently weighed short; the gap is recorded in ``gaps``.

A full disk never ends the pipeline (:mod:`~zhichao.station.diskspace`): a write refused
for want of space, or the data folder below ``evidence.min_free_mb``, stops the commits
(vehicles wait, in order) with the ``disk_full`` alarm open, and they are tried again
every 2 s once there is room.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from zhichao.devices.base import Device, parse_device_url
from zhichao.devices.record_source import RecordSource
from zhichao.devices.registry import open_wim_device
from zhichao.devices.sample_source import SampleSource
from zhichao.station.alarms import StageHealth
from zhichao.station.clips import ClipMaker
from zhichao.station.clock import Clock
from zhichao.station.clockcheck import ClockMonitor
from zhichao.station.commit import (
    WAVEFORM_MARGIN_S,
    Committer,
    archive_committed_frames,
    remove_dead_waveform_temporaries,
)
from zhichao.station.config import StationConfig, wim_url_kind
from zhichao.station.device import DRIFT_ALARM, DRIFT_STATE_KEY, DeviceRegister
from zhichao.station.diskspace import DiskGuard, DiskReserve, is_disk_full, prepare_data_dir
from zhichao.station.errors import StationError, StoreError
from zhichao.station.intake import Intake
from zhichao.station.journal import SampleJournal
from zhichao.station.link_stage import LinkStage
from zhichao.station.linking import CameraSpool, FrameLinker
from zhichao.station.ops import StationMetrics
from zhichao.station.passage import opens_case
from zhichao.station.record_intake import RecordIntake, RecordJournal
from zhichao.station.resume import DurablePosition
from zhichao.station.retention import RetentionStage
from zhichao.station.seal_stage import SealStage
from zhichao.station.sealing import CaseMaterial, Sealer
from zhichao.station.site_scatter import SiteScatter
from zhichao.station.store import StationStore, database_is_new, utc_text
from zhichao.station.upload import CenterLink, UploadTarget
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import CalibrationProfileError
from zhichao.weighing.reported import check_profile_for_records
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station")
IDLE_ADVANCE_S = 30.0
UPLOAD_DRAIN_S = 20.0
TRAFFIC_TAIL_S = 20.0
JOURNAL_CORRUPT = "journal_corrupt"  # gaps.reason and the alarm's code
JOURNAL_CORRUPT_ZH = ("原始数据日志（journal）中有损坏的记录：损坏部分已跳过"
                      "（其后的完好数据均已保留），缺失的数据按数据缺口处理，"
                      "涉及的车辆标记 data_gap，不作超限取证依据；"
                      "请检查站点存储设备（详见告警详情和日志）")

#: on a simulated lane: the stream index of the last simulated vehicle, once known
TrafficEnd = Callable[[], int | None]


def _load_profile(cfg: StationConfig) -> CalibrationProfile | None:
    """The lane's calibration profile. An enforcement station refuses one that does not say
    when it is in force or what it was fitted on (the core checks every passage against
    ``valid_from_utc``/``valid_until_utc`` and ``operating_range``)."""
    if not cfg.wim.calibration_profile:
        return None
    from zhichao.weighing.calibration_profile import parse_profile

    where = f"wim.calibration_profile ({cfg.wim.calibration_profile})"
    try:
        raw = json.loads(cfg.path(cfg.wim.calibration_profile).read_text("utf-8"))
        profile = parse_profile(raw, where)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError,
            CalibrationProfileError) as exc:
        raise StationError(f"{where}: {exc}") from None
    missing = [name for name, value in (
        ("created_utc", profile.created_utc), ("valid_from_utc", profile.valid_from_utc),
        ("valid_until_utc", profile.valid_until_utc),
        ("operating_range.speed_kmh", profile.speed_range_kmh)) if value is None]
    # (a temperature range may be null: a session without pavement temperatures fits none)
    if missing:
        raise StationError(f"{where}: the profile does not declare {', '.join(missing)}; "
                           f"the station cannot check that it is in force and fitted for "
                           f"a passage")
    return profile


def earlier_station_data(cfg: StationConfig) -> list[str]:
    """What of an earlier station's data the data folder holds (journal segments,
    sealed packages, the evidence log), described for an operator; [] if nothing."""
    found: list[str] = []

    def count(folder: Path, pattern: str, what: str) -> None:
        try:
            n = sum(1 for p in folder.glob(pattern)
                    if not p.name.endswith(".partial") and (p.is_dir() or p.stat().st_size))
        except OSError:
            n = 0
        if n:
            found.append(f"{n} {what} ({folder})")

    count(cfg.data_dir / "journal", "seg-*.zsj", "raw sample journal segment(s)")
    count(cfg.data_dir / "records", "rec-*.jsonl", "record journal segment(s)")
    evidence = cfg.data_path(cfg.evidence.dir)
    count(evidence / "packages", "*", "sealed evidence package(s)")
    count(evidence / "log", "*", "evidence log file(s)")
    return found


def refuse_blank_database(cfg: StationConfig) -> None:
    """A new ``station.db`` (missing, empty, no schema) beside an earlier station's data
    would start a blank station: the journal never replayed, pending cases never sealed,
    passages forgotten. Refused with :class:`StoreError` (``zhichao run`` exits 2)."""
    path = cfg.data_dir / "station.db"
    if not database_is_new(path):
        return
    found = earlier_station_data(cfg)
    if found:
        raise StoreError(
            f"{path} is missing, empty or has no tables, but the data folder holds an "
            f"earlier station's data: {'; '.join(found)}. The station does not start blank "
            f"over it (the journal would never be replayed, pending cases never sealed). "
            f"Restore station.db from a backup, or move the data folder aside to start a "
            f"new station")


class Station:
    def __init__(self, cfg: StationConfig, *, clock: Clock | None = None,
                 wim_url: str | None = None, metrics: StationMetrics | None = None,
                 stream_urls: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.stream_urls = stream_urls or {}  # camera id → video stream (simulated lane)
        self.clock = clock or Clock()
        self.wim_url = wim_url or cfg.wim.url
        self.metrics = metrics or StationMetrics()
        self.fs = cfg.wim.sensor.sample_rate_hz
        data = cfg.data_dir
        data.mkdir(parents=True, exist_ok=True)
        # on a full disk the reserve goes first, so the database opens and the alarm stays
        self.reserve = DiskReserve(data, cfg.station.disk_reserve_mb)
        short = prepare_data_dir(data, self.reserve, cfg.evidence.min_free_mb)
        refuse_blank_database(cfg)
        self.store = StationStore(data / "station.db")
        self.read_store = StationStore(data / "station.db", readonly=True)  # for health()
        self._closed = False
        self.stages = StageHealth(self.store)  # the pipeline thread's stages
        self.disk = DiskGuard(data, cfg.evidence.min_free_mb, self.reserve, self.stages)
        if short is not None:
            self.disk.full(short)
        self.held_seals: list[CaseMaterial] = []  # cases whose frames wait for room
        self.journal = SampleJournal(data / "journal")
        self.sealer = Sealer(cfg)
        self.center: CenterLink | None = None  # see connect_upload()
        spools = [CameraSpool(c.camera_id, c.role, cfg.camera_spool(c),
                              c.trigger_distance_m) for c in cfg.cameras]
        for s in spools:
            s.directory.mkdir(parents=True, exist_ok=True)
        self.linker = FrameLinker(spools, self.clock, cfg.linking.window_s)
        self.profile = _load_profile(cfg)
        self.clock_check = ClockMonitor(cfg.clock, self.clock, data)  # checked in run()
        self.device = self._open_device()
        adopted = self.store.adopt_legacy_outbox(
            cfg.station.station_id, self.sealer.key,
            service_link_covered=not cfg.station.center_url)
        if adopted:
            LOG.info("outbox of an earlier version taken over", extra={"fields": {
                "items": adopted}})
        self.durable = DurablePosition(self.store, self.fs)  # where a restart resumes
        self.intake = Intake(cfg, self.store, self.journal, self.durable, self.linker,
                             self.clock, self.profile, self.stages, self.metrics,
                             self._on_vehicle)
        # the site's σ(v): profile, scatter file and this lane's own passages, pooled
        self.scatter = SiteScatter(cfg, self.store, self.intake.weighing, self.profile)
        self.intake.weighing = self.scatter.pool()
        self.records = self._record_intake()  # None: a sample stream
        if self.records is not None:  # each record arrives with a delay of its own
            self.linker.wim_offset.require_reach = False
        self.scatter.listeners.append(self._use_weighing)
        self.link = LinkStage(cfg, self.linker, self.stages, self.metrics)
        margin = round(WAVEFORM_MARGIN_S * self.fs)
        self.intake.hold_from = lambda: self.link.waveform_hold_from(margin)
        self.committer = Committer(cfg, self.store, self.device, self.linker, self.durable,
                                   self.clock, self.metrics, self.intake.ring, self.sealer.key,
                                   self.clock_check)
        self.seals = SealStage(self.sealer, self.store, self.stages, self.metrics)
        # personal data of passages that are no case, past retention.passage_days
        self.retention = RetentionStage(cfg, self.store, self.stages, self.clock,
                                        self.clock_check)
        self.reweigh: Any = None  # the static scale (复检), when station.toml has one
        if cfg.static_scale.url:
            from zhichao.station.reweigh_stage import ReweighStage

            self.reweigh = ReweighStage(cfg, self.store, self.sealer)
        wim_off = self.store.get_meta("wim_offset_s")
        if wim_off is not None:
            self.linker.wim_offset.restore(float(wim_off))  # until the first block
        self.source: Device | None = None
        self.traffic_end_index: int | None = None
        self.dropped_replayed = 0
        self.health_snapshot: dict[str, Any] = {}
        self.failure: BaseException | None = None
        # what the way out could not store for want of space (see _exit_step)
        self.exit_unstored: list[str] = []
        self.grabbers: list[Any] = []  # CameraGrabber per URL camera
        self.clips: ClipMaker | None = None  # passage clips of the streaming cameras
        self._url_cameras = {c.camera_id for c in cfg.cameras if c.url}
        self._last_scan = self._last_gauges = 0.0  # monotonic [s] of the loop's due steps

    def _open_device(self) -> DeviceRegister:
        device = DeviceRegister(self.cfg, None if self.profile is None
                                else self.profile.profile_id,
                                self.store.get_meta(DRIFT_STATE_KEY), profile=self.profile)
        if device.reset_on_start is not None:  # a new calibration closes the alarm
            with self.store.transaction() as con:
                self.store.set_meta(con, DRIFT_STATE_KEY, device.state_json())
                self.store.clear_alarm_in(con, DRIFT_ALARM)
            LOG.info("drift monitor reset", extra={"fields": {
                "why": device.reset_on_start}})
        return device

    def _record_intake(self) -> RecordIntake | None:
        """For a vendor record controller (``wim.url`` of kind ``records``): its intake,
        with the profile checked for records (only the ``reported`` channel, this lane)."""
        if self.wim_url == "sim" or wim_url_kind(self.wim_url) != "records":
            return None
        if self.profile is not None:
            try:
                check_profile_for_records(self.profile, self.cfg.site.site_id,
                                          self.cfg.lane.lane_id)
            except CalibrationProfileError as exc:
                raise StationError(f"wim.calibration_profile: {exc}") from None
        return RecordIntake(self.cfg, self.store, RecordJournal(self.cfg.data_dir / "records"),
                            self.linker, self.clock, self.profile, self.intake.weighing,
                            self.metrics, self._on_vehicle,
                            parse_device_url(self.wim_url).scheme)

    def connect_upload(self, target: UploadTarget) -> None:
        """Upload the outbox to ``target`` (a center, or the station's own service) from
        a thread of its own; call before :meth:`run`."""
        self.center = CenterLink(self.cfg, self.sealer.log.directory, target)

    # ------------------------------------------------------------------ the state others read
    @property
    def run_passages(self) -> int:
        return self.committer.run_passages

    @property
    def run_cases(self) -> int:
        return self.committer.run_cases

    @property
    def recent(self) -> Any:
        return self.committer.recent

    @property
    def pending(self) -> Any:
        return self.link.pending

    @property
    def sealing_stopped(self) -> str | None:
        return self.seals.stopped

    @property
    def stream_index(self) -> int:
        return self.intake.stream_index if self.records is None else self.records.stream_index

    def _stream_time(self) -> datetime:
        return self.intake.stream_time() if self.records is None else \
            self.records.stream_time()

    def _started(self) -> bool:
        """Whether the lane has a timeline yet (a sample stream's epoch; records: always)."""
        return self.records is not None or self.intake.epoch is not None

    # ------------------------------------------------------------------ start-up
    def _recover(self) -> None:
        self._journal_damage()
        self.seals.recover()
        archive_committed_frames(self.store)
        self.seals.recovery["waveform_temporaries_removed"] = \
            remove_dead_waveform_temporaries(self.committer.waveforms_dir)
        LOG.info("recovered", extra={"fields": self.seals.recovery})

    def _journal_damage(self) -> None:
        """Damaged journal stretches (bad bytes the journal skipped on open) that replay
        still needs are recorded gaps (``journal_corrupt``; replay feeds the weighing core
        a gap there) with the ``journal_corrupt`` alarm, once per stretch."""
        if not self.journal.damage:
            return
        details = []
        try:
            new = False
            with self.store.transaction() as con:
                for d in self.journal.damage:
                    details.append(d.describe())
                    # (a stretch before the durable position was weighed and committed
                    # before it was damaged: only the journal's warning says so)
                    if d.end_index > self.durable.index:
                        new |= self.store.record_gap_once(con, d.first_index, d.n_samples,
                                                          JOURNAL_CORRUPT)
                if new:
                    self.store.raise_alarm_in(con, JOURNAL_CORRUPT, JOURNAL_CORRUPT_ZH,
                                              "; ".join(details)[:2000])
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            LOG.error("journal damage not recorded: the disk is full", extra={"fields": {
                "damage": details}})
            self.disk.full(f"recording journal damage: {exc}")
            return
        if new:
            LOG.error("journal damaged: the lost stretches are gaps", extra={"fields": {
                "damage": details, "alarm": JOURNAL_CORRUPT}})

    # ------------------------------------------------------------------ weighing
    def _on_vehicle(self, v: WeighedVehicle, extra: dict[str, Any] | None = None) -> None:
        """A weighed vehicle (``extra``: what a record passage's package says about the
        device). A record's first sample is its ordinal: no neighbour is a duplicate."""
        cfg = self.cfg
        key = f"{cfg.site.site_id}-{cfg.lane.lane_id}-{v.first_sample}"
        if v.first_sample <= self.committer.committed_first or (
                self.records is None and self.store.find_duplicate(
                    cfg.lane.lane_id, v.first_sample, round(0.3 * self.fs)) is not None):
            self.dropped_replayed += 1
            return
        self.link.add(v, key, extra)
        self._trigger_cameras(key)
        self._request_clips(key)

    def _request_clips(self, key: str) -> None:
        """A vehicle that may become a case: its clip from each streaming camera, around
        its predicted time there (the vehicle's own time for a camera it cannot reach)."""
        if self.clips is None or not self.link.pending or self.link.pending[-1].key != key:
            return
        p = self.link.pending[-1]
        v = p.vehicle
        if not (opens_case(v) or v.overloaded or v.verdict in ("overloaded", "uncertain")):
            return
        t_ref = datetime.fromisoformat(v.time_utc) - timedelta(
            seconds=self.linker.wim_offset.offset_s or 0.0)
        centers = {c.camera_id: t_ref for c in self.cfg.cameras}
        centers.update({q.camera_id: q.ref_time for q in p.predictions
                        if q.ref_time is not None})
        p.clips = self.clips.request(key, centers)

    def _use_weighing(self, weighing: WeighingConfig) -> None:
        """The site's σ(v) was pooled again: the next vehicles are decided with it."""
        self.intake.weighing = weighing
        if self.intake.proc is not None:
            self.intake.proc.use_overload(weighing.overload)
        if self.records is not None:
            self.records.weighing = weighing

    def _trigger_cameras(self, key: str) -> None:
        """Triggered capture: each such camera is asked for a frame at the vehicle's
        predicted arrival (reference clock → wall clock)."""
        if not self.link.pending or self.link.pending[-1].key != key:
            return
        for p in self.link.pending[-1].predictions:
            if p.ref_time is None:
                continue
            for g in self.grabbers:
                if g.camera_id == p.camera_id and g.triggered:
                    g.request(key, self.clock.wall_of(p.ref_time))

    def _advance_pending(self, final: bool = False) -> None:
        if not self._started():
            return
        self.link.advance(self._stream_time(), final)
        if self.disk.stopped is not None or not self._frames_moved():
            return  # the disk is full: the vehicles wait, in order
        for p in self.link.pop_ready():
            target = (self.link.pending[0].vehicle.first_sample if self.link.pending
                      else self.stream_index)
            try:
                done = self.committer.commit(p, target)
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                self.link.pending.appendleft(p)  # nothing of it stored: tried again
                self.disk.full(f"committing {p.key}: {exc}")
                return
            if p.clips and self.clips is not None:  # a case's clips are encoded, others not
                self.clips.decide(p.key, keep=done.material is not None)
            if done.material is not None:
                self.held_seals.append(done.material)
            if self.committer.disk_error is not None:  # stored; its frames wait for room
                self.disk.full(self.committer.disk_error)
                self.committer.disk_error = None
                return
            self._queue_seals()
            self.scatter.note(self.stages)

    def _frames_moved(self) -> bool:
        """Frames a full disk left in their spools are moved before anything else is
        committed; only then are their cases sealed (the sealer takes the frames from the
        passage's folder)."""
        try:
            self.committer.move_unmoved()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.disk.full(f"moving frames: {exc}")
            return False
        self._queue_seals()
        return True

    def _queue_seals(self) -> None:
        for m in self.held_seals:
            self.seals.jobs.put(m)
        self.held_seals.clear()

    def _clip_outcomes(self) -> None:
        """Clips made or missed since the last look: the ``clips`` stage's alarm."""
        if self.clips is None:
            return
        for ok, detail in self.clips.outcomes():
            if ok:
                self.stages.succeeded("clips")
            else:
                self.stages.failed("clips", detail)

    def _idle_advance(self) -> None:
        """On a quiet lane (nothing weighed waits to be committed), move the durable
        position to the newest quiescent point at least 30 s back and prune the journal."""
        if self.link.pending or self.intake.proc is None:
            return
        target = self.stream_index - round(IDLE_ADVANCE_S * self.fs)
        if target <= self.durable.index + round(10 * self.fs):
            return
        point = self.durable.point(target)
        if point is None or point[0] <= self.durable.index + round(10 * self.fs):
            return
        with self.store.transaction() as con:
            self.durable.save(con, point[0], point[1])
        self.durable.moved(point[0])
        self.journal.prune(self.durable.index)

    # ------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event, max_vehicles: int | None = None,
            traffic_end: TrafficEnd | None = None) -> None:
        """Run until ``stop`` is set, ``max_vehicles`` passages were committed by this run,
        or (``traffic_end``: a simulated lane) the traffic is over; pending cases are
        sealed before it returns."""
        seal_stop = threading.Event()
        sealer = threading.Thread(target=self.seals.loop, args=(seal_stop,),
                                  name="station-sealer", daemon=True)
        upload_stop = threading.Event()
        uploader: threading.Thread | None = None
        clock_stop = threading.Event()  # the time-source checks, at start and hourly
        threading.Thread(target=self.clock_check.run, args=(clock_stop,),
                         name="station-clock-check", daemon=True).start()
        try:
            self._recover()
            self.intake.replay()
            if self.records is not None:
                self.records.replay(self.committer.committed_first)
            if self.clock.ready:  # the frames in the spools, for the vehicles replayed
                self.linker.scan()
            self._advance_pending()
            sealer.start()
            if self.center is not None:  # never waited on by the pipeline
                uploader = threading.Thread(target=self.center.run, args=(upload_stop,),
                                            name="station-uploader", daemon=True)
                uploader.start()
            self._start_grabbers()
            if self.reweigh is not None:
                self.reweigh.start_reader()
            self.source = open_wim_device(self.wim_url)
            resume = self.intake.resume_point()
            if resume is not None and isinstance(self.source, SampleSource):
                self.source.resume_at(*resume)  # a sample ring sends nothing twice
            self._loop(stop, max_vehicles, traffic_end)
            self._exit_step("the last commits",
                            lambda: self._advance_pending(final=self._traffic_done()))
            if self.disk.stopped is not None and self.link.pending:
                LOG.error("vehicles not committed at exit: the disk is full; the next start "
                          "weighs them again from the journal", extra={"fields": {
                              "vehicles": len(self.link.pending),
                              "disk": self.disk.stopped}})
            self._exit_step("the sealing outcomes", lambda: self.seals.drain(
                timeout_s=120.0 if not stop.is_set() else 5.0))
            if self.center is not None and not stop.is_set():
                self._drain_uploads(UPLOAD_DRAIN_S)
        except BaseException as exc:
            self.failure = exc
            LOG.exception("station pipeline failed")
            raise
        finally:
            clock_stop.set()
            seal_stop.set()
            upload_stop.set()
            self.seals.jobs.put(None)
            if sealer.is_alive():
                sealer.join(timeout=10)
            if uploader is not None and uploader.is_alive():
                uploader.join(timeout=10)
            self._exit_step("the sealing outcomes", self.seals.collect)
            self.close()

    def _exit_step(self, what: str, step: Callable[[], None]) -> None:
        """A step of the way out. On a full disk what it could not store is noted
        (:attr:`exit_unstored`, logged) and the exit goes on: the next start does it
        again (weighs uncommitted vehicles from the journal, adopts packages sealed but
        not recorded, retries the rest). Any other error is raised."""
        try:
            step()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.exit_unstored.append(f"{what}: {type(exc).__name__}: {exc}")
            LOG.error("not stored at exit: the disk is full; the next start does it again",
                      extra={"fields": {"step": what, "error": repr(exc)}})

    def _loop(self, stop: threading.Event, max_vehicles: int | None,
              traffic_end: TrafficEnd | None) -> None:
        assert self.source is not None
        last_traffic = 0.0
        self._last_scan = self._last_gauges = 0.0
        while not stop.is_set():
            try:
                self._step()
            except Exception as exc:  # a full disk stops the writing, never the station
                if not is_disk_full(exc):
                    raise
                if self.disk.stopped is None:  # logged once; the alarm says the rest
                    LOG.exception("a write of the pipeline failed: the disk is full")
                self.disk.full(f"{type(exc).__name__}: {exc}")
            now = time.monotonic()
            if traffic_end is not None and now - last_traffic > 1.0:
                last_traffic = now
                end = traffic_end()
                if end is not None:
                    self.traffic_end_index = end
            if max_vehicles is not None and self.run_passages >= max_vehicles:
                return
            if self._traffic_done():
                return

    def _step(self) -> None:
        """One read of the device and what is due (each due step marked done before it
        runs: one that fails on a full disk is not repeated at once)."""
        self._read_device()
        now = time.monotonic()
        self.disk.poll()
        if now - self._last_scan > 0.05:
            self._last_scan = now
            self.linker.scan()
            self._advance_pending()
            self.seals.collect()
            self._idle_advance()
        if now - self._last_gauges > 1.0:
            self._last_gauges = now
            self.journal.prune(self.durable.index)
            if self.records is not None:
                self.records.journal.prune(self.committer.committed_first)
            self._update_gauges()
            self._drop_stale_frames()
            self.clock_check.sync_alarm(self.store)
            if self.reweigh is not None:  # static readings in, linked ones sealed
                self.reweigh.step()
            self._clip_outcomes()
            self.retention.step()  # at start, then every retention.check_interval_s

    def _read_device(self) -> None:
        """One read from the WIM device: a sample block or a controller's record."""
        timeout_s = self.cfg.wim.read_timeout_s
        if isinstance(self.source, SampleSource):
            block = self.source.read_block(timeout_s)
            if block is not None:
                self.intake.on_block(block)
        elif isinstance(self.source, RecordSource) and self.records is not None:
            record = self.source.read_record(timeout_s)
            if record is not None:
                self.records.on_record(record)
        else:
            raise StationError(f"wim.url {self.wim_url}: {type(self.source).__name__} is "
                               "no WIM device")

    def _start_grabbers(self) -> None:
        from zhichao.station.cameras import CameraGrabber

        for c in self.cfg.cameras:
            if c.url:
                self.grabbers.append(CameraGrabber(
                    c.camera_id, c.url, self.cfg.camera_spool(c), self.clock,
                    max_fps=c.max_fps, latency_s=c.latency_s,
                    triggered=c.capture == "triggered").start())
        from zhichao.station.clips import start_clip_maker

        self.clips = start_clip_maker(self.cfg, self.clock, self.grabbers, self.stream_urls)

    def _traffic_done(self) -> bool:
        """Simulated traffic is over: the stream is 20 s past its last vehicle and every
        weighed vehicle is committed."""
        end = self.traffic_end_index
        return (end is not None and self.stream_index > end + TRAFFIC_TAIL_S * self.fs
                and not self.link.pending and self.intake.proc is not None)

    def _drain_uploads(self, timeout_s: float) -> None:
        """At the end of a bounded run, give the uploader a moment to empty the outbox
        (what is left stays queued for the next start)."""
        assert self.center is not None
        if not self.center.wait_drained(timeout_s):
            LOG.warning("upload backlog left at exit", extra={"fields": self.center.status()})

    def _drop_stale_frames(self) -> None:
        if not self._started():
            return
        horizon = self._stream_time() - timedelta(seconds=120)
        for f in self.linker.stale(horizon):
            if f.camera_id in self._url_cameras:  # continuous frames: not kept
                f.path.unlink(missing_ok=True)
                self.linker.forget(f)
                continue
            dst = self.cfg.data_dir / "frames" / "unlinked" / f.path.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                shutil.move(f.path, dst)
            self.linker.forget(f)
            self.metrics.unlinked_frames.inc()

    def _update_gauges(self) -> None:
        c = self.store.counts()
        self.metrics.outbox_depth.set(c["outbox_pending"])  # the one outbox: fresh count
        self.metrics.pending_seal.set(c["pending_seal"])
        if self.source is not None:
            h = self.source.health_snapshot()
            self.metrics.device_errors.labels("wim").set(h.error_count)
        for cid, off in self.linker.offsets_ms().items():
            self.metrics.clock_offset.labels(cid).set(off / 1000.0)

    def health(self) -> dict[str, Any]:
        """The station's state (from any thread; the snapshot once it has stopped)."""
        if self._closed:
            return self.health_snapshot
        c = self.read_store.counts()
        wim = None
        if self.source is not None:
            h = self.source.health_snapshot()
            wim = {"connected": self.source.connected, "errors": h.error_count,
                   "describe": h.describe()}
        degraded = self.sealing_stopped or self.disk.stopped or c["alarms_active"]
        return {"status": "degraded" if degraded else "ok",
                "time_utc": utc_text(), "station_id": self.cfg.station.station_id,
                "stream_time_utc": None if not self._started() else utc_text(
                    self._stream_time()),
                "counts": c, "run_passages": self.run_passages, "wim": wim,
                "clock_offsets_ms": self.linker.offsets_ms(),
                "clock_check": self.clock_check.status_json(),
                "cameras": [g.health() for g in self.grabbers],
                "clips": [] if self.clips is None else self.clips.health(),
                "sealing_stopped": self.sealing_stopped, "recovery": self.seals.recovery,
                "disk_stopped": self.disk.stopped,
                "retention": self.retention.status(),
                "alarms": self.read_store.active_alarms(),
                "device": self.committer.device_snapshot,
                "upload": {**({"center_url": None, "last_upload_utc": None}
                              if self.center is None else self.center.status()),
                           "pending": c["outbox_pending"]},
                "pending": len(self.link.pending)}

    def close(self) -> None:
        self.health_snapshot = self.health()
        self._closed = True
        if self.source is not None:
            self.source.close()
        if self.clips is not None:
            self.clips.close()
        for g in self.grabbers:
            g.close()
        if self.reweigh is not None:
            self.reweigh.close()
        self.link.close()
        self._exit_step("the journal's last sync", self.journal.close)
        if self.records is not None:
            self.records.journal.close()
        self.sealer.close()
        self.store.close()
        self.read_store.close()


def traffic_end_from(devices_file: Path) -> TrafficEnd:
    """A simulated lane's traffic end, read from its ``devices.json`` (the launcher passes
    it to :meth:`Station.run`)."""
    def read() -> int | None:
        try:
            info = json.loads(devices_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        end = info.get("traffic_end_index")
        return None if end is None else int(end)

    return read
