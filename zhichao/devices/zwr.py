"""``ZWR/1``: the zhichao ASCII record line of a WIM controller, and its sans-I/O decoder.

One line per vehicle (see ``docs/devices.md`` for every field)::

    $ZWR1,<boot>,<seq>,<time>,<lane>,<speed>,<accel>,<n>,<loads>,<wheels>,<spacings>,<gross>,<rows>,<status>,<temp>*CCCC<CR><LF>

``CCCC`` is the CRC-16/CCITT-FALSE of the bytes between ``$`` and ``*`` as 4 upper-case hex
digits (the decoder accepts either case). :class:`RecordLineDecoder` turns bytes into
:class:`~zhichao.devices.data.WimRecord` s and :class:`RecordFault` s with no I/O inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from zhichao.devices.crc import crc16_ccitt
from zhichao.devices.data import RecordLimits, WimRecord, check_record

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
