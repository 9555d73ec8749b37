"""Where a restarted station resumes weighing: the durable position.

A restart replays the journal from the durable position with a lane processor restored to
its state there, so every vehicle after it is weighed bit for bit as in an uninterrupted
run. Only a block boundary where the processor was *quiescent* (no pulse, hit, track or
vehicle in progress: :meth:`~zhichao.weighing.stream.LaneProcessor.is_quiescent`) carries
a state that can do that (:class:`~zhichao.weighing.stream.LaneSnapshot`); a slow truck
between two axles has no open pulse but is not quiescent. :class:`DurablePosition` keeps
the quiescent points of the last :data:`RING_S` seconds (and always the newest older one:
a busy lane may have no other), picks the point a commit may move to, and stores it in the
station's meta table in the caller's transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import deque
from collections.abc import Callable

from zhichao.station.store import StationStore
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.pulses import DetectorSnapshot
from zhichao.weighing.stream import LaneProcessor, LaneSnapshot

LOG = logging.getLogger("zhichao.station")
RING_S = 120.0  # quiescent points kept (plus the newest older one)
LANE_STATE_KEY = "durable_lane_state"  # the lane processor's whole state at the position
DETECTOR_STATE_KEY = "durable_detector_state"  # earlier versions: the detector's state only

# makes a processor for the stream from a sample index, optionally restored
NewProcessor = Callable[..., LaneProcessor]


class DurablePosition:
    def __init__(self, store: StationStore, sample_rate_hz: float) -> None:
        self.store = store
        self.fs = sample_rate_hz
        self.index = int(store.get_meta("durable_index") or 0)
        self.points: deque[tuple[int, LaneSnapshot]] = deque()
        self.resumed_exactly: bool | None = None  # how the last restore went

    def note(self, proc: LaneProcessor, stream_index: int) -> None:
        """After a block: remember the state if the processor is quiescent; forget points
        older than the ring except the newest of them."""
        if proc.is_quiescent():
            self.points.append((stream_index, proc.lane_snapshot()))
        horizon = stream_index - RING_S * self.fs
        while len(self.points) > 1 and self.points[1][0] < horizon:
            self.points.popleft()

    def point(self, target: int) -> tuple[int, str] | None:
        """The newest quiescent point in [index, target] with its state (JSON), or None
        when there is none (the position then stays where it is)."""
        best: tuple[int, LaneSnapshot] | None = None
        for idx, snap in self.points:
            if self.index <= idx <= target:
                best = (idx, snap)
            elif idx > target:
                break
        if best is None:
            return None
        return best[0], json.dumps(best[1].to_json())

    def save(self, con: sqlite3.Connection, index: int, state_json: str) -> None:
        """Store the position in the caller's transaction; :attr:`index` follows once the
        caller has committed (:meth:`moved`)."""
        self.store.set_meta(con, "durable_index", str(index))
        self.store.set_meta(con, LANE_STATE_KEY, state_json)
        self.store.set_meta(con, DETECTOR_STATE_KEY, "")

    def moved(self, index: int) -> None:
        self.index = index

    def restored_processor(self, new_processor: NewProcessor) -> LaneProcessor:
        """A processor for the journal replay from :attr:`index`: restored to the stored
        lane state (bit for bit the uninterrupted weighing); with only a detector state (a
        data folder of an earlier version), none, or one of other settings (a new
        profile), a detector-restored or fresh one (it converges)."""
        start = max(self.index, 0)
        self.resumed_exactly = False
        for key in (LANE_STATE_KEY, DETECTOR_STATE_KEY):
            raw = self.store.get_meta(key)
            if not raw:
                continue
            try:
                if key == LANE_STATE_KEY:
                    proc = new_processor(start, lane=LaneSnapshot.from_json(json.loads(raw)))
                else:
                    proc = new_processor(
                        start, detector=DetectorSnapshot.from_json(json.loads(raw)))
            except (ValueError, WeighingError) as exc:
                LOG.warning("stored weighing state not usable; resuming with a fresh "
                            "detector", extra={"fields": {"key": key, "error": str(exc)}})
                continue
            self.resumed_exactly = key == LANE_STATE_KEY
            return proc
        return new_processor(start)
