"""Device health: counters, link state and clock offset, visible to the service layer.

Every driver owns one :class:`HealthMonitor`. Each fault is *counted* under a fixed name
and *logged* with the device URL and where in the stream it happened, so nothing a
driver throws away is ever silent. :meth:`HealthMonitor.snapshot` returns an immutable
:class:`DeviceHealth` for probes, dashboards and tests.

Counter names used by the drivers (all start at 0):

``frames``             frames / readings / records accepted
``samples``            samples delivered (sample sources)
``bytes_received``     bytes read from the transport
``bytes_discarded``    bytes skipped while hunting for a frame start
``bad_headers``        impossible frame headers
``oversize_frames``    frames announcing more than the size limit
``crc_errors``         checksum mismatches
``bad_values``         frames or readings holding absurd values (NaN, out of range)
``sequence_gaps``      gaps in the sample or record sequence
``samples_lost``       samples known to be lost in those gaps
``duplicates``         frames or records received twice (discarded)
``reboots``            device power-ups detected
``clock_jumps``        device clock steps detected
``disconnects``        link losses
``reconnects``         successful re-connections
``connect_failures``   failed connection attempts
``timeouts``           read phases that ran out of time with the link silent
``stalls``             link silent for longer than the stall limit
``device_faults``      a device's status register raised a fault bit (shown as
                       ``info["device_status"]``)
``overload_readings``  indicator readings flagged overload (not weights; the last
                       reading and its flags are ``info["last_reading"]``)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from zhichao.common import utc_now

LOG = logging.getLogger("zhichao.devices")


@dataclass(frozen=True)
class DeviceHealth:
    """A snapshot of one device's health.

    Attributes
    ----------
    url : the device URL (the ``where`` of every log line).
    kind : device kind (``samples``, ``records``, ``indicator``, ``camera``).
    connected : the link is up now.
    last_frame_age_s : seconds since the last good frame, None before the first [s].
    clock_offset_s : device clock minus station clock, None when unknown [s].
    counters : fault and traffic counters (see the module docstring).
    last_error : text of the last fault, None if none.
    last_error_utc : when it happened.
    info : what the device said about itself (model, channels, rate …).
    """

    url: str
    kind: str
    connected: bool
    last_frame_age_s: float | None
    clock_offset_s: float | None
    counters: Mapping[str, int]
    last_error: str | None
    last_error_utc: datetime | None
    info: Mapping[str, object] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        """Total of the fault counters (traffic counters excluded)."""
        traffic = {"frames", "samples", "bytes_received", "reconnects"}
        return sum(v for k, v in self.counters.items() if k not in traffic)

    def describe(self) -> str:
        """Multi-line human summary (used by ``zhichao devices probe``)."""
        age = "—" if self.last_frame_age_s is None else f"{self.last_frame_age_s:.3f} s"
        offset = "—" if self.clock_offset_s is None else f"{self.clock_offset_s:+.3f} s"
        lines = [
            f"device       {self.url} ({self.kind})",
            f"connected    {'yes 已连接' if self.connected else 'no 未连接'}",
            f"last frame   {age} ago",
            f"clock offset {offset} (device - station)",
        ]
        for k, v in sorted(self.info.items()):
            lines.append(f"info         {k} = {v}")
        for k, v in sorted(self.counters.items()):
            if v:
                lines.append(f"count        {k} = {v}")
        if self.last_error:
            when = self.last_error_utc.isoformat() if self.last_error_utc else "?"
            lines.append(f"last error   {self.last_error} at {when}")
        return "\n".join(lines)


class HealthMonitor:
    """Mutable, thread-safe health state of one device."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        self.kind = kind
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self.connected = False
        self._last_frame_monotonic: float | None = None
        self.clock_offset_s: float | None = None
        self.last_error: str | None = None
        self.last_error_utc: datetime | None = None
        self.info: dict[str, object] = {}

    def add(self, name: str, n: int = 1) -> None:
        """Count traffic (no log line)."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def fault(self, name: str, detail: str, *, n: int = 1, where: str = "",
              level: int = logging.WARNING) -> None:
        """Count a fault and log it with the device URL and the place in the stream."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n
            self.last_error = f"{name}: {detail}"
            self.last_error_utc = utc_now()
        LOG.log(level, "%s %s%s: %s", self.url, name, f" at {where}" if where else "", detail)

    def count(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def frame_received(self) -> None:
        self._last_frame_monotonic = time.monotonic()

    def seconds_since_frame(self) -> float | None:
        t = self._last_frame_monotonic
        return None if t is None else time.monotonic() - t

    def snapshot(self) -> DeviceHealth:
        with self._lock:
            counters = dict(self._counters)
        return DeviceHealth(
            url=self.url, kind=self.kind, connected=self.connected,
            last_frame_age_s=self.seconds_since_frame(), clock_offset_s=self.clock_offset_s,
            counters=MappingProxyType(counters), last_error=self.last_error,
            last_error_utc=self.last_error_utc, info=MappingProxyType(dict(self.info)),
        )
