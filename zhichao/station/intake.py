"""The intake and weighing step: device blocks → the station's timeline → journal → weighing.

:class:`Intake` puts each block the WIM device delivers on the station's sample timeline
(an overlap is cut off, a device counter restart continues after a gap, lost samples are a
recorded gap), appends it to the journal before it is weighed, feeds the lane processor
and hands every weighed vehicle to ``on_vehicle``; it remembers the quiescent points a
commit may move the durable position to (:class:`~zhichao.station.resume.DurablePosition`)
and keeps the last :data:`~zhichao.station.resume.RING_S` seconds of samples (the
waveforms of cases). On start-up :meth:`Intake.replay` weighs the journal again from the
durable position with the processor restored to its state there.

A restarted station knows where the device's own counter stands against its timeline
(:class:`DeviceAnchor`, stored before the block it describes is journalled): while the
device is still in the same power-up (same ``boot_id``, its clock agreeing with its
counter), the blocks of the new run are placed by their device index, so what a sample
ring sends again (samples already journalled and weighed) is dropped, never weighed a
second time; the ring driver is told where to resume (:meth:`Intake.resume_point`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.devices.reasons import REASON_FORMAT_CHANGE, REASON_REBOOT
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
ANCHOR_KEY = "device_anchor"  # meta: the device's counter against the station's timeline
ANCHOR_REFRESH_S = 60.0  # the anchor's reference sample is renewed this often [s]
#: a device clock that disagrees with its counter (against the anchor) by more than this
#: plus the relative tolerance is another power-up, whatever its boot id says: a clock
#: corrected by seconds while the station was down (an NTP step; a ring driver stamps the
#: rows it reads back from the clock as it is now) is the same power-up; a power-up that
#: repeats the boot id with its counter restarted is off by the uptime at the anchor,
#: which the anchor's renewal every minute keeps above this but in a power-up's first
#: half minute [s]
ANCHOR_CLOCK_TOLERANCE_S = 30.0
ANCHOR_CLOCK_TOLERANCE_REL = 1e-3  # crystal drift between counter and clock, generous
REASON_STATION_RESTART = "station_restart"  # samples the device made while none read
#: a restarted device's clock continues the timeline, without a known WIM offset, only
#: when it is within this of the station's clock at the block's arrival [s]
DEVICE_CLOCK_PLAUSIBLE_S = 60.0


@dataclass(frozen=True)
class DeviceAnchor:
    """Where the device's counter stands against the station's timeline.

    station index = device index + ``offset_samples`` for every sample of power-up
    ``boot_id``; ``device_index`` had the device time ``device_time_utc`` (to tell a
    power-up whose boot id repeats an earlier one: its clock disagrees with its counter).
    ``break_index``: the station index where this placement's samples begin after a break
    the weighing core must be told of (a reboot, a counter restart: a gap of unknown
    length); None when it continues what was journalled before it. The anchor is stored
    before its first block is journalled, so a run killed in between leaves the break here
    for the next run to feed.
    """

    boot_id: int
    offset_samples: int
    device_index: int
    device_time_utc: datetime
    break_index: int | None = None

    def to_json(self) -> str:
        raw: dict[str, Any] = {"boot_id": self.boot_id,
                               "offset_samples": self.offset_samples,
                               "device_index": self.device_index,
                               "device_time_utc": self.device_time_utc.isoformat()}
        if self.break_index is not None:
            raw["break_index"] = self.break_index
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str | None) -> DeviceAnchor | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            brk = raw.get("break_index")
            return cls(int(raw["boot_id"]), int(raw["offset_samples"]),
                       int(raw["device_index"]),
                       datetime.fromisoformat(raw["device_time_utc"]),
                       None if brk is None else int(brk))
        except (ValueError, KeyError, TypeError) as exc:
            LOG.warning("stored device anchor not usable", extra={"fields": {
                "error": repr(exc)}})
            return None

    def continued_by(self, block: Any) -> bool:
        """Whether ``block`` comes from the same power-up: the same boot id, and the
        device clock agreeing with the counter since the anchor."""
        if int(block.boot_id) != self.boot_id:
            return False
        counted_s = (int(block.device_index) - self.device_index) / float(block.sample_rate_hz)
        clock_s = (block.device_time_utc - self.device_time_utc).total_seconds()
        return bool(abs(clock_s - counted_s) <= (ANCHOR_CLOCK_TOLERANCE_S
                                                 + ANCHOR_CLOCK_TOLERANCE_REL * abs(counted_s)))


RING_HOLD_MAX_S = 900.0
"""Stream seconds of samples the ring keeps at most for vehicles waiting for their commit
(a lane whose plate workers start slowly at 20x speed waited longer than RING_S, and a
case was sealed without its waveform); 1 kHz × 8 channels: about 29 MB."""


def evict(ring: Ring, stream_index: int, fs: float, held: int | None) -> None:
    """Drop the ring's blocks older than :data:`RING_S` before ``stream_index``, keeping
    those from ``held`` on (a vehicle waiting for its commit needs them for its waveform),
    at most :data:`RING_HOLD_MAX_S` back."""
    horizon = stream_index - RING_S * fs
    if held is not None:
        horizon = max(min(horizon, held), stream_index - RING_HOLD_MAX_S * fs)
    while ring and ring[0][0] + ring[0][1].shape[0] < horizon:
        ring.popleft()


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
        # the lowest stream index a vehicle not yet committed needs in the ring (its
        # waveform is written at its commit, which waits for frames and plates)
        self.hold_from: Callable[[], int | None] | None = None
        self.replayed_samples = 0
        self.anchor = DeviceAnchor.from_json(store.get_meta(ANCHOR_KEY))
        self.run_started = False  # whether this run has received a block
        # this run's blocks of this power-up continue the journal: an overlap is dropped
        self.continuing_boot: int | None = None
        self.new_power_up = False  # this run's first block is of another power-up
        self.kept_this_run = False

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
        # after a gap of unknown length (a device restart) the block lies where
        # :meth:`_place_after_break` (or the device's tracker) put it: the timeline moves on
        span = max(0, first - self.stream_index) if gap < 0 else 0
        vehicles = self.proc.feed(samples, gap_before_samples=gap,
                                  unknown_gap_span_samples=span)
        self.metrics.stage_latency.labels("weighing").observe(time.perf_counter() - t0)
        self.stream_index = first + samples.shape[0]
        self.ring.append((first, samples))
        self.durable.note(self.proc, self.stream_index)
        evict(self.ring, self.stream_index, self.fs,
              self.hold_from() if self.hold_from is not None else None)
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
            anchor = self._anchor_of(block)
            self.store.set_meta(con, ANCHOR_KEY, anchor.to_json())
            self.durable.save(con, idx, json.dumps(fresh.lane_snapshot().to_json()))
        self.durable.moved(idx)
        self.anchor = anchor
        if self.proc is None:
            self.proc, self.stream_index = fresh, idx

    def resume_point(self) -> tuple[int, int] | None:
        """(boot id, device index) of the first sample this station has not journalled,
        for a driver that can read back (a sample ring); None when not known."""
        if self.anchor is None or self.epoch is None:
            return None
        start = self.stream_index if self.proc is not None else max(self.durable.index, 0)
        if self.anchor.break_index is not None:
            # this power-up begins after a break the journal may not reach yet: none of
            # its samples lies before the break (a negative device index otherwise)
            start = max(start, self.anchor.break_index)
        return self.anchor.boot_id, start - self.anchor.offset_samples

    def _first_of_run(self, block: Any) -> None:
        """The first block of this run: a device still in the power-up of the stored
        anchor is placed by its own counter (the tracker of a new run starts at 0)."""
        anchor = self.anchor
        same = anchor is not None and anchor.continued_by(block)
        # another power-up than the anchor's (a data folder without an anchor: the old rule)
        self.new_power_up = anchor is not None and self.epoch is not None and not same
        if anchor is None or self.epoch is None or not same:
            return
        self.index_offset = anchor.offset_samples - (int(block.first_index)
                                                     - int(block.device_index))
        self.continuing_boot = anchor.boot_id

    def _anchor_of(self, block: Any) -> DeviceAnchor:
        return DeviceAnchor(int(block.boot_id),
                            int(block.first_index) + self.index_offset
                            - int(block.device_index),
                            int(block.device_index), block.device_time_utc)

    def _keep_anchor(self, block: Any, idx: int, gap: int) -> None:
        """Store where the device's counter stands before the block (its samples at
        station index ``idx``, after ``gap``) is journalled: when it moved (a reboot, a
        counter restart: with the break at ``idx`` where ``gap`` is of unknown length) and
        every minute, for the clock check."""
        new = self._anchor_of(block)
        a = self.anchor
        same = a is not None and a.boot_id == new.boot_id \
            and a.offset_samples == new.offset_samples
        if same and a is not None and 0 <= new.device_index - a.device_index < (
                ANCHOR_REFRESH_S * float(block.sample_rate_hz)):
            return
        if same and a is not None:
            new = replace(new, break_index=a.break_index)
        elif gap < 0:
            new = replace(new, break_index=idx)
        with self.store.transaction() as con:
            self.store.set_meta(con, ANCHOR_KEY, new.to_json())
            self.store.set_meta(con, "index_offset", str(self.index_offset))
        self.anchor = new

    def _place_after_break(self, block: Any) -> int:
        """The station index of ``block``'s first sample after a break of unknown length
        (the device restarted: its counter says nothing of the time between), so the
        timeline (and every later vehicle's time) keeps the time the device was away.

        The timeline was founded on the device's clock (the epoch is its time at the first
        block), so the device's clock continues it where it is plausible: not before the
        journal's end, and not later than the station's clock says the block lies (its
        arrival plus the WIM offset known before the break, stream time − station time,
        :attr:`FrameLinker.wim_offset`; 2 s of slack) — the device tracker's rule across a
        reboot. A device clock outside that (reset at power-up, or running ahead) gives
        way to the station's placement; a stale offset (the station clock stepped, or was
        corrected while the station was down) thus moves nothing a plausible device clock
        says. Without a known offset the device's clock is taken when it is within
        :data:`DEVICE_CLOCK_PLAUSIBLE_S` of the station's at the block's arrival, else the
        journal's end (the time away is then lost from the timeline). Never before the
        journal's end."""
        assert self.epoch is not None
        n = int(block.samples.shape[0])
        arrival = self.clock.at_wall(block.station_time_utc.timestamp())
        by_device = round((block.device_time_utc - self.epoch).total_seconds() * self.fs)
        off = self.linker.wim_offset.offset_s
        if off is None:
            plausible = abs((block.device_time_utc - arrival).total_seconds()) <= (
                DEVICE_CLOCK_PLAUSIBLE_S)
            placed = by_device if plausible else self.stream_index
        else:
            by_station = round((arrival + timedelta(seconds=off) - self.epoch)
                               .total_seconds() * self.fs) - n
            plausible = self.stream_index <= by_device <= by_station + round(2.0 * self.fs)
            placed = by_device if plausible else by_station
        if not plausible:
            LOG.warning("device clock not plausible after a restart; placed by the station "
                        "clock", extra={"fields": {
                            "device_time_utc": block.device_time_utc.isoformat(),
                            "arrival_utc": arrival.isoformat(), "wim_offset_s": off}})
        return max(self.stream_index, placed)

    def _break(self, block: Any) -> tuple[int, npt.NDArray[np.float32], int]:
        """A new power-up (or a counter restart): the timeline continues after a gap of
        unknown length, where :meth:`_place_after_break` puts the block; the gap is
        recorded (replacing the same gap of a run killed before it journalled the block)."""
        placed = self._place_after_break(block)
        self.index_offset = placed - int(block.first_index)
        rebooted = self.new_power_up or (self.anchor is not None
                                         and int(block.boot_id) != self.anchor.boot_id)
        with self.store.transaction() as con:
            self.store.set_meta(con, "index_offset", str(self.index_offset))
            self.store.record_gap(con, self.stream_index, -1, REASON_REBOOT if rebooted
                                  else block.reason or "reboot", supersedes=True)
        self.metrics.errors.labels("wim_gap").inc()
        return placed, block.samples, -1

    def _align(self, block: Any, idx: int) -> tuple[int, npt.NDArray[np.float32], int]:
        """The block's samples on the station's timeline: an overlap with what was weighed
        is cut off, a device counter restart continues after a gap, lost samples are a
        recorded gap. (first index, samples, gap before them)."""
        gap = int(block.gap_before_samples)
        continuing = (self.continuing_boot is not None
                      and int(block.boot_id) == self.continuing_boot
                      and block.reason not in (REASON_REBOOT, REASON_FORMAT_CHANGE))
        a = self.anchor
        if continuing and a is not None and a.break_index is not None \
                and a.break_index >= self.stream_index and idx >= self.stream_index \
                and not self.kept_this_run:
            # an earlier run stored this power-up's anchor after a break (and its gap
            # row) and was killed before it journalled the block: the break is fed again
            return idx, block.samples, -1
        if self.new_power_up and not self.kept_this_run:
            # the first block of this run is of another power-up than the stored anchor's
            # (its counter may lie anywhere against the journal's end): a break
            return self._break(block)
        if idx < self.stream_index:
            overlap = self.stream_index - idx
            if continuing:  # sent again (a ring read back): what was journalled is dropped
                return self.stream_index, block.samples[overlap:], 0
            if overlap < block.samples.shape[0] and block.reason in (None, "start"):
                return self.stream_index, block.samples[overlap:], 0
            # the device's counter restarted: continue our timeline after a gap
            return self._break(block)
        if idx > self.stream_index:
            lost = idx - self.stream_index
            gap = lost if gap >= 0 else -1
            reason = block.reason or "sequence_gap"
            restart = continuing and not self.kept_this_run
            if restart:  # made while no station read them (older than the ring holds)
                reason, gap = REASON_STATION_RESTART, lost
            with self.store.transaction() as con:
                # a run killed before it journalled the block after its gap recorded the
                # same gap from the same point: replaced, never counted twice
                self.store.record_gap(con, self.stream_index, lost, reason,
                                      supersedes=restart)
            self.metrics.errors.labels("wim_gap").inc()
        elif gap < 0:
            # a restart the device's tracker placed right at the journal's end (it
            # estimated nothing lost): still a gap of unknown length, recorded
            rebooted = self.anchor is not None and int(block.boot_id) != self.anchor.boot_id
            with self.store.transaction() as con:
                self.store.record_gap(con, self.stream_index, -1, REASON_REBOOT if rebooted
                                      else block.reason or "reboot", supersedes=True)
            self.metrics.errors.labels("wim_gap").inc()
        return idx, block.samples, gap

    def on_block(self, block: Any) -> None:
        if not self.run_started:
            self.run_started = True
            self._first_of_run(block)
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
        self._keep_anchor(block, idx, gap)
        self.kept_this_run = True
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
