"""What every device driver shares: URLs, per-phase timeouts, back-off, the template method.

Each device kind has one abstract class derived from :class:`Device` (``SampleSource``,
``RecordSource``, ``WeighingIndicator``, ``Camera``). Its public methods own timeouts,
reconnection and error handling; a backend implements only the private hooks
(``_connect``, ``_disconnect`` and one ``_read_…`` hook). ``close()`` may be called any
number of times; every device is a context manager, and a device garbage-collected while
still open logs a warning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

from zhichao.common import Backoff
from zhichao.devices.data import bit_names
from zhichao.devices.errors import (
    DeviceClosedError,
    DeviceConfigurationError,
    DeviceConnectionError,
)
from zhichao.devices.health import DeviceHealth, HealthMonitor

LOG = logging.getLogger("zhichao.devices")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def device_time(us: int) -> datetime:
    """Device clock [µs since 1970 UTC] as a tz-aware UTC datetime (clamped to datetime's range)."""
    us = min(max(us, -62_135_596_800_000_000), 253_402_300_799_000_000)
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class Timeouts:
    """Time limits per phase [s]. ``Timeouts(2.0)`` sets all three; or give each explicitly.

    ``connect_s`` limits one connection attempt, ``read_s`` one read of a reply or the
    wait for the next streamed data, ``write_s`` one write. None (no limit) is refused:
    an unattended lane must never block for ever.
    """

    default_s: float | None = None
    connect_s: float | None = None
    read_s: float | None = None
    write_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect_s", "read_s", "write_s"):
            value = getattr(self, name)
            if value is None:
                if self.default_s is None:
                    raise DeviceConfigurationError(
                        f"Timeouts must include a default or set {name} explicitly")
                object.__setattr__(self, name, self.default_s)
            if not getattr(self, name) > 0:
                raise DeviceConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def connect(self) -> float:
        assert self.connect_s is not None
        return self.connect_s

    @property
    def read(self) -> float:
        assert self.read_s is not None
        return self.read_s

    @property
    def write(self) -> float:
        assert self.write_s is not None
        return self.write_s


DEFAULT_TIMEOUTS = Timeouts(2.0)


#: while a registry builds a device, the URL settings its backend asked for (any
#: :class:`DeviceUrl` of it, parsed again or not), so that settings nobody reads are refused
ASKED_SETTINGS: ContextVar[set[str] | None] = ContextVar("ASKED_SETTINGS", default=None)


@dataclass(frozen=True)
class DeviceUrl:
    """A parsed device URL, e.g. ``tcp://127.0.0.1:5020`` or ``serial:///dev/ttyUSB0?baud_rate=9600``.

    ``serial://`` takes the device path (or a pyserial URL such as ``socket://`` or
    ``loop://`` after ``serial:``, e.g. ``serial:loop://``); query parameters are settings
    with their units in their names.
    """

    text: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: dict[str, str]

    def _ask(self, *keys: str) -> None:
        asked = ASKED_SETTINGS.get()
        if asked is not None:
            asked.update(keys)

    def get_float(self, key: str, default: float) -> float:
        self._ask(key)
        if key not in self.query:
            return default
        try:
            return float(self.query[key])
        except ValueError:
            raise DeviceConfigurationError(
                f"{self.text}: {key} must be a number, got {self.query[key]!r}") from None

    def get_int(self, key: str, default: int) -> int:
        self._ask(key)
        if key not in self.query:
            return default
        try:
            return int(self.query[key], 0)
        except ValueError:
            raise DeviceConfigurationError(
                f"{self.text}: {key} must be an integer, got {self.query[key]!r}") from None

    def get_str(self, key: str, default: str) -> str:
        self._ask(key)
        return self.query.get(key, default)

    def settings(self, kwargs: dict[str, Any],
                 **types: type[float] | type[int] | type[str]) -> dict[str, Any]:
        """A backend's ``from_url`` keywords: ``kwargs`` with each setting named in ``types``
        that the URL's query holds added, as that type (a keyword argument given wins)."""
        out = dict(kwargs)
        self._ask(*types)
        for key, kind in types.items():
            if key in self.query and key not in kwargs:
                out[key] = (self.get_float(key, 0.0) if kind is float
                            else self.get_int(key, 0) if kind is int else self.get_str(key, ""))
        return out

    def host_port(self, default_port: int | None = None) -> tuple[str, int]:
        port = self.port if self.port is not None else default_port
        if not self.host or port is None:
            raise DeviceConfigurationError(f"{self.text}: expected host:port")
        return self.host, port


def parse_device_url(text: str) -> DeviceUrl:
    """Parse a device URL; raises :class:`DeviceConfigurationError` when malformed."""
    if "://" not in text and not text.startswith("serial:"):
        raise DeviceConfigurationError(f"not a device URL (scheme://…): {text!r}")
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme.rpartition("+")[2] == "serial" and not rest.startswith("///") and "://" in rest:
        # serial:loop:// or serial:socket://host:port — a pyserial URL handler
        base, _, q = rest.partition("?")
        return DeviceUrl(text, scheme, "", None, base, dict(parse_qsl(q)))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise DeviceConfigurationError(f"{text!r}: {exc}") from None
    return DeviceUrl(text, scheme, parts.hostname or "", port, parts.path,
                     dict(parse_qsl(parts.query)))


class Device(ABC):
    """Base of every driver: life cycle, reconnection with back-off, health.

    Subclasses implement :meth:`_connect` and :meth:`_disconnect`; the public methods of
    each device kind call :meth:`_ensure_connected` and :meth:`_link_lost`.
    """

    kind: ClassVar[str] = "device"
    #: URL schemes whose query belongs to the device itself (passed on untouched), not to
    #: this backend: the registry refuses unknown settings only for the other schemes
    QUERY_PASSES_THROUGH: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 backoff: Backoff | None = None) -> None:
        self.url = url
        self.timeouts = timeouts
        self.backoff = backoff if backoff is not None else Backoff()
        self.health = HealthMonitor(url, self.kind)
        self._closed = False
        self._ever_connected = False
        self._next_attempt = 0.0
        self._status_faults = 0

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _connect(self, timeout_s: float) -> None:
        """Open the link within ``timeout_s``; raise :class:`DeviceConnectionError`."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Close the link; must not raise."""

    def _on_connected(self, reconnect: bool) -> None:  # noqa: B027 - optional hook
        """Called after every successful (re)connection."""

    def _on_link_lost(self) -> None:  # noqa: B027 - optional hook
        """Called after the link was lost and closed."""

    # -- public --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        return self.health.connected

    def open(self, timeout_s: float | None = None) -> Self:
        """Connect now, raising :class:`DeviceConnectionError` if it fails (no retry).

        Drivers also connect lazily, with back-off, on their first read.
        """
        self._check_open()
        if not self.health.connected:
            self._attempt(self.timeouts.connect if timeout_s is None else timeout_s,
                          raise_errors=True)
        return self

    def health_snapshot(self) -> DeviceHealth:
        return self.health.snapshot()

    def close(self) -> None:
        """Close the device; safe to call any number of times."""
        if self._closed:
            return
        self._closed = True
        if self.health.connected:
            self.health.connected = False
        try:
            self._disconnect()
        except Exception as exc:  # a failing close must not hide the caller's error
            LOG.warning("%s: error while closing: %s", self.url, exc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            LOG.warning("%s (%s) was not closed", type(self).__name__, getattr(self, "url", "?"))

    # -- reconnection --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise DeviceClosedError(f"{self.url}: device is closed")

    def _attempt(self, timeout_s: float, raise_errors: bool) -> bool:
        try:
            self._connect(timeout_s)
        except DeviceConnectionError as exc:
            self.health.fault("connect_failures", str(exc), level=logging.INFO
                              if self.health.count("connect_failures") else logging.WARNING)
            self._next_attempt = time.monotonic() + self.backoff.next_delay()
            with contextlib.suppress(Exception):  # best-effort cleanup after a failed connect
                self._disconnect()
            if raise_errors:
                raise
            return False
        reconnect = self._ever_connected
        self._ever_connected = True
        self.health.connected = True
        self.backoff.reset()
        if reconnect:
            self.health.add("reconnects")
            LOG.info("%s reconnected", self.url)
        self._on_connected(reconnect)
        return True

    def _ensure_connected(self, deadline: float) -> bool:
        """Be connected, or try once when the back-off allows before ``deadline``.

        Returns False when still disconnected at the deadline; never raises for link
        problems (they are counted in health).
        """
        self._check_open()
        if self.health.connected:
            return True
        now = time.monotonic()
        if self._next_attempt > now:
            wait = min(self._next_attempt, deadline) - now
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() < self._next_attempt:
                return False
        remaining = max(0.01, deadline - time.monotonic())
        return self._attempt(min(self.timeouts.connect, remaining), raise_errors=False)

    def _note_status(self, status: int, table: dict[int, str], fault_mask: int) -> None:
        """Show a device's status register in ``info["device_status"]`` (bit names, ``-``
        when none is set); when its fault bits (``fault_mask``) change to a set that is not
        empty, count ``device_faults`` and log it."""
        names = bit_names(status, table)
        self.health.info["device_status"] = ", ".join(names) or "-"
        faults = status & fault_mask
        if faults and faults != self._status_faults:
            self.health.fault("device_faults", f"status {status:#06x}: "
                              + ", ".join(bit_names(faults, table)))
        self._status_faults = faults

    def _link_lost(self, reason: str) -> None:
        """Record a lost link, close it, and let the next read reconnect."""
        if not self.health.connected:
            return
        self.health.connected = False
        self.health.fault("disconnects", reason)
        try:
            self._disconnect()
        except Exception as exc:
            LOG.warning("%s: error while closing a lost link: %s", self.url, exc)
        self._next_attempt = time.monotonic()  # first retry at once, then back off
        self._on_link_lost()
