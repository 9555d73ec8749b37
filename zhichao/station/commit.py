"""The commit step: one weighed, linked (and read) vehicle becomes a stored passage.

:meth:`Committer.commit` runs its named steps in order:

1. :meth:`~Committer.observe_drift` — the lane's drift monitor sees the vehicle (once, in
   weighing order) and may mark it;
2. :meth:`~Committer.frame_files` — where each linked frame will be kept;
3. :meth:`~Committer.case_material` — for a measured overload: the raw waveform and
   everything its package needs;
4. :meth:`~Committer.passage_row` — the ``passages`` row (device usability, who reviews);
5. :meth:`~Committer.store_passage` — one transaction: passage, case, the passage's signed
   record in the outbox, the durable position, the WIM offset, the drift state and any
   new drift alarm;
6. :meth:`~Committer.move_frames` — the frames leave the spool, each whole and durable
   before the spool's copy goes (:func:`move_frame`; a kill before or during it is
   reconciled at start-up);
7. :meth:`~Committer.count` — metrics, the recent list, the log line.

A full disk (:func:`zhichao.station.diskspace.is_disk_full`) before or inside step 5
leaves nothing stored: the error reaches the caller, which keeps the vehicle and tries
its commit again once there is room (step 1 is not repeated: :attr:`Pending.observed`).
After step 5 the passage is stored: frames that cannot be moved for want of space wait
in :attr:`Committer.unmoved` (:meth:`~Committer.move_unmoved`, and at start-up) and
:attr:`Committer.disk_error` says why.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhichao.calibration.drift import DriftAlarm
from zhichao.common import fsync_dir, write_atomic
from zhichao.evidence._util import parse_time
from zhichao.station.clock import Clock
from zhichao.station.clockcheck import ClockMonitor
from zhichao.station.config import StationConfig
from zhichao.station.device import DRIFT_ALARM, DRIFT_STATE_KEY, DeviceRegister, reasons_json
from zhichao.station.diskspace import is_disk_full
from zhichao.station.linking import FrameLinker
from zhichao.station.messages import FrameFile, PassageCommit
from zhichao.station.ops import StationMetrics
from zhichao.station.passage import Pending, clean_json, needs_human, opens_case
from zhichao.station.plates import PlateRead
from zhichao.station.resume import DurablePosition
from zhichao.station.sealing import CaseMaterial, material_to_json
from zhichao.station.store import PassageRow, StationStore
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station")
WAVEFORM_MARGIN_S = 0.5
NO_PLATE = PlateRead(None, None, None, False)

# (first index, samples) of the blocks weighed in the last RING_S seconds
Ring = deque[tuple[int, npt.NDArray[np.float32]]]


class Committer:
    """Stores passages for the pipeline thread (the store's only writer)."""

    def __init__(self, cfg: StationConfig, store: StationStore, device: DeviceRegister,
                 linker: FrameLinker, durable: DurablePosition, clock: Clock,
                 metrics: StationMetrics, ring: Ring, station_key: Ed25519PrivateKey,
                 reference: ClockMonitor) -> None:
        self.cfg = cfg
        self.key = station_key  # signs each passage's outbox item
        self.store = store
        self.device = device
        self.linker = linker
        self.durable = durable
        self.clock = clock
        self.reference = reference  # the time-source checks that cover a passage
        self.metrics = metrics
        self.ring = ring
        self.fs = cfg.wim.sensor.sample_rate_hz
        self.frames_dir = cfg.data_dir / "frames"
        self.waveforms_dir = cfg.data_dir / "waveforms"
        self.waveforms_dir.mkdir(parents=True, exist_ok=True)
        self.committed_first = int(store.get_meta("committed_first_sample") or -1)
        self.device_snapshot = device.snapshot()
        self.run_passages = 0
        self.run_cases = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self.unmoved: list[FrameFile] = []  # stored passages' frames still in a spool
        self.disk_error: str | None = None  # why frames wait in unmoved, until read

    def commit(self, p: Pending, resume_target: int) -> PassageCommit:
        """Store ``p``; the durable position may move up to ``resume_target`` (the first
        sample of the next uncommitted vehicle, or the stream's end)."""
        t0 = time.perf_counter()
        v, new_alarms, drift_changed = self.observe_drift(p)
        frames = self.frame_files(p, v)
        material = self.case_material(p, v, frames)
        row = self.passage_row(p, v, frames)
        self.store_passage(row, material, resume_target, new_alarms, drift_changed)
        try:
            self.move_frames(frames)
        except Exception as exc:  # stored: its frames wait for room (or the next start)
            if not is_disk_full(exc):
                raise
            self.disk_error = f"moving the frames of {p.key}: {exc}"
            self.unmoved.extend(f for f in frames if f.spool_path.exists())
        done = PassageCommit(row, material, frames)
        self.count(p, v, done, t0)
        return done

    # ------------------------------------------------------------------ the steps
    def observe_drift(self, p: Pending) -> tuple[WeighedVehicle, list[DriftAlarm], bool]:
        """The drift monitor sees every vehicle once, in weighing order; its state is
        committed with the passage."""
        if p.observed is None:
            p.observed = self.device.process(p.vehicle)
        v, new_alarms, drift_changed = p.observed
        p.record = clean_json({**v.to_dict(), **p.extra})
        return v, new_alarms, drift_changed

    def frame_files(self, p: Pending, v: WeighedVehicle) -> tuple[FrameFile, ...]:
        day = v.time_utc[:10].replace("-", "")
        return tuple(FrameFile(f.camera_id, f.role, f.camera_time, f.ref_time or f.camera_time,
                               f.path, self.frames_dir / day / p.key / f.path.name)
                     for f, _st in p.frames.values() if f is not None)

    def case_material(self, p: Pending, v: WeighedVehicle, frames: tuple[FrameFile, ...]
                      ) -> CaseMaterial | None:
        """Only a measured overload opens a case: its waveform is written now and its
        package's material committed with the passage."""
        if not opens_case(v):
            return None
        plate = p.plate or NO_PLATE
        clocks = self.reference.clock_sync(parse_time(v.time_utc, "time_utc"),
                                           self.linker.offsets_ms())
        return CaseMaterial(p.key, p.record, plate.for_evidence(),
                            tuple(f.image() for f in frames), clocks,
                            self.write_waveform(p), self.device.evidence_json(v.time_utc),
                            clips=tuple(r.to_json() for r in p.clips))

    def passage_row(self, p: Pending, v: WeighedVehicle, frames: tuple[FrameFile, ...]
                    ) -> PassageRow:
        use = self.device.usability(v.time_utc)
        plate = p.plate
        return PassageRow(
            passage_key=p.key, site_id=v.site_id, lane_id=v.lane_id, time_utc=v.time_utc,
            first_sample=v.first_sample, last_sample=v.last_sample, axle_count=v.axle_count,
            gross_weight_kg=v.gross_weight_kg, vehicle_class=v.vehicle_class,
            limit_kg=v.limit_kg, verdict=v.verdict, overloaded=v.overloaded, flags=v.flags,
            record=p.record, frame_status=self.frame_status(p),
            frames=[f.to_json() for f in frames],
            plate=None if plate is None else plate.plate,
            plate_colour=None if plate is None else plate.colour,
            plate_confidence=None if plate is None else plate.confidence,
            plate_accepted=None if plate is None else plate.accepted,
            plate_review=[] if plate is None else list(plate.review_codes),
            plate_record=None if plate is None else plate.record(),
            review_required=needs_human(v) or not use.usable,
            device_reasons=reasons_json(use.reasons))

    def store_passage(self, row: PassageRow, material: CaseMaterial | None,
                      resume_target: int, new_alarms: list[DriftAlarm],
                      drift_changed: bool) -> None:
        """One transaction. Every vehicle before ``resume_target`` is committed now, so a
        restart may resume from any quiescent point up to there (re-weighed vehicles are
        dropped)."""
        point = self.durable.point(resume_target)
        resume, state_json = point if point is not None else (self.durable.index, "")
        with self.store.transaction() as con:
            self.store.insert_passage(con, row)
            if material is not None:
                self.store.insert_case(con, row.passage_key, material_to_json(material))
            self.store.enqueue_passage(con, row.record, self.cfg.station.station_id, self.key)
            self.store.set_meta(con, "committed_first_sample", str(row.first_sample))
            if point is not None and resume != self.durable.index:
                self.durable.save(con, resume, state_json)
            off = self.linker.wim_offset.offset_s
            if off is not None and self.linker.wim_offset.settled:  # never a starved guess
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
        self.committed_first = row.first_sample
        self.durable.moved(resume)

    def move_frames(self, frames: tuple[FrameFile, ...]) -> None:
        """After the commit; a kill before this is reconciled on start
        (:func:`archive_committed_frames`)."""
        for f in frames:
            move_frame(f.spool_path, f.path)
            self.linker.forget_file(f.camera_id, f.spool_path)

    def move_unmoved(self) -> None:
        """Move the frames a full disk left in their spools (disk errors are raised)."""
        while self.unmoved:
            f = self.unmoved[0]
            if f.spool_path.exists():
                move_frame(f.spool_path, f.path)
            self.linker.forget_file(f.camera_id, f.spool_path)
            self.unmoved.pop(0)

    def count(self, p: Pending, v: WeighedVehicle, done: PassageCommit, t0: float) -> None:
        row = done.row
        self.metrics.stage_latency.labels("database").observe(time.perf_counter() - t0)
        self.metrics.end_to_end.observe(time.perf_counter() - p.t_emitted)
        self.metrics.passages.inc()
        if v.overloaded:
            self.metrics.overloads.inc()
        if row.frame_status != "linked":
            self.metrics.no_frame.inc()
        self.run_passages += 1
        if done.material is not None:
            self.run_cases += 1
        self.recent.append({"time_utc": v.time_utc, "key": p.key, "axles": v.axle_count,
                            "gross_kg": v.gross_weight_kg, "limit_kg": v.limit_kg,
                            "verdict": v.verdict, "overloaded": v.overloaded,
                            "plate": row.plate, "frame": row.frame_status,
                            "flags": v.flags})
        # no plate text in the log: the log is never purged (retention removes the plate
        # from station.db, zhichao.station.retention); the passage key finds it there
        LOG.info("passage", extra={"fields": {
            "passage": p.key, "time_utc": v.time_utc, "axles": v.axle_count,
            "gross_kg": v.gross_weight_kg, "verdict": v.verdict,
            "plate_read": row.plate is not None,
            "frame_status": row.frame_status, "offsets_ms": self.linker.offsets_ms()}})

    # ------------------------------------------------------------------ helpers
    def frame_status(self, p: Pending) -> str:
        front = [(f, st) for cid, (f, st) in p.frames.items()
                 if self.linker.cameras[cid].role == "front"]
        if not front:
            return "no_frame"
        if any(f is not None for f, _ in front):
            return "linked"
        return "ambiguous_frame" if any(st == "ambiguous_frame" for _, st in front) \
            else "no_frame"

    def write_waveform(self, p: Pending) -> str | None:
        v = p.vehicle
        lo = v.first_sample - round(WAVEFORM_MARGIN_S * self.fs)
        hi = v.last_sample + round(WAVEFORM_MARGIN_S * self.fs)
        parts = [s[max(0, lo - a):max(0, hi - a)] for a, s in self.ring
                 if a < hi and a + s.shape[0] > lo]
        if not parts:
            return None
        buf = io.BytesIO()
        np.savez(buf, samples=np.concatenate(parts), first_index=np.int64(max(lo, 0)),
                 sample_rate_hz=np.float64(self.fs))
        path = self.waveforms_dir / f"{p.key}.npz"
        write_atomic(path, buf.getvalue())
        return str(path)


def remove_dead_waveform_temporaries(waveforms_dir: Path) -> int:
    """At start-up (the pipeline is the only writer of waveforms): temporary files of a
    waveform write a kill interrupted (its passage was not committed; it is weighed and
    written again). How many were removed."""
    dead = list(waveforms_dir.glob(".*.tmp"))
    for path in dead:
        path.unlink(missing_ok=True)
    return len(dead)


def move_frame(src: Path, dst: Path) -> None:
    """Move a frame from its spool into its passage's folder so that ``dst`` is whole and
    on disk before ``src`` goes: on one filesystem fsync and rename; across filesystems a
    copy to a temporary name beside ``dst``, fsync, rename, then the source is removed.
    A kill at any point leaves the source (authoritative: :func:`archive_committed_frames`
    moves it again) or a whole ``dst``; ``dst`` is never a truncated copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fh:  # what the camera wrote reaches the disk first
        os.fsync(fh.fileno())
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.part")
        try:
            with open(src, "rb") as fi, open(tmp, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
                fo.flush()
                os.fsync(fo.fileno())
        except OSError:  # a full disk: the partial copy must not keep its space
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
        src.unlink()
        return
    fsync_dir(dst.parent)


def archive_committed_frames(store: StationStore) -> None:
    """Frames of committed passages still in a spool (killed between the commit and the
    end of their move) are moved now. The spool's file is authoritative: a ``dst``
    beside it may be a copy a kill cut short, so it is made again."""
    for f in store.recent_frames(500):
        src, dst = Path(f["spool_path"]), Path(f["path"])
        if src.exists():
            move_frame(src, dst)
