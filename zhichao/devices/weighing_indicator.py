"""The weighing indicator kind: the station's static re-weigh scale (复检).

:class:`WeighingIndicator` is the abstract device kind: :meth:`WeighingIndicator.read`
returns the next plausible reading (in the order received),
:meth:`WeighingIndicator.read_stable` waits for a stable one among those received after it
was called; both own their deadline and reconnect as needed. A backend implements
``_connect``, ``_disconnect`` and ``_read_internal``; the backends are in
:mod:`zhichao.devices.interfaces` (``stream_indicator``: XK3190 and Toledo continuous
output; ``modbus_indicator``: a register map).

XK3190 frames carry no stable bit: :class:`StabilityDetector` calls a weight stable after
``n_identical`` equal readings (5 by default, as the open parsers do) spanning at least
``min_duration_s``. A reading flagged ``overload`` is never stable and never a weight, nor
is a window that holds one, or one the device flagged in motion.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections import deque
from dataclasses import replace
from typing import ClassVar

from zhichao.common import Backoff
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, Timeouts
from zhichao.devices.data import WeightReading
from zhichao.devices.errors import DeviceConnectionError, DeviceProtocolError, DeviceTimeoutError

#: ``read_stable`` drains what the transport already holds with reads this short [s] (not 0:
#: that would make a TCP socket non-blocking, and its read fail)
DRAIN_READ_TIMEOUT_S = 1e-4
#: and for at most this long [s], so a link faster than the decoder cannot hold it
DRAIN_LIMIT_S = 0.5


class StabilityDetector:
    """A weight is stable after ``n_identical`` readings within ``tolerance_kg`` of each
    other spanning at least ``min_duration_s``; every one of them must be a weight (not
    ``overload``) that the device did not flag in motion (``stable`` is not False)."""

    def __init__(self, n_identical: int = 5, tolerance_kg: float = 0.0,
                 min_duration_s: float = 0.0) -> None:
        self.n_identical = n_identical
        self.tolerance_kg = tolerance_kg
        self.min_duration_s = min_duration_s
        self._window: deque[WeightReading] = deque(maxlen=n_identical)

    def reset(self) -> None:
        self._window.clear()

    def update(self, reading: WeightReading) -> bool:
        self._window.append(reading)
        if len(self._window) < self.n_identical or any(
                not r.is_weight or r.stable is False for r in self._window):
            return False
        weights = [r.weight_kg for r in self._window]
        span = (self._window[-1].station_time_utc - self._window[0].station_time_utc)
        return (max(weights) - min(weights) <= self.tolerance_kg
                and span.total_seconds() >= self.min_duration_s)


class WeighingIndicator(Device):
    """Abstract weighing indicator. ``read`` returns the next reading; ``read_stable``
    waits for a stable one received after the call. Both own their deadline and reconnect
    as needed."""

    kind: ClassVar[str] = "indicator"

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, max_abs_kg: float = 200_000.0) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff)
        self.max_abs_kg = max_abs_kg

    @abstractmethod
    def _read_internal(self, timeout_s: float) -> list[WeightReading]:
        """Readings received within ``timeout_s``; raise DeviceConnectionError if lost."""

    def read(self, timeout_s: float | None = None) -> WeightReading | None:
        """The next plausible reading, or None if none came within ``timeout_s``.

        Readings come in the order received: one already queued (decoded from the same
        chunk of bytes as an earlier one) is returned first. For the weight on the
        platform now, use :meth:`read_stable`.
        """
        deadline = time.monotonic() + (self.timeouts.read if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            if self._pending:
                return self._pending.popleft()
            if not self._ensure_connected(deadline):
                continue
            self._receive_readings(min(0.1, max(0.0, deadline - time.monotonic())))
        return self._pending.popleft() if self._pending else None

    def _receive_readings(self, timeout_s: float) -> None:
        """Read once from the device (``timeout_s``); count and queue the plausible
        readings (a lost link or a protocol error is counted in health)."""
        try:
            readings = self._read_internal(timeout_s)
        except DeviceConnectionError as exc:
            self._link_lost(str(exc))
            return
        except DeviceProtocolError as exc:
            self.health.fault("bad_values", str(exc))
            return
        for r in readings:
            if not abs(r.weight_kg) <= self.max_abs_kg:
                self.health.fault("bad_values", f"absurd weight {r.weight_kg} kg",
                                  where=repr(r.raw))
                continue
            self.health.frame_received()
            self.health.add("frames")
            if r.overload:
                self.health.add("overload_readings")
            self.health.info["last_reading"] = (
                f"{r.weight_text()} kg [{', '.join(r.flags) or 'stable'}]")
            self._pending.append(r)

    def _discard_received(self, deadline: float) -> int:
        """Drop every reading received before now: the queued ones, and those the transport
        already holds (read without waiting, until a read brings no bytes; counted in
        health as usual). Returns how many were dropped."""
        dropped = len(self._pending)
        self._pending.clear()
        stop = min(deadline, time.monotonic() + DRAIN_LIMIT_S)
        while self.connected and time.monotonic() < stop:
            before = self.health.count("bytes_received")
            self._receive_readings(DRAIN_READ_TIMEOUT_S)
            dropped += len(self._pending)
            self._pending.clear()
            if self.health.count("bytes_received") == before:
                break
        return dropped

    @property
    def _pending(self) -> deque[WeightReading]:
        q: deque[WeightReading] | None = getattr(self, "_pending_q", None)
        if q is None:
            q = deque(maxlen=1000)
            self._pending_q = q
        return q

    def read_stable(self, timeout_s: float, *, n_identical: int = 5, tolerance_kg: float = 0.0,
                    min_duration_s: float = 0.0) -> WeightReading:
        """Wait for a stable reading among those received after this call; raises
        :class:`DeviceTimeoutError` if none in time.

        Readings received earlier (queued, or still in the transport's buffer) show what
        the platform held before: they are discarded first, never returned as fresh.
        """
        detector = StabilityDetector(n_identical, tolerance_kg, min_duration_s)
        deadline = time.monotonic() + timeout_s
        self._discard_received(deadline)
        while (remaining := deadline - time.monotonic()) > 0:
            r = self.read(remaining)
            if r is not None and detector.update(r):
                return replace(r, stable=True)
        raise DeviceTimeoutError(f"{self.url}: no stable weight within {timeout_s:.3g} s "
                                 "(称重未稳定)")
