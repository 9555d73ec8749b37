"""The WIM record source kind: vendor controllers that report finished vehicle records.

A WIM controller that does its own signal processing reports one record per vehicle:
time, speed, axle loads, spacings, status codes. zhichao never takes its verdict: the
weighing stage (:mod:`zhichao.weighing.reported`) applies zhichao's own calibration
correction, classification and overload check to every
:class:`~zhichao.devices.data.WimRecord`.

:class:`RecordSource` is the abstract device kind. Its public :meth:`RecordSource.read_record`
owns the read deadline, reconnection with back-off, stall detection (the poll loop of
:class:`~zhichao.devices.polled.PolledSource`) and the sequence bookkeeping
(:class:`~zhichao.devices.tracking.RecordTracker`); a backend implements ``_connect``,
``_disconnect`` and ``_read_records_internal``. The backends are in
:mod:`zhichao.devices.interfaces` (``zwr_stream``, ``modbus_records``).

The guarantee to the station: every record received intact is delivered exactly once;
a damaged or rejected record is never delivered, and the next record says how many are
missing before it (``gap_before_records`` > 0: exactly that many; -1: an unknown number,
after a reboot) with a ``reason``. Records are ordered by the device's record counter,
never by its clock; a device clock step is an ``events`` entry (``clock_jump``).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Timeouts
from zhichao.devices.data import RecordLimits, WimRecord
from zhichao.devices.polled import PolledSource
from zhichao.devices.tracking import RecordTracker


class RecordSource(PolledSource[WimRecord | str, WimRecord]):
    """Abstract WIM record source (template method: :meth:`read_record`).

    Parameters
    ----------
    stall_timeout_s : a link silent this long is declared stalled and reconnected [s].
        Controllers that send nothing between vehicles need a keep-alive or a long limit:
        the default (0: never) suits them; set it for controllers with a heartbeat.
    clock_jump_threshold_s : see :class:`~zhichao.devices.tracking.RecordTracker` [s].
    limits : plausibility limits of a record.
    """

    kind: ClassVar[str] = "records"
    tracker: RecordTracker

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, stall_timeout_s: float = 0.0,
                 clock_jump_threshold_s: float = 2.0,
                 limits: RecordLimits | None = None) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff,
                         stall_timeout_s=stall_timeout_s)
        self.limits = limits or RecordLimits()
        self.tracker = RecordTracker(self.health, clock_jump_threshold_s=clock_jump_threshold_s)

    @abstractmethod
    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        """Records received within ``timeout_s`` (possibly none), in device order, with a
        reason string (``bad_values``, ``fifo_overrun``) in the list where records were
        lost, so the next record carries it.

        Raise :class:`DeviceConnectionError` when the link is lost; count bad bytes and
        absurd records in ``self.health`` without raising.
        """

    def _read_parts(self, timeout_s: float) -> list[WimRecord | str]:
        return self._read_records_internal(timeout_s)

    def _take(self, parts: list[WimRecord | str]) -> bool:
        station = utc_now()
        n_records = 0
        for r in parts:
            if isinstance(r, str):
                self.tracker.note(r)
                continue
            n_records += 1
            out = self.tracker.process(r, station, self.url)
            if out is not None:
                self.health.frame_received()
                self.health.add("frames")
                self._queue.append(out)
        return n_records > 0

    def _stalled(self) -> bool:
        return self.stall_timeout_s > 0 and super()._stalled()

    def read_record(self, timeout_s: float | None = None) -> WimRecord | None:
        """The next record, or None if none arrived within ``timeout_s``.

        Never raises for link or data problems (they are counted in health and reported
        on the records); raises :class:`~zhichao.devices.errors.DeviceClosedError` after
        :meth:`close`.
        """
        return self._next(timeout_s)

    def records(self, *, max_records: int, timeout_s: float) -> list[WimRecord]:
        """Read until ``max_records`` records or ``timeout_s`` seconds, whichever first."""
        return self._next_many(max_records, timeout_s)
