"""Asking a GNSS receiver, through gpsd, how far the station's clock is off.

gpsd speaks JSON over TCP (port 2947; gpsd_json(5), https://gpsd.gitlab.io/gpsd/gpsd_json.html):
on connect it sends a VERSION object; the client enables watching with
``?WATCH={"enable":true,"json":true,"pps":true};`` (``pps``: also send TOFF each cycle and
PPS at each pulse) and gpsd answers DEVICES and WATCH, then streams one JSON object per
line, each with a ``class``: TPV (time-position-velocity: ``mode`` 0/1 no fix, 2 2D, 3 3D;
``time`` ISO 8601 UTC; ``ept`` estimated time error, s, 95 %), SKY (satellites: ``uSat``,
or ``satellites`` with ``used`` flags), ERROR, and, where the receiver has a
pulse-per-second line, PPS and TOFF: ``real_sec``/``real_nsec`` the GNSS time at the pulse
(PPS) or at the start of the fix cycle seen in the serial data (TOFF),
``clock_sec``/``clock_nsec`` the system clock at that moment. gpsd may report the pulse as
a device of its own (``/dev/pps0``), so a PPS counts when some receiver has a fix.

One exchange (:func:`query_gpsd`) listens until a receiver has a fix (its latest TPV has
mode ≥ 2 and a time) and a PPS and a SKY came, or :data:`PPS_WAIT_S` after the first fix
(both come once a second), or ``timeout_s``. The offset (GNSS minus station clock: the sign of
the NTP offset) and its error bound come from, smallest error bound first:

* ``pps``: real − clock of the latest PPS. Error bound ``2^precision`` (the NTP-style
  precision gpsd sends with a PPS; 1 ms when absent) plus :data:`MAX_DRIFT` × the
  sample's age (how far a clock may run off in the time since the pulse).
* ``toff``: real − clock of the latest TOFF. Error bound :data:`SERIAL_LATENCY_MAX_S`
  + ept: gpsd_json(5) says the time taken from the serial data lags the start of the GNSS
  second by 10 to 700 ms; the lag is not corrected. The station clock is read when the
  data arrives, L after the GNSS time in it, so offset = true offset − L: the true offset
  lies within [offset − ept, offset + 700 ms + ept] (one-sided, :attr:`GnssReading.interval_s`).
* ``tpv``: TPV time − the local time its line arrived. Error bound
  :data:`SERIAL_LATENCY_MAX_S` + ept + the TCP connect time (the network's share); one-sided
  like TOFF (the network delay, too, only makes the measured offset smaller).

The check (:mod:`.clockcheck`) judges the interval, not offset ± bound. Without a PPS the
interval is over 700 ms wide, so such a check passes only where it fits in
±``clock.max_offset_ms`` (at 500 ms: a measured offset of about −495 … −205 ms). PPS and
TOFF compare gpsd's host clock, so
they are used only when gpsd is on this host (a loopback address); a remote gpsd is judged
by TPV. Every read has a deadline; a line is at most :data:`MAX_LINE_BYTES`; anything that
is not a JSON object with a class, a first object that is not VERSION, a protocol major
version other than 3, or an ERROR object is a bad reply.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from zhichao.station.errors import TimeSourceError
from zhichao.station.timesource import NoReplyError, parse_server

GPSD_PORT = 2947
SCHEME = "gpsd://"
WATCH = b'?WATCH={"enable":true,"json":true,"pps":true};\n'
PROTO_MAJOR = 3  # gpsd_json(5): clients check the major version
MAX_LINE_BYTES = 16_384  # a choice: far above a SKY object with dozens of satellites
MAX_TOTAL_BYTES = 4 * 1024 * 1024  # read in one exchange
PPS_WAIT_S = 1.5  # after the first fix: a PPS comes once a second
# gpsd_json(5), TOFF: the time from the serial stream is 10 … 700 ms after the pulse
SERIAL_LATENCY_MAX_S = 0.7
PPS_DEFAULT_PRECISION_S = 0.001  # a PPS without a precision field (a choice)
MAX_DRIFT = 500e-6  # the largest frequency error the kernel clock discipline allows


class NoFixError(TimeSourceError):
    """gpsd answered, but no receiver had a fix (mode ≥ 2 with a time)."""


@dataclass(frozen=True)
class GnssReading:
    """One answered gpsd exchange (times in seconds)."""

    server: str  # gpsd://host:port
    device: str  # the receiver, as gpsd names it (e.g. /dev/ttyS0)
    mode: int  # TPV mode: 2 2D fix, 3 3D fix
    method: str  # "pps" | "toff" | "tpv"
    offset_s: float  # GNSS minus station clock
    error_bound_s: float
    satellites: int | None  # used in the fix, when gpsd says
    ept_s: float | None
    release: str  # gpsd's version
    detail: str

    @property
    def interval_s(self) -> tuple[float, float]:
        """Where the true offset (GNSS minus station clock) lies, (low, high): ``pps``
        symmetric, offset ∓ error bound; ``toff`` and ``tpv`` one-sided, [offset − ept,
        offset + error bound]: the uncorrected serial (and network) latency only makes the
        measured offset smaller than the true one; ept, GNSS's own time error, goes both
        ways (it is already part of the error bound)."""
        if self.method == "pps":
            return self.offset_s - self.error_bound_s, self.offset_s + self.error_bound_s
        return self.offset_s - max(self.ept_s or 0.0, 0.0), self.offset_s + self.error_bound_s

    def to_json(self) -> dict[str, Any]:
        return {"source": "gnss", "server": self.server, "device": self.device,
                "fix_mode": self.mode, "method": self.method,
                "offset_ms": round(self.offset_s * 1000, 3),
                "error_bound_ms": round(self.error_bound_s * 1000, 3),
                "satellites": self.satellites,
                "ept_ms": None if self.ept_s is None else round(self.ept_s * 1000, 3),
                "gpsd_release": self.release, "detail": self.detail}


def parse_gpsd(text: str) -> tuple[str, int]:
    """``gpsd://host[:port]``, ``host``, ``host:port`` or ``[v6]:port`` → (host, port)."""
    text = text.strip()
    if "://" in text:
        if not text.startswith(SCHEME):
            raise ValueError(f"{text!r}: only {SCHEME} is understood")
        text = text[len(SCHEME):]
    return parse_server(text, GPSD_PORT)


def gpsd_label(text: str) -> str:
    """How a gpsd source is named in the record: ``gpsd://host:port``."""
    host, port = parse_gpsd(text)
    return f"{SCHEME}[{host}]:{port}" if ":" in host else f"{SCHEME}{host}:{port}"


@dataclass
class _Heard:
    """What one exchange heard: each device's latest TPV, the latest PPS and TOFF."""

    tpv: dict[str, tuple[dict[str, Any], float, datetime | None]] = field(
        default_factory=dict)  # device → (TPV, arrival wall time, fix time or None)
    first_fix_mono: float | None = None
    pps: tuple[dict[str, Any], float] | None = None  # (object, arrival wall time)
    toff: tuple[dict[str, Any], float] | None = None
    satellites: int | None = None
    devices: list[str] | None = None  # DEVICES, when it came

    def fixed(self) -> list[tuple[str, dict[str, Any], float, datetime]]:
        """Devices whose latest TPV is a fix, 3D first."""
        out = [(name, tpv, at, fix) for name, (tpv, at, fix) in self.tpv.items()
               if fix is not None]
        return sorted(out, key=lambda x: -int(x[1]["mode"]))


class _Lines:
    """JSON objects from a socket, one per line, each with its arrival (wall) time."""

    def __init__(self, sock: socket.socket, label: str) -> None:
        self.sock, self.label = sock, label
        self.buffer = b""
        self.pending: list[tuple[bytes, float]] = []
        self.total = 0
        self.count = 0

    def next(self, until_mono: float) -> tuple[dict[str, Any], float] | None:
        """The next object, or ``None`` when ``until_mono`` passes first."""
        while not self.pending:
            left = until_mono - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                raise NoReplyError(f"{self.label}: {exc.strerror or exc}") from None
            at = time.time()
            if not chunk:
                if self.buffer.strip():
                    raise TimeSourceError(f"{self.label}: connection closed in the middle "
                                          f"of an object: {self._show(self.buffer)}")
                raise NoReplyError(f"{self.label}: gpsd closed the connection after "
                                   f"{self.count} objects")
            self.total += len(chunk)
            if self.total > MAX_TOTAL_BYTES:
                raise TimeSourceError(f"{self.label}: more than {MAX_TOTAL_BYTES} bytes "
                                      "in one exchange")
            *lines, self.buffer = (self.buffer + chunk).split(b"\n")
            if len(self.buffer) > MAX_LINE_BYTES:
                raise TimeSourceError(f"{self.label}: a line longer than {MAX_LINE_BYTES} "
                                      "bytes")
            self.pending.extend((line, at) for line in lines if line.strip())
        line, at = self.pending.pop(0)
        self.count += 1
        if len(line) > MAX_LINE_BYTES:
            raise TimeSourceError(f"{self.label}: a line longer than {MAX_LINE_BYTES} bytes")
        try:
            obj = json.loads(line)
        except ValueError:
            raise TimeSourceError(f"{self.label}: not JSON: {self._show(line)}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("class"), str):
            raise TimeSourceError(f"{self.label}: not a gpsd object (no class): "
                                  f"{self._show(line)}")
        return obj, at

    @staticmethod
    def _show(data: bytes) -> str:
        return repr(data[:80].decode("utf-8", "replace")) + ("…" if len(data) > 80 else "")


def _num(obj: dict[str, Any], key: str, label: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TimeSourceError(f"{label}: {obj['class']}.{key} is not a number: {value!r}")
    return float(value)


def _int(obj: dict[str, Any], key: str, label: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TimeSourceError(f"{label}: {obj['class']}.{key} is not an integer: {value!r}")
    return value


def _sec_nsec(obj: dict[str, Any], prefix: str, label: str) -> float:
    sec, nsec = _int(obj, f"{prefix}_sec", label), _int(obj, f"{prefix}_nsec", label)
    if sec is None or nsec is None or not 0 <= nsec < 1_000_000_000:
        raise TimeSourceError(f"{label}: {obj['class']} without a valid "
                              f"{prefix}_sec/{prefix}_nsec")
    return sec + nsec / 1e9


def _take(obj: dict[str, Any], at: float, heard: _Heard, label: str) -> None:
    """Note one streamed object."""
    cls = obj["class"]
    device = str(obj.get("device") or "")
    if cls == "TPV":
        mode = _int(obj, "mode", label)
        if mode is None or not 0 <= mode <= 3:
            raise TimeSourceError(f"{label}: TPV.mode is {obj.get('mode')!r}, not 0 … 3")
        _num(obj, "ept", label)
        fix_utc = None
        text = obj.get("time")
        if mode >= 2 and text is not None:
            try:
                fix_utc = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
            except ValueError:
                raise TimeSourceError(f"{label}: TPV.time {text!r} is not ISO 8601") from None
            if fix_utc.tzinfo is None:
                raise TimeSourceError(f"{label}: TPV.time {text!r} has no UTC designator")
        heard.tpv[device] = (obj, at, fix_utc)
        if fix_utc is not None and heard.first_fix_mono is None:
            heard.first_fix_mono = time.monotonic()
    elif cls in ("PPS", "TOFF"):
        _sec_nsec(obj, "real", label), _sec_nsec(obj, "clock", label)
        _int(obj, "precision", label)
        if cls == "PPS":
            heard.pps = (obj, at)
        else:
            heard.toff = (obj, at)
    elif cls == "SKY":
        used = _int(obj, "uSat", label)
        sats = obj.get("satellites")
        if used is None and isinstance(sats, list):
            used = sum(1 for s in sats if isinstance(s, dict) and s.get("used") is True)
        if used is not None:
            heard.satellites = used
    elif cls == "DEVICES":
        found = obj.get("devices")
        heard.devices = [str(d.get("path") or "") for d in found if isinstance(d, dict)] \
            if isinstance(found, list) else []
    elif cls == "ERROR":
        raise TimeSourceError(f"{label}: gpsd error: {str(obj.get('message'))[:200]}")


def _ready(heard: _Heard, local: bool) -> tuple[bool, float | None]:
    """(done, until when to wait for a PPS)."""
    if heard.first_fix_mono is None or not heard.fixed():
        return False, None
    if (not local or heard.pps is not None) and heard.satellites is not None:
        return True, None
    end = heard.first_fix_mono + PPS_WAIT_S  # for a PPS, or the SKY (satellites)
    return time.monotonic() >= end, end


def _readings(label: str, heard: _Heard, local: bool, connect_s: float,
              release: str) -> list[GnssReading]:
    """Every offset this exchange gives (see the module for the error bounds)."""
    fixed = heard.fixed()
    name, tpv, _, _ = fixed[0]
    out = []

    def reading(method: str, device: str, tpv: dict[str, Any], offset_s: float,
                bound_s: float, detail: str) -> GnssReading:
        return GnssReading(label, device, int(tpv["mode"]), method, offset_s, bound_s,
                           heard.satellites, _num(tpv, "ept", label), release, detail)

    ept = _num(tpv, "ept", label) or 0.0
    if local and heard.pps is not None:  # gpsd may name the pulse's own device (/dev/pps0)
        pps, at = heard.pps
        real, clock = _sec_nsec(pps, "real", label), _sec_nsec(pps, "clock", label)
        precision = _int(pps, "precision", label)
        precision_s = (PPS_DEFAULT_PRECISION_S if precision is None or not -40 <= precision <= 0
                       else 2.0 ** precision)
        age_s = abs(at - clock)
        out.append(reading("pps", name, tpv, real - clock, precision_s + MAX_DRIFT * age_s,
                           f"PPS {pps.get('device') or ''}: precision {precision_s:.3g} s, "
                           f"sample {age_s:.3f} s old"))
    if local and heard.toff is not None:
        toff, _ = heard.toff
        real, clock = _sec_nsec(toff, "real", label), _sec_nsec(toff, "clock", label)
        out.append(reading("toff", name, tpv, real - clock, SERIAL_LATENCY_MAX_S + ept,
                           f"TOFF (no PPS): serial latency up to "
                           f"{SERIAL_LATENCY_MAX_S * 1000:.0f} ms not corrected"))
    for device, t, at, fix in fixed:
        out.append(reading(
            "tpv", device, t, fix.timestamp() - at,
            SERIAL_LATENCY_MAX_S + (_num(t, "ept", label) or 0.0) + connect_s,
            "TPV time against its arrival (no PPS" + ("" if local else " used: gpsd on "
            "another host") + f"): latency up to {SERIAL_LATENCY_MAX_S * 1000:.0f} ms "
            "not corrected"))
    return out


def query_gpsd(server: str, timeout_s: float) -> GnssReading:
    """Listen to gpsd at ``server`` for at most ``timeout_s``; the reading with the smallest
    error bound of any device with a fix. Raises :class:`NoReplyError` (no connection, no
    answer, closed), :class:`NoFixError`, or :class:`TimeSourceError` (a bad reply)."""
    label = gpsd_label(server)
    host, port = parse_gpsd(server)
    deadline = time.monotonic() + timeout_s
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise NoReplyError(f"{label}: cannot resolve ({exc})") from None
    family, _, _, _, address = infos[0]
    local = ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        t0 = time.monotonic()
        try:
            sock.connect(address)
        except TimeoutError:
            raise NoReplyError(f"{label}: no connection within {timeout_s:g} s") from None
        except OSError as exc:
            raise NoReplyError(f"{label}: {exc.strerror or exc}") from None
        connect_s = time.monotonic() - t0
        lines = _Lines(sock, label)
        first = lines.next(deadline)
        if first is None:
            raise NoReplyError(f"{label}: no VERSION object within {timeout_s:g} s")
        version, _ = first
        if version["class"] != "VERSION":
            raise TimeSourceError(f"{label}: first object is {version['class']!r}, not "
                                  "VERSION (is this gpsd?)")
        if version.get("proto_major") != PROTO_MAJOR:
            raise TimeSourceError(f"{label}: protocol major version "
                                  f"{version.get('proto_major')!r}, not {PROTO_MAJOR}")
        release = str(version.get("release") or "")
        try:
            sock.sendall(WATCH)
        except OSError as exc:
            raise NoReplyError(f"{label}: {exc.strerror or exc}") from None
        heard = _Heard()
        while True:
            done, wait_until = _ready(heard, local)
            if done or time.monotonic() >= deadline:
                break
            got = lines.next(deadline if wait_until is None else min(deadline, wait_until))
            if got is not None:
                _take(got[0], got[1], heard, label)
    if not heard.fixed():
        modes = sorted({int(t["mode"]) for t, _, _ in heard.tpv.values()})
        if modes and max(modes) >= 2:
            raise NoFixError(f"{label}: TPV mode {max(modes)} without a time within "
                             f"{timeout_s:g} s")
        if modes:
            raise NoFixError(f"{label}: no fix within {timeout_s:g} s (TPV mode "
                             f"{'/'.join(map(str, modes))}; 2 or 3 needed)")
        if heard.devices == []:
            raise NoFixError(f"{label}: gpsd has no GNSS device")
        raise NoReplyError(f"{label}: no TPV within {timeout_s:g} s")
    readings = _readings(label, heard, local, connect_s, release)
    return min(readings, key=lambda r: r.error_bound_s)
