"""The WIM record source kind: vendor controllers that report finished vehicle records.

A WIM controller that does its own signal processing reports one record per vehicle:
time, speed, axle loads, spacings, status codes. zhichao never takes its verdict: the
weighing stage (:mod:`zhichao.weighing.reported`) applies zhichao's own calibration
correction, classification and overload check to every
:class:`~zhichao.devices.data.WimRecord`.

:class:`RecordSource` is the abstract device kind. Its public :meth:`RecordSource.read_record`
owns the read deadline, reconnection with back-off, stall detection and the sequence
bookkeeping (:class:`~zhichao.devices.tracking.RecordTracker`); a backend implements
``_connect``, ``_disconnect`` and ``_read_records_internal``. The backends are in
:mod:`zhichao.devices.interfaces` (``zwr_stream``, ``modbus_records``).

The guarantee to the station: every record received intact is delivered exactly once;
a damaged or rejected record is never delivered, and the next record says how many are
missing before it (``gap_before_records`` > 0: exactly that many; -1: an unknown number,
after a reboot) with a ``reason``. Records are ordered by the device's record counter,
never by its clock; a device clock step is an ``events`` entry (``clock_jump``).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections import deque
from typing import ClassVar

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, Timeouts
from zhichao.devices.data import RecordLimits, WimRecord
from zhichao.devices.errors import DeviceConnectionError, DeviceProtocolError
from zhichao.devices.reasons import REASON_RECONNECT
from zhichao.devices.tracking import RecordTracker


class RecordSource(Device):
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
    poll_s: ClassVar[float] = 0.05

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, stall_timeout_s: float = 0.0,
                 clock_jump_threshold_s: float = 2.0,
                 limits: RecordLimits | None = None) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff)
        self.stall_timeout_s = stall_timeout_s
        self.limits = limits or RecordLimits()
        self.tracker = RecordTracker(self.health, clock_jump_threshold_s=clock_jump_threshold_s)
        self._queue: deque[WimRecord] = deque()
        self._last_data = time.monotonic()

    @abstractmethod
    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        """Records received within ``timeout_s`` (possibly none), in device order, with a
        reason string (``bad_values``, ``fifo_overrun``) in the list where records were
        lost, so the next record carries it.

        Raise :class:`DeviceConnectionError` when the link is lost; count bad bytes and
        absurd records in ``self.health`` without raising.
        """

    def _on_connected(self, reconnect: bool) -> None:
        self._last_data = time.monotonic()
        if reconnect:
            self.tracker.note(REASON_RECONNECT)

    def read_record(self, timeout_s: float | None = None) -> WimRecord | None:
        """The next record, or None if none arrived within ``timeout_s``.

        Never raises for link or data problems (they are counted in health and reported
        on the records); raises :class:`~zhichao.devices.errors.DeviceClosedError` after
        :meth:`close`.
        """
        wait_s = self.timeouts.read if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait_s
        while True:
            if self._queue:
                return self._queue.popleft()
            if time.monotonic() >= deadline and timeout_s != 0:
                return None
            if not self._ensure_connected(deadline):
                if time.monotonic() >= deadline:
                    return None
                continue
            remaining = max(0.0, deadline - time.monotonic())
            bytes_before = self.health.count("bytes_received")
            try:
                records = self._read_records_internal(min(remaining, self.poll_s))
            except DeviceConnectionError as exc:
                self._link_lost(str(exc))
                continue
            except DeviceProtocolError as exc:
                self.health.fault("bad_values", str(exc))
                records = []
            if self.health.count("bytes_received") != bytes_before:
                self._last_data = time.monotonic()
            station = utc_now()
            n_records = 0
            for r in records:
                if isinstance(r, str):
                    self.tracker.note(r)
                    continue
                n_records += 1
                out = self.tracker.process(r, station, self.url)
                if out is not None:
                    self.health.frame_received()
                    self.health.add("frames")
                    self._queue.append(out)
            if (not n_records and self.stall_timeout_s > 0
                    and time.monotonic() - self._last_data > self.stall_timeout_s):
                self.health.fault("stalls", f"no data for {self.stall_timeout_s:.3g} s")
                self._link_lost("stalled")
            if timeout_s == 0 and not self._queue:
                return None

    def records(self, *, max_records: int, timeout_s: float) -> list[WimRecord]:
        """Read until ``max_records`` records or ``timeout_s`` seconds, whichever first."""
        deadline = time.monotonic() + timeout_s
        out: list[WimRecord] = []
        while len(out) < max_records:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            r = self.read_record(remaining)
            if r is not None:
                out.append(r)
        return out
