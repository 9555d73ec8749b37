"""The WIM sample source kind: raw strip-sensor samples from a data-acquisition unit.

:class:`SampleSource` is the abstract device kind. Its public :meth:`SampleSource.read_block`
owns the read deadline, reconnection with back-off, stall detection (the poll loop of
:class:`~zhichao.devices.polled.PolledSource`), bad-value checks and
the sequence bookkeeping (:class:`~zhichao.devices.tracking.SampleTracker`); a backend
implements only ``_connect``, ``_disconnect`` and ``_read_frames_internal``. The backends
are in :mod:`zhichao.devices.interfaces` (``zsf_stream``, ``modbus_samples``).

The guarantee given to the weighing core: every sample received intact is delivered
exactly once, at its true index (``first_index``), and every discontinuity — lost frames,
reconnects, reboots, FIFO overruns, rejected frames — is reported on the next block as
``gap_before_samples`` (> 0: exactly that many samples are missing; -1: unknown) with a
``reason``. A device clock step never creates a fake gap: indices come from the device's
sample counter, not its clock.

int16 samples (ZSF/1 encoding 1, the Modbus sample ring) at the int16 full scale
(−32768 or 32767 counts: a saturated ADC) are delivered, counted in health as
``saturated_samples`` (logged) and their block carries the event ``saturation``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import replace
from typing import ClassVar

import numpy as np

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Timeouts
from zhichao.devices.data import SampleBlock
from zhichao.devices.framing import ENCODING_INT16, SampleFrame
from zhichao.devices.polled import PolledSource
from zhichao.devices.reasons import REASON_BAD_VALUES
from zhichao.devices.tracking import SampleTracker

#: a block holding int16 samples at full scale (a saturated ADC); no samples lost
EVENT_SATURATION = "saturation"
INT16_FULL_SCALE_COUNTS = (-32768, 32767)


def saturated_rows(frame: SampleFrame) -> tuple[int, list[int]]:
    """Rows of an int16 frame holding a full-scale count (−32768 or 32767) on some
    channel, and those channels; (0, []) for float32 frames."""
    if frame.encoding != ENCODING_INT16 or not frame.scale > 0:
        return 0, []
    counts = np.rint(frame.samples.astype(np.float64) / frame.scale)
    low, high = INT16_FULL_SCALE_COUNTS
    hit = (counts <= low) | (counts >= high)
    if not hit.any():
        return 0, []
    return int(hit.any(axis=1).sum()), [int(c) for c in np.flatnonzero(hit.any(axis=0))]


class SampleSource(PolledSource[SampleFrame, SampleBlock]):
    """Abstract WIM sample source (template method: :meth:`read_block`).

    Parameters
    ----------
    url : the device URL (also the ``where`` of its log lines).
    timeouts : per-phase limits; ``read_s`` is the default wait of :meth:`read_block`.
    backoff : reconnection back-off.
    stall_timeout_s : a link silent this long is declared stalled and reconnected [s].
    max_abs_value : a frame holding a value beyond this (or NaN/inf) is rejected and
        reported as a gap [output units].
    clock_jump_threshold_s : see :class:`~zhichao.devices.tracking.SampleTracker` [s].
    max_block_samples : contiguous frames are merged into blocks of at most this many.
    """

    kind: ClassVar[str] = "samples"
    tracker: SampleTracker

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, stall_timeout_s: float = 2.0,
                 max_abs_value: float = 1e9, clock_jump_threshold_s: float = 0.5,
                 max_block_samples: int = 8192) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff,
                         stall_timeout_s=stall_timeout_s)
        self.max_abs_value = max_abs_value
        self.max_block_samples = max_block_samples
        self.tracker = SampleTracker(self.health, clock_jump_threshold_s=clock_jump_threshold_s)

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        """Return the frames received within ``timeout_s`` (possibly none).

        Raise :class:`DeviceConnectionError` when the link is lost. Count and log bad
        bytes in ``self.health``; never raise for them.
        """

    # -- template ------------------------------------------------------------------------
    def _read_parts(self, timeout_s: float) -> list[SampleFrame]:
        return self._read_frames_internal(timeout_s)

    def read_block(self, timeout_s: float | None = None) -> SampleBlock | None:
        """The next block of samples, or None if none arrived within ``timeout_s``.

        Never raises for link or data problems: they are counted in health and reported
        on the blocks. Raises :class:`~zhichao.devices.errors.DeviceClosedError` after
        :meth:`close`.
        """
        return self._next(timeout_s)

    def resume_at(self, boot_id: int, device_index: int) -> None:
        """Where a restarted reader would like the stream to start: the device index of
        the first sample it has not kept, in power-up ``boot_id``. A hint, before the
        first read: a backend that can read back (a sample ring) starts there while the
        device is in that power-up and still holds it; others ignore it (the reader drops
        what it already has)."""

    def blocks(self, *, max_blocks: int, timeout_s: float) -> list[SampleBlock]:
        """Read until ``max_blocks`` blocks or ``timeout_s`` seconds, whichever first."""
        return self._next_many(max_blocks, timeout_s)

    def _take(self, parts: list[SampleFrame]) -> bool:
        if not parts:
            return False
        station = utc_now()
        self._last_data = time.monotonic()
        for frame in parts:
            data = frame.samples
            rate = frame.sample_rate_hz
            if not (np.isfinite(rate) and 0 < rate <= 1e6):
                self.health.fault("bad_values", f"frame seq {frame.seq}: sample rate {rate} Hz; "
                                  "rejected", where=f"device index {frame.sample_index}")
                self.tracker.note(REASON_BAD_VALUES)
                continue
            if not np.isfinite(data).all() or float(np.abs(data).max()) > self.max_abs_value:
                self.health.fault("bad_values", f"frame seq {frame.seq}: NaN, inf or |value| > "
                                  f"{self.max_abs_value:g}; rejected",
                                  where=f"device index {frame.sample_index}")
                self.tracker.note(REASON_BAD_VALUES)
                continue
            block = self.tracker.process(frame, station)
            if block is None:
                continue
            block = self._flag_saturation(frame, block)
            self.health.frame_received()
            self.health.add("frames")
            self.health.add("samples", block.n_samples)
            self._queue.append(block)
        return True

    def _flag_saturation(self, frame: SampleFrame, block: SampleBlock) -> SampleBlock:
        """Count, log and mark a block whose int16 samples sit at full scale."""
        view = frame if block.n_samples == frame.n_samples else replace(
            frame, samples=block.samples)  # the rows the tracker kept
        n_rows, channels = saturated_rows(view)
        if not n_rows:
            return block
        self.health.fault("saturated_samples", f"{n_rows} rows at the int16 full scale "
                          f"(±32767 counts × {frame.scale:g}) on channels {channels}",
                          n=n_rows, where=f"device index {block.device_index}")
        return replace(block, events=(*block.events, EVENT_SATURATION))

    def _pop(self) -> SampleBlock:
        first = self._queue.popleft()
        if not self._queue or not self._queue[0].plain:
            return first
        parts = [first.samples]
        n = first.n_samples
        end = first.end_index
        while (self._queue and self._queue[0].plain and self._queue[0].first_index == end
               and n + self._queue[0].n_samples <= self.max_block_samples):
            nxt = self._queue.popleft()
            parts.append(nxt.samples)
            n += nxt.n_samples
            end = nxt.end_index
        if len(parts) == 1:
            return first
        return replace(first, samples=np.concatenate(parts))

    def info(self) -> dict[str, object]:
        return dict(self.health.info)
