"""The linking and plate-reading step: weighed vehicles wait here for their frames.

A weighed vehicle becomes a :class:`~zhichao.station.passage.Pending` (``waiting_frames``)
with its predicted frame times; once every camera has delivered past its window, or the
wait is over, its frames are linked (:class:`~zhichao.station.linking.FrameLinker`) and,
for a plate candidate with a front or rear frame, a :class:`~zhichao.station.plates.PlateJob`
with all its plate-bearing frames (:data:`~zhichao.station.config.PLATE_ROLES`) goes to the
worker processes (``reading``); the worker's answer arrives as a
:class:`~zhichao.station.messages.PlateRead` (``ready``). The pipeline commits ready
passages in weighing order (:meth:`LinkStage.pop_ready`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from zhichao.station.alarms import StageHealth
from zhichao.station.config import PLATE_ROLES, StationConfig
from zhichao.station.linking import Frame, FrameLinker, Prediction
from zhichao.station.ops import StationMetrics
from zhichao.station.passage import Pending, clean_json, is_plate_candidate, opens_case
from zhichao.station.plates import (
    PlateJob,
    PlateRead,
    PlateWorkers,
    lane_regions,
    worker_runtime,
)
from zhichao.vision.policy import ReviewCode
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station")


def plate_job(key: str, frames: dict[str, tuple[Frame | None, str]],
              axle_count: int | None) -> PlateJob | None:
    """The plate job of a linked vehicle: every linked frame of a role that shows the plate
    (:data:`PLATE_ROLES`, front and rear), in camera order; None when it has none."""
    shown = [f for f, _status in frames.values() if f is not None and f.role in PLATE_ROLES]
    if not shown:
        return None
    return PlateJob(key, tuple(
        (str(f.path), f.camera_id, (f.ref_time or f.camera_time).isoformat()) for f in shown),
        axle_count)


def unsettled_plate(read: PlateRead, unsettled: tuple[str, ...]) -> PlateRead:
    """The plate of a vehicle linked while those devices' clock offsets were unsettled:
    never auto-accepted (its frames may show another vehicle), to review with
    :attr:`ReviewCode.LINK_UNSETTLED`."""
    if not unsettled:
        return read
    code = ReviewCode.LINK_UNSETTLED.value
    return replace(read, accepted=False, review_codes=(
        *read.review_codes, *(() if code in read.review_codes else (code,))))


UNSETTLED_ALARM_S = 30.0
"""Wall-clock seconds of unsettled clock offsets (every plate to review) before a link
opens the ``clock_offset_unsettled`` alarm. A station starting on a busy 2-core machine
was seen unsettled for about 5 s while its plate workers loaded their models."""


class LinkStage:
    def __init__(self, cfg: StationConfig, linker: FrameLinker, stages: StageHealth,
                 metrics: StationMetrics) -> None:
        self.cfg = cfg
        self.linker = linker
        self.stages = stages
        self.metrics = metrics
        self.pending: deque[Pending] = deque()
        self._unsettled: list[str] = []  # devices whose offsets were unsettled at the last link
        self.plates: PlateWorkers | None = (self._start_plate_workers()
                                            if cfg.vision.read != "none" else None)
        unset = [c.camera_id for c in cfg.cameras
                 if c.role in PLATE_ROLES and not c.lane_region]
        if self.plates is not None and unset:
            LOG.warning("cameras without a lane region: their plates are never auto-accepted "
                        "(lane_region_unset); set [[camera]] lane_region from the lane "
                        "geometry", extra={"fields": {"cameras": unset}})

    def add(self, v: WeighedVehicle, key: str, extra: dict[str, Any] | None = None) -> None:
        if any(q.key == key for q in self.pending):  # the same vehicle emitted twice
            LOG.warning("vehicle emitted twice by the weighing core; second dropped",
                        extra={"fields": {"passage": key, "axles": v.axle_count}})
            self.metrics.errors.labels("duplicate_vehicle").inc()
            return
        self.pending.append(Pending(v, key, clean_json(v.to_dict()), self._predict(v, key),
                                    extra=extra or {},
                                    wim_generation=self.linker.wim_offset.generation))
        self.metrics.vehicles_weighed.inc()

    def waveform_hold_from(self, margin_samples: int) -> int | None:
        """The lowest sample a waiting vehicle that will open a case needs for its waveform
        (its first sample less ``margin_samples``); None when none waits."""
        needed = [p.vehicle.first_sample - margin_samples for p in self.pending
                  if opens_case(p.vehicle)]
        return min(needed) if needed else None

    def _predict(self, v: WeighedVehicle, key: str) -> list[Prediction]:
        return self.linker.predict(key, datetime.fromisoformat(v.time_utc), v.speed_kmh,
                                   v.acceleration_ms2)

    def advance(self, stream_time: datetime, final: bool = False) -> None:
        """Link the vehicles whose frames are in (all of them when ``final``), submit
        their plates and collect the plates read."""
        wait = timedelta(seconds=self.cfg.linking.window_s + self.cfg.linking.wait_s)
        wim_off = timedelta(seconds=self.linker.wim_offset.offset_s or 0.0)
        now_ref = stream_time - wim_off
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
            self._link(p, neighbours)
        self._collect_plates()

    def _link(self, p: Pending, neighbours: list[Prediction]) -> None:
        t0 = time.perf_counter()
        p.frames = self.linker.link(p.predictions, neighbours)
        used = [cid for cid, (f, _st) in p.frames.items() if f is not None]
        p.unsettled = tuple(self.linker.unsettled(["wim", *used]))
        if p.wim_generation != self.linker.wim_offset.generation and "wim" not in p.unsettled:
            p.unsettled = ("wim", *p.unsettled)  # weighed on the WIM unit's old clock
        if p.unsettled:  # in the passage's record (and a case's package), plate read or not
            p.extra["frame_link_unsettled"] = list(p.unsettled)
        self._watch_offsets(p.key)
        self.metrics.stage_latency.labels("linking").observe(time.perf_counter() - t0)
        job = plate_job(p.key, p.frames, p.vehicle.axle_count)
        if not (job and self.plates is not None and is_plate_candidate(p.vehicle, self.cfg)):
            p.state = "ready"
            return
        try:
            self.plates.submit(job)
            p.state = "reading"
        except Exception as exc:  # a broken pool: this vehicle to review, new pool
            self._plate_failed(p, exc)
            p.state = "ready"
            self._restart_plate_workers()

    def _watch_offsets(self, key: str) -> None:
        """Say when the offsets settle or move (info), and keep the alarm of offsets
        unsettled for :data:`UNSETTLED_ALARM_S` open while any is."""
        unsettled = self.linker.unsettled()
        if unsettled != self._unsettled:
            LOG.info("clock offsets %s", "unsettled: " + ", ".join(unsettled) if unsettled
                     else "settled", extra={"fields": {
                         "unsettled": unsettled, "offsets_ms": self.linker.offsets_ms(),
                         "passage": key}})
            self._unsettled = unsettled
        overdue = self.linker.overdue(UNSETTLED_ALARM_S)
        if overdue:  # every plate of a link that uses them goes to review (unsettled_plate)
            self.stages.failed("linking", f"{key}: offsets of {', '.join(overdue)} not "
                               f"settled for {UNSETTLED_ALARM_S:.0f} s or more; offsets "
                               f"{self.linker.offsets_ms()} ms")
        else:
            self.stages.succeeded("linking")

    def _collect_plates(self) -> None:
        if self.plates is None:
            return
        by_key = {q.key: q for q in self.pending}
        for key, res in self.plates.done():
            p = by_key.get(key)
            if p is None:
                continue
            if isinstance(res, BaseException):
                self._plate_failed(p, res)
            else:
                self.metrics.stage_latency.labels("plate").observe(res.latency_s or 0.0)
                self.stages.succeeded("plates")
                p.plate = unsettled_plate(res, p.unsettled)
            p.state = "ready"

    def _plate_failed(self, p: Pending, exc: BaseException) -> None:
        """The plate could not be read: the passage goes to review without a plate."""
        LOG.error("plate reading failed", extra={"fields": {
            "passage": p.key, "error": repr(exc)}})
        self.metrics.errors.labels("vision").inc()
        self.stages.failed("plates", f"{p.key}: {exc!r}")
        p.plate = unsettled_plate(PlateRead.failed(exc), p.unsettled)

    def _restart_plate_workers(self) -> None:
        if self.plates is None:
            return
        with contextlib.suppress(Exception):
            self.plates.close()
        self.plates = self._start_plate_workers()

    def _start_plate_workers(self) -> PlateWorkers:
        v = self.cfg.vision
        workers = PlateWorkers(v.workers, lane_regions(self.cfg.cameras),
                               (v.inference_backend, v.inference_precision))
        configured = f"{v.inference_backend} {v.inference_precision}"

        def say(done: Future[str | None]) -> None:
            # bfloat16 is used only where the CPU has it natively: say what runs
            if not done.cancelled() and done.exception() is None:
                LOG.info("plate workers read with %s (configured: %s)", done.result(),
                         configured, extra={"fields": {"runtime": done.result(),
                                                       "configured": configured}})

        # a pool that broke at once shows on the next job's submit, where it is handled
        with contextlib.suppress(Exception):
            workers.pool.submit(worker_runtime).add_done_callback(say)
        return workers

    def pop_ready(self) -> Iterator[Pending]:
        """The ready passages at the head, in weighing order (each removed when taken)."""
        while self.pending and self.pending[0].state == "ready":
            yield self.pending.popleft()

    def close(self) -> None:
        if self.plates is not None:
            self.plates.close()
