"""The poll loop the WIM source kinds share (``SampleSource``, ``RecordSource``).

A backend is polled for *parts* (sample frames, records) that the kind turns into
*deliveries* (sample blocks, records) on a queue. :meth:`PolledSource._next` owns the read
deadline, reconnection with back-off, lost links, protocol errors (counted as
``bad_values``), the time of the last data and stall detection; the kind implements
``_read_parts`` (its backend hook) and ``_take`` (what the parts become).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections import deque
from typing import ClassVar, Generic, TypeVar

from zhichao.common import Backoff
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, Timeouts
from zhichao.devices.errors import DeviceConnectionError, DeviceProtocolError
from zhichao.devices.reasons import REASON_RECONNECT
from zhichao.devices.tracking import SequenceTracker

PartT = TypeVar("PartT")
OutT = TypeVar("OutT")


class PolledSource(Device, Generic[PartT, OutT]):
    """A device kind whose backend is polled for parts within ``poll_s`` at a time.

    Parameters
    ----------
    stall_timeout_s : a link silent this long is declared stalled and reconnected [s].
    """

    #: seconds one call of the backend hook may block
    poll_s: ClassVar[float] = 0.05
    tracker: SequenceTracker

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None, stall_timeout_s: float) -> None:
        super().__init__(url, timeouts=timeouts, backoff=backoff)
        self.stall_timeout_s = stall_timeout_s
        self._queue: deque[OutT] = deque()
        self._last_data = time.monotonic()

    @abstractmethod
    def _read_parts(self, timeout_s: float) -> list[PartT]:
        """The backend's parts received within ``timeout_s`` (the kind's hook)."""

    @abstractmethod
    def _take(self, parts: list[PartT]) -> bool:
        """Queue what ``parts`` deliver; True when they held data (no stall check then)."""

    def _pop(self) -> OutT:
        return self._queue.popleft()

    def _stalled(self) -> bool:
        return time.monotonic() - self._last_data > self.stall_timeout_s

    def _on_connected(self, reconnect: bool) -> None:
        self._last_data = time.monotonic()
        if reconnect:
            self.tracker.note(REASON_RECONNECT)

    def _next(self, timeout_s: float | None) -> OutT | None:
        """The next delivery, or None if none within ``timeout_s`` (None: ``timeouts.read``;
        0: only what is already there or arrives in one poll)."""
        wait_s = self.timeouts.read if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait_s
        while True:
            if self._queue:
                return self._pop()
            if time.monotonic() >= deadline and timeout_s != 0:
                return None
            if not self._ensure_connected(deadline):
                if time.monotonic() >= deadline:
                    return None
                continue
            remaining = max(0.0, deadline - time.monotonic())
            bytes_before = self.health.count("bytes_received")
            try:
                parts = self._read_parts(min(remaining, self.poll_s))
            except DeviceConnectionError as exc:
                self._link_lost(str(exc))
                continue
            except DeviceProtocolError as exc:
                self.health.fault("bad_values", str(exc))
                parts = []
            if self.health.count("bytes_received") != bytes_before:
                self._last_data = time.monotonic()
            if not self._take(parts) and self._stalled():
                self.health.fault("stalls", f"no data for {self.stall_timeout_s:.3g} s")
                self._link_lost("stalled")
            if timeout_s == 0 and not self._queue:
                return None

    def _next_many(self, max_items: int, timeout_s: float) -> list[OutT]:
        """Read until ``max_items`` deliveries or ``timeout_s`` seconds, whichever first."""
        deadline = time.monotonic() + timeout_s
        out: list[OutT] = []
        while len(out) < max_items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = self._next(remaining)
            if item is not None:
                out.append(item)
        return out
