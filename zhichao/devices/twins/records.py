"""Twins of a vendor WIM controller reporting vehicle records: ``ZWR/1`` lines over a pty or
TCP, and the Modbus record ring (TCP, or RTU on a pty null modem).

They are fed by the simulator's truth (:func:`records_from_truth`): the records a good
controller would report for the simulated vehicles, with an optional systematic load
error (``load_factor``, as an uncalibrated controller has) and per-row scatter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Self

import numpy as np

from zhichao.common import utc_now
from zhichao.devices.data import WimRecord
from zhichao.devices.faults import LOSSY_KINDS, FaultInjector
from zhichao.devices.record_ring import (
    RECORD_MAGIC,
    RECORD_RING_BASE,
    SLOT_REGISTERS,
    encode_record_slot,
)
from zhichao.devices.twins.links import PtyLink, TcpServerLink, TwinLink
from zhichao.devices.twins.modbus import ModbusTwinServer
from zhichao.devices.zwr import encode_record_line

LOG = logging.getLogger("zhichao.devices.twins")

#: simulator behaviours → the status bits a controller would raise for them
_ABNORMAL_STATUS: dict[str, int] = {
    "speed_out_of_range": 0x0001, "acceleration": 0x0002, "braking": 0x0002,
    "lateral_offset": 0x0004, "reversing": 0x0010, "close_following": 0x0020,
}


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def records_from_truth(truth: Mapping[str, Any], *, lane_id: str = "1", n_rows: int = 4,
                       load_factor: float = 1.0, row_scatter: float = 0.02,
                       seed: int = 0) -> list[WimRecord]:
    """The records a controller would report for the vehicles of a simulator truth file.

    Loads are the truth's static loads × ``load_factor`` (a controller's calibration
    error); each row's gross scatters by ``row_scatter`` (relative, normal) around the
    gross, as the dynamic load does on a real array; the gross is their mean.
    """
    rng = np.random.default_rng(seed)
    temp = truth.get("pavement_temperature_c")
    out: list[WimRecord] = []
    for seq, v in enumerate(truth["vehicles"]):
        wheels = [(float(a) * load_factor, float(b) * load_factor)
                  for a, b in v["wheel_loads_kg"]]
        scatter = rng.normal(0.0, row_scatter, n_rows) if n_rows else np.zeros(0)
        if n_rows:
            scatter -= scatter.mean()
        axles = [round(a + b, 1) for a, b in wheels]
        gross = round(sum(axles), 1)
        status = 0
        for kind in v.get("abnormal", []):
            status |= _ABNORMAL_STATUS.get(kind, 0)
        out.append(WimRecord(
            boot_id=1, seq=seq, device_time_utc=_parse_utc(v["first_axle_time_utc"]),
            lane_id=lane_id, speed_kmh=round(float(v["speed_kmh"]), 2),
            acceleration_ms2=round(float(v["acceleration_ms2"]), 3),
            axle_loads_kg=tuple(axles),
            wheel_loads_kg=tuple((round(a, 1), round(round(a + b, 1) - round(a, 1), 1))
                                 for a, b in wheels),
            axle_spacings_m=tuple(round(float(s), 3) for s in v["axle_spacings_m"]),
            gross_weight_kg=gross,
            row_gross_weights_kg=tuple(round(gross * (1 + float(e)), 1) for e in scatter),
            status=status,
            pavement_temperature_c=None if temp is None else round(float(temp), 1)))
    return out


@dataclass(frozen=True)
class SentRecord:
    """Ground truth: the twin's record ``index`` went out as ``(boot_id, seq)``; ``intact``
    if it left undamaged."""

    index: int
    boot_id: int
    seq: int
    intact: bool
    faults: tuple[str, ...]


class RecordLineTwin:
    """A controller sending ``ZWR/1`` lines, one per vehicle, optionally with faults.

    Parameters
    ----------
    records : what to report, in order (their boot_id/seq are reassigned by the twin).
    link : ``"pty"``, ``"tcp"`` or a :class:`TwinLink`.
    interval_s : pause between records [s] (0: as fast as the link takes them).
    stamp_now : stamp each record with the twin's clock when it is sent (a live device),
        instead of the record's own time (a replay).
    injector : per-record faults (``corrupt``, ``garbage``, ``oversize``, ``split``,
        ``merge``, ``drop``, ``disconnect`` (TCP: close; ``param`` records lost while
        down), ``reboot`` (counter reset; ``param`` records lost), ``clock_jump``,
        ``stall``, ``bad_values`` (a well-formed line with an absurd load)).
    """

    def __init__(self, records: Sequence[WimRecord], *, link: str | TwinLink = "pty",
                 interval_s: float = 0.0, stamp_now: bool = True,
                 injector: FaultInjector | None = None) -> None:
        self.records = list(records)
        if link == "pty":
            self.link: TwinLink = PtyLink()
        elif link == "tcp":
            self.link = TcpServerLink()
        elif isinstance(link, TwinLink):
            self.link = link
        else:
            raise ValueError(f"link must be 'pty', 'tcp' or a TwinLink, got {link!r}")
        self.interval_s = interval_s
        self.stamp_now = stamp_now
        self.injector = injector
        self.sent: list[SentRecord] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``zwr+tcp://…`` or ``zwr+serial://…``: opens as a record source by itself."""
        return "zwr+" + self.link.url

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="zwr-twin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.link.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self._send_all()
        except Exception:  # a twin must never die silently
            LOG.exception("record twin crashed")
        finally:
            self.done.set()

    def _send_all(self) -> None:
        boot_id, seq, clock_off = 1, 0, timedelta(0)
        held, held_truth = b"", []
        if isinstance(self.link, TcpServerLink) and not self.link.wait_client(self._stop):
            return
        i = 0
        while i < len(self.records) and not self._stop.is_set():
            faults = self.injector.faults_for(i) if self.injector else []
            kinds = {f.kind: f.param for f in faults}
            if "reboot" in kinds:
                for k in range(i, min(len(self.records), i + int(kinds["reboot"]))):
                    self.sent.append(SentRecord(k, boot_id, seq, False, ("reboot",)))
                    seq += 1
                i += int(kinds["reboot"])
                boot_id, seq = (boot_id + 1) & 0xFFFF, 0
            if "disconnect" in kinds:
                self.link.drop_connection()
                for k in range(i, min(len(self.records), i + int(kinds["disconnect"]))):
                    self.sent.append(SentRecord(k, boot_id, seq, False, ("disconnect",)))
                    seq += 1
                i += int(kinds["disconnect"])
            if "clock_jump" in kinds:
                clock_off += timedelta(seconds=kinds["clock_jump"])
            if i >= len(self.records):
                break
            rec = self.records[i]
            t = utc_now() if self.stamp_now else rec.device_time_utc
            rec = replace(rec, boot_id=boot_id, seq=seq, device_time_utc=t + clock_off)
            if "bad_values" in kinds:
                rec = replace(rec, axle_loads_kg=(-5.0, *rec.axle_loads_kg[1:]))
            line = encode_record_line(rec)
            if self.interval_s > 0:
                self._stop.wait(self.interval_s)
            if "stall" in kinds:
                self._stop.wait(kinds["stall"])
            out = line
            if "corrupt" in kinds and self.injector is not None:
                out = self.injector.corrupt(line[:-2], int(kinds["corrupt"])) + b"\r\n"
                if out == line:
                    out = line[:5] + b"#" + line[6:]
            if "drop" in kinds:
                out = b""
            prefix = b""
            if "garbage" in kinds and self.injector is not None:
                prefix += self.injector.garbage(int(kinds["garbage"])).replace(b"$", b"?")
            if "oversize" in kinds:
                prefix += b"$ZWR1," + b"9" * 2000 + b"\r\n"
            held_truth.append(SentRecord(i, boot_id, seq, not (LOSSY_KINDS & kinds.keys()),
                                         tuple(sorted(kinds))))
            payload = held + prefix + out
            seq += 1
            i += 1
            if "merge" in kinds:
                held = payload
                continue
            held = b""
            if "split" in kinds and self.injector is not None and len(payload) > 2:
                pieces = self.injector.split(payload, int(kinds["split"]))
            else:
                pieces = [payload]
            ok = True
            for piece in pieces:
                ok = ok and self.link.send(piece, self._stop)
                if len(pieces) > 1:
                    time.sleep(0.001)
            self._settle(held_truth, ok)
            held_truth = []
        if held:
            self._settle(held_truth, self.link.send(held, self._stop))

    def _settle(self, truth: list[SentRecord], ok: bool) -> None:
        for t in truth:
            self.sent.append(t if ok else replace(t, intact=False,
                                                  faults=(*t.faults, "send_failed")))

    def intact_indices(self) -> set[int]:
        return {s.index for s in self.sent if s.intact}


class ModbusRecordTwin:
    """A controller exposing the record ring of
    :data:`zhichao.devices.records.RECORD_REGISTERS` on a pymodbus server (TCP, or RTU on
    ``serial_port`` with the driver on ``client_port``).

    Records "happen" one per ``interval_s`` from the first request (0: all at once) and
    are written into the ring lazily, at each Modbus access. ``reboot()`` resets the
    counter and bumps the boot id; ``advance(n)`` lets ``n`` records happen at once (the
    ring overruns when ``n`` exceeds it); ``paused`` freezes what the ring shows.
    """

    def __init__(self, records: Sequence[WimRecord], *, ring_slots: int = 32,
                 interval_s: float = 0.0, serial_port: str | None = None,
                 client_port: str | None = None, baud_rate: int = 115200,
                 stamp_now: bool = True) -> None:
        self.records = list(records)
        self.stamp_now = stamp_now
        self.ring = ring_slots
        self.interval_s = interval_s
        self.boot_id = 1
        self.paused = False
        self.status = 0x0001  # the header status register: running (record_ring.RING_STATUS_BITS)
        self._t0: float | None = None
        self._index_at_boot = 0
        self._written = 0
        self._extra = 0  # records made to happen at once by advance()
        self.damaged_slots: set[int] = set()  # record indices written with a wrong slot CRC
        self.server = ModbusTwinServer(RECORD_RING_BASE + ring_slots * SLOT_REGISTERS + 1,
                                       self._refresh, serial_port=serial_port,
                                       client_port=client_port, baud_rate=baud_rate)

    @property
    def url(self) -> str:
        """The Modbus URL with ``kind=records``: opens as a record source by itself."""
        return self.server.url + "&kind=records"

    def _happened(self) -> int:
        if self._t0 is None:
            self._t0 = time.monotonic()
        if self.interval_s <= 0:
            n = len(self.records)
        else:
            n = min(len(self.records),
                    int((time.monotonic() - self._t0) / self.interval_s) + 1 + self._extra)
        return max(0, n - self._index_at_boot)

    def advance(self, n_records: int) -> None:
        """Let ``n_records`` more vehicles pass at once (a platoon: the ring may overrun)."""
        with self.server.lock:
            self._extra += n_records

    def reboot(self, lost_records: int = 0) -> None:
        with self.server.lock:
            self._index_at_boot += self._happened() + lost_records
            self.boot_id += 1
            self._written = 0

    def delivered_index(self, boot_id: int, seq: int) -> int:
        """Which of ``records`` a (boot, seq) is — only for the current boot."""
        assert boot_id == self.boot_id
        return self._index_at_boot + seq

    def _refresh(self, regs: list[int], _fc: int, _address: int, _count: int) -> None:
        from zhichao.devices.modbus import u32_to_regs

        total = self._written if self.paused else self._happened()
        now_utc, now_mono = utc_now(), time.monotonic()
        for seq in range(max(self._written, total - self.ring), total):
            index = self._index_at_boot + seq
            rec = replace(self.records[index], boot_id=self.boot_id, seq=seq)
            if self.stamp_now and self._t0 is not None:
                happened = self._t0 + index * self.interval_s
                rec = replace(rec, device_time_utc=now_utc - timedelta(
                    seconds=max(0.0, now_mono - happened)))
            base = RECORD_RING_BASE + (seq % self.ring) * SLOT_REGISTERS
            slot = encode_record_slot(rec)
            if index in self.damaged_slots:
                slot[SLOT_REGISTERS - 1] ^= 0x0001
            regs[base:base + SLOT_REGISTERS] = slot
        self._written = total
        us = round(now_utc.timestamp() * 1e6)
        regs[0:4] = [RECORD_MAGIC, 1, self.boot_id, self.status]
        regs[4:6] = u32_to_regs(total)
        regs[6:8] = [self.ring, SLOT_REGISTERS]
        regs[8:12] = [(us >> 48) & 0xFFFF, (us >> 32) & 0xFFFF, (us >> 16) & 0xFFFF, us & 0xFFFF]

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
