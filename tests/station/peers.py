"""Independent WIM peers written from ``docs/devices.md`` alone (not the devices stage's
twins, and without its codecs): a ZWR/1 record controller on a plain TCP socket and a
Modbus TCP sample ring on a plain pymodbus server. The station tests point ``zhichao run``
at them."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt


# ------------------------------------------------------------------ ZWR/1 record lines
@dataclass(frozen=True)
class Vehicle:
    """What the controller reports for one vehicle (the line's fields 5 … 14)."""

    speed_kmh: float
    axle_loads_kg: tuple[float, ...]
    axle_spacings_m: tuple[float, ...]
    row_gross_kg: tuple[float, ...]
    status: int = 0
    accel_ms2: float | None = None
    temperature_c: float | None = None


def _dec(x: float, places: int) -> str:
    """A plain decimal number with at most ``places`` decimals, trailing zeros dropped."""
    text = f"{x:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def zwr_line(boot: int, seq: int, t: datetime, lane: str, v: Vehicle) -> bytes:
    """One ``$ZWR1,…*CCCC`` line (docs/devices.md, *Protocol: ZWR/1 record line*)."""
    fields = [
        "ZWR1", str(boot), str(seq),
        t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), lane,
        _dec(v.speed_kmh, 2), "" if v.accel_ms2 is None else _dec(v.accel_ms2, 3),
        str(len(v.axle_loads_kg)), ";".join(_dec(a, 1) for a in v.axle_loads_kg),
        "", ";".join(_dec(s, 3) for s in v.axle_spacings_m),
        _dec(sum(v.axle_loads_kg), 1), ";".join(_dec(g, 1) for g in v.row_gross_kg),
        f"{v.status:04X}", "" if v.temperature_c is None else _dec(v.temperature_c, 1)]
    body = ",".join(fields).encode("ascii")
    crc = binascii.crc_hqx(body, 0xFFFF)  # CRC-16/CCITT-FALSE
    return b"$" + body + b"*" + f"{crc:04X}".encode("ascii") + b"\r\n"


class ZwrPeer:
    """A controller pushing one ZWR/1 line per vehicle to whoever is connected, every
    ``interval_s``, stamped with its clock when sent; a station that hangs up is waited
    for and gets the next records (a live controller does not resend)."""

    def __init__(self, vehicles: list[Vehicle], *, boot: int = 3, interval_s: float = 0.5,
                 lane: str = "2") -> None:
        self.vehicles = vehicles
        self.boot = boot
        self.interval_s = interval_s
        self.lane = lane
        self.sent: list[int] = []  # seq of each record written to a connected station
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="zwr-peer", daemon=True)

    @property
    def url(self) -> str:
        return f"zwr+tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> ZwrPeer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def _serve(self) -> None:
        seq = 0
        while not self._stop.is_set() and seq < len(self.vehicles):
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                while not self._stop.is_set() and seq < len(self.vehicles):
                    line = zwr_line(self.boot, seq, datetime.now(UTC), self.lane,
                                    self.vehicles[seq])
                    try:
                        conn.sendall(line)
                    except OSError:
                        break
                    self.sent.append(seq)
                    seq += 1
                    self._stop.wait(self.interval_s)
                while not self._stop.is_set() and seq == len(self.vehicles):
                    self._stop.wait(0.1)  # all sent: keep the link open


# ------------------------------------------------------------------ Modbus sample ring
MAGIC_SAMPLES = 0x5A43
ROWS_BASE = 100


def _u64_words(value: int) -> list[int]:
    """A u64/i64 as four registers, most significant word first."""
    raw = struct.pack(">q" if value < 0 else ">Q", value)
    return list(struct.unpack(">4H", raw))


def _f32_words(value: float) -> list[int]:
    return list(struct.unpack(">2H", struct.pack(">f", value)))


class ModbusSamplePeer:
    """The Modbus sample ring (docs/devices.md, *Register map: Modbus sample ring*) on a
    plain pymodbus TCP server: ``samples`` [rows × channels] enter the ring as int16 counts
    (value = count × scale) at ``rate_hz`` × ``speed`` rows per wall second (brought up to
    date whenever a request comes in; the first request starts the lane), then the last
    row for ever (a quiet lane); the device clock runs at the same pace."""

    def __init__(self, samples: npt.NDArray[np.float32], rate_hz: int, *,
                 speed: float = 1.0, ring_rows: int = 4000, boot: int = 5) -> None:
        self.rate_hz = rate_hz
        self.speed = speed
        self.ring = ring_rows
        self.channels = samples.shape[1]
        self.scale = float(np.max(np.abs(samples))) / 32000.0
        self.counts = np.clip(np.round(samples / self.scale), -32768, 32767).astype(
            np.int64) & 0xFFFF
        self.boot = boot
        self.regs = np.zeros(ROWS_BASE + ring_rows * self.channels, dtype=np.int64)
        with socket.socket() as s:  # a free port (the server does not report port 0's)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.start_utc = datetime.now(UTC)
        self.written = 0
        self._t0: float | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="modbus-peer", daemon=True)

    @property
    def url(self) -> str:
        return f"modbus+tcp://127.0.0.1:{self.port}?device_id=1"

    def _header(self, total: int) -> None:
        newest_us = round(self.start_utc.timestamp() * 1e6 + (total - 1) * 1e6 / self.rate_hz)
        self.regs[0:17] = [MAGIC_SAMPLES, 1, self.channels, self.rate_hz, self.boot, 0x0001,
                           *_f32_words(self.scale), *_u64_words(total),
                           *_u64_words(newest_us), self.ring]

    def _advance(self) -> None:
        """Rows due by now into the ring, then the header."""
        if self._t0 is None:  # the lane starts with the first request
            self._t0 = time.monotonic()
            self.start_utc = datetime.now(UTC)
        due = int((time.monotonic() - self._t0) * self.rate_hz * self.speed)
        last = self.counts.shape[0] - 1
        for i in range(max(self.written, due - self.ring), due):
            at = ROWS_BASE + (i % self.ring) * self.channels
            self.regs[at:at + self.channels] = self.counts[min(i, last)]
        if due > self.written:
            self.written = due
            self._header(due)

    async def _action(self, function_code: int, start_address: int, address: int,
                      count: int, current_registers: list[int],
                      set_values: list[int] | list[bool] | None) -> None:
        with self._lock:
            self._advance()
            off = address - start_address
            current_registers[off:off + count] = [
                int(x) for x in self.regs[address:address + count]]

    def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            device = SimDevice(id=1, simdata=[SimData(0, count=len(self.regs), values=0,
                                                      datatype=DataType.REGISTERS)],
                               action=self._action)
            server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(serve())

    def __enter__(self) -> ModbusSamplePeer:
        self._header(0)
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it listens
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                break
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        loop = self._loop
        if loop is not None:
            for task in asyncio.all_tasks(loop):
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=5)
