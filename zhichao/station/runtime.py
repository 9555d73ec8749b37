"""The station: one lane, unattended, from raw samples to sealed packages.

Threads: the **pipeline** (this module's :meth:`Station.run`: device → journal → weighing →
linking → store, in order, the only writer of the store), the **sealer** (packages, off the
pipeline so a slow disk or PDF never stalls weighing) and vision **worker processes**
(:mod:`zhichao.station.plates`).

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.common import format_utc, write_atomic
from zhichao.devices.samples import StreamSampleSource
from zhichao.evidence.inputs import ClockSync, ImageRef, PlateResult
from zhichao.station.alarms import StageHealth
from zhichao.station.clock import Clock, PublishedSimClock, SimClock
from zhichao.station.config import StationConfig
from zhichao.station.device import (
    DRIFT_ALARM,
    DRIFT_STATE_KEY,
    DeviceRegister,
    reasons_json,
)
from zhichao.station.errors import JournalError, SealingStoppedError
from zhichao.station.journal import SampleJournal
from zhichao.station.linking import CameraSpool, FrameLinker, Prediction
from zhichao.station.ops import StationMetrics
from zhichao.station.passage import (
    Pending,
    clean_json,
    is_plate_candidate,
    lane_meta,
    needs_human,
    opens_case,
)
from zhichao.station.plates import PlateJob, PlateWorkers
from zhichao.station.resume import RING_S, DurablePosition
from zhichao.station.sealing import CaseMaterial, Sealer, material_from_json, material_to_json
from zhichao.station.store import PassageRow, StationStore, utc_text
from zhichao.station.upload import CenterLink
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.pulses import DetectorSnapshot
from zhichao.weighing.stream import LaneProcessor, LaneSnapshot
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station")
IDLE_ADVANCE_S = 30.0
WAVEFORM_MARGIN_S = 0.5
UPLOAD_DRAIN_S = 20.0


class Station:
    def __init__(self, cfg: StationConfig, *, clock: Clock | None = None,
                 wim_url: str | None = None, metrics: StationMetrics | None = None,
                 service: Any = None) -> None:
        self.cfg = cfg
        self.service = service  # a ServiceLink, or None when the service core is absent
        self.clock = clock or Clock()
        self.wim_url = wim_url or cfg.wim.url
        self.metrics = metrics or StationMetrics()
        self.fs = cfg.wim.sensor.sample_rate_hz
        data = cfg.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.store = StationStore(data / "station.db")
        self.read_store = StationStore(data / "station.db", readonly=True)  # for health()
        self._closed = False
        self.stages = StageHealth(self.store)  # the pipeline thread's stages
        self.journal = SampleJournal(data / "journal")
        self.sealer = Sealer(cfg)
        self.center: CenterLink | None = (
            CenterLink(cfg, self.sealer.key, self.sealer.log.directory)
            if cfg.station.center_url else None)
        self.frames_dir = data / "frames"
        self.waveforms_dir = data / "waveforms"
        self.waveforms_dir.mkdir(parents=True, exist_ok=True)
        spools = [CameraSpool(c.camera_id, c.role, cfg.camera_spool(c),
                              c.trigger_distance_m) for c in cfg.cameras]
        for s in spools:
            s.directory.mkdir(parents=True, exist_ok=True)
        self.linker = FrameLinker(spools, self.clock, cfg.linking.window_s)
        self.profile: CalibrationProfile | None = None
        if cfg.wim.calibration_profile:
            from zhichao.weighing.calibration_profile import parse_profile

            raw = json.loads(cfg.path(cfg.wim.calibration_profile).read_text("utf-8"))
            self.profile = parse_profile(raw, cfg.wim.calibration_profile)
        self.device = DeviceRegister(cfg, None if self.profile is None
                                     else self.profile.profile_id,
                                     self.store.get_meta(DRIFT_STATE_KEY))
        if self.device.reset_on_start is not None:  # a new calibration closes the alarm
            with self.store.transaction() as con:
                self.store.set_meta(con, DRIFT_STATE_KEY, self.device.state_json())
                con.execute("UPDATE alarms SET active = 0 WHERE code = ? AND active = 1",
                            (DRIFT_ALARM,))
            LOG.info("drift monitor reset", extra={"fields": {
                "why": self.device.reset_on_start}})
        self.device_snapshot = self.device.snapshot()
        self.plates: PlateWorkers | None = (PlateWorkers(cfg.vision.workers)
                                            if cfg.vision.read != "none" else None)
        self.proc: LaneProcessor | None = None
        self.pending: deque[Pending] = deque()
        self.ring: deque[tuple[int, npt.NDArray[np.float32]]] = deque()
        self.stream_index = 0  # next station stream index expected
        self.index_offset = int(self.store.get_meta("index_offset") or 0)
        self.durable = DurablePosition(self.store, self.fs)  # where a restart resumes
        self.committed_first = int(self.store.get_meta("committed_first_sample") or -1)
        epoch = self.store.get_meta("stream_epoch_utc")
        self.epoch: datetime | None = (datetime.fromisoformat(epoch) if epoch else None)
        self.epoch_stored = self.epoch is not None  # an earlier run received blocks
        wim_off = self.store.get_meta("wim_offset_s")
        if wim_off is not None:
            self.linker.wim_offset.add(float(wim_off))
        self.run_passages = 0
        self.run_cases = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self.seal_queue: queue.Queue[CaseMaterial | None] = queue.Queue()
        self.seal_results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.sealing_stopped: str | None = None
        self.source: StreamSampleSource | None = None
        self.traffic_end_index: int | None = None
        self.started_wall = time.time()
        self.recovery: dict[str, Any] = {}
        self.replayed_samples = 0
        self.dropped_replayed = 0
        self.health_snapshot: dict[str, Any] = {}
        self.failure: BaseException | None = None
        self.grabbers: list[Any] = []  # CameraGrabber per URL camera
        self._url_cameras = {c.camera_id for c in cfg.cameras if c.url}

    # ------------------------------------------------------------------ start-up
    def _recover(self) -> None:
        sealed = {str(r[0]) for r in self.store.db.execute(
            "SELECT passage_key FROM cases WHERE status = 'sealed'")}
        pending = self.store.pending_cases()
        info = self.sealer.recover(sealed, pending)
        for key, facts in info["complete"].items():
            out = self.sealer.package_dir(key)
            sha = _sha256_file(out / "manifest.json")
            with self.store.transaction() as con:
                self.store.mark_sealed(con, key, package_id=facts["package_id"],
                                       package_dir=str(out), manifest_sha256=sha,
                                       log_index=facts["log_index"],
                                       eligibility=facts["eligibility"],
                                       reasons=facts["reasons"])
                self.store.enqueue(con, "package", key, {"package_id": facts["package_id"]})
        self.recovery = {k: v for k, v in info.items() if k != "complete"}
        self.recovery["completed_on_start"] = len(info["complete"])
        self._archive_committed_frames()
        for key in self.store.pending_cases():
            row = self.store.db.execute("SELECT material FROM cases WHERE passage_key = ?",
                                        (key,)).fetchone()
            if row is not None and row[0]:
                self.seal_queue.put(material_from_json(json.loads(row[0])))
        LOG.info("recovered", extra={"fields": self.recovery})

    def _archive_committed_frames(self) -> None:
        """Frames of committed passages still in a spool (killed between commit and
        move) are moved now."""
        for row in self.store.db.execute(
                "SELECT frames FROM passages ORDER BY id DESC LIMIT 500"):
            for f in json.loads(row[0]):
                src, dst = Path(f["spool_path"]), Path(f["path"])
                if src.exists() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(src, dst)

    def _new_processor(self, start_index: int, *, lane: LaneSnapshot | None = None,
                       detector: DetectorSnapshot | None = None) -> LaneProcessor:
        assert self.epoch is not None
        return LaneProcessor(lane_meta(self.cfg, self.epoch), profile=self.profile,
                             recording=f"station:{self.cfg.station.station_id}",
                             start_index=start_index, lane_snapshot=lane,
                             detector_snapshot=detector)

    def _replay(self) -> None:
        end = self.journal.end_index
        if end is None or self.epoch is None:
            return
        start = max(self.durable.index, 0)
        self.proc = self.durable.restored_processor(self._new_processor)
        self.stream_index = start
        for block in self.journal.replay(start):
            gap = block.gap_before_samples
            if block.first_index > self.stream_index:
                gap = block.first_index - self.stream_index if gap >= 0 else -1
            self._weigh(block.first_index, block.samples, gap, replay=True)
            self.replayed_samples += block.samples.shape[0]
        LOG.info("journal replayed", extra={"fields": {
            "from_index": start, "to_index": end, "samples": self.replayed_samples,
            "detector_state_restored": self.durable.resumed_exactly}})

    # ------------------------------------------------------------------ the pipeline
    def _weigh(self, first: int, samples: npt.NDArray[np.float32], gap: int, *,
               replay: bool = False) -> None:
        assert self.proc is not None
        t0 = time.perf_counter()
        vehicles = self.proc.feed(samples, gap_before_samples=gap)
        self.metrics.stage_latency.labels("weighing").observe(time.perf_counter() - t0)
        self.stream_index = first + samples.shape[0]
        self.ring.append((first, samples))
        self.durable.note(self.proc, self.stream_index)
        while self.ring and self.ring[0][0] + self.ring[0][1].shape[0] < (
                self.stream_index - RING_S * self.fs):
            self.ring.popleft()
        for v in vehicles:
            self._on_vehicle(v)

    def _on_vehicle(self, v: WeighedVehicle) -> None:
        cfg = self.cfg
        key = f"{cfg.site.site_id}-{cfg.lane.lane_id}-{v.first_sample}"
        if v.first_sample <= self.committed_first or self.store.find_duplicate(
                cfg.lane.lane_id, v.first_sample, round(0.3 * self.fs)) is not None:
            self.dropped_replayed += 1
            return
        if any(q.key == key for q in self.pending):  # the same vehicle emitted twice
            LOG.warning("vehicle emitted twice by the weighing core; second dropped",
                        extra={"fields": {"passage": key, "axles": v.axle_count}})
            self.metrics.errors.labels("duplicate_vehicle").inc()
            return
        record = clean_json(v.to_dict())
        self.pending.append(Pending(v, key, record, self._predict(v, key)))
        self.metrics.vehicles_weighed.inc()

    def _predict(self, v: WeighedVehicle, key: str) -> list[Prediction]:
        return self.linker.predict(key, datetime.fromisoformat(v.time_utc), v.speed_kmh,
                                   v.acceleration_ms2)

    def _stream_time(self) -> datetime:
        assert self.epoch is not None
        return self.epoch + timedelta(seconds=self.stream_index / self.fs)

    def _advance_pending(self, final: bool = False) -> None:
        if self.epoch is None:
            return
        wait = timedelta(seconds=self.cfg.linking.window_s + self.cfg.linking.wait_s)
        wim_off = timedelta(seconds=self.linker.wim_offset.offset_s or 0.0)
        now_ref = self._stream_time() - wim_off
        items = list(self.pending)
        for q in items:  # with the offsets as measured now
            if q.state == "waiting_frames":
                q.predictions = self._predict(q.vehicle, q.key)
        for i, p in enumerate(items):
            if p.state != "waiting_frames":
                continue
            latest = max((q.ref_time for q in p.predictions if q.ref_time is not None),
                         default=None)
            ready_by_time = (latest is None or now_ref > latest + wait
                             or all(self.linker.delivered_past(q) for q in p.predictions))
            if not (final or ready_by_time):
                break
            neighbours = [q for j in (i - 1, i + 1) if 0 <= j < len(items)
                          for q in items[j].predictions]
            t0 = time.perf_counter()
            p.frames = self.linker.link(p.predictions, neighbours)
            self.metrics.stage_latency.labels("linking").observe(time.perf_counter() - t0)
            front = [f for f, st in p.frames.values() if f is not None and f.role == "front"]
            if front and self.plates is not None and is_plate_candidate(p.vehicle, self.cfg):
                job = PlateJob(p.key, tuple(
                    (str(f.path), f.camera_id, (f.ref_time or f.camera_time).isoformat())
                    for f in front), p.vehicle.axle_count)
                try:
                    self.plates.submit(job)
                    p.state = "reading"
                except Exception as exc:  # a broken pool: this vehicle to review, new pool
                    self._plate_failed(p, exc)
                    p.state = "ready"
                    self._restart_plate_workers()
            else:
                p.state = "ready"
        if self.plates is not None:
            by_key = {q.key: q for q in self.pending}
            for key, res in self.plates.done():
                got = by_key.get(key)
                if got is None:
                    continue
                p = got
                if isinstance(res, BaseException):
                    self._plate_failed(p, res)
                else:
                    self.metrics.stage_latency.labels("plate").observe(res["latency_s"])
                    self.stages.succeeded("plates")
                    p.plate = res
                p.state = "ready"
        while self.pending and self.pending[0].state == "ready":
            self._commit(self.pending.popleft())

    def _plate_failed(self, p: Pending, exc: BaseException) -> None:
        """The plate could not be read: the passage goes to review without a plate."""
        LOG.error("plate reading failed", extra={"fields": {
            "passage": p.key, "error": repr(exc)}})
        self.metrics.errors.labels("vision").inc()
        self.stages.failed("plates", f"{p.key}: {exc!r}")
        p.plate = {"plate": None, "error": repr(exc), "accepted": False,
                   "review_codes": ["vision_error"], "confidence": None, "colour": None}

    def _restart_plate_workers(self) -> None:
        if self.plates is None:
            return
        with contextlib.suppress(Exception):
            self.plates.close()
        self.plates = PlateWorkers(self.cfg.vision.workers)

    def _frame_status(self, p: Pending) -> str:
        front = [(f, st) for cid, (f, st) in p.frames.items()
                 if self.linker.cameras[cid].role == "front"]
        if not front:
            return "no_frame"
        if any(f is not None for f, _ in front):
            return "linked"
        return "ambiguous_frame" if any(st == "ambiguous_frame" for _, st in front) \
            else "no_frame"

    def _commit(self, p: Pending) -> None:
        t0 = time.perf_counter()
        # the drift monitor sees every vehicle once, in weighing order; its state is
        # committed with the passage below
        v, new_alarms, drift_changed = self.device.process(p.vehicle)
        p.record = clean_json(v.to_dict())
        use = self.device.usability(v.time_utc)
        device_json = self.device.evidence_json(v.time_utc)
        day = v.time_utc[:10].replace("-", "")
        frames_json: list[dict[str, Any]] = []
        for f, _st in p.frames.values():
            if f is None:
                continue
            dst = self.frames_dir / day / p.key / f.path.name
            frames_json.append({"camera_id": f.camera_id, "role": f.role,
                                "camera_time_utc": format_utc(f.camera_time),
                                "capture_utc": format_utc(f.ref_time or f.camera_time),
                                "spool_path": str(f.path), "path": str(dst)})
        plate = p.plate or {}
        case = opens_case(v)
        material: CaseMaterial | None = None
        if case:
            wave = self._write_waveform(p)
            images = tuple(ImageRef(path=f["path"], role=f["role"],
                                    capture_utc=datetime.fromisoformat(f["capture_utc"]),
                                    camera_id=f["camera_id"]) for f in frames_json)
            pr = None
            if plate.get("plate"):
                pr = PlateResult(plate["plate"], plate.get("colour"), plate.get("confidence"),
                                 bool(plate.get("accepted")), tuple(plate.get("review_codes")
                                                                    or ()))
            clocks = ClockSync("站内参考时钟（模拟授时）"
                               if isinstance(self.clock, SimClock | PublishedSimClock)
                               else "站内参考时钟（GNSS/NTP 授时）", self.clock.now(),
                               self.linker.offsets_ms())
            material = CaseMaterial(p.key, p.record, pr, images, clocks, wave, device_json)
        row = PassageRow(
            passage_key=p.key, site_id=v.site_id, lane_id=v.lane_id, time_utc=v.time_utc,
            first_sample=v.first_sample, last_sample=v.last_sample, axle_count=v.axle_count,
            gross_weight_kg=v.gross_weight_kg, vehicle_class=v.vehicle_class,
            limit_kg=v.limit_kg, verdict=v.verdict, overloaded=v.overloaded, flags=v.flags,
            record=p.record, frame_status=self._frame_status(p), frames=frames_json,
            plate=plate.get("plate"), plate_colour=plate.get("colour"),
            plate_confidence=plate.get("confidence"),
            plate_accepted=None if not plate else bool(plate.get("accepted")),
            plate_review=list(plate.get("review_codes") or []),
            review_required=needs_human(v) or not use.usable,
            device_reasons=reasons_json(use.reasons))
        # every vehicle before the next uncommitted one is committed now: a restart may
        # resume from any quiescent point up to there (re-weighed vehicles are dropped)
        target = (self.pending[0].vehicle.first_sample if self.pending
                  else self.stream_index)
        point = self.durable.point(target)
        resume, state_json = point if point is not None else (self.durable.index, "")
        move = point is not None and resume != self.durable.index
        with self.store.transaction() as con:
            self.store.insert_passage(con, row)
            if material is not None:
                self.store.insert_case(con, p.key)
                con.execute("UPDATE cases SET material = ? WHERE passage_key = ?",
                            (json.dumps(material_to_json(material), ensure_ascii=False),
                             p.key))
            self.store.enqueue(con, "passage", p.key, {"passage_key": p.key,
                                                       "record": p.record,
                                                       "plate": row.plate})
            self.store.set_meta(con, "committed_first_sample", str(v.first_sample))
            if move:
                self.durable.save(con, resume, state_json)
            off = self.linker.wim_offset.offset_s
            if off is not None:
                self.store.set_meta(con, "wim_offset_s", repr(off))
            if drift_changed:
                self.store.set_meta(con, DRIFT_STATE_KEY, self.device.state_json())
            for a in new_alarms:
                self.store.raise_alarm_in(con, DRIFT_ALARM, a.message_zh, json.dumps(
                    {"statistic": a.statistic, "time_utc": a.time_utc,
                     "direction": a.direction, "estimated_factor": a.estimated_factor,
                     "estimated_correction": a.estimated_correction,
                     "trucks_seen": a.trucks_seen}, ensure_ascii=False))
        if new_alarms or drift_changed:
            self.device_snapshot = self.device.snapshot()
        for a in new_alarms:
            LOG.error("calibration drift alarm", extra={"fields": {
                "statistic": a.statistic, "time_utc": a.time_utc,
                "estimated_factor": a.estimated_factor, "message_zh": a.message_zh}})
            self.metrics.errors.labels("calibration_drift").inc()
        self.committed_first = v.first_sample
        self.durable.moved(resume)
        for f, _st in p.frames.values():  # after the commit; a kill here is reconciled
            if f is not None:
                dst = self.frames_dir / day / p.key / f.path.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(f.path, dst)
                self.linker.forget(f)
        self.metrics.stage_latency.labels("database").observe(time.perf_counter() - t0)
        self.metrics.end_to_end.observe(time.perf_counter() - p.t_emitted)
        self.metrics.passages.inc()
        if v.overloaded:
            self.metrics.overloads.inc()
        if row.frame_status != "linked":
            self.metrics.no_frame.inc()
        self.run_passages += 1
        if material is not None:
            self.run_cases += 1
            self.seal_queue.put(material)
        self.recent.append({"time_utc": v.time_utc, "key": p.key, "axles": v.axle_count,
                            "gross_kg": v.gross_weight_kg, "limit_kg": v.limit_kg,
                            "verdict": v.verdict, "overloaded": v.overloaded,
                            "plate": row.plate, "frame": row.frame_status,
                            "flags": v.flags})
        LOG.info("passage", extra={"fields": {
            "passage": p.key, "time_utc": v.time_utc, "axles": v.axle_count,
            "gross_kg": v.gross_weight_kg, "verdict": v.verdict, "plate": row.plate,
            "frame_status": row.frame_status, "offsets_ms": self.linker.offsets_ms()}})

    def _write_waveform(self, p: Pending) -> str | None:
        v = p.vehicle
        lo = v.first_sample - round(WAVEFORM_MARGIN_S * self.fs)
        hi = v.last_sample + round(WAVEFORM_MARGIN_S * self.fs)
        parts = [s[max(0, lo - a):max(0, hi - a)] for a, s in self.ring
                 if a < hi and a + s.shape[0] > lo]
        if not parts:
            return None
        import io

        buf = io.BytesIO()
        np.savez(buf, samples=np.concatenate(parts), first_index=np.int64(max(lo, 0)),
                 sample_rate_hz=np.float64(self.fs))
        path = self.waveforms_dir / f"{p.key}.npz"
        write_atomic(path, buf.getvalue())
        return str(path)

    def _idle_advance(self) -> None:
        """On a quiet lane (nothing weighed waits to be committed), move the durable
        position to the newest quiescent point at least 30 s back and prune the journal."""
        if self.pending or self.proc is None:
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

    # ------------------------------------------------------------------ sealing thread
    def _sealer_loop(self, stop: threading.Event) -> None:
        retry: CaseMaterial | None = None
        while not stop.is_set():
            m = retry
            if m is None:
                try:
                    m = self.seal_queue.get(timeout=0.2)
                except queue.Empty:
                    continue
            if m is None:
                return
            t0 = time.perf_counter()
            try:
                res = self.sealer.seal(m)
            except SealingStoppedError as exc:
                self.seal_results.put(("stopped", (m.passage_key, str(exc))))
                retry = m
                stop.wait(2.0)
                continue
            except Exception as exc:  # recorded on the case; retried after a pause
                LOG.exception("sealing failed")
                self.seal_results.put(("error", (m.passage_key, repr(exc))))
                retry = m
                stop.wait(5.0)
                continue
            retry = None
            self.seal_results.put(("sealed", (m.passage_key, res,
                                               time.perf_counter() - t0)))

    def _collect_seals(self) -> None:
        while True:
            try:
                kind, payload = self.seal_results.get_nowait()
            except queue.Empty:
                return
            if kind == "sealed":
                key, res, dt = payload
                self.metrics.stage_latency.labels("sealing").observe(dt)
                with self.store.transaction() as con:
                    self.store.mark_sealed(
                        con, key, package_id=res.package_id, package_dir=str(res.directory),
                        manifest_sha256=res.manifest_sha256, log_index=res.log_index,
                        eligibility=str(res.eligibility.status),
                        reasons=[r.code for r in res.eligibility.reasons])
                    self.store.enqueue(con, "package", key, {"package_id": res.package_id})
                self.metrics.packages.inc()
                self.stages.succeeded("sealing")
                if self.sealing_stopped is not None:
                    self.sealing_stopped = None
                    self.store.clear_alarm("sealing_stopped")
            elif kind == "stopped":
                key, why = payload
                if self.sealing_stopped is None:
                    LOG.error("sealing stopped", extra={"fields": {"why": why}})
                    self.store.raise_alarm("sealing_stopped",
                                           "证据存储不可写（磁盘已满或只读），已停止封存，"
                                           "请立即处理", why)
                    self.metrics.errors.labels("sealing_stopped").inc()
                self.sealing_stopped = why
            else:
                key, err = payload
                self.metrics.errors.labels("sealing").inc()
                with self.store.transaction() as con:
                    self.store.mark_seal_error(con, key, err)
                self.stages.failed("sealing", f"{key}: {err}")

    # ------------------------------------------------------------------ main loop
    def _on_block_live(self, block: Any) -> None:
        idx = block.first_index + self.index_offset
        gap = block.gap_before_samples
        if self.epoch is None:
            self.epoch = block.device_time_utc - timedelta(seconds=idx / self.fs)
            fresh = self._new_processor(idx)
            with self.store.transaction() as con:
                self.store.set_meta(con, "stream_epoch_utc", self.epoch.isoformat())
                # where this station's data begin (a device counter need not start at 0),
                # and the fresh state there: a restart before any commit replays from the
                # very first sample exactly as this run weighs it
                self.store.set_meta(con, "stream_first_index", str(idx))
                self.durable.save(con, idx, json.dumps(fresh.lane_snapshot().to_json()))
            self.durable.moved(idx)
            if self.proc is None:
                self.proc, self.stream_index = fresh, idx
        if self.proc is None:
            # blocks reached an earlier run but none reached the journal (killed at once):
            # resume at the durable position; what the device sent since is a gap
            start = max(self.durable.index, 0)
            self.proc = self.durable.restored_processor(self._new_processor)
            self.stream_index = start
        if idx < self.stream_index:
            overlap = self.stream_index - idx
            if overlap < block.samples.shape[0] and block.reason in (None, "start"):
                block_samples = block.samples[overlap:]
                idx = self.stream_index
                gap = 0
            else:  # the device's counter restarted: continue our timeline after a gap
                self.index_offset = self.stream_index - block.first_index
                with self.store.transaction() as con:
                    self.store.set_meta(con, "index_offset", str(self.index_offset))
                    self.store.record_gap(con, self.stream_index, -1, block.reason or "reboot")
                idx = self.stream_index
                block_samples = block.samples
                gap = -1
        else:
            block_samples = block.samples
            if idx > self.stream_index:
                lost = idx - self.stream_index
                gap = lost if gap >= 0 else -1
                with self.store.transaction() as con:
                    self.store.record_gap(con, self.stream_index, lost,
                                          block.reason or "sequence_gap")
                self.metrics.errors.labels("wim_gap").inc()
        if block_samples.shape[0] == 0:
            return
        wall = block.station_time_utc.timestamp()
        dev_end = block.device_time_utc + timedelta(seconds=block.n_samples / self.fs)
        self.linker.wim_offset.add((dev_end - self.clock.at_wall(wall)).total_seconds())
        try:
            self.journal.append(idx, block_samples, gap)
        except JournalError as exc:  # weighing goes on; only a crash now would lose data
            self.metrics.errors.labels("journal").inc()
            self.stages.failed("journal", str(exc))
        else:
            self.stages.succeeded("journal")
        self._weigh(idx, block_samples, gap)
        self.metrics.samples.inc(block_samples.shape[0])

    def run(self, stop: threading.Event, max_vehicles: int | None = None,
            devices_file: Path | None = None) -> None:
        """Run until ``stop`` is set, or ``max_vehicles`` passages were committed by this
        run (then pending cases are sealed before it returns)."""
        seal_stop = threading.Event()
        sealer = threading.Thread(target=self._sealer_loop, args=(seal_stop,),
                                  name="station-sealer", daemon=True)
        upload_stop = threading.Event()
        uploader: threading.Thread | None = None
        last_scan = 0.0
        last_devices = 0.0
        last_gauges = 0.0
        try:
            self._recover()
            self._replay()
            self._advance_pending()
            sealer.start()
            if self.center is not None:  # never waited on by the pipeline
                uploader = threading.Thread(target=self.center.run, args=(upload_stop,),
                                            name="station-uploader", daemon=True)
                uploader.start()
            self._start_grabbers()
            self.source = StreamSampleSource.from_url(self.wim_url)
            while not stop.is_set():
                block = self.source.read_block(self.cfg.wim.read_timeout_s)
                if block is not None:
                    self._on_block_live(block)
                now = time.monotonic()
                if now - last_scan > 0.05:
                    self.linker.scan()
                    last_scan = now
                    self._advance_pending()
                    self._collect_seals()
                    self._idle_advance()
                if now - last_gauges > 1.0:
                    last_gauges = now
                    self.journal.prune(self.durable.index)
                    self._sync_service()
                    self._update_gauges()
                    self._drop_stale_frames()
                if devices_file is not None and now - last_devices > 1.0:
                    last_devices = now
                    self._read_traffic_end(devices_file)
                if max_vehicles is not None and self.run_passages >= max_vehicles:
                    break
                if self._traffic_done():
                    break
            self._advance_pending(final=self._traffic_done())
            self._drain_seals(timeout_s=120.0 if not stop.is_set() else 5.0)
            self._sync_service(final=True)
            if self.center is not None and not stop.is_set():
                self._drain_uploads(UPLOAD_DRAIN_S)
        except BaseException as exc:
            self.failure = exc
            LOG.exception("station pipeline failed")
            raise
        finally:
            seal_stop.set()
            upload_stop.set()
            self.seal_queue.put(None)
            if sealer.is_alive():
                sealer.join(timeout=10)
            if uploader is not None and uploader.is_alive():
                uploader.join(timeout=10)
            self._collect_seals()
            self.close()

    def _start_grabbers(self) -> None:
        from zhichao.station.cameras import CameraGrabber

        for c in self.cfg.cameras:
            if c.url:
                self.grabbers.append(CameraGrabber(
                    c.camera_id, c.url, self.cfg.camera_spool(c), self.clock,
                    max_fps=c.max_fps, latency_s=c.latency_s).start())

    def _sync_service(self, final: bool = False) -> None:
        """Copy committed passages and sealed packages into the service database."""
        if self.service is None:
            return
        for _ in range(1000 if final else 1):
            try:
                done = self.service.sync(self.store)
            except Exception:
                LOG.exception("service sync failed (retried)")
                self.metrics.errors.labels("service_sync").inc()
                return
            if not final or not any(done.values()):
                return

    def _read_traffic_end(self, path: Path) -> None:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        end = info.get("traffic_end_index")
        self.traffic_end_index = None if end is None else int(end)

    def _traffic_done(self) -> bool:
        """Simulated traffic is over: the stream is 20 s past its last vehicle and every
        weighed vehicle is committed."""
        end = self.traffic_end_index
        return (end is not None and self.stream_index > end + 20 * self.fs
                and not self.pending and self.proc is not None)

    def _drain_uploads(self, timeout_s: float) -> None:
        """At the end of a bounded run, give the uploader a moment to empty the outbox
        (what is left stays queued for the next start)."""
        assert self.center is not None
        if not self.center.wait_drained(timeout_s):
            LOG.warning("upload backlog left at exit", extra={"fields": self.center.status()})

    def _drain_seals(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._collect_seals()
            if not self.store.pending_cases() or self.sealing_stopped is not None:
                return
            time.sleep(0.05)

    def _drop_stale_frames(self) -> None:
        if self.epoch is None:
            return
        horizon = self._stream_time() - timedelta(seconds=120)
        for f in self.linker.stale(horizon):
            if f.camera_id in self._url_cameras:  # continuous frames: not kept
                f.path.unlink(missing_ok=True)
                self.linker.forget(f)
                continue
            dst = self.frames_dir / "unlinked" / f.path.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                shutil.move(f.path, dst)
            self.linker.forget(f)
            self.metrics.unlinked_frames.inc()

    def _update_gauges(self) -> None:
        c = self.store.counts()
        self.metrics.outbox_depth.set(self.center.pending() if self.center is not None
                                      else c["outbox_pending"])
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
        return {"status": "degraded" if self.sealing_stopped or c["alarms_active"] else "ok",
                "time_utc": utc_text(), "station_id": self.cfg.station.station_id,
                "stream_time_utc": None if self.epoch is None else utc_text(
                    self._stream_time()),
                "counts": c, "run_passages": self.run_passages, "wim": wim,
                "clock_offsets_ms": self.linker.offsets_ms(),
                "cameras": [g.health() for g in self.grabbers],
                "sealing_stopped": self.sealing_stopped, "recovery": self.recovery,
                "alarms": self.read_store.active_alarms(),
                "device": self.device_snapshot,
                "upload": (self.center.status() if self.center is not None else
                           {"center_url": None, "pending": c["outbox_pending"],
                            "last_upload_utc": None}),
                "pending": len(self.pending)}

    def close(self) -> None:
        self.health_snapshot = self.health()
        self._closed = True
        if self.source is not None:
            self.source.close()
        for g in self.grabbers:
            g.close()
        if self.plates is not None:
            self.plates.close()
        self.journal.close()
        self.sealer.close()
        self.store.close()
        self.read_store.close()


def _sha256_file(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
