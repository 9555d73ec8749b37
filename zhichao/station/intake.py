"""The intake and weighing step: device blocks → the station's timeline → journal → weighing.

:class:`Intake` puts each block the WIM device delivers on the station's sample timeline
(an overlap is cut off, a device counter restart continues after a gap, lost samples are a
recorded gap), appends it to the journal before it is weighed, feeds the lane processor
and hands every weighed vehicle to ``on_vehicle``; it remembers the quiescent points a
commit may move the durable position to (:class:`~zhichao.station.resume.DurablePosition`)
and keeps the last :data:`~zhichao.station.resume.RING_S` seconds of samples (the
waveforms of cases). On start-up :meth:`Intake.replay` weighs the journal again from the
durable position with the processor restored to its state there.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.station.alarms import StageHealth
from zhichao.station.clock import Clock
from zhichao.station.commit import Ring
from zhichao.station.config import StationConfig
from zhichao.station.device import weighing_config
from zhichao.station.errors import JournalError
from zhichao.station.journal import SampleJournal
from zhichao.station.linking import FrameLinker
from zhichao.station.ops import StationMetrics
from zhichao.station.passage import lane_meta
from zhichao.station.resume import RING_S, DurablePosition
from zhichao.station.store import StationStore
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.pulses import DetectorSnapshot
from zhichao.weighing.stream import LaneProcessor, LaneSnapshot
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station")


class Intake:
    def __init__(self, cfg: StationConfig, store: StationStore, journal: SampleJournal,
                 durable: DurablePosition, linker: FrameLinker, clock: Clock,
                 profile: CalibrationProfile | None, stages: StageHealth,
                 metrics: StationMetrics, on_vehicle: Callable[[WeighedVehicle], None]
                 ) -> None:
        self.cfg = cfg
        self.store = store
        self.journal = journal
        self.durable = durable
        self.linker = linker
        self.clock = clock
        self.profile = profile
        self.stages = stages
        self.metrics = metrics
        self.on_vehicle = on_vehicle
        self.fs = cfg.wim.sensor.sample_rate_hz
        self.weighing = weighing_config(cfg)  # the device's accuracy class in its tolerance
        self.proc: LaneProcessor | None = None
        self.stream_index = 0  # next station stream index expected
        self.index_offset = int(store.get_meta("index_offset") or 0)
        epoch = store.get_meta("stream_epoch_utc")
        self.epoch: datetime | None = (datetime.fromisoformat(epoch) if epoch else None)
        self.ring: Ring = Ring()
        self.replayed_samples = 0

    def new_processor(self, start_index: int, *, lane: LaneSnapshot | None = None,
                      detector: DetectorSnapshot | None = None) -> LaneProcessor:
        assert self.epoch is not None
        return LaneProcessor(lane_meta(self.cfg, self.epoch), self.weighing,
                             profile=self.profile,
                             recording=f"station:{self.cfg.station.station_id}",
                             start_index=start_index, lane_snapshot=lane,
                             detector_snapshot=detector)

    def replay(self) -> None:
        end = self.journal.end_index
        if end is None or self.epoch is None:
            return
        start = max(self.durable.index, 0)
        self.proc = self.durable.restored_processor(self.new_processor)
        self.stream_index = start
        for block in self.journal.replay(start):
            gap = block.gap_before_samples
            if block.first_index > self.stream_index:
                gap = block.first_index - self.stream_index if gap >= 0 else -1
            self.weigh(block.first_index, block.samples, gap)
            self.replayed_samples += block.samples.shape[0]
        LOG.info("journal replayed", extra={"fields": {
            "from_index": start, "to_index": end, "samples": self.replayed_samples,
            "detector_state_restored": self.durable.resumed_exactly}})

    def weigh(self, first: int, samples: npt.NDArray[np.float32], gap: int) -> None:
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
            self.on_vehicle(v)

    def stream_time(self) -> datetime:
        assert self.epoch is not None
        return self.epoch + timedelta(seconds=self.stream_index / self.fs)

    def _start_stream(self, idx: int, block: Any) -> None:
        """The first block this station ever received: the stream's epoch, its first
        index and the fresh state there (a restart before any commit replays from the
        very first sample exactly as this run weighs it)."""
        self.epoch = block.device_time_utc - timedelta(seconds=idx / self.fs)
        fresh = self.new_processor(idx)
        with self.store.transaction() as con:
            self.store.set_meta(con, "stream_epoch_utc", self.epoch.isoformat())
            # where this station's data begin (a device counter need not start at 0)
            self.store.set_meta(con, "stream_first_index", str(idx))
            self.durable.save(con, idx, json.dumps(fresh.lane_snapshot().to_json()))
        self.durable.moved(idx)
        if self.proc is None:
            self.proc, self.stream_index = fresh, idx

    def _align(self, block: Any, idx: int) -> tuple[int, npt.NDArray[np.float32], int]:
        """The block's samples on the station's timeline: an overlap with what was weighed
        is cut off, a device counter restart continues after a gap, lost samples are a
        recorded gap. (first index, samples, gap before them)."""
        gap = int(block.gap_before_samples)
        if idx < self.stream_index:
            overlap = self.stream_index - idx
            if overlap < block.samples.shape[0] and block.reason in (None, "start"):
                return self.stream_index, block.samples[overlap:], 0
            # the device's counter restarted: continue our timeline after a gap
            self.index_offset = self.stream_index - block.first_index
            with self.store.transaction() as con:
                self.store.set_meta(con, "index_offset", str(self.index_offset))
                self.store.record_gap(con, self.stream_index, -1, block.reason or "reboot")
            return self.stream_index, block.samples, -1
        if idx > self.stream_index:
            lost = idx - self.stream_index
            gap = lost if gap >= 0 else -1
            with self.store.transaction() as con:
                self.store.record_gap(con, self.stream_index, lost,
                                      block.reason or "sequence_gap")
            self.metrics.errors.labels("wim_gap").inc()
        return idx, block.samples, gap

    def on_block(self, block: Any) -> None:
        idx = block.first_index + self.index_offset
        if self.epoch is None:
            self._start_stream(idx, block)
        if self.proc is None:
            # blocks reached an earlier run but none reached the journal (killed at once):
            # resume at the durable position; what the device sent since is a gap
            self.proc = self.durable.restored_processor(self.new_processor)
            self.stream_index = max(self.durable.index, 0)
        idx, samples, gap = self._align(block, idx)
        if samples.shape[0] == 0:
            return
        wall = block.station_time_utc.timestamp()
        # on the station's sample timeline, where its vehicles' times are (epoch + index /
        # rate, fixed at the first block): a step of the device's clock moves neither
        assert self.epoch is not None
        end = self.epoch + timedelta(seconds=(idx + samples.shape[0]) / self.fs)
        self.linker.wim_offset.add((end - self.clock.at_wall(wall)).total_seconds())
        try:
            self.journal.append(idx, samples, gap)
        except JournalError as exc:  # weighing goes on; only a crash now would lose data
            self.metrics.errors.labels("journal").inc()
            self.stages.failed("journal", str(exc))
        else:
            self.stages.succeeded("journal")
        self.weigh(idx, samples, gap)
        self.metrics.samples.inc(samples.shape[0])
