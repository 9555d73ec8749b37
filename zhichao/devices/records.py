"""WIM record sources: vendor controllers that report finished vehicle records.

A WIM controller that does its own signal processing reports one record per vehicle:
time, speed, axle loads, spacings, status codes. zhichao never takes its verdict: the
weighing stage (:mod:`zhichao.weighing.reported`) applies zhichao's own calibration
correction, classification and overload check to every :class:`WimRecord`.

:class:`RecordSource` is the abstract device kind. Its public :meth:`RecordSource.read_record`
owns the read deadline, reconnection with back-off, stall detection and the sequence
bookkeeping (:class:`RecordTracker`); a backend implements ``_connect``, ``_disconnect``
and ``_read_records_internal``.

Backends:

``tcp://host:port``, ``serial:///dev/ttyX?baud_rate=9600``
    :class:`StreamRecordSource`, the ASCII line ``ZWR/1`` (see :func:`encode_record_line`
    and ``docs/devices.md``) over a byte stream.
``modbus+tcp://host:port``, ``modbus+rtu:///dev/ttyX``
    :class:`ModbusRecordSource`, polling the record ring of :data:`RECORD_REGISTERS`.

The guarantee to the station: every record received intact is delivered exactly once;
a damaged or rejected record is never delivered, and the next record says how many are
missing before it (``gap_before_records`` > 0: exactly that many; -1: an unknown number,
after a reboot) with a ``reason``. Records are ordered by the device's record counter,
never by its clock; a device clock step is an ``events`` entry (``clock_jump``).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from zhichao.common import Backoff, utc_now
from zhichao.devices.base import DEFAULT_TIMEOUTS, Device, DeviceUrl, Timeouts, parse_device_url
from zhichao.devices.crc import crc16_ccitt
from zhichao.devices.errors import DeviceConnectionError, DeviceProtocolError
from zhichao.devices.health import HealthMonitor
from zhichao.devices.modbus import ModbusLink, regs_to_i64, regs_to_u32, u32_to_regs, u64_to_regs
from zhichao.devices.transports import ByteTransport, transport_for_url

LOG = logging.getLogger("zhichao.devices")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: reasons a record may carry
REASON_START = "start"
REASON_SEQUENCE_GAP = "sequence_gap"
REASON_RECONNECT = "reconnect"
REASON_REBOOT = "device_reboot"
REASON_OVERRUN = "fifo_overrun"
REASON_BAD_VALUES = "bad_values"
EVENT_CLOCK_JUMP = "clock_jump"

#: vendor status bits of a record (ZWR/1 and the Modbus record ring share them)
STATUS_BITS: dict[int, str] = {
    0x0001: "speed_out_of_range",
    0x0002: "acceleration",
    0x0004: "wheel_off_sensor",
    0x0008: "straddling",
    0x0010: "reversing",
    0x0020: "close_following",
    0x0040: "incomplete",
    0x0080: "missing_channel",
    0x0100: "saturation",
    0x0200: "axle_count_mismatch",
    0x0400: "irregular_motion",
    0x0800: "data_gap",  # the controller itself lost samples during the passage
    0x1000: "unweighable",
    0x8000: "calibration_invalid",  # the controller says its calibration is not valid
}
STATUS_MASK = sum(STATUS_BITS)

MAX_AXLES = 12
MAX_ROWS = 4


@dataclass(frozen=True)
class RecordLimits:
    """What a plausible record looks like; beyond these it is rejected as ``bad_values``.

    The bounds are sanity limits against garbage, not measurement rules: they are far
    outside anything a road vehicle produces, and configurable.
    """

    max_speed_kmh: float = 250.0
    max_axle_load_kg: float = 60_000.0
    min_spacing_m: float = 0.3
    max_spacing_m: float = 30.0
    gross_tolerance_kg: float = 10.0  # reported gross vs sum of axle loads, plus 0.5 %
    min_year: int = 2000
    max_year: int = 2100


@dataclass(frozen=True)
class WimRecord:
    """One vehicle as a vendor WIM controller reported it.

    Attributes
    ----------
    boot_id : power-up counter of the controller.
    seq : record counter since power-up (0 for the first record after a power-up).
    device_time_utc : device clock when the first axle crossed the first sensor row.
    lane_id : the controller's lane number or name.
    speed_kmh : measured speed [km/h].
    acceleration_ms2 : measured acceleration [m/s²], None when not reported.
    axle_loads_kg : per axle, front to rear [kg].
    wheel_loads_kg : per axle (left, right) [kg]; empty when not reported.
    axle_spacings_m : between consecutive axles [m] (one fewer than axles).
    gross_weight_kg : the controller's gross weight [kg].
    row_gross_weights_kg : gross weight seen by each sensor row [kg]; empty when not
        reported (then zhichao cannot estimate the passage's scatter).
    status : vendor status bits (:data:`STATUS_BITS`).
    pavement_temperature_c : [°C], None when not reported.
    station_time_utc : station clock when the record was received (set by the driver).
    gap_before_records : 0 contiguous; > 0 exactly this many records missing before this
        one; -1 an unknown number (set by the driver).
    reason : why this record is not a plain continuation, None otherwise.
    events : other things that happened (``clock_jump``).
    source : the device URL it came from.
    """

    boot_id: int
    seq: int
    device_time_utc: datetime
    lane_id: str
    speed_kmh: float
    acceleration_ms2: float | None
    axle_loads_kg: tuple[float, ...]
    wheel_loads_kg: tuple[tuple[float, float], ...]
    axle_spacings_m: tuple[float, ...]
    gross_weight_kg: float
    row_gross_weights_kg: tuple[float, ...]
    status: int
    pavement_temperature_c: float | None
    station_time_utc: datetime | None = None
    gap_before_records: int = 0
    reason: str | None = None
    events: tuple[str, ...] = ()
    source: str = ""

    @property
    def n_axles(self) -> int:
        return len(self.axle_loads_kg)

    @property
    def status_names(self) -> tuple[str, ...]:
        """Names of the status bits set."""
        return tuple(name for bit, name in STATUS_BITS.items() if self.status & bit)

    @property
    def plain(self) -> bool:
        return self.gap_before_records == 0 and self.reason is None and not self.events


def check_record(r: WimRecord, limits: RecordLimits | None = None) -> str:
    """Why a record is absurd, or ``""`` when it is plausible."""
    lim = limits or RecordLimits()
    n = r.n_axles
    if not 1 <= n <= MAX_AXLES:
        return f"{n} axles (1 … {MAX_AXLES})"
    if not (math.isfinite(r.speed_kmh) and 0 < r.speed_kmh <= lim.max_speed_kmh):
        return f"speed {r.speed_kmh} km/h"
    if r.acceleration_ms2 is not None and not (math.isfinite(r.acceleration_ms2)
                                               and abs(r.acceleration_ms2) <= 20):
        return f"acceleration {r.acceleration_ms2} m/s²"
    for i, a in enumerate(r.axle_loads_kg):
        if not (math.isfinite(a) and 0 <= a <= lim.max_axle_load_kg):
            return f"axle {i + 1} load {a} kg"
    if len(r.axle_spacings_m) != n - 1:
        return f"{len(r.axle_spacings_m)} spacings for {n} axles"
    for i, s in enumerate(r.axle_spacings_m):
        if not (math.isfinite(s) and lim.min_spacing_m <= s <= lim.max_spacing_m):
            return f"spacing {i + 1} {s} m"
    total = sum(r.axle_loads_kg)
    if not (math.isfinite(r.gross_weight_kg) and abs(r.gross_weight_kg - total)
            <= lim.gross_tolerance_kg + 0.005 * total):
        return f"gross {r.gross_weight_kg} kg != sum of axle loads {total:.0f} kg"
    if r.wheel_loads_kg:
        if len(r.wheel_loads_kg) != n:
            return f"{len(r.wheel_loads_kg)} wheel pairs for {n} axles"
        for i, (lft, rgt) in enumerate(r.wheel_loads_kg):
            a = r.axle_loads_kg[i]
            if not (math.isfinite(lft) and math.isfinite(rgt) and lft >= 0 and rgt >= 0
                    and abs(lft + rgt - a) <= lim.gross_tolerance_kg + 0.005 * a):
                return f"axle {i + 1} wheels {lft}+{rgt} kg != axle load {a} kg"
    if len(r.row_gross_weights_kg) > MAX_ROWS:
        return f"{len(r.row_gross_weights_kg)} rows (at most {MAX_ROWS})"
    for i, g in enumerate(r.row_gross_weights_kg):
        if not (math.isfinite(g) and 0 <= g <= MAX_AXLES * lim.max_axle_load_kg):
            return f"row {i + 1} gross {g} kg"
    if r.pavement_temperature_c is not None and not (
            math.isfinite(r.pavement_temperature_c) and -60 <= r.pavement_temperature_c <= 90):
        return f"temperature {r.pavement_temperature_c} °C"
    if not lim.min_year <= r.device_time_utc.year <= lim.max_year:
        return f"device time {r.device_time_utc.isoformat()}"
    if r.status & ~STATUS_MASK:
        return f"unknown status bits {r.status & ~STATUS_MASK:#06x}"
    return ""


# -- ZWR/1: ASCII record lines ----------------------------------------------------------

LINE_START = b"$"
LINE_TAG = "ZWR1"
MAX_LINE_BYTES = 1024
N_FIELDS = 15


def _fmt_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fmt_num(x: float, nd: int) -> str:
    text = f"{x:.{nd}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def encode_record_line(r: WimRecord) -> bytes:
    """The ``ZWR/1`` line of a record, ``$…*CCCC`` + CR LF (see ``docs/devices.md``)."""
    fields = [
        LINE_TAG, str(r.boot_id), str(r.seq), _fmt_time(r.device_time_utc), r.lane_id,
        _fmt_num(r.speed_kmh, 2),
        "" if r.acceleration_ms2 is None else _fmt_num(r.acceleration_ms2, 3),
        str(r.n_axles),
        ";".join(_fmt_num(a, 1) for a in r.axle_loads_kg),
        ";".join(f"{_fmt_num(lw, 1)}/{_fmt_num(rw, 1)}" for lw, rw in r.wheel_loads_kg),
        ";".join(_fmt_num(s, 3) for s in r.axle_spacings_m),
        _fmt_num(r.gross_weight_kg, 1),
        ";".join(_fmt_num(g, 1) for g in r.row_gross_weights_kg),
        f"{r.status & 0xFFFF:04X}",
        "" if r.pavement_temperature_c is None else _fmt_num(r.pavement_temperature_c, 1),
    ]
    body = ",".join(fields).encode("ascii")
    return b"$" + body + f"*{crc16_ccitt(body):04X}\r\n".encode("ascii")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(";")) if text else ()


def parse_record_body(body: str) -> WimRecord:
    """Parse the text between ``$`` and ``*``; raises ValueError naming the bad field."""
    f = body.split(",")
    if len(f) != N_FIELDS:
        raise ValueError(f"{len(f)} fields, expected {N_FIELDS}")
    if f[0] != LINE_TAG:
        raise ValueError(f"tag {f[0]!r}, expected {LINE_TAG}")
    names = ("boot_id", "seq", "time", "lane", "speed_kmh", "acceleration_ms2", "n_axles",
             "axle_loads_kg", "wheel_loads_kg", "axle_spacings_m", "gross_kg",
             "row_gross_kg", "status", "temperature_c")
    try:
        where = names[0]
        boot_id = int(f[1])
        where = names[1]
        seq = int(f[2])
        where = names[2]
        if not f[3].endswith("Z"):
            raise ValueError("time must be UTC (…Z)")
        t = datetime.strptime(f[3][:-1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        where = names[4]
        speed = float(f[5])
        where = names[5]
        accel = float(f[6]) if f[6] else None
        where = names[6]
        n_axles = int(f[7])
        where = names[7]
        loads = _floats(f[8])
        where = names[8]
        wheels = tuple((float(a), float(b)) for a, b in
                       (p.split("/") for p in f[9].split(";"))) if f[9] else ()
        where = names[9]
        spacings = _floats(f[10])
        where = names[10]
        gross = float(f[11])
        where = names[11]
        rows = _floats(f[12])
        where = names[12]
        status = int(f[13], 16)
        where = names[13]
        temp = float(f[14]) if f[14] else None
    except ValueError as exc:
        raise ValueError(f"field {where}: {exc}") from None
    if not (0 <= boot_id <= 0xFFFF and 0 <= seq <= 0xFFFFFFFF):
        raise ValueError(f"boot_id {boot_id} or seq {seq} out of range")
    if n_axles != len(loads):
        raise ValueError(f"n_axles {n_axles} but {len(loads)} axle loads")
    return WimRecord(boot_id, seq, t, f[4], speed, accel, loads, wheels, spacings, gross,
                     rows, status, temp)


@dataclass(frozen=True)
class RecordFault:
    """A problem met while decoding: ``kind`` is ``garbage``, ``oversize``, ``crc`` or
    ``bad_line``; ``offset`` the stream offset [bytes]; ``seq`` the record counter when the
    damaged line still names it (checksum valid, content absurd)."""

    kind: str
    offset: int
    n_bytes: int
    detail: str = ""
    seq: tuple[int, int] | None = None  # (boot_id, seq)


class RecordLineDecoder:
    """Sans-I/O ``ZWR/1`` decoder: ``feed(bytes)`` returns records and faults in order.

    A line starts at ``$`` and ends at LF (CR optional). ``$`` never occurs inside a line,
    so a ``$`` inside a line starts a new one (the first lost its end). A line longer than
    ``max_line_bytes`` is discarded as ``oversize``.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES,
                 limits: RecordLimits | None = None) -> None:
        self.max_line_bytes = max_line_bytes
        self.limits = limits or RecordLimits()
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._skipping = False  # inside an oversize line: drop until its end

    def reset(self) -> None:
        self._offset += len(self._buf)
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[WimRecord | RecordFault]:
        self._buf += data
        out: list[WimRecord | RecordFault] = []
        buf = self._buf
        pos = 0
        while pos < len(buf):
            if self._skipping:
                end = _find_any(buf, pos, (b"\n", b"$"))
                if end < 0:
                    pos = len(buf)
                    break
                self._skipping = False
                pos = end + 1 if buf[end:end + 1] == b"\n" else end
                continue
            start = buf.find(LINE_START, pos)
            if start < 0:
                self._garbage(out, pos, len(buf))
                pos = len(buf)
                break
            if start > pos:
                self._garbage(out, pos, start)
            nxt = _find_any(buf, start + 1, (b"\n", b"$"))
            if nxt < 0:
                if len(buf) - start > self.max_line_bytes:
                    out.append(RecordFault("oversize", self._offset + start, len(buf) - start,
                                           f"line longer than {self.max_line_bytes} bytes"))
                    self._skipping = True
                    pos = len(buf)
                else:
                    pos = start
                break
            if buf[nxt:nxt + 1] == b"$":  # the line lost its end: drop it, start again
                out.append(RecordFault("garbage", self._offset + start, nxt - start,
                                       "line without an end"))
                pos = nxt
                continue
            line = bytes(buf[start:nxt + 1])
            pos = nxt + 1
            if len(line) > self.max_line_bytes:
                out.append(RecordFault("oversize", self._offset + start, len(line),
                                       f"line longer than {self.max_line_bytes} bytes"))
                continue
            out.append(self._decode_line(line, self._offset + start))
        if pos:
            del buf[:pos]
            self._offset += pos
        return out

    def _garbage(self, out: list[WimRecord | RecordFault], a: int, b: int) -> None:
        text = bytes(self._buf[a:b])
        if text.strip(b"\r\n"):
            out.append(RecordFault("garbage", self._offset + a, b - a))

    def _decode_line(self, line: bytes, offset: int) -> WimRecord | RecordFault:
        content = line.rstrip(b"\r\n")
        star = content.rfind(b"*")
        if star < 0 or len(content) - star != 5:
            return RecordFault("bad_line", offset, len(line), "no *CCCC checksum")
        body = content[1:star]
        try:
            crc_rx = int(content[star + 1:], 16)
        except ValueError:
            return RecordFault("crc", offset, len(line), "checksum is not hex")
        crc = crc16_ccitt(body)
        if crc != crc_rx:
            return RecordFault("crc", offset, len(line), f"crc {crc_rx:04X} != computed {crc:04X}")
        try:
            text = body.decode("ascii")
            record = parse_record_body(text)
        except (UnicodeDecodeError, ValueError) as exc:
            return RecordFault("bad_line", offset, len(line), str(exc))
        problem = check_record(record, self.limits)
        if problem:
            return RecordFault("bad_line", offset, len(line), f"absurd record: {problem}",
                               (record.boot_id, record.seq))
        return record


def _find_any(buf: bytearray, start: int, needles: tuple[bytes, ...]) -> int:
    found = [i for i in (buf.find(n, start) for n in needles) if i >= 0]
    return min(found) if found else -1


# -- sequence bookkeeping ----------------------------------------------------------------

class RecordTracker:
    """Sans-I/O: gaps, duplicates, reboots and clock steps of a record stream.

    Parameters
    ----------
    health : where they are counted and logged.
    clock_jump_threshold_s : a record whose (device − station) time differs from the
        recent median by more than this is a device clock step [s]. Records arrive after
        the controller's processing delay, which varies; the default 2 s is a guess that
        must exceed that variation (configurable).
    """

    def __init__(self, health: HealthMonitor, *, clock_jump_threshold_s: float = 2.0) -> None:
        self.health = health
        self.clock_jump_threshold_s = clock_jump_threshold_s
        self._started = False
        self._boot_id = 0
        self._next_seq = 0
        self._pending_reason: str | None = None
        self._pending_events: list[str] = []
        self._offsets: deque[float] = deque(maxlen=16)
        self._recent: dict[int, datetime] = {}  # seq -> device time, last 256 delivered

    @property
    def next_seq(self) -> int | None:
        return self._next_seq if self._started else None

    @property
    def boot_id(self) -> int | None:
        return self._boot_id if self._started else None

    def note(self, reason: str) -> None:
        if self._pending_reason is None or self._pending_reason == REASON_RECONNECT:
            self._pending_reason = reason
        if reason not in self._pending_events:
            self._pending_events.append(reason)

    def process(self, r: WimRecord, station_time: datetime, source: str) -> WimRecord | None:
        """Account for one record; return it annotated, or None for a duplicate."""
        reason = self._pending_reason
        gap = 0
        if not self._started:
            self._started = True
            reason = reason or REASON_START
        elif r.boot_id != self._boot_id:
            gap = -1
            reason = REASON_REBOOT
            self.health.fault("reboots", f"boot_id {self._boot_id} -> {r.boot_id}; records "
                              "of vehicles passing while it restarted are unknown",
                              where=f"record {r.boot_id}/{r.seq}")
        elif r.seq > self._next_seq:
            gap = r.seq - self._next_seq
            reason = reason if reason not in (None, REASON_START) else REASON_SEQUENCE_GAP
            self.health.fault("sequence_gaps", f"{gap} records missing ({reason})",
                              where=f"record {r.boot_id}/{self._next_seq}")
            self.health.add("records_lost", gap)
        elif r.seq < self._next_seq and self._recent.get(r.seq) == r.device_time_utc:
            self.health.fault("duplicates", f"record {r.boot_id}/{r.seq} already delivered",
                              where=f"record {r.boot_id}/{r.seq}", level=logging.INFO)
            return None
        elif r.seq < self._next_seq:
            # the counter went back without a boot change: a controller that keeps no boot
            # counter restarted. Not a duplicate (a different vehicle): never drop it.
            gap = -1
            reason = REASON_REBOOT
            self.health.fault("reboots", f"record counter went back {self._next_seq - 1} -> "
                              f"{r.seq} without a boot change", where=f"record {r.boot_id}/{r.seq}")
            self._recent.clear()
        events = [e for e in self._pending_events if e != reason]
        offset_s = (r.device_time_utc - station_time).total_seconds()
        if self._offsets and reason != REASON_REBOOT:
            base = statistics.median(self._offsets)
            if abs(offset_s - base) > self.clock_jump_threshold_s:
                self.health.fault("clock_jumps", f"device clock stepped about "
                                  f"{offset_s - base:+.3f} s", where=f"record {r.boot_id}/{r.seq}")
                self._offsets.clear()
                events.append(EVENT_CLOCK_JUMP)
        elif reason == REASON_REBOOT:
            self._offsets.clear()
        self._offsets.append(offset_s)
        self.health.clock_offset_s = max(self._offsets)
        if r.boot_id != self._boot_id:
            self._recent.clear()
        self._recent[r.seq] = r.device_time_utc
        if len(self._recent) > 256:
            del self._recent[next(iter(self._recent))]
        self._boot_id = r.boot_id
        self._next_seq = r.seq + 1
        self._pending_reason = None
        self._pending_events = []
        return replace(r, station_time_utc=station_time, gap_before_records=gap, reason=reason,
                       events=tuple(events), source=source)


# -- the device kind ---------------------------------------------------------------------

class RecordSource(Device):
    """Abstract WIM record source (template method: :meth:`read_record`).

    Parameters
    ----------
    stall_timeout_s : a link silent this long is declared stalled and reconnected [s].
        Controllers that send nothing between vehicles need a keep-alive or a long limit:
        the default (0: never) suits them; set it for controllers with a heartbeat.
    clock_jump_threshold_s : see :class:`RecordTracker` [s].
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


class StreamRecordSource(RecordSource):
    """``ZWR/1`` lines over a byte stream (serial or TCP)."""

    def __init__(self, url: str, transport: ByteTransport, *,
                 max_line_bytes: int = MAX_LINE_BYTES, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.transport = transport
        self.decoder = RecordLineDecoder(max_line_bytes, self.limits)
        self.health.info["transport"] = transport.description
        self.health.info["protocol"] = "ZWR/1"

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> StreamRecordSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        transport = transport_for_url(parsed, default_baud_rate=9600)
        if "stall_timeout_s" in parsed.query and "stall_timeout_s" not in kwargs:
            kwargs["stall_timeout_s"] = parsed.get_float("stall_timeout_s", 0.0)
        return cls(parsed.text, transport, **kwargs)

    def _connect(self, timeout_s: float) -> None:
        self.transport.open(timeout_s)
        self.decoder.reset()

    def _disconnect(self) -> None:
        self.transport.close()

    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        data = self.transport.read(1 << 16, timeout_s)
        if not data:
            return []
        self.health.add("bytes_received", len(data))
        out: list[WimRecord | str] = []
        for item in self.decoder.feed(data):
            if isinstance(item, WimRecord):
                out.append(item)
                continue
            where = f"stream byte {item.offset}"
            if item.kind == "garbage":
                self.health.fault("bytes_discarded", f"{item.n_bytes} bytes {item.detail}".strip(),
                                  n=item.n_bytes, where=where, level=logging.INFO)
            elif item.kind == "oversize":
                self.health.fault("oversize_frames", item.detail, where=where)
            elif item.kind == "crc":
                self.health.fault("crc_errors", item.detail, where=where)
            else:
                self.health.fault("bad_values", item.detail, where=where)
                out.append(REASON_BAD_VALUES)
        return out


# -- Modbus record ring ------------------------------------------------------------------

#: Holding-register map of the zhichao Modbus record ring (0-based addresses).
RECORD_REGISTERS: dict[str, tuple[int, int]] = {
    "magic": (0, 1),            # 0x5A52 ("ZR")
    "map_version": (1, 1),      # 1
    "boot_id": (2, 1),          # +1 at each power-up
    "status": (3, 1),           # b0 running, b1 sensor fault, b2 clock not synced
    "total_records": (4, 2),    # u32 records since power-up (seq of the newest + 1)
    "ring_slots": (6, 1),       # R
    "slot_registers": (7, 1),   # S = 72
    "device_time_us": (8, 4),   # i64 device clock now [µs since 1970 UTC]
}
RECORD_MAGIC = 0x5A52
RECORD_RING_BASE = 100  # record seq in slot seq mod R at RECORD_RING_BASE + slot * S
SLOT_REGISTERS = 72
_HEADER_COUNT = 12
_NONE16 = 0x8000  # "not reported" for the signed 16-bit fields

#: layout of one record slot (offsets inside the slot)
SLOT_LAYOUT: dict[str, tuple[int, int]] = {
    "seq": (0, 2),                 # u32
    "time_us": (2, 4),             # i64 device clock at the first axle
    "speed_centi_kmh": (6, 1),     # u16 speed × 100
    "accel_milli_ms2": (7, 1),     # i16 acceleration × 1000, 0x8000 = not reported
    "n_axles": (8, 1),
    "status": (9, 1),
    "temperature_deci_c": (10, 1),  # i16 × 10, 0x8000 = not reported
    "n_rows": (11, 1),             # rows whose gross follows (0 … 4)
    "gross_kg": (12, 2),           # u32
    "axle_loads_kg": (14, 12),     # u16 each, axles 1 … 12
    "spacings_mm": (26, 11),       # u16 each
    "row_gross_kg": (37, 8),       # u32 each, rows 1 … 4
    "wheel_loads_kg": (45, 24),    # u16 (left, right) per axle; all 0 = not reported
    "lane": (69, 1),               # lane number
    "reserved": (70, 1),
    "crc": (71, 1),                # CRC-16/MODBUS over the slot's registers 0 … 70, big-endian
}


def _s16(v: int) -> int | None:
    if v == _NONE16:
        return None
    return v - 0x10000 if v & 0x8000 else v


def _u16_of(v: int | None) -> int:
    return _NONE16 if v is None else v & 0xFFFF


def _slot_crc(regs: list[int]) -> int:
    from zhichao.devices.crc import crc16_modbus

    return crc16_modbus(b"".join(r.to_bytes(2, "big") for r in regs[:SLOT_REGISTERS - 1]))


def encode_record_slot(r: WimRecord) -> list[int]:
    """The 72 registers of a record slot (for twins and tests)."""
    if r.n_axles > MAX_AXLES or len(r.row_gross_weights_kg) > MAX_ROWS:
        raise ValueError("too many axles or rows for a record slot")
    regs = [0] * SLOT_REGISTERS
    regs[0:2] = u32_to_regs(r.seq)
    us = round((r.device_time_utc - _EPOCH) / timedelta(microseconds=1))
    regs[2:6] = u64_to_regs(us)
    regs[6] = min(0xFFFF, round(r.speed_kmh * 100))
    regs[7] = _u16_of(None if r.acceleration_ms2 is None else round(r.acceleration_ms2 * 1000))
    regs[8] = r.n_axles
    regs[9] = r.status & 0xFFFF
    regs[10] = _u16_of(None if r.pavement_temperature_c is None
                       else round(r.pavement_temperature_c * 10))
    regs[11] = len(r.row_gross_weights_kg)
    regs[12:14] = u32_to_regs(round(r.gross_weight_kg))
    for i, a in enumerate(r.axle_loads_kg):
        regs[14 + i] = min(0xFFFF, max(0, round(a)))
    for i, s in enumerate(r.axle_spacings_m):
        regs[26 + i] = min(0xFFFF, max(0, round(s * 1000)))
    for i, g in enumerate(r.row_gross_weights_kg):
        regs[37 + 2 * i:39 + 2 * i] = u32_to_regs(round(g))
    for i, (lw, rw) in enumerate(r.wheel_loads_kg):
        regs[45 + 2 * i] = min(0xFFFF, max(0, round(lw)))
        regs[46 + 2 * i] = min(0xFFFF, max(0, round(rw)))
    try:
        regs[69] = int(r.lane_id) & 0xFFFF
    except ValueError:
        regs[69] = 0
    regs[71] = _slot_crc(regs)
    return regs


def decode_record_slot(regs: list[int], boot_id: int) -> WimRecord:
    """A record from its 72 slot registers; raises ValueError when torn or malformed."""
    if len(regs) != SLOT_REGISTERS:
        raise ValueError(f"{len(regs)} registers, expected {SLOT_REGISTERS}")
    if _slot_crc(regs) != regs[71]:
        raise ValueError("slot CRC mismatch (torn read or damaged slot)")
    n = regs[8]
    n_rows = regs[11]
    if not 1 <= n <= MAX_AXLES or n_rows > MAX_ROWS:
        raise ValueError(f"slot says {n} axles, {n_rows} rows")
    wheels_raw = regs[45:45 + 2 * n]
    wheels = tuple((float(wheels_raw[2 * i]), float(wheels_raw[2 * i + 1]))
                   for i in range(n)) if any(wheels_raw) else ()
    accel = _s16(regs[7])
    temp = _s16(regs[10])
    us = min(max(regs_to_i64(regs[2:6]), 0), 4_102_444_800_000_000)  # clamp: 1970 … 2100
    return WimRecord(
        boot_id=boot_id, seq=regs_to_u32(regs[0:2]),
        device_time_utc=_EPOCH + timedelta(microseconds=us),
        lane_id=str(regs[69]), speed_kmh=regs[6] / 100,
        acceleration_ms2=None if accel is None else accel / 1000,
        axle_loads_kg=tuple(float(x) for x in regs[14:14 + n]),
        wheel_loads_kg=wheels,
        axle_spacings_m=tuple(x / 1000 for x in regs[26:26 + n - 1]),
        gross_weight_kg=float(regs_to_u32(regs[12:14])),
        row_gross_weights_kg=tuple(float(regs_to_u32(regs[37 + 2 * i:39 + 2 * i]))
                                   for i in range(n_rows)),
        status=regs[9], pavement_temperature_c=None if temp is None else temp / 10)


class ModbusRecordSource(RecordSource):
    """Polls the record ring of :data:`RECORD_REGISTERS` over Modbus TCP or RTU.

    The driver keeps its own read pointer (the next record counter it expects), so a lost
    reply loses nothing: it reads the same slot again. A slot whose CRC or counter does not
    match is read again at the next poll (the controller was writing it); records already
    overwritten in the ring are reported as a ``fifo_overrun`` gap of exactly that many.
    """

    poll_s: ClassVar[float] = 0.02

    def __init__(self, url: str, *, poll_interval_s: float = 0.05,
                 max_records_per_poll: int = 16, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._parsed = parse_device_url(url)
        self.poll_interval_s = poll_interval_s
        self.max_records_per_poll = max_records_per_poll
        self._link: ModbusLink | None = None
        self._last_poll = 0.0
        self._torn_retries = 0
        self._next_read = 0
        self._read_boot = -1
        self.health.info["protocol"] = "zhichao record ring v1"

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> ModbusRecordSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        if "poll_interval_s" in parsed.query and "poll_interval_s" not in kwargs:
            kwargs["poll_interval_s"] = parsed.get_float("poll_interval_s", 0.05)
        return cls(parsed.text, **kwargs)

    def _modbus(self) -> ModbusLink:
        if self._link is None:
            raise DeviceConnectionError(f"{self.url}: not connected")
        return self._link

    def _connect(self, timeout_s: float) -> None:
        link = ModbusLink(self._parsed, timeout_s=min(timeout_s, self.timeouts.read))
        link.connect()
        self._link = link
        head = link.read_holding(0, _HEADER_COUNT)
        if head[0] != RECORD_MAGIC:
            link.close()
            self._link = None
            raise DeviceConnectionError(
                f"{self.url}: not a zhichao record ring (register 0 = {head[0]:#06x})")
        self.health.info.update(boot_id=head[2], ring_slots=head[6])

    def _disconnect(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        wait = self._last_poll + self.poll_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_s))
            if wait > timeout_s:
                return []
        self._last_poll = time.monotonic()
        link = self._modbus()
        head = link.read_holding(0, _HEADER_COUNT)
        self.health.add("bytes_received", 2 * _HEADER_COUNT)
        if head[0] != RECORD_MAGIC:
            raise DeviceProtocolError(f"{self.url}: register 0 = {head[0]:#06x}, not the magic")
        boot_id, total, ring, slot_size = head[2], regs_to_u32(head[4:6]), head[6], head[7]
        if ring < 2 or slot_size != SLOT_REGISTERS:
            raise DeviceProtocolError(f"{self.url}: absurd header registers {head}")
        out: list[WimRecord | str] = []
        if self._read_boot != boot_id or self._next_read > total:
            # first poll, or the controller restarted: take what its ring still holds
            self._next_read = max(0, total - ring)
            self._read_boot = boot_id
        elif self._next_read < total - ring:
            out.append(REASON_OVERRUN)
            self._next_read = total - ring
        self.health.info["boot_id"] = boot_id
        stop = min(total, self._next_read + self.max_records_per_poll)
        while self._next_read < stop:
            seq = self._next_read
            slot = link.read_holding(RECORD_RING_BASE + (seq % ring) * SLOT_REGISTERS,
                                     SLOT_REGISTERS)
            self.health.add("bytes_received", 2 * SLOT_REGISTERS)
            try:
                record: WimRecord | None = decode_record_slot(slot, boot_id)
                detail = ""
            except ValueError as exc:
                record, detail = None, str(exc)
            if record is not None and record.seq != seq:
                detail = f"slot of record {seq} holds record {record.seq}"
            if detail and self._torn_retries < 3:
                # the controller may be writing that slot right now: read it again later
                self._torn_retries += 1
                self.health.fault("torn_reads", detail, where=f"record {boot_id}/{seq}",
                                  level=logging.INFO)
                break
            self._torn_retries = 0
            self._next_read += 1
            if record is not None and not detail:
                detail = check_record(record, self.limits)
            if record is None or detail:
                self.health.fault("bad_values", f"record rejected: {detail}",
                                  where=f"record {boot_id}/{seq}")
                out.append(REASON_BAD_VALUES)
                continue
            out.append(record)
        return out
